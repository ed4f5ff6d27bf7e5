#!/usr/bin/env python3
"""The standard benchmark set: Fenix against the limit server, interleaved, two rounds.

Each server runs pinned to core 0 with one engine thread; the load generator runs
pinned to core 1. Every scenario of a round runs on both servers back to back, so the
two columns of a row were measured minutes apart on the same machine. The presence
scenario runs on Fenix only (the limit server has no presence), with the presence tick
at 20 ms and at 1 ms, and with the channel pushing `presence_state` as `list/1`'s map
rather than by `push_state/1`. Connect + join and fan-out also run on Fenix over TLS
(wss://, with a certificate made for the run), set against Fenix's plain runs of the
same round (the limit server has no TLS). Results go to
bench/results/<date>.md (a table with ratios, then the flood scenarios and the churn
against their acceptance targets) and bench/results/<date>.svg (a plot), and the raw JSON lines to
bench/results/<date>.jsonl.

    python3 bench/run.py            # the standard set (several minutes)
    python3 bench/run.py --quick    # small sizes, to try the harness
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "target/release/fenix-loadgen"
LIMIT = ROOT / "target/release/fenix-limit"
SERVER_CORE, LOADGEN_CORE = "0", "1"


class Server:
    """A benchmarked server process, pinned to SERVER_CORE. With `tls` (Fenix only), the
    conformance app also listens for HTTPS, with a certificate made for the run, and the
    load generator connects there (`target()`)."""

    def __init__(self, name, port, extra_env=None, tls=False):
        self.name, self.port = name, port
        env = dict(os.environ, PORT=str(port), **(extra_env or {}))
        self.tls_dir = None
        if tls:
            assert name == "fenix", "only Fenix serves TLS"
            self.tls_dir = tempfile.mkdtemp(prefix="fenix-bench-tls-")
            self.https_port = free_port()
            env.update(HTTPS_PORT=str(self.https_port), FENIX_TLS_DIR=self.tls_dir)
        if name == "fenix":
            env.update(MIX_ENV="test", FENIX_ENGINE_THREADS="1", ELIXIR_ERL_OPTIONS="+S 1:1 +SDcpu 1:1")
            cmd = ["mix", "fenix.conformance"]
        else:
            cmd = [str(LIMIT), "--threads", "1"]
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE] + cmd,
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True, preexec_fn=raise_nofile,
        )
        deadline = time.time() + 180
        for line in self.proc.stdout:
            if "listening on" in line:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not start")
        else:
            raise RuntimeError(f"{name} exited before listening")
        # Drain the rest of its output so it never blocks on a full pipe.
        subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
        self.pid = self.proc.pid

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/socket/websocket"

    def target(self):
        """The load generator's --url (wss:// for a TLS server, trusting the run's CA)."""
        if self.tls_dir is None:
            return ["--url", self.url]
        return ["--url", f"wss://127.0.0.1:{self.https_port}/socket/websocket", "--ca", os.path.join(self.tls_dir, "ca.pem")]

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadgen(args):
    """Runs one load generator scenario; returns its JSON result."""
    out = subprocess.run(
        ["taskset", "-c", LOADGEN_CORE, str(LOADGEN)] + [str(a) for a in args],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, preexec_fn=raise_nofile, timeout=900,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    # Exit 1 still prints the figures (something was lost or failed); exit 2 prints none.
    if not lines:
        return {"error": f"exit {out.returncode}", "scenario": args[0]}
    result = json.loads(lines[-1])
    if out.returncode != 0:
        result.setdefault("error", f"exit {out.returncode}")
    return result


def scenarios(quick):
    """(key, label, loadgen args without url/pid, figure, unit, better) for the standard set."""
    s = 10 if quick else 1
    return [
        ("fanout_100", "fan-out 100 x 1,000", ["fanout", "--subscribers", 100 // min(s, 10), "--broadcasts", 1000 // s, "--body-size", 64], "msgs_per_sec", "msg/s", "higher"),
        ("fanout_1k", "fan-out 1,000 x 1,000", ["fanout", "--subscribers", 1000 // s, "--broadcasts", 1000 // s, "--body-size", 64], "msgs_per_sec", "msg/s", "higher"),
        ("fanout_10k", "fan-out 10,000 x 100", ["fanout", "--subscribers", 10000 // s, "--broadcasts", 100, "--body-size", 64], "msgs_per_sec", "msg/s", "higher"),
        ("latency_100", "latency p99, 100 subs at 20/s", ["latency", "--subscribers", 100 // min(s, 10), "--rate", 20, "--duration", 10 // min(s, 5)], "p99_ms", "ms", "lower"),
        ("latency_1k", "latency p99, 1,000 subs at 20/s", ["latency", "--subscribers", 1000 // s, "--rate", 20, "--duration", 10 // min(s, 5)], "p99_ms", "ms", "lower"),
        ("echo_100", "echo round trips, 100 clients", ["echo", "--clients", 100 // s, "--duration", 10 // min(s, 5)], "round_trips_per_sec", "req/s", "higher"),
        ("connect_10k", "connect + join, 10,000 clients", ["connect", "--clients", 10000 // s, "--hold-ms", 2000], "joins_per_sec", "joins/s", "higher"),
    ]


def flood_scenarios(quick):
    """(key, label, loadgen args without url/pid): one flooder beside healthy echo clients,
    the issue's size (50 healthy at 20/s, 10 s of flooding), in both flooder modes."""
    size = ["--healthy", 10, "--before", 2, "--during", 3, "--after", 2] if quick else \
        ["--healthy", 50, "--before", 5, "--during", 10, "--after", 5]
    args = ["flood", "--rate", 20] + size
    return [
        ("flood_never_reads", "flood, the flooder never reads", args),
        ("flood_reads", "flood, the flooder reads its replies", args + ["--flooder-reads"]),
    ]


