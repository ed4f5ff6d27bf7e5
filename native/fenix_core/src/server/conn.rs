//! One WebSocket connection: its channels and the rules of the channel protocol.
//!
//! A [`Conn`] is shared between its session task (which reads frames and calls
//! [`Conn::handle_message`]), the application (which answers joins and pushes, replies
//! and closes through the methods below, from any thread), and the registry (which
//! queues broadcasts). Every method is short and never blocks on I/O: frames go to the
//! bounded [`Outbox`] that the session's writer drains. What the reader answers itself
//! goes there directly; what the application sends goes through the engine's ordered
//! outbound queue first (see `outbound.rs`), so it keeps the order it was sent in,
//! broadcasts included.
//!
//! Channel slots follow Phoenix 1.8's socket:
//! - a `phx_join` creates a `Joining` slot; messages for the topic are held until the
//!   application answers, then handed to the channel in order (after the join reply,
//!   which also goes out before any broadcast); if the join fails they are answered as
//!   for a topic not joined, as Phoenix's socket does once the join returned;
//! - a join of an already joined topic closes the old channel: the new join's reply
//!   goes out first, then `phx_close` for the old `join_ref`;
//! - messages carrying another `join_ref` than the topic's current one are dropped
//!   (a null `join_ref` is accepted);
//! - messages for a topic that is not joined get `unmatched topic` (a `phx_leave` gets `ok`);
//! - at most `max_channels` topics per connection.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{CapacityError, Error, Result};
use crate::handler::{ChannelEvent, ClosedReason, JoinRequest, Sink};
use crate::protocol::{Body, Event, Message, Outgoing, Serializer, Status, HEARTBEAT_TOPIC};
use crate::server::outbound::Op;
use crate::server::outbox::{Outbox, PushError};
use crate::server::{Shared, SocketConfig};
use crate::websocket::{frame, CloseCode};

/// How many client messages are held per topic while its join is answered; a client
/// that sends more is closed (1008). The phoenix client sends nothing before the reply.
const HELD_LIMIT: usize = 64;

const EMPTY: &[u8] = b"{}";
const UNMATCHED_TOPIC: &[u8] = br#"{"reason":"unmatched topic"}"#;
const TOO_MANY_CHANNELS: &[u8] = br#"{"reason":"too many channels joined"}"#;

/// A connection.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    serializer: Serializer,
    config: Arc<SocketConfig>,
    shared: Arc<Shared>,
    pub(crate) outbox: Outbox,
    state: Mutex<State>,
}

/// The application's answer to a connect request.
#[derive(Debug)]
pub(crate) enum Decision {
    Accept,
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    decision: Option<oneshot::Sender<Decision>>,
    socket_id: Option<String>,
    socket_data: Bytes,
    channels: Channels,
    finalized: bool,
}

#[derive(Debug)]
enum Slot {
    Joining {
        join_ref: Option<String>,
        held: Vec<Message>,
        /// The `join_ref` of the channel this join replaces, which gets `phx_close` after the reply.
        replaces: Option<Option<String>>,
    },
    Joined {
        join_ref: Option<String>,
        sink: Sink,
    },
}

/// Why the application's answer to a join was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The connection is closed.
    Closed,
    /// The topic was joined again (or left) meanwhile: this join is obsolete.
    Stale,
}

impl Conn {
    pub(crate) fn new(
        id: u64,
        serializer: Serializer,
        config: Arc<SocketConfig>,
        shared: Arc<Shared>,
        decision: oneshot::Sender<Decision>,
    ) -> Conn {
        let outbox = Outbox::new(config.outbox_capacity);
        let state = State { decision: Some(decision), ..State::default() };
        Conn { id, serializer, config, shared, outbox, state: Mutex::new(state) }
    }

    /// The connection's unique id (within its server).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The options of the socket the connection came in on.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    /// The connection's serializer.
    pub fn serializer(&self) -> Serializer {
        self.serializer
    }

