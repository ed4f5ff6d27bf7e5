//! Topics and their subscribers, and each connection's bounded queue of outbound frames.
//!
//! A broadcast is encoded and framed once; fan-out pushes clones of the same [`Bytes`]
//! (a reference count, not a copy) onto each subscriber's [`Outbox`]. The subscriber
//! list is copy-on-write: fan-out takes a snapshot (one `Arc` clone) and releases the
//! lock, so joins and leaves never wait for a fan-out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

/// Most frames queued for one connection; a client further behind is disconnected.
pub const OUTBOX_CAPACITY: usize = 1024;

/// The subscribers of one topic.
pub type Subscribers = Arc<Vec<Arc<Outbox>>>;

static TOPICS: LazyLock<Mutex<HashMap<Box<str>, Subscribers>>> = LazyLock::new(Default::default);

fn topics() -> MutexGuard<'static, HashMap<Box<str>, Subscribers>> {
    TOPICS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn subscribe(topic: &str, outbox: &Arc<Outbox>) {
    let mut topics = topics();
    let subscribers = topics.entry(topic.into()).or_default();
    Arc::make_mut(subscribers).push(outbox.clone());
}

pub fn unsubscribe(topic: &str, outbox: &Arc<Outbox>) {
    let mut topics = topics();
    let Some(subscribers) = topics.get_mut(topic) else { return };
    let list = Arc::make_mut(subscribers);
    if let Some(index) = list.iter().position(|o| Arc::ptr_eq(o, outbox)) {
        list.swap_remove(index);
    }
    if list.is_empty() {
        topics.remove(topic);
    }
}

/// A snapshot of the topic's subscribers.
pub fn subscribers(topic: &str) -> Option<Subscribers> {
    topics().get(topic).cloned()
}

/// A connection's outbound queue. Producers push from any task; the connection's own
/// task takes everything queued at once and writes it with one vectored write.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Frames the connection took but has not written yet (its socket is full).
    unwritten: AtomicUsize,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// The connection's task, waiting for frames.
    waker: Option<Waker>,
    /// Nothing more is queued: the connection is closing.
    closed: bool,
    /// A push found the queue full: the client does not read, drop it.
    overflowed: bool,
}

impl Outbox {
    pub fn push(&self, frame: Bytes) {
        self.push_all(std::slice::from_ref(&frame));
    }

    /// Queues the frames in order, or closes the outbox if they do not fit. Returns the
    /// backlog: how many frames now wait to be written.
    pub fn push_all(&self, frames: &[Bytes]) -> usize {
        let mut queue = self.lock();
        if queue.closed {
            return 0;
        }
        if queue.frames.len() + frames.len() > OUTBOX_CAPACITY {
            drop(queue);
            self.overflow();
            return 0;
        }
        queue.frames.extend(frames.iter().cloned());
        let backlog = queue.frames.len() + self.unwritten.load(Ordering::Relaxed);
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        backlog
    }

    /// The client does not keep up: drop what is queued, and the connection.
    pub fn overflow(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.overflowed = true;
        queue.frames = VecDeque::new();
        let waker = queue.waker.take();
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// How many frames wait to be written (0 once closed).
    pub fn backlog(&self) -> usize {
        let queue = self.lock();
        if queue.closed {
            return 0;
        }
        queue.frames.len() + self.unwritten.load(Ordering::Relaxed)
    }

    /// The connection reports how many of the frames it took are not written yet.
    pub fn set_unwritten(&self, frames: usize) {
        self.unwritten.store(frames, Ordering::Relaxed);
    }

    /// Moves every queued frame to the end of `out`, the frames not yet written; the
    /// task is woken by the next push. `Err` if the client fell too far behind: more
    /// than the capacity queued, or not yet written.
    pub fn poll_take(&self, cx: &mut Context<'_>, out: &mut VecDeque<Bytes>) -> Poll<Result<(), Overflow>> {
        let mut queue = self.lock();
        if queue.overflowed || out.len() > OUTBOX_CAPACITY {
            return Poll::Ready(Err(Overflow));
        }
        if !queue.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            queue.waker = Some(cx.waker().clone());
        }
        if queue.frames.is_empty() {
            return Poll::Pending;
        }
        if out.is_empty() {
            *out = std::mem::take(&mut queue.frames);
        } else {
            out.extend(queue.frames.drain(..));
        }
        self.unwritten.store(out.len(), Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    /// Accepts no more frames; returns what is still queued.
    pub fn close(&self) -> VecDeque<Bytes> {
        let mut queue = self.lock();
        queue.closed = true;
        queue.waker = None;
        std::mem::take(&mut queue.frames)
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The client stopped reading and its queue filled up.
#[derive(Debug)]
pub struct Overflow;
