// Acceptance test of the flood issue, at small size, with real clients: while one
// connection floods the server with `echo` pushes, every other client keeps its service.
//
// Healthy clients: the real `phoenix` npm client (Socket over `ws`), HEALTHY of them, each
// joined to its own topic, each pushing `echo` RATE times a second on a fixed schedule (an
// open loop: a slow reply does not delay the next request), each push with phoenix's own
// push timeout of LOST_AFTER_MS: no `ok` reply by then and the round trip is lost.
//
// The flooder (flooder.mjs, in a process of its own): a raw `ws` connection joined to
// room:flood that sends `echo` frames as fast as its socket's buffer drains, for FLOOD_MS,
// in one of two modes:
//   - never reads: `ws.pause()` stops reading the socket, so its kernel receive buffer
//     fills; the test checks in /proc/net/tcp that it did (RX_FILLED);
//   - reads its replies, and counts them.
//
// Phases: BEFORE_MS of healthy traffic alone, FLOOD_MS beside the flooder, AFTER_MS with
// the flooder gone. Each mode gets a fresh server, so one cannot spoil the other, with
// one engine thread and one BEAM scheduler (SERVER_ENV, as `make bench` runs it): the
// issue is about a flooder that saturates the server, and on a machine with a spare core
// a server with a thread per core may simply keep up with this small flood.
//
// Asserted, for each mode (the acceptance):
//   - no healthy round trip is lost, in any phase;
//   - the server's RSS grows by less than 50 MB: the highest sample during or after the
//     flood minus the sample when it starts (VmRSS of the process listening on the
//     server's port: the BEAM);
//   - the healthy p99 during the flood <= max(2 x p99 before, p99 before + P99_FLOOR_MS).
//     The floor: at this size p99 before is about a millisecond, and on a shared 2-core
//     machine (the server, the healthy clients and the flooder's process on two cores)
//     scheduling noise of ten milliseconds would otherwise fail a healthy server. Without
//     flood protection the healthy p99 is about 2,000 ms: the floor leaves two orders of
//     magnitude between the two. In the "reads" mode (three busy threads and the test's
//     own on two cores) the p99 during the flood spreads over 7-43 ms from run to run, as
//     much for the engine of 2026-12-02's start as for later ones (16 runs of four
//     builds, interleaved), so the floor is 50 ms (40 times under the unprotected p99);
//     a run over the bound, and only that, is run once more on a fresh server
//     (LATENCY_ATTEMPTS). Loss and memory are never given a second run.
// No other timing is asserted. Against an engine without flood protection this test fails:
// the healthy round trips are lost and the RSS grows by hundreds of MB.
//
// Run: node --test test/js/flood.test.mjs   (after `MIX_ENV=test mix compile`)

