//! The healthy clients of the `flood` scenario: each joined to its own topic, each
//! pushing `echo` `{"k": k}` at a fixed pace and timing every round trip, through three
//! phases: before the flood, during it, after it.
//!
//! The pace is an open loop: request k of a client is due at `start + offset + k/rate`
//! whatever happened to the previous ones, so a server that stalls cannot slow the
//! clients down and hide its stall (a closed loop would send less exactly when the
//! server is slow). A request belongs to the phase in which it was sent. It is answered
//! when its `ok` reply, carrying the same `k`, arrives within the request timeout; a
//! reply that comes later is `late`, and late or never, the request is lost.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;

use hdrhistogram::Histogram;
use tokio::time::sleep_until;

use crate::group::{instant_of, new_histogram, Client};
use crate::phx;
use crate::sys::mono_ns;
use crate::ws::Msg;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    /// The prefix of the phase's figures in the JSON result.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

/// When the phases begin and end (`mono_ns`), and the pace of every client.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub start_ns: u64,
    pub flood_start_ns: u64,
    pub flood_end_ns: u64,
    /// No request is sent from here on.
    pub end_ns: u64,
    /// Time between two requests of one client.
    pub period_ns: u64,
    /// A reply later than this after its request is late.
    pub timeout_ns: u64,
}

impl Schedule {
    /// Phases of `before`, `during` and `after` seconds, from a moment after now (for
    /// the client tasks to start before the first request is due).
    pub fn from_now(before: f64, during: f64, after: f64, period_ns: u64, timeout_ns: u64) -> Schedule {
        let secs_ns = |s: f64| (s * 1e9) as u64;
        let start_ns = mono_ns() + 50_000_000;
        Schedule {
            start_ns,
            flood_start_ns: start_ns + secs_ns(before),
            flood_end_ns: start_ns + secs_ns(before + during),
            end_ns: start_ns + secs_ns(before + during + after),
            period_ns,
            timeout_ns,
        }
    }

    pub fn phase_of(&self, t: u64) -> Phase {
        if t < self.flood_start_ns {
            Phase::Before
        } else if t < self.flood_end_ns {
            Phase::During
        } else {
            Phase::After
        }
    }
}

/// The round trips of the requests sent in one phase.
#[derive(Debug)]
pub struct PhaseTally {
    pub sent: u64,
    pub answered: u64,
    /// Replies that came after the timeout (lost all the same).
    pub late: u64,
    /// Round-trip times of the answered requests, in ns.
    pub hist: Histogram<u64>,
}

impl PhaseTally {
    pub fn lost(&self) -> u64 {
        self.sent - self.answered
    }
}

/// What every healthy client saw, summed.
#[derive(Debug)]
pub struct Tally {
    pub phases: [PhaseTally; 3],
    /// Frames that are not the reply to an outstanding request, or a wrong reply.
    pub unexpected: u64,
    /// Clients that failed (connection closed or broken).
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Default for Tally {
    fn default() -> Self {
        let phase = || PhaseTally { sent: 0, answered: 0, late: 0, hist: new_histogram() };
        Tally { phases: [phase(), phase(), phase()], unexpected: 0, errors: 0, first_error: None }
    }
}

impl Tally {
    pub fn phase(&self, p: Phase) -> &PhaseTally {
        &self.phases[p as usize]
    }

    fn phase_mut(&mut self, p: Phase) -> &mut PhaseTally {
        &mut self.phases[p as usize]
    }

    pub fn answered(&self) -> u64 {
        self.phases.iter().map(|p| p.answered).sum()
    }

