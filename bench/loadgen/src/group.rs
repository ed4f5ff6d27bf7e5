//! A group of client connections run by one process: connect + join them, run the phase
//! of a scenario on each (one task per connection on the current-thread runtime), and sum
//! what they saw into a `GroupResult` that can cross a process boundary as JSON.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::task::{spawn_local, AbortHandle};
use tokio::time::{sleep, timeout_at, Instant};

use crate::phx;
use crate::sys::mono_ns;
use crate::ws::{self, Conn, Msg, Trust, WsUrl, OP_TEXT};

/// Heartbeat period of clients that wait or only receive (the server closes a
/// connection that sends nothing for 60 s).
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Highest latency a histogram records (longer ones are clamped to it).
const HIST_MAX_NS: u64 = 3_600_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// What one process runs: clients `first .. first + count` (global indices, which pick
/// the source address) of one scenario.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GroupSpec {
    pub url: String,
    pub tls: Option<Trust>,
    pub first: usize,
    pub count: usize,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// Limit for the setup phase (connect + join everything).
    pub timeout_ms: u64,
    /// Spread source addresses over 127.0.0.2..254.
    pub spread: bool,
    pub kind: Kind,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub enum Kind {
    /// Subscribers of `topic` expecting `blasted` i = 1..=broadcasts.
    Fanout { topic: String, broadcasts: u64 },
    /// Subscribers of `topic` expecting `shout` seq = 1..=messages stamped with a send time.
    Latency { topic: String, messages: u64 },
    /// Clients each on `<topic_prefix><index>`, each in a closed `echo` loop after GO.
    Echo { topic_prefix: String, body_size: usize },
    /// Clients connecting + joining after GO (to `topic` or `<topic>:<index>`), then idle.
    Connect { topic: String, shared: bool },
}

/// Start of the measured phase, in `mono_ns` time (shared by all processes).
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
pub struct Go {
    pub start_ns: u64,
    /// Echo: clients issue no new request after this.
    pub end_ns: u64,
    /// Nothing waits past this.
    pub deadline_ns: u64,
}

pub fn instant_of(mono: u64) -> Instant {
    Instant::now() + Duration::from_nanos(mono.saturating_sub(mono_ns()))
}

/// The figures of one group; `merge` adds them up across processes.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
pub struct GroupResult {
    pub clients: u64,
    pub joined: u64,
    /// First connect start and last join reply (`mono_ns`; 0 when none).
    pub join_first_ns: u64,
    pub join_last_ns: u64,
    /// Clients that finished their phase (got everything / ran the whole loop).
    pub completed: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Frames that did not parse or carried an unexpected value.
    pub unexpected: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Last delivery / last round trip (`mono_ns`).
    pub last_ns: u64,
    pub round_trips: u64,
    /// Latency histogram as (value ns, count) pairs.
    pub hist: Vec<(u64, u64)>,
    pub timed_out: bool,
    /// Connect: connections the server closed while held.
    pub closed: u64,
}

impl GroupResult {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

/// Sums group results; the histograms are merged into one.
pub fn merge(parts: Vec<GroupResult>) -> (GroupResult, Histogram<u64>) {
    let mut t = GroupResult::default();
    let mut h = new_histogram();
    for p in parts {
        t.clients += p.clients;
        t.joined += p.joined;
        if p.join_first_ns != 0 && (t.join_first_ns == 0 || p.join_first_ns < t.join_first_ns) {
            t.join_first_ns = p.join_first_ns;
        }
        t.join_last_ns = t.join_last_ns.max(p.join_last_ns);
        t.completed += p.completed;
        t.delivered += p.delivered;
        t.duplicates += p.duplicates;
        t.out_of_order += p.out_of_order;
        t.unexpected += p.unexpected;
        t.errors += p.errors;
        if t.first_error.is_none() {
            t.first_error = p.first_error;
        }
        t.last_ns = t.last_ns.max(p.last_ns);
        t.round_trips += p.round_trips;
        for (v, c) in p.hist {
            h.saturating_record_n(v, c);
        }
        t.timed_out |= p.timed_out;
        t.closed += p.closed;
    }
    (t, h)
}

/// A joined channel on its own connection.
pub struct Client {
    pub conn: Conn,
    pub topic: String,
    pub join_ref: String,
    next_ref: u64,
    msg: Vec<u8>,
}

impl Client {
    /// Connects (from the source address of `index`) and joins `topic`.
    pub async fn open(url: &WsUrl, index: usize, spread: bool, topic: &str) -> Result<Client, String> {
        let mut c = Client::connect(url, index, spread, topic).await?;
        c.join().await?;
        Ok(c)
    }

