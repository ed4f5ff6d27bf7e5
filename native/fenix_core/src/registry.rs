//! Topic -> subscribers, and the fan-out of broadcasts.
//!
//! A broadcast is encoded at most once per serializer; every subscriber gets a clone of
//! the same [`Bytes`] (a reference count, no copy) pushed onto its bounded outbox.
//! Fan-outs to one topic hold that topic's entry exclusively, so every subscriber sees
//! a topic's broadcasts in the order they were made. Subscribers whose channel
//! intercepts the event are handed to the caller instead, which delivers the payload
//! to the channel (Phoenix's `handle_out/3`).
//!
//! Socket ids (`Fenix.Socket.id/1`) live in a second map: a broadcast of `disconnect`
//! to an id closes every connection with that id.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use dashmap::DashMap;

use crate::handler::Sink;
use crate::protocol::{Body, Outgoing, Serializer};
use crate::server::Conn;
use crate::websocket::{frame, CloseCode};

/// The event that, broadcast to a socket id, disconnects that socket's connections.
pub const DISCONNECT_EVENT: &str = "disconnect";

/// The engine's topic registry.
#[derive(Debug, Default)]
pub struct Registry {
    topics: DashMap<String, HashMap<u64, Subscriber>>,
    socket_ids: DashMap<String, HashMap<u64, Weak<Conn>>>,
}

/// One connection's subscription to a topic.
#[derive(Debug, Clone)]
pub struct Subscriber {
    conn: Arc<Conn>,
    intercepts: Arc<[String]>,
    sink: Sink,
}

/// What a broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers handed to the caller because they intercept the event.
    pub intercepted: usize,
    /// Subscribers disconnected because their outbox was full.
    pub dropped: usize,
}

impl Registry {
    /// Subscribes `conn`'s channel `sink` to `topic`; `intercepts` lists the events the
    /// channel wants to see in `handle_out` instead of having them sent directly.
    pub fn subscribe(&self, topic: &str, conn: &Arc<Conn>, sink: Sink, intercepts: Arc<[String]>) {
        let subscriber = Subscriber { conn: Arc::clone(conn), intercepts, sink };
        self.topics.entry(topic.to_owned()).or_default().insert(conn.id(), subscriber);
    }

    /// Removes `conn` from `topic`.
    pub fn unsubscribe(&self, topic: &str, conn_id: u64) {
        self.topics.remove_if_mut(topic, |_, subscribers| {
            subscribers.remove(&conn_id);
            subscribers.is_empty()
        });
    }

    /// Registers `conn` under its socket id.
    pub fn register_socket_id(&self, id: &str, conn: &Arc<Conn>) {
        self.socket_ids.entry(id.to_owned()).or_default().insert(conn.id(), Arc::downgrade(conn));
    }

    /// Removes `conn` from its socket id.
    pub fn unregister_socket_id(&self, id: &str, conn_id: u64) {
        self.socket_ids.remove_if_mut(id, |_, conns| {
            conns.remove(&conn_id);
            conns.is_empty()
        });
    }

    /// How many connections subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |subscribers| subscribers.len())
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Broadcasts `event` with `body` to every subscriber of `topic` but `exclude`.
    ///
    /// Subscribers that intercept `event` are passed to `intercept` (while the topic is
    /// held, so that their order is kept too) and get nothing queued.
    pub fn broadcast(
        &self,
        topic: &str,
        event: &str,
        body: Body<'_>,
        exclude: Option<u64>,
        mut intercept: impl FnMut(&Sink),
    ) -> Delivery {
        if event == DISCONNECT_EVENT {
            self.disconnect_socket_id(topic);
        }
        let mut delivery = Delivery::default();
        let mut slow = Vec::new();
        if let Some(subscribers) = self.topics.get_mut(topic) {
            let message = Outgoing::broadcast(topic, event, body);
            let mut frames: [Option<Option<Bytes>>; 2] = [None, None];
            for (id, subscriber) in subscribers.iter() {
                if Some(*id) == exclude {
                    continue;
                }
                if subscriber.intercepts.iter().any(|e| e == event) {
                    intercept(&subscriber.sink);
                    delivery.intercepted += 1;
                    continue;
                }
                let serializer = subscriber.conn.serializer();
                let encoded = frames[serializer.index()].get_or_insert_with(|| encode(serializer, &message));
                // A body the serializer cannot carry (binary for vsn 1.0.0) is skipped.
                let Some(frame) = encoded else { continue };
                match subscriber.conn.send(frame.clone()) {
                    Ok(()) => delivery.queued += 1,
                    Err(_) => slow.push(Arc::clone(&subscriber.conn)),
                }
            }
        }
        // Closing unsubscribes, which needs the topic entry: only after it is released.
        delivery.dropped = slow.len();
        for conn in slow {
            conn.close_slow_reader();
        }
        delivery
    }

    fn disconnect_socket_id(&self, id: &str) {
        let conns: Vec<Arc<Conn>> = match self.socket_ids.get(id) {
            Some(conns) => conns.values().filter_map(Weak::upgrade).collect(),
            None => return,
        };
        for conn in conns {
            conn.close(CloseCode::GoingAway, "");
        }
    }
}

fn encode(serializer: Serializer, message: &Outgoing<'_>) -> Option<Bytes> {
    match frame::try_encode(|out| serializer.encode(message, out)) {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::debug!(%error, topic = message.topic, "broadcast not sent to {serializer:?} subscribers");
            None
        }
    }
}