def churn_scenarios(quick):
    """(key, label, loadgen args without url/pid): waves of connections that join and die
    abruptly (RST, FIN mid-frame, RST mid-push) beside healthy subscribers of a paced
    `shout`, the issue's size (waves of 2,000 for 20 s, 100 healthy at 20/s)."""
    size = ["--healthy", 20, "--wave", 200, "--before", 2, "--during", 3, "--after", 2] if quick else \
        ["--healthy", 100, "--wave", 2000, "--before", 5, "--during", 20, "--after", 5]
    return [("churn", "churn, waves of abrupt deaths", ["churn", "--rate", 20] + size)]


def presence_scenarios(quick):
    """(key, label, loadgen args without url/pid, server env): Fenix only (the limit
    server has no presence): the default 20 ms tick against 1 ms (diffs hardly
    coalesced), and `presence_state` pushed by `push_state/1` (the engine encodes it)
    against `push(socket, "presence_state", list(socket))` (a map of every member made
    in the channel's process first)."""
    size = ["--members", 1000, "--joiners", 100, "--churn-s", 3] if quick else \
        ["--members", 10000, "--joiners", 1000, "--churn-s", 10]
    # 20 joins at a time: a join into the big topic by list/1 costs the server ~20 ms, and
    # 100 at once kept some connects waiting past their 10 s connect_timeout (answered 500).
    args = ["presence", "--burst-s", 1, "--churn-rate", 50, "--timeout", 900, "--concurrency", 20] + size
    return [
        ("presence_tick20", "presence, 20 ms tick (coalesced)", args, {"FENIX_PRESENCE_TICK_MS": "20"}),
        ("presence_tick1", "presence, 1 ms tick (not coalesced)", args, {"FENIX_PRESENCE_TICK_MS": "1"}),
        ("presence_list", "presence, 20 ms tick, list/1 pushed", args,
         {"FENIX_PRESENCE_TICK_MS": "20", "FENIX_PRESENCE_STATE": "list"}),
    ]


def tls_scenarios(quick):
    """(key, label, loadgen args, the plain scenario's key): Fenix over wss://, with the
    arguments of its plain twin of `scenarios()`."""
    plain = {key: (label, args) for key, label, args, *_ in scenarios(quick)}
    return [
        (f"tls_{key}", f"{plain[key][0]} over TLS", plain[key][1], key) for key in ("connect_10k", "fanout_1k")
    ]


# (field, label, unit) of the TLS rows: what a connection and a delivery cost.
TLS_FIGURES = {
    "connect_10k": [("joins_per_sec", "joins/s"), ("ns_per_join", "ns CPU"), ("bytes_per_conn", "B/conn")],
    "fanout_1k": [("msgs_per_sec", "msg/s"), ("ns_per_delivery", "ns CPU")],
}