    /// Connects (from the source address of `index`) without joining: the caller sends
    /// the join (`send_join`) and reads its reply itself.
    pub async fn connect(url: &WsUrl, index: usize, spread: bool, topic: &str) -> Result<Client, String> {
        let local = ws::source_addr(&url.addr, index, spread);
        let conn = Conn::connect(url, local, index as u64 + 1)
            .await
            .map_err(|e| format!("connect{}: {e}", local.map(|a| format!(" from {a}")).unwrap_or_default()))?;
        Ok(Client { conn, topic: topic.to_string(), join_ref: String::new(), next_ref: 1, msg: Vec::new() })
    }

    /// Sends `phx_join` with the JSON `payload`; its ref is the new `join_ref`.
    pub async fn send_join(&mut self, payload: &[u8]) -> std::io::Result<u64> {
        let r = self.next_ref;
        self.next_ref += 1;
        self.join_ref = r.to_string();
        self.msg.clear();
        phx::encode(&mut self.msg, Some(&self.join_ref), Some(&self.join_ref), &self.topic, "phx_join", payload);
        self.conn.send_frame(OP_TEXT, &self.msg).await?;
        Ok(r)
    }

    async fn join(&mut self) -> Result<(), String> {
        let r = self.send_join(b"{}").await.map_err(|e| format!("join: {e}"))?;
        let (status, response) = self.await_reply(r).await.map_err(|e| format!("join {}: {e}", self.topic))?;
        if status != "ok" {
            return Err(format!("join {} refused: {response}", self.topic));
        }
        Ok(())
    }

    /// Pushes `event` with the JSON `payload` on the joined topic; returns its ref.
    pub async fn push(&mut self, event: &str, payload: &[u8]) -> std::io::Result<u64> {
        let r = self.next_ref;
        self.next_ref += 1;
        self.msg.clear();
        phx::encode(&mut self.msg, Some(&self.join_ref), Some(&r.to_string()), &self.topic, event, payload);
        self.conn.send_frame(OP_TEXT, &self.msg).await?;
        Ok(r)
    }

    pub async fn heartbeat(&mut self) -> std::io::Result<()> {
        let r = self.next_ref;
        self.next_ref += 1;
        self.msg.clear();
        phx::encode(&mut self.msg, None, Some(&r.to_string()), "phoenix", "heartbeat", b"{}");
        self.conn.send_frame(OP_TEXT, &self.msg).await
    }

    /// Reads until the reply to `r` on this topic (skipping everything else); returns
    /// its status and response.
    pub async fn await_reply(&mut self, r: u64) -> Result<(String, serde_json::Value), String> {
        loop {
            match self.conn.next_msg().await.map_err(|e| e.to_string())? {
                Msg::Text(t) => {
                    let f = phx::parse(t).map_err(|e| e.to_string())?;
                    if f.event == "phx_reply" && f.topic == self.topic && is_ref(&f.msg_ref, r) {
                        let rep: phx::Reply = serde_json::from_slice(f.payload).map_err(|e| format!("bad reply: {e}"))?;
                        return Ok((rep.status.into_owned(), rep.response));
                    }
                    if matches!(&*f.event, "phx_error" | "phx_close") && f.topic == self.topic {
                        return Err(format!("channel got {} while waiting for a reply", f.event));
                    }
                }
                Msg::Binary(_) => {}
                Msg::Close(code) => return Err(format!("server closed the connection (code {code:?})")),
            }
        }
    }

