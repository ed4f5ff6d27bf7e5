//! The transport of a raw connection (a socket of [`SocketKind::Raw`]), as the
//! application holds it.
//!
//! A raw connection speaks no channel protocol: once the application accepts it
//! ([`Conn::accept_transport`]), each whole message the client sends (text or binary,
//! fragments assembled) goes, as it came, to one receiver, the connection's
//! [`TransportSink`] (in Fenix, the process that runs a `Fenix.Socket.Transport`).
//! The engine still does all of the WebSocket work: framing, UTF-8 checks of text
//! messages (1007), the size limit (1009), pongs, the idle timeout, the close
//! handshake.
//!
//! Bounded both ways, as channel connections are:
//! - every message handed over takes the connection's inbound credit (see `credit.rs`),
//!   given back with [`RawTransport::handled`]: a client that sends faster than its
//!   transport handles is not read (TCP slows it down) instead of filling a mailbox;
//! - what the transport sends ([`RawTransport::push`]) goes through the connection's
//!   bounded outbox, in the sender's order (see `outbound.rs`), and a client that does
//!   not read is dropped as a slow reader.
//!
//! The transport ends the connection with [`RawTransport::close`] (after what it sent),
//! or by dying ([`RawTransport::crashed`], 1011); the connection ending tells the sink
//! [`TransportEvent::Closed`] with why, once.
//!
//! [`SocketKind::Raw`]: super::SocketKind::Raw
//! [`Conn::accept_transport`]: super::Conn::accept_transport
//! [`TransportEvent::Closed`]: crate::TransportEvent::Closed

use std::sync::Arc;

use super::conn::Conn;
use super::credit::Share;
use super::outbound::{Pace, Sender};
use crate::error::Result;
use crate::protocol::Encoded;
use crate::sink::{DataKind, TransportSinkRef};
use crate::websocket::{frame, CloseCode};

/// The close reason sent when the transport dies without closing the connection.
const CRASH_REASON: &str = "transport process exited";

/// A raw connection's transport, as the application holds it.
#[derive(Debug)]
pub struct RawTransport {
    conn: Arc<Conn>,
    /// Messages handed to the transport and not handled yet: taken by the reader,
    /// given back here, and all at once when the connection ends (`Conn::finalize_as`).
    pub(crate) unhandled: Share,
}

/// What the reader of a raw connection hands messages to: the transport's handle (for
/// the credit) and its sink, taken once when the session starts.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) transport: Arc<RawTransport>,
    pub(crate) sink: TransportSinkRef,
    /// Whether the transport is told of pings and pongs.
    pub(crate) wants_control: bool,
}

impl RawTransport {
    pub(crate) fn new(conn: Arc<Conn>) -> RawTransport {
        RawTransport { conn, unhandled: Share::default() }
    }

    /// The id of the connection.
    pub fn conn_id(&self) -> u64 {
        self.conn.id()
    }

    /// Sends `data` to the client as one message of `kind`, after everything `sender`
    /// sent before. `Err(Closed)` once the connection is closing.
    pub fn push(&self, sender: Sender<'_>, kind: DataKind, data: &[u8]) -> Result<Pace> {
        let frame = frame::encode(|out| {
            out.extend_from_slice(data);
            match kind {
                DataKind::Text => Encoded::Text,
                DataKind::Binary => Encoded::Binary,
            }
        });
        self.conn.send_frame_app(sender, frame)
    }

    /// Closes the connection with `code`, after everything `sender` sent before.
    pub fn close(&self, sender: Sender<'_>, code: CloseCode) -> Pace {
        self.conn.close_app(sender, code, "")
    }

    /// The transport died without closing the connection: it is closed with 1011,
    /// after what it had sent. Nothing happens if it was closing already.
    pub fn crashed(&self, sender: Sender<'_>) {
        // The dead sender cannot wait: what it had waiting is carried out regardless.
        let _ = self.conn.close_app(sender, CloseCode::Internal, CRASH_REASON);
    }

    /// The transport has handled a message (or control frame) of `bytes`: its credit
    /// goes back to the connection, whose reader may go on.
    pub fn handled(&self, bytes: usize) {
        self.unhandled.handled(bytes, &self.conn.credit, self.conn.credit_limits());
    }
}
