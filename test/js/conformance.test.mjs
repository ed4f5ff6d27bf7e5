// Conformance tests: the real `phoenix` npm client (1.8.x, over `ws`) and raw WebSocket
// clients against the conformance app (`PORT=<port> mix fenix.conformance`), one test per
// row of shared/CONFORMANCE.md, over both serializers (vsn 1.0.0 and 2.0.0).
//
// Run: node --test test/js/        (or: npm test)
//   FENIX_CONFORMANCE_URL=http://127.0.0.1:4001  use a server that is already running
//   FENIX_SKIP_IDLE=1                            skip the 60 s idle-timeout test
//
// Two kinds of test per serializer:
//   - "phoenix client": what an application using phoenix.js observes (callbacks, replies);
//   - "wire": exact frames, written as literal JSON in the notation of
//     shared/vectors/phoenix_wire_frames.md (`>>` client->server, `<<` server->client).
//     Frames are written once as 2.0.0 arrays; the 1.0.0 run rewrites them into the
//     1.0.0 objects (`toV1` in helpers.mjs) and compares byte for byte. Where Phoenix 1.7
//     (the capture) and 1.8 differ, CONFORMANCE.md "Which Phoenix" wins (crash payload
//     {"reason":"channel_crash"}, disconnect close code 1001, 100-channel cap, stale
//     join_ref dropped, authToken).
//
// NOT YET COVERED (later milestones; these rows are deliberately absent):
//   - presence: join with "track": true (presence_state / presence_diff), `presence_update`;
//   - binary payloads (vsn 2.0.0 binary frames): `bin`, `shout_bin`;
//   - the long-poll transport (/socket/longpoll).

import { describe, it, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  TIMEOUT_MS,
  VSNS,
  RawClient,
  authProtocol,
  closeAllRaw,
  collect,
  connect,
  connectRefused,
  disconnectAll,
  join,
  joinTopic,
  nextEvent,
  pushAwait,
  rawUpgrade,
  runScript,
  sleep,
  startConformance,
  uniqueTopic,
  withTimeout,
} from "./helpers.mjs";

const T = { timeout: 30_000 };
const IDLE_MS = 60_000;

let server;
// A raw connection that joins a topic and then says nothing; checked by the last test.
let idle = null;

before(
  async () => {
    server = await startConformance();
    if (!process.env.FENIX_SKIP_IDLE) {
      const client = await RawClient.open(server.wsUrl, "/socket/websocket?vsn=2.0.0&user_id=idle", {
        label: "idle",
        track: false,
      });
      client.send('["1","1","room:idle","phx_join",{}]');
      const sentAt = Date.now();
      idle = { client, sentAt, closedAt: null };
      client.closed.promise.then(() => (idle.closedAt = Date.now()));
    }
  },
  { timeout: 130_000 },
);

afterEach(cleanup);

after(async () => {
  await cleanup();
  idle?.client.close();
  await server?.stop();
});

async function cleanup() {
  await disconnectAll();
  await closeAllRaw();
}

/** Resolves after one echo round trip on `channel`: everything sent to it before is in. */
async function sync(channel) {
  const r = await pushAwait(channel, "echo", { sync: true });
  assert.deepEqual(r, { status: "ok", response: { sync: true } });
}

/** Watches a push for any reply; `.replied` is the reply or null. */
function watchReply(push) {
  const w = { replied: null };
  push.receive("ok", (r) => (w.replied = { status: "ok", response: r }));
  push.receive("error", (r) => (w.replied = { status: "error", response: r }));
  return w;
}

const CRASH_PAYLOAD = { reason: "channel_crash" };

// -----------------------------------------------------------------------------------------
// The phoenix npm client
// -----------------------------------------------------------------------------------------