    /// Pushes and waits for the reply.
    pub async fn request(&mut self, event: &str, payload: &[u8]) -> Result<(String, serde_json::Value), String> {
        let r = self.push(event, payload).await.map_err(|e| e.to_string())?;
        self.await_reply(r).await
    }
}

fn is_ref(got: &Option<std::borrow::Cow<'_, str>>, want: u64) -> bool {
    got.as_deref().and_then(|s| s.parse::<u64>().ok()) == Some(want)
}

struct Shared {
    joined: Cell<u64>,
    remaining: Cell<u64>,
    done: Notify,
    r: RefCell<GroupResult>,
    hist: RefCell<Histogram<u64>>,
}

pub struct Group {
    spec: GroupSpec,
    url: WsUrl,
    sh: Shared,
    tasks: RefCell<Vec<AbortHandle>>,
    go_tx: watch::Sender<Option<Go>>,
    running: Cell<bool>,
    closed: Cell<bool>,
}

impl Group {
    pub fn new(spec: GroupSpec) -> Result<Rc<Group>, String> {
        let url = WsUrl::parse(&spec.url, spec.tls.as_ref())?;
        Ok(Rc::new(Group {
            sh: Shared {
                joined: Cell::new(0),
                remaining: Cell::new(spec.count as u64),
                done: Notify::new(),
                r: RefCell::new(GroupResult { clients: spec.count as u64, ..Default::default() }),
                hist: RefCell::new(new_histogram()),
            },
            spec,
            url,
            tasks: RefCell::new(Vec::new()),
            go_tx: watch::channel(None).0,
            running: Cell::new(false),
            closed: Cell::new(false),
        }))
    }

    /// A progress figure: joined clients during setup (and for connect), then messages
    /// received (fan-out, latency) or round trips (echo).
    pub fn progress(&self) -> u64 {
        if !self.running.get() {
            return self.sh.joined.get();
        }
        let r = self.sh.r.borrow();
        match self.spec.kind {
            Kind::Fanout { .. } | Kind::Latency { .. } => r.delivered,
            Kind::Echo { .. } => r.round_trips,
            Kind::Connect { .. } => self.sh.joined.get(),
        }
    }

    fn topic_for(&self, index: usize) -> String {
        match &self.spec.kind {
            Kind::Fanout { topic, .. } | Kind::Latency { topic, .. } => topic.clone(),
            Kind::Echo { topic_prefix, .. } => format!("{topic_prefix}{index}"),
            Kind::Connect { topic, shared: true } => topic.clone(),
            Kind::Connect { topic, shared: false } => format!("{topic}:{index}"),
        }
    }