# (field, label, unit) of the presence rows.
PRESENCE_FIGURES = [
    ("burst_complete_ms", "burst: every list complete", "ms"),
    ("burst_frames", "burst: frames sent", "frames"),
    ("burst_bytes", "burst: bytes sent", "bytes"),
    ("burst_server_cpu_ns", "burst: server CPU", "ns"),
    ("churn_p99_ms", "churn: diff latency p99", "ms"),
    ("churn_p50_ms", "churn: diff latency p50", "ms"),
    ("churn_frames", "churn: frames sent", "frames"),
    ("churn_server_cpu_pct", "churn: server CPU", "%"),
    ("setup_s", "setup: members tracked, lists complete", "s"),
]


# The acceptance of the flood issue, for each flooder mode: (field, op, bound, shown as).
FLOOD_TARGETS = {
    "healthy_lost": ("<=", 0, "= 0"),
    "p99_ratio": ("<=", 2, "<= 2x"),
    "rss_growth": ("<", 50_000_000, "< 50 MB"),
}


# The acceptance of the churn issue: (field, op, bound, shown as).
CHURN_TARGETS = {
    "lost": ("<=", 0, "= 0"),
    "p99_ratio": ("<=", 3, "<= 3x"),
    "fds_left": ("<=", 0, "<= 0"),
}


