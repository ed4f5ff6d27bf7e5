//! The way out for what the application sends: one lane per sender, served in turn.
//!
//! Phoenix guarantees that what one process sends reaches a client in the order it was
//! sent (the `blast` broadcasts before the reply that follows them), and nothing more:
//! Erlang orders messages per pair of processes. Fenix keeps exactly that guarantee
//! without one line that every channel waits in:
//!
//! - Every sender (in Fenix, a BEAM process, identified by [`Sender::id`]) that has
//!   something waiting gets a **lane**, a FIFO of its operations. A lane exists only
//!   while it holds or runs operations.
//! - A broadcast always goes into its sender's lane, so the call is O(1) whatever the
//!   number of subscribers; the fan-out runs on an engine task, next to the writers.
//! - A reply, push or channel end goes straight to the connection's outbox when its
//!   sender's lane is empty (nothing of that sender can be pending, since a sender
//!   makes one call at a time), and into the lane behind the sender's broadcasts
//!   otherwise.
//! - One engine task serves the lanes round robin, at most [`QUANTUM`] operations per
//!   turn: a sender with a deep lane delays another sender by at most one turn per
//!   lane ahead of it, never by its whole backlog.
//! - A lane is bounded ([`LANE_OPS`] operations, [`LANE_BYTES`] bytes). The
//!   operation that fills it is still taken, but the sender is told to
//!   [`Pace::Wait`]; its [`Waker`] is woken once the lane is down to half. Only the
//!   sender that floods waits: the others' lanes are untouched.
//!
//! Since one task carries out every fan-out, all subscribers of a topic see its
//! broadcasts in the same order, and that order keeps each sender's order.
//!
//! Lock order: a `lanes` shard, then a lane's state; the worker never takes a shard
//! while it holds a lane.
//!
//! Tested below without sockets (the lane rules) and in `tests/server.rs` (order and
//! fairness over real connections).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Notify;

use super::conn::Conn;
use super::Shared;
use crate::fanout::{fan_out, Broadcast};
use crate::protocol::{Body, ClientRef};
use crate::registry::Target;
use crate::socket_ids::DISCONNECT_EVENT;
use crate::websocket::CloseCode;

/// Operations a sender may have waiting before it is told to wait.
pub const LANE_OPS: usize = 4096;
/// Bytes (payloads and frames) a sender may have waiting before it is told to wait.
pub const LANE_BYTES: usize = 8 << 20;
/// Operations carried out per turn of a lane. Consecutive broadcasts to one topic
/// within a turn share one pass over its subscribers.
pub const QUANTUM: usize = 256;
/// After queueing about this many frames, the worker lets the writers run, so that a
/// long burst of broadcasts does not keep them waiting (about 20 ms of work) while each
/// write still carries many frames: with 10,000 subscribers, a turn is ~25 broadcasts.
const FRAMES_PER_TURN: usize = 256 * 1024;

/// Who sends: its sends keep their order. In Fenix, a BEAM process.
#[derive(Clone, Copy)]
pub struct Sender<'a> {
    /// Unique among the senders of a server for as long as the sender lives.
    pub id: u64,
    /// Called, only when the sender must wait, for the waker to wake when it may go on.
    pub waker: &'a (dyn Fn() -> Waker + Sync),
}

impl std::fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Whether a sender may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a sender told to wait must wait for its waker"]
pub enum Pace {
    /// Send on.
    Go,
    /// What was sent is taken, but the sender's lane is full: wait for the waker.
    Wait,
}

/// An operation in a lane.
#[derive(Debug)]
pub(crate) enum Op {
    /// Queue a frame to one connection.
    Send { conn: Arc<Conn>, frame: Bytes },
    /// Make a channel that just joined a fan-out target, unless it has ended meanwhile.
    Subscribe { conn: Arc<Conn>, topic: String, join_ref: Option<ClientRef> },
    /// Fan a broadcast out to a topic's subscribers.
    Broadcast { topic: String, event: String, body: Bytes, binary: bool, exclude: Option<u64> },
}

impl Op {
    /// What the operation holds, for the lane's byte bound.
    fn size(&self) -> usize {
        match self {
            Op::Send { frame, .. } => frame.len(),
            Op::Subscribe { topic, .. } => topic.len(),
            Op::Broadcast { topic, event, body, .. } => topic.len() + event.len() + body.len(),
        }
    }
}

