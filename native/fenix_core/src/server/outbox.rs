//! A connection's bounded queue of pre-framed outbound frames.
//!
//! Producers (channel processes, fan-outs, the reader) push [`Bytes`] frames; the
//! connection's writer task takes everything queued at once and writes it with one
//! vectored write. When the queue is full the client is not reading fast enough: the
//! push fails and hands the frame back, and the caller closes the connection.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a frame was not queued; the frame is handed back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds `capacity` frames or `capacity_bytes` bytes.
    Full(Bytes),
    /// The connection is closing; nothing more is sent.
    Closed(Bytes),
}

/// How much an outbox may hold. Passed in by the caller (from the socket's shared
/// config) rather than kept in every connection's outbox.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

/// The outbound queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// The bytes of `frames`.
    bytes: usize,
    /// A close frame was queued (it is the last frame) or the writer gave up.
    closing: bool,
    /// Stop writing now, even what is queued.
    aborted: bool,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Write the frames moved into the batch.
    Write,
    /// Everything up to the close frame was written: shut the socket down.
    Finished,
    /// Drop the connection without writing.
    Abort,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox { state: Mutex::new(State::default()), ready: Notify::new() }
    }

    /// Whether `count` more frames of `bytes` fit. Whatever is pushed at once fits an
    /// empty queue: one frame larger than the byte bound, or one turn of grouped broadcasts.
    fn fits(state: &State, bounds: Bounds, count: usize, bytes: usize) -> bool {
        state.frames.is_empty() || (state.frames.len() + count <= bounds.frames && state.bytes + bytes <= bounds.bytes)
    }

    /// Queues a frame.
    pub(crate) fn try_push(&self, frame: Bytes, bounds: Bounds) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.closing {
            return Err(PushError::Closed(frame));
        }
        if !Outbox::fits(&state, bounds, 1, frame.len()) {
            return Err(PushError::Full(frame));
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        // The writer takes every queued frame at once: it needs waking only when the
        // queue stops being empty, not for each frame of a burst.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues frames in order, all or none.
    pub(crate) fn try_push_all(&self, frames: &[Bytes], bounds: Bounds) -> Result<(), PushError> {
        let mut state = self.lock();
        let Some(first) = frames.first() else { return Ok(()) };
        if state.closing {
            return Err(PushError::Closed(first.clone()));
        }
        let bytes = frames.iter().map(Bytes::len).sum();
        if !Outbox::fits(&state, bounds, frames.len(), bytes) {
            return Err(PushError::Full(first.clone()));
        }
        let was_empty = state.frames.is_empty();
        state.bytes += bytes;
        state.frames.extend(frames.iter().cloned());
        drop(state);
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Queues a close frame as the last frame; returns false if already closing.
    pub(crate) fn push_close(&self, frame: Bytes) -> bool {
        let mut state = self.lock();
        if state.closing {
            return false;
        }
        state.closing = true;
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Stops the writer without writing what is queued (slow reader, I/O error).
    pub(crate) fn abort(&self) {
        let mut state = self.lock();
        state.closing = true;
        state.aborted = true;
        state.frames.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_one();
    }

    /// A close frame is queued or the writer stopped: nothing more will be written.
    pub(crate) fn is_closing(&self) -> bool {
        self.lock().closing
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Waits for frames and moves all of them into `batch`.
    pub(crate) async fn next(&self, batch: &mut Vec<Bytes>) -> Next {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if state.aborted {
                    return Next::Abort;
                }
                if !state.frames.is_empty() {
                    state.bytes = 0;
                    batch.extend(state.frames.drain(..));
                    return Next::Write;
                }
                if state.closing {
                    return Next::Finished;
                }
            }
            notified.await;
        }
    }

    /// Resolves once the outbox is aborted (raced against a blocked write).
    pub(crate) async fn aborted(&self) {
        loop {
            let notified = self.ready.notified();
            if self.is_aborted() {
                return;
            }
            notified.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_the_frame_back_when_full() {
        let (outbox, bounds) = (Outbox::new(), Bounds { frames: 2, bytes: 1 << 20 });
        assert_eq!(outbox.try_push(Bytes::from_static(b"1"), bounds), Ok(()));
        assert_eq!(outbox.try_push(Bytes::from_static(b"2"), bounds), Ok(()));
        assert_eq!(outbox.try_push(Bytes::from_static(b"3"), bounds), Err(PushError::Full(Bytes::from_static(b"3"))));
        let mut batch = Vec::new();
        assert_eq!(outbox.next(&mut batch).await, Next::Write);
        assert_eq!(batch, [Bytes::from_static(b"1"), Bytes::from_static(b"2")]);
    }

    #[test]
    fn is_bounded_in_bytes_too_but_takes_one_large_frame_when_empty() {
        let bounds = Bounds { frames: 100, bytes: 10 };
        let outbox = Outbox::new();
        assert_eq!(outbox.try_push(Bytes::from(vec![0; 64]), bounds), Ok(()), "alone, a frame over the limit is taken");
        assert_eq!(outbox.try_push(Bytes::from_static(b"x"), bounds), Err(PushError::Full(Bytes::from_static(b"x"))));
        let outbox = Outbox::new();
        assert_eq!(outbox.try_push_all(&[Bytes::from_static(b"12345"), Bytes::from_static(b"12345")], bounds), Ok(()));
        assert_eq!(outbox.try_push(Bytes::from_static(b"x"), bounds), Err(PushError::Full(Bytes::from_static(b"x"))));
    }

    #[tokio::test]
    async fn close_is_the_last_frame() {
        let (outbox, bounds) = (Outbox::new(), Bounds { frames: 8, bytes: 1 << 20 });
        outbox.try_push(Bytes::from_static(b"a"), bounds).unwrap();
        assert!(outbox.push_close(Bytes::from_static(b"close")));
        assert!(!outbox.push_close(Bytes::from_static(b"again")));
        assert_eq!(outbox.try_push(Bytes::from_static(b"b"), bounds), Err(PushError::Closed(Bytes::from_static(b"b"))));
        let mut batch = Vec::new();
        assert_eq!(outbox.next(&mut batch).await, Next::Write);
        assert_eq!(batch.len(), 2);
        assert_eq!(outbox.next(&mut batch).await, Next::Finished);
    }

    #[tokio::test]
    async fn abort_drops_what_is_queued() {
        let outbox = Outbox::new();
        outbox.try_push(Bytes::from_static(b"a"), Bounds { frames: 8, bytes: 1 << 20 }).unwrap();
        outbox.abort();
        assert_eq!(outbox.next(&mut Vec::new()).await, Next::Abort);
        outbox.aborted().await;
    }
}
