//! The joins and leaves of one topic over a tick, coalesced into one `presence_diff`.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::Arc;

use super::encode::write_grouped;
use super::meta::Meta;
use super::refs::Ref;

/// Records a topic's joins and leaves between two flushes (a tick) and turns them into
/// one `presence_diff` payload.
///
/// It keeps, per meta (key and `phx_ref`), only what the tick did to it: whether the
/// meta was present when the tick began, and whether (and as what) it is present now.
/// The flush sends a join of every meta present now that was absent or different, and
/// a leave of every meta gone now that was present. So a meta joined and left within
/// the tick is sent neither way, and an update of a meta joined in the tick (a leave of
/// its ref and a join of a new one) is one join of the new meta. A client that applies
/// the diff to the list it had when the tick began ends with the list of now.
///
/// One more client must end right: one that was given the state during the tick (its
/// `presence_state`, see [`DiffBuffer::observe`]) and then gets the diff. For metas it
/// saw half-way, "no change over the tick" is wrong (a meta joined, seen, then left
/// would stay on its screen), so a meta whose first change came before the last
/// snapshot is always sent as it ends: joined if present, left if gone. Clients that
/// did not need it apply it as a no-op (a join replaces the meta of the same ref, a
/// leave of an absent ref removes nothing), as the Phoenix client does.
///
/// The buffer grows with the metas the tick changed, which the topic's entry limit
/// bounds, plus the metas joined, observed and left within one tick.
#[derive(Debug, Default)]
pub struct DiffBuffer {
    changes: HashMap<(Arc<str>, Ref), Change>,
    /// How many joins and leaves were recorded in this tick: each change remembers the
    /// number of its first one, to compare with `observed_at`.
    records: u64,
    /// `records` when the state was last observed in this tick (0: not yet).
    observed_at: u64,
}

/// One tick's `presence_diff`: the metas that joined and those that left, each list
/// sorted by key, a key's metas in the order they were first recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// (key, meta) of each join.
    pub joins: Vec<(Arc<str>, Meta)>,
    /// (key, meta) of each leave.
    pub leaves: Vec<(Arc<str>, Meta)>,
}

impl Diff {
    /// The payload: `{"joins":{...},"leaves":{...}}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"{\"joins\":");
        write_grouped(&mut out, self.joins.iter().map(|(key, meta)| (&**key, meta)));
        out.extend_from_slice(b",\"leaves\":");
        write_grouped(&mut out, self.leaves.iter().map(|(key, meta)| (&**key, meta)));
        out.push(b'}');
        out
    }
}

/// What the tick did to one meta.
#[derive(Debug)]
struct Change {
    /// The number of the first record of this meta in the tick.
    first: u64,
    /// The meta when the tick began (`None`: absent).
    start: Option<Meta>,
    /// The meta now (`None`: absent).
    end: Option<Meta>,
    /// The meta last recorded: what a leave carries.
    last: Meta,
}

impl DiffBuffer {
    /// Records that `meta` joined under `key`.
    pub fn record_join(&mut self, key: &Arc<str>, meta: &Meta) {
        self.record(key, meta, true);
    }

    /// Records that `meta` left `key`.
    pub fn record_leave(&mut self, key: &Arc<str>, meta: &Meta) {
        self.record(key, meta, false);
    }

    /// Notes that the state was read now to be given to a client (a `presence_state`),
    /// so that what the tick changed so far is sent as it ends (see the type's docs).
    pub fn observe(&mut self) {
        self.observed_at = self.records;
    }

