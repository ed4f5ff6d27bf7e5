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
use std::sync::{Arc, Mutex, Weak};

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
    /// One shared copy of each intercept list: every channel of a module has the same
    /// list, so a member costs a reference count, not a copy. The lists come from the
    /// channel modules (`intercept/1`), never from clients, so this stays small.
    intercept_lists: Mutex<HashMap<Vec<String>, Arc<[String]>>>,
}

#[derive(Debug, Default)]
struct Topic {
    members: HashMap<u64, Member>,
    /// How many members intercept each event (a few events at most: a small vector).
    intercepted: Vec<(String, usize)>,
}

/// A joined channel of one connection.
#[derive(Debug)]
struct Member {
    /// Set once the member is a fan-out target (in the outbound order, after its join reply).
    conn: Option<Arc<Conn>>,
    /// The events its channel intercepts: handed to the broadcaster, no frame.
    intercepts: Arc<[String]>,
    sink: Sink,
}

impl Topic {
    fn add(&mut self, conn_id: u64, member: Member) {
        self.remove(conn_id);
        for event in member.intercepts.iter() {
            match self.intercepted.iter_mut().find(|(e, _)| e == event) {
                Some((_, count)) => *count += 1,
                None => {
                    self.intercepted.reserve_exact(1);
                    self.intercepted.push((event.clone(), 1));
                }
            }
        }
        self.members.insert(conn_id, member);
    }

    fn remove(&mut self, conn_id: u64) {
        let Some(old) = self.members.remove(&conn_id) else { return };
        for event in old.intercepts.iter() {
            if let Some(i) = self.intercepted.iter().position(|(e, _)| e == event) {
                self.intercepted[i].1 -= 1;
                if self.intercepted[i].1 == 0 {
                    self.intercepted.swap_remove(i);
                }
            }
        }
    }

    fn interceptors(&self, event: &str) -> usize {
        self.intercepted.iter().find(|(e, _)| e == event).map_or(0, |(_, count)| *count)
    }
}

/// One message of [`Registry::broadcast_all`].
#[derive(Debug, Clone, Copy)]
pub struct Broadcast<'a> {
    /// The event name.
    pub event: &'a str,
    /// The payload.
    pub body: Body<'a>,
    /// A connection that does not get it (`broadcast_from`).
    pub exclude: Option<u64>,
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
    /// The same as [`Registry::join`] and [`Registry::activate`] at once.
    pub fn subscribe(&self, topic: &str, conn: &Arc<Conn>, sink: Sink, intercepts: Arc<[String]>) {
        self.join(topic, conn.id(), sink, intercepts);
        self.activate(topic, conn);
    }

    /// The shared copy of the intercept list `events`.
    pub fn intern_intercepts(&self, events: &[String]) -> Arc<[String]> {
        if events.is_empty() {
            return Arc::new([]);
        }
        let mut lists = self.intercept_lists.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match lists.get(events) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared: Arc<[String]> = events.into();
                lists.insert(events.to_vec(), Arc::clone(&shared));
                shared
            }
        }
    }

    /// Adds a channel that just joined: from now on it gets the events it intercepts
    /// (see [`Registry::intercepting`]), but no frame until [`Registry::activate`].
    pub fn join(&self, topic: &str, conn_id: u64, sink: Sink, intercepts: Arc<[String]>) {
        let member = Member { conn: None, intercepts, sink };
        self.topics.entry(topic.to_owned()).or_default().add(conn_id, member);
    }

    /// Makes `conn`'s channel on `topic` a fan-out target (a no-op if it has left).
    pub fn activate(&self, topic: &str, conn: &Arc<Conn>) {
        if let Some(mut entry) = self.topics.get_mut(topic) {
            if let Some(member) = entry.members.get_mut(&conn.id()) {
                member.conn = Some(Arc::clone(conn));
            }
        }
    }

    /// Removes `conn`'s channel from `topic`.
    pub fn unsubscribe(&self, topic: &str, conn_id: u64) {
        self.topics.remove_if_mut(topic, |_, entry| {
            entry.remove(conn_id);
            entry.members.is_empty()
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
        self.topics.get(topic).map_or(0, |entry| entry.members.values().filter(|m| m.conn.is_some()).count())
    }

    /// How many channels on `topic` intercept `event`.
    pub fn interceptor_count(&self, topic: &str, event: &str) -> usize {
        self.topics.get(topic).map_or(0, |entry| entry.interceptors(event))
    }

    /// Passes the sink of every subscriber of `topic` (but `exclude`) that intercepts
    /// `event` to `intercept`; returns how many. Those subscribers get no frame from
    /// [`Registry::broadcast`]: the caller delivers the payload to them itself.
    pub fn intercepting(&self, topic: &str, event: &str, exclude: Option<u64>, mut intercept: impl FnMut(&Sink)) -> usize {
        let Some(entry) = self.topics.get(topic) else { return 0 };
        if entry.interceptors(event) == 0 {
            return 0;
        }
        let mut count = 0;
        for (id, member) in &entry.members {
            if Some(*id) != exclude && member.intercepts.iter().any(|e| e == event) {
                intercept(&member.sink);
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
        self.broadcast_all(topic, &[Broadcast { event, body, exclude }])
    }

    /// Broadcasts several messages to `topic`, in order, going over the subscribers
    /// once: each gets all of its frames with one push (one lock, one cache miss)
    /// instead of one push per message. The outbound task groups consecutive
    /// broadcasts to a topic this way (a `blast` is 1,000 of them).
    pub fn broadcast_all(&self, topic: &str, messages: &[Broadcast<'_>]) -> Delivery {
        if messages.iter().any(|m| m.event == DISCONNECT_EVENT) {
            self.disconnect_socket_id(topic);
        }
        let mut delivery = Delivery::default();
        let Some(entry) = self.topics.get(topic) else { return delivery };
        // Every subscriber gets every message unless some are excluded or intercepted.
        let uniform = messages.iter().all(|m| m.exclude.is_none() && entry.interceptors(m.event) == 0);
        let mut encoded: [Option<Vec<Option<Bytes>>>; 2] = [None, None];
        let mut uniform_frames: [Option<Vec<Bytes>>; 2] = [None, None];
        let mut filtered = Vec::new();
        for (id, member) in &entry.members {
            let Some(conn) = &member.conn else { continue };
            let serializer = conn.serializer();
            let frames = encoded[serializer.index()].get_or_insert_with(|| {
                // A body the serializer cannot carry (binary for vsn 1.0.0) has no frame.
                messages.iter().map(|m| encode(serializer, &Outgoing::broadcast(topic, m.event, m.body))).collect()
            });
            let batch: &[Bytes] = if uniform {
                uniform_frames[serializer.index()].get_or_insert_with(|| frames.iter().flatten().cloned().collect())
            } else {
                filtered.clear();
                for (message, frame) in messages.iter().zip(frames.iter()) {
                    let skip = message.exclude == Some(*id) || member.intercepts.iter().any(|e| e == message.event);
                    if let (false, Some(frame)) = (skip, frame) {
                        filtered.push(frame.clone());
                    }
                }
                &filtered
            };
            if batch.is_empty() {
                continue;
            }
            // A full outbox closes that connection (Conn::send_all); the others go on.
            match conn.send_all(batch) {
                Ok(()) => delivery.queued += batch.len(),
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
            tracing::debug!(%error, topic = message.topic(), "broadcast not sent to {serializer:?} subscribers");
            None
        }
    }
}