    /// Accepts the connection: the upgrade is answered with 101. `socket_id` (Phoenix's
    /// `id/1`) registers it for `disconnect` broadcasts; `socket_data` is handed back
    /// with every join.
    pub fn accept(self: &Arc<Self>, socket_id: Option<String>, socket_data: Bytes) -> Result<()> {
        let mut state = self.lock();
        let decision = state.decision.take().ok_or(Error::Closed)?;
        if let Some(id) = &socket_id {
            self.shared.registry.register_socket_id(id, self);
        }
        state.socket_id = socket_id;
        state.socket_data = socket_data;
        drop(state);
        decision.send(Decision::Accept).map_err(|_| Error::Closed)
    }

    /// Refuses the connection: the upgrade is answered with 403.
    pub fn refuse(&self) -> Result<()> {
        let decision = self.lock().decision.take().ok_or(Error::Closed)?;
        decision.send(Decision::Refuse).map_err(|_| Error::Closed)
    }

    /// Handles a message read from the client. An error means the client broke a
    /// limit and the connection must be closed.
    pub fn handle_message(self: &Arc<Self>, msg: Message) -> Result<(), CapacityError> {
        match msg.event {
            Event::Heartbeat if msg.topic == HEARTBEAT_TOPIC => {
                self.send_reply(Via::Reader, None, msg.r#ref.as_deref(), HEARTBEAT_TOPIC, Status::Ok, EMPTY);
            }
            Event::Join => self.handle_join(msg),
            _ => return self.route(msg),
        }
        Ok(())
    }

    fn handle_join(self: &Arc<Self>, msg: Message) {
        let mut state = self.lock();
        if state.finalized {
            return;
        }
        let (replaces, old_sink) = match state.channels.remove(&msg.topic) {
            Some(Slot::Joined { join_ref, sink }) => {
                self.shared.registry.unsubscribe(&msg.topic, self.id);
                (Some(join_ref), Some(sink))
            }
            // A join still being answered is superseded; its answer will be stale.
            Some(Slot::Joining { replaces, .. }) => (replaces, None),
            None => (None, None),
        };
        if replaces.is_none() && state.channels.len() >= self.config.max_channels {
            drop(state);
            let (join_ref, r#ref) = (msg.join_ref.as_deref(), msg.r#ref.as_deref());
            self.send_reply(Via::Reader, join_ref, r#ref, &msg.topic, Status::Error, TOO_MANY_CHANNELS);
            return;
        }
        let slot = Slot::Joining { join_ref: msg.join_ref.clone(), held: Vec::new(), replaces };
        state.channels.insert(msg.topic.clone(), slot);
        let socket_data = state.socket_data.clone();
        drop(state);
        if let Some(sink) = old_sink {
            sink.deliver(ChannelEvent::Closed(ClosedReason::DuplicateJoin));
        }
        let request =
            JoinRequest { topic: msg.topic, join_ref: msg.join_ref, r#ref: msg.r#ref, payload: msg.payload, socket_data };
        self.shared.handler.join(self, request);
    }

    fn route(self: &Arc<Self>, msg: Message) -> Result<(), CapacityError> {
        let mut state = self.lock();
        let stale = |current: &Option<String>| msg.join_ref.is_some() && msg.join_ref != *current;
        match state.channels.get_mut(&msg.topic) {
            Some(Slot::Joined { join_ref, sink }) => {
                if stale(join_ref) {
                    tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                    return Ok(());
                }
                let sink = Arc::clone(sink);
                drop(state);
                sink.deliver(ChannelEvent::In(msg));
            }
            Some(Slot::Joining { join_ref, held, .. }) => {
                if stale(join_ref) {
                    tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                } else if held.len() >= HELD_LIMIT {
                    return Err(CapacityError::HeldMessages(HELD_LIMIT));
                } else {
                    held.push(msg);
                }
            }
            None => {
                drop(state);
                self.reply_not_joined(Via::Reader, &msg);
            }
        }
        Ok(())
    }

    /// The answer to a message for a topic that is not joined: `unmatched topic`, or
    /// `ok` for a `phx_leave`.
    fn reply_not_joined(self: &Arc<Self>, via: Via, msg: &Message) {
        let (join_ref, status, body) = match msg.event {
            Event::Leave => (msg.join_ref.as_deref(), Status::Ok, EMPTY),
            _ => (None, Status::Error, UNMATCHED_TOPIC),
        };
        self.send_reply(via, join_ref, msg.r#ref.as_deref(), &msg.topic, status, body);
    }

    /// The application accepted a join: the reply `response` goes out, the channel
    /// subscribes to the topic, and the messages held meanwhile are passed to
    /// `deliver_held`, in order, before any later message reaches `sink`.
    pub fn joined(
        self: &Arc<Self>,
        request: &JoinRef<'_>,
        response: Body<'_>,
        sink: Sink,
        intercepts: Arc<[String]>,
        deliver_held: impl FnMut(Message),
    ) -> Result<(), JoinError> {
        let mut state = self.lock();
        let (held, replaces) = self.take_joining(&mut state, request)?;
        let (topic, join_ref) = (request.topic, request.join_ref);
        self.send_reply(Via::App, join_ref, request.r#ref, topic, Status::Ok, response.json_or_empty());
        self.send_replaced_close(topic, replaces);
        // Intercepted events reach the channel process from now on; frames only in the
        // outbound order, after the reply, so that no broadcast overtakes it.
        self.shared.registry.join(topic, self.id, Arc::clone(&sink), intercepts);
        let subscribe = Op::Subscribe { conn: Arc::clone(self), topic: topic.to_owned(), join_ref: join_ref.map(str::to_owned) };
        if self.shared.outbound.submit(subscribe).is_err() {
            // The engine's queue is full: subscribe now rather than not at all.
            self.shared.registry.activate(topic, self);
        }
        state.channels.insert(request.topic.to_owned(), Slot::Joined { join_ref: request.join_ref.map(str::to_owned), sink });
        // Still under the lock: the reader cannot route a newer message before these.
        held.into_iter().for_each(deliver_held);
        Ok(())
    }

    /// The application refused a join (or its join crashed): the error reply goes out,
    /// then the messages held meanwhile are answered as for a topic not joined.
    pub fn join_failed(self: &Arc<Self>, request: &JoinRef<'_>, response: Body<'_>) -> Result<(), JoinError> {
        self.fail_join(request, request.join_ref, response.json_or_empty())
    }

    /// No channel matches the topic: answered as Phoenix answers a message for a topic
    /// not joined (`unmatched topic`, with a null `join_ref`).
    pub fn join_unmatched(self: &Arc<Self>, request: &JoinRef<'_>) -> Result<(), JoinError> {
        self.fail_join(request, None, UNMATCHED_TOPIC)
    }

    fn fail_join(self: &Arc<Self>, request: &JoinRef<'_>, reply_join_ref: Option<&str>, response: &[u8]) -> Result<(), JoinError> {
        let mut state = self.lock();
        let (held, replaces) = self.take_joining(&mut state, request)?;
        self.send_reply(Via::App, reply_join_ref, request.r#ref, request.topic, Status::Error, response);
        self.send_replaced_close(request.topic, replaces);
        // Still under the lock: the reader cannot answer a newer message before these.
        held.iter().for_each(|msg| self.reply_not_joined(Via::App, msg));
        Ok(())
    }

    fn take_joining(
        &self,
        state: &mut State,
        request: &JoinRef<'_>,
    ) -> Result<(Vec<Message>, Option<Option<String>>), JoinError> {
        if state.finalized {
            return Err(JoinError::Closed);
        }
        match state.channels.get(request.topic) {
            Some(Slot::Joining { join_ref, .. }) if join_ref.as_deref() == request.join_ref => {}
            _ => return Err(JoinError::Stale),
        }
        match state.channels.remove(request.topic) {
            Some(Slot::Joining { held, replaces, .. }) => Ok((held, replaces)),
            _ => unreachable!("checked above"),
        }
    }

    fn send_replaced_close(self: &Arc<Self>, topic: &str, replaces: Option<Option<String>>) {
        if let Some(old_join_ref) = replaces {
            let _ = self.send_outgoing(Via::App, &Outgoing::channel_ended(old_join_ref.as_deref(), topic, Event::Close));
        }
    }

    /// A channel stopped on its own (`{:stop, ...}` or after a leave): `phx_close`.
    /// Returns false when the channel was not (or no longer) joined.
    pub fn channel_closed(self: &Arc<Self>, topic: &str, join_ref: Option<&str>) -> bool {
        self.end_channel(topic, join_ref, Event::Close)
    }

    /// A channel crashed: `phx_error`. Returns false when it was not (or no longer) joined.
    pub fn channel_crashed(self: &Arc<Self>, topic: &str, join_ref: Option<&str>) -> bool {
        self.end_channel(topic, join_ref, Event::Error)
    }

    fn end_channel(self: &Arc<Self>, topic: &str, join_ref: Option<&str>, event: Event) -> bool {
        let mut state = self.lock();
        match state.channels.get(topic) {
            Some(Slot::Joined { join_ref: current, .. }) if current.as_deref() == join_ref => {}
            _ => return false,
        }
        state.channels.remove(topic);
        self.shared.registry.unsubscribe(topic, self.id);
        drop(state);
        let _ = self.send_outgoing(Via::App, &Outgoing::channel_ended(join_ref, topic, event));
        true
    }

    /// Sends a `phx_reply`, after everything the application submitted before.
    pub fn reply(
        self: &Arc<Self>,
        join_ref: Option<&str>,
        r#ref: Option<&str>,
        topic: &str,
        status: Status<'_>,
        body: Body<'_>,
    ) -> Result<()> {
        self.send_outgoing(Via::App, &Outgoing::reply(join_ref, r#ref, topic, status, body))
    }

    /// Pushes an event to this client's channel, after everything submitted before.
    pub fn push(self: &Arc<Self>, join_ref: Option<&str>, topic: &str, event: &str, body: Body<'_>) -> Result<()> {
        self.send_outgoing(Via::App, &Outgoing::push(join_ref, topic, event, body))
    }

    fn send_reply(
        self: &Arc<Self>,
        via: Via,
        join_ref: Option<&str>,
        r#ref: Option<&str>,
        topic: &str,
        status: Status<'_>,
        body: &[u8],
    ) {
        let reply = Outgoing::reply(join_ref, r#ref, topic, status, Body::Json(body));
        // The engine's queue is full: a client waiting for this reply (a join's, most
        // often) must still get it, even if it overtakes queued frames. Closed, or a
        // full outbox: dealt with where it happens.
        if let Err(Error::Capacity(CapacityError::Overloaded(_))) = self.send_outgoing(via, &reply) {
            let _ = self.send_outgoing(Via::Reader, &reply);
        }
    }

    fn send_outgoing(self: &Arc<Self>, via: Via, message: &Outgoing<'_>) -> Result<()> {
        let frame = frame::try_encode(|out| self.serializer.encode(message, out))?;
        match via {
            Via::Reader => self.send(frame),
            Via::App if self.outbox.is_closing() => Err(Error::Closed),
            Via::App => Ok(self.shared.outbound.submit(Op::Send { conn: Arc::clone(self), frame })?),
        }
    }

    /// Subscribes the channel that joined `topic` as `join_ref`, unless it has ended
    /// since (left, crashed, replaced, or the connection closed). Under the
    /// connection's lock, so that an ending channel cannot slip in between.
    pub(crate) fn subscribe_if_joined(self: &Arc<Self>, topic: &str, join_ref: Option<&str>) {
        let state = self.lock();
        match state.channels.get(topic) {
            Some(Slot::Joined { join_ref: current, .. }) if current.as_deref() == join_ref => {
                self.shared.registry.activate(topic, self);
            }
            _ => {}
        }
    }

    /// Queues a pre-framed WebSocket frame. A full outbox disconnects the client.
    pub fn send(&self, frame: Bytes) -> Result<()> {
        self.pushed(self.outbox.try_push(frame))
    }

    /// Queues pre-framed WebSocket frames in order, all or none. A full outbox
    /// disconnects the client.
    pub fn send_all(&self, frames: &[Bytes]) -> Result<()> {
        self.pushed(self.outbox.try_push_all(frames))
    }

    fn pushed(&self, result: Result<(), PushError>) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(PushError::Closed(_)) => Err(Error::Closed),
            Err(PushError::Full(_)) => {
                self.close_slow_reader();
                Err(CapacityError::OutboxFull(self.config.outbox_capacity).into())
            }
        }
    }

    /// Closes the connection with a close frame, after what is already queued.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.outbox.push_close(frame::close(code, reason));
    }

    /// Drops a client that does not read: nothing more is written.
    pub(crate) fn close_slow_reader(&self) {
        if !self.outbox.is_aborted() {
            tracing::warn!(conn = self.id, "closing a connection whose client does not read (outbox full)");
            self.outbox.abort();
        }
    }

    /// Called once by the session when the connection is gone: every channel is told,
    /// and every subscription removed.
    pub(crate) fn finalize(&self) {
        let mut state = self.lock();
        if state.finalized {
            return;
        }
        state.finalized = true;
        state.decision = None;
        let channels = std::mem::take(&mut state.channels);
        let socket_id = state.socket_id.take();
        drop(state);
        self.outbox.abort();
        if let Some(id) = socket_id {
            self.shared.registry.unregister_socket_id(&id, self.id);
        }
        for (topic, slot) in channels {
            if let Slot::Joined { sink, .. } = slot {
                self.shared.registry.unsubscribe(&topic, self.id);
                sink.deliver(ChannelEvent::Closed(ClosedReason::ConnectionClosed));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes are single assignments: a panic elsewhere cannot leave it half-made.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection's channels by topic. Most connections join one or a few topics, so a
/// vector (sized exactly while small) costs far less than a hash map; the cap on
/// channels per connection keeps the scans short.
#[derive(Debug, Default)]
struct Channels(Vec<(String, Slot)>);

impl Channels {
    fn position(&self, topic: &str) -> Option<usize> {
        self.0.iter().position(|(t, _)| t == topic)
    }

    fn get(&self, topic: &str) -> Option<&Slot> {
        self.position(topic).map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, topic: &str) -> Option<&mut Slot> {
        self.position(topic).map(|i| &mut self.0[i].1)
    }

    fn remove(&mut self, topic: &str) -> Option<Slot> {
        self.position(topic).map(|i| self.0.swap_remove(i).1)
    }

    fn insert(&mut self, topic: String, slot: Slot) {
        match self.position(&topic) {
            Some(i) => self.0[i].1 = slot,
            None => {
                if self.0.len() < 4 {
                    self.0.reserve_exact(1);
                }
                self.0.push((topic, slot));
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl IntoIterator for Channels {
    type Item = (String, Slot);
    type IntoIter = std::vec::IntoIter<(String, Slot)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Which way a frame goes out.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// Straight to the outbox: what the reader answers itself (heartbeats, unmatched topics).
    Reader,
    /// Through the engine's outbound queue: what the application sends, in the order it sent it.
    App,
}

/// Identifies the join being answered.
#[derive(Debug, Clone, Copy)]
pub struct JoinRef<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The join's `join_ref`.
    pub join_ref: Option<&'a str>,
    /// The join's `ref`.
    pub r#ref: Option<&'a str>,
}

impl<'a> Body<'a> {
    fn json_or_empty(self) -> &'a [u8] {
        match self {
            Body::Json(json) => json,
            Body::Binary(_) => EMPTY,
        }
    }
}
