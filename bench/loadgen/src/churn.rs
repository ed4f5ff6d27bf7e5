//! The `churn` scenario: waves of connections that die abruptly must not disturb the
//! healthy ones.
//!
//! H healthy subscribers join `--topic` (`room:churn`) and a sender `shout`s
//! `{"t": <send time ns>, "seq": k}` to them R times a second through three phases:
//! before the churn, during it, after it. Each subscriber checks that it receives every
//! `seq` once and in order, and records receive time − t in the histogram of the phase
//! the shout was sent in.
//!
//! During the churn, waves follow one another: K connections (`--wave`) connect,
//! upgrade and join `<topic>-dying`, `--concurrency` at a time; when the whole wave has
//! joined, every one of them dies at once, in turn one of three ways:
//! - `rst`: `SO_LINGER` 0 (`set_zero_linger`), then close: the kernel sends a RST;
//! - `fin_mid_frame`: the first half of a push frame, then `shutdown(SHUT_WR)`: a FIN
//!   in the middle of a frame;
//! - `rst_mid_push`: the first half of a push frame, then a RST.
//!
//! The churning connections run on a thread of their own (its own current-thread
//! runtime) at the lowest OS priority (nice 19), so that the kernel, not one
//! cooperative scheduler, shares the load generator's core between the churn and the
//! healthy subscribers, and gives the healthy ones the core first: what their
//! latencies measure is the server, not the load generator's own churn (the healthy
//! clients of a real server are on other machines than its attackers). Before the
//! churn thread was niced, its connects added about 2 ms to the healthy p99 on the
//! limit server (5.1-5.8 ms during the churn, 3.1-3.6 ms after).
//!
//! With `--server-pid`, the server's open descriptors (`/proc/<pid>/fd`) and RSS are
//! sampled just before the churn starts and again after the after phase's last delivery
//! (the healthy subscribers and the sender still connected both times): what the churn
//! left behind. Its CPU time from the first sample to the churn's end, over the
//! connections churned, is what one churned connection costs it
//! (`server_ns_per_churned`; the healthy broadcasts' share is small beside it).

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::spawn_local;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

use crate::group::{instant_of, new_histogram, Client, HEARTBEAT};
use crate::paced::{Phase, Schedule};
use crate::phx;
use crate::scenarios::{check_files, ms, open_one, open_sender, positive, send_shouts, showing, Opts};
use crate::sys::{mono_ns, ProcTree};
use crate::ui::Ui;
use crate::ws::{self, Msg, WsUrl, OP_TEXT};

/// How long before the churn the server is sampled.
const SAMPLE_AHEAD_NS: u64 = 200_000_000;

/// What the `churn` scenario is asked to do.
#[derive(Clone, Debug)]
pub struct ChurnPlan {
    pub healthy: usize,
    /// Shouts per second to the healthy subscribers.
    pub rate: f64,
    /// Connections per wave.
    pub wave: usize,
    /// Seconds of each phase.
    pub before: f64,
    pub during: f64,
    pub after: f64,
    /// The healthy subscribers' topic; the churning connections join `<topic>-dying`.
    pub topic: String,
}

/// How a churning connection dies; connection i of a wave dies the `i mod 3`-th way.
#[derive(Clone, Copy, Debug)]
enum Death {
    Rst,
    FinMidFrame,
    RstMidPush,
}

impl Death {
    const ALL: [Death; 3] = [Death::Rst, Death::FinMidFrame, Death::RstMidPush];

    fn name(self) -> &'static str {
        match self {
            Death::Rst => "rst",
            Death::FinMidFrame => "fin_mid_frame",
            Death::RstMidPush => "rst_mid_push",
        }
    }
}

/// What the churn thread did.
#[derive(Debug, Default)]
struct ChurnCounts {
    waves: u64,
    /// Connections that upgraded and joined.
    joined: u64,
    /// Connections that could not connect, upgrade or join.
    failures: u64,
    died: [u64; 3],
    first_error: Option<String>,
}

/// What the healthy subscribers saw, summed.
struct HealthyTally {
    phases: [Histogram<u64>; 3],
    delivered: u64,
    duplicates: u64,
    out_of_order: u64,
    errors: u64,
    first_error: Option<String>,
}

