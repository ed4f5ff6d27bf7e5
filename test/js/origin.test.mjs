// Origin checks with a real client (`ws`), against the chat demo, whose socket has
// `check_origin: :conn`: an Origin of the request's own host is accepted, any other
// is refused with 403 before the upgrade. (The conformance app accepts any origin, as
// CONFORMANCE.md says; the other forms of check_origin are tested in ExUnit.)
//
// Run: node --test test/js/origin.test.mjs

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { TIMEOUT_MS, WebSocket, startChat, withTimeout } from "./helpers.mjs";

const T = { timeout: 60_000 };
let chat;

before(async () => {
  chat = await startChat();
}, T);

after(async () => {
  await chat?.stop();
});

/** Opens a WebSocket with `origin`: resolves "open", or the HTTP status it was refused with. */
function attempt(origin) {
  const ws = new WebSocket(`${chat.wsUrl}/socket/websocket?vsn=2.0.0&user_id=origin`, { origin });
  const outcome = new Promise((resolve, reject) => {
    ws.on("open", () => resolve("open"));
    ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
    ws.on("error", reject);
  });
  return withTimeout(outcome, TIMEOUT_MS, `upgrade with origin ${origin}`).finally(() => ws.terminate());
}

describe("check_origin: :conn (the chat demo)", () => {
  it("accepts the request's own host and refuses every other origin with 403", T, async () => {
    assert.equal(await attempt(chat.url), "open");
    for (const foreign of ["http://evil.example", `http://localhost.evil.example:${chat.port}`, "null"]) {
      assert.equal(await attempt(foreign), 403, foreign);
    }
    // The server goes on serving after the refusals.
    assert.equal(await attempt(chat.url), "open");
  });
});
