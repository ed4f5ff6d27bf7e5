// Supervision with real clients: the `phoenix` npm client (over `ws`) against a
// conformance app of the test's own (`mix fenix.conformance --control`), whose
// dispatcher and then whole endpoint supervisor are killed under live, joined
// connections. Every client must be closed with a code that makes it reconnect (1012),
// reconnect and rejoin by itself, and work as before: echo replies and broadcasts.
//
// Run: node --test test/js/supervision.test.mjs

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  eventually,
  TIMEOUT_MS,
  VSNS,
  collect,
  disconnectAll,
  makeSocket,
  pushAwait,
  startControlledConformance,
  uniqueTopic,
} from "./helpers.mjs";

const T = { timeout: 60_000 };
const CLIENTS = 4;
// Reconnect and rejoin at once: the test waits for them, not for the client's backoff.
const RETRY = { reconnectAfterMs: () => 50, rejoinAfterMs: () => 50 };

let server;

before(async () => {
  server = await startControlledConformance();
}, T);

after(async () => {
  await disconnectAll();
  await server?.stop();
});

/**
 * A client joined to its own topic and to the topic all clients share. Counts the
 * joins answered ok (the first and every rejoin) and records the close codes.
 */
function startClient(i, sharedTopic) {
  const vsn = VSNS[i % VSNS.length];
  const socket = makeSocket(server.wsUrl, { vsn, params: { user_id: `sup${i}` }, ...RETRY });
  const client = { i, vsn, socket, closeCodes: [], channels: [] };
  socket.onClose((event) => client.closeCodes.push(event.code));
  for (const topic of [uniqueTopic(`sup${i}`), sharedTopic]) {
    const channel = socket.channel(topic, {});
    const entry = { topic, channel, joins: 0, errors: [] };
    channel
      .join(TIMEOUT_MS)
      .receive("ok", () => (entry.joins += 1))
      .receive("error", (response) => entry.errors.push(response));
    client.channels.push(entry);
  }
  socket.connect();
  return client;
}

describe("killing parts of the tree under joined phoenix clients", () => {
  let clients;
  let sharedTopic;

  before(async () => {
    sharedTopic = uniqueTopic("shared");
    clients = Array.from({ length: CLIENTS }, (_, i) => startClient(i, sharedTopic));
    await allJoined(1);
  }, T);

  async function allJoined(times) {
    await eventually(`every channel joined ${times} time(s)`, () =>
      clients.every((c) => c.channels.every((ch) => ch.joins >= times)),
    );
    for (const c of clients) {
      for (const ch of c.channels) {
        assert.equal(ch.joins, times, `${c.vsn} client ${c.i} on ${ch.topic}`);
        assert.deepEqual(ch.errors, [], `${c.vsn} client ${c.i} on ${ch.topic}`);
      }
    }
  }

  async function allWork(round) {
    for (const c of clients) {
      for (const ch of c.channels) {
        const payload = { round, from: c.i };
        assert.deepEqual(await pushAwait(ch.channel, "echo", payload), { status: "ok", response: payload });
      }
    }
    // A broadcast on the shared topic reaches every client, the sender included.
    const shouts = clients.map((c) => collect(c.channels[1].channel, "shout"));
    clients[0].channels[1].channel.push("shout", { round });
    await Promise.all(shouts.map((s) => s.waitFor(1)));
    for (const s of shouts) {
      assert.deepEqual(s.items, [{ round }]);
      s.stop();
    }
  }

  it("before any kill, every channel works", T, async () => {
    await allWork(0);
  });

  /**
   * Runs `kill` (a control command) and checks that every client was closed with 1012,
   * then rejoined each channel once more (`joins` times in all) and works (`round`).
   * A reconnect that comes before the restarted server listens fails (1006) and is
   * retried by the client: that is allowed after the 1012, nothing else is.
   */
  async function killAndRecover(what, joins, round) {
    const marks = clients.map((c) => c.closeCodes.length);
    assert.equal(await server.command(`kill ${what}`, `killed ${what}`), `killed ${what}`);
    await eventually("every client closed", () => clients.every((c, k) => c.closeCodes.length > marks[k]));
    await allJoined(joins);
    clients.forEach((c, k) => {
      const [first, ...retries] = c.closeCodes.slice(marks[k]);
      assert.equal(first, 1012, `${c.vsn} client ${c.i}: closed with ${first}`);
      assert.ok(retries.every((code) => code === 1006), `${c.vsn} client ${c.i}: then ${retries}`);
    });
    await allWork(round);
  }

  it("a killed dispatcher: every client is closed with 1012, reconnects and rejoins", T, async () => {
    await killAndRecover("dispatcher", 2, 1);
  });

  it("a killed endpoint supervisor: every client is closed with 1012, reconnects and rejoins", T, async () => {
    await killAndRecover("endpoint", 3, 2);
  });
});
