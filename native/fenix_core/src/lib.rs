//! The engine of Fenix: everything on the hot path of a Phoenix Channels server that
//! does not need the BEAM.
//!
//! - [`protocol`]: the channel wire protocol (serializers `1.0.0` and `2.0.0`).
//! - [`websocket`]: RFC 6455 framing and the opening handshake.
//! - [`registry`]: topic -> members, [`fanout`]: broadcasts encoded once and queued to
//!   every member, [`socket_ids`]: the `disconnect` broadcast's targets. Pure data
//!   structures, generic over the [`registry::Subscriber`] they queue to.
//! - [`presence`]: a topic's presence state and its diffs, coalesced per tick and
//!   encoded as the `presence_state` and `presence_diff` payloads. Pure data.
//! - [`pubsub`]: topic -> subscribed processes, for a PubSub server's broadcasts. Pure
//!   data.
//! - [`server`]: the tokio HTTP/WebSocket server: sessions, the per-connection channel
//!   rules, inbound credit, and the per-sender lanes that carry out what the
//!   application sends.
//!
//! - `fuzz_api` (feature `fuzzing`): what the fuzz targets of `fuzz/` call.
//!
//! The layers only look down: `protocol` <- `websocket` <- `registry`/`fanout` <-
//! `server`. The application side (user callbacks, channel processes) is reached
//! through the [`Handler`] and [`ChannelSink`] traits; `fenix_nif` implements them by
//! sending messages to BEAM processes, and this crate's tests implement them in plain
//! Rust.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unused_must_use)]

mod error;
pub mod fault;
pub mod fanout;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_api;
pub mod presence;
pub mod protocol;
pub mod pubsub;
pub mod registry;
pub mod server;
mod sink;
pub mod socket_ids;
pub mod websocket;

pub use error::{CapacityError, EncodeError, Error, ProtocolError, Result};
pub use server::{ConnectRequest, Handler, JoinRequest};
pub use sink::{ChannelEvent, ChannelSink, ClosedReason, Sink};
