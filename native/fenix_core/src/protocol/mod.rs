//! The Phoenix channel wire protocol.
//!
//! One message model ([`Message`] in, [`Outgoing`] out) and one [`Serializer`] per
//! protocol version that maps it to bytes:
//!
//! - `1.0.0`: JSON objects `{"topic":..,"event":..,"payload":..,"ref":..,"join_ref":..}`;
//! - `2.0.0`: JSON arrays `[join_ref, ref, topic, event, payload]`, plus binary frames
//!   for binary payloads.
//!
//! A message's `ref` and `join_ref` are whatever JSON value the client sent
//! ([`ClientRef`]), echoed back as they came.
//!
//! Payloads travel as already-encoded JSON bytes on the way out, so a broadcast is
//! encoded once and the same bytes go to every subscriber of a serializer. Everything
//! here is pure: no I/O, no allocation beyond the output buffer.
//!
//! The modules form a tree, each using only those below it:
//!
//! ```text
//! serializer          picks the codec of a connection's vsn
//! ├── v1              1.0.0 JSON objects
//! ├── v2              2.0.0 JSON arrays, binary bodies through binary
//! │   └── binary      2.0.0 binary frames
//! ├── message         Message / Outgoing / Body / Encoded: the model
//! │   └── client_ref  ClientRef: a client's ref or join_ref, any JSON value
//! ├── json            JSON-writing helpers (also used by the NIF)
//! └── event           wire names of events and statuses
//! ```
//!
//! Decoding errors are the peer's ([`crate::ProtocolError`]: the connection closes);
//! encoding errors are ours ([`crate::EncodeError`]: that one message is not sent).
//! Each module's unit tests check exact bytes against frames captured from Phoenix.

mod binary;
mod client_ref;
mod event;
pub mod json;
mod message;
mod serializer;
mod v1;
mod v2;

pub use client_ref::ClientRef;
pub use event::{Event, Status};
pub use message::{Body, ChannelEnd, Encoded, Message, Outgoing, Payload};
pub use serializer::Serializer;

/// The topic of heartbeats.
pub const HEARTBEAT_TOPIC: &str = "phoenix";
