//! Inbound credit: how much a connection may have handed to its channels that they
//! have not handled yet.
//!
//! The reader takes credit for every client message it hands to a channel
//! ([`Credit::take`]) and stops reading the socket while the connection is out of it
//! ([`Credit::is_exhausted`]); a channel gives the credit of each message back once it
//! has handled it ([`Credit::give_back`]), and all of what it still holds when it ends.
//! While the reader waits, the client's bytes stay in the kernel and TCP slows the
//! client down, as it does for a Phoenix socket whose process is busy: a client that
//! floods costs the server a bounded amount of memory, whatever it sends.
//!
//! The reader resumes once the channels are down to half of either limit, so that a
//! flooding client wakes it once per half-window, not once per message.
//!
//! Each consumer (a joined channel, or the transport process of a raw connection) keeps
//! its [`Share`]: what it was handed and has not handled, so that what it still holds
//! when it ends goes back at once, and a consumer cannot give back more than it took.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// A connection's limits (from its socket's shared config): passed in, not kept in
/// every connection's credit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

/// A connection's inbound credit. Small on purpose (every connection has one): the
/// count in 32 bits, the waiting reader's waker instead of a `Notify`, the limits
/// passed in.
#[derive(Debug, Default)]
pub(crate) struct Credit {
    bytes: AtomicUsize,
    /// The reader, waiting for credit.
    reader: Mutex<Option<Waker>>,
    messages: AtomicU32,
    /// `reader` holds a waker: checked before taking its lock.
    waiting: AtomicBool,
}

impl Credit {

    /// A message of `bytes` was handed to a channel.
    pub(crate) fn take(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `messages` messages of `bytes` in all were handled (or their channel ended).
    pub(crate) fn give_back(&self, messages: usize, bytes: usize, limits: Limits) {
        self.messages.fetch_sub(u32::try_from(messages).unwrap_or(u32::MAX), Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) && self.is_restored(limits) {
            if let Some(reader) = self.lock().take() {
                self.waiting.store(false, Ordering::SeqCst);
                reader.wake();
            }
        }
    }

    /// The channels hold as much as they may: stop reading.
    pub(crate) fn is_exhausted(&self, limits: Limits) -> bool {
        self.messages.load(Ordering::SeqCst) as usize >= limits.messages.max(1)
            || self.bytes.load(Ordering::SeqCst) >= limits.bytes.max(1)
    }

    fn is_restored(&self, limits: Limits) -> bool {
        self.messages.load(Ordering::SeqCst) as usize <= limits.messages.max(1) / 2
            && self.bytes.load(Ordering::SeqCst) <= limits.bytes.max(1) / 2
    }

    /// Waits until the channels are down to half of both limits.
    pub(crate) async fn restored(&self, limits: Limits) {
        poll_fn(|cx| {
            // Registered before the check: credit given back in between wakes us.
            *self.lock() = Some(cx.waker().clone());
            self.waiting.store(true, Ordering::SeqCst);
            if self.is_restored(limits) {
                self.waiting.store(false, Ordering::SeqCst);
                self.lock().take();
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // A waker slot: a panic cannot leave it half-made.
        self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One consumer's share of its connection's credit: the messages it was handed and has
/// not handled yet, in one word (every joined channel has one): [`ENDED`], then the
/// count ([`MESSAGE`] each), then the bytes ([`BYTES`]). The connection's credit bounds
/// both far below their fields.
#[derive(Debug, Default)]
pub(crate) struct Share(AtomicU64);

/// The consumer left the connection: its credit went back already.
const ENDED: u64 = 1 << 63;
/// One message in the count.
const MESSAGE: u64 = 1 << 40;
/// The bytes' field.
const BYTES: u64 = MESSAGE - 1;

impl Share {
    /// The consumer was handed a message of `bytes`, taken from `credit`. Never called
    /// after [`Share::ended`] (the caller holds what orders them).
    pub(crate) fn delivered(&self, bytes: usize, credit: &Credit) {
        self.0.fetch_add(MESSAGE + (bytes as u64).min(BYTES), Ordering::SeqCst);
        credit.take(bytes);
    }

    /// The consumer has handled a message of `bytes`: its credit goes back to `credit`,
    /// whose reader may go on. Nothing goes back once the consumer ended, nor for a
    /// message it was never handed.
    pub(crate) fn handled(&self, bytes: usize, credit: &Credit, limits: Limits) {
        let mut current = self.0.load(Ordering::SeqCst);
        loop {
            if current & ENDED != 0 || current < MESSAGE {
                return; // ended (credit already back), or nothing handed
            }
            let bytes = (bytes as u64).min(current & BYTES);
            match self.0.compare_exchange_weak(current, current - MESSAGE - bytes, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    credit.give_back(1, bytes as usize, limits);
                    return;
                }
                Err(now) => current = now,
            }
        }
    }

    /// The consumer left the connection: whatever it still holds goes back to `credit`.
    pub(crate) fn ended(&self, credit: &Credit, limits: Limits) {
        let before = self.0.fetch_or(ENDED, Ordering::SeqCst);
        if before & ENDED == 0 {
            let messages = ((before & !ENDED) / MESSAGE) as usize;
            credit.give_back(messages, (before & BYTES) as usize, limits);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const fn limits(messages: usize, bytes: usize) -> Limits {
        Limits { messages, bytes }
    }

    #[test]
    fn runs_out_at_either_limit() {
        let (credit, limits) = (Credit::default(), limits(2, 100));
        credit.take(10);
        assert!(!credit.is_exhausted(limits));
        credit.take(10);
        assert!(credit.is_exhausted(limits), "two messages");
        credit.give_back(2, 20, limits);
        credit.take(100);
        assert!(credit.is_exhausted(limits), "100 bytes");
    }

    #[tokio::test]
    async fn the_reader_resumes_at_half_of_the_limit() {
        let (credit, limits) = (Arc::new(Credit::default()), limits(4, 1 << 20));
        (0..4).for_each(|_| credit.take(1));
        let waiter = tokio::spawn({
            let credit = Arc::clone(&credit);
            async move { credit.restored(limits).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        credit.give_back(1, 1, limits);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "3 of 4 still held");
        credit.give_back(1, 1, limits);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("resumed").unwrap();
    }

    #[test]
    fn a_share_gives_back_what_it_took_and_no_more() {
        let (credit, limits, share) = (Credit::default(), limits(4, 1 << 20), Share::default());
        share.delivered(10, &credit);
        share.delivered(20, &credit);
        share.handled(10, &credit, limits);
        share.handled(10, &credit, limits);
        share.handled(10, &credit, limits);
        assert_eq!((credit.messages.load(Ordering::SeqCst), credit.bytes.load(Ordering::SeqCst)), (0, 10), "two handed, two back");
        share.delivered(5, &credit);
        share.ended(&credit, limits);
        share.handled(5, &credit, limits);
        assert_eq!((credit.messages.load(Ordering::SeqCst), credit.bytes.load(Ordering::SeqCst)), (0, 0), "what it held went back once");
    }

    #[tokio::test]
    async fn credit_given_back_before_the_reader_waits_is_not_lost() {
        let (credit, limits) = (Credit::default(), limits(2, 1 << 20));
        credit.take(1);
        credit.take(1);
        credit.give_back(2, 2, limits);
        tokio::time::timeout(Duration::from_secs(5), credit.restored(limits)).await.expect("no wait needed");
    }
}
