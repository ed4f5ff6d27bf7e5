//! RFC 6455: the opening handshake, the framing and the close codes.
//!
//! [`check_upgrade`] decides whether an HTTP request is an upgrade the server accepts
//! (and which status refuses it), [`accept_key`] answers it. The server never builds a
//! frame per subscriber: [`frame::encode`] writes the header in front of an already
//! encoded message once, and the resulting [`bytes::Bytes`] are shared by every
//! connection that sends it. Client frames are parsed in place ([`frame::Header::parse`])
//! and unmasked in the read buffer, one frame at a time ([`Reader`]), so that the session
//! can stop between two messages. [`CloseCode::echo`] answers a client's close frame.

mod close;
pub mod frame;
mod handshake;
mod reader;

pub use close::CloseCode;
pub use frame::{Header, Opcode};
pub use handshake::{accept_key, check_upgrade, HandshakeError, SUPPORTED_VERSION};
pub use reader::{Frame, Read, Reader};
