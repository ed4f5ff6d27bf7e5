//! Presence diffs against a model of the Phoenix JavaScript client.
//!
//! Random sequences of presence operations run on two copies of one topic: `stepped`
//! is flushed after every operation (one diff per operation, as Phoenix sends them) and
//! `ticked` only at the sequence's ticks (diffs coalesced). Clients, modelled on
//! `presence.js`, apply what they are sent; whichever way they got there, every client
//! must hold the server's list: the one that applied every single diff, the one that was
//! there from the start and applied the coalesced diffs, and the ones that were given
//! the state half-way through a tick.

use std::collections::BTreeMap;
use std::sync::Arc;

use fenix_core::presence::{Limits, NodeEntry, NodeId, Owner, Presence, PresenceError, Ref, RefGenerator};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A client's list as `presence.js` holds it, order aside: key -> phx_ref -> meta.
type ClientList = BTreeMap<String, BTreeMap<String, Value>>;

const KEYS: [&str; 3] = ["a", "b", "c"];

/// Each `{key: {"metas": [...]}}` of a state or of one half of a diff, as (key, ref, meta).
fn metas(groups: &Value) -> Vec<(String, String, Value)> {
    let groups = groups.as_object().expect("an object of keys");
    let mut out = Vec::new();
    for (key, presence) in groups {
        let metas = presence["metas"].as_array().expect("a metas list");
        assert!(!metas.is_empty(), "a key is sent with at least one meta");
        for meta in metas {
            let phx_ref = meta["phx_ref"].as_str().expect("every meta has a phx_ref");
            out.push((key.clone(), phx_ref.to_owned(), meta.clone()));
        }
    }
    out
}

/// A new client's list: the `presence_state` it was pushed.
fn from_state(payload: &[u8]) -> ClientList {
    let state: Value = serde_json::from_slice(payload).expect("the state is JSON");
    let mut list = ClientList::new();
    for (key, phx_ref, meta) in metas(&state) {
        list.entry(key).or_default().insert(phx_ref, meta);
    }
    list
}

/// `Presence.syncDiff` of presence.js: the joined metas are added to their key (one of
/// the same phx_ref replaced), then the left metas removed by phx_ref; a key left
/// without metas disappears.
fn sync_diff(list: &mut ClientList, payload: &[u8]) {
    let diff: Value = serde_json::from_slice(payload).expect("the diff is JSON");
    for (key, phx_ref, meta) in metas(&diff["joins"]) {
        list.entry(key).or_default().insert(phx_ref, meta);
    }
    for (key, phx_ref, _) in metas(&diff["leaves"]) {
        if let Some(current) = list.get_mut(&key) {
            current.remove(&phx_ref);
            if current.is_empty() {
                list.remove(&key);
            }
        }
    }
}

/// The server's list, read without counting as given to a client.
fn truth(presence: &Presence) -> ClientList {
    let mut list = ClientList::new();
    for key in KEYS {
        for tracked in presence.get_by_key(key) {
            let meta: Value = serde_json::from_slice(tracked.meta.json()).expect("a meta is JSON");
            list.entry(key.to_owned()).or_default().insert(tracked.meta.phx_ref().to_string(), meta);
        }
    }
    list
}

#[derive(Debug, Clone)]
enum Op {
    Track(Owner, usize),
    Untrack(Owner, usize),
    Update(Owner, usize),
    /// The owner's process exits.
    LeaveOwner(Owner),
    /// The node goes down; its block is kept, as the node would send it again.
    RemoveNode(NodeId),
    /// The kept block comes back, with one meta changed in place when `true`.
    MergeKept(bool),
    /// A client joins: it is pushed the state.
    Snapshot,
    /// The topic's tick: the coalesced diff goes to every client.
    Tick,
}

fn owner() -> impl Strategy<Value = Owner> {
    (1u64..=2, 0u64..3).prop_map(|(node, pid)| Owner { node: NodeId(node), pid })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (owner(), 0..KEYS.len()).prop_map(|(owner, key)| Op::Track(owner, key)),
        2 => (owner(), 0..KEYS.len()).prop_map(|(owner, key)| Op::Untrack(owner, key)),
        3 => (owner(), 0..KEYS.len()).prop_map(|(owner, key)| Op::Update(owner, key)),
        1 => owner().prop_map(Op::LeaveOwner),
        1 => (1u64..=2).prop_map(|node| Op::RemoveNode(NodeId(node))),
        1 => any::<bool>().prop_map(Op::MergeKept),
        2 => Just(Op::Snapshot),
        2 => Just(Op::Tick),
    ]
}

