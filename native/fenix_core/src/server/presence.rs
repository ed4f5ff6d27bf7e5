//! A presence hub: the presence state of every topic of one presence module
//! (`use Fenix.Presence`), and the tick that turns each topic's changes into one
//! `presence_diff` broadcast.
//!
//! The state and the diffs are [`crate::presence`] (pure); this module holds them per
//! topic and runs them on the engine:
//! - `track`, `untrack`, `update` and `leave` are short calls (one topic's lock) made by
//!   whichever process tracks: no central process, so no call waits behind a busy topic;
//! - every tick (default 20 ms), each topic changed since the last one flushes its diff
//!   and the one payload is broadcast to the topic through the sender lanes like any
//!   broadcast (encoded once per serializer, queued to every subscriber): N joins within
//!   a tick cost each member one frame, not N;
//! - `list` and `get_by_key` read the topic under its lock, without going through any
//!   process's mailbox.
//!
//! - a hub may instead (or also) hand each diff to the application ([`DiffHandler`]):
//!   Fenix does when the presence module defines `fetch/2` (it enriches the diff, then
//!   broadcasts it) or `handle_metas/4` (server-side reactions to joins and leaves);
//!   and each broadcast diff is handed to the application too ([`BroadcastHandler`]),
//!   with the channels that intercept `presence_diff`, which get it rather than a frame
//!   (as any intercepted broadcast), and for the topic's other subscribers
//!   (`Fenix.PubSub`'s, which get the diff as a term).
//!
//! - the hub's own lane is bounded like any sender's: when it is full, the hub sends
//!   nothing until the worker has carried half of it out, and the changes meanwhile
//!   wait in the topics' diff buffers (bounded by the topics' state), coalescing further.
//!
//! The hub's tick task holds it weakly: dropping the last handle stops it.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use super::outbound::{Op, Sender, Submitted};
use super::Shared;
use crate::sink::Sink;
use crate::presence::{Diff, Limits, Meta, MetaFields, NodeId, Owner, Presence, PresenceError, Ref, RefGenerator};

/// How often a hub sends its topics' diffs, by default: short enough that a join shows
/// at once, long enough that a burst of joins is one frame per member.
pub const DEFAULT_TICK: Duration = Duration::from_millis(20);

/// The event of a presence diff broadcast.
pub const PRESENCE_DIFF: &str = "presence_diff";

/// The local node, until presence is replicated between nodes.
const LOCAL: NodeId = NodeId(0);

/// Called with each changed topic's diff once per tick, on an engine thread.
pub type DiffHandler = Box<dyn Fn(&str, &Diff) + Send + Sync>;

/// Called, on an engine thread, with each broadcast diff, its topic and the topic's
/// channels that intercept `presence_diff` (Phoenix's `intercept ["presence_diff"]`,
/// often none): the broadcast gives them no frame, so the application hands them the
/// diff (their `handle_out`), and to its own subscribers of the topic if it has any.
pub type BroadcastHandler = Box<dyn Fn(&str, &Diff, &[Sink]) + Send + Sync>;

/// What a hub does with each diff.
pub struct DiffRoute {
    /// Broadcast it to the topic's subscribers.
    pub broadcast: bool,
    /// Hand it to the application.
    pub handler: Option<DiffHandler>,
    /// Hand each broadcast diff to the application, with the channels that intercept it.
    pub on_broadcast: Option<BroadcastHandler>,
}

impl std::fmt::Debug for DiffRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffRoute")
            .field("broadcast", &self.broadcast)
            .field("handler", &self.handler.is_some())
            .field("on_broadcast", &self.on_broadcast.is_some())
            .finish()
    }
}

/// What [`PresenceHub::list`] read: the topic's version then (`None`: nobody was on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed(pub Option<u64>);