/// The lanes of one server.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    lanes: DashMap<u64, Arc<Lane>>,
    /// Lanes with operations, in turn order; each lane is here at most once.
    ready: Mutex<VecDeque<Arc<Lane>>>,
    work: Notify,
}

#[derive(Debug)]
pub(crate) struct Lane {
    sender: u64,
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    ops: VecDeque<Op>,
    bytes: usize,
    /// In the ready queue or being served by the worker.
    scheduled: bool,
    waiter: Option<Waker>,
}

impl LaneState {
    fn is_over(&self) -> bool {
        self.ops.len() >= LANE_OPS || self.bytes >= LANE_BYTES
    }

    fn is_down_to_half(&self) -> bool {
        self.ops.len() <= LANE_OPS / 2 && self.bytes <= LANE_BYTES / 2
    }
}

/// What [`Outbound::submit`] did with an operation.
#[derive(Debug)]
pub(crate) enum Submitted {
    /// The sender has nothing waiting: carry the operation out now, in the caller.
    RunNow(Op),
    /// Queued in the sender's lane.
    Queued(Pace),
}

impl Outbound {
    /// Queues `op` behind whatever `sender` has waiting; with `run_now_if_idle`, hands
    /// it back instead when the sender has nothing waiting.
    pub(crate) fn submit(&self, sender: Sender<'_>, op: Op, run_now_if_idle: bool) -> Submitted {
        if run_now_if_idle {
            // Holding the shard's read guard: the worker cannot remove the lane meanwhile.
            match self.lanes.get(&sender.id) {
                Some(lane) => return Submitted::Queued(self.push(&lane, sender, op)),
                None => return Submitted::RunNow(op),
            }
        }
        let lane = self.lanes.entry(sender.id).or_insert_with(|| Arc::new(Lane::new(sender.id)));
        Submitted::Queued(self.push(&lane, sender, op))
    }

    fn push(&self, lane: &Arc<Lane>, sender: Sender<'_>, op: Op) -> Pace {
        let mut state = lane.lock();
        state.bytes += op.size();
        state.ops.push_back(op);
        let pace = if state.is_over() {
            state.waiter = Some((sender.waker)());
            Pace::Wait
        } else {
            Pace::Go
        };
        if !state.scheduled {
            state.scheduled = true;
            drop(state);
            self.schedule(Arc::clone(lane));
        }
        pace
    }

    fn schedule(&self, lane: Arc<Lane>) {
        let was_empty = {
            let mut ready = self.lock_ready();
            ready.push_back(lane);
            ready.len() == 1
        };
        if was_empty {
            self.work.notify_one();
        }
    }

    /// Waits for the next lane with work.
    async fn next_lane(&self) -> Arc<Lane> {
        loop {
            let notified = self.work.notified();
            if let Some(lane) = self.lock_ready().pop_front() {
                return lane;
            }
            notified.await;
        }
    }

    /// Takes up to [`QUANTUM`] operations off `lane`; wakes its sender if it may go on.
    fn take_turn(&self, lane: &Lane, batch: &mut Vec<Op>) {
        let mut state = lane.lock();
        let n = state.ops.len().min(QUANTUM);
        let taken: usize = state.ops.iter().take(n).map(Op::size).sum();
        state.bytes -= taken;
        batch.extend(state.ops.drain(..n));
        if state.is_down_to_half() {
            if let Some(waiter) = state.waiter.take() {
                waiter.wake();
            }
        }
    }

    /// After a turn: the lane goes to the back of the line, or away if it is empty.
    fn end_turn(&self, lane: Arc<Lane>) {
        let mut state = lane.lock();
        if !state.ops.is_empty() {
            drop(state);
            self.schedule(lane);
            return;
        }
        state.scheduled = false;
        drop(state);
        // A sender may have pushed since: then the lane is not idle and stays.
        self.lanes.remove_if(&lane.sender, |_, lane| lane.lock().is_idle());
    }