/// What an operation answered, to check that both copies answer alike.
#[derive(Debug, PartialEq)]
enum Answer {
    Ref(Result<Ref, PresenceError>),
    Untracked(bool),
    Left(usize),
    Merged(Result<(), PresenceError>),
    None,
}

struct World {
    stepped: Presence,
    ticked: Presence,
    /// Applies the diff of every single operation of `stepped`.
    stepwise_client: ClientList,
    /// Clients of `ticked`: one there from the start, then one per snapshot.
    clients: Vec<ClientList>,
    kept: Option<(NodeId, Vec<NodeEntry>)>,
    count: u64,
}

impl World {
    fn new() -> Self {
        // The same seed: both copies make the same refs for the same operations.
        let topic = || Presence::new(Arc::new(RefGenerator::new(0, 1)), Limits::default());
        World {
            stepped: topic(),
            ticked: topic(),
            stepwise_client: ClientList::new(),
            clients: vec![ClientList::new()],
            kept: None,
            count: 0,
        }
    }

    fn meta(&mut self) -> Map<String, Value> {
        self.count += 1;
        Map::from_iter([("n".to_owned(), json!(self.count))])
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Snapshot => {
                let state = self.ticked.encode_state();
                self.clients.push(from_state(&state));
            }
            Op::Tick => self.tick()?,
            _ => {
                let meta = self.meta();
                let stepped = self.apply(op, meta.clone(), true);
                let ticked = self.apply(op, meta, false);
                prop_assert_eq!(stepped, ticked, "both copies answer alike");
            }
        }
        if let Some(diff) = self.stepped.flush_diff() {
            sync_diff(&mut self.stepwise_client, &diff);
        }
        prop_assert_eq!(&self.stepwise_client, &truth(&self.stepped), "one diff per operation");
        Ok(())
    }

    fn apply(&mut self, op: &Op, meta: Map<String, Value>, stepped: bool) -> Answer {
        let kept = self.kept.clone();
        let presence = if stepped { &mut self.stepped } else { &mut self.ticked };
        match *op {
            Op::Track(owner, key) => Answer::Ref(presence.track(owner, KEYS[key], meta)),
            Op::Untrack(owner, key) => Answer::Untracked(presence.untrack(owner, KEYS[key])),
            Op::Update(owner, key) => Answer::Ref(presence.update(owner, KEYS[key], meta)),
            Op::LeaveOwner(owner) => Answer::Left(presence.leave_owner(owner)),
            Op::RemoveNode(node) => {
                let block: Vec<NodeEntry> = KEYS
                    .iter()
                    .flat_map(|key| presence.get_by_key(key))
                    .filter(|tracked| tracked.owner.node == node)
                    .map(|tracked| NodeEntry {
                        pid: tracked.owner.pid,
                        key: tracked.key.to_owned(),
                        meta: tracked.meta.json().to_vec(),
                        native: tracked.meta.native().to_vec(),
                    })
                    .collect();
                let removed = presence.remove_node(node);
                self.kept = Some((node, block));
                Answer::Left(removed)
            }
            Op::MergeKept(change_one) => {
                let Some((node, mut block)) = kept else { return Answer::None };
                if let (true, Some(first)) = (change_one, block.first_mut()) {
                    let mut fields: Map<String, Value> = serde_json::from_slice(&first.meta).expect("a meta is JSON");
                    fields.insert("changed".to_owned(), meta["n"].clone());
                    first.meta = serde_json::to_vec(&fields).expect("a map encodes");
                }
                Answer::Merged(presence.merge_node(node, block))
            }
            Op::Snapshot | Op::Tick => Answer::None,
        }
    }

    fn tick(&mut self) -> Result<(), TestCaseError> {
        if let Some(diff) = self.ticked.flush_diff() {
            for client in &mut self.clients {
                sync_diff(client, &diff);
            }
        }
        let truth = truth(&self.ticked);
        for (i, client) in self.clients.iter().enumerate() {
            prop_assert_eq!(client, &truth, "client {} after a tick", i);
        }
        Ok(())
    }
}

proptest! {
    // No failure file: a failing case is printed, shrunk, with the ops to replay.
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_client_ends_with_the_servers_list(ops in prop::collection::vec(op(), 0..60)) {
        let mut world = World::new();
        for op in &ops {
            world.run(op)?;
        }
        world.tick()?;
        prop_assert_eq!(truth(&world.ticked), truth(&world.stepped));
        prop_assert_eq!(&world.stepwise_client, &truth(&world.ticked));
        prop_assert_eq!(from_state(&world.ticked.encode_state()), truth(&world.ticked), "the state lists it all");
    }
}