impl HealthyTally {
    fn new() -> HealthyTally {
        HealthyTally {
            phases: [new_histogram(), new_histogram(), new_histogram()],
            delivered: 0,
            duplicates: 0,
            out_of_order: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }
}

/// Runs the scenario: see the module docs.
pub async fn churn(o: &Opts, p: &ChurnPlan, ui: &Ui) -> Result<Value, String> {
    let n = p.healthy;
    if n == 0 || p.wave == 0 || !positive(p.rate) {
        return Err("--healthy, --wave and --rate must be positive".into());
    }
    if ![p.before, p.during, p.after].into_iter().all(positive) {
        return Err("--before, --during and --after must be positive".into());
    }
    if o.processes != 1 || o.tls.is_some() {
        return Err("churn runs in one process over ws:// (it resets sockets itself): use --processes 1".into());
    }
    check_files(o, n + 1 + p.wave)?;
    let tree = match o.server_pid {
        Some(pid) => Some(ProcTree::of(pid).map_err(|e| format!("cannot read server pid {pid}: {e}"))?),
        None => None,
    };

    ui.phase(&format!("churn: joining {n} healthy subscribers to {}", p.topic), n as u64);
    let mut subscribers = Vec::with_capacity(n);
    for i in 0..n {
        subscribers.push(open_one(o, i, &p.topic, &format!("healthy subscriber {i}")).await?);
        ui.update(i as u64 + 1);
    }
    ui.flush(n as u64);
    let mut sender = open_sender(o, n, &p.topic).await?;

    // The flood's phases: `flood_*` are the churn's start and end.
    let s = Schedule::from_now(p.before, p.during, p.after, (1e9 / p.rate) as u64, o.timeout.as_nanos() as u64);
    let total = ((s.end_ns - s.start_ns) / s.period_ns).max(1);
    let tally = Rc::new(RefCell::new(HealthyTally::new()));
    let receivers: Vec<_> = subscribers.into_iter().map(|c| spawn_local(healthy(c, total, s, tally.clone()))).collect();

    let progress = Arc::new(AtomicU64::new(0));
    let churner = {
        let (o, topic, wave, progress) = (o.clone(), format!("{}-dying", p.topic), p.wave, progress.clone());
        let first_index = n + 1;
        std::thread::spawn(move || churn_thread(&o, &topic, wave, first_index, s, &progress))
    };

    // Just before the first wave: a sample late by a few ms would count its connections.
    let (mut samples, mut cpu_churn_end) = (None, None);
    let sampled_at = s.flood_start_ns.saturating_sub(SAMPLE_AHEAD_NS).max(s.start_ns);
    let sampler = async {
        sleep_until(instant_of(sampled_at)).await;
        samples = tree.as_ref().map(|t| (t.fds(), t.rss_bytes(), t.cpu_ns()));
        sleep_until(instant_of(s.flood_end_ns)).await;
        cpu_churn_end = tree.as_ref().map(|t| t.cpu_ns());
    };
    ui.phase(&format!("churn: {total} shouts at {}/s; waves of {} dying during {} s: connections churned", p.rate, p.wave, p.during), 0);
    let sending = send_shouts(&mut sender, instant_of(s.start_ns), p.rate, total, "", |_| {});
    let ((sent, send_err), ()) = showing(async { tokio::join!(sending, sampler) }, ui, || progress.load(Ordering::Relaxed)).await;
    let counts = churner.join().map_err(|_| "the churn thread panicked".to_string())?;

    ui.phase("churn: waiting for the last deliveries", 0);
    let limit = Instant::now() + Duration::from_secs(5);
    let mut still_connected = Vec::with_capacity(n);
    for r in receivers {
        match timeout_at(limit, r).await {
            Ok(Ok(Some(client))) => still_connected.push(client),
            Ok(_) => {}
            Err(_) => tally.borrow_mut().fail("a healthy subscriber did not get every shout in time".into()),
        }
    }
    // Sampled while the healthy subscribers and the sender are connected, as at the start.
    let after = tree.as_ref().map(|t| (t.fds(), t.rss_bytes()));
    drop(still_connected);
    drop(sender);

    let t = tally.borrow();
    let expected = n as u64 * total;
    let lost = expected.saturating_sub(t.delivered);
    let p99 = |phase: Phase| {
        let h = &t.phases[phase as usize];
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64)
    };
    let p99_ratio = match (p99(Phase::Before), p99(Phase::During)) {
        (Some(b), Some(d)) => Some((d / b * 100.0).round() / 100.0),
        _ => None,
    };
    let ok = send_err.is_none() && lost == 0 && t.duplicates == 0 && t.out_of_order == 0 && t.errors == 0 && counts.joined > 0;
    let mut v = json!({
        "scenario": "churn",
        "ok": ok,
        "url": o.url,
        "healthy": n,
        "rate": p.rate,
        "wave": p.wave,
        "concurrency": o.concurrency,
        "topic": p.topic,
        "before_s": p.before,
        "during_s": p.during,
        "after_s": p.after,
        "sent": sent,
        "expected": expected,
        "delivered": t.delivered,
        "lost": lost,
        "duplicates": t.duplicates,
        "out_of_order": t.out_of_order,
        "errors": t.errors,
        "p99_ratio": p99_ratio,
        "waves": counts.waves,
        "churned": counts.joined,
        "churn_failures": counts.failures,
    });
    let map = v.as_object_mut().expect("an object");
    for (i, death) in Death::ALL.into_iter().enumerate() {
        map.insert(format!("died_{}", death.name()), json!(counts.died[i]));
    }
    for phase in Phase::ALL {
        let h = &t.phases[phase as usize];
        let q = |q: f64| (!h.is_empty()).then(|| ms(h.value_at_quantile(q)));
        map.insert(format!("{}_count", phase.name()), json!(h.len()));
        map.insert(format!("{}_p50_ms", phase.name()), json!(q(0.5)));
        map.insert(format!("{}_p99_ms", phase.name()), json!(q(0.99)));
        map.insert(format!("{}_max_ms", phase.name()), json!((!h.is_empty()).then(|| ms(h.max()))));
    }
    if let (Some((fds_before, rss_before, cpu_before)), Some((fds_after, rss_after)), Some(cpu_end)) = (samples, after, cpu_churn_end) {
        let cpu = cpu_end.saturating_sub(cpu_before);
        let span_ns = s.flood_end_ns - sampled_at;
        map.insert("during_server_cpu_pct".into(), json!((cpu as f64 / span_ns as f64 * 1000.0).round() / 10.0));
        map.insert("server_ns_per_churned".into(), json!((counts.joined > 0).then(|| (cpu as f64 / counts.joined as f64).round())));
        map.insert("server_pid".into(), json!(o.server_pid));
        map.insert("fds_before".into(), json!(fds_before));
        map.insert("fds_after".into(), json!(fds_after));
        map.insert("fds_left".into(), json!(fds_after as i64 - fds_before as i64));
        map.insert("rss_before".into(), json!(rss_before));
        map.insert("rss_after".into(), json!(rss_after));
    }
    if let Some(e) = send_err.or(t.first_error.clone()).or(counts.first_error) {
        map.insert("error".into(), json!(e));
    }
    Ok(v)
}