TARGETS = {
    "fanout_1k": ("msgs_per_sec", ">=", 2_500_000, "ns_per_delivery", "<=", 150),
    "fanout_10k": ("msgs_per_sec", ">=", 2_000_000, "ns_per_delivery", "<=", 300),
    "latency_1k": ("p99_ms", "<=", 12),
    "echo_100": ("round_trips_per_sec", ">=", 60_000),
    "connect_10k": ("joins_per_sec", ">=", 10_000, "bytes_per_conn", "<=", 6_000),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    opts = parser.parse_args()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    results = []  # (round, server, key, result)
    every = [(key, label, args) for key, label, args, *_ in scenarios(opts.quick)] + flood_scenarios(opts.quick) + churn_scenarios(opts.quick)
    for rnd in range(1, opts.rounds + 1):
        for key, label, args in every:
            for name in ("fenix", "limit"):
                run_once(results, rnd, name, key, label, args)
        for key, label, args, _plain in tls_scenarios(opts.quick):
            run_once(results, rnd, "fenix", key, label, args, tls=True)
        # Once, not every round: the 10,000-member setup alone takes minutes.
        for key, label, args, env in presence_scenarios(opts.quick) if rnd == 1 else []:
            run_once(results, rnd, "fenix", key, label, args, env=env)["presence_env"] = env
    out_dir = ROOT / "bench/results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{stamp}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    write_svg(out_dir / f"{stamp}.svg", results)
    write_table(out_dir / f"{stamp}.md", results, opts, stamp)
    print(f"wrote bench/results/{stamp}.md", file=sys.stderr)


def run_once(results, rnd, name, key, label, args, env=None, tls=False):
    """Starts a fresh `name` server, runs one scenario against it and stops it; the
    result, tagged with its round, server and key, is added to `results` and returned."""
    server = Server(name, free_port(), env, tls=tls)
    try:
        print(f"round {rnd} {name:5} {label} ...", file=sys.stderr, flush=True)
        result = loadgen(args + server.target() + ["--server-pid", server.pid])
    finally:
        server.stop()
    result.update(round=rnd, server=name, key=key)
    results.append(result)
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def figure(results, rnd, server, key, field):
    for r in results:
        if r["round"] == rnd and r["server"] == server and r["key"] == key:
            return r.get(field)
    return None


def fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value < 100:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def header(columns):
    """A markdown table's header and separator lines."""
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def write_table(path, results, opts, stamp):
    rounds = range(1, opts.rounds + 1)
    lines = [
        f"# Benchmarks {stamp}",
        "",
        "Server pinned to core 0 (`taskset -c 0`, one engine thread; the BEAM with `+S 1`), "
        "load generator pinned to core 1. Fenix hosts the conformance app; the limit server "
        "is `bench/limit` (pure tokio, no BEAM). Ratio = Fenix / limit (for latency and CPU "
        "per message, lower is better).",
        "",
        *header(["scenario", "figure"] + [f"Fenix r{r}" for r in rounds] + [f"limit r{r}" for r in rounds] + ["ratio (mean)", "target", "met"]),
    ]
    for key, label, _args, field, unit, _better in scenarios(opts.quick):
        fields = [(field, unit)]
        extra = {"fanout_1k": "ns_per_delivery", "fanout_10k": "ns_per_delivery", "echo_100": "ns_per_round_trip", "connect_10k": "bytes_per_conn"}.get(key)
        if extra:
            fields.append((extra, {"ns_per_delivery": "ns CPU", "ns_per_round_trip": "ns CPU", "bytes_per_conn": "B/conn"}[extra]))
        for f, u in fields:
            fenix = [figure(results, r, "fenix", key, f) for r in rounds]
            limit = [figure(results, r, "limit", key, f) for r in rounds]
            ratio = mean_ratio(fenix, limit)
            target, met = target_of(key, f, fenix)
            lines.append(
                f"| {label} | {f} ({u}) | " + " | ".join(fmt(v) for v in fenix) + " | "
                + " | ".join(fmt(v) for v in limit) + f" | {ratio} | {target} | {met} |"
            )
    lines += flood_table(results, opts)
    lines += churn_table(results, opts)
    lines += tls_table(results, opts)
    lines += presence_table(results, opts)
    errors = [r for r in results if "error" in r or r.get("lost")]
    if errors:
        lines += ["", "Runs with errors or lost messages:", ""]
        lines += [f"- round {r['round']} {r['server']} {r['key']}: {r.get('error') or str(r.get('lost')) + ' lost'}" for r in errors]
    lines += ["", f"![throughput and p99 latency against subscribers]({path.stem}.svg)", ""]
    path.write_text("\n".join(lines))


def flood_table(results, opts):
    """The flood rows: each figure of both servers and rounds, the target, and whether
    Fenix met it in every round."""
    rounds = range(1, opts.rounds + 1)
    lines = [
        "",
        "## Flood",
        "",
        "Healthy clients doing paced `echo` round trips (a reply later than 2 s is lost) "
        "before, during and after one connection pushes `echo` as fast as TCP takes it. "
        "Acceptance: the healthy clients lose nothing, their p99 during the flood stays "
        "within 2x of their p99 before it, and the server's RSS grows by less than 50 MB "
        "(peak during or after the flood, against the sample when it starts), whether "
        "the flooder reads or not.",
        "",
        *header(["scenario", "figure"] + [f"Fenix r{r}" for r in rounds] + [f"limit r{r}" for r in rounds] + ["target", "met"]),
    ]
    rows = [
        ("healthy round trips lost", lambda f: fmt(f.get("healthy_lost")), "healthy_lost"),
        ("healthy p99 before -> during (ms)", p99_before_during, "p99_ratio"),
        ("server RSS growth (MB)", lambda f: fmt_mb(f.get("rss_growth")), "rss_growth"),
        ("flooder pushes written", lambda f: fmt(f.get("flooder_pushes")), None),
        ("flooder replies read", lambda f: fmt(f.get("flooder_replies")), None),
        ("flooder connection at the end", lambda f: str(f.get("flooder_end", "n/a")).split(":")[0], None),
    ]
    return lines + acceptance_rows(results, rounds, flood_scenarios(opts.quick), rows, FLOOD_TARGETS)


def acceptance_rows(results, rounds, scenarios, rows, targets):
    """For each scenario and each (name, show, field) of `rows`: the figure of both
    servers in every round, the target of `field` in `targets` and whether Fenix met it
    in every round."""
    lines = []
    for key, label, _args in scenarios:
        runs = {(server, r): flood_run(results, r, server, key) for server in ("fenix", "limit") for r in rounds}
        for name, show, field in rows:
            cells = [show(runs[("fenix", r)]) for r in rounds] + [show(runs[("limit", r)]) for r in rounds]
            target, met = judge(targets, field, [runs[("fenix", r)] for r in rounds])
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + f" | {target} | {met} |")
    return lines


