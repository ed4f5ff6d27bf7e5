//! The seam between the engine and the application's processes: what the engine tells
//! a joined channel (in Fenix, a channel process) goes through its [`ChannelSink`], and
//! what it tells the transport of a raw connection (in Fenix, the process that runs a
//! `Fenix.Socket.Transport`) through its [`TransportSink`].

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use crate::protocol::Message;
use crate::websocket::CloseCode;

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

/// A shared sink.
pub type Sink = Arc<dyn ChannelSink>;

/// The receiving end of a raw connection (in Fenix, its transport process).
pub trait TransportSink: Send + Sync + Debug + Any {
    /// Delivers an event. Must not block. The bytes are lent: copy what is kept.
    fn deliver(&self, event: TransportEvent<'_>);

    /// For callers that know the concrete sink (a drain waiting for the processes).
    fn as_any(&self) -> &dyn Any;
}

/// What a raw connection's transport is told.
#[derive(Debug)]
pub enum TransportEvent<'a> {
    /// A whole message from the client (fragments already assembled; text is valid
    /// UTF-8). Its bytes are credit given back with
    /// [`RawTransport::handled`](crate::server::RawTransport::handled) once handled.
    Message(DataKind, &'a [u8]),
    /// A ping (already answered with a pong by the engine) or a pong, with its
    /// payload; only to a transport that asked for them, and credit like a message.
    Control(ControlKind, &'a [u8]),
    /// The connection is gone: the transport must stop. Sent once, last.
    Closed(TransportClosed),
}

/// The kind of a data message (RFC6455§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// The kind of a control frame that a transport may see (RFC6455§5.5.2, §5.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

/// Why a raw connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportClosed {
    /// The client closed it (a close frame) or went away.
    Closed,
    /// Nothing came from the client for the socket's idle timeout.
    Timeout,
    /// The server closed it: the transport asked to, or the server is stopping.
    Shutdown,
    /// The client broke the protocol or a limit, and was closed with this code; or
    /// it did not read what was sent to it (its outbox filled): [`CloseCode::Policy`].
    Error(CloseCode),
}

/// A shared transport sink.
pub type TransportSinkRef = Arc<dyn TransportSink>;
