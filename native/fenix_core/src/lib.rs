//! The engine of Fenix: everything on the hot path of a Phoenix Channels server that
//! does not need the BEAM.
//!
//! - [`protocol`]: the channel wire protocol (serializers `1.0.0` and `2.0.0`).
//! - [`websocket`]: RFC 6455 framing and the opening handshake.
//! - [`registry`]: topic -> subscribers, and the fan-out of broadcasts.
//! - [`server`]: the tokio HTTP/WebSocket server and the per-connection state machine.
//!
//! The application side (user callbacks, channel processes) is reached through the
//! [`Handler`] and [`ChannelSink`] traits; `fenix_nif` implements them by sending
//! messages to BEAM processes, and this crate's tests implement them in plain Rust.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unused_must_use)]

mod error;
mod handler;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod websocket;

pub use error::{CapacityError, EncodeError, Error, ProtocolError, Result};
pub use handler::{ChannelEvent, ChannelSink, ClosedReason, ConnectRequest, Handler, JoinRequest, Sink};
