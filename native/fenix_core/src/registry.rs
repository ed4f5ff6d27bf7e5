//! Topic -> subscribers, and the fan-out of broadcasts.
//!
//! A broadcast is encoded at most once per serializer; every subscriber gets a clone of
//! the same [`Bytes`] (a reference count, no copy) pushed onto its bounded outbox.
//! Fan-outs run on the engine's outbound task (see `server::outbound`), one after the
//! other, so every subscriber sees a topic's broadcasts in the order they were made.
//!
//! Channels that intercept an event (Phoenix's `intercept/1` + `handle_out/3`) get no
//! frame: the broadcaster hands them the payload itself, through [`Registry::intercepting`],
//! before queueing the fan-out. Interceptors are registered the moment a join is
//! accepted (so a broadcast made right after the join reaches `handle_out`), fan-out
//! subscriptions in the outbound order, after the join reply (so no frame overtakes
//! it). Each topic counts its interceptors per event, so a broadcast nobody
//! intercepts costs no pass over them.
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
    topics: DashMap<String, Topic>,
    socket_ids: DashMap<String, HashMap<u64, Weak<Conn>>>,
}

#[derive(Debug, Default)]
struct Topic {
    /// Fan-out targets.
    subscribers: HashMap<u64, Subscriber>,
    /// Channels that intercept some events, by connection.
    interceptors: HashMap<u64, Interceptor>,
    /// How many interceptors intercept each event.
    intercepted: HashMap<String, usize>,
}

#[derive(Debug)]
struct Interceptor {
    intercepts: Arc<[String]>,
    sink: Sink,
}

impl Topic {
    fn remove_interceptor(&mut self, conn_id: u64) {
        let Some(old) = self.interceptors.remove(&conn_id) else { return };
        for event in old.intercepts.iter() {
            if let Some(count) = self.intercepted.get_mut(event) {
                *count -= 1;
                if *count == 0 {
                    self.intercepted.remove(event);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.interceptors.is_empty()
    }
}

/// One connection's subscription to a topic.
#[derive(Debug, Clone)]
pub struct Subscriber {
    conn: Arc<Conn>,
    /// The events its channel intercepts: no frame for those.
    intercepts: Arc<[String]>,
}

/// What a broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers whose outbox was full (they are disconnected) or closing.
    pub dropped: usize,
}

impl Registry {
    /// Subscribes `conn`'s channel `sink` to `topic`; `intercepts` lists the events the
    /// channel wants to see in `handle_out` instead of having them sent directly.
    /// The same as [`Registry::add_interceptor`] and [`Registry::subscribe_fanout`] at once.
    pub fn subscribe(&self, topic: &str, conn: &Arc<Conn>, sink: Sink, intercepts: Arc<[String]>) {
        self.add_interceptor(topic, conn.id(), sink, Arc::clone(&intercepts));
        self.subscribe_fanout(topic, conn, intercepts);
    }

    /// Registers `conn`'s channel as an interceptor of `intercepts` on `topic` (a no-op
    /// when it intercepts nothing).
    pub fn add_interceptor(&self, topic: &str, conn_id: u64, sink: Sink, intercepts: Arc<[String]>) {
        if intercepts.is_empty() {
            return;
        }
        let mut entry = self.topics.entry(topic.to_owned()).or_default();
        entry.remove_interceptor(conn_id);
        for event in intercepts.iter() {
            *entry.intercepted.entry(event.clone()).or_default() += 1;
        }
        entry.interceptors.insert(conn_id, Interceptor { intercepts, sink });
    }

    /// Makes `conn` a fan-out target of `topic`, but for the events in `intercepts`.
    pub fn subscribe_fanout(&self, topic: &str, conn: &Arc<Conn>, intercepts: Arc<[String]>) {
        let subscriber = Subscriber { conn: Arc::clone(conn), intercepts };
        self.topics.entry(topic.to_owned()).or_default().subscribers.insert(conn.id(), subscriber);
    }

    /// Removes `conn` from `topic`, as a fan-out target and as an interceptor.
    pub fn unsubscribe(&self, topic: &str, conn_id: u64) {
        self.topics.remove_if_mut(topic, |_, entry| {
            entry.subscribers.remove(&conn_id);
            entry.remove_interceptor(conn_id);
            entry.is_empty()
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
        self.topics.get(topic).map_or(0, |entry| entry.subscribers.len())
    }

    /// How many subscribers of `topic` intercept `event`.
    pub fn interceptor_count(&self, topic: &str, event: &str) -> usize {
        self.topics.get(topic).and_then(|entry| entry.intercepted.get(event).copied()).unwrap_or(0)
    }

    /// Passes the sink of every subscriber of `topic` (but `exclude`) that intercepts
    /// `event` to `intercept`; returns how many. Those subscribers get no frame from
    /// [`Registry::broadcast`]: the caller delivers the payload to them itself.
    pub fn intercepting(&self, topic: &str, event: &str, exclude: Option<u64>, mut intercept: impl FnMut(&Sink)) -> usize {
        let Some(entry) = self.topics.get(topic) else { return 0 };
        if !entry.intercepted.contains_key(event) {
            return 0;
        }
        let mut count = 0;
        for (id, interceptor) in &entry.interceptors {
            if Some(*id) != exclude && interceptor.intercepts.iter().any(|e| e == event) {
                intercept(&interceptor.sink);
                count += 1;
            }
        }
        count
    }

    /// How many topics have subscribers.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Broadcasts `event` with `body` to every subscriber of `topic` but `exclude`,
    /// except those that intercept `event` (see [`Registry::intercepting`]).
    ///
    /// Called by the engine's outbound task; applications call `Server::broadcast`.
    pub fn broadcast(&self, topic: &str, event: &str, body: Body<'_>, exclude: Option<u64>) -> Delivery {
        if event == DISCONNECT_EVENT {
            self.disconnect_socket_id(topic);
        }
        let mut delivery = Delivery::default();
        let Some(entry) = self.topics.get(topic) else { return delivery };
        let intercepted = entry.intercepted.contains_key(event);
        let message = Outgoing::broadcast(topic, event, body);
        let mut frames: [Option<Option<Bytes>>; 2] = [None, None];
        for (id, subscriber) in &entry.subscribers {
            if Some(*id) == exclude || (intercepted && subscriber.intercepts.iter().any(|e| e == event)) {
                continue;
            }
            let serializer = subscriber.conn.serializer();
            let encoded = frames[serializer.index()].get_or_insert_with(|| encode(serializer, &message));
            // A body the serializer cannot carry (binary for vsn 1.0.0) is skipped.
            let Some(frame) = encoded else { continue };
            // A full outbox closes that connection (Conn::send); the others go on.
            match subscriber.conn.send(frame.clone()) {
                Ok(()) => delivery.queued += 1,
                Err(_) => delivery.dropped += 1,
            }
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
