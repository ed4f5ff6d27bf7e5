//! A joined channel, as the application holds it.
//!
//! [`Conn::joined`](super::Conn::joined) hands one to the channel (in Fenix, to the
//! channel process, inside a NIF resource): everything the channel sends to its client
//! and every message it has handled goes through it. It also keeps the channel's share
//! of the connection's inbound credit, so that what a channel still holds when it ends
//! (a crash with a full mailbox) is given back to the connection at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::conn::Conn;
use super::outbound::{Pace, Sender};
use crate::error::Result;
use crate::protocol::{Body, ClientRef, Event, Outgoing, Status};

/// A joined channel of a connection.
#[derive(Debug)]
pub struct Channel {
    conn: Arc<Conn>,
    topic: String,
    join_ref: Option<ClientRef>,
    /// Client messages handed to the channel and not handled yet, in one word (every
    /// joined channel has one): [`ENDED`], then the count ([`MESSAGE`] each), then the
    /// bytes ([`BYTES`]). The connection's credit bounds both far below their fields.
    unhandled: AtomicU64,
}

/// The channel left the connection: its credit went back already.
const ENDED: u64 = 1 << 63;
/// One message in the count.
const MESSAGE: u64 = 1 << 40;
/// The bytes' field.
const BYTES: u64 = MESSAGE - 1;

impl Channel {
    pub(crate) fn new(conn: Arc<Conn>, topic: String, join_ref: Option<ClientRef>) -> Channel {
        Channel { conn, topic, join_ref, unhandled: AtomicU64::new(0) }
    }

    /// The id of the channel's connection (to leave it out of a broadcast).
    pub fn conn_id(&self) -> u64 {
        self.conn.id()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The join's `join_ref`, which every message of the channel carries.
    pub fn join_ref(&self) -> Option<&ClientRef> {
        self.join_ref.as_ref()
    }

    /// Replies to the client message `ref`, after everything `sender` sent before.
    pub fn reply(&self, sender: Sender<'_>, r#ref: Option<&ClientRef>, status: Status<'_>, body: Body<'_>) -> Result<Pace> {
        self.conn.send_app(sender, &Outgoing::reply(self.join_ref(), r#ref, &self.topic, status, body))
    }

    /// Pushes `event` to the client, after everything `sender` sent before.
    pub fn push(&self, sender: Sender<'_>, event: &str, body: Body<'_>) -> Result<Pace> {
        self.conn.send_app(sender, &Outgoing::push(self.join_ref(), &self.topic, event, body))
    }

    /// The channel stops on its own (`{:stop, ...}` or after a leave): `phx_close`.
    /// Returns false when the channel was no longer joined.
    pub fn close(&self, sender: Sender<'_>) -> bool {
        self.conn.end_channel(sender, &self.topic, self.join_ref(), Event::Close)
    }

    /// The channel crashed: `phx_error`, after what it sent before. Returns false when
    /// the channel was no longer joined (it had closed itself first).
    pub fn crashed(&self, sender: Sender<'_>) -> bool {
        self.conn.end_channel(sender, &self.topic, self.join_ref(), Event::Error)
    }

    /// The channel has handled a client message of `bytes`: its credit goes back to the
    /// connection, whose reader may go on.
    pub fn handled(&self, bytes: usize) {
        let mut current = self.unhandled.load(Ordering::SeqCst);
        loop {
            if current & ENDED != 0 || current < MESSAGE {
                return; // ended (credit already back), or nothing handed
            }
            let bytes = (bytes as u64).min(current & BYTES);
            match self.unhandled.compare_exchange_weak(current, current - MESSAGE - bytes, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.conn.credit.give_back(1, bytes as usize, self.conn.credit_limits());
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// The reader handed the channel a message of `bytes`. Called under the
    /// connection's lock, so never after [`Channel::ended`].
    pub(crate) fn delivered(&self, bytes: usize) {
        self.unhandled.fetch_add(MESSAGE + (bytes as u64).min(BYTES), Ordering::SeqCst);
        self.conn.credit.take(bytes);
    }

    /// The channel left the connection: whatever it still holds is given back.
    pub(crate) fn ended(&self) {
        let before = self.unhandled.fetch_or(ENDED, Ordering::SeqCst);
        if before & ENDED == 0 {
            let messages = ((before & !ENDED) / MESSAGE) as usize;
            self.conn.credit.give_back(messages, (before & BYTES) as usize, self.conn.credit_limits());
        }
    }
}
