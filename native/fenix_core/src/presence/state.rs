//! One topic's presence: who tracks which key with which meta.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::diff::{Diff, DiffBuffer};
use super::encode::write_grouped;
use super::error::PresenceError;
use super::limits::Limits;
use super::meta::{Meta, MetaFields};
use super::refs::{Ref, RefGenerator};
use super::{NodeId, Owner};

/// The source of [`Presence::version`]s.
static VERSIONS: AtomicU64 = AtomicU64::new(0);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// The presence state of one topic, and the diff of its current tick.
///
/// Every change is recorded in the topic's [`DiffBuffer`]; [`Presence::flush_diff`]
/// ends the tick and gives its one `presence_diff`. See [the module docs](super).
#[derive(Debug)]
pub struct Presence {
    /// (key, seq) -> entry: keys sorted, a key's entries in the order they were tracked,
    /// which is the order `presence_state` lists them in.
    entries: BTreeMap<(Arc<str>, u64), Entry>,
    /// Owner -> the keys it tracks here and the seq of each entry. An owner (a channel)
    /// tracks one key or a few, so a small vector, searched linearly.
    owners: HashMap<Owner, Vec<(Arc<str>, u64)>>,
    /// The seq of the next entry: unique within the topic, it orders a key's entries.
    next_seq: u64,
    /// Changes with every change ([`Presence::version`]).
    version: u64,
    limits: Limits,
    refs: Arc<RefGenerator>,
    diff: DiffBuffer,
}

#[derive(Debug)]
struct Entry {
    owner: Owner,
    meta: Meta,
}

/// One entry of the state, as [`Presence::list`] and [`Presence::get_by_key`] give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked<'a> {
    /// Who tracks it.
    pub owner: Owner,
    /// Its key.
    pub key: &'a str,
    /// Its meta.
    pub meta: &'a Meta,
}

/// One entry of a block that another node sends ([`Presence::merge_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The owner's process id on that node.
    pub pid: u64,
    /// The key.
    pub key: String,
    /// The meta as that node encoded it ([`Meta::json`]).
    pub meta: Vec<u8>,
    /// Its native form, as that node's application gave it ([`Meta::native`]).
    pub native: Vec<u8>,
}

impl Presence {
    /// An empty topic whose refs come from `refs` (the node's generator).
    pub fn new(refs: Arc<RefGenerator>, limits: Limits) -> Self {
        Presence {
            entries: BTreeMap::new(),
            owners: HashMap::new(),
            next_seq: 0,
            version: next_version(),
            limits,
            refs,
            diff: DiffBuffer::default(),
        }
    }

