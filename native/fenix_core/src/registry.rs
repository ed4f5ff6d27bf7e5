//! Topic -> members: who gets a topic's broadcasts, and who intercepts which event.
//!
//! Pure data: no I/O, and generic over the [`Subscriber`] a broadcast's frames are
//! queued to (in the server, a connection), so that it is tested without sockets. The
//! fan-out itself is [`crate::fanout`]; it runs on a [`Target`] snapshot taken here, so
//! no shard of the map is locked while frames are queued or processes told.
//!
//! A member is added in two steps. [`Registry::join`] registers the channel the moment
//! its join is accepted, so that a broadcast made right after the join reaches its
//! `handle_out` (channels that intercept an event, Phoenix's `intercept/1`, get the
//! payload from the broadcaster, see [`Registry::interceptors`], and no frame).
//! [`Registry::activate`] makes it a fan-out target after its join reply went out, so
//! that no broadcast frame overtakes that reply. Each topic counts its interceptors
//! per event, so a broadcast nobody intercepts costs no pass over them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;

use crate::protocol::Serializer;
use crate::sink::Sink;

/// What a broadcast's frames are queued to.
pub trait Subscriber: Send + Sync + 'static {
    /// Unique among the subscribers of a registry (a connection id).
    fn id(&self) -> u64;
    /// The wire format its frames are encoded in.
    fn serializer(&self) -> Serializer;
    /// Queues `frames` in order, all or none. False when the subscriber is gone or
    /// could not take them (it is then dropped for not reading; the others go on).
    fn send_all(&self, frames: &[Bytes]) -> bool;
}

/// A topic's fan-out target, as the fan-out sees it once the registry is unlocked.
#[derive(Debug)]
pub struct Target<S> {
    /// The subscriber.
    pub subscriber: Arc<S>,
    /// The events its channel intercepts (empty when the fan-out needs not know).
    pub intercepts: Arc<[String]>,
}

/// The topic registry of a server.
#[derive(Debug)]
pub struct Registry<S> {
    topics: DashMap<String, Topic<S>>,
    /// One shared copy of each intercept list: every channel of a module has the same
    /// list, so a member costs a reference count, not a copy. The lists come from the
    /// channel modules (`intercept/1`), never from clients, so this stays small.
    intercept_lists: Mutex<HashMap<Vec<String>, Arc<[String]>>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Registry { topics: DashMap::new(), intercept_lists: Mutex::default() }
    }
}

#[derive(Debug)]
struct Topic<S> {
    members: HashMap<u64, Member<S>>,
    /// How many members intercept each event (a few events at most: a small vector).
    intercepted: Vec<(String, usize)>,
}

impl<S> Default for Topic<S> {
    fn default() -> Self {
        Topic { members: HashMap::new(), intercepted: Vec::new() }
    }
}

/// A joined channel of one subscriber.
#[derive(Debug)]
struct Member<S> {
    /// Set once the member is a fan-out target (after its join reply).
    target: Option<Arc<S>>,
    /// The events its channel intercepts: handed to the broadcaster, no frame.
    intercepts: Arc<[String]>,
    sink: Sink,
}

impl<S> Topic<S> {
    fn add(&mut self, id: u64, member: Member<S>) {
        self.remove(id);
        for event in member.intercepts.iter() {
            match self.intercepted.iter_mut().find(|(e, _)| e == event) {
                Some((_, count)) => *count += 1,
                None => {
                    self.intercepted.reserve_exact(1);
                    self.intercepted.push((event.clone(), 1));
                }
            }
        }
        self.members.insert(id, member);
    }