import { describe, it, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import {
  TIMEOUT_MS,
  connect,
  disconnectAll,
  joinTopic,
  listenerPid,
  processName,
  rssBytes,
  sleep,
  startConformance,
  withTimeout,
} from "./helpers.mjs";

const HEALTHY = 10;
const RATE = 20; // round trips per second of each healthy client
const BEFORE_MS = 2_000;
const FLOOD_MS = 3_000;
const AFTER_MS = 1_000;
const LOST_AFTER_MS = 2_000;

const RSS_GROWTH_LIMIT = 50_000_000;
const P99_FLOOR_MS = 50;
const LATENCY_ATTEMPTS = 2;
const SAMPLE_MS = 100;

const FLOODER = path.join(path.dirname(fileURLToPath(import.meta.url)), "flooder.mjs");

/** Bytes the never-reading flooder's kernel receive queue must reach: proof that it filled. */
const RX_FILLED = 64 * 1024;
/** Pushes the flooder must get out (into its kernel send buffer at least): proof of a flood. */
const MIN_PUSHES = 1_000;

const SERVER_ENV = { FENIX_ENGINE_THREADS: "1", ELIXIR_ERL_OPTIONS: "+S 1:1 +SDcpu 1:1" };

const MODES = [
  { name: "never reads", reads: false },
  { name: "reads its replies", reads: true },
];

afterEach(() => disconnectAll());

describe("flood: one client floods, the others keep their service", () => {
  for (const mode of MODES) {
    it(`healthy clients lose nothing while a flooder that ${mode.name} pushes echo`, { timeout: 90_000 }, async (t) => {
      for (let attempt = 1; ; attempt++) {
        const server = await startConformance({ env: SERVER_ENV });
        try {
          const r = await run(server, mode);
          const report = describeRun(mode, r);
          for (const line of report.split("\n")) t.diagnostic(line);

          // The setup did what it claims.
          assert.ok(r.flooder.pushes >= MIN_PUSHES, `the flooder sent only ${r.flooder.pushes} pushes\n${report}`);
          if (!mode.reads) {
            assert.ok(
              r.flooder.maxRxQueue >= RX_FILLED,
              `the flooder's receive queue never filled (at most ${r.flooder.maxRxQueue} bytes)\n${report}`,
            );
          }
          assert.equal(total(r.phases, "wrong"), 0, `wrong or error replies to healthy clients\n${report}`);

          // The acceptance.
          assert.equal(total(r.phases, "lost"), 0, `healthy round trips were lost\n${report}`);
          const growth = r.rssPeak - r.rssBefore;
          assert.ok(growth < RSS_GROWTH_LIMIT, `the server's RSS grew by ${mb(growth)} (limit ${mb(RSS_GROWTH_LIMIT)})\n${report}`);
          const before = p99(r.phases.before.latencies);
          const during = p99(r.phases.during.latencies);
          const bound = Math.max(2 * before, before + P99_FLOOR_MS);
          if (during <= bound) return;
          const over = `healthy p99 ${ms(during)} during the flood, over ${ms(bound)}`;
          assert.ok(attempt < LATENCY_ATTEMPTS, `${over}\n${report}`);
          t.diagnostic(`attempt ${attempt}: ${over}; once more on a fresh server`);
        } finally {
          await disconnectAll();
          await server.stop();
        }
      }
    });
  }
});

/** Joins the healthy clients and the flooder, runs the three phases, returns what was seen. */
async function run(server, mode) {
  const pid = listenerPid(server.port);
  const channels = [];
  for (let i = 0; i < HEALTHY; i++) {
    const socket = await connect(server.wsUrl, { params: { user_id: `healthy-${i}` } });
    channels.push((await joinTopic(socket, `room:flood-${i}`)).channel);
  }
  const flooder = await openFlooder(server.wsUrl, mode.reads);

  const start = performance.now() + 50;
  const plan = {
    start,
    floodStart: start + BEFORE_MS,
    floodEnd: start + BEFORE_MS + FLOOD_MS,
    end: start + BEFORE_MS + FLOOD_MS + AFTER_MS,
  };
  const phases = { before: newPhase(), during: newPhase(), after: newPhase() };
  const healthy = channels.map((channel, i) => runHealthy(channel, (i * 1000) / RATE / HEALTHY, plan, phases));

  await sleep(plan.floodStart - performance.now());
  const rssBefore = rssBytes(pid);
  let rssPeak = rssBefore;
  const sampleRss = () => {
    try {
      rssPeak = Math.max(rssPeak, rssBytes(pid));
    } catch {
      // the server is gone: the healthy clients will tell
    }
  };
  const sampler = setInterval(sampleRss, SAMPLE_MS);
  try {
    const flood = await flooder.flood(plan.floodEnd);
    const lastReply = plan.end + LOST_AFTER_MS + TIMEOUT_MS;
    await withTimeout(Promise.all(healthy), lastReply - performance.now(), "healthy clients finishing");
    sampleRss();
    return { pid, plan, phases, flooder: flood, rssBefore, rssPeak };
  } finally {
    clearInterval(sampler);
    flooder.kill();
  }
}

function newPhase() {
  return { sent: 0, answered: 0, lost: 0, wrong: 0, latencies: [] };
}

function phaseOf(t, plan) {
  return t < plan.floodStart ? "before" : t < plan.floodEnd ? "during" : "after";
}

/**
 * One healthy client: pushes `echo` {k} every 1/RATE s from `plan.start + offsetMs` until
 * `plan.end`, each counted in the phase it was sent in. Resolves when every push has its
 * outcome (ok, error or phoenix's timeout).
 */
function runHealthy(channel, offsetMs, plan, phases) {
  return new Promise((resolve) => {
    const period = 1000 / RATE;
    let due = plan.start + offsetMs;
    let k = 0;
    let outstanding = 0;
    const settled = () => {
      outstanding -= 1;
      if (due >= plan.end && outstanding === 0) resolve();
    };
    const push = () => {
      k += 1;
      const mine = k;
      const sent = performance.now();
      const phase = phases[phaseOf(sent, plan)];
      phase.sent += 1;
      outstanding += 1;
      channel
        .push("echo", { k: mine }, LOST_AFTER_MS)
        .receive("ok", (response) => {
          if (response?.k === mine) {
            phase.answered += 1;
            phase.latencies.push(performance.now() - sent);
          } else {
            phase.wrong += 1;
          }
          settled();
        })
        .receive("error", () => {
          phase.wrong += 1;
          settled();
        })
        .receive("timeout", () => {
          phase.lost += 1;
          settled();
        });
    };
    const tick = () => {
      // Behind schedule (the event loop was held up), the missed pushes go at once.
      while (due <= performance.now() && due < plan.end) {
        push();
        due += period;
      }
      if (due < plan.end) setTimeout(tick, due - performance.now());
      else if (outstanding === 0) resolve();
    };
    setTimeout(tick, due - performance.now());
  });
}

/**
 * Starts the flooder in a process of its own (`flooder.mjs`), joined and waiting: its
 * framing and, when it reads, its half a million replies must not hold up the healthy
 * clients' event loop or take their CPU, or the test would measure itself rather than
 * the server.
 * `flood(until)` starts it and resolves with what it did.
 */
async function openFlooder(wsUrl, reads) {
  // Niced: on two cores the server, this process and the flooder contend, and the
  // flooder's leftover CPU still floods the server many times over.
  const child = spawn("nice", ["-n", "19", process.execPath, FLOODER, wsUrl, reads ? "reads" : "never-reads"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = readline.createInterface({ input: child.stdout });
  const next = () => withTimeout(once(lines, "line"), TIMEOUT_MS + FLOOD_MS, "flooder: output").then(([l]) => JSON.parse(l));
  const joined = await next();
  assert.deepEqual(joined, { joined: true });
  return {
    flood: async (until) => {
      child.stdin.write(`${JSON.stringify({ ms: until - performance.now() })}\n`);
      const result = await next();
      child.stdin.end();
      return result;
    },
    kill: () => child.kill(),
  };
}

function total(phases, field) {
  return Object.values(phases).reduce((n, p) => n + p[field], 0);
}

function p99(latencies) {
  if (latencies.length === 0) return null;
  const sorted = [...latencies].sort((a, b) => a - b);
  return sorted[Math.ceil(0.99 * sorted.length) - 1];
}

function ms(x) {
  return x === null ? "n/a" : `${x.toFixed(1)} ms`;
}

function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function describeRun(mode, r) {
  const f = r.flooder;
  const end = f.closed ? `closed by the server (code ${f.closed.code}) after ${ms(f.closed.afterMs)}` : "connected to the end";
  const phases = Object.entries(r.phases).map(
    ([name, p]) => `${name}: ${p.sent} sent, ${p.answered} answered, ${p.lost} lost, ${p.wrong} wrong, p99 ${ms(p99(p.latencies))}`,
  );
  return [
    `flooder (${mode.name}): ${f.pushes} pushes sent, ${f.replies} replies read, ` +
      `kernel receive queue up to ${f.maxRxQueue} bytes, ${end}`,
    `healthy (${HEALTHY} clients at ${RATE}/s): ${phases.join("; ")}`,
    `server (${processName(r.pid)} pid ${r.pid}): RSS ${mb(r.rssBefore)} when the flood starts, ` +
      `peak ${mb(r.rssPeak)} (+${mb(r.rssPeak - r.rssBefore)})`,
  ].join("\n");
}
