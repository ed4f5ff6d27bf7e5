//! One WebSocket connection: its channels and the rules of the channel protocol, or,
//! on a raw socket, its transport (see `raw.rs`).
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
//! The rules of the channel protocol (joins, duplicate joins, stale `join_ref`s,
//! messages held while a join is answered, the cap on channels) are the pure state
//! machine of `slots.rs`; this module carries out the actions it returns.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::channel::Channel;
use super::credit::{self, Credit};
use super::outbound::{Op, Pace, Sender, Submitted};
use super::outbox::{Bounds, Outbox, PushError};
use super::slots::{self, Action, Answered, JoinedChannel, Reply, Slots};
use super::raw::{Peer, RawTransport};
use super::{Shared, SocketConfig};
use crate::error::{CapacityError, Error, Result};
use super::handler::JoinRequest;
use crate::registry::Subscriber;
use crate::sink::{ChannelEvent, ClosedReason, Sink, TransportClosed, TransportEvent, TransportSinkRef};
use crate::protocol::{Body, ClientRef, Event, Message, Outgoing, Serializer, Status};
use crate::websocket::{frame, CloseCode};

/// A connection.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    serializer: Serializer,
    config: Arc<SocketConfig>,
    pub(super) shared: Arc<Shared>,
    pub(crate) outbox: Outbox,
    pub(crate) credit: Credit,
    state: Mutex<State>,
}

/// The application's answer to a connect request.
#[derive(Debug)]
pub(crate) enum Decision {
    /// With the session token of a long-poll connection.
    Accept(Option<Box<str>>),
    Refuse,
}

#[derive(Debug)]
struct State {
    decision: Option<oneshot::Sender<Decision>>,
    /// Boxed, not a `String`: kept for the connection's life, never grown.
    socket_id: Option<Box<str>>,
    socket_data: Bytes,
    channels: Slots<Member>,
    /// A raw connection's transport, once accepted. Boxed: a channel connection pays
    /// one word for it.
    transport: Option<Box<Peer>>,
    finalized: bool,
}

/// A joined channel: the application's handle and its sink.
#[derive(Debug, Clone)]
struct Member {
    channel: Arc<Channel>,
    sink: Sink,
}

impl JoinedChannel for Member {
    fn join_ref(&self) -> Option<&ClientRef> {
        self.channel.join_ref()
    }
}