def churn_table(results, opts):
    """The churn rows: each figure of both servers and rounds, the target, and whether
    Fenix met it in every round."""
    rounds = range(1, opts.rounds + 1)
    lines = [
        "",
        "## Churn",
        "",
        "Healthy subscribers of a paced `shout` (latency from the send stamp) before, during "
        "and after waves of connections that connect, join and die at once by a RST, a FIN "
        "in the middle of a frame, or a RST after half a push. Acceptance: the healthy "
        "subscribers lose nothing, their p99 during the churn stays within 3x of their p99 "
        "before it, and the server holds no more descriptors afterwards than when the churn "
        "started (both sampled with the healthy subscribers connected); its RSS is shown.",
        "",
        *header(["scenario", "figure"] + [f"Fenix r{r}" for r in rounds] + [f"limit r{r}" for r in rounds] + ["target", "met"]),
    ]
    rows = [
        ("connections churned (waves)", lambda f: f"{fmt(f.get('churned'))} ({fmt(f.get('waves'))})", None),
        ("healthy broadcasts lost", lambda f: fmt(f.get("lost")), "lost"),
        ("healthy p99 before -> during (ms)", p99_before_during, "p99_ratio"),
        ("healthy p99 after (ms)", lambda f: fmt(f.get("after_p99_ms")), None),
        ("server CPU per churned connection (us)", lambda f: fmt_us(f.get("server_ns_per_churned")), None),
        ("server descriptors before -> after", lambda f: f"{fmt(f.get('fds_before'))} -> {fmt(f.get('fds_after'))}", "fds_left"),
        ("server RSS before -> after (MB)", lambda f: f"{fmt_mb(f.get('rss_before'))} -> {fmt_mb(f.get('rss_after'))}", None),
    ]
    return lines + acceptance_rows(results, rounds, churn_scenarios(opts.quick), rows, CHURN_TARGETS)


def tls_table(results, opts):
    """The TLS rows: Fenix over wss:// against Fenix over ws:// in the same round."""
    rounds = range(1, opts.rounds + 1)
    lines = [
        "",
        "## TLS",
        "",
        "Fenix over wss:// (the engine's rustls, `ring`; the load generator's rustls with "
        "session resumption off, so every connection makes a full handshake) against the "
        "same scenario over ws:// in the same round. Ratio = TLS / plain.",
        "",
        *header(["scenario", "figure"] + [f"plain r{r}" for r in rounds] + [f"TLS r{r}" for r in rounds] + ["ratio (mean)"]),
    ]
    for key, label, _args, plain_key in tls_scenarios(opts.quick):
        for field, unit in TLS_FIGURES[plain_key]:
            plain = [figure(results, r, "fenix", plain_key, field) for r in rounds]
            tls = [figure(results, r, "fenix", key, field) for r in rounds]
            lines.append(
                f"| {label} | {field} ({unit}) | " + " | ".join(fmt(v) for v in plain) + " | "
                + " | ".join(fmt(v) for v in tls) + f" | {mean_ratio(tls, plain)} |"
            )
    return lines


def presence_table(results, opts):
    """The presence rows: each figure of both ticks (round 1 only; Fenix only)."""
    rounds = range(1, 2)
    runs = presence_scenarios(opts.quick)
    lines = [
        "",
        "## Presence",
        "",
        "One topic: members tracked with one meta each (`\"track\": true`, key = user_id), "
        "every member applying `presence_state` / `presence_diff` as the phoenix client does. "
        "Churn: 50 joins and 50 disconnects per second in the member topic, latency from a "
        "client's `phx_join` (or its dropped connection) to each member's diff. Burst: more "
        "clients join within one second; time from the first join to the last member's list "
        "complete, and the frames and bytes all members received meanwhile (each joiner's "
        "`presence_state` included). With coalescing: the default 20 ms tick; without: a "
        "1 ms tick (`FENIX_PRESENCE_TICK_MS=1`). Each joiner's `presence_state` is pushed by "
        "`Presence.push_state(socket)`, or in the last column by "
        "`push(socket, \"presence_state\", Presence.list(socket))`. "
        "Fenix only: the limit server has no presence.",
        "",
        "| figure | " + " | ".join(f"{label} r{r}" for _k, label, _a, _e in runs for r in rounds) + " |",
        "|---" * (1 + len(runs) * len(rounds)) + "|",
    ]
    for field, name, unit in PRESENCE_FIGURES:
        cells = [fmt(figure(results, r, "fenix", key, field)) for key, _l, _a, _e in runs for r in rounds]
        lines.append(f"| {name} ({unit}) | " + " | ".join(cells) + " |")
    return lines


def flood_run(results, rnd, server, key):
    for r in results:
        if r["round"] == rnd and r["server"] == server and r["key"] == key:
            return r
    return {}


def p99_before_during(f):
    before, during, ratio = f.get("before_p99_ms"), f.get("during_p99_ms"), f.get("p99_ratio")
    if before is None and during is None:
        return "n/a"
    return f"{fmt(before)} -> {fmt(during)}" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def fmt_us(ns):
    return "n/a" if ns is None else f"{ns / 1e3:,.1f}"


