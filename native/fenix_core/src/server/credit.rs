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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A connection's inbound credit.
#[derive(Debug)]
pub(crate) struct Credit {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
    /// The reader waits for credit.
    waiting: AtomicBool,
    restored: Notify,
}

impl Credit {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Credit {
        Credit {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            waiting: AtomicBool::new(false),
            restored: Notify::new(),
        }
    }

    /// A message of `bytes` was handed to a channel.
    pub(crate) fn take(&self, bytes: usize) {
        self.messages.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `messages` messages of `bytes` in all were handled (or their channel ended).
    pub(crate) fn give_back(&self, messages: usize, bytes: usize) {
        self.messages.fetch_sub(messages, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) && self.is_restored() && self.waiting.swap(false, Ordering::SeqCst) {
            self.restored.notify_one();
        }
    }

    /// The channels hold as much as they may: stop reading.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.messages.load(Ordering::SeqCst) >= self.max_messages || self.bytes.load(Ordering::SeqCst) >= self.max_bytes
    }

    fn is_restored(&self) -> bool {
        self.messages.load(Ordering::SeqCst) <= self.max_messages / 2 && self.bytes.load(Ordering::SeqCst) <= self.max_bytes / 2
    }

    /// Waits until the channels are down to half of both limits.
    pub(crate) async fn restored(&self) {
        loop {
            let notified = self.restored.notified();
            self.waiting.store(true, Ordering::SeqCst);
            if self.is_restored() {
                self.waiting.store(false, Ordering::SeqCst);
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn runs_out_at_either_limit() {
        let credit = Credit::new(2, 100);
        credit.take(10);
        assert!(!credit.is_exhausted());
        credit.take(10);
        assert!(credit.is_exhausted(), "two messages");
        credit.give_back(2, 20);
        credit.take(100);
        assert!(credit.is_exhausted(), "100 bytes");
    }

    #[tokio::test]
    async fn the_reader_resumes_at_half_of_the_limit() {
        let credit = Arc::new(Credit::new(4, 1 << 20));
        (0..4).for_each(|_| credit.take(1));
        let waiter = tokio::spawn({
            let credit = Arc::clone(&credit);
            async move { credit.restored().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        credit.give_back(1, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "3 of 4 still held");
        credit.give_back(1, 1);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("resumed").unwrap();
    }

    #[tokio::test]
    async fn credit_given_back_before_the_reader_waits_is_not_lost() {
        let credit = Credit::new(2, 1 << 20);
        credit.take(1);
        credit.take(1);
        credit.give_back(2, 2);
        tokio::time::timeout(Duration::from_secs(5), credit.restored()).await.expect("no wait needed");
    }
}