for (const vsn of VSNS) {
  describe(`phoenix client, vsn ${vsn}`, () => {
    const tag = vsn === "1.0.0" ? "c1" : "c2";
    const url = () => server.wsUrl;
    const as = (user_id, extra = {}) => ({ vsn, params: user_id == null ? {} : { user_id }, ...extra });

    describe("socket /socket", () => {
      it("connects with user_id (and the URL carries the vsn)", T, async () => {
        const socket = await connect(url(), as(`${tag}-alice`));
        assert.equal(socket.isConnected(), true);
        assert.ok(socket.endPointURL().includes(`vsn=${vsn}`), socket.endPointURL());
        const { response } = await joinTopic(socket, uniqueTopic(`${tag}-connect`));
        assert.equal(response.user_id, `${tag}-alice`);
      });

      it("token=deny is refused: the client reports an error and never opens", T, async () => {
        const err = await connectRefused(url(), { vsn, params: { user_id: `${tag}-denied`, token: "deny" } });
        assert.ok(err, "onError fired");
      });

      it("heartbeat: each gets an ok reply with an empty response", T, async () => {
        const socket = await connect(url(), as(`${tag}-hb`, { heartbeatIntervalMs: 200 }));
        const replies = [];
        socket.onMessage((msg) => {
          if (msg.topic === "phoenix") replies.push(msg);
        });
        // phoenix.js' own round trip: ping() sends a heartbeat and calls back on its reply.
        const rtt = await withTimeout(new Promise((resolve) => socket.ping(resolve)), TIMEOUT_MS, "ping");
        assert.equal(typeof rtt, "number");
        // Periodic heartbeats every 200 ms (a missing reply would make the client close
        // the connection after another 200 ms): several replies, still connected.
        await sleep(1_100);
        assert.ok(replies.length >= 4, `got ${replies.length} heartbeat replies`);
        for (const msg of replies) {
          assert.equal(msg.event, "phx_reply");
          assert.deepEqual(msg.payload, { response: {}, status: "ok" });
          assert.equal(typeof msg.ref, "string");
        }
        assert.equal(socket.isConnected(), true);
      });

      it("authToken: connects, the `phoenix` subprotocol is echoed", T, async () => {
        const socket = await connect(url(), as(`${tag}-auth`, { authToken: "secret" }));
        assert.equal(socket.conn.protocol, "phoenix");
        const { response } = await joinTopic(socket, uniqueTopic(`${tag}-auth`));
        assert.equal(response.user_id, `${tag}-auth`);
      });

      it('authToken "deny" is refused', T, async () => {
        const err = await connectRefused(url(), as(`${tag}-authdeny`, { authToken: "deny" }));
        assert.ok(err, "onError fired");
      });
    });

    describe("join room:*", () => {
      it('accepted: {"joined": topic, "user_id": user_id}', T, async () => {
        const socket = await connect(url(), as(`${tag}-joiner`));
        const topic = uniqueTopic(`${tag}-join`);
        const { channel, response } = await joinTopic(socket, topic);
        assert.deepEqual(response, { joined: topic, user_id: `${tag}-joiner` });
        assert.equal(channel.state, "joined");
      });

      it("without user_id: user_id is null", T, async () => {
        const socket = await connect(url(), as(null));
        const topic = uniqueTopic(`${tag}-anon`);
        const { response } = await joinTopic(socket, topic);
        assert.deepEqual(response, { joined: topic, user_id: null });
      });

      it('room:private is refused: {"reason": "unauthorized"}; the socket stays up', T, async () => {
        const socket = await connect(url(), as(`${tag}-priv`));
        await assert.rejects(join(socket.channel("room:private")), (err) => {
          assert.equal(err.status, "error");
          assert.deepEqual(err.response, { reason: "unauthorized" });
          return true;
        });
        await joinTopic(socket, uniqueTopic(`${tag}-after-priv`));
      });

      it('room:crash (raise in join/3): {"reason": "join crashed"}; the socket stays up', T, async () => {
        const socket = await connect(url(), as(`${tag}-jcrash`));
        await assert.rejects(join(socket.channel("room:crash")), (err) => {
          assert.equal(err.status, "error");
          assert.deepEqual(err.response, { reason: "join crashed" });
          return true;
        });
        assert.equal(socket.isConnected(), true);
        await joinTopic(socket, uniqueTopic(`${tag}-after-crash`));
      });
    });

    describe("events", () => {
      it("echo: reply ok with the payload", T, async () => {
        const socket = await connect(url(), as(`${tag}-echo`));
        const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-echo`));
        const payload = {
          hello: "world",
          n: 1,
          f: -2.5,
          yes: true,
          no: false,
          nothing: null,
          list: [1, "two", [3], { four: 4 }],
          nested: { deeper: { deepest: "ok" } },
          unicode: "héllo ✓ 日本 😀 \"quoted\" \\ \n\t",
          empty: {},
        };
        assert.deepEqual(await pushAwait(channel, "echo", payload), { status: "ok", response: payload });
        assert.deepEqual(await pushAwait(channel, "echo", {}), { status: "ok", response: {} });
      });

      it("error: reply error with the payload", T, async () => {
        const socket = await connect(url(), as(`${tag}-err`));
        const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-err`));
        assert.deepEqual(await pushAwait(channel, "error", { why: "because" }), {
          status: "error",
          response: { why: "because" },
        });
        // The channel is still there.
        await sync(channel);
      });

      it("shout: broadcast to every subscriber, sender included; no reply", T, async () => {
        const topic = uniqueTopic(`${tag}-shout`);
        const a = await joinTopic(await connect(url(), as(`${tag}-sa`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-sb`)), topic);
        const gotA = nextEvent(a.channel, "shout");
        const gotB = nextEvent(b.channel, "shout");
        const w = watchReply(a.channel.push("shout", { msg: "hi all" }));
        assert.deepEqual(await gotA, { msg: "hi all" });
        assert.deepEqual(await gotB, { msg: "hi all" });
        await sync(a.channel);
        assert.equal(w.replied, null, "shout must not be replied to");
      });

      it("an Elixir process subscribed to the topic gets the broadcasts a client gets, in the same order", T, async () => {
        const topic = uniqueTopic(`${tag}-pubsub`);
        const a = await joinTopic(await connect(url(), as(`${tag}-pa`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-pb`)), topic);
        assert.equal((await pushAwait(a.channel, "pubsub_watch", { topic })).status, "ok");
        const blasted = collect(a.channel, "blasted");
        await pushAwait(b.channel, "blast", { n: 50, body: "x" });
        await withTimeout(blasted.waitFor(50), TIMEOUT_MS, "50 blasted");
        const { response } = await pushAwait(a.channel, "pubsub_seen");
        const seen = response.seen.filter((s) => s.event === "blasted").map((s) => s.payload);
        assert.deepEqual(seen, blasted.items);
        blasted.stop();
      });

      if (vsn === "2.0.0") {
        // The bytes 0..255 and a few more: every byte value, through the binary frame kinds.
        const bytes = () => Uint8Array.from({ length: 300 }, (_, i) => i % 256);

        it("bin: an ArrayBuffer push is replied ok with the same bytes, as an ArrayBuffer", T, async () => {
          const socket = await connect(url(), as(`${tag}-bin`));
          const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-bin`));
          const { status, response } = await pushAwait(channel, "bin", bytes().buffer);
          assert.equal(status, "ok");
          assert.ok(response instanceof ArrayBuffer, `a binary reply, got ${typeof response}`);
          assert.deepEqual(new Uint8Array(response), bytes());
          // Text pushes still work on the same channel.
          assert.deepEqual(await pushAwait(channel, "echo", { after: "bin" }), { status: "ok", response: { after: "bin" } });
        });

        it("shout_bin: the bytes reach every subscriber as a binary `bin` broadcast", T, async () => {
          const topic = uniqueTopic(`${tag}-sbin`);
          const a = await joinTopic(await connect(url(), as(`${tag}-ba`)), topic);
          const b = await joinTopic(await connect(url(), as(`${tag}-bb`)), topic);
          const gotA = nextEvent(a.channel, "bin");
          const gotB = nextEvent(b.channel, "bin");
          a.channel.push("shout_bin", bytes().buffer);
          for (const got of [await gotA, await gotB]) {
            assert.ok(got instanceof ArrayBuffer, `a binary broadcast, got ${typeof got}`);
            assert.deepEqual(new Uint8Array(got), bytes());
          }
        });
      }

      it("shout_from: broadcast to everyone but the sender; reply ok {}", T, async () => {
        const topic = uniqueTopic(`${tag}-sfrom`);
        const a = await joinTopic(await connect(url(), as(`${tag}-fa`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-fb`)), topic);
        const shoutsA = collect(a.channel, "shout");
        const gotB = nextEvent(b.channel, "shout");
        assert.deepEqual(await pushAwait(a.channel, "shout_from", { msg: "not me" }), {
          status: "ok",
          response: {},
        });
        assert.deepEqual(await gotB, { msg: "not me" });
        await sync(a.channel);
        await sleep(100);
        assert.deepEqual(shoutsA.items, [], "the sender must not get its own shout_from");
      });

      it("push: event `pushed` with the payload to this client only; no reply", T, async () => {
        const topic = uniqueTopic(`${tag}-push`);
        const a = await joinTopic(await connect(url(), as(`${tag}-pa`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-pb`)), topic);
        const pushedB = collect(b.channel, "pushed");
        const gotA = nextEvent(a.channel, "pushed");
        const w = watchReply(a.channel.push("push", { only: "me" }));
        assert.deepEqual(await gotA, { only: "me" });
        await sync(a.channel);
        await sync(b.channel);
        await sleep(100);
        assert.equal(w.replied, null, "push must not be replied to");
        assert.deepEqual(pushedB.items, [], "`pushed` goes to the pusher only");
      });

      it("async: reply ok with the payload ~50 ms later, while the channel keeps serving", T, async () => {
        const socket = await connect(url(), as(`${tag}-async`));
        const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-async`));
        const order = [];
        const started = Date.now();
        const asyncReply = pushAwait(channel, "async", { later: true }).then((r) => {
          order.push("async");
          return { ...r, elapsed: Date.now() - started };
        });
        const echoReply = pushAwait(channel, "echo", { now: true }).then((r) => {
          order.push("echo");
          return r;
        });
        const [a, e] = await Promise.all([asyncReply, echoReply]);
        assert.deepEqual({ status: a.status, response: a.response }, { status: "ok", response: { later: true } });
        assert.deepEqual(e, { status: "ok", response: { now: true } });
        assert.ok(a.elapsed >= 45, `async reply after ${a.elapsed} ms, expected about 50 ms`);
        assert.ok(a.elapsed < 2_000, `async reply after ${a.elapsed} ms`);
        assert.deepEqual(order, ["echo", "async"], "the reply comes from another process");
      });

      it("crash: phx_error (channel.onError); another channel on the socket keeps working", T, async () => {
        const socket = await connect(url(), as(`${tag}-crash`));
        const crashy = await joinTopic(socket, uniqueTopic(`${tag}-crashy`));
        const other = await joinTopic(socket, uniqueTopic(`${tag}-survivor`));
        const errored = new Promise((resolve) => crashy.channel.onError(resolve));
        const w = watchReply(crashy.channel.push("crash", {}));
        assert.deepEqual(await withTimeout(errored, TIMEOUT_MS, "onError"), CRASH_PAYLOAD);
        assert.equal(crashy.channel.state, "errored");
        assert.equal(socket.isConnected(), true);
        assert.deepEqual(await pushAwait(other.channel, "echo", { still: "here" }), {
          status: "ok",
          response: { still: "here" },
        });
        assert.equal(w.replied, null);
      });

      it("stop: phx_close (onClose); the channel is gone, the socket stays", T, async () => {
        const socket = await connect(url(), as(`${tag}-stop`));
        const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-stop`));
        const other = await joinTopic(socket, uniqueTopic(`${tag}-stop-other`));
        const closed = new Promise((resolve) => channel.onClose(resolve));
        const errors = collect(channel, "phx_error");
        const w = watchReply(channel.push("stop", {}));
        assert.deepEqual(await withTimeout(closed, TIMEOUT_MS, "onClose"), {});
        assert.equal(channel.state, "closed");
        assert.ok(!socket.channels.includes(channel));
        await sync(other.channel);
        assert.deepEqual(errors.items, []);
        assert.equal(w.replied, null);
      });

      it("intercepted: each subscriber gets the payload with seen_by = its own user_id", T, async () => {
        const topic = uniqueTopic(`${tag}-icpt`);
        const a = await joinTopic(await connect(url(), as(`${tag}-ia`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-ib`)), topic);
        const c = await joinTopic(await connect(url(), as(null)), topic);
        const gotA = nextEvent(a.channel, "intercepted");
        const gotB = nextEvent(b.channel, "intercepted");
        const gotC = nextEvent(c.channel, "intercepted");
        a.channel.push("intercepted", { x: 1 });
        assert.deepEqual(await gotA, { x: 1, seen_by: `${tag}-ia` });
        assert.deepEqual(await gotB, { x: 1, seen_by: `${tag}-ib` });
        assert.deepEqual(await gotC, { x: 1, seen_by: null });
      });

      it("disconnect_me: every connection of that user closes (1001); others stay", T, async () => {
        const user = `${tag}-dc`;
        const topic = uniqueTopic(`${tag}-dc`);
        const s1 = await connect(url(), as(user));
        const s2 = await connect(url(), as(user));
        const s3 = await connect(url(), as(`${tag}-bystander`));
        const c1 = await joinTopic(s1, topic);
        await joinTopic(s2, topic);
        const c3 = await joinTopic(s3, topic);
        const closeOf = (s) => new Promise((resolve) => s.onClose((event) => resolve(event)));
        const closed1 = closeOf(s1);
        const closed2 = closeOf(s2);
        c1.channel.push("disconnect_me", {});
        const [e1, e2] = await withTimeout(Promise.all([closed1, closed2]), TIMEOUT_MS, "both closed");
        assert.equal(e1.code, 1001);
        assert.equal(e2.code, 1001);
        assert.equal(s3.isConnected(), true);
        await sync(c3.channel);
      });

      it("blast: N `blasted` broadcasts in order (i = 1..N), all before the reply {n: N}", T, async () => {
        const N = 200;
        const topic = uniqueTopic(`${tag}-blast`);
        const a = await joinTopic(await connect(url(), as(`${tag}-ba`)), topic);
        const b = await joinTopic(await connect(url(), as(`${tag}-bb`)), topic);
        const atA = collect(a.channel, "blasted");
        const atB = collect(b.channel, "blasted");
        const expected = Array.from({ length: N }, (_, k) => ({ i: k + 1, body: "b" }));
        const reply = await pushAwait(a.channel, "blast", { n: N, body: "b" });
        assert.deepEqual(reply, { status: "ok", response: { n: N } });
        assert.deepEqual(atA.items, expected, "the sender has all N, in order, before the reply");
        assert.deepEqual(await atB.waitFor(N), expected);
        await sync(b.channel);
        assert.equal(atB.items.length, N);
      });

      it("leave (phx_leave): reply ok, then the server's phx_close", T, async () => {
        const socket = await connect(url(), as(`${tag}-leave`));
        const topic = uniqueTopic(`${tag}-leave`);
        const { channel } = await joinTopic(socket, topic);
        const frames = [];
        socket.onMessage((msg) => {
          if (msg.topic === topic) frames.push(msg);
        });
        const closedFrame = new Promise((resolve) =>
          socket.onMessage((msg) => msg.topic === topic && msg.event === "phx_close" && resolve(msg)),
        );
        const left = await new Promise((resolve, reject) =>
          channel
            .leave()
            .receive("ok", (r) => resolve(r))
            .receive("timeout", () => reject(new Error("leave timed out"))),
        );
        assert.deepEqual(left, {});
        const close = await withTimeout(closedFrame, TIMEOUT_MS, "phx_close after leave");
        assert.deepEqual(close.payload, {});
        assert.deepEqual(
          frames.map((m) => m.event),
          ["phx_reply", "phx_close"],
        );
        assert.equal(channel.state, "closed");
      });

      it("unknown event: the channel crashes (phx_error)", T, async () => {
        const socket = await connect(url(), as(`${tag}-unknown`));
        const { channel } = await joinTopic(socket, uniqueTopic(`${tag}-unknown`));
        const other = await joinTopic(socket, uniqueTopic(`${tag}-unknown-other`));
        const errored = new Promise((resolve) => channel.onError(resolve));
        const w = watchReply(channel.push("no_such_event", {}));
        assert.deepEqual(await withTimeout(errored, TIMEOUT_MS, "onError"), CRASH_PAYLOAD);
        await sync(other.channel);
        assert.equal(w.replied, null);
      });

      it("101st channel on one connection: {reason: too many channels joined}", T, async () => {
        const socket = await connect(url(), as(`${tag}-many`));
        const channels = [];
        for (let k = 1; k <= 100; k++) {
          channels.push((await joinTopic(socket, `room:${tag}-many-${k}`)).channel);
        }
        await assert.rejects(join(socket.channel(`room:${tag}-many-101`)), (err) => {
          assert.equal(err.status, "error");
          assert.deepEqual(err.response, { reason: "too many channels joined" });
          return true;
        });
        await sync(channels[99]);
      });
    });
  });
}

