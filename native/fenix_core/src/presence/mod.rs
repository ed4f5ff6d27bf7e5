//! Presence (Phoenix's `Phoenix.Presence` and `Phoenix.Tracker`): who is on a topic,
//! as state and diffs, computed and encoded here so that the BEAM only calls in.
//!
//! Pure data: no I/O, no clock, no randomness, no locks. One [`Presence`] is the state of
//! one topic; the caller keeps one per topic (behind whatever lock it likes), with one
//! [`RefGenerator`] for the whole node.
//!
//! # Data model
//!
//! An *entry* is an owner tracking a key with a meta:
//!
//! - The **owner** ([`Owner`]) is a process on a node: a [`NodeId`] and a `u64` pid,
//!   both opaque here (the NIF maps BEAM pids and node names to them). An owner tracks
//!   a key at most once per topic ([`PresenceError::AlreadyTracked`], as Phoenix).
//! - The **key** is a string, a user id in practice. Several owners may share a key
//!   (one user on two devices): the key then lists several metas.
//! - The **meta** ([`Meta`]) is a JSON object given by the application, to which the
//!   server adds `phx_ref`, a [`Ref`] unique to this meta, and on an update
//!   `phx_ref_prev`, the ref of the meta it replaces. It is encoded once, when tracked
//!   or updated, and its bytes are copied into every payload that carries it.
//!
//! On the wire (the same payload for both serializers, as Phoenix sends it):
//!
//! ```text
//! presence_state  {"ann":{"metas":[{"name":"ann","phx_ref":"AAAAAAAAAAEAAAAA"}]}}
//! presence_diff   {"joins":{"bob":{"metas":[{...}]}},"leaves":{"ann":{"metas":[{...}]}}}
//! ```
//!
//! The client (`presence.js`) applies a diff by adding the joined metas of each key
//! (replacing any of the same `phx_ref`), then removing the left metas by `phx_ref`; a
//! key left without metas disappears. So an update is a join of the new meta and a
//! leave of the old, exactly as Phoenix sends it.
//!
//! **Key order.** Object keys are written sorted (bytewise): the keys of a state or diff,
//! `joins` before `leaves`, and a meta's fields. That is what Jason emits for Phoenix's
//! maps (up to 32 keys, in Erlang term order) as long as a meta's fields are all atoms
//! or all strings; Jason puts atom fields before string fields, which JSON cannot tell
//! apart, and no client depends on it. A key's metas are listed in the order they were
//! tracked. The output is deterministic: equal states are equal bytes.
//!
//! # Operations
//!
//! [`Presence::track`], [`Presence::untrack`], [`Presence::update`] (new ref, the old
//! one as `phx_ref_prev`), [`Presence::leave_owner`] (the owner exited: all its keys),
//! [`Presence::remove_node`] and [`Presence::merge_node`] (a node's entries as a block),
//! [`Presence::list`] and [`Presence::encode_state`] (the state), [`Presence::get_by_key`].
//!
//! # A tick
//!
//! Every change is recorded in the topic's [`DiffBuffer`] rather than sent. A tick (the
//! caller's timer, e.g. every few tens of ms for each topic that changed) calls
//! [`Presence::flush_diff`], which gives ONE `presence_diff` for everything since the
//! last flush, or nothing. Within a tick, a join and a leave of the same meta cancel out,
//! and an update of a meta joined in the same tick is a single join of the new meta:
//! a thousand users joining a room in one tick cost one broadcast, not a thousand.
//! A client given the state during a tick ([`Presence::list`], [`Presence::encode_state`])
//! also ends right once it applies the tick's diff: see [`DiffBuffer`].
//!
//! # Limits
//!
//! [`Limits`]: at most [`DEFAULT_MAX_META_BYTES`] (8 KiB) per encoded meta,
//! [`DEFAULT_MAX_ENTRIES`] (100,000) entries per topic, [`DEFAULT_MAX_KEY_BYTES`]
//! (1 KiB) per key. Breaking one is a [`PresenceError`] and changes nothing; nothing here
//! panics on what the application or another node gives.
//!
//! # Replication (later)
//!
//! Each entry's owner names its node. A node that goes down is [`Presence::remove_node`];
//! the block a node sends (its entries, from [`Presence::list`], with [`Meta::json`] as
//! it encoded them) is [`Presence::merge_node`], which checks it whole before applying
//! it. A node that comes back is a remove and a merge in one tick: metas that come back
//! unchanged cancel out in the diff. Refs stay unique across nodes because each node's
//! [`RefGenerator`] has its own tag.
//!
//! # Tests
//!
//! Unit tests beside the code check the exact bytes of states and diffs (join, leave,
//! update, a cancelled join and leave) and every limit. `tests/presence.rs` is a
//! property test: random sequences of track, untrack, update, leave_owner, remove_node,
//! merge_node, snapshots and ticks, with a model of the Phoenix client (`syncDiff`:
//! joins add metas by `phx_ref`, leaves remove them, an empty key disappears); every
//! client, whether it applied each operation's diff one by one, the coalesced diffs of
//! the ticks, or joined half-way through a tick, must end with the server's list.

mod diff;
mod encode;
mod error;
mod limits;
mod meta;
mod refs;
mod state;

pub use self::diff::{Diff, DiffBuffer};
pub use self::error::PresenceError;
pub use self::limits::{Limits, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_META_BYTES};
pub use self::meta::{Meta, MetaFields};
pub use self::refs::{Ref, RefGenerator};
pub use self::state::{NodeEntry, Presence, Tracked};

/// A node of the cluster, as the caller numbers them (the local node included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// Who tracks an entry: a process on a node. When it exits, [`Presence::leave_owner`]
/// removes all its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The node the process runs on.
    pub node: NodeId,
    /// The process, as the caller numbers them (unique on its node).
    pub pid: u64,
}