    fn remove(&mut self, id: u64) {
        let Some(old) = self.members.remove(&id) else { return };
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

impl<S: Subscriber> Registry<S> {
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

    /// Adds subscriber `id`'s channel `sink` to `topic`, which intercepts `intercepts`:
    /// from now on it is among the [`Registry::interceptors`], but no fan-out target
    /// until [`Registry::activate`].
    pub fn join(&self, topic: &str, id: u64, sink: Sink, intercepts: Arc<[String]>) {
        let member = Member { target: None, intercepts, sink };
        self.topics.entry(topic.to_owned()).or_default().add(id, member);
    }

    /// Makes `subscriber`'s channel on `topic` a fan-out target (a no-op if it has left).
    pub fn activate(&self, topic: &str, subscriber: &Arc<S>) {
        if let Some(mut entry) = self.topics.get_mut(topic) {
            if let Some(member) = entry.members.get_mut(&subscriber.id()) {
                member.target = Some(Arc::clone(subscriber));
            }
        }
    }

    /// Removes subscriber `id`'s channel from `topic`.
    pub fn leave(&self, topic: &str, id: u64) {
        self.topics.remove_if_mut(topic, |_, entry| {
            entry.remove(id);
            entry.members.is_empty()
        });
    }

    /// How many fan-out targets `topic` has.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |entry| entry.members.values().filter(|m| m.target.is_some()).count())
    }

    /// How many channels on `topic` intercept `event`.
    pub fn interceptor_count(&self, topic: &str, event: &str) -> usize {
        self.topics.get(topic).map_or(0, |entry| entry.interceptors(event))
    }

    /// How many topics have members.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// `(topic_count, subscriber_count(topic))`, for statistics in one call.
    pub fn counts(&self, topic: &str) -> (usize, usize) {
        (self.topic_count(), self.subscriber_count(topic))
    }

    /// How many channels are joined to `topic` (fan-out targets or not yet).
    pub fn member_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |entry| entry.members.len())
    }

    /// Appends to `out` the sink of every channel joined to `topic`: a message for the
    /// topic's channel processes themselves (not their clients) goes to each.
    pub fn members(&self, topic: &str, out: &mut Vec<Sink>) {
        let Some(entry) = self.topics.get(topic) else { return };
        out.extend(entry.members.values().map(|member| Arc::clone(&member.sink)));
    }

    /// Appends to `out` the sink of every member of `topic` (but `exclude`) that
    /// intercepts `event`: the broadcaster hands them the payload itself.
    pub fn interceptors(&self, topic: &str, event: &str, exclude: Option<u64>, out: &mut Vec<Sink>) {
        let Some(entry) = self.topics.get(topic) else { return };
        if entry.interceptors(event) == 0 {
            return;
        }
        let intercepting = entry.members.iter().filter(|(id, m)| Some(**id) != exclude && m.intercepts.iter().any(|e| e == event));
        out.extend(intercepting.map(|(_, member)| Arc::clone(&member.sink)));
    }

    /// Appends `topic`'s fan-out targets to `out`. Their intercept lists come along
    /// only when some member intercepts one of `events` (the fan-out then filters).
    pub fn targets<'e>(&self, topic: &str, events: impl Iterator<Item = &'e str>, out: &mut Vec<Target<S>>) {
        let Some(entry) = self.topics.get(topic) else { return };
        let filtered = events.into_iter().any(|event| entry.interceptors(event) > 0);
        let none: Arc<[String]> = Arc::new([]);
        out.extend(entry.members.values().filter_map(|member| {
            let subscriber = Arc::clone(member.target.as_ref()?);
            let intercepts = if filtered { Arc::clone(&member.intercepts) } else { Arc::clone(&none) };
            Some(Target { subscriber, intercepts })
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use super::*;
    use crate::sink::{ChannelEvent, ChannelSink};

    #[derive(Debug)]
    struct Fake(u64);

    impl Subscriber for Fake {
        fn id(&self) -> u64 {
            self.0
        }
        fn serializer(&self) -> Serializer {
            Serializer::V2
        }
        fn send_all(&self, _frames: &[Bytes]) -> bool {
            true
        }
    }

    #[derive(Debug)]
    struct NoSink;

    impl ChannelSink for NoSink {
        fn deliver(&self, _event: ChannelEvent) {}
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn join(registry: &Registry<Fake>, topic: &str, id: u64, intercepts: &[&str]) -> Arc<Fake> {
        let intercepts: Vec<String> = intercepts.iter().map(|e| e.to_string()).collect();
        registry.join(topic, id, Arc::new(NoSink), registry.intern_intercepts(&intercepts));
        Arc::new(Fake(id))
    }

    fn target_ids(registry: &Registry<Fake>, topic: &str, events: &[&str]) -> Vec<(u64, usize)> {
        let mut out = Vec::new();
        registry.targets(topic, events.iter().copied(), &mut out);
        let mut ids: Vec<_> = out.iter().map(|t| (t.subscriber.0, t.intercepts.len())).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_member_is_a_target_only_once_activated() {
        let registry = Registry::default();
        let a = join(&registry, "t", 1, &[]);
        assert_eq!((registry.subscriber_count("t"), registry.topic_count()), (0, 1));
        registry.activate("t", &a);
        assert_eq!(target_ids(&registry, "t", &["e"]), [(1, 0)]);
        registry.leave("t", 1);
        assert_eq!((registry.subscriber_count("t"), registry.topic_count()), (0, 0));
        registry.activate("t", &a);
        assert_eq!(registry.topic_count(), 0, "activating a member that left adds nothing");
    }

    #[test]
    fn members_are_every_joined_channel_activated_or_not() {
        let registry = Registry::default();
        let a = join(&registry, "t", 1, &[]);
        join(&registry, "t", 2, &["e"]);
        registry.activate("t", &a);
        let mut sinks = Vec::new();
        registry.members("t", &mut sinks);
        assert_eq!((sinks.len(), registry.member_count("t")), (2, 2));
        registry.leave("t", 2);
        assert_eq!(registry.member_count("t"), 1);
        assert_eq!(registry.member_count("none"), 0);
    }

    #[test]
    fn interceptors_are_counted_per_event_and_handed_out() {
        let registry = Registry::default();
        let a = join(&registry, "t", 1, &["secret"]);
        let b = join(&registry, "t", 2, &[]);
        registry.activate("t", &a);
        registry.activate("t", &b);
        assert_eq!((registry.interceptor_count("t", "secret"), registry.interceptor_count("t", "public")), (1, 0));
        let mut sinks = Vec::new();
        registry.interceptors("t", "secret", None, &mut sinks);
        assert_eq!(sinks.len(), 1);
        registry.interceptors("t", "secret", Some(1), &mut sinks);
        assert_eq!(sinks.len(), 1, "the excluded subscriber is left out");
        // Intercept lists come along only when the fan-out must filter.
        assert_eq!(target_ids(&registry, "t", &["public"]), [(1, 0), (2, 0)]);
        assert_eq!(target_ids(&registry, "t", &["public", "secret"]), [(1, 1), (2, 0)]);
        registry.leave("t", 1);
        assert_eq!(registry.interceptor_count("t", "secret"), 0);
    }

    #[test]
    fn intercept_lists_are_shared() {
        let registry: Registry<Fake> = Registry::default();
        let list = ["a".to_owned(), "b".to_owned()];
        assert!(Arc::ptr_eq(&registry.intern_intercepts(&list), &registry.intern_intercepts(&list)));
    }

    #[test]
    fn joining_again_replaces_the_member() {
        let registry = Registry::default();
        let a = join(&registry, "t", 1, &["e"]);
        registry.activate("t", &a);
        join(&registry, "t", 1, &[]);
        assert_eq!((registry.subscriber_count("t"), registry.interceptor_count("t", "e")), (0, 0));
    }
}