/// A healthy subscriber: expects `shout` seq 1..=total, once each and in order, and
/// records each one's latency in the phase it was sent in; heartbeats meanwhile. Hands
/// the client back when it got them all, still connected.
async fn healthy(mut c: Client, total: u64, s: Schedule, tally: Rc<RefCell<HealthyTally>>) -> Option<Client> {
    let mut last = 0u64;
    let hb = sleep(HEARTBEAT);
    tokio::pin!(hb);
    while last < total {
        tokio::select! {
            biased;
            m = c.conn.next_msg_timed() => {
                let (now, text) = match m {
                    Ok((now, Msg::Text(t))) => (now, t),
                    Ok((_, Msg::Binary(_))) => continue,
                    Ok((_, Msg::Close(code))) => {
                        tally.borrow_mut().fail(format!("server closed a healthy subscriber (code {code:?}) after {last} shouts"));
                        return None;
                    }
                    Err(e) => {
                        tally.borrow_mut().fail(format!("healthy subscriber: {e} after {last} shouts"));
                        return None;
                    }
                };
                let Ok(f) = phx::parse(text) else { continue };
                if f.event != "shout" {
                    continue;
                }
                let Ok(stamp) = serde_json::from_slice::<phx::Stamp>(f.payload) else { continue };
                let mut t = tally.borrow_mut();
                if stamp.seq <= last {
                    t.duplicates += 1;
                    continue;
                }
                if stamp.seq != last + 1 {
                    t.out_of_order += 1;
                }
                last = stamp.seq;
                t.delivered += 1;
                t.phases[s.phase_of(stamp.t) as usize].saturating_record(now.saturating_sub(stamp.t).max(1));
            }
            _ = &mut hb => {
                if let Err(e) = c.heartbeat().await {
                    tally.borrow_mut().fail(format!("heartbeat: {e}"));
                    return None;
                }
                hb.as_mut().reset(Instant::now() + HEARTBEAT);
            }
        }
    }
    Some(c)
}

