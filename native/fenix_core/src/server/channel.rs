//! A joined channel, as the application holds it.
//!
//! [`Conn::joined`](super::Conn::joined) hands one to the channel (in Fenix, to the
//! channel process, inside a NIF resource): everything the channel sends to its client
//! and every message it has handled goes through it. It also keeps the channel's share
//! of the connection's inbound credit, so that what a channel still holds when it ends
//! (a crash with a full mailbox) is given back to the connection at once.

use std::sync::Arc;

use super::conn::Conn;
use super::credit::Share;
use super::outbound::{Pace, Sender};
use crate::error::Result;
use crate::protocol::{Body, ClientRef, Event, Outgoing, Status};

/// A joined channel of a connection.
#[derive(Debug)]
pub struct Channel {
    conn: Arc<Conn>,
    topic: String,
    join_ref: Option<ClientRef>,
    /// Client messages handed to the channel and not handled yet.
    unhandled: Share,
}

impl Channel {
    pub(crate) fn new(conn: Arc<Conn>, topic: String, join_ref: Option<ClientRef>) -> Channel {
        Channel { conn, topic, join_ref, unhandled: Share::default() }
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
        self.unhandled.handled(bytes, &self.conn.credit, self.conn.credit_limits());
    }

    /// The reader handed the channel a message of `bytes`. Called under the
    /// connection's lock, so never after [`Channel::ended`].
    pub(crate) fn delivered(&self, bytes: usize) {
        self.unhandled.delivered(bytes, &self.conn.credit);
    }

    /// The channel left the connection: whatever it still holds is given back.
    pub(crate) fn ended(&self) {
        self.unhandled.ended(&self.conn.credit, self.conn.credit_limits());
    }
}
