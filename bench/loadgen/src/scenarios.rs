//! The scenarios. Each returns its JSON result (with `"ok"`), or an error when it could
//! not be run at all (the server is down, a join was refused, setup timed out, ...).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::task::spawn_local;
use tokio::time::{interval, sleep_until, timeout, timeout_at, Instant};

use crate::flooder::Flooder;
use crate::group::{instant_of, merge, Client, Go, GroupSpec, Kind};
use crate::paced::{self, Phase, Schedule, Tally};
use crate::sys::{self, mono_ns, ProcTree};
use crate::ui::Ui;
use crate::workers::Workers;
use crate::ws::{Trust, WsUrl};

/// Options every scenario takes.
#[derive(Clone, Debug)]
pub struct Opts {
    pub url: String,
    /// How a `wss://` server is trusted.
    pub tls: Option<Trust>,
    pub timeout: Duration,
    pub processes: usize,
    pub server_pid: Option<u32>,
    pub concurrency: usize,
    pub spread: bool,
}

/// Splits `total` clients into at most `k` contiguous (first, count) ranges.
pub fn split(total: usize, k: usize) -> Vec<(usize, usize)> {
    let k = k.clamp(1, total.max(1));
    let (base, extra) = (total / k, total % k);
    let mut out = Vec::new();
    let mut first = 0;
    for i in 0..k {
        let n = base + usize::from(i < extra);
        if n > 0 {
            out.push((first, n));
        }
        first += n;
    }
    out
}

fn specs(o: &Opts, total: usize, kind: Kind) -> Vec<GroupSpec> {
    split(total, o.processes)
        .into_iter()
        .map(|(first, count)| GroupSpec {
            url: o.url.clone(),
            tls: o.tls.clone(),
            first,
            count,
            concurrency: o.concurrency.div_ceil(o.processes.max(1)).max(1),
            timeout_ms: o.timeout.as_millis() as u64,
            spread: o.spread,
            kind: kind.clone(),
        })
        .collect()
}

/// Open files this process needs for `clients` connections.
pub fn check_files(o: &Opts, clients: usize) -> Result<(), String> {
    let per_process = clients.div_ceil(o.processes.max(1)) + 1 + 64;
    let limit = sys::raise_nofile();
    if limit != 0 && (per_process as u64) > limit {
        return Err(format!(
            "{per_process} open files needed per process but the limit is {limit}: \
             raise it (ulimit -n) or split the clients with --processes"
        ));
    }
    Ok(())
}

fn cpu(o: &Opts) -> Result<Option<u64>, String> {
    o.server_pid
        .map(|p| sys::cpu_ns(p).map_err(|e| format!("cannot read CPU time of server pid {p}: {e}")))
        .transpose()
}

fn rss(o: &Opts) -> Result<Option<u64>, String> {
    o.server_pid
        .map(|p| sys::rss_bytes(p).map_err(|e| format!("cannot read RSS of server pid {p}: {e}")))
        .transpose()
}

/// A finite number above zero.
pub fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Seconds, rounded to the microsecond.
fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e6
}

pub(crate) fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

fn rate(n: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 { (n as f64 / elapsed_s).round() } else { 0.0 }
}

fn percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"p50_ms": null, "p90_ms": null, "p99_ms": null, "p999_ms": null, "max_ms": null, "mean_ms": null});
    }
    json!({
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": ms(h.mean() as u64),
    })
}

fn extend(v: &mut Value, more: Value) {
    if let (Value::Object(a), Value::Object(b)) = (v, more) {
        a.extend(b);
    }
}

pub(crate) async fn open_sender(o: &Opts, index: usize, topic: &str) -> Result<Client, String> {
    open_one(o, index, topic, "sender").await
}

/// Connects and joins one client of the scenario's own (not a worker group's).
pub(crate) async fn open_one(o: &Opts, index: usize, topic: &str, role: &str) -> Result<Client, String> {
    let url = WsUrl::parse(&o.url, o.tls.as_ref())?;
    timeout(o.timeout, Client::open(&url, index, o.spread, topic))
        .await
        .map_err(|_| format!("the {role} timed out connecting and joining"))?
        .map_err(|e| format!("{role}: {e}"))
}

