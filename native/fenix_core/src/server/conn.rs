//! One WebSocket connection: its channels and the rules of the channel protocol.
//!
//! A [`Conn`] is shared between its session task (which reads frames and calls
//! [`Conn::handle_message`]), the application (which answers joins and pushes, replies
//! and closes through the methods below, from any thread), and the registry (which
//! queues broadcasts). Every method is short and never blocks on I/O: frames go to the
//! bounded [`Outbox`] that the session's writer drains. What the reader answers itself
//! goes there directly; what the application sends goes there directly too unless its
//! sender has broadcasts still waiting, in which case it waits behind them in the
//! sender's lane (see `outbound.rs`), so it keeps the order it was sent in.
//!
//! Every client message handed to a channel takes inbound credit (see `credit.rs`),
//! given back by the channel once it has handled it: the reader stops reading while
//! the connection is out of credit.
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

use super::channel::Channel;
use super::credit::Credit;
use super::outbound::{Op, Pace, Sender, Submitted};
use super::outbox::{Outbox, PushError};
use super::{Shared, SocketConfig};
use crate::error::{CapacityError, Error, Result};
use crate::handler::{ChannelEvent, ClosedReason, JoinRequest, Sink};
use crate::protocol::{Body, Event, Message, Outgoing, Serializer, Status, HEARTBEAT_TOPIC};
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
    pub(crate) credit: Credit,
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
        /// Messages and their sizes, for the channel once it has joined.
        held: Vec<(Message, usize)>,
        /// The `join_ref` of the channel this join replaces, which gets `phx_close` after the reply.
        replaces: Option<Option<String>>,
    },
    Joined {
        channel: Arc<Channel>,
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
        let outbox = Outbox::new(config.outbox_capacity, config.outbox_capacity_bytes);
        let credit = Credit::new(config.max_unhandled_messages, config.max_unhandled_bytes);
        let state = State { decision: Some(decision), ..State::default() };
        Conn { id, serializer, config, shared, outbox, credit, state: Mutex::new(state) }
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

    /// Handles a message read from the client, `size` bytes on the wire. An error
    /// means the client broke a limit and the connection must be closed.
    pub fn handle_message(self: &Arc<Self>, msg: Message, size: usize) -> Result<(), CapacityError> {
        match msg.event {
            Event::Heartbeat if msg.topic == HEARTBEAT_TOPIC => {
                let _ = self.send_reply(Via::Reader, None, msg.r#ref.as_deref(), HEARTBEAT_TOPIC, Status::Ok, EMPTY);
            }
            Event::Join => self.handle_join(msg),
            _ => return self.route(msg, size),
        }
        Ok(())
    }

    fn handle_join(self: &Arc<Self>, msg: Message) {
        let mut state = self.lock();
        if state.finalized {
            return;
        }
        let (replaces, old_sink) = match state.channels.remove(&msg.topic) {
            Some(Slot::Joined { channel, sink }) => {
                self.shared.registry.unsubscribe(&msg.topic, self.id);
                channel.ended();
                (Some(channel.join_ref().map(str::to_owned)), Some(sink))
            }
            // A join still being answered is superseded; its answer will be stale.
            Some(Slot::Joining { replaces, .. }) => (replaces, None),
            None => (None, None),
        };
        if replaces.is_none() && state.channels.len() >= self.config.max_channels {
            drop(state);
            let (join_ref, r#ref) = (msg.join_ref.as_deref(), msg.r#ref.as_deref());
            let _ = self.send_reply(Via::Reader, join_ref, r#ref, &msg.topic, Status::Error, TOO_MANY_CHANNELS);
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

    fn route(self: &Arc<Self>, msg: Message, size: usize) -> Result<(), CapacityError> {
        let mut state = self.lock();
        let stale = |current: Option<&str>| msg.join_ref.is_some() && msg.join_ref.as_deref() != current;
        match state.channels.get_mut(&msg.topic) {
            Some(Slot::Joined { channel, sink }) => {
                if stale(channel.join_ref()) {
                    tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                    return Ok(());
                }
                // Under the lock: the channel cannot end between taking credit and the delivery.
                channel.delivered(size);
                let sink = Arc::clone(sink);
                drop(state);
                sink.deliver(ChannelEvent::In { message: msg, size });
            }
            Some(Slot::Joining { join_ref, held, .. }) => {
                if stale(join_ref.as_deref()) {
                    tracing::debug!(topic = msg.topic, "dropped a message with a stale join_ref");
                } else if held.len() >= HELD_LIMIT {
                    return Err(CapacityError::HeldMessages(HELD_LIMIT));
                } else {
                    held.push((msg, size));
                }
            }
            None => {
                drop(state);
                let _ = self.reply_not_joined(Via::Reader, &msg);
            }
        }
        Ok(())
    }

    /// The answer to a message for a topic that is not joined: `unmatched topic`, or
    /// `ok` for a `phx_leave`.
    fn reply_not_joined(self: &Arc<Self>, via: Via<'_>, msg: &Message) -> Pace {
        let (join_ref, status, body) = match msg.event {
            Event::Leave => (msg.join_ref.as_deref(), Status::Ok, EMPTY),
            _ => (None, Status::Error, UNMATCHED_TOPIC),
        };
        self.send_reply(via, join_ref, msg.r#ref.as_deref(), &msg.topic, status, body)
    }

    /// The application accepted a join, in a call made by `sender` (the channel): the
    /// reply `response` goes out, the channel subscribes to the topic, and the messages
    /// held meanwhile are passed to `deliver_held` with their sizes, in order, before
    /// any later message reaches the channel. `make_sink` builds the channel's sink
    /// around the [`Channel`] handle that is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn joined(
        self: &Arc<Self>,
        sender: Sender<'_>,
        request: &JoinRef<'_>,
        response: &[u8],
        make_sink: impl FnOnce(&Arc<Channel>) -> Sink,
        intercepts: &[String],
        mut deliver_held: impl FnMut(Message, usize),
    ) -> Result<(Arc<Channel>, Pace), JoinError> {
        let mut state = self.lock();
        let (held, replaces) = self.take_joining(&mut state, request)?;
        let (topic, join_ref) = (request.topic, request.join_ref);
        let channel = Arc::new(Channel::new(Arc::clone(self), topic.to_owned(), join_ref.map(str::to_owned)));
        let sink = make_sink(&channel);
        let via = Via::App(sender);
        let mut pace = self.send_reply(via, join_ref, request.r#ref, topic, Status::Ok, response);
        pace = pace.max(self.send_replaced_close(sender, topic, replaces));
        // Intercepted events reach the channel from now on; frames only after the reply,
        // so that no broadcast overtakes it.
        let intercepts = self.shared.registry.intern_intercepts(intercepts);
        self.shared.registry.join(topic, self.id, Arc::clone(&sink), intercepts);
        let subscribe = Op::Subscribe { conn: Arc::clone(self), topic: topic.to_owned(), join_ref: join_ref.map(str::to_owned) };
        match self.shared.outbound.submit(sender, subscribe, true) {
            Submitted::RunNow(_) => self.shared.registry.activate(topic, self),
            Submitted::Queued(p) => pace = pace.max(p),
        }
        state.channels.insert(topic.to_owned(), Slot::Joined { channel: Arc::clone(&channel), sink });
        // Still under the lock: the reader cannot route a newer message before these.
        for (message, size) in held {
            channel.delivered(size);
            deliver_held(message, size);
        }
        Ok((channel, pace))
    }

    /// The application refused a join (or its join crashed): the error reply goes out,
    /// then the messages held meanwhile are answered as for a topic not joined.
    pub fn join_failed(self: &Arc<Self>, sender: Sender<'_>, request: &JoinRef<'_>, response: &[u8]) -> Result<Pace, JoinError> {
        self.fail_join(sender, request, request.join_ref, response)
    }

    /// No channel matches the topic: answered as Phoenix answers a message for a topic
    /// not joined (`unmatched topic`, with a null `join_ref`).
    pub fn join_unmatched(self: &Arc<Self>, sender: Sender<'_>, request: &JoinRef<'_>) -> Result<Pace, JoinError> {
        self.fail_join(sender, request, None, UNMATCHED_TOPIC)
    }

    fn fail_join(
        self: &Arc<Self>,
        sender: Sender<'_>,
        request: &JoinRef<'_>,
        reply_join_ref: Option<&str>,
        response: &[u8],
    ) -> Result<Pace, JoinError> {
        let mut state = self.lock();
        let (held, replaces) = self.take_joining(&mut state, request)?;
        let via = Via::App(sender);
        let mut pace = self.send_reply(via, reply_join_ref, request.r#ref, request.topic, Status::Error, response);
        pace = pace.max(self.send_replaced_close(sender, request.topic, replaces));
        // Still under the lock: the reader cannot answer a newer message before these.
        for (message, _) in &held {
            pace = pace.max(self.reply_not_joined(via, message));
        }
        Ok(pace)
    }

    fn take_joining(
        &self,
        state: &mut State,
        request: &JoinRef<'_>,
    ) -> Result<(Vec<(Message, usize)>, Option<Option<String>>), JoinError> {
        if state.finalized {
            return Err(JoinError::Closed);
        }
        let Some(index) = state.channels.position(request.topic) else { return Err(JoinError::Stale) };
        match &state.channels.0[index].1 {
            Slot::Joining { join_ref, .. } if join_ref.as_deref() == request.join_ref => {}
            _ => return Err(JoinError::Stale),
        }
        match state.channels.0.swap_remove(index).1 {
            Slot::Joining { held, replaces, .. } => Ok((held, replaces)),
            Slot::Joined { .. } => Err(JoinError::Stale),
        }
    }

    fn send_replaced_close(self: &Arc<Self>, sender: Sender<'_>, topic: &str, replaces: Option<Option<String>>) -> Pace {
        let Some(old_join_ref) = replaces else { return Pace::Go };
        let close = Outgoing::channel_ended(old_join_ref.as_deref(), topic, Event::Close);
        self.send_app(sender, &close).unwrap_or(Pace::Go)
    }

    /// Ends the channel `join_ref` on `topic` with `phx_close` or `phx_error`, after
    /// what `sender` sent before. Returns false when it was not (or no longer) joined.
    pub(crate) fn end_channel(self: &Arc<Self>, sender: Sender<'_>, topic: &str, join_ref: Option<&str>, event: Event) -> bool {
        let mut state = self.lock();
        let Some(index) = state.channels.position(topic) else { return false };
        let channel = match &state.channels.0[index].1 {
            Slot::Joined { channel, .. } if channel.join_ref() == join_ref => Arc::clone(channel),
            _ => return false,
        };
        state.channels.0.swap_remove(index);
        self.shared.registry.unsubscribe(topic, self.id);
        drop(state);
        channel.ended();
        // The channel is gone: there is nothing left to slow down.
        let _ = self.send_app(sender, &Outgoing::channel_ended(join_ref, topic, event));
        true
    }

    fn send_reply(
        self: &Arc<Self>,
        via: Via<'_>,
        join_ref: Option<&str>,
        r#ref: Option<&str>,
        topic: &str,
        status: Status<'_>,
        body: &[u8],
    ) -> Pace {
        let reply = Outgoing::reply(join_ref, r#ref, topic, status, Body::Json(body));
        // Closed, or a full outbox: dealt with where it happens.
        let sent = match via {
            Via::Reader => self.encode(&reply).and_then(|frame| self.send(frame)).map(|()| Pace::Go),
            Via::App(sender) => self.send_app(sender, &reply),
        };
        sent.unwrap_or(Pace::Go)
    }

    /// Sends `message` for the application, after what `sender` sent before.
    pub(crate) fn send_app(self: &Arc<Self>, sender: Sender<'_>, message: &Outgoing<'_>) -> Result<Pace> {
        if self.outbox.is_closing() {
            return Err(Error::Closed);
        }
        let frame = self.encode(message)?;
        match self.shared.outbound.submit(sender, Op::Send { conn: Arc::clone(self), frame }, true) {
            Submitted::RunNow(op) => {
                super::outbound::carry_out_one(op, &self.shared);
                Ok(Pace::Go)
            }
            Submitted::Queued(pace) => Ok(pace),
        }
    }

    fn encode(&self, message: &Outgoing<'_>) -> Result<Bytes> {
        Ok(frame::try_encode(|out| self.serializer.encode(message, out))?)
    }

    /// Subscribes the channel that joined `topic` as `join_ref`, unless it has ended
    /// since (left, crashed, replaced, or the connection closed). Under the
    /// connection's lock, so that an ending channel cannot slip in between.
    pub(crate) fn subscribe_if_joined(self: &Arc<Self>, topic: &str, join_ref: Option<&str>) {
        let state = self.lock();
        match state.channels.get(topic) {
            Some(Slot::Joined { channel, .. }) if channel.join_ref() == join_ref => {
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
            if let Slot::Joined { channel, sink } = slot {
                self.shared.registry.unsubscribe(&topic, self.id);
                channel.ended();
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
enum Via<'a> {
    /// Straight to the outbox: what the reader answers itself (heartbeats, unmatched topics).
    Reader,
    /// For the application: in the sender's order (see `outbound.rs`).
    App(Sender<'a>),
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
