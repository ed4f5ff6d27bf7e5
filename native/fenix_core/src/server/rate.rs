//! Inbound rate limits of one connection: messages per second and joins per second,
//! each a token bucket ([`Limits`]) that holds a second's worth (so a burst of that many is fine),
//! kept by the connection's reader, which alone reads them: no lock, no atomic.
//!
//! The bucket is GCRA (the "virtual scheduling" form of a token bucket): one instant,
//! the theoretical arrival time of the next message, moved on by one interval per
//! message; a message that arrives more than a burst's worth of intervals before it
//! breaks the rate. Breaking it closes the connection with 1008 (the reader's
//! `close_for`, which logs why). Inbound credit (`credit.rs`) already slows a flood
//! down without loss; the limits are for clients that should not be served at all:
//! generous defaults, far above what a channel client sends.

use std::time::Duration;

use tokio::time::Instant;

use super::SocketConfig;
use crate::error::CapacityError;
use crate::protocol::{Event, Message};

/// A connection's inbound rate limits, as its socket configures them.
#[derive(Debug)]
pub(crate) struct Limits {
    /// None: no limit (the default).
    messages: Option<RateLimit>,
    joins: RateLimit,
}

impl Limits {
    pub(crate) fn new(config: &SocketConfig, now: Instant) -> Self {
        Limits {
            messages: config.max_messages_per_second.map(|rate| RateLimit::new(rate, now)),
            joins: RateLimit::new(config.max_joins_per_second, now),
        }
    }

    /// Counts `message` at `now`; the error when it breaks a limit.
    pub(crate) fn check(&mut self, message: &Message, now: Instant) -> Result<(), CapacityError> {
        take_message(self.messages.as_mut(), now)?;
        if message.event == Event::Join && !self.joins.take(now) {
            return Err(CapacityError::TooManyJoins(self.joins.per_second()));
        }
        Ok(())
    }
}

/// Counts a message against the messages-a-second limit, if there is one.
pub(crate) fn take_message(limit: Option<&mut RateLimit>, now: Instant) -> Result<(), CapacityError> {
    match limit {
        Some(limit) => match limit.take(now) {
            true => Ok(()),
            false => Err(CapacityError::TooManyMessages(limit.per_second())),
        },
        None => Ok(()),
    }
}

/// One rate: at most `per_second` a second, a burst of as many.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: usize,
    interval: Duration,
    tolerance: Duration,
    /// When the next message is due at the full rate.
    due: Instant,
}

impl RateLimit {
    pub(crate) fn new(per_second: usize, now: Instant) -> Self {
        let rate = u32::try_from(per_second.max(1)).unwrap_or(u32::MAX);
        let interval = Duration::from_secs(1) / rate;
        RateLimit { per_second, interval, tolerance: interval * (rate - 1), due: now }
    }

    /// The rate it allows, as configured.
    pub(crate) fn per_second(&self) -> usize {
        self.per_second
    }

    /// Counts one at `now`: false when it breaks the rate (and it is not counted).
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let due = self.due.max(now);
        if due > now + self.tolerance {
            return false;
        }
        self.due = due + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_a_seconds_worth_then_the_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, start);
        assert!((0..10).all(|_| limit.take(start)), "a burst of 10 at once");
        assert!(!limit.take(start), "the 11th at once breaks it");
        // One more every 100 ms from then on.
        assert!(limit.take(start + Duration::from_millis(100)));
        assert!(!limit.take(start + Duration::from_millis(150)));
        assert!(limit.take(start + Duration::from_millis(200)));
        // After a quiet second the whole burst is back, and no more.
        let later = start + Duration::from_secs(5);
        assert!((0..10).all(|_| limit.take(later)));
        assert!(!limit.take(later));
    }

    #[test]
    fn a_steady_client_under_the_rate_never_breaks_it() {
        let start = Instant::now();
        let mut limit = RateLimit::new(100, start);
        assert!((0..1_000).all(|i| limit.take(start + Duration::from_millis(11) * i)));
    }
}
