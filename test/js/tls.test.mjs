// wss:// against the conformance app's HTTPS listener (`HTTPS_PORT`), with a
// certificate made for the run: the unmodified phoenix client in Node (over `ws`,
// trusting the run's CA) and in headless Chromium, from a page of the https origin
// itself (the run's CA is not in Chromium's store: Playwright's ignoreHTTPSErrors).
//
// Run: node --test test/js/tls.test.mjs
//   CHROMIUM=/path/to/chromium   default /usr/bin/chromium

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  ROOT,
  TIMEOUT_MS,
  WebSocket,
  connect,
  connectRefused,
  disconnectAll,
  joinTopic,
  pushAwait,
  nextEvent,
  startConformanceTls,
} from "./helpers.mjs";

let server;

before(async () => (server = await startConformanceTls()), { timeout: 150_000 });
after(async () => {
  await disconnectAll();
  await server?.stop();
});

/** The `ws` transport trusting the run's CA, as a page's browser trusts a real one. */
function trustingTransport(ca) {
  return class TrustingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { ca });
    }
  };
}

describe("the phoenix client in Node over wss://", () => {
  it("joins, pushes and gets a broadcast sent from a plain ws:// client", async () => {
    const transport = trustingTransport(server.ca);
    const secure = await connect(server.wssUrl, { params: { user_id: "tls" }, transport });
    const plain = await connect(server.wsUrl, { params: { user_id: "plain" } });
    const { channel: secureRoom, response } = await joinTopic(secure, "room:tls");
    assert.deepEqual(response, { joined: "room:tls", user_id: "tls" });
    const { channel: plainRoom } = await joinTopic(plain, "room:tls");

    assert.deepEqual(await pushAwait(secureRoom, "echo", { over: "tls" }), { status: "ok", response: { over: "tls" } });
    const shout = nextEvent(secureRoom, "shout");
    plainRoom.push("shout", { from: "plain" });
    assert.deepEqual(await shout, { from: "plain" });
  });

  it("refuses a server it does not trust", async () => {
    // No CA given: Node's own store does not hold the run's CA.
    const error = await connectRefused(server.wssUrl, { params: { user_id: "untrusting" } });
    assert.ok(error, "the socket reports an error");
  });
});

describe("headless Chromium on an https:// page", () => {
  let browser;
  before(async () => {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
    });
  }, { timeout: 60_000 });
  after(async () => await browser?.close());

  it("connects over wss://, joins and gets a broadcast", { timeout: 60_000 }, async () => {
    // ignoreHTTPSErrors covers the page and its WebSocket alike.
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    // A page of the https origin, served by the engine over TLS: a secure context,
    // where only wss:// may be used.
    await page.goto(`${server.httpsUrl}/`);
    assert.equal(await page.evaluate(() => window.isSecureContext && location.protocol), "https:");
    const phoenixJs = await fs.readFile(path.join(ROOT, "node_modules/phoenix/priv/static/phoenix.js"), "utf8");
    await page.addScriptTag({ content: phoenixJs });
    const got = await page.evaluate(
      ({ wssUrl, timeout }) =>
        new Promise((resolve, reject) => {
          setTimeout(() => reject(new Error("no broadcast in time")), timeout);
          const socket = new Phoenix.Socket(`${wssUrl}/socket`, { params: { user_id: "chromium" } });
          socket.onError((e) => reject(new Error(`socket error ${e?.type ?? e}`)));
          socket.connect();
          const room = socket.channel("room:browser", {});
          room.on("shout", (payload) => resolve({ payload, transport: socket.conn.url }));
          room.join().receive("ok", () => room.push("shout", { from: "chromium" })).receive("error", reject);
        }),
      { wssUrl: server.wssUrl, timeout: TIMEOUT_MS },
    );
    assert.deepEqual(got.payload, { from: "chromium" });
    assert.match(got.transport, /^wss:\/\/localhost:\d+\/socket\/websocket/);
  });
});