/// What is done once the connection's lock is released: asking the application
/// (which may answer at once, on this thread) and telling a replaced channel.
#[derive(Debug, Default)]
#[must_use]
struct Later {
    replaced: Option<Member>,
    join: Option<Message>,
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
        let (outbox, credit, channels) = (Outbox::new(), Credit::default(), Slots::new());
        let state = State { decision: Some(decision), socket_id: None, socket_data: Bytes::new(), channels, transport: None, finalized: false };
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
        self.accept_session(socket_id, socket_data, None)
    }

    /// Accepts the connection as [`Conn::accept`] does; a long-poll connection also
    /// needs `session_token`, the token its client polls with (an unguessable string:
    /// whoever has it is this connection). A long-poll connect accepted without one is
    /// answered 500; a WebSocket ignores it.
    pub fn accept_session(self: &Arc<Self>, socket_id: Option<String>, socket_data: Bytes, session_token: Option<String>) -> Result<()> {
        let mut state = self.lock();
        let decision = state.decision.take().ok_or(Error::Closed)?;
        if let Some(id) = &socket_id {
            self.shared.socket_ids.register(id, self.id, self);
        }
        state.socket_id = socket_id.map(String::into_boxed_str);
        state.socket_data = socket_data;
        drop(state);
        decision.send(Decision::Accept(session_token.map(String::into_boxed_str))).map_err(|_| Error::Closed)
    }

    /// Accepts a raw connection: the upgrade is answered with 101, and from then on
    /// every message of the client goes to the sink that `make_sink` builds around the
    /// returned [`RawTransport`] handle (pings and pongs too with `wants_control`). The
    /// sink is in place before the session reads anything.
    pub fn accept_transport(
        self: &Arc<Self>,
        make_sink: impl FnOnce(&Arc<RawTransport>) -> TransportSinkRef,
        wants_control: bool,
    ) -> Result<Arc<RawTransport>> {
        let mut state = self.lock();
        let decision = state.decision.take().ok_or(Error::Closed)?;
        let transport = Arc::new(RawTransport::new(Arc::clone(self)));
        let sink = make_sink(&transport);
        // Under the lock: the session, which takes the peer under it, cannot start
        // before the peer is in place.
        decision.send(Decision::Accept(None)).map_err(|_| Error::Closed)?;
        state.transport = Some(Box::new(Peer { transport: Arc::clone(&transport), sink, wants_control }));
        Ok(transport)
    }

    /// The transport of an accepted raw connection, for its session's reader.
    pub(crate) fn transport_peer(&self) -> Option<Peer> {
        self.lock().transport.as_deref().cloned()
    }

    /// Refuses the connection: the upgrade is answered with 403.
    pub fn refuse(&self) -> Result<()> {
        let decision = self.lock().decision.take().ok_or(Error::Closed)?;
        decision.send(Decision::Refuse).map_err(|_| Error::Closed)
    }

    /// Handles a message read from the client, `size` bytes on the wire. An error
    /// means the client broke a limit and the connection must be closed.
    pub fn handle_message(self: &Arc<Self>, msg: Message, size: usize) -> Result<(), CapacityError> {
        crate::fault::inject(msg.event.as_str());
        let mut state = self.lock();
        if state.finalized {
            return Ok(());
        }
        let later = match state.channels.on_message(msg, size, self.config.max_channels)? {
            Action::None => Later::default(),
            Action::Reply(reply) => {
                drop(state);
                let _ = self.send_reply(Via::Reader, &reply);
                return Ok(());
            }
            Action::Deliver { channel, message, size } => {
                // Under the lock: the channel cannot end between taking credit and the delivery.
                channel.channel.delivered(size);
                drop(state);
                channel.sink.deliver(ChannelEvent::In { message, size });
                return Ok(());
            }
            Action::Join(join) => Later { replaced: None, join: Some(join) },
            Action::Replace { old, join } => self.replace(old, join),
        };
        self.run_later(state, later);
        Ok(())
    }

    /// The first half of a duplicate join, under the lock: `old` leaves the topic.
    fn replace(&self, old: Member, join: Message) -> Later {
        self.shared.registry.leave(&join.topic, self.id);
        old.channel.ended();
        Later { replaced: Some(old), join: Some(join) }
    }

    fn run_later(self: &Arc<Self>, state: MutexGuard<'_, State>, later: Later) {
        let socket_data = state.socket_data.clone();
        drop(state);
        if let Some(old) = later.replaced {
            old.sink.deliver(ChannelEvent::Closed(ClosedReason::DuplicateJoin));
        }
        if let Some(join) = later.join {
            let request =
                JoinRequest { topic: join.topic, join_ref: join.join_ref, r#ref: join.r#ref, payload: join.payload, socket_data };
            self.shared.handler.join(self, request);
        }
    }

    /// Runs the messages held while a join was answered through the rules again, in
    /// order, under the lock (so that no newer message overtakes them): deliveries go to
    /// `deliver` (the new channel), replies in `sender`'s order.
    fn replay(
        self: &Arc<Self>,
        state: &mut State,
        sender: Sender<'_>,
        held: Vec<(Message, usize)>,
        deliver: &mut impl FnMut(Message, usize),
    ) -> (Pace, Later) {
        let (mut pace, mut later) = (Pace::Go, Later::default());
        for (message, size) in held {
            match state.channels.on_message(message, size, self.config.max_channels) {
                Ok(Action::None) => {}
                Ok(Action::Reply(reply)) => pace = pace.max(self.send_reply(Via::App(sender), &reply)),
                Ok(Action::Deliver { channel, message, size }) => {
                    channel.channel.delivered(size);
                    deliver(message, size);
                }
                // Held messages are of one topic: there is one join among them at most
                // that is not held again (the ones after it wait for its answer).
                Ok(Action::Join(join)) => later.join = Some(join),
                Ok(Action::Replace { old, join }) => later = self.replace(old, join),
                Err(error) => {
                    tracing::warn!(conn = self.id, %error, "closing connection");
                    self.close(CloseCode::Policy, &error.to_string());
                    break;
                }
            }
        }
        (pace, later)
    }

    /// The application accepted a join, in a call made by `sender` (the channel): the
    /// reply `response` goes out, the channel subscribes to the topic, and the messages
    /// held meanwhile are passed to `deliver_held` with their sizes, in order, before
    /// any later message reaches the channel. `make_sink` builds the channel's sink
    /// around the [`Channel`] handle that is returned.
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
        if state.finalized {
            return Err(JoinError::Closed);
        }
        let (topic, join_ref) = (request.topic, request.join_ref);
        let channel = Arc::new(Channel::new(Arc::clone(self), topic.to_owned(), join_ref.cloned()));
        let sink = make_sink(&channel);
        let member = Member { channel: Arc::clone(&channel), sink: Arc::clone(&sink) };
        let Answered { replaced, held } = state.channels.on_joined(topic, join_ref, member)?;
        let ok = Reply { join_ref: join_ref.cloned(), r#ref: request.r#ref.cloned(), topic: topic.to_owned(), status: Status::Ok, body: &[] };
        let mut pace = self.send_reply_body(Via::App(sender), &ok, response);
        pace = pace.max(self.send_replaced_close(sender, topic, replaced));
        // Intercepted events reach the channel from now on; frames only after the reply,
        // so that no broadcast overtakes it.
        let intercepts = self.shared.registry.intern_intercepts(intercepts);
        self.shared.registry.join(topic, self.id, sink, intercepts);
        let subscribe = Op::Subscribe { conn: Arc::clone(self), topic: topic.to_owned(), join_ref: join_ref.cloned() };
        match self.shared.outbound.submit(sender, subscribe, true) {
            Submitted::RunNow(_) => self.shared.registry.activate(topic, self),
            Submitted::Queued(p) => pace = pace.max(p),
        }
        let (replayed, later) = self.replay(&mut state, sender, held, &mut deliver_held);
        self.run_later(state, later);
        Ok((channel, pace.max(replayed)))
    }

    /// The application refused a join (or its join crashed): the error reply goes out,
    /// then the messages held meanwhile are answered as for a topic not joined.
    pub fn join_failed(self: &Arc<Self>, sender: Sender<'_>, request: &JoinRef<'_>, response: &[u8]) -> Result<Pace, JoinError> {
        self.fail_join(sender, request, request.join_ref, response)
    }

    /// No channel matches the topic: answered as Phoenix answers a message for a topic
    /// not joined (`unmatched topic`, with a null `join_ref`).
    pub fn join_unmatched(self: &Arc<Self>, sender: Sender<'_>, request: &JoinRef<'_>) -> Result<Pace, JoinError> {
        self.fail_join(sender, request, None, slots::UNMATCHED_TOPIC)
    }

    fn fail_join(
        self: &Arc<Self>,
        sender: Sender<'_>,
        request: &JoinRef<'_>,
        reply_join_ref: Option<&ClientRef>,
        response: &[u8],
    ) -> Result<Pace, JoinError> {
        let mut state = self.lock();
        if state.finalized {
            return Err(JoinError::Closed);
        }
        let Answered { replaced, held } = state.channels.on_join_failed(request.topic, request.join_ref)?;
        let error = Reply {
            join_ref: reply_join_ref.cloned(),
            r#ref: request.r#ref.cloned(),
            topic: request.topic.to_owned(),
            status: Status::Error,
            body: &[],
        };
        let mut pace = self.send_reply_body(Via::App(sender), &error, response);
        pace = pace.max(self.send_replaced_close(sender, request.topic, replaced));
        // No channel to hand anything to: every held message is answered, or is a join.
        let (replayed, later) = self.replay(&mut state, sender, held, &mut |_, _| {});
        self.run_later(state, later);
        Ok(pace.max(replayed))
    }

    fn send_replaced_close(self: &Arc<Self>, sender: Sender<'_>, topic: &str, replaced: Option<Option<ClientRef>>) -> Pace {
        let Some(old_join_ref) = replaced else { return Pace::Go };
        let close = Outgoing::channel_ended(old_join_ref.as_ref(), topic, Event::Close);
        self.send_app(sender, &close).unwrap_or(Pace::Go)
    }

    /// Ends the channel `join_ref` on `topic` with `phx_close` or `phx_error`, after
    /// what `sender` sent before. Returns false when it was not (or no longer) joined.
    pub(crate) fn end_channel(self: &Arc<Self>, sender: Sender<'_>, topic: &str, join_ref: Option<&ClientRef>, event: Event) -> bool {
        let mut state = self.lock();
        let Some(member) = state.channels.on_channel_ended(topic, join_ref) else { return false };
        self.shared.registry.leave(topic, self.id);
        drop(state);
        member.channel.ended();
        // The channel is gone: there is nothing left to slow down.
        let _ = self.send_app(sender, &Outgoing::channel_ended(join_ref, topic, event));
        true
    }

    fn send_reply(self: &Arc<Self>, via: Via<'_>, reply: &Reply) -> Pace {
        self.send_reply_body(via, reply, reply.body)
    }

    /// Sends `reply` with `body` as its response.
    fn send_reply_body(self: &Arc<Self>, via: Via<'_>, reply: &Reply, body: &[u8]) -> Pace {
        let (join_ref, r#ref) = (reply.join_ref.as_ref(), reply.r#ref.as_ref());
        let reply = Outgoing::reply(join_ref, r#ref, &reply.topic, reply.status, Body::Json(body));
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
        Ok(self.submit(sender, Op::Send { conn: Arc::clone(self), frame }))
    }

    /// Sends a pre-framed `frame` for the application, after what `sender` sent before.
    pub(crate) fn send_frame_app(self: &Arc<Self>, sender: Sender<'_>, frame: Bytes) -> Result<Pace> {
        if self.outbox.is_closing() {
            return Err(Error::Closed);
        }
        Ok(self.submit(sender, Op::Send { conn: Arc::clone(self), frame }))
    }

    /// Closes the connection for the application with `code` and `reason`, after what
    /// `sender` sent before.
    pub(crate) fn close_app(self: &Arc<Self>, sender: Sender<'_>, code: CloseCode, reason: &str) -> Pace {
        self.submit(sender, Op::Close { conn: Arc::clone(self), frame: frame::close(code, reason) })
    }

    /// Carries `op` out now if `sender` has nothing waiting, else queues it behind.
    fn submit(&self, sender: Sender<'_>, op: Op) -> Pace {
        match self.shared.outbound.submit(sender, op, true) {
            Submitted::RunNow(op) => {
                super::outbound::carry_out_one(op, &self.shared);
                Pace::Go
            }
            Submitted::Queued(pace) => pace,
        }
    }

    fn encode(&self, message: &Outgoing<'_>) -> Result<Bytes> {
        Ok(frame::try_encode(|out| self.serializer.encode(message, out))?)
    }

    /// Subscribes the channel that joined `topic` as `join_ref`, unless it has ended
    /// since (left, crashed, replaced, or the connection closed). Under the
    /// connection's lock, so that an ending channel cannot slip in between.
    pub(crate) fn subscribe_if_joined(self: &Arc<Self>, topic: &str, join_ref: Option<&ClientRef>) {
        let state = self.lock();
        if state.channels.is_joined(topic, join_ref) {
            self.shared.registry.activate(topic, self);
        }
    }

    /// Queues a pre-framed WebSocket frame. A full outbox disconnects the client.
    pub fn send(&self, frame: Bytes) -> Result<()> {
        self.pushed(self.outbox.try_push(frame, self.outbox_bounds()))
    }

    /// Queues pre-framed WebSocket frames in order, all or none. A full outbox
    /// disconnects the client.
    pub fn send_all(&self, frames: &[Bytes]) -> Result<()> {
        self.pushed(self.outbox.try_push_all(frames, self.outbox_bounds()))
    }

    fn outbox_bounds(&self) -> Bounds {
        Bounds { frames: self.config.outbox_capacity, bytes: self.config.outbox_capacity_bytes }
    }

    /// The connection's inbound credit limits.
    pub(crate) fn credit_limits(&self) -> credit::Limits {
        credit::Limits { messages: self.config.max_unhandled_messages, bytes: self.config.max_unhandled_bytes }
    }

    /// The channels hold as much as they may: the reader stops.
    pub(crate) fn is_out_of_credit(&self) -> bool {
        self.credit.is_exhausted(self.credit_limits())
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

    /// The sinks of the connection's joined channels.
    pub(crate) fn channel_sinks(&self) -> Vec<Sink> {
        self.lock().channels.joined().map(|member| Arc::clone(&member.sink)).collect()
    }

    /// Drops a client that does not read: nothing more is written.
    pub(crate) fn close_slow_reader(&self) {
        self.drop_slow_reader("its outbox is full");
    }

    /// Drops a client whose socket took nothing for the socket's `slow_reader_timeout`.
    pub(crate) fn close_stalled_reader(&self) {
        self.drop_slow_reader("its socket took nothing for slow_reader_timeout");
    }

    fn drop_slow_reader(&self, why: &str) {
        if !self.outbox.is_aborted() {
            let total = self.shared.slow_readers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            tracing::warn!(conn = self.id, slow_readers_dropped = total, "dropping a connection whose client does not read: {why}");
            self.outbox.abort();
        }
    }

    /// Called once when the connection is gone before or at the start of its session
    /// (the client went away): see [`Conn::finalize_as`].
    pub(crate) fn finalize(&self) {
        self.finalize_as(TransportClosed::Closed);
    }

    /// Called once by the session when the connection is gone: every channel is told,
    /// and every subscription removed; a raw connection's transport is told `why`.
    pub(crate) fn finalize_as(&self, why: TransportClosed) {
        let mut state = self.lock();
        if state.finalized {
            return;
        }
        state.finalized = true;
        state.decision = None;
        let channels = state.channels.take_joined();
        let socket_id = state.socket_id.take();
        let transport = state.transport.take();
        drop(state);
        self.outbox.abort();
        if let Some(Peer { transport, sink, .. }) = transport.map(|peer| *peer) {
            transport.unhandled.ended(&self.credit, self.credit_limits());
            sink.deliver(TransportEvent::Closed(why));
        }
        if let Some(id) = socket_id {
            self.shared.socket_ids.unregister(&id, self.id);
        }
        for (topic, Member { channel, sink }) in channels {
            self.shared.registry.leave(&topic, self.id);
            channel.ended();
            sink.deliver(ChannelEvent::Closed(ClosedReason::ConnectionClosed));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes are single assignments: a panic elsewhere cannot leave it half-made.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Subscriber for Conn {
    fn id(&self) -> u64 {
        self.id
    }

    fn serializer(&self) -> Serializer {
        self.serializer
    }

    fn send_all(&self, frames: &[Bytes]) -> bool {
        // A full outbox closes this connection (Conn::send_all); the others go on.
        Conn::send_all(self, frames).is_ok()
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
    pub join_ref: Option<&'a ClientRef>,
    /// The join's `ref`.
    pub r#ref: Option<&'a ClientRef>,
}
