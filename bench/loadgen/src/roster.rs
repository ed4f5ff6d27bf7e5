//! One member's view of a topic's presence list, kept the way the phoenix client's
//! `Presence` keeps it: `presence_state` replaces the list, each `presence_diff` adds
//! its `joins` and removes its `leaves`, and diffs that arrive before the first state
//! wait for it (`Roster::pending`).
//!
//! The presence scenario gives every connection its own key (the `user_id` connect
//! param, a decimal client index) and tracks it once with one meta, and a key never
//! joins again after it left. So a key holds at most one meta (one `phx_ref`), and the
//! client's "add the metas whose phx_ref is new, remove the metas whose phx_ref
//! leaves" is exactly "set the key" / "clear the key": the roster is a bitset over the
//! client indices, 1.4 KB for 11,000 keys, small enough for one per member.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// The entries of a state or of one side of a diff: key -> `{"metas": [...]}`. Keys are
/// decimal indices, which JSON never escapes, so they borrow from the frame.
type Entries<'a> = HashMap<&'a str, IgnoredAny>;

#[derive(Deserialize)]
struct Diff<'a> {
    #[serde(borrow)]
    joins: Entries<'a>,
    #[serde(borrow)]
    leaves: Entries<'a>,
}

/// Keys seen in one state or diff: `(key index, joined)`, in no particular order.
pub type Changes = Vec<(usize, bool)>;

/// What applying a state or a diff did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Joins of keys the list already held, and leaves of keys it did not: harmless
    /// for the phoenix client (nothing changes), counted to show a server that repeats.
    pub redundant: u64,
}

/// A member's presence list over the keys `0..capacity`.
#[derive(Debug)]
pub struct Roster {
    capacity: usize,
    bits: Vec<u64>,
    present: usize,
    synced: bool,
    /// Diffs (their payloads) received before the first `presence_state`.
    pending: Vec<Vec<u8>>,
}

impl Roster {
    pub fn new(capacity: usize) -> Roster {
        Roster { capacity, bits: vec![0; capacity.div_ceil(64)], present: 0, synced: false, pending: Vec::new() }
    }