/// The presence state of one presence module on one server.
#[derive(Debug)]
pub struct PresenceHub {
    shared: Arc<Shared>,
    /// The hub's own sender id, for the lane its diffs go through.
    sender: u64,
    topics: DashMap<String, Presence>,
    /// Topics changed since the last tick.
    dirty: Mutex<HashSet<String>>,
    /// Owner (process) -> the topics it tracks on, for `leave`.
    owners: Mutex<HashMap<u64, Vec<String>>>,
    refs: Arc<RefGenerator>,
    limits: Limits,
    route: DiffRoute,
    /// The hub's lane was full: no diff goes out until the worker wakes it.
    backlog: Arc<Backlog>,
}

/// Set while the hub's lane is full; its waker clears it.
#[derive(Debug, Default)]
struct Backlog(AtomicBool);

impl Wake for Backlog {
    fn wake(self: Arc<Self>) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl PresenceHub {
    pub(crate) fn start(
        shared: Arc<Shared>,
        sender: u64,
        seed: u64,
        tick: Duration,
        limits: Limits,
        route: DiffRoute,
    ) -> Arc<PresenceHub> {
        // The ref generator's tag tells the hubs of a node apart.
        let refs = Arc::new(RefGenerator::new(u32::try_from(sender & 0xffff_ffff).unwrap_or(0), seed));
        let topics = DashMap::new();
        let hub = Arc::new(PresenceHub {
            shared,
            sender,
            topics,
            dirty: Mutex::default(),
            owners: Mutex::default(),
            refs,
            limits,
            route,
            backlog: Arc::default(),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(ticks(weak, tick));
        hub
    }

    /// `pid` tracks `key` with `meta` on `topic`; returns the meta's `phx_ref`.
    pub fn track(&self, pid: u64, topic: &str, key: &str, meta: MetaFields) -> Result<Ref, PresenceError> {
        let owner = Owner { node: LOCAL, pid };
        let r#ref = {
            let mut presence = self.topics.entry(topic.to_owned()).or_insert_with(|| Presence::new(Arc::clone(&self.refs), self.limits));
            presence.track(owner, key, meta)?
        };
        let mut owners = lock(&self.owners);
        let topics = owners.entry(pid).or_default();
        if !topics.iter().any(|t| t == topic) {
            topics.push(topic.to_owned());
        }
        drop(owners);
        self.changed(topic);
        Ok(r#ref)
    }

    /// `pid` no longer tracks `key` on `topic` (a no-op if it did not).
    pub fn untrack(&self, pid: u64, topic: &str, key: &str) {
        let untracked = self.topics.get_mut(topic).is_some_and(|mut p| p.untrack(Owner { node: LOCAL, pid }, key));
        if untracked {
            self.changed(topic);
        }
    }

    /// Replaces the meta `pid` tracks `key` with on `topic`; returns the new `phx_ref`.
    pub fn update(&self, pid: u64, topic: &str, key: &str, meta: MetaFields) -> Result<Ref, PresenceError> {
        let owner = Owner { node: LOCAL, pid };
        let Some(mut presence) = self.topics.get_mut(topic) else {
            return Err(PresenceError::NotTracked { key: key.to_owned() });
        };
        let r#ref = presence.update(owner, key, meta)?;
        drop(presence);
        self.changed(topic);
        Ok(r#ref)
    }

    /// The meta `pid` tracks `key` with on `topic`, for an update made of the old one.
    pub fn meta_of(&self, pid: u64, topic: &str, key: &str) -> Option<Meta> {
        let presence = self.topics.get(topic)?;
        let meta = presence.get_by_key(key).find(|t| t.owner.pid == pid).map(|t| t.meta.clone());
        meta
    }

    /// `pid` exited: everything it tracked leaves.
    pub fn leave(&self, pid: u64) {
        let Some(topics) = lock(&self.owners).remove(&pid) else { return };
        for topic in topics {
            let left = self.topics.get_mut(&topic).is_some_and(|mut p| p.leave_owner(Owner { node: LOCAL, pid }) > 0);
            if left {
                self.changed(&topic);
            }
        }
    }

    /// The `presence_state` of `topic`, passed to `f` entry by entry (key, meta), keys
    /// sorted and a key's metas in tracking order. It counts as given to a client.
    /// Returns what was listed ([`Listed`]), for [`PresenceHub::state_as_listed`].
    pub fn list(&self, topic: &str, mut f: impl FnMut(&str, &Meta)) -> Listed {
        match self.topics.get_mut(topic) {
            Some(mut presence) => {
                presence.list().for_each(|tracked| f(tracked.key, tracked.meta));
                Listed(Some(presence.version()))
            }
            None => Listed(None),
        }
    }

    /// The `presence_state` payload (JSON) of `topic` now. Like `list`, it counts as
    /// given to a client.
    pub fn state(&self, topic: &str) -> Vec<u8> {
        self.topics.get_mut(topic).map_or_else(|| b"{}".to_vec(), |mut presence| presence.encode_state())
    }

    /// The `presence_state` payload (JSON) of `topic` if the topic is still as it was
    /// when `listed`, else `None`: a list the application pushes unchanged is sent as
    /// the engine encodes it (about 0.4 ms for 10,000 members), not encoded again from
    /// its terms (several ms).
    pub fn state_as_listed(&self, topic: &str, listed: Listed) -> Option<Vec<u8>> {
        match (self.topics.get_mut(topic), listed.0) {
            (Some(mut presence), Some(version)) if presence.version() == version => Some(presence.encode_state()),
            (None, None) => Some(b"{}".to_vec()),
            _ => None,
        }
    }

    /// The metas of `key` on `topic`, in tracking order.
    pub fn get_by_key(&self, topic: &str, key: &str) -> Vec<Meta> {
        self.topics.get(topic).map_or_else(Vec::new, |presence| presence.get_by_key(key).map(|t| t.meta.clone()).collect())
    }

    fn changed(&self, topic: &str) {
        let mut dirty = lock(&self.dirty);
        if !dirty.contains(topic) {
            dirty.insert(topic.to_owned());
        }
    }

    /// One tick: every changed topic's diff, broadcast to its subscribers.
    pub(crate) fn tick(&self) {
        if self.backlog.0.load(Ordering::SeqCst) {
            return; // the changes keep coalescing in the topics until the lane drains
        }
        let topics = std::mem::take(&mut *lock(&self.dirty));
        for topic in topics {
            // A bug that panics costs this topic's diff, not the hub's other topics.
            if std::panic::catch_unwind(AssertUnwindSafe(|| self.tick_topic(topic))).is_err() {
                tracing::error!("a presence tick panicked: one topic's diff is lost, the others go on");
            }
        }
    }

    /// One topic's part of a tick: its diff, where the route says.
    fn tick_topic(&self, topic: String) {
        crate::fault::inject(&topic);
        let diff = match self.topics.get_mut(&topic) {
            Some(mut presence) => presence.take_diff(),
            None => None,
        };
        // A topic nobody tracks on any more goes, once its last diff is out.
        self.topics.remove_if(&topic, |_, presence| presence.is_empty());
        let Some(diff) = diff else { return };
        if let Some(handler) = &self.route.handler {
            handler(&topic, &diff);
        }
        if !self.route.broadcast {
            return;
        }
        if let Some(on_broadcast) = &self.route.on_broadcast {
            let mut sinks = Vec::new();
            self.shared.registry.interceptors(&topic, PRESENCE_DIFF, None, &mut sinks);
            on_broadcast(&topic, &diff, &sinks);
        }
        let body = Bytes::from(diff.encode());
        let op = Op::Broadcast { topic, event: PRESENCE_DIFF.to_owned(), body, binary: false, exclude: None };
        // Called under the lane's lock when it is full, so before the worker can wake it.
        let waker = || {
            self.backlog.0.store(true, Ordering::SeqCst);
            Waker::from(Arc::clone(&self.backlog))
        };
        let sender = Sender { id: self.sender, waker: &waker };
        if let Submitted::RunNow(op) = self.shared.outbound.submit(sender, op, false) {
            super::outbound::carry_out_one(op, &self.shared);
        }
    }
}

async fn ticks(hub: Weak<PresenceHub>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        hub.tick();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a panic cannot leave the map half-made.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
