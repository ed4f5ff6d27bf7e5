// A graceful drain with real clients: the `phoenix` npm client (over `ws`) joined to a
// conformance app whose endpoint is stopped as a shutdown stops it. Its connections are
// closed with 1012 a batch at a time (FENIX_DRAIN: 2 every 300 ms), the port is released
// at once, and every client reconnects and rejoins by itself to a second server started
// on the same port, where it works as before.
//
// Run: node --test test/js/drain.test.mjs

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import {
  eventually,
  TIMEOUT_MS,
  VSNS,
  disconnectAll,
  makeSocket,
  pushAwait,
  startControlledConformance,
  startServer,
  ROOT,
  uniqueTopic,
} from "./helpers.mjs";

const T = { timeout: 120_000 };
const CLIENTS = 6;
const BATCH = 2;
const INTERVAL_MS = 300;
const RETRY = { reconnectAfterMs: () => 50, rejoinAfterMs: () => 50 };

const servers = [];

after(async () => {
  await disconnectAll();
  for (const server of servers) await server.stop();
});

describe("draining an endpoint under joined phoenix clients", () => {
  it("closes them 1012 in batches; they reconnect and rejoin to the next server on the port", T, async () => {
    const first = await startControlledConformance({ env: { FENIX_DRAIN: `${BATCH}:${INTERVAL_MS}` } });
    servers.push(first);
    const topic = uniqueTopic("drain");

    const clients = Array.from({ length: CLIENTS }, (_, i) => {
      const socket = makeSocket(first.wsUrl, { vsn: VSNS[i % VSNS.length], params: { user_id: `drain${i}` }, ...RETRY });
      const client = { i, socket, closes: [], joins: 0 };
      socket.onClose((event) => client.closes.push({ code: event.code, at: Date.now() }));
      client.channel = socket.channel(topic, {});
      client.channel.join(TIMEOUT_MS).receive("ok", () => (client.joins += 1));
      socket.connect();
      return client;
    });
    await eventually("every client joined", () => clients.every((c) => c.joins === 1));

    assert.equal(await first.command("stop endpoint", "stopped endpoint", 30_000), "stopped endpoint");
    // Closed in batches: 1012 for every client, spread over at least one interval.
    await eventually("every client closed", () => clients.every((c) => c.closes.length > 0));
    for (const c of clients) assert.equal(c.closes[0]?.code, 1012, `client ${c.i}: ${JSON.stringify(c.closes)}`);
    const times = clients.map((c) => c.closes[0].at);
    assert.ok(Math.max(...times) - Math.min(...times) >= INTERVAL_MS * 0.9, `closes at ${times}`);
    assert.match(first.output(), /round 3 closed 2 connections, 0 left/);

    // The port was released at the start of the drain: a second server takes it.
    const second = await startServer({ name: "conformance (second)", command: "mix", args: ["fenix.conformance"], cwd: ROOT, port: first.port });
    servers.push(second);
    await eventually("every client rejoined", () => clients.every((c) => c.joins === 2));
    for (const c of clients) {
      const payload = { after: "drain", i: c.i };
      assert.deepEqual(await pushAwait(c.channel, "echo", payload), { status: "ok", response: payload });
    }
  });
});
