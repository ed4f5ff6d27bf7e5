// The flooder of flood.test.mjs, in a process of its own so that its work does not slow
// the healthy clients it is measured against.
//
//   node test/js/flooder.mjs <wsUrl> reads|never-reads
//
// Connects to <wsUrl>/socket/websocket (vsn 2.0.0) as user `flooder`, joins room:flood and
// prints `{"joined":true}`; then reads one line `{"ms": N}` on stdin, pushes `echo` for N
// ms as fast as its socket's buffer drains (reading and counting its replies, or never
// reading: the socket is paused, so its kernel receive buffer fills), drops the
// connection and prints what it did:
// `{"pushes", "replies", "maxRxQueue", "closed": null | {"code", "afterMs"}}`.

import assert from "node:assert/strict";
import { once } from "node:events";
import readline from "node:readline";
import { setImmediate as nextTurn } from "node:timers/promises";
import { TIMEOUT_MS, WebSocket, tcpSockets, withTimeout } from "./helpers.mjs";

const FLOOD_TOPIC = "room:flood";
/** Frames sent per turn of the event loop, and the send buffer the flooder keeps filled. */
const FLOOD_CHUNK = 100;
const FLOOD_HIGH_WATER = 256 * 1024;
/** How often the kernel receive queue is sampled. */
const SAMPLE_MS = 100;

/** A raw `ws` connection joined to FLOOD_TOPIC. */
async function join(wsUrl) {
  const ws = new WebSocket(`${wsUrl}/socket/websocket?vsn=2.0.0&user_id=flooder`);
  await withTimeout(once(ws, "open"), TIMEOUT_MS, "flooder: open");
  const reply = withTimeout(once(ws, "message"), TIMEOUT_MS, "flooder: join reply");
  ws.send(JSON.stringify(["1", "1", FLOOD_TOPIC, "phx_join", {}]));
  const [, , , event, payload] = JSON.parse((await reply)[0].toString("utf8"));
  assert.deepEqual([event, payload.status], ["phx_reply", "ok"]);
  return ws;
}

/**
 * Pushes `echo` on `ws` until `until` (performance.now() time) or until the server closes
 * it, keeping FLOOD_HIGH_WATER bytes waiting in the socket's buffer; then drops the
 * connection. Without `reads`, the socket is never read again.
 */
async function flood(ws, reads, until) {
  // ws has no public handle for the TCP socket's ports and 'drain' event; `_socket` it is.
  const socket = ws._socket;
  const ports = { local: socket.localPort, remote: socket.remotePort };
  const f = { pushes: 0, replies: 0, maxRxQueue: 0, closed: null };
  const started = performance.now();
  let dropping = false; // the close that follows our own terminate() is not the server's
  ws.on("message", () => (f.replies += 1));
  ws.on("close", (code) => {
    if (!dropping) f.closed = { code, afterMs: performance.now() - started };
  });
  ws.on("error", () => {}); // reported by the close event
  if (!reads) ws.pause();
  const sampleRx = () => {
    const s = tcpSockets().find((s) => s.localPort === ports.local && s.remotePort === ports.remote);
    if (s) f.maxRxQueue = Math.max(f.maxRxQueue, s.rxQueue);
  };
  const sampler = setInterval(sampleRx, SAMPLE_MS);
  let ref = 1000;
  try {
    while (performance.now() < until && ws.readyState === WebSocket.OPEN) {
      for (let n = 0; n < FLOOD_CHUNK && ws.bufferedAmount < FLOOD_HIGH_WATER; n++) {
        ws.send(`["1","${ref}","${FLOOD_TOPIC}","echo",{"k":${ref}}]`);
        ref += 1;
        f.pushes += 1;
      }
      // Yield every chunk, so that the socket's events are handled meanwhile.
      if (ws.bufferedAmount >= FLOOD_HIGH_WATER) await drained(socket, until - performance.now());
      else await nextTurn();
    }
    sampleRx();
  } finally {
    clearInterval(sampler);
    dropping = true;
    ws.terminate();
  }
  return f;
}

/** Resolves when `socket` drains or closes, or after `ms`. */
function drained(socket, ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    socket.once("drain", done);
    socket.once("close", done);
  });
}

const [wsUrl, mode] = process.argv.slice(2);
const ws = await join(wsUrl);
console.log(JSON.stringify({ joined: true }));
const lines = readline.createInterface({ input: process.stdin });
const [line] = await once(lines, "line");
const { ms } = JSON.parse(line);
const result = await flood(ws, mode === "reads", performance.now() + ms);
console.log(JSON.stringify(result));
lines.close();
