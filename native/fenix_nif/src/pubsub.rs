//! A PubSub server (`Fenix.PubSub`): the processes subscribed to each topic, and the
//! endpoints whose channels share its topics.
//!
//! One delivery mechanism for every broadcast a topic gets, wherever it comes from:
//! - an endpoint broadcast (`MyEndpoint.broadcast/3`, `nif/broadcast.rs`) is encoded once
//!   for the endpoint's sockets, and its subscribers get `%Fenix.Socket.Broadcast{}` built
//!   once in the caller ([`send_to`]);
//! - a presence tick's diff, broadcast by the engine, reaches them from an engine thread
//!   as a `%Fenix.Socket.Broadcast{}` written once in the external format
//!   ([`PubSubResource::send_written`]);
//! - a `Fenix.PubSub.broadcast/3` of any term goes to the subscribers and to the channel
//!   processes of the topic in every endpoint that uses the server (`nif/pubsub.rs`), as
//!   Phoenix's default dispatcher sends it to both.
//!
//! A subscriber is monitored once: when it exits, its subscriptions go.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fenix_core::pubsub::{Subscription, Subscriptions};
use fenix_core::server::{Server, WeakServer};
use fenix_core::Sink;
use rustler::{Encoder, Env, LocalPid, Resource, Term};

use crate::atoms;

use crate::beam::{self, ChannelProcess};
use crate::etf::Etf;
use crate::monitors::Monitors;
use crate::sender;

/// A PubSub server's state. It outlives restarts of the server's process: the
/// endpoints that use it keep their handle.
pub(crate) struct PubSubResource {
    subscriptions: Arc<Subscriptions<LocalPid>>,
    subscribers: Arc<Monitors>,
    endpoints: Mutex<Vec<WeakServer>>,
}

#[rustler::resource_impl]
impl Resource for PubSubResource {}

impl std::fmt::Debug for PubSubResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubResource").field("topics", &self.subscriptions.topic_count()).finish_non_exhaustive()
    }
}

impl PubSubResource {
    pub(crate) fn new() -> Self {
        let subscriptions: Arc<Subscriptions<LocalPid>> = Arc::default();
        let subscribers = Monitors::new({
            let subscriptions = Arc::clone(&subscriptions);
            move |owner| subscriptions.remove_owner(owner)
        });
        PubSubResource { subscriptions, subscribers, endpoints: Mutex::default() }
    }

    /// The calling process subscribes to `topic`.
    pub(crate) fn subscribe(&self, env: Env<'_>, topic: &str, metadata: Option<Bytes>) {
        let pid = env.pid();
        if self.subscriptions.subscribe(topic, sender::id(env, pid), pid, metadata) {
            self.subscribers.watch(env, pid);
        }
    }

    /// The calling process unsubscribes from `topic`.
    pub(crate) fn unsubscribe(&self, env: Env<'_>, topic: &str) {
        self.subscriptions.unsubscribe(topic, sender::id(env, env.pid()));
    }

    /// The channels of `server` are members of this server's topics from now on.
    pub(crate) fn attach(&self, server: &Server) {
        let mut endpoints = lock(&self.endpoints);
        // Stopped endpoints (restarted ones leave their old server behind) go.
        endpoints.retain(|endpoint| endpoint.with_registry(|_| ()).is_some());
        endpoints.push(server.downgrade());
    }

    /// How many processes would get a message for `topic`: subscriptions, and channels
    /// of the endpoints when `with_channels`.
    pub(crate) fn reach(&self, topic: &str, with_channels: bool) -> usize {
        let channels = if with_channels { self.each_endpoint(|registry| registry.member_count(topic)) } else { 0 };
        self.subscriptions.count(topic) + channels
    }

    /// `topic`'s subscriptions but those of `exclude` (a pid id).
    pub(crate) fn subscriptions(&self, topic: &str, exclude: Option<u64>) -> Vec<Subscription<LocalPid>> {
        let mut out = Vec::new();
        self.subscriptions.collect(topic, exclude, &mut out);
        out
    }

    /// The channel processes of `topic` in every endpoint.
    pub(crate) fn channels(&self, topic: &str) -> Vec<LocalPid> {
        let mut sinks: Vec<Sink> = Vec::new();
        self.each_endpoint(|registry| {
            registry.members(topic, &mut sinks);
            0
        });
        sinks.iter().filter_map(|sink| sink.as_any().downcast_ref::<ChannelProcess>().map(|p| p.pid)).collect()
    }

    /// Sends the term `written` to `topic`'s subscribers, from an engine thread: each
    /// gets it decoded from the one binary.
    pub(crate) fn send_written(&self, topic: &str, written: &Arc<Etf>) {
        for subscription in self.subscriptions(topic, None) {
            let written = Arc::clone(written);
            beam::send(&subscription.process, move |env| written.decode(env));
        }
    }

    fn each_endpoint(&self, mut f: impl FnMut(&fenix_core::registry::Registry<fenix_core::server::Conn>) -> usize) -> usize {
        lock(&self.endpoints).iter().filter_map(|endpoint| endpoint.with_registry(&mut f)).sum()
    }
}

/// Sends `message`, a term of the calling NIF's `env`, to each of `subscriptions`. The
/// VM copies it to each.
pub(crate) fn send_to(env: Env<'_>, subscriptions: &[Subscription<LocalPid>], message: Term<'_>) {
    for subscription in subscriptions {
        // A dead receiver is not an error: its monitor cleans up.
        let _ = env.send(&subscription.process, message);
    }
}

/// `%Fenix.Socket.Broadcast{topic: topic, event: event, payload: payload}`.
pub(crate) fn broadcast_struct<'a>(env: Env<'a>, topic: &str, event: &str, payload: Term<'a>) -> Term<'a> {
    let keys = [atoms::struct_key(), atoms::topic(), atoms::event(), atoms::payload()].map(|key| key.encode(env));
    let values = [atoms::broadcast_struct().encode(env), topic.encode(env), event.encode(env), payload];
    // Four distinct keys: this cannot fail.
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or(payload)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single pushes and retains: a panic cannot leave the list half-made.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