// -----------------------------------------------------------------------------------------
// Exact frames (raw WebSocket)
// -----------------------------------------------------------------------------------------

for (const vsn of VSNS) {
  const w = vsn === "1.0.0" ? "w1" : "w2";
  describe(`wire, vsn ${vsn}`, () => {
    const script = (text) => runScript(server.wsUrl, vsn, text);

    describe("socket /socket", () => {
      it("accepted upgrade: 101, no subprotocol header when none was asked for", T, async () => {
        const res = await rawUpgrade(server.url, `/socket/websocket?vsn=${vsn}&user_id=${w}-up`);
        assert.equal(res.statusCode, 101);
        assert.equal(res.upgraded, true);
        assert.equal(res.headers["sec-websocket-protocol"], undefined);
      });

      it("a vsn no serializer speaks (3.0.0, 2.1.0, garbage) is answered HTTP 403, as Phoenix", T, async () => {
        for (const bad of ["3.0.0", "2.1.0", "garbage"]) {
          const res = await rawUpgrade(server.url, `/socket/websocket?vsn=${bad}&user_id=${w}-v`);
          assert.equal(res.statusCode, 403, `vsn=${bad}`);
          assert.equal(res.upgraded, false);
        }
      });

      it("token=deny: the upgrade is answered HTTP 403", T, async () => {
        const res = await rawUpgrade(server.url, `/socket/websocket?vsn=${vsn}&user_id=${w}-d&token=deny`);
        assert.equal(res.statusCode, 403);
        assert.equal(res.upgraded, false);
        // The same through a WebSocket client.
        await assert.rejects(
          RawClient.open(server.wsUrl, `/socket/websocket?vsn=${vsn}&token=deny`),
          (err) => err.statusCode === 403,
        );
      });

      it("any origin is accepted", T, async () => {
        const c = await RawClient.open(server.wsUrl, `/socket/websocket?vsn=${vsn}&user_id=${w}-origin`, {
          headers: { Origin: "http://elsewhere.example" },
        });
        assert.equal(c.ws.readyState, 1);
      });

      it("authToken in Sec-WebSocket-Protocol: accepted, `phoenix` echoed", T, async () => {
        const c = await RawClient.open(server.wsUrl, `/socket/websocket?vsn=${vsn}&user_id=${w}-tok`, {
          protocols: ["phoenix", authProtocol("secret")],
        });
        assert.equal(c.protocol, "phoenix");
        assert.equal(c.upgradeHeaders["sec-websocket-protocol"], "phoenix");
      });

      it('authToken "deny": the upgrade is answered HTTP 403', T, async () => {
        await assert.rejects(
          RawClient.open(server.wsUrl, `/socket/websocket?vsn=${vsn}&user_id=${w}-tokdeny`, {
            protocols: ["phoenix", authProtocol("deny")],
          }),
          (err) => err.statusCode === 403,
        );
        const res = await rawUpgrade(server.url, `/socket/websocket?vsn=${vsn}`, {
          "Sec-WebSocket-Protocol": `phoenix, ${authProtocol("deny")}`,
        });
        assert.equal(res.statusCode, 403);
      });

      it("heartbeat", T, () =>
        script(`
          .. open ?user_id=${w}-hb
          >> [null,"4","phoenix","heartbeat",{}]
          << [null,"4","phoenix","phx_reply",{"response":{},"status":"ok"}]
        `),
      );
    });

    describe("join", () => {
      it("accepted, with user_id", T, () =>
        script(`
          .. open ?user_id=${w}-u1
          >> ["3","3","room:${w}-lobby","phx_join",{}]
          << ["3","3","room:${w}-lobby","phx_reply",{"response":{"joined":"room:${w}-lobby","user_id":"${w}-u1"},"status":"ok"}]
        `),
      );

      it("accepted, no user_id: user_id null", T, () =>
        script(`
          .. open
          >> ["1","1","room:${w}-x","phx_join",{}]
          << ["1","1","room:${w}-x","phx_reply",{"response":{"joined":"room:${w}-x","user_id":null},"status":"ok"}]
        `),
      );

      it("room:private: unauthorized", T, () =>
        script(`
          .. open ?user_id=${w}-u1
          >> ["37","37","room:private","phx_join",{}]
          << ["37","37","room:private","phx_reply",{"response":{"reason":"unauthorized"},"status":"error"}]
        `),
      );

      it("room:crash: join crashed", T, () =>
        script(`
          .. open ?user_id=${w}-u1
          >> ["40","40","room:crash","phx_join",{}]
          << ["40","40","room:crash","phx_reply",{"response":{"reason":"join crashed"},"status":"error"}]
        `),
      );

      it("duplicate join: the new reply first, then phx_close for the old join_ref", T, () =>
        script(`
          .. open ?user_id=${w}-dup
          >> ["1","1","room:${w}-dup","phx_join",{}]
          << ["1","1","room:${w}-dup","phx_reply",{"response":{"joined":"room:${w}-dup","user_id":"${w}-dup"},"status":"ok"}]
          >> ["2","2","room:${w}-dup","phx_join",{}]
          << ["2","2","room:${w}-dup","phx_reply",{"response":{"joined":"room:${w}-dup","user_id":"${w}-dup"},"status":"ok"}]
          << ["1","1","room:${w}-dup","phx_close",{}]
          >> ["2","3","room:${w}-dup","echo",{"after":"rejoin"}]
          << ["2","3","room:${w}-dup","phx_reply",{"response":{"after":"rejoin"},"status":"ok"}]
        `),
      );

      it("101st join on one connection: too many channels joined; a leave frees a slot", T, () => {
        const lines = [`.. open ?user_id=${w}-cap`];
        for (let k = 1; k <= 100; k++) {
          lines.push(`>> ["${k}","${k}","room:${w}-cap-${k}","phx_join",{}]`);
          lines.push(
            `<< ["${k}","${k}","room:${w}-cap-${k}","phx_reply",{"response":{"joined":"room:${w}-cap-${k}","user_id":"${w}-cap"},"status":"ok"}]`,
          );
        }
        lines.push(
          `>> ["101","101","room:${w}-cap-101","phx_join",{}]`,
          `<< ["101","101","room:${w}-cap-101","phx_reply",{"response":{"reason":"too many channels joined"},"status":"error"}]`,
          `>> ["1","102","room:${w}-cap-1","phx_leave",{}]`,
          `<< ["1","102","room:${w}-cap-1","phx_reply",{"response":{},"status":"ok"}]`,
          `<< ["1","1","room:${w}-cap-1","phx_close",{}]`,
          `>> ["103","103","room:${w}-cap-103","phx_join",{}]`,
          `<< ["103","103","room:${w}-cap-103","phx_reply",{"response":{"joined":"room:${w}-cap-103","user_id":"${w}-cap"},"status":"ok"}]`,
        );
        return script(lines.join("\n"));
      });
    });

    describe("join_ref and topic routing", () => {
      it("a push with a stale join_ref is dropped (no reply)", T, () =>
        script(`
          .. open ?user_id=${w}-stale
          >> ["1","1","room:${w}-stale","phx_join",{}]
          << ["1","1","room:${w}-stale","phx_reply",{"response":{"joined":"room:${w}-stale","user_id":"${w}-stale"},"status":"ok"}]
          >> ["2","2","room:${w}-stale","phx_join",{}]
          << ["2","2","room:${w}-stale","phx_reply",{"response":{"joined":"room:${w}-stale","user_id":"${w}-stale"},"status":"ok"}]
          << ["1","1","room:${w}-stale","phx_close",{}]
          # join_ref "1" is stale: dropped. The next frame must be the reply to ref "5".
          >> ["1","4","room:${w}-stale","echo",{"stale":true}]
          >> ["2","5","room:${w}-stale","echo",{"fresh":true}]
          << ["2","5","room:${w}-stale","phx_reply",{"response":{"fresh":true},"status":"ok"}]
        `),
      );

      it("a push with a null join_ref is accepted (the reply carries the channel's join_ref)", T, () =>
        script(`
          .. open ?user_id=${w}-nulljr
          >> ["1","1","room:${w}-nulljr","phx_join",{}]
          << ["1","1","room:${w}-nulljr","phx_reply",{"response":{"joined":"room:${w}-nulljr","user_id":"${w}-nulljr"},"status":"ok"}]
          >> [null,"2","room:${w}-nulljr","echo",{"n":1}]
          << ["1","2","room:${w}-nulljr","phx_reply",{"response":{"n":1},"status":"ok"}]
        `),
      );

      it("a push to a topic never joined: unmatched topic", T, () =>
        script(`
          .. open ?user_id=${w}-never
          >> [null,"5","room:never","echo",{}]
          << [null,"5","room:never","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]
        `),
      );
    });

    describe("events", () => {
      const joined = (label, user, topic, jr = "1") => `
          [${label}] .. open ?user_id=${user}
          [${label}] >> ["${jr}","${jr}","${topic}","phx_join",{}]
          [${label}] << ["${jr}","${jr}","${topic}","phx_reply",{"response":{"joined":"${topic}","user_id":"${user}"},"status":"ok"}]`;

      it("echo", T, () =>
        script(`${joined("a", `${w}-e`, `room:${w}-echo`)}
          >> ["1","5","room:${w}-echo","echo",{"hello":"world","n":1}]
          << ["1","5","room:${w}-echo","phx_reply",{"response":{"hello":"world","n":1},"status":"ok"}]
        `),
      );

      it("error", T, () =>
        script(`${joined("a", `${w}-e`, `room:${w}-error`)}
          >> ["1","6","room:${w}-error","error",{"why":"because"}]
          << ["1","6","room:${w}-error","phx_reply",{"response":{"why":"because"},"status":"error"}]
        `),
      );

      it("shout: broadcast to both, sender included, no reply", T, () =>
        script(`${joined("a", `${w}-s1`, `room:${w}-shout`)}${joined("b", `${w}-s2`, `room:${w}-shout`)}
          [a] >> ["1","7","room:${w}-shout","shout",{"msg":"hi all"}]
          [a] << [null,null,"room:${w}-shout","shout",{"msg":"hi all"}]
          [b] << [null,null,"room:${w}-shout","shout",{"msg":"hi all"}]
        `),
      );

      it("shout_from: everyone but the sender; reply ok {}", T, () =>
        script(`${joined("a", `${w}-f1`, `room:${w}-sfrom`)}${joined("b", `${w}-f2`, `room:${w}-sfrom`)}
          [a] >> ["1","8","room:${w}-sfrom","shout_from",{"msg":"not me"}]
          [b] << [null,null,"room:${w}-sfrom","shout",{"msg":"not me"}]
          [a] << ["1","8","room:${w}-sfrom","phx_reply",{"response":{},"status":"ok"}]
        `),
      );

      it("push: `pushed` to this client only (join_ref set, ref null)", T, () =>
        script(`${joined("a", `${w}-p1`, `room:${w}-push`, "3")}${joined("b", `${w}-p2`, `room:${w}-push`)}
          [a] >> ["3","9","room:${w}-push","push",{"only":"me"}]
          [a] << ["3",null,"room:${w}-push","pushed",{"only":"me"}]
        `),
      );

      it("async: the reply comes later; an echo sent after it is answered first", T, () =>
        script(`${joined("a", `${w}-as`, `room:${w}-async`, "3")}
          >> ["3","10","room:${w}-async","async",{"later":true}]
          >> ["3","11","room:${w}-async","echo",{"now":true}]
          << ["3","11","room:${w}-async","phx_reply",{"response":{"now":true},"status":"ok"}]
          << ["3","10","room:${w}-async","phx_reply",{"response":{"later":true},"status":"ok"}]
        `),
      );

      it("intercepted: each subscriber gets seen_by = its own user_id", T, () =>
        script(`${joined("a", `${w}-i1`, `room:${w}-icpt`, "3")}${joined("b", `${w}-i2`, `room:${w}-icpt`, "5")}
          [a] >> ["3","11","room:${w}-icpt","intercepted",{"x":1}]
          [a] << ["3",null,"room:${w}-icpt","intercepted",{"seen_by":"${w}-i1","x":1}]
          [b] << ["5",null,"room:${w}-icpt","intercepted",{"seen_by":"${w}-i2","x":1}]
        `),
      );

      it("blast n=3: three broadcasts in order, then the reply", T, () =>
        script(`${joined("a", `${w}-b1`, `room:${w}-blast`, "3")}${joined("b", `${w}-b2`, `room:${w}-blast`)}
          [a] >> ["3","13","room:${w}-blast","blast",{"n":3,"body":"b"}]
          [a] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":1}]
          [a] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":2}]
          [a] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":3}]
          [a] << ["3","13","room:${w}-blast","phx_reply",{"response":{"n":3},"status":"ok"}]
          [b] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":1}]
          [b] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":2}]
          [b] << [null,null,"room:${w}-blast","blasted",{"body":"b","i":3}]
        `),
      );

      it("crash: phx_error with the join_ref in both slots; other topics keep working", T, () =>
        script(`${joined("a", `${w}-c`, `room:${w}-crashy`, "18")}
          >> ["21","21","room:${w}-calm","phx_join",{}]
          << ["21","21","room:${w}-calm","phx_reply",{"response":{"joined":"room:${w}-calm","user_id":"${w}-c"},"status":"ok"}]
          >> ["18","19","room:${w}-crashy","crash",{}]
          << ["18","18","room:${w}-crashy","phx_error",{"reason":"channel_crash"}]
          >> ["21","22","room:${w}-calm","echo",{"still":"here"}]
          << ["21","22","room:${w}-calm","phx_reply",{"response":{"still":"here"},"status":"ok"}]
          # The crashed channel is gone.
          >> ["18","23","room:${w}-crashy","echo",{}]
          << [null,"23","room:${w}-crashy","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]
        `),
      );

      it("unknown event: phx_error", T, () =>
        script(`${joined("a", `${w}-unk`, `room:${w}-unknown`, "24")}
          >> ["24","25","room:${w}-unknown","no_such_event",{}]
          << ["24","24","room:${w}-unknown","phx_error",{"reason":"channel_crash"}]
        `),
      );

      it("stop: phx_close with the join_ref in both slots, no reply", T, () =>
        script(`${joined("a", `${w}-st`, `room:${w}-stoppy`, "29")}
          >> ["29","30","room:${w}-stoppy","stop",{}]
          << ["29","29","room:${w}-stoppy","phx_close",{}]
        `),
      );

      it("leave (phx_leave): reply ok, then phx_close", T, () =>
        script(`${joined("a", `${w}-lv`, `room:${w}-leavy`, "33")}
          >> ["33","34","room:${w}-leavy","phx_leave",{}]
          << ["33","34","room:${w}-leavy","phx_reply",{"response":{},"status":"ok"}]
          << ["33","33","room:${w}-leavy","phx_close",{}]
        `),
      );

      it("disconnect_me: both connections of the user close with 1001, no frames first", T, () =>
        script(`${joined("a", `${w}-dc`, `room:${w}-dc`)}${joined("b", `${w}-dc`, `room:${w}-dc`)}${joined("c", `${w}-dc-other`, `room:${w}-dc`)}
          [a] >> ["1","2","room:${w}-dc","disconnect_me",{}]
          [a] .. closed 1001
          [b] .. closed 1001
          # c (another user) is still connected: checked by the heartbeat at the end.
        `),
      );
    });
  });
}

