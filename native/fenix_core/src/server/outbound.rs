//! The ordered way out for everything the application sends.
//!
//! Replies, pushes, channel ends, subscriptions and broadcasts from the application
//! (in Fenix, NIF calls made by channel processes) are queued here and carried out by
//! one engine task, in the order they were submitted. That keeps Phoenix's ordering
//! guarantee, that what one process sends reaches a client in the order it was sent
//! (the `blast` broadcasts before the reply that follows them), and it keeps the
//! submitting call O(1): the fan-out of a broadcast to 10,000 subscribers happens on
//! an engine thread, next to the writers, never in the caller.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::Conn;
use super::Shared;
use crate::error::CapacityError;
use crate::protocol::Body;
use crate::registry::Broadcast;

/// How many operations may wait; beyond that, submissions fail with `Overloaded` and
/// the application waits and retries (`Fenix.Endpoint` does), which slows producers to
/// the engine's pace instead of letting a backlog grow.
pub(crate) const CAPACITY: usize = 1 << 16;

/// An operation for the outbound task.
#[derive(Debug)]
pub(crate) enum Op {
    /// Queue a frame to one connection.
    Send { conn: Arc<Conn>, frame: Bytes },
    /// Make a channel that just joined a fan-out target, unless it has ended meanwhile.
    Subscribe { conn: Arc<Conn>, topic: String, join_ref: Option<String> },
    /// Fan a broadcast out to a topic's subscribers.
    Broadcast { topic: String, event: String, body: Bytes, binary: bool, exclude: Option<u64> },
}

/// The submitting end.
#[derive(Debug)]
pub(crate) struct Outbound {
    queue: mpsc::Sender<Op>,
}

impl Outbound {
    pub(crate) fn new() -> (Outbound, mpsc::Receiver<Op>) {
        let (queue, ops) = mpsc::channel(CAPACITY);
        (Outbound { queue }, ops)
    }

    /// Queues `op`; never blocks.
    pub(crate) fn submit(&self, op: Op) -> Result<(), CapacityError> {
        self.queue.try_send(op).map_err(|_| CapacityError::Overloaded(CAPACITY))
    }

    /// Queues a broadcast of `body` (copied once).
    pub(crate) fn broadcast(&self, topic: &str, event: &str, body: Body<'_>, exclude: Option<u64>) -> Result<(), CapacityError> {
        let (body, binary) = match body {
            Body::Json(json) => (Bytes::copy_from_slice(json), false),
            Body::Binary(data) => (Bytes::copy_from_slice(data), true),
        };
        self.submit(Op::Broadcast { topic: topic.to_owned(), event: event.to_owned(), body, binary, exclude })
    }
}

/// After queueing about this many frames, the outbound task lets the writers run, so
/// that a long burst of broadcasts does not keep them waiting (about 20 ms of work)
/// while each write still carries many frames: with 10,000 subscribers, a turn is
/// ~25 broadcasts, so each connection writes ~25 frames with one syscall.
const FRAMES_PER_TURN: usize = 256 * 1024;

/// Consecutive broadcasts to one topic carried out as one pass over its subscribers.
const MAX_GROUP: usize = 256;

/// The outbound task: carries out every operation in order.
pub(crate) async fn run(mut ops: mpsc::Receiver<Op>, shared: Arc<Shared>) {
    let mut queued = 0;
    let mut next = None;
    let mut group = Vec::new();
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match ops.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        match op {
            Op::Send { conn, frame } => {
                // A closed or full outbox was already dealt with by Conn::send.
                let _ = conn.send(frame);
                queued += 1;
            }
            Op::Subscribe { conn, topic, join_ref } => {
                conn.subscribe_if_joined(&topic, join_ref.as_deref());
            }
            Op::Broadcast { topic, event, body, binary, exclude } => {
                // Take the broadcasts to the same topic that are already waiting.
                group.push((event, body, binary, exclude));
                while group.len() < MAX_GROUP {
                    match ops.try_recv() {
                        Ok(Op::Broadcast { topic: t, event, body, binary, exclude }) if t == topic => {
                            group.push((event, body, binary, exclude));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
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
                queued += shared.registry.broadcast_all(&topic, &messages).queued;
                drop(messages);
                group.clear();
            }
        }
        if queued >= FRAMES_PER_TURN {
            queued = 0;
            tokio::task::yield_now().await;
        }
    }
}