/// The server's CPU time over a phase, in total and per unit of work (`per`), or
/// nothing when no `--server-pid` was given.
fn server_cpu(o: &Opts, cpu0: Option<u64>, cpu1: Option<u64>, per: &str, count: u64) -> Value {
    let (Some(a), Some(b)) = (cpu0, cpu1) else { return json!({}) };
    let used = b.saturating_sub(a);
    let per_unit = (count > 0).then(|| (used as f64 / count as f64).round());
    json!({"server_pid": o.server_pid, "server_cpu_ns": used, per: per_unit})
}

/// N subscribers on one topic; one more client pushes `blast` n=M; every subscriber must
/// get `blasted` i = 1..M in order.
pub async fn fanout(
    o: &Opts,
    n: usize,
    m: u64,
    body_size: usize,
    topic: &str,
    settle: Duration,
    ui: &Ui,
) -> Result<Value, String> {
    if n == 0 || m == 0 {
        return Err("--subscribers and --broadcasts must be at least 1".into());
    }
    check_files(o, n + 1)?;
    let setup_t = Instant::now();
    ui.phase(&format!("fanout: joining {n} subscribers to {topic}"), n as u64);
    let mut w = Workers::start(specs(o, n, Kind::Fanout { topic: topic.into(), broadcasts: m }), o.processes, ui, o.timeout).await?;
    let mut sender = open_sender(o, n, topic).await?;
    let setup_s = secs(setup_t.elapsed().as_nanos() as u64);
    let payload = json!({"n": m, "body": "x".repeat(body_size)}).to_string();
    tokio::time::sleep(settle).await;

    ui.phase(&format!("fanout: {m} broadcasts to {n} subscribers"), n as u64 * m);
    let cpu0 = cpu(o)?;
    let t0 = mono_ns();
    let go = Go { start_ns: t0, end_ns: t0, deadline_ns: t0 + o.timeout.as_nanos() as u64 };
    w.go(go)?;
    let reply = timeout_at(crate::group::instant_of(go.deadline_ns), sender.request("blast", payload.as_bytes())).await;
    let reply_ok = matches!(&reply, Ok(Ok((s, _))) if s == "ok");
    let reply_err = match reply {
        Ok(Ok((s, r))) if s != "ok" => Some(format!("blast replied {s}: {r}")),
        Ok(Err(e)) => Some(format!("blast: {e}")),
        Err(_) => Some("no reply to blast in time".to_string()),
        _ => None,
    };
    let results = w.done(ui, crate::group::instant_of(go.deadline_ns) + Duration::from_secs(5)).await?;
    let cpu1 = cpu(o)?;
    w.close().await;
    drop(sender);

    let (r, _) = merge(results);
    let expected = n as u64 * m;
    let lost = expected.saturating_sub(r.delivered);
    let elapsed = if r.last_ns > t0 { secs(r.last_ns - t0) } else { 0.0 };
    let ok = lost == 0 && r.duplicates == 0 && r.out_of_order == 0 && r.unexpected == 0 && r.errors == 0 && !r.timed_out && reply_ok;
    let mut v = json!({
        "scenario": "fanout",
        "ok": ok,
        "url": o.url,
        "processes": o.processes,
        "subscribers": n,
        "broadcasts": m,
        "body_size": body_size,
        "topic": topic,
        "setup_s": setup_s,
        "settle_ms": settle.as_millis() as u64,
        "delivered": r.delivered,
        "expected": expected,
        "lost": lost,
        "duplicates": r.duplicates,
        "out_of_order": r.out_of_order,
        "unexpected": r.unexpected,
        "errors": r.errors,
        "timed_out": r.timed_out,
        "elapsed_s": elapsed,
        "msgs_per_sec": rate(r.delivered, elapsed),
    });
    extend(&mut v, server_cpu(o, cpu0, cpu1, "ns_per_delivery", r.delivered));
    if let Some(e) = reply_err.or(r.first_error) {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}

/// N subscribers; a sender shouts {"t": send time, "seq": k} R times a second for S
/// seconds; each subscriber records receive time - t.
pub async fn latency(o: &Opts, n: usize, per_sec: f64, duration: f64, body_size: usize, topic: &str, ui: &Ui) -> Result<Value, String> {
    if n == 0 || !positive(per_sec) || !positive(duration) {
        return Err("--subscribers, --rate and --duration must be positive".into());
    }
    let total = (per_sec * duration).round().max(1.0) as u64;
    check_files(o, n + 1)?;
    ui.phase(&format!("latency: joining {n} subscribers to {topic}"), n as u64);
    let mut w = Workers::start(specs(o, n, Kind::Latency { topic: topic.into(), messages: total }), o.processes, ui, o.timeout).await?;
    let mut sender = open_sender(o, n, topic).await?;
    let body = if body_size > 0 { format!(",\"body\":\"{}\"", "x".repeat(body_size)) } else { String::new() };

    ui.phase(&format!("latency: {total} shouts at {per_sec}/s to {n} subscribers"), total);
    let cpu0 = cpu(o)?;
    let t0 = mono_ns();
    let dur_ns = (duration * 1e9) as u64;
    let go = Go { start_ns: t0, end_ns: t0 + dur_ns, deadline_ns: t0 + dur_ns + o.timeout.as_nanos() as u64 };
    w.go(go)?;
    let start = Instant::now();
    let (sent, send_err) = send_shouts(&mut sender, start, per_sec, total, &body, |k| ui.update(k)).await;
    let send_s = secs(start.elapsed().as_nanos() as u64);
    let drain = spawn_local(async move {
        while sender.conn.next_msg().await.is_ok() {}
    });
    ui.phase("latency: waiting for the last deliveries", n as u64 * total);
    let limit = if send_err.is_some() { Instant::now() } else { crate::group::instant_of(go.deadline_ns) };
    let results = w.done(ui, limit.max(Instant::now()) + Duration::from_secs(5)).await?;
    let cpu1 = cpu(o)?;
    w.close().await;
    drain.abort();

    let (r, h) = merge(results);
    let expected = n as u64 * total;
    let lost = expected.saturating_sub(r.delivered);
    let ok = send_err.is_none() && lost == 0 && r.duplicates == 0 && r.out_of_order == 0 && r.unexpected == 0 && r.errors == 0 && !r.timed_out;
    let mut v = json!({
        "scenario": "latency",
        "ok": ok,
        "url": o.url,
        "processes": o.processes,
        "subscribers": n,
        "rate": per_sec,
        "duration_s": duration,
        "body_size": body_size,
        "topic": topic,
        "sent": sent,
        "send_s": send_s,
        "count": h.len(),
        "expected": expected,
        "lost": lost,
        "duplicates": r.duplicates,
        "out_of_order": r.out_of_order,
        "unexpected": r.unexpected,
        "errors": r.errors,
        "timed_out": r.timed_out,
    });
    extend(&mut v, percentiles(&h));
    extend(&mut v, server_cpu(o, cpu0, cpu1, "ns_per_delivery", r.delivered));
    if let Some(e) = send_err.or(r.first_error) {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}

/// Pushes `shout` `{"t": <send time ns>, "seq": k}` (plus `extra` fields) for k = 1..=total,
/// shout k due at `start + (k - 1) / per_sec`, draining the sender's own copies of the
/// broadcast meanwhile. Returns how many were sent and why it stopped early, if it did.
pub(crate) async fn send_shouts(sender: &mut Client, start: Instant, per_sec: f64, total: u64, extra: &str, on_sent: impl Fn(u64)) -> (u64, Option<String>) {
    let step = 1e9 / per_sec;
    let mut sent = 0u64;
    for k in 1..=total {
        let at = start + Duration::from_nanos(((k - 1) as f64 * step) as u64);
        let drained = loop {
            tokio::select! {
                biased;
                _ = sleep_until(at) => break Ok(()),
                m = sender.conn.next_msg() => match m {
                    Ok(crate::ws::Msg::Close(c)) => break Err(format!("server closed the sender (code {c:?})")),
                    Err(e) => break Err(format!("sender: {e}")),
                    Ok(_) => {}
                },
            }
        };
        if let Err(e) = drained {
            return (sent, Some(e));
        }
        let payload = format!("{{\"t\":{},\"seq\":{k}{extra}}}", mono_ns());
        if let Err(e) = sender.push("shout", payload.as_bytes()).await {
            return (sent, Some(format!("sender: {e}")));
        }
        sent = k;
        on_sent(k);
    }
    (sent, None)
}

/// C clients, each on its own topic, each in a closed loop of `echo` push + reply.
pub async fn echo(o: &Opts, c: usize, duration: f64, body_size: usize, ui: &Ui) -> Result<Value, String> {
    if c == 0 || !positive(duration) {
        return Err("--clients and --duration must be positive".into());
    }
    check_files(o, c)?;
    let prefix = "room:echo-";
    ui.phase(&format!("echo: joining {c} clients"), c as u64);
    let mut w = Workers::start(specs(o, c, Kind::Echo { topic_prefix: prefix.into(), body_size }), o.processes, ui, o.timeout).await?;

    ui.phase(&format!("echo: {c} clients for {duration} s, round trips"), 0);
    let cpu0 = cpu(o)?;
    let t0 = mono_ns();
    let dur_ns = (duration * 1e9) as u64;
    let go = Go { start_ns: t0, end_ns: t0 + dur_ns, deadline_ns: t0 + dur_ns + o.timeout.as_nanos() as u64 };
    w.go(go)?;
    let results = w.done(ui, crate::group::instant_of(go.deadline_ns) + Duration::from_secs(5)).await?;
    let cpu1 = cpu(o)?;
    w.close().await;

    let (r, h) = merge(results);
    let elapsed = if r.last_ns > t0 { secs(r.last_ns - t0) } else { 0.0 };
    let ok = r.errors == 0 && r.unexpected == 0 && !r.timed_out && r.round_trips > 0;
    let mut v = json!({
        "scenario": "echo",
        "ok": ok,
        "url": o.url,
        "processes": o.processes,
        "clients": c,
        "duration_s": duration,
        "body_size": body_size,
        "round_trips": r.round_trips,
        "elapsed_s": elapsed,
        "round_trips_per_sec": rate(r.round_trips, elapsed),
        "errors": r.errors,
        "timed_out": r.timed_out,
    });
    extend(&mut v, percentiles(&h));
    extend(&mut v, server_cpu(o, cpu0, cpu1, "ns_per_round_trip", r.round_trips));
    if let Some(e) = r.first_error {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}

/// N clients connect and join; optionally hold them idle and sample the server's RSS.
pub async fn connect(o: &Opts, n: usize, topic: &str, shared: bool, hold_ms: Option<u64>, ui: &Ui) -> Result<Value, String> {
    if n == 0 {
        return Err("--clients must be at least 1".into());
    }
    check_files(o, n)?;
    let rss_before = rss(o)?;
    let cpu0 = cpu(o)?;
    ui.phase(&format!("connect: {n} clients, {} at once", o.concurrency), n as u64);
    let mut w = Workers::start(specs(o, n, Kind::Connect { topic: topic.into(), shared }), o.processes, ui, o.timeout).await?;
    let t0 = mono_ns();
    let go = Go { start_ns: t0, end_ns: t0, deadline_ns: t0 + o.timeout.as_nanos() as u64 };
    w.go(go)?;
    let results = w.done(ui, crate::group::instant_of(go.deadline_ns) + Duration::from_secs(5)).await?;
    let rss_after = rss(o)?;
    let cpu1 = cpu(o)?;
    let mut rss_after_hold = None;
    if let Some(h) = hold_ms {
        ui.note(&format!("connect: holding {} connections idle for {h} ms", n));
        tokio::time::sleep(Duration::from_millis(h)).await;
        rss_after_hold = rss(o)?;
    }
    let closed = w.close().await;

    let (r, _) = merge(results);
    let failures = n as u64 - r.joined;
    let elapsed = if r.join_last_ns > r.join_first_ns { secs(r.join_last_ns - r.join_first_ns) } else { 0.0 };
    let ok = failures == 0 && (hold_ms.is_none() || closed == 0);
    let mut v = json!({
        "scenario": "connect",
        "ok": ok,
        "url": o.url,
        "processes": o.processes,
        "clients": n,
        "concurrency": o.concurrency,
        "shared_topic": shared,
        "topic": topic,
        "joined": r.joined,
        "failures": failures,
        "elapsed_s": elapsed,
        "joins_per_sec": rate(r.joined, elapsed),
    });
    if let Some(h) = hold_ms {
        extend(&mut v, json!({"hold_ms": h, "closed_during_hold": closed}));
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        extend(&mut v, json!({
            "server_pid": o.server_pid,
            "rss_before": before,
            "rss_after": after,
            "bytes_per_conn": if r.joined > 0 { Some(((after as f64 - before as f64) / r.joined as f64).round()) } else { None },
        }));
        if let Some(a) = rss_after_hold {
            extend(&mut v, json!({"rss_after_hold": a}));
        }
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let used = b.saturating_sub(a);
        extend(&mut v, json!({
            "server_cpu_ns": used,
            "ns_per_join": if r.joined > 0 { Some((used as f64 / r.joined as f64).round()) } else { None },
        }));
    }
    if let Some(e) = r.first_error {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}

/// What the `flood` scenario is asked to do.
#[derive(Clone, Debug)]
pub struct FloodPlan {
    pub healthy: usize,
    /// Round trips per second of each healthy client.
    pub rate: f64,
    pub request_timeout: Duration,
    /// Seconds of each phase.
    pub before: f64,
    pub during: f64,
    pub after: f64,
    pub flooder_reads: bool,
    /// The flooder's topic; healthy client i joins `<topic>-<i>`.
    pub topic: String,
}

/// Period of the server RSS samples during the phases.
const RSS_SAMPLE: Duration = Duration::from_millis(100);

/// Runs `fut` while showing `progress()` on the current phase line.
pub async fn showing<F: Future>(fut: F, ui: &Ui, progress: impl Fn() -> u64) -> F::Output {
    tokio::pin!(fut);
    let mut tick = interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            out = &mut fut => {
                ui.flush(progress());
                return out;
            }
            _ = tick.tick() => ui.update(progress()),
        }
    }
}

/// Samples the server's RSS every `RSS_SAMPLE` until the schedule ends, keeping the
/// highest sample of each phase.
async fn sample_rss(tree: Rc<ProcTree>, s: Schedule, peaks: Rc<RefCell<[u64; 3]>>) {
    let mut at = instant_of(s.start_ns);
    loop {
        sleep_until(at).await;
        let now = mono_ns();
        if now >= s.end_ns {
            return;
        }
        let rss = tree.rss_bytes();
        let peak = &mut peaks.borrow_mut()[s.phase_of(now) as usize];
        *peak = (*peak).max(rss);
        at += RSS_SAMPLE;
    }
}

/// The figures of one phase's round trips, named `<phase>_<figure>`.
fn phase_figures(phase: Phase, t: &paced::PhaseTally) -> Value {
    let quantile = |q: f64| (!t.hist.is_empty()).then(|| ms(t.hist.value_at_quantile(q)));
    let figures = [
        ("sent", json!(t.sent)),
        ("answered", json!(t.answered)),
        ("lost", json!(t.lost())),
        ("late", json!(t.late)),
        ("p50_ms", json!(quantile(0.5))),
        ("p99_ms", json!(quantile(0.99))),
        ("max_ms", json!((!t.hist.is_empty()).then(|| ms(t.hist.max())))),
    ];
    Value::Object(figures.into_iter().map(|(k, v)| (format!("{}_{k}", phase.name()), v)).collect::<Map<_, _>>())
}

/// N healthy clients do paced `echo` round trips before, during and after one flooder
/// pushes `echo` as fast as its socket takes them (reading its replies or never).
///
/// `ok` says the measurement ran: every healthy client stayed connected and got only
/// well-formed replies, and the flooder got pushes in. Round trips lost to the flood are
/// figures (`healthy_lost`, `<phase>_lost`), judged against the targets by `bench/run.py`.
pub async fn flood(o: &Opts, p: &FloodPlan, ui: &Ui) -> Result<Value, String> {
    let n = p.healthy;
    if n == 0 || !(p.rate >= 1.0 && p.rate.is_finite()) {
        return Err("--healthy must be at least 1 and --rate at least 1 per second".into());
    }
    if ![p.before, p.during, p.after].into_iter().all(positive) || p.request_timeout.is_zero() {
        return Err("--before, --during, --after and --request-timeout-ms must be positive".into());
    }
    if o.processes != 1 {
        return Err("flood runs its clients in one process: use --processes 1".into());
    }
    check_files(o, n + 1)?;
    ui.phase(&format!("flood: joining {n} healthy clients to {}-<i>", p.topic), n as u64);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(open_one(o, i, &format!("{}-{i}", p.topic), &format!("healthy client {i}")).await?);
        ui.update(i as u64 + 1);
    }
    ui.flush(n as u64);
    let flooder = Flooder::new(open_one(o, n, &p.topic, "flooder").await?)?;
    let tree = match o.server_pid {
        Some(pid) => Some(Rc::new(ProcTree::of(pid).map_err(|e| format!("cannot read server pid {pid}: {e}"))?)),
        None => None,
    };
    let cpu = || tree.as_ref().map(|t| t.cpu_ns());

    let s = Schedule::from_now(p.before, p.during, p.after, (1e9 / p.rate) as u64, p.request_timeout.as_nanos() as u64);
    let tally = Rc::new(RefCell::new(Tally::default()));
    let clients: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| spawn_local(paced::run(c, s.period_ns * i as u64 / n as u64, s, tally.clone())))
        .collect();
    let peaks = Rc::new(RefCell::new([0u64; 3]));
    if let Some(t) = &tree {
        spawn_local(sample_rss(t.clone(), s, peaks.clone()));
    }
    let answered = || tally.borrow().answered();
    let cpu_start = cpu();

    ui.phase(&format!("flood: before the flood, {n} clients at {}/s: round trips", p.rate), 0);
    showing(sleep_until(instant_of(s.flood_start_ns)), ui, answered).await;
    let rss_before = tree.as_ref().map(|t| t.rss_bytes());
    let cpu_flood_start = cpu();

    let mode = if p.flooder_reads { "reads its replies" } else { "never reads" };
    ui.phase(&format!("flood: flooding for {} s, the flooder {mode}: pushes written", p.during), 0);
    let pushes = Rc::new(Cell::new(0u64));
    let flood = flooder.run(instant_of(s.flood_end_ns), p.flooder_reads, pushes.clone());
    let out = showing(flood, ui, || pushes.get()).await;
    if out.end.is_disconnected() {
        ui.note(&format!("flood: the flooder was disconnected ({}) after {} pushes", out.end.describe(), out.pushes));
    }
    showing(sleep_until(instant_of(s.flood_end_ns)), ui, || pushes.get()).await;
    let cpu_flood_end = cpu();

    ui.phase("flood: after the flood: round trips", 0);
    showing(sleep_until(instant_of(s.end_ns)), ui, answered).await;
    let rss_after = tree.as_ref().map(|t| t.rss_bytes());
    let cpu_end = cpu();
    ui.phase("flood: waiting for the last replies", 0);
    let limit = instant_of(s.end_ns + s.timeout_ns) + Duration::from_secs(2);
    for c in clients {
        if showing(timeout_at(limit, c), ui, answered).await.is_err() {
            tally.borrow_mut().errors += 1; // paced::run gives up by itself: a safety net
        }
    }

    let t = tally.borrow();
    for phase in Phase::ALL {
        let pt = t.phase(phase);
        let p99 = (!pt.hist.is_empty()).then(|| ms(pt.hist.value_at_quantile(0.99)));
        ui.note(&format!(
            "flood: {:6}: {} sent, {} answered, {} lost, p99 {} ms",
            phase.name(),
            pt.sent,
            pt.answered,
            pt.lost(),
            p99.map_or("-".to_string(), |v| v.to_string())
        ));
    }
    let p99 = |phase: Phase| {
        let h = &t.phase(phase).hist;
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64)
    };
    let p99_ratio = match (p99(Phase::Before), p99(Phase::During)) {
        (Some(b), Some(d)) => Some((d / b * 100.0).round() / 100.0),
        _ => None,
    };
    let flooded_ns = out.ended_ns.unwrap_or(s.flood_end_ns).saturating_sub(s.flood_start_ns);
    let healthy_sent: u64 = t.phases.iter().map(|p| p.sent).sum();
    let ok = t.errors == 0 && t.unexpected == 0 && out.pushes > 0;
    let mut v = json!({
        "scenario": "flood",
        "ok": ok,
        "url": o.url,
        "healthy": n,
        "rate": p.rate,
        "request_timeout_ms": p.request_timeout.as_millis() as u64,
        "topic": p.topic,
        "before_s": p.before,
        "during_s": p.during,
        "after_s": p.after,
        "flooder_reads": p.flooder_reads,
        "healthy_sent": healthy_sent,
        "healthy_lost": healthy_sent - t.answered(),
        "p99_ratio": p99_ratio,
        "flooder_pushes": out.pushes,
        "flooder_pushes_per_sec": rate(out.pushes, secs(flooded_ns)),
        "flooder_replies": out.replies,
        "flooder_disconnected": out.end.is_disconnected(),
        "flooder_end": out.end.describe(),
        "flooder_close_code": match out.end { crate::flooder::End::CloseFrame(code) => code, _ => None },
        "flooder_disconnected_after_s": out.ended_ns.map(|_| secs(flooded_ns)),
        "unexpected": t.unexpected,
        "errors": t.errors,
    });
    for phase in Phase::ALL {
        extend(&mut v, phase_figures(phase, t.phase(phase)));
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let peaks = *peaks.borrow();
        let [_, during, later] = peaks;
        extend(&mut v, json!({
            "server_pid": o.server_pid,
            "rss_before": before,
            "rss_peak_during": during,
            "rss_peak_after": later,
            "rss_after": after,
            "rss_growth": during.max(later).max(after).saturating_sub(before),
        }));
    }
    let marks = [cpu_start, cpu_flood_start, cpu_flood_end, cpu_end];
    let spans = [s.flood_start_ns - s.start_ns, s.flood_end_ns - s.flood_start_ns, s.end_ns - s.flood_end_ns];
    for (i, phase) in Phase::ALL.into_iter().enumerate() {
        if let (Some(a), Some(b)) = (marks[i], marks[i + 1]) {
            let pct = (b.saturating_sub(a) as f64 / spans[i] as f64 * 1000.0).round() / 10.0;
            extend(&mut v, json!({ format!("{}_server_cpu_pct", phase.name()): pct }));
        }
    }
    if let Some(e) = &t.first_error {
        extend(&mut v, json!({"error": e}));
    }
    Ok(v)
}