    /// How many entries the topic holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody is tracked here.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state's version: it changes with every change, so a state read at one
    /// version is still the state while the version is the same. Versions are unique
    /// across all topics of the process: a topic dropped and made anew never repeats
    /// one.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn changed(&mut self) {
        self.version = next_version();
    }

    /// Tracks `owner` under `key` with the application's `meta` (a JSON object), to
    /// which the server adds a new `phx_ref`; returns that ref. One owner tracks a key
    /// at most once per topic ([`PresenceError::AlreadyTracked`], as Phoenix).
    pub fn track(&mut self, owner: Owner, key: &str, meta: impl Into<MetaFields>) -> Result<Ref, PresenceError> {
        if self.find(owner, key).is_some() {
            return Err(PresenceError::AlreadyTracked { key: key.to_owned() });
        }
        self.check_key(key)?;
        if self.entries.len() >= self.limits.max_entries {
            return Err(PresenceError::TooManyEntries { max: self.limits.max_entries });
        }
        let phx_ref = self.refs.next_ref();
        let meta = Meta::encode(meta.into(), phx_ref, None, self.limits.max_meta_bytes)?;
        self.insert(owner, Arc::from(key), meta);
        Ok(phx_ref)
    }

    /// Stops tracking `owner` under `key`: a leave of its meta. False when it was not
    /// tracked (Phoenix's `untrack` is `:ok` either way).
    pub fn untrack(&mut self, owner: Owner, key: &str) -> bool {
        let Some(keys) = self.owners.get_mut(&owner) else {
            return false;
        };
        let Some(at) = keys.iter().position(|(tracked, _)| &**tracked == key) else {
            return false;
        };
        let (key, seq) = keys.swap_remove(at);
        if keys.is_empty() {
            self.owners.remove(&owner);
        }
        self.remove(key, seq);
        true
    }

    /// Replaces the meta of `owner` under `key`, as Phoenix does: the new meta gets a
    /// new `phx_ref` and `phx_ref_prev` = the old one, and clients get a join of the new
    /// meta and a leave of the old. Returns the new ref.
    pub fn update(&mut self, owner: Owner, key: &str, meta: impl Into<MetaFields>) -> Result<Ref, PresenceError> {
        let not_tracked = || PresenceError::NotTracked { key: key.to_owned() };
        let (key, seq) = self.find(owner, key).ok_or_else(not_tracked)?;
        let max_meta_bytes = self.limits.max_meta_bytes;
        let phx_ref = self.refs.next_ref();
        let entry = self.entries.get_mut(&(Arc::clone(&key), seq)).ok_or_else(not_tracked)?;
        let meta = Meta::encode(meta.into(), phx_ref, Some(entry.meta.phx_ref()), max_meta_bytes)?;
        let old = std::mem::replace(&mut entry.meta, meta.clone());
        self.changed();
        self.diff.record_join(&key, &meta);
        self.diff.record_leave(&key, &old);
        Ok(phx_ref)
    }

    /// Removes every entry of `owner` (its process exited, or untracked everything):
    /// a leave of each. Returns how many there were.
    pub fn leave_owner(&mut self, owner: Owner) -> usize {
        let keys = self.owners.remove(&owner).unwrap_or_default();
        let count = keys.len();
        for (key, seq) in keys {
            self.remove(key, seq);
        }
        count
    }

    /// Removes the block of `node`: every entry whose owner lives there (the node went
    /// down). Returns how many there were.
    pub fn remove_node(&mut self, node: NodeId) -> usize {
        let owners: Vec<Owner> = self.owners.keys().filter(|owner| owner.node == node).copied().collect();
        owners.into_iter().map(|owner| self.leave_owner(owner)).sum()
    }

    /// Merges a block of `node`'s entries, as that node sent them: each is added, or
    /// replaces the meta its owner has under that key. Entries of the node that the
    /// block does not name stay (remove the block first to replace it: within one tick
    /// the metas that come back unchanged cost no diff). All or nothing: a block that
    /// breaks a limit or holds an invalid meta changes nothing.
    pub fn merge_node(&mut self, node: NodeId, block: Vec<NodeEntry>) -> Result<(), PresenceError> {
        let mut checked = Vec::with_capacity(block.len());
        let mut added: HashSet<(u64, &str)> = HashSet::new();
        for entry in &block {
            self.check_key(&entry.key)?;
            let meta = Meta::decode(&entry.meta, entry.native.clone().into(), self.limits.max_meta_bytes)?;
            let owner = Owner { node, pid: entry.pid };
            if self.find(owner, &entry.key).is_none() {
                added.insert((entry.pid, &entry.key));
            }
            checked.push((owner, meta));
        }
        if self.entries.len() + added.len() > self.limits.max_entries {
            return Err(PresenceError::TooManyEntries { max: self.limits.max_entries });
        }
        for (entry, (owner, meta)) in block.iter().zip(checked) {
            self.upsert(owner, &entry.key, meta);
        }
        Ok(())
    }

    /// The state, keys sorted and a key's entries in tracking order.
    ///
    /// Takes `&mut self` because a list may be given to a client as its
    /// `presence_state`: the diff of the current tick must then bring that client, too,
    /// to the state of the tick's end ([`DiffBuffer::observe`]).
    pub fn list(&mut self) -> impl Iterator<Item = Tracked<'_>> {
        self.diff.observe();
        self.entries.iter().map(|((key, _), entry)| Tracked { owner: entry.owner, key, meta: &entry.meta })
    }

    /// The entries under `key`, in tracking order (Phoenix's `get_by_key`).
    pub fn get_by_key(&self, key: &str) -> impl Iterator<Item = Tracked<'_>> {
        let key: Arc<str> = Arc::from(key);
        let range = (Arc::clone(&key), 0)..=(key, u64::MAX);
        self.entries.range(range).map(|((key, _), entry)| Tracked { owner: entry.owner, key, meta: &entry.meta })
    }

    /// The `presence_state` payload: `{key: {"metas": [meta, ...]}, ...}`, as
    /// [`Presence::list`] orders it. Like `list`, it counts as given to a client.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use fenix_core::presence::{Limits, NodeId, Owner, Presence, RefGenerator};
    /// let mut presence = Presence::new(Arc::new(RefGenerator::new(0, 1)), Limits::default());
    /// let owner = Owner { node: NodeId(0), pid: 42 };
    /// let meta = serde_json::json!({"name": "ann"}).as_object().cloned().unwrap_or_default();
    /// presence.track(owner, "ann", meta)?;
    /// assert_eq!(
    ///     presence.encode_state(),
    ///     br#"{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}}"#
    /// );
    /// # Ok::<(), fenix_core::presence::PresenceError>(())
    /// ```
    pub fn encode_state(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        write_grouped(&mut out, self.list().map(|tracked| (tracked.key, tracked.meta)));
        out
    }

    /// Ends the tick: the one `presence_diff` payload of every change since the last
    /// flush, or `None` when the tick changed nothing ([`DiffBuffer::flush`]).
    pub fn flush_diff(&mut self) -> Option<Vec<u8>> {
        self.diff.flush()
    }

    /// Ends the tick as [`Presence::flush_diff`] does, giving the [`Diff`] itself.
    pub fn take_diff(&mut self) -> Option<Diff> {
        self.diff.take()
    }

    /// The key and seq of `owner`'s entry under `key`.
    fn find(&self, owner: Owner, key: &str) -> Option<(Arc<str>, u64)> {
        let keys = self.owners.get(&owner)?;
        keys.iter().find(|(tracked, _)| &**tracked == key).cloned()
    }

    fn check_key(&self, key: &str) -> Result<(), PresenceError> {
        let max = self.limits.max_key_bytes;
        if key.len() > max {
            return Err(PresenceError::KeyTooLong { size: key.len(), max });
        }
        Ok(())
    }

    fn insert(&mut self, owner: Owner, key: Arc<str>, meta: Meta) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.changed();
        self.diff.record_join(&key, &meta);
        self.owners.entry(owner).or_default().push((Arc::clone(&key), seq));
        self.entries.insert((key, seq), Entry { owner, meta });
    }

    fn remove(&mut self, key: Arc<str>, seq: u64) {
        let slot = (key, seq);
        if let Some(entry) = self.entries.remove(&slot) {
            self.changed();
            self.diff.record_leave(&slot.0, &entry.meta);
        }
    }

    /// Adds `owner`'s entry under `key`, or gives it `meta` in place of its own.
    fn upsert(&mut self, owner: Owner, key: &str, meta: Meta) {
        let Some((key, seq)) = self.find(owner, key) else {
            self.insert(owner, Arc::from(key), meta);
            return;
        };
        let Some(entry) = self.entries.get_mut(&(Arc::clone(&key), seq)) else {
            return;
        };
        if entry.meta != meta {
            let old = std::mem::replace(&mut entry.meta, meta.clone());
            self.changed();
            // A leave of the old bytes and a join of the new, even under the same ref:
            // the buffer then sends the join alone, which replaces the client's copy.
            self.diff.record_leave(&key, &old);
            self.diff.record_join(&key, &meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    // The refs a generator seeded with 1 makes, in order (tag 0).
    const REF_1: &str = "AAAAAAAAAAEAAAAA";
    const REF_2: &str = "AAAAAAAAAAIAAAAA";

    const LOCAL: NodeId = NodeId(1);
    const REMOTE: NodeId = NodeId(2);

    fn owner(pid: u64) -> Owner {
        Owner { node: LOCAL, pid }
    }

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn name(name: &str) -> Map<String, Value> {
        fields(json!({ "name": name }))
    }

    fn presence(limits: Limits) -> Presence {
        Presence::new(Arc::new(RefGenerator::new(0, 1)), limits)
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("JSON is UTF-8")
    }

    fn diff(presence: &mut Presence) -> Option<String> {
        presence.flush_diff().map(text)
    }

    fn state(presence: &mut Presence) -> String {
        text(presence.encode_state())
    }

    #[test]
    fn the_version_changes_with_the_state_only() {
        let mut presence = presence(Limits::default());
        let mut seen = vec![presence.version()];
        let mut changed = |presence: &Presence| {
            assert!(!seen.contains(&presence.version()), "a new version");
            seen.push(presence.version());
        };
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        changed(&presence);
        presence.update(owner(1), "ann", name("ann 2")).expect("updated");
        changed(&presence);
        let before = presence.version();
        let _ = state(&mut presence);
        assert!(!presence.untrack(owner(2), "ann"));
        let _ = presence.flush_diff();
        assert_eq!(presence.version(), before, "reading, a no-op and a tick change nothing");
        presence.leave_owner(owner(1));
        changed(&presence);
    }

    #[test]
    fn keeps_the_native_form_as_given() {
        let mut presence = presence(Limits::default());
        let native = bytes::Bytes::from_static(b"\x83t\0\0\0\0");
        presence.track(owner(1), "ann", MetaFields { json: name("ann"), native: native.clone() }).expect("tracked");
        let metas: Vec<Vec<u8>> = presence.get_by_key("ann").map(|t| t.meta.native().to_vec()).collect();
        assert_eq!(metas, vec![native.to_vec()]);
        presence.update(owner(1), "ann", name("ann 2")).expect("updated");
        let metas: Vec<Vec<u8>> = presence.get_by_key("ann").map(|t| t.meta.native().to_vec()).collect();
        assert_eq!(metas, vec![Vec::<u8>::new()], "an update replaces it");
    }

    #[test]
    fn the_state_lists_keys_sorted_and_metas_in_tracking_order() {
        let mut presence = presence(Limits::default());
        assert_eq!(state(&mut presence), "{}");
        presence.track(owner(1), "bob", name("bob")).expect("tracked");
        presence.track(owner(2), "ann", name("ann on her phone")).expect("tracked");
        presence.track(owner(3), "ann", name("ann on her laptop")).expect("tracked");
        assert_eq!(
            state(&mut presence),
            concat!(
                r#"{"ann":{"metas":[{"name":"ann on her phone","phx_ref":"AAAAAAAAAAIAAAAA"},"#,
                r#"{"name":"ann on her laptop","phx_ref":"AAAAAAAAAAMAAAAA"}]},"#,
                r#""bob":{"metas":[{"name":"bob","phx_ref":"AAAAAAAAAAEAAAAA"}]}}"#
            )
        );
        assert_eq!(presence.len(), 3);
    }

    #[test]
    fn a_join_diff() {
        let mut presence = presence(Limits::default());
        let phx_ref = presence.track(owner(1), "ann", name("ann")).expect("tracked");
        assert_eq!(phx_ref.as_str(), REF_1);
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(r#"{"joins":{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}},"leaves":{}}"#)
        );
        assert_eq!(diff(&mut presence), None, "a flush ends the tick");
    }

    #[test]
    fn a_leave_diff() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.flush_diff();
        assert!(presence.untrack(owner(1), "ann"));
        assert!(!presence.untrack(owner(1), "ann"), "untracked already");
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(r#"{"joins":{},"leaves":{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}}}"#)
        );
        assert_eq!(state(&mut presence), "{}");
    }

    #[test]
    fn an_update_diff_joins_the_new_meta_and_leaves_the_old() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.flush_diff();
        let phx_ref = presence.update(owner(1), "ann", fields(json!({"name": "ann", "status": "away"})));
        assert_eq!(phx_ref.map(|r| r.to_string()).as_deref(), Ok(REF_2));
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(concat!(
                r#"{"joins":{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAIAAAAA","#,
                r#""phx_ref_prev":"AAAAAAAAAAEAAAAA","status":"away"}]}},"#,
                r#""leaves":{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}}}"#
            ))
        );
    }

    #[test]
    fn a_join_and_leave_in_one_tick_send_nothing() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.untrack(owner(1), "ann");
        assert_eq!(diff(&mut presence), None);
    }

    #[test]
    fn an_update_of_a_meta_joined_in_the_tick_is_one_join() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.update(owner(1), "ann", name("ann 2")).expect("updated");
        presence.update(owner(1), "ann", name("ann 3")).expect("updated");
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(concat!(
                r#"{"joins":{"ann":{"metas":[{"name":"ann 3","phx_ref":"AAAAAAAAAAMAAAAA","#,
                r#""phx_ref_prev":"AAAAAAAAAAIAAAAA"}]}},"leaves":{}}"#
            ))
        );
    }

    #[test]
    fn one_owner_tracks_a_key_once() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        assert_eq!(
            presence.track(owner(1), "ann", name("ann")),
            Err(PresenceError::AlreadyTracked { key: "ann".to_owned() })
        );
        presence.track(owner(2), "ann", name("ann elsewhere")).expect("another owner may");
        presence.track(owner(1), "bob", name("bob")).expect("another key may");
        let remote = Owner { node: REMOTE, pid: 1 };
        presence.track(remote, "ann", name("ann")).expect("the same pid on another node may");
        assert_eq!(presence.len(), 4);
    }

    #[test]
    fn update_needs_a_tracked_key() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        let not_tracked = Err(PresenceError::NotTracked { key: "bob".to_owned() });
        assert_eq!(presence.update(owner(1), "bob", name("bob")), not_tracked);
        assert_eq!(presence.update(owner(2), "bob", name("bob")), not_tracked);
    }

    #[test]
    fn leave_owner_removes_all_keys_of_that_owner_only() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.track(owner(1), "bob", name("bob")).expect("tracked");
        presence.track(owner(2), "ann", name("ann elsewhere")).expect("tracked");
        presence.flush_diff();
        assert_eq!(presence.leave_owner(owner(1)), 2);
        assert_eq!(presence.leave_owner(owner(1)), 0);
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(concat!(
                r#"{"joins":{},"leaves":{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]},"#,
                r#""bob":{"metas":[{"name":"bob","phx_ref":"AAAAAAAAAAIAAAAA"}]}}}"#
            ))
        );
        assert_eq!(
            state(&mut presence),
            r#"{"ann":{"metas":[{"name":"ann elsewhere","phx_ref":"AAAAAAAAAAMAAAAA"}]}}"#
        );
    }

    #[test]
    fn get_by_key_gives_that_keys_entries() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.track(owner(2), "ann", name("ann elsewhere")).expect("tracked");
        presence.track(owner(3), "anne", name("anne")).expect("tracked");
        let refs: Vec<(u64, String)> =
            presence.get_by_key("ann").map(|t| (t.owner.pid, t.meta.phx_ref().to_string())).collect();
        assert_eq!(refs, [(1, REF_1.to_owned()), (2, REF_2.to_owned())]);
        assert_eq!(presence.get_by_key("an").count(), 0);
    }

    /// The block of `REMOTE` as that node would send it: `list()` of its own entries.
    fn remote_block(presence: &mut Presence) -> Vec<NodeEntry> {
        presence
            .list()
            .filter(|t| t.owner.node == REMOTE)
            .map(|t| NodeEntry { pid: t.owner.pid, key: t.key.to_owned(), meta: t.meta.json().to_vec(), native: Vec::new() })
            .collect()
    }

    #[test]
    fn a_node_block_removed_and_merged_back_in_one_tick_sends_nothing() {
        let mut presence = presence(Limits::default());
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.track(Owner { node: REMOTE, pid: 1 }, "bob", name("bob")).expect("tracked");
        presence.track(Owner { node: REMOTE, pid: 2 }, "cat", name("cat")).expect("tracked");
        let block = remote_block(&mut presence);
        let before = state(&mut presence);
        presence.flush_diff();

        assert_eq!(presence.remove_node(REMOTE), 2);
        assert_eq!(state(&mut presence), r#"{"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}}"#);
        presence.flush_diff();
        presence.merge_node(REMOTE, block.clone()).expect("merged");
        assert_eq!(state(&mut presence), before);
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(concat!(
                r#"{"joins":{"bob":{"metas":[{"name":"bob","phx_ref":"AAAAAAAAAAIAAAAA"}]},"#,
                r#""cat":{"metas":[{"name":"cat","phx_ref":"AAAAAAAAAAMAAAAA"}]}},"leaves":{}}"#
            ))
        );

        presence.remove_node(REMOTE);
        presence.merge_node(REMOTE, block).expect("merged");
        assert_eq!(diff(&mut presence), None, "the same metas came back in the same tick");
    }

    #[test]
    fn a_merged_meta_of_the_same_ref_replaces_the_old_with_a_join() {
        let mut presence = presence(Limits::default());
        presence.track(Owner { node: REMOTE, pid: 1 }, "bob", name("bob")).expect("tracked");
        presence.flush_diff();
        let changed = br#"{"name":"bob 2","phx_ref":"AAAAAAAAAAEAAAAA"}"#.to_vec();
        let block = vec![NodeEntry { pid: 1, key: "bob".to_owned(), meta: changed, native: Vec::new() }];
        presence.merge_node(REMOTE, block.clone()).expect("merged");
        assert_eq!(
            diff(&mut presence).as_deref(),
            Some(r#"{"joins":{"bob":{"metas":[{"name":"bob 2","phx_ref":"AAAAAAAAAAEAAAAA"}]}},"leaves":{}}"#)
        );
        presence.merge_node(REMOTE, block).expect("merged");
        assert_eq!(diff(&mut presence), None, "nothing changed");
        assert_eq!(presence.len(), 1);
    }

    #[test]
    fn limits_refuse_and_change_nothing() {
        let limits = Limits { max_meta_bytes: 96, max_entries: 2, max_key_bytes: 8 };
        let mut presence = presence(limits);
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.flush_diff();
        let before = state(&mut presence);

        let big = name(&"x".repeat(64));
        // {"name":"x...x","phx_ref":"AAAAAAAAAAEAAAAA"}: 64 x, 12 for name and braces, 28 for
        // phx_ref; an update adds 34 for `,"phx_ref_prev":"..."`.
        assert_eq!(
            presence.track(owner(2), "bob", big.clone()),
            Err(PresenceError::MetaTooLarge { size: 104, max: 96 })
        );
        assert_eq!(presence.update(owner(1), "ann", big), Err(PresenceError::MetaTooLarge { size: 138, max: 96 }));
        assert_eq!(
            presence.track(owner(2), "123456789", name("x")),
            Err(PresenceError::KeyTooLong { size: 9, max: 8 })
        );
        presence.track(owner(2), "bob", name("bob")).expect("the second entry fits");
        assert_eq!(presence.track(owner(3), "cat", name("cat")), Err(PresenceError::TooManyEntries { max: 2 }));
        presence.update(owner(2), "bob", name("bob 2")).expect("an update adds no entry");
        presence.untrack(owner(2), "bob");

        assert_eq!(state(&mut presence), before);
        assert_eq!(diff(&mut presence), None, "the refused calls recorded nothing");
    }

    #[test]
    fn a_merged_block_is_checked_whole() {
        let limits = Limits { max_meta_bytes: 64, max_entries: 2, max_key_bytes: 8 };
        let mut presence = presence(limits);
        presence.track(owner(1), "ann", name("ann")).expect("tracked");
        presence.flush_diff();
        let entry = |pid, key: &str, meta: &[u8]| NodeEntry { pid, key: key.to_owned(), meta: meta.to_vec(), native: Vec::new() };
        let good = entry(1, "bob", br#"{"phx_ref":"AAAAAAAAAAkAAAAC"}"#);

        let too_many = vec![good.clone(), entry(2, "cat", br#"{"phx_ref":"AAAAAAAAAAoAAAAC"}"#)];
        assert_eq!(presence.merge_node(REMOTE, too_many), Err(PresenceError::TooManyEntries { max: 2 }));
        let invalid = vec![good.clone(), entry(2, "cat", br#"{"name":"cat"}"#)];
        assert_eq!(
            presence.merge_node(REMOTE, invalid),
            Err(PresenceError::InvalidMeta("phx_ref missing or not a ref"))
        );
        let long_key = vec![good.clone(), entry(2, "123456789", br#"{"phx_ref":"AAAAAAAAAAoAAAAC"}"#)];
        assert_eq!(presence.merge_node(REMOTE, long_key), Err(PresenceError::KeyTooLong { size: 9, max: 8 }));
        let big = format!(r#"{{"phx_ref":"AAAAAAAAAAoAAAAC","x":"{}"}}"#, "x".repeat(40));
        assert_eq!(
            presence.merge_node(REMOTE, vec![good.clone(), entry(2, "cat", big.as_bytes())]),
            Err(PresenceError::MetaTooLarge { size: 77, max: 64 })
        );
        assert_eq!(diff(&mut presence), None, "no refused block changed anything");
        assert_eq!(presence.len(), 1);

        // Twice the same entry is one entry: the block fits.
        presence.merge_node(REMOTE, vec![good.clone(), good]).expect("merged");
        assert_eq!(presence.len(), 2);
    }
}
