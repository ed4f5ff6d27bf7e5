//! Ends the connections whose client vanished, a few at a time, when nothing else waits.
//!
//! Ending a connection tells its channels (a message to each channel process), takes
//! it out of its topics, its socket id and the connection limits, and closes its
//! socket (`epoll_ctl` and `close(2)`). A wave of clients that vanish together (a
//! network path that fails, a proxy restarted, an attack of resets) wakes all their
//! sessions in one poll of the reactor. Ended where they woke, 2,000 of them put
//! tens of milliseconds of teardown ahead of every healthy connection's next read
//! and write: in the `churn` benchmark (waves of 2,000 resets and FINs mid-frame,
//! one engine thread), the healthy subscribers' broadcast p99 went from 1.3 ms to
//! about 40 ms during the waves.
//!
//! So a session whose peer is gone hands its connection over here ([`Reaper::hand_over`])
//! and its task ends. One task ends the connections [`BATCH`] at a time and yields
//! after each batch; tokio runs a yielded task only once the tasks woken by I/O and
//! by other threads have run, so teardown takes the engine's spare time, not a
//! healthy connection's. A server that is never idle still reaps: a batch per round
//! of its run queue.
//!
//! The queue has no bound of its own, and needs none: each entry keeps its
//! connection counted by the limits ([`Tracked`]), so it never holds more than
//! `max_connections` entries, and while teardown lags behind, new connections beyond
//! the limit are refused (503) rather than piled up.
//!
//! Nothing is lost if the task stops: a dropped entry ends its connection (the queue's
//! entries are dropped with it), and a panic while ending one costs the others nothing.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::conn::Conn;
use super::connections::Tracked;
use crate::sink::TransportClosed;

/// Connections ended per turn of the reaper: about 10-20 µs each, so a healthy task
/// that wakes during a batch waits a fraction of a millisecond for it.
pub(super) const BATCH: usize = 16;

/// Where sessions hand over their dead connections.
#[derive(Debug)]
pub(crate) struct Reaper {
    queue: mpsc::UnboundedSender<Dying>,
}

/// A connection whose peer is gone, with everything that keeps it open.
pub(super) struct Dying {
    conn: Arc<Conn>,
    why: TransportClosed,
    /// The socket (plain or TLS), closed once the channels are told.
    _stream: Box<dyn Send + Sync>,
    /// Untracked last, once its socket is closed.
    _tracked: Tracked,
}

impl Dying {
    pub(super) fn new(conn: Arc<Conn>, why: TransportClosed, stream: Box<dyn Send + Sync>, tracked: Tracked) -> Dying {
        Dying { conn, why, _stream: stream, _tracked: tracked }
    }
}

impl Drop for Dying {
    fn drop(&mut self) {
        // Then the fields in their order: the socket closed, the count released.
        self.conn.finalize_as(self.why);
    }
}

impl Reaper {
    /// A reaper and the task that serves it (to spawn on the server's runtime).
    pub(super) fn new() -> (Reaper, impl std::future::Future<Output = ()> + Send) {
        let (queue, dying) = mpsc::unbounded_channel();
        (Reaper { queue }, run(dying))
    }

    /// Queues `dying` to be ended; ends it now if the reaper's task is gone (the
    /// runtime shutting down).
    pub(super) fn hand_over(&self, dying: Dying) {
        // A failed send hands the entry back in the error, dropped (ended) here.
        let _ = self.queue.send(dying);
    }
}

async fn run(mut dying: mpsc::UnboundedReceiver<Dying>) {
    let mut batch = Vec::with_capacity(BATCH);
    // None once every sender is gone: the server's shared state was dropped.
    while dying.recv_many(&mut batch, BATCH).await > 0 {
        for entry in batch.drain(..) {
            // A bug that panics in one teardown costs that one (reported by the panic hook).
            if std::panic::catch_unwind(AssertUnwindSafe(|| drop(entry))).is_err() {
                tracing::error!("the engine panicked while ending a connection; the other connections go on");
            }
        }
        tokio::task::yield_now().await;
    }
}
