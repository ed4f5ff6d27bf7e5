//! Topic -> the processes subscribed to it: the local subscriptions of a PubSub server
//! (in Fenix, `Fenix.PubSub`), as Phoenix.PubSub keeps them in a duplicate-key
//! `Registry`.
//!
//! Kept apart from the channel [`Registry`](crate::registry::Registry): a PubSub server
//! is started on its own and may serve several endpoints (or none), and its subscribers
//! are plain processes that get the broadcast's term, not frames. A topic nobody
//! subscribed to costs a broadcast one map lookup.
//!
//! Pure data, generic over the process handle `P` (in Fenix, a local pid). A process is
//! named by an `owner` id (the pid's bits) so that it can be dropped from every topic
//! at once when it exits ([`Subscriptions::remove_owner`]), without a scan.

use bytes::Bytes;
use dashmap::DashMap;

/// One subscription: Phoenix.PubSub's `{pid, metadata}` registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription<P> {
    /// The subscribing process's id.
    pub owner: u64,
    /// Where its messages go.
    pub process: P,
    /// The `metadata:` it subscribed with, in the application's encoding (for
    /// dispatchers), or `None`.
    pub metadata: Option<Bytes>,
}

/// The subscriptions of one PubSub server.
#[derive(Debug)]
pub struct Subscriptions<P> {
    topics: DashMap<String, Vec<Subscription<P>>>,
    /// Owner -> the topics it subscribed to, once per subscription.
    owners: DashMap<u64, Vec<String>>,
}

impl<P> Default for Subscriptions<P> {
    fn default() -> Self {
        Subscriptions { topics: DashMap::new(), owners: DashMap::new() }
    }
}

impl<P: Clone> Subscriptions<P> {
    /// Subscribes `owner` to `topic`. As with Phoenix.PubSub, a process that subscribes
    /// twice gets each message twice. True when this is the owner's first subscription
    /// (the caller then watches the process, to call [`Subscriptions::remove_owner`]).
    pub fn subscribe(&self, topic: &str, owner: u64, process: P, metadata: Option<Bytes>) -> bool {
        self.topics.entry(topic.to_owned()).or_default().push(Subscription { owner, process, metadata });
        let mut topics = self.owners.entry(owner).or_default();
        topics.push(topic.to_owned());
        topics.len() == 1
    }

    /// Removes every subscription of `owner` to `topic`.
    pub fn unsubscribe(&self, topic: &str, owner: u64) {
        self.topics.remove_if_mut(topic, |_, subscriptions| {
            subscriptions.retain(|s| s.owner != owner);
            subscriptions.is_empty()
        });
        self.owners.remove_if_mut(&owner, |_, topics| {
            topics.retain(|t| t != topic);
            topics.is_empty()
        });
    }

    /// Removes every subscription of `owner` (it exited).
    pub fn remove_owner(&self, owner: u64) {
        let Some((_, mut topics)) = self.owners.remove(&owner) else { return };
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            self.topics.remove_if_mut(&topic, |_, subscriptions| {
                subscriptions.retain(|s| s.owner != owner);
                subscriptions.is_empty()
            });
        }
    }

    /// How many subscriptions `topic` has.
    pub fn count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |subscriptions| subscriptions.len())
    }

    /// Appends `topic`'s subscriptions but those of `exclude` to `out`, in the order
    /// they were made: the caller sends once the map is unlocked again.
    pub fn collect(&self, topic: &str, exclude: Option<u64>, out: &mut Vec<Subscription<P>>) {
        let Some(subscriptions) = self.topics.get(topic) else { return };
        out.extend(subscriptions.iter().filter(|s| Some(s.owner) != exclude).cloned());
    }

    /// How many topics have subscriptions.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(subscriptions: &Subscriptions<&'static str>, topic: &str, exclude: Option<u64>) -> Vec<u64> {
        let mut out = Vec::new();
        subscriptions.collect(topic, exclude, &mut out);
        out.iter().map(|s| s.owner).collect()
    }

    #[test]
    fn subscriptions_keep_their_order_and_duplicates() {
        let subs = Subscriptions::default();
        assert!(subs.subscribe("t", 1, "a", None));
        assert!(subs.subscribe("t", 2, "b", Some(Bytes::from_static(b"m"))));
        assert!(!subs.subscribe("t", 1, "a", None), "a second subscription is not the owner's first");
        assert_eq!(owners(&subs, "t", None), [1, 2, 1]);
        assert_eq!(owners(&subs, "t", Some(1)), [2]);
        assert_eq!(subs.count("t"), 3);
        assert_eq!(owners(&subs, "other", None), Vec::<u64>::new());
    }

    #[test]
    fn unsubscribe_removes_all_of_the_owners_subscriptions_to_the_topic() {
        let subs = Subscriptions::default();
        subs.subscribe("t", 1, "a", None);
        subs.subscribe("t", 1, "a", None);
        subs.subscribe("u", 1, "a", None);
        subs.subscribe("t", 2, "b", None);
        subs.unsubscribe("t", 1);
        assert_eq!(owners(&subs, "t", None), [2]);
        assert_eq!(owners(&subs, "u", None), [1]);
        subs.unsubscribe("t", 2);
        assert_eq!((subs.count("t"), subs.topic_count()), (0, 1), "an empty topic is dropped");
        assert!(!subs.subscribe("v", 1, "a", None), "owner 1 still has u");
    }

    #[test]
    fn an_owner_that_exits_leaves_every_topic() {
        let subs = Subscriptions::default();
        for topic in ["t", "u", "t"] {
            subs.subscribe(topic, 1, "a", None);
        }
        subs.subscribe("u", 2, "b", None);
        subs.remove_owner(1);
        assert_eq!((owners(&subs, "t", None), owners(&subs, "u", None)), (vec![], vec![2]));
        assert_eq!(subs.topic_count(), 1);
        assert!(subs.subscribe("t", 1, "a", None), "a new process under an old id starts afresh");
        subs.remove_owner(3);
    }
}
