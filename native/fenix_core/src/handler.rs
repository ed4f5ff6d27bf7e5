//! The seams between the engine and the application that runs the callbacks.

use std::any::Any;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{Message, Payload};
use crate::server::Conn;

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

/// The receiving end of one joined channel (in Fenix, a channel process).
pub trait ChannelSink: Send + Sync + Debug + Any {
    /// Delivers an event to the channel. Must not block.
    fn deliver(&self, event: ChannelEvent);

    /// For callers that know the concrete sink (intercepted broadcasts).
    fn as_any(&self) -> &dyn Any;
}

/// What a channel is told.
#[derive(Debug)]
pub enum ChannelEvent {
    /// A client message for the channel (`phx_leave` included), `size` bytes on the
    /// wire. The channel gives its credit back with
    /// [`Channel::handled`](crate::server::Channel::handled) once it has handled it.
    In {
        /// The message.
        message: Message,
        /// Its size, to hand back.
        size: usize,
    },
    /// The channel is gone from the connection: a duplicate join replaced it, or the
    /// connection closed. The channel must stop without sending anything.
    Closed(ClosedReason),
}

/// Why a channel was closed by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedReason {
    /// The same topic was joined again on the connection.
    DuplicateJoin,
    /// The connection closed.
    ConnectionClosed,
}

/// A connection request, after the WebSocket handshake headers were checked.
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
}

/// A `phx_join` from a client.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The topic to join.
    pub topic: String,
    /// The join's `join_ref` (also the channel's identity on the wire).
    pub join_ref: Option<String>,
    /// The join's `ref`.
    pub r#ref: Option<String>,
    /// The join payload.
    pub payload: Payload,
    /// The opaque data the application gave to [`Conn::accept`].
    pub socket_data: Bytes,
}

/// A shared sink.
pub type Sink = Arc<dyn ChannelSink>;
