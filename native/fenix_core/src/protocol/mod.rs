//! The Phoenix channel wire protocol.
//!
//! One message model ([`Message`] in, [`Outgoing`] out) and one [`Serializer`] per
//! protocol version that maps it to bytes:
//!
//! - `1.0.0`: JSON objects `{"topic":..,"event":..,"payload":..,"ref":..,"join_ref":..}`;
//! - `2.0.0`: JSON arrays `[join_ref, ref, topic, event, payload]`, plus binary frames
//!   for binary payloads.
//!
//! Payloads travel as already-encoded JSON bytes on the way out, so a broadcast is
//! encoded once and the same bytes go to every subscriber of a serializer. Everything
//! here is pure: no I/O, no allocation beyond the output buffer.

mod binary;
mod event;
pub mod json;
mod message;
mod serializer;
mod v1;
mod v2;

pub use event::{Event, Status};
pub use message::{Body, Encoded, Message, Outgoing, Payload};
pub use serializer::Serializer;

/// The topic of heartbeats.
pub const HEARTBEAT_TOPIC: &str = "phoenix";
