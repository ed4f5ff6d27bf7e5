//! A joined channel, as the application holds it.
//!
//! [`Conn::joined`](super::Conn::joined) hands one to the channel (in Fenix, to the
//! channel process, inside a NIF resource): everything the channel sends to its client
//! and every message it has handled goes through it. It also keeps the channel's share
//! of the connection's inbound credit, so that what a channel still holds when it ends
//! (a crash with a full mailbox) is given back to the connection at once.

use std::sync::{Arc, Mutex, MutexGuard};

use super::conn::Conn;
use super::outbound::{Pace, Sender};
use crate::error::Result;
use crate::protocol::{Body, Event, Outgoing, Status};

/// A joined channel of a connection.
#[derive(Debug)]
pub struct Channel {
    conn: Arc<Conn>,
    topic: String,
    join_ref: Option<String>,
    unhandled: Mutex<Unhandled>,
}

/// Client messages handed to the channel and not handled yet.
#[derive(Debug, Default)]
struct Unhandled {
    messages: usize,
    bytes: usize,
    /// The channel left the connection: its credit went back already.
    ended: bool,
}

impl Channel {
    pub(crate) fn new(conn: Arc<Conn>, topic: String, join_ref: Option<String>) -> Channel {
        Channel { conn, topic, join_ref, unhandled: Mutex::default() }
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
    pub fn join_ref(&self) -> Option<&str> {
        self.join_ref.as_deref()
    }

    /// Replies to the client message `ref`, after everything `sender` sent before.
    pub fn reply(&self, sender: Sender<'_>, r#ref: Option<&str>, status: Status<'_>, body: Body<'_>) -> Result<Pace> {
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
        let mut unhandled = self.lock();
        if unhandled.ended || unhandled.messages == 0 {
            return;
        }
        let bytes = bytes.min(unhandled.bytes);
        unhandled.messages -= 1;
        unhandled.bytes -= bytes;
        drop(unhandled);
        self.conn.credit.give_back(1, bytes);
    }

    /// The reader handed the channel a message of `bytes`. Called under the
    /// connection's lock, so never after [`Channel::ended`].
    pub(crate) fn delivered(&self, bytes: usize) {
        let mut unhandled = self.lock();
        unhandled.messages += 1;
        unhandled.bytes += bytes;
        drop(unhandled);
        self.conn.credit.take(bytes);
    }

    /// The channel left the connection: whatever it still holds is given back.
    pub(crate) fn ended(&self) {
        let mut unhandled = self.lock();
        if unhandled.ended {
            return;
        }
        unhandled.ended = true;
        let (messages, bytes) = (unhandled.messages, unhandled.bytes);
        drop(unhandled);
        self.conn.credit.give_back(messages, bytes);
    }

    fn lock(&self) -> MutexGuard<'_, Unhandled> {
        // Counter updates are single assignments: a panic cannot leave them half-made.
        self.unhandled.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