/// The churn, on its own thread and runtime: waves until the churn phase ends.
fn churn_thread(o: &Opts, topic: &str, wave: usize, first_index: usize, s: Schedule, progress: &AtomicU64) -> ChurnCounts {
    crate::sys::lowest_priority();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let mut counts = ChurnCounts::default();
    let url = match WsUrl::parse(&o.url, None) {
        Ok(url) => Rc::new(url),
        Err(e) => return ChurnCounts { first_error: Some(e), ..ChurnCounts::default() },
    };
    local.block_on(&rt, async {
        sleep_until(instant_of(s.flood_start_ns)).await;
        let gate = Rc::new(Semaphore::new(o.concurrency));
        let mut index = first_index;
        while mono_ns() < s.flood_end_ns {
            let tasks: Vec<_> = (0..wave)
                .map(|i| {
                    let (url, gate, topic, deadline, spread) = (url.clone(), gate.clone(), topic.to_string(), o.timeout, o.spread);
                    let at = index + i;
                    spawn_local(async move {
                        let _permit = gate.acquire().await.expect("never closed");
                        timeout(deadline, Client::open(&url, at, spread, &topic)).await.unwrap_or_else(|_| Err("timed out".into()))
                    })
                })
                .collect();
            index += wave;
            let mut joined = Vec::with_capacity(wave);
            for t in tasks {
                match t.await.unwrap_or_else(|e| Err(e.to_string())) {
                    Ok(c) => joined.push(c),
                    Err(e) => {
                        counts.failures += 1;
                        counts.first_error.get_or_insert(format!("a churning connection: {e}"));
                    }
                }
            }
            counts.waves += 1;
            counts.joined += joined.len() as u64;
            for (i, client) in joined.into_iter().enumerate() {
                die(client, Death::ALL[i % 3]).await;
                counts.died[i % 3] += 1;
            }
            progress.store(counts.joined, Ordering::Relaxed);
        }
    });
    counts
}

/// Ends a joined connection abruptly, the `death` way. Errors are ignored: the point is
/// that the connection is gone.
async fn die(client: Client, death: Death) {
    let topic = client.topic.clone();
    let join_ref = client.join_ref.clone();
    let Ok((mut tcp, _)) = client.conn.into_parts() else { return };
    if matches!(death, Death::FinMidFrame | Death::RstMidPush) {
        let half = half_push(&topic, &join_ref);
        // The socket's send buffer is empty: the write goes in whole at once.
        let _ = tcp.write_all(&half).await;
    }
    match death {
        Death::FinMidFrame => {
            let _ = tcp.shutdown().await;
        }
        Death::Rst | Death::RstMidPush => {
            let _ = tcp.set_zero_linger();
        }
    }
    drop(tcp);
}

/// The first half of a masked push frame of `echo` with a 200-byte body: header and
/// part of the payload.
fn half_push(topic: &str, join_ref: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    let mut payload = Vec::new();
    write!(payload, "{{\"k\":1,\"body\":\"{}\"}}", "x".repeat(200)).expect("write to Vec");
    phx::encode(&mut msg, Some(join_ref), Some("2"), topic, "echo", &payload);
    let mut frame = Vec::new();
    ws::encode_frame(&mut frame, OP_TEXT, &msg, Some([0x12, 0x34, 0x56, 0x78]));
    frame.truncate(frame.len() / 2);
    frame
}

/// A tiny churn for `smoke`: 5 healthy subscribers, waves of 30 for 1 s.
pub fn smoke_plan() -> ChurnPlan {
    ChurnPlan { healthy: 5, rate: 20.0, wave: 30, before: 0.5, during: 1.0, after: 0.5, topic: "room:smoke-churn".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_push_is_an_incomplete_frame() {
        let half = half_push("room:x-dying", "1");
        let header = ws::parse_header(&half).unwrap().expect("the header is whole");
        assert!(header.payload_len > 200);
        assert!(half.len() < header.header_len + header.payload_len, "the payload is cut");
        assert!(half.len() > header.header_len, "part of the payload is there");
    }
}