def fmt_mb(value):
    return "n/a" if value is None else f"{value / 1e6:,.1f}"


def judge(targets, field, fenix_runs):
    """The target of `field` in `targets` as shown, and whether every Fenix run met it."""
    if field is None:
        return "", ""
    op, bound, shown = targets[field]
    values = [f.get(field) for f in fenix_runs]
    # A run without the figure (no delivery during the flood or churn: no p99) fails.
    ok = all(v is not None and (v < bound if op == "<" else v <= bound) for v in values)
    return shown, "yes" if ok else "**no**"


def mean_ratio(fenix, limit):
    pairs = [(f, l) for f, l in zip(fenix, limit) if f and l]
    if not pairs:
        return "n/a"
    return f"{sum(f / l for f, l in pairs) / len(pairs):.2f}"


def target_of(key, field, values):
    spec = TARGETS.get(key, ())
    for i in range(0, len(spec), 3):
        if spec[i] == field:
            op, bound = spec[i + 1], spec[i + 2]
            got = [v for v in values if v is not None]
            if not got:
                return f"{op} {bound:,}", "n/a"
            ok = all((v >= bound) if op == ">=" else (v <= bound) for v in got)
            return f"{op} {bound:,}", "yes" if ok else "**no**"
    return "", ""


def compact(value):
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}"


def write_svg(path, results):
    """Two panels: fan-out msg/s and broadcast p99 latency against subscriber count,
    one line per server and round (round 1 dashed), so an outlier run shows as one."""
    import math

    panels = [
        ("fan-out throughput (msg/s)", [("fanout_100", 100), ("fanout_1k", 1000), ("fanout_10k", 10000)], "msgs_per_sec"),
        ("broadcast latency p99 (ms)", [("latency_100", 100), ("latency_1k", 1000)], "p99_ms"),
    ]
    width, height, pad = 460, 300, 60
    colors = {"fenix": "#e8590c", "limit": "#1c7ed6"}
    rounds = sorted({r["round"] for r in results})
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{2 * width}" height="{height}" fill="white"/>']
    for p, (title, points, field) in enumerate(panels):
        x0 = p * width
        series = {}
        for server in colors:
            for rnd in rounds:
                vals = [(subs, figure(results, rnd, server, key, field)) for key, subs in points]
                series[(server, rnd)] = [(s, v) for s, v in vals if v is not None]
        ymax = max([v for vals in series.values() for _, v in vals] + [1]) * 1.15
        xs = [subs for _, subs in points]
        span = max(math.log10(max(xs)) - math.log10(min(xs)), 1e-9)
        lx = lambda s: x0 + pad + (math.log10(s) - math.log10(min(xs))) / span * (width - 2 * pad)
        ly = lambda v: height - pad - v / ymax * (height - 2 * pad)
        parts.append(f'<text x="{x0 + width / 2}" y="20" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(f'<line x1="{x0 + pad}" y1="{height - pad}" x2="{x0 + width - pad}" y2="{height - pad}" stroke="#333"/>')
        parts.append(f'<line x1="{x0 + pad}" y1="{pad}" x2="{x0 + pad}" y2="{height - pad}" stroke="#333"/>')
        for subs in xs:
            parts.append(f'<text x="{lx(subs)}" y="{height - pad + 15}" text-anchor="middle">{subs:,}</text>')
        parts.append(f'<text x="{x0 + width / 2}" y="{height - 20}" text-anchor="middle">subscribers</text>')
        for i in range(5):
            v = ymax * i / 4
            parts.append(f'<text x="{x0 + pad - 4}" y="{ly(v) + 4}" text-anchor="end">{compact(v)}</text>')
        for k, ((server, rnd), vals) in enumerate(series.items()):
            dash = ' stroke-dasharray="5,3"' if rnd == rounds[0] and len(rounds) > 1 else ""
            if vals:
                pts = " ".join(f"{lx(s):.1f},{ly(v):.1f}" for s, v in vals)
                parts.append(f'<polyline points="{pts}" fill="none" stroke="{colors[server]}" stroke-width="2"{dash}/>')
                parts += [f'<circle cx="{lx(s):.1f}" cy="{ly(v):.1f}" r="3" fill="{colors[server]}"/>' for s, v in vals]
            parts.append(f'<text x="{x0 + width - pad - 70}" y="{pad + 14 * k}" fill="{colors[server]}">{server} round {rnd}{" (dashed)" if dash else ""}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


if __name__ == "__main__":
    main()
