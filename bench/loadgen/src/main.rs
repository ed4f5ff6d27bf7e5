//! fenix-loadgen: benchmark load generator for Phoenix-Channels servers hosting the
//! conformance app (events `echo`, `shout`, `blast` on `room:*`), speaking serializer
//! vsn 2.0.0 over a minimal hand-written WebSocket client on a current-thread tokio
//! runtime. Progress goes to stderr; exactly one JSON line of results goes to stdout.
//! Exit status: 0 ok, 1 the run completed but lost/duplicated/reordered something or a
//! client failed, 2 the scenario could not be run (usage, server down, setup failed).

mod churn;
mod flooder;
mod group;
mod paced;
mod phx;
mod presence;
mod roster;
mod scenarios;
mod sys;
mod ui;
mod workers;
mod ws;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use scenarios::Opts;
use ui::Ui;

#[derive(Parser)]
#[command(name = "fenix-loadgen", version, about = "Load generator for Phoenix-Channels servers (conformance app, vsn 2.0.0)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N subscribers on one topic; a sender pushes `blast` n=M; every subscriber must get
    /// `blasted` i=1..M in order. Reports msgs_per_sec (and server CPU per delivery).
    Fanout {
        #[arg(long)]
        subscribers: usize,
        #[arg(long)]
        broadcasts: u64,
        /// Bytes of the `body` string in every broadcast
        #[arg(long, default_value_t = 64)]
        body_size: usize,
        #[arg(long, default_value = "room:bench")]
        topic: String,
        /// Wait this long after everyone joined before the blast, so the measured phase
        /// is the fan-out and not the tail of the joins (processes hibernating, ...)
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        #[command(flatten)]
        common: Common,
    },
    /// N subscribers; a sender `shout`s R times a second for S seconds, stamped with its
    /// send time; reports the broadcast latency distribution (p50 .. max).
    Latency {
        #[arg(long)]
        subscribers: usize,
        /// Shouts per second
        #[arg(long)]
        rate: f64,
        /// Seconds of sending
        #[arg(long)]
        duration: f64,
        /// Bytes of an extra `body` string in every shout (0: none)
        #[arg(long, default_value_t = 0)]
        body_size: usize,
        #[arg(long, default_value = "room:latency")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// C clients, each joined to its own topic, each in a closed loop of `echo` push and
    /// reply for S seconds; reports round trips per second and their latency.
    Echo {
        #[arg(long)]
        clients: usize,
        /// Seconds of the closed loop
        #[arg(long)]
        duration: f64,
        /// Bytes of an extra `body` string in every echo (0: none)
        #[arg(long, default_value_t = 0)]
        body_size: usize,
        #[command(flatten)]
        common: Common,
    },
    /// N clients connect and join (each its own topic `<topic>:<i>`, or all `--topic` with
    /// --shared-topic); reports joins per second, and with --server-pid the server's RSS
    /// growth per connection.
    Connect {
        #[arg(long)]
        clients: usize,
        /// All clients join --topic instead of one topic each
        #[arg(long)]
        shared_topic: bool,
        #[arg(long, default_value = "room:connect")]
        topic: String,
        /// After all joined: hold the connections idle this long before closing
        #[arg(long)]
        hold_ms: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// N healthy clients (each its own topic) do paced `echo` round trips before, during
    /// and after one flooder pushes `echo` as fast as its socket takes them; reports per
    /// phase the round trips sent, answered, lost and their latency, what the flooder got
    /// in, and with --server-pid the server's RSS and CPU.
    Flood {
        /// Healthy clients
        #[arg(long, default_value_t = 50)]
        healthy: usize,
        /// Round trips per second of each healthy client (at least 1, so no heartbeats are needed)
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// A round trip not answered within this many ms is lost
        #[arg(long, default_value_t = 2000)]
        request_timeout_ms: u64,
        /// Seconds before the flood
        #[arg(long, default_value_t = 5.0)]
        before: f64,
        /// Seconds of flooding
        #[arg(long, default_value_t = 10.0)]
        during: f64,
        /// Seconds after the flood (the flooder has disconnected)
        #[arg(long, default_value_t = 5.0)]
        after: f64,
        /// The flooder reads and counts its replies; without it, it never reads
        #[arg(long)]
        flooder_reads: bool,
        /// The flooder's topic; healthy client i joins `<topic>-<i>`
        #[arg(long, default_value = "room:flood")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// H healthy subscribers get `shout`s R times a second before, during and after
    /// waves of K connections that connect, join and die abruptly (RST, FIN mid-frame,
    /// RST mid-push); reports the healthy latency per phase, and with --server-pid the
    /// server's open descriptors and RSS before and after the churn.
    Churn {
        /// Healthy subscribers
        #[arg(long, default_value_t = 100)]
        healthy: usize,
        /// Shouts per second to the healthy subscribers
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Connections per wave
        #[arg(long, default_value_t = 2000)]
        wave: usize,
        /// Seconds before the churn
        #[arg(long, default_value_t = 5.0)]
        before: f64,
        /// Seconds of churn
        #[arg(long, default_value_t = 20.0)]
        during: f64,
        /// Seconds after the churn
        #[arg(long, default_value_t = 5.0)]
        after: f64,
        /// The healthy subscribers' topic; the churning connections join `<topic>-dying`
        #[arg(long, default_value = "room:churn")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// N members tracked in one topic (`"track": true`, key = user_id); then a churn of R
    /// joins and R leaves per second for S seconds (p99 diff latency), then J more join
    /// within B seconds: frames, bytes, server CPU and time until every member's list is
    /// complete.
    Presence {
        #[arg(long, default_value_t = 10_000)]
        members: usize,
        /// Clients joining in the burst
        #[arg(long, default_value_t = 1000)]
        joiners: usize,
        /// Seconds the burst's joins are spread over
        #[arg(long, default_value_t = 1.0)]
        burst_s: f64,
        /// Joins and leaves per second of the churn (0: no churn)
        #[arg(long, default_value_t = 50.0)]
        churn_rate: f64,
        /// Seconds of churn
        #[arg(long, default_value_t = 10.0)]
        churn_s: f64,
        #[arg(long, default_value = "room:presence")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// Tiny sizes of every scenario in sequence (a few seconds); exits non-zero if
    /// anything is lost, out of order or failed. No timing is judged.
    Smoke {
        /// Skip the presence scenario (a server without the conformance app's presence)
        #[arg(long)]
        no_presence: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Internal: a worker process of --processes K.
    #[command(name = "__worker", hide = true)]
    Worker { spec: String },
}

#[derive(Args, Clone, Debug)]
struct Common {
    /// WebSocket endpoint (vsn=2.0.0 is added to the query)
    #[arg(long, default_value = "ws://127.0.0.1:4001/socket/websocket")]
    url: String,
    /// For a wss:// URL: trust the server certificates this PEM file's CAs signed
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<std::path::PathBuf>,
    /// For a wss:// URL: accept any server certificate (a bench tool's shortcut)
    #[arg(long)]
    insecure: bool,
    /// Channel serializer version; only 2.0.0 is spoken
    #[arg(long, default_value = "2.0.0")]
    vsn: String,
    /// Seconds each phase (setup, delivery, ...) may take before the run fails
    /// [default: 120; smoke: 15]
    #[arg(long)]
    timeout: Option<f64>,
    /// Split the clients across this many worker processes (the sender stays in this one)
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Server process id: report its CPU time (and for connect its RSS) from /proc,
    /// counting the process and its descendants
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections being opened at once (split across processes)
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Connect every client from the default source address instead of spreading them
    /// over 127.0.0.2-127.0.0.254
    #[arg(long)]
    no_spread: bool,
    /// No progress on stderr
    #[arg(long, short)]
    quiet: bool,
}

impl Common {
    fn opts(&self, default_timeout: f64) -> Result<Opts, String> {
        if self.vsn != "2.0.0" {
            return Err(format!("--vsn {}: only 2.0.0 is supported", self.vsn));
        }
        let tls = match (&self.ca, self.insecure) {
            (Some(ca), _) => Some(ws::Trust::Ca(ca.clone())),
            (None, true) => Some(ws::Trust::Insecure),
            (None, false) => None,
        };
        // Checks the URL and the trust together (a wss:// URL needs one).
        ws::WsUrl::parse(&self.url, tls.as_ref())?;
        let t = self.timeout.unwrap_or(default_timeout);
        if !scenarios::positive(t) {
            return Err("--timeout must be positive".into());
        }
        if self.processes == 0 || self.processes > 64 {
            return Err("--processes must be 1..64".into());
        }
        Ok(Opts {
            url: self.url.clone(),
            tls,
            timeout: Duration::from_secs_f64(t),
            processes: self.processes,
            server_pid: self.server_pid,
            concurrency: self.concurrency.max(1),
            spread: !self.no_spread,
        })
    }
}

async fn run(cmd: Cmd) -> Result<Value, String> {
    match cmd {
        Cmd::Fanout { subscribers, broadcasts, body_size, topic, settle_ms, common } => {
            let ui = Ui::new(common.quiet);
            let settle = std::time::Duration::from_millis(settle_ms);
            scenarios::fanout(&common.opts(120.0)?, subscribers, broadcasts, body_size, &topic, settle, &ui).await
        }
        Cmd::Latency { subscribers, rate, duration, body_size, topic, common } => {
            let ui = Ui::new(common.quiet);
            scenarios::latency(&common.opts(120.0)?, subscribers, rate, duration, body_size, &topic, &ui).await
        }
        Cmd::Echo { clients, duration, body_size, common } => {
            let ui = Ui::new(common.quiet);
            scenarios::echo(&common.opts(120.0)?, clients, duration, body_size, &ui).await
        }
        Cmd::Connect { clients, shared_topic, topic, hold_ms, common } => {
            let ui = Ui::new(common.quiet);
            scenarios::connect(&common.opts(120.0)?, clients, &topic, shared_topic, hold_ms, &ui).await
        }
        Cmd::Flood { healthy, rate, request_timeout_ms, before, during, after, flooder_reads, topic, common } => {
            let ui = Ui::new(common.quiet);
            let request_timeout = Duration::from_millis(request_timeout_ms);
            let plan = scenarios::FloodPlan { healthy, rate, request_timeout, before, during, after, flooder_reads, topic };
            scenarios::flood(&common.opts(120.0)?, &plan, &ui).await
        }
        Cmd::Presence { members, joiners, burst_s, churn_rate, churn_s, topic, common } => {
            let ui = Ui::new(common.quiet);
            let plan = presence::PresencePlan { members, joiners, burst_s, churn_rate, churn_s, topic };
            presence::presence(&common.opts(300.0)?, &plan, &ui).await
        }
        Cmd::Churn { healthy, rate, wave, before, during, after, topic, common } => {
            let ui = Ui::new(common.quiet);
            let plan = churn::ChurnPlan { healthy, rate, wave, before, during, after, topic };
            churn::churn(&common.opts(120.0)?, &plan, &ui).await
        }
        Cmd::Smoke { no_presence, common } => {
            let ui = Ui::new(common.quiet);
            Ok(scenarios::smoke(&common.opts(15.0)?, !no_presence, &ui).await)
        }
        Cmd::Worker { .. } => unreachable!("handled in main"),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Worker { spec } = &cli.cmd {
        std::process::exit(workers::worker_main(spec));
    }
    sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, run(cli.cmd));
    // Leave the runtime without waiting for aborted connection tasks.
    drop(local);
    drop(rt);
    match result {
        Ok(v) => {
            println!("{v}");
            let ok = v["ok"].as_bool().unwrap_or(false);
            if !ok {
                let why = v["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                eprintln!("fenix-loadgen: {} FAILED{why}", v["scenario"].as_str().unwrap_or("run"));
            }
            std::process::exit(if ok { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("fenix-loadgen: error: {e}");
            std::process::exit(2);
        }
    }
}