    fn unexpected(&mut self, what: String) {
        self.unexpected += 1;
        self.first_error.get_or_insert(what);
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

/// Runs one healthy client: its first request is due `offset_ns` after the start (the
/// clients' offsets spread their requests evenly over a period); it sends until the end
/// of the schedule, then waits for the outstanding replies for up to the timeout.
pub async fn run(mut c: Client, offset_ns: u64, s: Schedule, tally: Rc<RefCell<Tally>>) {
    let mut due = s.start_ns + offset_ns;
    let give_up = instant_of(s.end_ns + s.timeout_ns);
    // ref -> (k, send time)
    let mut waiting: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut k = 0u64;
    let mut payload = Vec::new();
    loop {
        let sending = due < s.end_ns;
        if !sending && waiting.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            m = c.conn.next_msg_timed() => match m {
                Ok((now, Msg::Text(t))) => on_frame(t, now, &c.topic, &mut waiting, &s, &mut tally.borrow_mut()),
                Ok((_, Msg::Binary(_))) => tally.borrow_mut().unexpected(format!("{}: a binary frame", c.topic)),
                Ok((_, Msg::Close(code))) => {
                    return tally.borrow_mut().error(format!("{}: the server closed the connection (code {code:?})", c.topic));
                }
                Err(e) => return tally.borrow_mut().error(format!("{}: {e}", c.topic)),
            },
            _ = sleep_until(instant_of(due)), if sending => {
                k += 1;
                payload.clear();
                write!(payload, "{{\"k\":{k}}}").expect("write to Vec");
                let sent = mono_ns();
                match c.push("echo", &payload).await {
                    Ok(r) => {
                        waiting.insert(r, (k, sent));
                        tally.borrow_mut().phase_mut(s.phase_of(sent)).sent += 1;
                    }
                    Err(e) => return tally.borrow_mut().error(format!("{}: push: {e}", c.topic)),
                }
                // Behind schedule (the loop was held up), the next ones go at once.
                due += s.period_ns;
            },
            _ = sleep_until(give_up) => return,
        }
    }
}

/// A frame for a healthy client: the reply to one of its outstanding requests, or unexpected.
fn on_frame(t: &[u8], now: u64, topic: &str, waiting: &mut HashMap<u64, (u64, u64)>, s: &Schedule, tally: &mut Tally) {
    let f = match phx::parse(t) {
        Ok(f) => f,
        Err(e) => return tally.unexpected(format!("{topic}: {e}")),
    };
    let outstanding = match (&*f.event, f.topic == topic) {
        ("phx_reply", true) => f.msg_ref.as_deref().and_then(|r| r.parse::<u64>().ok()).and_then(|r| waiting.remove(&r)),
        _ => None,
    };
    let Some((k, sent)) = outstanding else {
        return tally.unexpected(format!("{topic}: unexpected {}", String::from_utf8_lossy(t)));
    };
    match serde_json::from_slice::<phx::EchoReply>(f.payload) {
        Ok(rep) if rep.status == "ok" && rep.response.k == k => {}
        _ => return tally.unexpected(format!("{topic}: wrong echo reply {}", String::from_utf8_lossy(f.payload))),
    }
    let round_trip = now.saturating_sub(sent).max(1);
    let p = tally.phase_mut(s.phase_of(sent));
    if round_trip <= s.timeout_ns {
        p.answered += 1;
        p.hist.saturating_record(round_trip);
    } else {
        p.late += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule { start_ns: 100, flood_start_ns: 200, flood_end_ns: 300, end_ns: 400, period_ns: 10, timeout_ns: 50 }
    }

    #[test]
    fn requests_belong_to_the_phase_they_were_sent_in() {
        let s = schedule();
        assert_eq!(s.phase_of(100), Phase::Before);
        assert_eq!(s.phase_of(199), Phase::Before);
        assert_eq!(s.phase_of(200), Phase::During);
        assert_eq!(s.phase_of(299), Phase::During);
        assert_eq!(s.phase_of(300), Phase::After);
        assert_eq!(s.phase_of(10_000), Phase::After);
    }

    #[test]
    fn replies_are_matched_timed_and_checked() {
        let s = schedule();
        let mut t = Tally::default();
        let mut waiting = HashMap::from([(5, (1, 150)), (6, (2, 210)), (7, (3, 220)), (8, (4, 310))]);
        let topic = "room:flood-0";
        // In time, sent before the flood: answered in `before`, 30 ns.
        on_frame(br#"["1","5","room:flood-0","phx_reply",{"response":{"k":1},"status":"ok"}]"#, 180, topic, &mut waiting, &s, &mut t);
        // Sent during the flood, 60 ns later: late.
        on_frame(br#"["1","6","room:flood-0","phx_reply",{"response":{"k":2},"status":"ok"}]"#, 270, topic, &mut waiting, &s, &mut t);
        // The wrong k, a reply to nothing, another topic, an error reply: unexpected.
        on_frame(br#"["1","8","room:flood-0","phx_reply",{"response":{"k":9},"status":"ok"}]"#, 320, topic, &mut waiting, &s, &mut t);
        on_frame(br#"["1","99","room:flood-0","phx_reply",{"response":{"k":1},"status":"ok"}]"#, 320, topic, &mut waiting, &s, &mut t);
        on_frame(br#"["1","7","room:other","phx_reply",{"response":{"k":3},"status":"ok"}]"#, 230, topic, &mut waiting, &s, &mut t);
        on_frame(b"not json", 230, topic, &mut waiting, &s, &mut t);
        assert_eq!(t.unexpected, 4);
        assert_eq!(t.phase(Phase::Before).answered, 1);
        assert_eq!(t.phase(Phase::Before).hist.max(), 30);
        assert_eq!(t.phase(Phase::During).answered, 0);
        assert_eq!(t.phase(Phase::During).late, 1);
        assert_eq!(t.answered(), 1);
        // Only request 7 is still outstanding: the reply on another topic was not its.
        assert_eq!(waiting.keys().collect::<Vec<_>>(), vec![&7]);
    }

    #[test]
    fn lost_is_sent_minus_answered() {
        let mut t = Tally::default();
        let p = t.phase_mut(Phase::During);
        p.sent = 10;
        p.answered = 7;
        p.late = 2;
        assert_eq!(t.phase(Phase::During).lost(), 3);
    }
}
