// The conformance app's raw echo transport (shared/CONFORMANCE.md, "Raw echo transport:
// /echo"), a Fenix.Socket.Transport, driven by the `ws` npm client: every text or binary
// message comes back unchanged with its opcode; the rest is RFC 6455, done by the engine.
//
// Run: node --test test/js/transport.test.mjs
//   FENIX_CONFORMANCE_URL=http://127.0.0.1:4001  use a server that is already running

import { describe, it, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { RawClient, TIMEOUT_MS, closeAllRaw, startConformance, withTimeout } from "./helpers.mjs";

/** The echo socket's max_frame_size: the engine's default, 1 MiB. */
const MAX_FRAME_SIZE = 1 << 20;
const PATH = "/echo/websocket";

let server;

before(async () => {
  server = await startConformance();
}, { timeout: 180_000 });

after(async () => {
  await closeAllRaw();
  await server?.stop();
});

afterEach(closeAllRaw);

const open = () => RawClient.open(server.wsUrl, PATH, { label: "echo" });

/** Sends `parts` as one message of fragments (`ws` sets FIN on the last). */
function sendFragmented(client, parts, binary) {
  parts.forEach((part, i) => client.ws.send(part, { binary, fin: i === parts.length - 1 }));
}

describe("raw echo transport (/echo/websocket)", () => {
  it("echoes text messages as text", async () => {
    const c = await open();
    for (const text of ["hello", "", "héllo wörld ✓", '{"not":"a channel message"}']) {
      c.send(text);
      assert.equal(await c.next(), text);
    }
  });

  it("echoes binary messages as binary", async () => {
    const c = await open();
    const data = Buffer.from([0, 1, 2, 253, 254, 255]);
    c.ws.send(data);
    assert.deepEqual(await c.next(), { binary: data });
    c.ws.send(Buffer.alloc(0));
    assert.deepEqual(await c.next(), { binary: Buffer.alloc(0) });
  });

  it("keeps the order of a burst", async () => {
    const c = await open();
    const n = 500;
    for (let i = 0; i < n; i++) c.send(`m${i}`);
    for (let i = 0; i < n; i++) assert.equal(await c.next(), `m${i}`);
  });

  it("reassembles fragmented messages, text and binary", async () => {
    const c = await open();
    sendFragmented(c, ["frag", "men", "ted ✓"], false);
    assert.equal(await c.next(), "fragmented ✓");
    const parts = [Buffer.from([1, 2]), Buffer.from([3]), Buffer.from([4, 5, 6])];
    sendFragmented(c, parts, true);
    assert.deepEqual(await c.next(), { binary: Buffer.concat(parts) });
  });

  it("echoes messages up to max_frame_size, whole or in fragments", async () => {
    const c = await open();
    const text = "x".repeat(MAX_FRAME_SIZE);
    c.send(text);
    assert.equal(await c.next(TIMEOUT_MS * 2), text);
    const data = Buffer.alloc(MAX_FRAME_SIZE, 7);
    sendFragmented(c, [data.subarray(0, 300_000), data.subarray(300_000, 700_000), data.subarray(700_000)], true);
    assert.deepEqual(await c.next(TIMEOUT_MS * 2), { binary: data });
  });

  it("closes a message over max_frame_size with 1009", async () => {
    const c = await open();
    c.ws.send(Buffer.alloc(MAX_FRAME_SIZE + 1));
    assert.equal((await c.waitClose()).code, 1009);
  });

  it("closes fragments that add up past max_frame_size with 1009", async () => {
    const c = await open();
    sendFragmented(c, [Buffer.alloc(MAX_FRAME_SIZE), Buffer.alloc(1)], true);
    assert.equal((await c.waitClose()).code, 1009);
  });

  it("closes a text message that is not UTF-8 with 1007", async () => {
    const c = await open();
    // "(" after a lead byte that wants a continuation byte: not UTF-8 (RFC6455§8.1).
    c.ws.send(Buffer.from([0x68, 0xc3, 0x28]), { binary: false });
    assert.equal((await c.waitClose()).code, 1007);
  });

  it("answers pings with pongs carrying the same payload", async () => {
    const c = await open();
    const pong = withTimeout(new Promise((resolve) => c.ws.once("pong", resolve)), TIMEOUT_MS, "pong");
    c.ws.ping(Buffer.from("are you there"));
    assert.equal((await pong).toString(), "are you there");
    c.send("after the ping");
    assert.equal(await c.next(), "after the ping");
  });

  it("answers a close with the client's code", async () => {
    const c = await open();
    c.send("last");
    assert.equal(await c.next(), "last");
    c.ws.close(4321, "done");
    assert.equal((await c.waitClose()).code, 4321);
  });

  it("keeps connections apart", async () => {
    const [a, b] = await Promise.all([open(), open()]);
    a.send("for a");
    b.send("for b");
    assert.equal(await b.next(), "for b");
    assert.equal(await a.next(), "for a");
  });
});
