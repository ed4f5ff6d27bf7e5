//! The `presence` scenario: a big topic's presence list under a burst of joins and
//! under steady churn, as its members see it.
//!
//! Every client connects with its own `user_id` (its index) and joins the topic with
//! `{"track": true, "name": ...}`, so the conformance app pushes it `presence_state`
//! and then tracks it; every member applies `presence_state` / `presence_diff` to its
//! own `Roster` as the phoenix client does. The board below holds what the lists
//! should contain, and a member is *complete* once its list holds exactly that.
//!
//! 1. setup: `members` clients join (`--concurrency` at a time, each waiting for its
//!    join reply) until every list holds all of them;
//! 2. churn: for `churn_s` seconds, `churn_rate` new clients join and as many of the
//!    oldest disconnect per second (the topic keeps its size); each member records, for
//!    each key a diff brings it, the time since that client sent its `phx_join` or
//!    dropped its connection: the diff latency, until every list is right again;
//! 3. burst: `joiners` more clients join, spread evenly over `burst_s` seconds; the
//!    clock runs from the first `phx_join` to the socket read after which the last
//!    member's list was complete. Frames and bytes are every WebSocket message the
//!    members received in that time, replies and states included.
//!
//! Everything runs in one process (one task per connection), so the board is shared
//! memory; `--processes` is refused.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::{spawn_local, AbortHandle};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use crate::group::{instant_of, new_histogram, Client, HEARTBEAT};
use crate::phx;
use crate::roster::{Changes, Roster};
use crate::scenarios::Opts;
use crate::sys::{mono_ns, ProcTree};
use crate::ui::Ui;
use crate::ws::{Msg, WsUrl};

/// What the `presence` scenario is asked to do.
#[derive(Clone, Debug)]
pub struct PresencePlan {
    pub members: usize,
    pub joiners: usize,
    /// Seconds the burst's joins are spread over.
    pub burst_s: f64,
    /// Joins (and as many leaves) per second of the churn; 0: no churn.
    pub churn_rate: f64,
    pub churn_s: f64,
    pub topic: String,
}

impl PresencePlan {
    fn churn_count(&self) -> usize {
        (self.churn_rate * self.churn_s).round() as usize
    }
}

/// A member the board can end (churn) or check (completion).
struct Member {
    roster: Rc<RefCell<Roster>>,
    /// The completion round this member was last complete in.
    done_round: Rc<Cell<u64>>,
    task: AbortHandle,
}

/// What every member task shares: who should be on the list, the tallies.
struct Board {
    url: WsUrl,
    spread: bool,
    topic: String,
    capacity: usize,
    members: RefCell<Vec<Option<Member>>>,
    /// Keys the lists should hold: joined (or joining) and not left.
    expected: RefCell<Roster>,
    /// Bumped whenever `expected` is final for a phase; members count as complete once
    /// per round.
    round: Cell<u64>,
    complete: Cell<usize>,
    last_complete_ns: Cell<u64>,
    frames: Cell<u64>,
    bytes: Cell<u64>,
    redundant: Cell<u64>,
    /// `mono_ns` a key's client sent its `phx_join` / dropped its connection (0: not yet).
    join_ns: RefCell<Vec<u64>>,
    leave_ns: RefCell<Vec<u64>>,
    measuring: Cell<bool>,
    hist: RefCell<Histogram<u64>>,
    errors: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

impl Board {
    fn error(&self, msg: String) {
        self.errors.set(self.errors.get() + 1);
        self.first_error.borrow_mut().get_or_insert(msg);
    }

    fn alive(&self) -> usize {
        self.members.borrow().iter().filter(|m| m.is_some()).count()
    }

    /// Starts a completion round over the current `expected`, counting the members
    /// whose lists already match.
    fn new_round(&self) {
        self.round.set(self.round.get() + 1);
        self.complete.set(0);
        self.last_complete_ns.set(mono_ns());
        let expected = self.expected.borrow();
        for m in self.members.borrow().iter().flatten() {
            if m.roster.borrow().matches(&expected) {
                m.done_round.set(self.round.get());
                self.complete.set(self.complete.get() + 1);
            }
        }
    }

    /// Counts the member complete if its list now matches, once per round.
    fn check(&self, roster: &Roster, done_round: &Cell<u64>, now: u64) {
        let round = self.round.get();
        if done_round.get() != round && roster.matches(&self.expected.borrow()) {
            done_round.set(round);
            self.complete.set(self.complete.get() + 1);
            self.last_complete_ns.set(self.last_complete_ns.get().max(now));
        }
    }

