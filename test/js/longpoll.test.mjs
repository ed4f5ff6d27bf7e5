// The real `phoenix` client over its long-poll transport (`transport: LongPoll`; in Node
// the client polls with `fetch`), against the conformance app (`longpoll: true` on
// /socket): connect and refusal, join, push and reply, batches of pushes, broadcasts
// between a WebSocket client and a long-poll client both ways, presence, and the
// `disconnect` broadcast.
//
// Serializer 2.0.0 only: over long-poll phoenix.js always uses its built-in serializer
// (it ignores `encode`/`decode`), so 1.0.0 is tested over raw HTTP in
// native/fenix_core/tests/longpoll.rs. Binary payloads are left out too: phoenix.js
// cannot read a binary message over long-poll (it hands the base64 text the server
// sends, as Phoenix's does, to its JSON parser).
//
// Run: node --test test/js/longpoll.test.mjs   (after `MIX_ENV=test mix compile`)

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { LongPoll, Presence } from "phoenix";
import {
  TIMEOUT_MS,
  collect,
  connect,
  connectRefused,
  deferred,
  eventually,
  joinTopic,
  nextEvent,
  pushAwait,
  useConformance,
  uniqueTopic,
  withTimeout,
} from "./helpers.mjs";

const conformance = useConformance();

const longPoll = (vsn, params = {}) => connect(conformance.server.wsUrl, { vsn, params, transport: LongPoll });

{
  const vsn = "2.0.0";
  describe(`long-poll, vsn ${vsn}`, () => {
    it("connects over long-poll, joins, and gets replies to its pushes", async () => {
      const socket = await longPoll(vsn, { user_id: "lp" });
      assert.equal(socket.transport, LongPoll);
      assert.equal(socket.transportName(socket.conn.constructor), "LongPoll");
      const topic = uniqueTopic("room:lp");
      const { channel, response } = await joinTopic(socket, topic);
      assert.deepEqual(response, { joined: topic, user_id: "lp" });
      assert.deepEqual(await pushAwait(channel, "echo", { n: 1, s: "é\n\"" }), { status: "ok", response: { n: 1, s: "é\n\"" } });
      assert.deepEqual(await pushAwait(channel, "error", { why: "asked" }), { status: "error", response: { why: "asked" } });
      const refused = deferred();
      socket.channel("room:private").join().receive("error", refused.resolve);
      assert.deepEqual(await withTimeout(refused.promise, TIMEOUT_MS, "refused join"), { reason: "unauthorized" });
    });

    it("a refused connect (token=deny) is reported as 403", async () => {
      const error = await connectRefused(conformance.server.wsUrl, { vsn, params: { token: "deny" }, transport: LongPoll });
      assert.equal(error, 403);
    });

    it("pushes made together go as batches (more than 100) and are all answered, in order", async () => {
      const socket = await longPoll(vsn);
      const { channel } = await joinTopic(socket, uniqueTopic("room:batch"));
      const replies = await Promise.all(Array.from({ length: 150 }, (_, i) => pushAwait(channel, "echo", { i }, 15_000)));
      assert.deepEqual(replies.map((r) => r.response.i), Array.from({ length: 150 }, (_, i) => i));
      // What the server pushes arrives in order too.
      const blasted = collect(channel, "blasted");
      assert.deepEqual(await pushAwait(channel, "blast", { n: 200, body: "x" }, 15_000), { status: "ok", response: { n: 200 } });
      const items = await blasted.waitFor(200, 15_000);
      assert.deepEqual(items.map((p) => p.i), Array.from({ length: 200 }, (_, i) => i + 1));
    });

    it("broadcasts reach a WebSocket client from a long-poll client, and the other way", async () => {
      const topic = uniqueTopic("room:mixed");
      const ws = await connect(conformance.server.wsUrl, { vsn, params: { user_id: "ws" } });
      const lp = await longPoll(vsn, { user_id: "lp" });
      const { channel: wsChannel } = await joinTopic(ws, topic);
      const { channel: lpChannel } = await joinTopic(lp, topic);

      const atWs = nextEvent(wsChannel, "shout");
      const atLp = nextEvent(lpChannel, "shout");
      lpChannel.push("shout", { from: "lp" });
      assert.deepEqual(await atWs, { from: "lp" });
      assert.deepEqual(await atLp, { from: "lp" }, "the sender gets its own broadcast");

      const back = nextEvent(lpChannel, "shout");
      wsChannel.push("shout", { from: "ws" });
      assert.deepEqual(await back, { from: "ws" });

      const intercepted = nextEvent(lpChannel, "intercepted");
      wsChannel.push("intercepted", { a: 1 });
      assert.deepEqual(await intercepted, { a: 1, seen_by: "lp" });
    });

    it("presence: a long-poll member and a WebSocket member see each other", async () => {
      const topic = uniqueTopic("room:presence");
      const member = async (socket, id) => {
        const channel = socket.channel(topic, { track: true, name: id });
        const presence = new Presence(channel);
        await new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject));
        return presence;
      };
      const keys = (presence) => presence.list((key) => key).sort();
      const lp = await member(await longPoll(vsn, { user_id: "lp" }), "lp");
      const ws = await member(await connect(conformance.server.wsUrl, { vsn, params: { user_id: "ws" } }), "ws");
      await eventually("both see both", () => [lp, ws].every((p) => keys(p).join() === "lp,ws"), TIMEOUT_MS);
    });

    it("a disconnect broadcast to its socket id ends the session: the client reconnects", async () => {
      const socket = await longPoll(vsn, { user_id: uniqueTopic("gone") });
      const { channel } = await joinTopic(socket, uniqueTopic("room:bye"));
      const closed = deferred();
      socket.onClose((event) => closed.resolve(event));
      channel.push("disconnect_me", {});
      const event = await withTimeout(closed.promise, 15_000, "close after disconnect");
      assert.equal(event.code, 3410, "phoenix.js's code for a long-poll session that is gone");
    });
  });
}
