// Presence with the real `phoenix` client's `Presence` (onSync, list), against the
// conformance app (CONFORMANCE.md: `"track": true` in the join payload tracks the
// client's user_id with meta {name}; `presence_update` merges the payload into it).
//
// For both serializers: several clients join and track, one updates its meta, one
// leaves, one's channel crashes, one disconnects; after each step every remaining
// client's `presence.list()` converges on the same, expected list (the server sends
// presence_state on join and coalesced presence_diff broadcasts after).
//
// Run: node --test test/js/presence.test.mjs   (after `MIX_ENV=test mix compile`)

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "phoenix";
import { TIMEOUT_MS, VSNS, connect, joinTopic, sleep, useConformance, uniqueTopic } from "./helpers.mjs";

const conformance = useConformance();

/** A client of `vsn` as user `id`, joined to `topic` with track, and its Presence. */
async function member(vsn, topic, id, name) {
  const socket = await connect(conformance.server.wsUrl, { vsn, params: { user_id: id } });
  const channel = socket.channel(topic, { track: true, name });
  const presence = new Presence(channel);
  let syncs = 0;
  presence.onSync(() => (syncs += 1));
  const joined = new Promise((resolve, reject) =>
    channel.join().receive("ok", resolve).receive("error", reject).receive("timeout", reject),
  );
  await joined;
  return { id, socket, channel, presence, syncs: () => syncs };
}

/** `presence.list()` as `{key: [names and statuses of its metas]}`, sorted, for comparing. */
function seen(presence) {
  const out = {};
  for (const { key, metas } of presence.list((key, { metas }) => ({ key, metas }))) {
    out[key] = metas.map((m) => `${m.name}${m.status ? `:${m.status}` : ""}`).sort();
  }
  return sorted(out);
}

function sorted(object) {
  return Object.fromEntries(Object.entries(object).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Waits until every member sees `expected`. */
async function converge(members, expected, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const views = members.map((m) => seen(m.presence));
    expected = sorted(expected);
    if (views.every((v) => JSON.stringify(v) === JSON.stringify(expected))) return;
    if (Date.now() > deadline) {
      assert.fail(`${what}: not every client sees ${JSON.stringify(expected)}:\n${views.map((v, i) => `  ${members[i].id}: ${JSON.stringify(v)}`).join("\n")}`);
    }
    await sleep(20);
  }
}

for (const vsn of VSNS) {
  describe(`presence (vsn ${vsn})`, () => {
    it("every client converges on the same list through joins, an update, a leave, a crash and a disconnect", async () => {
      const topic = uniqueTopic("room:presence");
      const ann = await member(vsn, topic, "ann", "Ann");
      const bob = await member(vsn, topic, "bob", "Bob");
      const cy = await member(vsn, topic, "cy", "Cy");
      const dee = await member(vsn, topic, "dee", "Dee");
      await converge([ann, bob, cy, dee], { ann: ["Ann"], bob: ["Bob"], cy: ["Cy"], dee: ["Dee"] }, "after the joins");

      ann.channel.push("presence_update", { status: "away" });
      await converge([ann, bob, cy, dee], { ann: ["Ann:away"], bob: ["Bob"], cy: ["Cy"], dee: ["Dee"] }, "after ann's update");

      await new Promise((resolve) => bob.channel.leave().receive("ok", resolve));
      await converge([ann, cy, dee], { ann: ["Ann:away"], cy: ["Cy"], dee: ["Dee"] }, "after bob left");

      cy.channel.push("crash", {});
      await converge([ann, dee], { ann: ["Ann:away"], dee: ["Dee"] }, "after cy's channel crashed");

      dee.socket.disconnect();
      await converge([ann], { ann: ["Ann:away"] }, "after dee disconnected");
      assert.ok(ann.syncs() > 0, "onSync fired");
    });

    it("the same user on two connections is one key with two metas; a late joiner gets the whole state", async () => {
      const topic = uniqueTopic("room:presence2");
      const first = await member(vsn, topic, "eve", "Eve 1");
      const second = await member(vsn, topic, "eve", "Eve 2");
      await converge([first, second], { eve: ["Eve 1", "Eve 2"] }, "two metas under one key");
      const late = await member(vsn, topic, "fay", "Fay");
      await converge([first, second, late], { eve: ["Eve 1", "Eve 2"], fay: ["Fay"] }, "with the late joiner");
      second.socket.disconnect();
      await converge([first, late], { eve: ["Eve 1"], fay: ["Fay"] }, "one of eve's connections gone");
    });
  });
}

describe("presence coalescing", () => {
  it("many joins within a tick reach a member as few presence_diff frames, and the list is complete", async () => {
    const topic = uniqueTopic("room:presence-burst");
    const watcher = await member("2.0.0", topic, "watcher", "W");
    let diffs = 0;
    watcher.channel.on("presence_diff", () => (diffs += 1));
    const joiners = [];
    for (let i = 0; i < 20; i++) joiners.push(member("2.0.0", topic, `u${i}`, `U${i}`));
    await Promise.all(joiners);
    const expected = { watcher: ["W"] };
    for (let i = 0; i < 20; i++) expected[`u${i}`] = [`U${i}`];
    await converge([watcher], expected, "after 20 joins");
    // 20 joins one after the other would be 20 diffs without coalescing; their joins take
    // a few ticks here, so a few diffs.
    assert.ok(diffs < 20, `${diffs} presence_diff frames for 20 joins`);
  });
});