    fn record_latencies(&self, changes: &Changes, now: u64) {
        if !self.measuring.get() {
            return;
        }
        let (joins, leaves) = (self.join_ns.borrow(), self.leave_ns.borrow());
        let mut h = self.hist.borrow_mut();
        for &(key, joined) in changes {
            let sent = if joined { joins[key] } else { leaves[key] };
            if sent != 0 {
                h.saturating_record(now.saturating_sub(sent).max(1));
            }
        }
    }

    /// Waits until every member is complete in the current round.
    async fn all_complete(&self, limit: Instant, what: &str) -> Result<(), String> {
        while self.complete.get() < self.alive() {
            if Instant::now() >= limit {
                return Err(format!("{what}: {} of {} lists complete at the timeout", self.complete.get(), self.alive()));
            }
            sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Connects client `key`, sends its tracked join and starts its member task;
    /// returns once the join was answered.
    async fn open(self: &Rc<Self>, key: usize) -> Result<(), String> {
        let url = WsUrl { path: format!("{}&user_id={key}", self.url.path), ..self.url.clone() };
        let mut c = Client::connect(&url, key, self.spread, &self.topic).await.map_err(|e| format!("client {key}: {e}"))?;
        self.expected.borrow_mut().put(key, true);
        self.join_ns.borrow_mut()[key] = mono_ns();
        let payload = format!("{{\"track\":true,\"name\":\"m{key}\"}}");
        c.send_join(payload.as_bytes()).await.map_err(|e| format!("client {key}: join: {e}"))?;
        let roster = Rc::new(RefCell::new(Roster::new(self.capacity)));
        let done_round = Rc::new(Cell::new(0));
        let (joined_tx, joined_rx) = oneshot::channel();
        let task = spawn_local(member(self.clone(), c, roster.clone(), done_round.clone(), joined_tx));
        self.members.borrow_mut()[key] = Some(Member { roster, done_round, task: task.abort_handle() });
        joined_rx.await.unwrap_or_else(|_| Err("the member task ended before its join reply".into()))
            .map_err(|e| format!("client {key}: {e}"))
    }

    /// Drops client `key`'s connection: its entry must leave every list.
    fn leave(&self, key: usize) {
        if let Some(m) = self.members.borrow_mut()[key].take() {
            self.leave_ns.borrow_mut()[key] = mono_ns();
            self.expected.borrow_mut().put(key, false);
            m.task.abort();
        }
    }
}

/// One member: answers its join, keeps its list, heartbeats; ends on error or abort.
async fn member(
    b: Rc<Board>,
    mut c: Client,
    roster: Rc<RefCell<Roster>>,
    done_round: Rc<Cell<u64>>,
    joined_tx: oneshot::Sender<Result<(), String>>,
) {
    let mut joined_tx = Some(joined_tx);
    let fail = |joined_tx: &mut Option<oneshot::Sender<Result<(), String>>>, msg: String| match joined_tx.take() {
        Some(tx) => drop(tx.send(Err(msg))),
        None => b.error(msg),
    };
    let hb = sleep(HEARTBEAT);
    tokio::pin!(hb);
    let mut changes = Changes::new();
    loop {
        tokio::select! {
            biased;
            m = c.conn.next_msg_timed() => {
                let (now, t) = match m {
                    Ok((now, Msg::Text(t))) => (now, t),
                    Ok((_, Msg::Binary(_))) => continue,
                    Ok((_, Msg::Close(code))) => return fail(&mut joined_tx, format!("server closed the connection (code {code:?})")),
                    Err(e) => return fail(&mut joined_tx, e.to_string()),
                };
                b.frames.set(b.frames.get() + 1);
                b.bytes.set(b.bytes.get() + t.len() as u64);
                let f = match phx::parse(t) {
                    Ok(f) if f.topic == b.topic => f,
                    Ok(_) => continue,
                    Err(e) => return fail(&mut joined_tx, e.to_string()),
                };
                let mut r = roster.borrow_mut();
                let applied = match &*f.event {
                    "presence_state" => r.apply_state(f.payload),
                    "presence_diff" => {
                        changes.clear();
                        let applied = r.apply_diff(f.payload, &mut changes);
                        b.record_latencies(&changes, now);
                        applied
                    }
                    "phx_reply" if f.msg_ref.as_deref() == Some(c.join_ref.as_str()) => {
                        let ok = serde_json::from_slice::<phx::Reply>(f.payload).is_ok_and(|rep| rep.status == "ok");
                        let reply = if ok { Ok(()) } else { Err(format!("join refused: {}", String::from_utf8_lossy(f.payload))) };
                        if let Some(tx) = joined_tx.take() {
                            let _ = tx.send(reply);
                        }
                        continue;
                    }
                    "phx_error" | "phx_close" => return fail(&mut joined_tx, format!("the channel got {}", f.event)),
                    _ => continue,
                };
                match applied {
                    Ok(a) => b.redundant.set(b.redundant.get() + a.redundant),
                    Err(e) => return fail(&mut joined_tx, e),
                }
                if r.is_synced() {
                    b.check(&r, &done_round, now);
                }
                drop(r);
                // A presence_state of thousands of entries grew the read buffer.
                c.conn.shrink_read_buf();
            }
            _ = &mut hb => {
                if let Err(e) = c.heartbeat().await {
                    return fail(&mut joined_tx, format!("heartbeat: {e}"));
                }
                hb.as_mut().reset(Instant::now() + HEARTBEAT);
            }
        }
    }
}

/// Server CPU time, or nothing without `--server-pid`.
struct Cpu(Option<ProcTree>);

impl Cpu {
    fn now(&self) -> Option<u64> {
        self.0.as_ref().map(|t| t.cpu_ns())
    }
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// Runs `open` for every key in `keys`, `concurrency` at a time, until `limit`; the
/// first error wins.
async fn open_all(b: &Rc<Board>, keys: std::ops::Range<usize>, concurrency: usize, limit: Instant, ui: &Ui) -> Result<(), String> {
    let next = Rc::new(Cell::new(keys.start));
    let opened = Rc::new(Cell::new(0u64));
    let pool: Vec<_> = (0..concurrency.clamp(1, keys.len().max(1)))
        .map(|_| {
            let (b, next, opened, end) = (b.clone(), next.clone(), opened.clone(), keys.end);
            spawn_local(async move {
                while next.get() < end {
                    let key = next.get();
                    next.set(key + 1);
                    let joined = timeout_at(limit, b.open(key))
                        .await
                        .unwrap_or_else(|_| Err(format!("client {key}: not joined before the timeout")));
                    if let Err(e) = joined {
                        next.set(end); // the others stop opening too
                        return Err(e);
                    }
                    opened.set(opened.get() + 1);
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let all = crate::group::first_error(pool);
    crate::scenarios::showing(all, ui, || opened.get()).await
}

/// Starts `open(key)` for each key at `start + i * period`, without waiting for one to
/// finish before the next is due; `each` runs at the same moments (the churn's leave).
async fn open_paced(b: &Rc<Board>, keys: std::ops::Range<usize>, start: Instant, period: Duration, each: impl Fn(usize)) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let mut handles = Vec::new();
    for (i, key) in keys.enumerate() {
        sleep_until(start + period * i as u32).await;
        let b2 = b.clone();
        handles.push(spawn_local(async move { b2.open(key).await }));
        each(i);
    }
    handles
}

async fn join_all(b: &Board, handles: Vec<tokio::task::JoinHandle<Result<(), String>>>, limit: Instant) {
    for h in handles {
        match timeout_at(limit, h).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => b.error(e),
            Ok(Err(e)) => b.error(format!("join task failed: {e}")),
            Err(_) => b.error("a join was not answered before the timeout".into()),
        }
    }
}

pub async fn presence(o: &Opts, p: &PresencePlan, ui: &Ui) -> Result<Value, String> {
    if p.members == 0 || p.joiners == 0 || !crate::scenarios::positive(p.burst_s) {
        return Err("--members and --joiners must be at least 1 and --burst-s positive".into());
    }
    if !(p.churn_rate >= 0.0 && p.churn_rate.is_finite() && p.churn_s >= 0.0 && p.churn_s.is_finite()) {
        return Err("--churn-rate and --churn-s must be 0 or more".into());
    }
    if p.churn_count() > p.members {
        return Err("the churn would make more clients leave than there are members".into());
    }
    if o.processes != 1 {
        return Err("presence runs its clients in one process: use --processes 1".into());
    }
    let capacity = p.members + p.churn_count() + p.joiners;
    crate::scenarios::check_files(o, p.members + p.joiners)?;
    let cpu = Cpu(match o.server_pid {
        Some(pid) => Some(ProcTree::of(pid).map_err(|e| format!("cannot read server pid {pid}: {e}"))?),
        None => None,
    });
    let b = Rc::new(Board {
        url: WsUrl::parse(&o.url, o.tls.as_ref())?,
        spread: o.spread,
        topic: p.topic.clone(),
        capacity,
        members: RefCell::new((0..capacity).map(|_| None).collect()),
        expected: RefCell::new(Roster::new(capacity)),
        round: Cell::new(0),
        complete: Cell::new(0),
        last_complete_ns: Cell::new(0),
        frames: Cell::new(0),
        bytes: Cell::new(0),
        redundant: Cell::new(0),
        join_ns: RefCell::new(vec![0; capacity]),
        leave_ns: RefCell::new(vec![0; capacity]),
        measuring: Cell::new(false),
        hist: RefCell::new(new_histogram()),
        errors: Cell::new(0),
        first_error: RefCell::new(None),
    });
    let limit = || Instant::now() + o.timeout;

    ui.phase(&format!("presence: {} members joining {} (tracked)", p.members, p.topic), p.members as u64);
    let t0 = mono_ns();
    open_all(&b, 0..p.members, o.concurrency, limit(), ui).await?;
    b.new_round();
    b.all_complete(limit(), "setup").await?;
    let setup_s = (mono_ns() - t0) as f64 / 1e9;
    ui.note(&format!("presence: {} members, every list complete after {setup_s:.1} s", p.members));

    let mut v = json!({
        "scenario": "presence",
        "url": o.url,
        "topic": p.topic,
        "members": p.members,
        "joiners": p.joiners,
        "burst_s": p.burst_s,
        "churn_rate": p.churn_rate,
        "churn_s": p.churn_s,
        "setup_s": (setup_s * 1e3).round() / 1e3,
    });
    let extend = |v: &mut Value, more: Value| {
        if let (Value::Object(a), Value::Object(m)) = (v, more) {
            a.extend(m);
        }
    };

    let churn = p.churn_count();
    if churn > 0 {
        ui.phase(&format!("presence: churn, {} joins and leaves per second for {} s", p.churn_rate, p.churn_s), 0);
        let (frames0, bytes0, cpu0) = (b.frames.get(), b.bytes.get(), cpu.now());
        b.measuring.set(true);
        let start = Instant::now();
        let period = Duration::from_secs_f64(1.0 / p.churn_rate);
        let handles = open_paced(&b, p.members..p.members + churn, start, period, |i| b.leave(i)).await;
        join_all(&b, handles, limit()).await;
        let elapsed_ns = start.elapsed().as_nanos() as u64;
        let cpu1 = cpu.now();
        b.new_round();
        b.all_complete(limit(), "churn").await?;
        b.measuring.set(false);
        let h = b.hist.borrow();
        let q = |x: f64| (!h.is_empty()).then(|| ms(h.value_at_quantile(x)));
        extend(&mut v, json!({
            "churn_diffs_seen": h.len(),
            "churn_p50_ms": q(0.5),
            "churn_p99_ms": q(0.99),
            "churn_max_ms": (!h.is_empty()).then(|| ms(h.max())),
            "churn_frames": b.frames.get() - frames0,
            "churn_bytes": b.bytes.get() - bytes0,
        }));
        if let (Some(a), Some(c)) = (cpu0, cpu1) {
            extend(&mut v, json!({"churn_server_cpu_pct": (c.saturating_sub(a) as f64 / elapsed_ns as f64 * 1000.0).round() / 10.0}));
        }
        ui.note(&format!("presence: churn p99 diff latency {} ms", q(0.99).map_or("-".into(), |x| x.to_string())));
    }

    let first = p.members + churn;
    ui.phase(&format!("presence: burst, {} joins within {} s", p.joiners, p.burst_s), 0);
    for key in first..first + p.joiners {
        // Known now, so a member whose list is complete early is not counted before the
        // burst is over.
        b.expected.borrow_mut().put(key, true);
    }
    b.new_round();
    let (frames0, bytes0, cpu0) = (b.frames.get(), b.bytes.get(), cpu.now());
    let start_ns = mono_ns();
    let start = instant_of(start_ns);
    let period = Duration::from_secs_f64(p.burst_s / p.joiners as f64);
    let handles = open_paced(&b, first..first + p.joiners, start, period, |_| ()).await;
    join_all(&b, handles, limit()).await;
    let completed = b.all_complete(limit(), "burst").await;
    let cpu1 = cpu.now();
    let complete_ns = b.last_complete_ns.get().saturating_sub(start_ns);
    extend(&mut v, json!({
        "burst_complete_ms": completed.is_ok().then(|| ms(complete_ns)),
        "burst_frames": b.frames.get() - frames0,
        "burst_bytes": b.bytes.get() - bytes0,
        "lists_complete": b.complete.get(),
        "lists": b.alive(),
    }));
    if let (Some(a), Some(c)) = (cpu0, cpu1) {
        extend(&mut v, json!({"server_pid": o.server_pid, "burst_server_cpu_ns": c.saturating_sub(a)}));
    }
    if let Err(e) = completed {
        b.error(e);
    }
    ui.note(&format!("presence: burst, every list complete after {} ms", ms(complete_ns)));
    for m in b.members.borrow_mut().drain(..).flatten() {
        m.task.abort();
    }
    extend(&mut v, json!({
        "ok": b.errors.get() == 0,
        "redundant": b.redundant.get(),
        "errors": b.errors.get(),
    }));
    if let Some(e) = b.first_error.borrow().clone() {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}