/// Tiny sizes of every scenario in sequence (`presence` only `with_presence`: the
/// server must host the conformance app's presence); ok only if nothing was lost, duplicated,
/// out of order or failed. No timing is judged: a flood counts when it ran (its `ok`),
/// whatever round trips the flood cost.
pub async fn smoke(o: &Opts, with_presence: bool, ui: &Ui) -> Value {
    let mut results = Vec::new();
    let mut ok = true;
    let two = Opts { processes: 2, ..o.clone() };
    let mut runs: Vec<(&str, Result<Value, String>)> = vec![
        ("fanout", fanout(o, 5, 10, 64, "room:smoke-fanout", Duration::ZERO, ui).await),
        ("fanout", fanout(&two, 6, 10, 16, "room:smoke-fanout2", Duration::ZERO, ui).await),
        ("echo", echo(o, 2, 1.0, 0, ui).await),
        ("connect", connect(o, 5, "room:smoke-connect", false, None, ui).await),
        ("connect", connect(o, 5, "room:smoke-connect-shared", true, Some(50), ui).await),
        ("latency", latency(o, 5, 20.0, 1.0, 0, "room:smoke-latency", ui).await),
    ];
    // The flooder and the churn write on plain TCP only (see `Conn::into_parts`).
    if o.tls.is_none() {
        runs.push(("flood", flood(o, &smoke_flood(true), ui).await));
        runs.push(("flood", flood(o, &smoke_flood(false), ui).await));
        runs.push(("churn", crate::churn::churn(o, &crate::churn::smoke_plan(), ui).await));
    }
    if with_presence {
        runs.push(("presence", crate::presence::presence(o, &smoke_presence(), ui).await));
    }
    for (name, r) in runs {
        let v = match r {
            Ok(v) => v,
            Err(e) => json!({"scenario": name, "ok": false, "error": e}),
        };
        let this_ok = v["ok"].as_bool().unwrap_or(false);
        ok &= this_ok;
        ui.note(&format!("smoke: {name} {}", if this_ok { "ok" } else { "FAILED" }));
        results.push(v);
    }
    json!({"scenario": "smoke", "ok": ok, "url": o.url, "results": results})
}

