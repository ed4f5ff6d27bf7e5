//! The seam between the server and the application that runs the callbacks: connects
//! and joins are asked through [`Handler`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::Conn;
use crate::protocol::{ClientRef, Payload};

/// What the engine asks of the application. Calls are made on engine threads and
/// must return quickly: the answer comes back later through [`Conn`] methods.
pub trait Handler: Send + Sync + 'static {
    /// A client asks to connect. Answer with [`Conn::accept`] or [`Conn::refuse`];
    /// a request that gets no answer within the socket's `connect_timeout` is refused.
    fn connect(&self, conn: &Arc<Conn>, request: ConnectRequest);

    /// A client asks to join `request.topic`. Answer with [`Conn::joined`] or
    /// [`Conn::join_failed`]; until then, messages for the topic are held back.
    fn join(&self, conn: &Arc<Conn>, request: JoinRequest);
}

/// A connection request: a WebSocket upgrade whose handshake headers were checked, or
/// the first poll of a long-poll session.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// Index of the socket (in `Config::sockets`) the request came in on.
    pub socket: usize,
    /// The query parameters, percent-decoded, in order (`vsn` included).
    pub params: Vec<(String, String)>,
    /// The token of `Sec-WebSocket-Protocol: phoenix, base64url.bearer.phx.<token>`.
    pub auth_token: Option<String>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request's headers that connect callbacks commonly read (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The request path and query, as sent.
    pub uri: String,
    /// Whether the connection came over TLS (the HTTPS listener).
    pub secure: bool,
    /// Which transport the client connects with.
    pub transport: TransportKind,
}

/// How a client reaches a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// A WebSocket at `<socket path>/websocket`.
    WebSocket,
    /// Long-poll HTTP requests at `<socket path>/longpoll`: the application answers the
    /// connect with [`Conn::accept_session`], giving the session its token.
    LongPoll,
}

/// A `phx_join` from a client.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The topic to join.
    pub topic: String,
    /// The join's `join_ref` (also the channel's identity on the wire).
    pub join_ref: Option<ClientRef>,
    /// The join's `ref`.
    pub r#ref: Option<ClientRef>,
    /// The join payload.
    pub payload: Payload,
    /// The opaque data the application gave to [`Conn::accept`].
    pub socket_data: Bytes,
}