    /// Connects and joins every client (nothing for `Connect`, which does it in `run`).
    pub async fn setup(self: &Rc<Self>) -> Result<(), String> {
        if matches!(self.spec.kind, Kind::Connect { .. }) {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_millis(self.spec.timeout_ms);
        self.open_all(true, deadline).await
    }

    async fn open_all(self: &Rc<Self>, fail_fast: bool, deadline: Instant) -> Result<(), String> {
        let next = Rc::new(Cell::new(0usize));
        let mut pool = Vec::new();
        for _ in 0..self.spec.concurrency.clamp(1, self.spec.count.max(1)) {
            let g = self.clone();
            let next = next.clone();
            pool.push(spawn_local(async move {
                loop {
                    let k = next.get();
                    if k >= g.spec.count {
                        return Ok(());
                    }
                    next.set(k + 1);
                    let index = g.spec.first + k;
                    let topic = g.topic_for(index);
                    let t0 = mono_ns();
                    let res = match timeout_at(deadline, Client::open(&g.url, index, g.spec.spread, &topic)).await {
                        Ok(r) => r,
                        Err(_) => Err("timed out connecting and joining".to_string()),
                    };
                    match res {
                        Ok(client) => {
                            let t1 = mono_ns();
                            {
                                let mut r = g.sh.r.borrow_mut();
                                if r.join_first_ns == 0 || t0 < r.join_first_ns {
                                    r.join_first_ns = t0;
                                }
                                r.join_last_ns = r.join_last_ns.max(t1);
                                r.joined += 1;
                            }
                            g.sh.joined.set(g.sh.joined.get() + 1);
                            g.start_client(client);
                        }
                        Err(e) => {
                            let msg = format!("client {index}: {e}");
                            if fail_fast {
                                next.set(g.spec.count);
                                return Err(msg);
                            }
                            g.sh.r.borrow_mut().error(msg);
                        }
                    }
                }
            }));
        }
        first_error(pool).await
    }

    fn start_client(self: &Rc<Self>, client: Client) {
        if self.closed.get() {
            return; // a connect that finished after close: drop it
        }
        let g = self.clone();
        let h = match &self.spec.kind {
            Kind::Fanout { broadcasts, .. } => spawn_local(receiver(g, client, "blasted", *broadcasts)),
            Kind::Latency { messages, .. } => spawn_local(receiver(g, client, "shout", *messages)),
            Kind::Echo { body_size, .. } => spawn_local(echo_client(g, client, *body_size)),
            Kind::Connect { .. } => spawn_local(hold_client(g, client)),
        };
        self.tasks.borrow_mut().push(h.abort_handle());
    }

    /// The client is done with its phase (successfully or not).
    fn finish_one(&self) {
        let left = self.sh.remaining.get().saturating_sub(1);
        self.sh.remaining.set(left);
        if left == 0 {
            self.sh.done.notify_one();
        }
    }

    fn fail(&self, msg: String) {
        self.sh.r.borrow_mut().error(msg);
        self.finish_one();
    }

    async fn wait_done(&self) {
        while self.sh.remaining.get() > 0 {
            self.sh.done.notified().await;
        }
    }

    /// Runs the measured phase until every client is done or the deadline passes.
    pub async fn run(self: Rc<Self>, go: Go) -> GroupResult {
        self.running.set(true);
        let deadline = instant_of(go.deadline_ns);
        let mut timed_out = false;
        match self.spec.kind {
            Kind::Connect { .. } => {
                let _ = self.open_all(false, deadline).await;
            }
            Kind::Echo { .. } => {
                let _ = self.go_tx.send(Some(go));
                // Each client stops by itself at the deadline; this is a safety net.
                timed_out = timeout_at(deadline + Duration::from_secs(2), self.wait_done()).await.is_err();
            }
            Kind::Fanout { .. } | Kind::Latency { .. } => {
                timed_out = timeout_at(deadline, self.wait_done()).await.is_err();
            }
        }
        let mut r = self.sh.r.borrow().clone();
        r.timed_out = timed_out;
        r.hist = self.sh.hist.borrow().iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        r
    }

    /// Ends every client task (dropping its connection); returns how many held
    /// connections the server had closed.
    pub fn close(&self) -> u64 {
        self.closed.set(true);
        for h in self.tasks.borrow_mut().drain(..) {
            h.abort();
        }
        self.sh.r.borrow().closed
    }
}

/// A subscriber expecting `event` messages numbered 1..=n (`blasted` {"i"} or `shout`
/// {"seq", "t"}); counts deliveries, duplicates and order, and records the latency of
/// stamped messages.
async fn receiver(g: Rc<Group>, mut c: Client, event: &'static str, n: u64) {
    let stamped = event == "shout";
    let mut seen = vec![0u64; (n as usize + 1).div_ceil(64)];
    let mut got = 0u64;
    let mut last = 0u64;
    let mut finished = false;
    let hb = sleep(HEARTBEAT);
    tokio::pin!(hb);
    loop {
        tokio::select! {
            biased;
            m = c.conn.next_msg_timed() => {
                let (now, t) = match m {
                    Ok((now, Msg::Text(t))) => (now, t),
                    Ok((_, Msg::Binary(_))) => continue,
                    Ok((_, Msg::Close(code))) => {
                        if !finished {
                            g.fail(format!("server closed the connection (code {code:?}) after {got} of {n} messages"));
                        }
                        return;
                    }
                    Err(e) => {
                        if !finished {
                            g.fail(format!("{e} after {got} of {n} messages"));
                        }
                        return;
                    }
                };
                let f = match phx::parse(t) {
                    Ok(f) => f,
                    Err(e) => {
                        g.sh.r.borrow_mut().unexpected += 1;
                        g.sh.r.borrow_mut().first_error.get_or_insert(e.to_string());
                        continue;
                    }
                };
                if f.event != event {
                    continue;
                }
                let (i, sent) = if stamped {
                    match serde_json::from_slice::<phx::Stamp>(f.payload) {
                        Ok(s) => (s.seq, Some(s.t)),
                        Err(_) => (0, None),
                    }
                } else {
                    match phx::edge_u64(f.payload, "i") {
                        Some(i) => (i, None),
                        None => match serde_json::from_slice::<phx::Blasted>(f.payload) {
                            Ok(b) => (b.i, None),
                            Err(_) => (0, None),
                        },
                    }
                };
                let mut r = g.sh.r.borrow_mut();
                if i == 0 || i > n {
                    r.unexpected += 1;
                    r.first_error.get_or_insert_with(|| format!("unexpected {event} payload {}", String::from_utf8_lossy(f.payload)));
                    continue;
                }
                let (w, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                if seen[w] & bit != 0 {
                    r.duplicates += 1;
                    continue;
                }
                seen[w] |= bit;
                got += 1;
                r.delivered += 1;
                if i != last + 1 {
                    r.out_of_order += 1;
                }
                last = i;
                r.last_ns = r.last_ns.max(now);
                if let Some(sent) = sent {
                    g.sh.hist.borrow_mut().saturating_record(now.saturating_sub(sent).max(1));
                }
                if got == n {
                    finished = true;
                    r.completed += 1;
                    drop(r);
                    g.finish_one();
                }
            }
            _ = &mut hb => {
                if let Err(e) = c.heartbeat().await {
                    if !finished {
                        g.fail(format!("heartbeat: {e}"));
                    }
                    return;
                }
                hb.as_mut().reset(Instant::now() + HEARTBEAT);
            }
        }
    }
}

/// Waits for GO (heartbeating), then pushes `echo` and waits for its reply in a loop
/// until `end_ns`, recording each round trip.
async fn echo_client(g: Rc<Group>, mut c: Client, body_size: usize) {
    let mut rx = g.go_tx.subscribe();
    let hb = sleep(HEARTBEAT);
    tokio::pin!(hb);
    let go = loop {
        if let Some(go) = *rx.borrow_and_update() {
            break go;
        }
        tokio::select! {
            biased;
            r = rx.changed() => if r.is_err() { return },
            m = c.conn.next_msg() => match m {
                Ok(Msg::Close(code)) => return g.fail(format!("server closed the connection (code {code:?}) before GO")),
                Err(e) => return g.fail(format!("{e} before GO")),
                Ok(_) => {}
            },
            _ = &mut hb => {
                if let Err(e) = c.heartbeat().await {
                    return g.fail(format!("heartbeat: {e}"));
                }
                hb.as_mut().reset(Instant::now() + HEARTBEAT);
            }
        }
    };
    let body = if body_size > 0 { format!(",\"body\":\"{}\"", "x".repeat(body_size)) } else { String::new() };
    let run = async {
        let mut payload = Vec::new();
        let mut k = 0u64;
        while mono_ns() < go.end_ns {
            k += 1;
            payload.clear();
            write!(payload, "{{\"k\":{k}{body}}}").expect("write to Vec");
            let t0 = mono_ns();
            let r = c.push("echo", &payload).await.map_err(|e| e.to_string())?;
            loop {
                match c.conn.next_msg().await.map_err(|e| e.to_string())? {
                    Msg::Text(t) => {
                        let f = phx::parse(t).map_err(|e| e.to_string())?;
                        if f.event == "phx_reply" && is_ref(&f.msg_ref, r) {
                            let rep: phx::EchoReply = serde_json::from_slice(f.payload)
                                .map_err(|e| format!("bad echo reply {}: {e}", String::from_utf8_lossy(f.payload)))?;
                            if rep.status != "ok" || rep.response.k != k {
                                return Err(format!("wrong echo reply {}", String::from_utf8_lossy(f.payload)));
                            }
                            break;
                        }
                    }
                    Msg::Binary(_) => {}
                    Msg::Close(code) => return Err(format!("server closed the connection (code {code:?})")),
                }
            }
            let now = mono_ns();
            g.sh.hist.borrow_mut().saturating_record((now - t0).max(1));
            let mut r = g.sh.r.borrow_mut();
            r.round_trips += 1;
            r.last_ns = r.last_ns.max(now);
        }
        Ok::<(), String>(())
    };
    match timeout_at(instant_of(go.deadline_ns), run).await {
        Ok(Ok(())) => {
            g.sh.r.borrow_mut().completed += 1;
            g.finish_one();
        }
        Ok(Err(e)) => g.fail(e),
        Err(_) => g.fail("timed out waiting for an echo reply".to_string()),
    }
}

/// Holds a joined connection idle (no heartbeats) until the group closes; notes whether
/// the server closed it meanwhile.
async fn hold_client(g: Rc<Group>, mut c: Client) {
    loop {
        match c.conn.next_msg().await {
            Ok(Msg::Close(_)) | Err(_) => {
                g.sh.r.borrow_mut().closed += 1;
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Waits for every connect task; the first error, if any.
pub(crate) async fn first_error(pool: impl IntoIterator<Item = tokio::task::JoinHandle<Result<(), String>>>) -> Result<(), String> {
    let mut out = Ok(());
    for h in pool {
        let r = h.await.unwrap_or_else(|e| Err(format!("connect task failed: {e}")));
        if out.is_ok() {
            out = r;
        }
    }
    out
}