/// A tiny presence run for `smoke`: 5 members, a churn of 3 joins and leaves, a
/// burst of 3 joins.
fn smoke_presence() -> crate::presence::PresencePlan {
    crate::presence::PresencePlan {
        members: 5,
        joiners: 3,
        burst_s: 0.2,
        churn_rate: 10.0,
        churn_s: 0.3,
        topic: "room:smoke-presence".into(),
    }
}

/// A tiny flood for `smoke`: 2 healthy clients, 1 s of flooding.
fn smoke_flood(flooder_reads: bool) -> FloodPlan {
    FloodPlan {
        healthy: 2,
        rate: 20.0,
        request_timeout: Duration::from_secs(2),
        before: 0.5,
        during: 1.0,
        after: 0.5,
        flooder_reads,
        topic: format!("room:smoke-flood-{}", if flooder_reads { "reads" } else { "never-reads" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_clients() {
        assert_eq!(split(10, 1), vec![(0, 10)]);
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(2, 4), vec![(0, 1), (1, 1)]);
        assert_eq!(split(0, 3), Vec::<(usize, usize)>::new());
        assert_eq!(split(10_000, 2), vec![(0, 5000), (5000, 5000)]);
    }

    #[test]
    fn merges_results_and_histograms() {
        use crate::group::GroupResult;
        let mut h1 = crate::group::new_histogram();
        h1.record(1_000_000).unwrap();
        h1.record(2_000_000).unwrap();
        let mut h2 = crate::group::new_histogram();
        h2.record_n(3_000_000, 2).unwrap();
        let hist = |h: &Histogram<u64>| h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        let a = GroupResult { clients: 2, delivered: 10, join_first_ns: 50, join_last_ns: 70, last_ns: 5, hist: hist(&h1), ..Default::default() };
        let b = GroupResult { clients: 3, delivered: 5, join_first_ns: 40, join_last_ns: 60, last_ns: 9, hist: hist(&h2), first_error: Some("x".into()), ..Default::default() };
        let (t, h) = merge(vec![a, b]);
        assert_eq!((t.clients, t.delivered, t.join_first_ns, t.join_last_ns, t.last_ns), (5, 15, 40, 70, 9));
        assert_eq!(t.first_error.as_deref(), Some("x"));
        assert_eq!(h.len(), 4);
        assert!(ms(h.max()) >= 2.999 && ms(h.max()) <= 3.01);
        assert!(ms(h.value_at_quantile(0.5)) >= 1.99 && ms(h.value_at_quantile(0.5)) <= 2.01);
    }
}