    /// True when a flush would give no diff.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Ends the tick: the `presence_diff` payload of all it recorded,
    /// `{"joins":{...},"leaves":{...}}`, or `None` when there is nothing to send
    /// ([`DiffBuffer::take`], encoded).
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.take().map(|diff| diff.encode())
    }

    /// Ends the tick: the [`Diff`] of all it recorded, or `None` when there is nothing
    /// to send.
    pub fn take(&mut self) -> Option<Diff> {
        self.records = 0;
        self.observed_at = 0;
        if self.changes.is_empty() {
            return None;
        }
        let mut joins = Vec::new();
        let mut leaves = Vec::new();
        for ((key, _), change) in self.changes.drain() {
            // Every change left holds a real difference, or was observed half-way: both
            // are sent as they end (see `record`, which drops the rest).
            match change.end {
                Some(meta) => joins.push((key, change.first, meta)),
                None => leaves.push((key, change.first, change.last)),
            }
        }
        let sorted = |mut metas: Vec<(Arc<str>, u64, Meta)>| {
            metas.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            metas.into_iter().map(|(key, _, meta)| (key, meta)).collect()
        };
        Some(Diff { joins: sorted(joins), leaves: sorted(leaves) })
    }

    fn record(&mut self, key: &Arc<str>, meta: &Meta, joined: bool) {
        self.records += 1;
        let end = joined.then(|| meta.clone());
        match self.changes.entry((Arc::clone(key), meta.phx_ref())) {
            Entry::Vacant(slot) => {
                // A first record: a leave means the meta was there when the tick began;
                // a join, that it was not (an in-place change of a meta is recorded as
                // a leave of the old bytes, then a join of the new).
                let start = (!joined).then(|| meta.clone());
                slot.insert(Change { first: self.records, start, end, last: meta.clone() });
            }
            Entry::Occupied(mut slot) => {
                let change = slot.get_mut();
                change.end = end;
                change.last = meta.clone();
                // Back where it began and not seen half-way: nothing to send.
                if change.start == change.end && change.first > self.observed_at {
                    slot.remove();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{MetaFields, RefGenerator};

    fn meta(refs: &RefGenerator) -> Meta {
        Meta::encode(MetaFields::default(), refs.next_ref(), None, 1024).expect("small meta")
    }

    fn text(payload: Option<Vec<u8>>) -> Option<String> {
        payload.map(|bytes| String::from_utf8(bytes).expect("JSON is UTF-8"))
    }

    #[test]
    fn an_empty_tick_flushes_nothing() {
        assert_eq!(DiffBuffer::default().flush(), None);
    }

    #[test]
    fn a_join_and_leave_in_one_tick_cancel_out() {
        let refs = RefGenerator::new(0, 0);
        let (key, meta) = (Arc::from("ann"), meta(&refs));
        let mut buffer = DiffBuffer::default();
        buffer.record_join(&key, &meta);
        buffer.record_leave(&key, &meta);
        assert!(buffer.is_empty());
        assert_eq!(buffer.flush(), None);
    }

    #[test]
    fn a_leave_and_rejoin_of_the_same_meta_cancel_out() {
        // A node's block removed and merged back within a tick: the same refs and bytes.
        let refs = RefGenerator::new(0, 0);
        let (key, meta) = (Arc::from("ann"), meta(&refs));
        let mut buffer = DiffBuffer::default();
        buffer.record_leave(&key, &meta);
        buffer.record_join(&key, &meta);
        assert_eq!(buffer.flush(), None);
    }

    #[test]
    fn a_meta_seen_half_way_is_sent_as_it_ends() {
        let refs = RefGenerator::new(0, 0);
        let (key, meta) = (Arc::from("ann"), meta(&refs));
        let mut buffer = DiffBuffer::default();
        buffer.record_join(&key, &meta);
        buffer.observe(); // a client is given the state with ann in it
        buffer.record_leave(&key, &meta);
        assert_eq!(
            text(buffer.flush()).as_deref(),
            Some(r#"{"joins":{},"leaves":{"ann":{"metas":[{"phx_ref":"AAAAAAAAAAAAAAAA"}]}}}"#)
        );
    }

    #[test]
    fn a_snapshot_before_a_change_does_not_expose_it() {
        let refs = RefGenerator::new(0, 0);
        let (key, meta) = (Arc::from("ann"), meta(&refs));
        let mut buffer = DiffBuffer::default();
        buffer.observe(); // the client saw the state as the tick began
        buffer.record_join(&key, &meta);
        buffer.record_leave(&key, &meta);
        assert_eq!(buffer.flush(), None);
    }

    #[test]
    fn a_flush_starts_a_new_tick() {
        let refs = RefGenerator::new(0, 0);
        let (key, meta) = (Arc::from("ann"), meta(&refs));
        let mut buffer = DiffBuffer::default();
        buffer.record_join(&key, &meta);
        buffer.observe();
        assert!(buffer.flush().is_some());
        // The observation belonged to the last tick: this pair cancels out again.
        buffer.record_leave(&key, &meta);
        buffer.record_join(&key, &meta);
        assert_eq!(buffer.flush(), None);
    }
}