// -----------------------------------------------------------------------------------------
// Serializer selection and the literal 1.0.0 frames of the capture
// -----------------------------------------------------------------------------------------

describe("vsn 1.0.0 literal frames", () => {
  async function exchange(c, sent, expected) {
    c.send(sent);
    assert.equal(await c.next(), expected);
  }

  it("no vsn param means 1.0.0 (JSON objects), no user_id means user_id null", T, async () => {
    const c = await RawClient.open(server.wsUrl, "/socket/websocket?");
    await exchange(
      c,
      '{"topic":"room:novsn","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}',
      '{"event":"phx_reply","payload":{"response":{"joined":"room:novsn","user_id":null},"status":"ok"},"ref":"1","topic":"room:novsn"}',
    );
    await exchange(
      c,
      '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}',
      '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"2","topic":"phoenix"}',
    );
  });

  it("join, echo, shout, crash, stop as captured", T, async () => {
    const a = await RawClient.open(server.wsUrl, "/socket/websocket?user_id=v1a&vsn=1.0.0");
    const b = await RawClient.open(server.wsUrl, "/socket/websocket?user_id=v1b&vsn=1.0.0");
    await exchange(
      a,
      '{"topic":"room:v1","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}',
      '{"event":"phx_reply","payload":{"response":{"joined":"room:v1","user_id":"v1a"},"status":"ok"},"ref":"3","topic":"room:v1"}',
    );
    await exchange(
      b,
      '{"topic":"room:v1","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}',
      '{"event":"phx_reply","payload":{"response":{"joined":"room:v1","user_id":"v1b"},"status":"ok"},"ref":"3","topic":"room:v1"}',
    );
    await exchange(
      a,
      '{"topic":"room:v1","event":"echo","payload":{"hello":"v1"},"ref":"5","join_ref":"3"}',
      '{"event":"phx_reply","payload":{"response":{"hello":"v1"},"status":"ok"},"ref":"5","topic":"room:v1"}',
    );
    await exchange(
      a,
      '{"topic":"room:v1","event":"shout","payload":{"msg":"v1 shout"},"ref":"6","join_ref":"3"}',
      '{"event":"shout","payload":{"msg":"v1 shout"},"ref":null,"topic":"room:v1"}',
    );
    assert.equal(await b.next(), '{"event":"shout","payload":{"msg":"v1 shout"},"ref":null,"topic":"room:v1"}');
    await exchange(
      a,
      '{"topic":"room:v1crash","event":"phx_join","payload":{},"ref":"10","join_ref":"10"}',
      '{"event":"phx_reply","payload":{"response":{"joined":"room:v1crash","user_id":"v1a"},"status":"ok"},"ref":"10","topic":"room:v1crash"}',
    );
    await exchange(
      a,
      '{"topic":"room:v1crash","event":"crash","payload":{},"ref":"11","join_ref":"10"}',
      '{"event":"phx_error","payload":{"reason":"channel_crash"},"ref":"10","topic":"room:v1crash"}',
    );
    await exchange(
      a,
      '{"topic":"room:v1stop","event":"phx_join","payload":{},"ref":"15","join_ref":"15"}',
      '{"event":"phx_reply","payload":{"response":{"joined":"room:v1stop","user_id":"v1a"},"status":"ok"},"ref":"15","topic":"room:v1stop"}',
    );
    await exchange(
      a,
      '{"topic":"room:v1stop","event":"stop","payload":{},"ref":"16","join_ref":"15"}',
      '{"event":"phx_close","payload":{},"ref":"15","topic":"room:v1stop"}',
    );
    await exchange(
      b,
      '{"topic":"room:v1","event":"phx_leave","payload":{},"ref":"4","join_ref":"3"}',
      '{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"4","topic":"room:v1"}',
    );
    assert.equal(await b.next(), '{"event":"phx_close","payload":{},"ref":"3","topic":"room:v1"}');
  });
});

// -----------------------------------------------------------------------------------------
// Idle timeout (runs last: the idle connection was opened when the server came up)
// -----------------------------------------------------------------------------------------

describe("idle connections", () => {
  it(
    "a connection that sends nothing for 60 s is closed",
    { timeout: IDLE_MS + 30_000, skip: process.env.FENIX_SKIP_IDLE ? "FENIX_SKIP_IDLE is set" : false },
    async () => {
      // The join was answered; after that the connection said nothing.
      const reply = await idle.client.next();
      assert.equal(
        reply,
        '["1","1","room:idle","phx_reply",{"response":{"joined":"room:idle","user_id":"idle"},"status":"ok"}]',
      );
      const remaining = idle.sentAt + IDLE_MS + 15_000 - Date.now();
      await withTimeout(idle.client.closed.promise, Math.max(remaining, 1_000), "idle close");
      const after = idle.closedAt - idle.sentAt;
      assert.ok(after >= IDLE_MS - 1_000, `closed after ${after} ms, expected about ${IDLE_MS}`);
      assert.ok(after <= IDLE_MS + 15_000, `closed after ${after} ms, expected about ${IDLE_MS}`);
    },
  );
});
