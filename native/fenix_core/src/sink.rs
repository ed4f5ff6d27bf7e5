//! The seam between the engine and a joined channel (in Fenix, a channel process):
//! what the engine tells it goes through its [`ChannelSink`].

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use crate::protocol::Message;

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