    /// How many senders have operations waiting or running.
    pub(crate) fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    fn lock_ready(&self) -> MutexGuard<'_, VecDeque<Arc<Lane>>> {
        // Pushes and pops are single operations: a panic cannot leave the queue half-made.
        self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Lane {
    fn new(sender: u64) -> Lane {
        Lane { sender, state: Mutex::new(LaneState::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LaneState {
    fn is_idle(&self) -> bool {
        self.ops.is_empty() && !self.scheduled
    }
}

/// The worker: serves the lanes in turn until the server is dropped.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(QUANTUM);
    let mut targets = Vec::new();
    let mut frames = 0;
    loop {
        let lane = shared.outbound.next_lane().await;
        shared.outbound.take_turn(&lane, &mut batch);
        // A bug that panics costs this turn's operations, not the worker that serves
        // every sender (the panic itself is reported by the panic hook).
        let carried = std::panic::catch_unwind(AssertUnwindSafe(|| carry_out(&mut batch, &mut targets, &shared)));
        frames += carried.unwrap_or_else(|_| {
            tracing::error!("the engine's outbound worker panicked: one sender's turn of sends is lost, the others go on");
            batch.clear();
            targets.clear();
            0
        });
        shared.outbound.end_turn(lane);
        if frames >= FRAMES_PER_TURN {
            frames = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Carries out one operation; returns the frames queued. Called by the worker, and by
/// a sender whose lane is empty (see [`Submitted::RunNow`]).
pub(crate) fn carry_out_one(op: Op, shared: &Shared) -> usize {
    match op {
        // A closed or full outbox was already dealt with by Conn::send.
        Op::Send { conn, frame } => usize::from(conn.send(frame).is_ok()),
        Op::Subscribe { conn, topic, join_ref } => {
            conn.subscribe_if_joined(&topic, join_ref.as_ref());
            0
        }
        // Only the worker groups broadcasts; a lone one is a group of one.
        broadcast @ Op::Broadcast { .. } => carry_out(&mut vec![broadcast], &mut Vec::new(), shared),
    }
}

/// Carries out one turn's operations in order; returns the frames queued. `targets` is
/// scratch space for the fan-outs' snapshots of the registry.
fn carry_out(batch: &mut Vec<Op>, targets: &mut Vec<Target<Conn>>, shared: &Shared) -> usize {
    let mut frames = 0;
    let mut ops = batch.drain(..).peekable();
    while let Some(op) = ops.next() {
        match op {
            Op::Send { .. } | Op::Subscribe { .. } => frames += carry_out_one(op, shared),
            Op::Broadcast { topic, event, body, binary, exclude } => {
                // The broadcasts to the same topic that follow go over the subscribers once.
                let mut group = vec![(event, body, binary, exclude)];
                while let Some(Op::Broadcast { topic: next, .. }) = ops.peek() {
                    if *next != topic {
                        break;
                    }
                    if let Some(Op::Broadcast { event, body, binary, exclude, .. }) = ops.next() {
                        group.push((event, body, binary, exclude));
                    }
                }
                let messages: Vec<Broadcast<'_>> = group
                    .iter()
                    .map(|(event, body, binary, exclude)| Broadcast {
                        event,
                        body: if *binary { Body::Binary(body) } else { Body::Json(body) },
                        exclude: *exclude,
                    })
                    .collect();
                messages.iter().for_each(|m| crate::fault::inject(m.event));
                if messages.iter().any(|m| m.event == DISCONNECT_EVENT) {
                    shared.socket_ids.connections(&topic).iter().for_each(|conn| conn.close(CloseCode::GoingAway, ""));
                }
                shared.registry.targets(&topic, messages.iter().map(|m| m.event), targets);
                frames += fan_out(&topic, &messages, targets).queued;
                targets.clear();
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn broadcast(topic: &str, n: usize) -> Op {
        Op::Broadcast { topic: topic.into(), event: n.to_string(), body: Bytes::new(), binary: false, exclude: None }
    }

    fn events(batch: &[Op]) -> Vec<String> {
        batch
            .iter()
            .map(|op| match op {
                Op::Broadcast { topic, event, .. } => format!("{topic}:{event}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A waker factory counting its wakes, for `Sender { id, waker: &make }`.
    fn counting(wakes: &Arc<CountWakes>) -> impl Fn() -> Waker {
        let wakes = Arc::clone(wakes);
        move || Waker::from(Arc::clone(&wakes))
    }

    #[test]
    fn an_idle_sender_runs_its_send_at_once() {
        let outbound = Outbound::default();
        let wakes = Arc::new(CountWakes::default());
        let make = counting(&wakes);
        let a = Sender { id: 1, waker: &make };
        assert!(matches!(outbound.submit(a, broadcast("t", 0), true), Submitted::RunNow(_)));
        assert_eq!(outbound.lane_count(), 0);
    }

    #[test]
    fn a_send_waits_behind_its_senders_broadcasts_only() {
        let outbound = Outbound::default();
        let wakes = Arc::new(CountWakes::default());
        let make = counting(&wakes);
        let (a, b) = (Sender { id: 1, waker: &make }, Sender { id: 2, waker: &make });
        assert!(matches!(outbound.submit(a, broadcast("t", 1), false), Submitted::Queued(Pace::Go)));
        assert!(matches!(outbound.submit(a, broadcast("t", 2), true), Submitted::Queued(Pace::Go)), "behind its own broadcast");
        assert!(matches!(outbound.submit(b, broadcast("t", 3), true), Submitted::RunNow(_)), "b has nothing waiting");
    }

    #[tokio::test]
    async fn lanes_are_served_in_turn_a_quantum_at_a_time() {
        let outbound = Outbound::default();
        let wakes = Arc::new(CountWakes::default());
        let make = counting(&wakes);
        let (a, b) = (Sender { id: 1, waker: &make }, Sender { id: 2, waker: &make });
        for i in 0..QUANTUM + 1 {
            let _ = outbound.submit(a, broadcast("a", i), false);
        }
        let _ = outbound.submit(b, broadcast("b", 0), false);
        let mut turns = Vec::new();
        while outbound.lane_count() > 0 {
            let lane = outbound.next_lane().await;
            let mut batch = Vec::new();
            outbound.take_turn(&lane, &mut batch);
            turns.push((batch.len(), events(&batch)[0].clone()));
            outbound.end_turn(lane);
        }
        // b's one broadcast goes between a's two turns, not after a's whole backlog.
        assert_eq!(turns, [(QUANTUM, "a:0".to_owned()), (1, "b:0".to_owned()), (1, format!("a:{QUANTUM}"))]);
    }

    #[tokio::test]
    async fn a_full_lane_makes_its_sender_wait_until_half_drained() {
        let outbound = Outbound::default();
        let wakes = Arc::new(CountWakes::default());
        let make = counting(&wakes);
        let a = Sender { id: 1, waker: &make };
        let paces: Vec<_> = (0..LANE_OPS)
            .map(|i| match outbound.submit(a, broadcast("a", i), false) {
                Submitted::Queued(pace) => pace,
                Submitted::RunNow(_) => panic!("a broadcast is always queued"),
            })
            .collect();
        assert!(paces[..LANE_OPS - 1].iter().all(|p| *p == Pace::Go));
        assert_eq!(paces[LANE_OPS - 1], Pace::Wait, "the op that fills the lane is taken, the sender waits");
        let mut drained = 0;
        while wakes.0.load(Ordering::SeqCst) == 0 {
            let lane = outbound.next_lane().await;
            let mut batch = Vec::new();
            outbound.take_turn(&lane, &mut batch);
            drained += batch.len();
            outbound.end_turn(lane);
        }
        assert!(drained >= LANE_OPS / 2, "woken at half: {drained}");
        assert!(drained < LANE_OPS / 2 + QUANTUM, "woken at half: {drained}");
    }

    #[tokio::test]
    async fn an_emptied_lane_goes_away() {
        let outbound = Outbound::default();
        let wakes = Arc::new(CountWakes::default());
        let make = counting(&wakes);
        let a = Sender { id: 7, waker: &make };
        let _ = outbound.submit(a, broadcast("a", 0), false);
        assert_eq!(outbound.lane_count(), 1);
        let lane = outbound.next_lane().await;
        let mut batch = Vec::new();
        outbound.take_turn(&lane, &mut batch);
        // Still running: a send now must wait behind the broadcast being fanned out.
        assert!(matches!(outbound.submit(a, broadcast("a", 1), true), Submitted::Queued(_)));
        outbound.end_turn(lane);
        assert_eq!(outbound.lane_count(), 1, "the new op keeps the lane");
        let lane = outbound.next_lane().await;
        outbound.take_turn(&lane, &mut batch);
        outbound.end_turn(lane);
        assert_eq!(outbound.lane_count(), 0);
        assert!(matches!(outbound.submit(a, broadcast("a", 2), true), Submitted::RunNow(_)));
    }
}