    /// Keys in the list.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.present
    }

    /// Whether the first `presence_state` has been applied.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    #[cfg(test)]
    pub fn contains(&self, key: usize) -> bool {
        self.bits.get(key / 64).is_some_and(|w| w & (1 << (key % 64)) != 0)
    }

    /// Applies a `presence_state` payload, then the diffs that waited for it.
    pub fn apply_state(&mut self, payload: &[u8]) -> Result<Applied, String> {
        let entries: Entries = serde_json::from_slice(payload).map_err(|e| format!("bad presence_state: {e}"))?;
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.present = 0;
        let mut applied = Applied::default();
        for key in entries.keys() {
            self.set(self.index(key)?, true, &mut applied);
        }
        self.synced = true;
        for diff in std::mem::take(&mut self.pending) {
            applied.redundant += self.apply_diff(&diff, &mut Vec::new())?.redundant;
        }
        Ok(applied)
    }

    /// Applies a `presence_diff` payload (or keeps it until the first state), adding
    /// the keys it touched to `changes`.
    pub fn apply_diff(&mut self, payload: &[u8], changes: &mut Changes) -> Result<Applied, String> {
        let diff: Diff = serde_json::from_slice(payload).map_err(|e| format!("bad presence_diff: {e}"))?;
        let mut applied = Applied::default();
        let mut keys = Vec::with_capacity(diff.joins.len() + diff.leaves.len());
        for key in diff.joins.keys() {
            keys.push((self.index(key)?, true));
        }
        for key in diff.leaves.keys() {
            keys.push((self.index(key)?, false));
        }
        changes.extend_from_slice(&keys);
        if !self.synced {
            self.pending.push(payload.to_vec());
            return Ok(applied);
        }
        // The phoenix client applies a diff's joins before its leaves.
        for (key, joined) in keys {
            self.set(key, joined, &mut applied);
        }
        Ok(applied)
    }

    /// Whether both lists hold exactly the same keys (cheap: one word per 64 keys).
    pub fn matches(&self, other: &Roster) -> bool {
        self.present == other.present && self.bits == other.bits
    }

    /// Adds (`on`) or removes a key directly: the scenario's list of who should be there.
    pub fn put(&mut self, key: usize, on: bool) {
        self.set(key, on, &mut Applied::default());
    }

    fn index(&self, key: &str) -> Result<usize, String> {
        key.parse::<usize>()
            .ok()
            .filter(|&k| k < self.capacity)
            .ok_or_else(|| format!("presence key {key:?} is not a client index of this run"))
    }

    fn set(&mut self, key: usize, on: bool, applied: &mut Applied) {
        let (w, bit) = (key / 64, 1u64 << (key % 64));
        if (self.bits[w] & bit != 0) == on {
            applied.redundant += 1;
            return;
        }
        self.bits[w] ^= bit;
        if on {
            self.present += 1;
        } else {
            self.present -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Payloads as the conformance app sends them: key = user_id, one meta each.
    const STATE: &[u8] = br#"{"1":{"metas":[{"name":"a","phx_ref":"F1"}]},"2":{"metas":[{"name":"b","phx_ref":"F2"}]}}"#;
    const JOIN_3_LEAVE_1: &[u8] =
        br#"{"joins":{"3":{"metas":[{"name":"c","phx_ref":"F3"}]}},"leaves":{"1":{"metas":[{"name":"a","phx_ref":"F1"}]}}}"#;

    #[test]
    fn state_then_diff() {
        let mut r = Roster::new(10);
        assert_eq!(r.apply_state(STATE).unwrap(), Applied::default());
        assert_eq!((r.len(), r.contains(1), r.contains(2)), (2, true, true));
        let mut changes = Vec::new();
        assert_eq!(r.apply_diff(JOIN_3_LEAVE_1, &mut changes).unwrap(), Applied::default());
        changes.sort();
        assert_eq!(changes, vec![(1, false), (3, true)]);
        assert_eq!((r.len(), r.contains(1), r.contains(3)), (2, false, true));
        let mut expected = Roster::new(10);
        expected.put(2, true);
        expected.put(3, true);
        assert!(r.matches(&expected));
        expected.put(3, false);
        assert!(!r.matches(&expected));
    }

    #[test]
    fn diffs_before_the_state_wait_for_it() {
        let mut r = Roster::new(10);
        r.apply_diff(JOIN_3_LEAVE_1, &mut Vec::new()).unwrap();
        assert_eq!((r.len(), r.is_synced()), (0, false));
        // The state already lists 1 (it was listed before its leave was sent).
        r.apply_state(STATE).unwrap();
        assert_eq!((r.len(), r.contains(1), r.contains(2), r.contains(3)), (2, false, true, true));
    }

    #[test]
    fn repeated_joins_and_leaves_change_nothing_and_are_counted() {
        let mut r = Roster::new(10);
        r.apply_state(STATE).unwrap();
        let again = br#"{"joins":{"2":{"metas":[{"name":"b","phx_ref":"F2"}]}},"leaves":{"7":{"metas":[]}}}"#;
        assert_eq!(r.apply_diff(again, &mut Vec::new()).unwrap(), Applied { redundant: 2 });
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn refuses_foreign_keys_and_bad_json() {
        let mut r = Roster::new(10);
        assert!(r.apply_state(br#"{"alice":{"metas":[]}}"#).is_err());
        assert!(r.apply_state(br#"{"10":{"metas":[]}}"#).is_err());
        assert!(r.apply_diff(br#"{"joins":{}}"#, &mut Vec::new()).is_err());
        assert!(r.apply_state(b"[").is_err());
    }
}
