//! RFC 6455: the opening handshake and the framing.
//!
//! The server never builds a frame per subscriber: [`frame::encode`] writes the header
//! in front of an already encoded message once, and the resulting [`bytes::Bytes`] are
//! shared by every connection that sends it. Client frames are parsed in place
//! ([`frame::Header::parse`]) and unmasked in the read buffer, one frame at a time
//! ([`Reader`]), so that the session can stop between two messages.

pub mod frame;
mod handshake;
mod reader;

pub use frame::{CloseCode, Header, Opcode};
pub use handshake::accept_key;
pub use reader::{Frame, Read, Reader};
