// Shared helpers for the tests in test/js/: start a server as a child process, drive the
// real `phoenix` npm client over `ws`, and drive raw WebSocket clients frame by frame.
//
// Environment:
//   FENIX_CONFORMANCE_URL  use a conformance app that is already running
//                          (e.g. http://127.0.0.1:4001) instead of starting `mix fenix.conformance`
//   FENIX_CHAT_URL         same for the chat demo (examples/chat)
//   FENIX_TEST_VERBOSE=1   copy the server's output to this process's stderr
//
// Nothing here may hang: every wait has a timeout, and every child process is killed
// (SIGTERM to its process group, then SIGKILL) when the tests end.

import { spawn } from "node:child_process";
import { after, afterEach, before } from "node:test";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { Socket } from "phoenix";

export { WebSocket, Socket, sleep };

/** Repository root (/work/main). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** How long a first `mix` run may take: it compiles the Rust engine and the Elixir code. */
export const SERVER_START_TIMEOUT_MS = 120_000;

/** Default wait for one reply, event or frame. */
export const TIMEOUT_MS = 5_000;

const READY_RE = /listening on 127\.0\.0\.1:(\d+)/;

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

const children = new Set();

// Last resort if the test process exits without `stop()` (e.g. a crash in a hook):
// synchronously SIGKILL every process group we started.
process.on("exit", () => {
  for (const child of children) killGroup(child, "SIGKILL");
});
for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]]) {
  process.once(signal, () => process.exit(code));
}

function killGroup(child, signal) {
  try {
    // Negative pid = the process group the child leads (spawned with `detached: true`),
    // so `mix` and whatever it started (erl, cargo) go together.
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Asks the OS for a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `command args` in `cwd` with `env` added to this process's environment plus
 * PORT=<free port>, and waits until it prints `listening on 127.0.0.1:<port>` on stdout
 * or stderr.
 *
 * Returns `{port, url, wsUrl, stop, output, command}`: `url` is `http://127.0.0.1:<port>`,
 * `wsUrl` the `ws://` twin, `stop()` kills the process group and resolves when it has
 * exited, `output()` is everything the server printed so far. With `control: true` the
 * server's stdin is a pipe and `command(line, answer)` writes `line` to it and resolves
 * once the server prints a line equal to `answer` (rejects on another answer or timeout).
 *
 * If `externalUrl` is given, no process is started: the server at that URL is used.
 */
export async function startServer({
  name = "server",
  command,
  args = [],
  cwd = ROOT,
  env = {},
  port,
  timeoutMs = SERVER_START_TIMEOUT_MS,
  externalUrl,
  control = false,
} = {}) {
  if (externalUrl) {
    const url = externalUrl.replace(/\/+$/, "");
    return {
      port: Number(new URL(url).port),
      url,
      wsUrl: url.replace(/^http/, "ws"),
      stop: async () => {},
      output: () => "",
    };
  }

  port ??= await freePort();
  const verbose = !!process.env.FENIX_TEST_VERBOSE;
  let output = "";

  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: [control ? "pipe" : "ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);

  const exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });

  // Whole lines of output, for `command`.
  const lineListeners = new Set();
  let partialLine = "";
  const onLines = (text) => {
    const lines = (partialLine + text).split("\n");
    partialLine = lines.pop();
    for (const line of lines) for (const listener of lineListeners) listener(line.trim());
  };

  const ready = new Promise((resolve, reject) => {
    let lineBuf = "";
    const onData = (chunk) => {
      const text = chunk.toString("utf8");
      output += text;
      // Keep memory bounded for chatty servers.
      if (output.length > 200_000) output = output.slice(-100_000);
      if (verbose) process.stderr.write(`[${name}] ${text}`);
      onLines(text);
      lineBuf += text;
      const m = lineBuf.match(READY_RE);
      if (m) resolve(Number(m[1]));
      lineBuf = lineBuf.slice(-200);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) => reject(new Error(`${name}: cannot start ${command}: ${err.message}`)));
    exited.then(({ code, signal }) =>
      reject(new Error(`${name}: exited (code ${code}, signal ${signal}) before it was ready.\n${tail(output)}`)),
    );
  });

  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${name}: not ready after ${timeoutMs} ms.\n${tail(output)}`)),
      timeoutMs,
    );
  });

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killGroup(child, "SIGTERM");
    const t = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
    await exited;
    clearTimeout(t);
    // Anything the BEAM left in the group (e.g. a port program) goes too.
    killGroup(child, "SIGKILL");
  };

  let actualPort;
  try {
    actualPort = await Promise.race([ready, timeout]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  if (actualPort !== port) {
    await stop();
    throw new Error(`${name}: was asked for PORT=${port} but says it listens on ${actualPort}`);
  }

  const sendCommand = (line, answer, timeout = TIMEOUT_MS) => {
    const d = deferred();
    const listener = (got) => {
      if (got === answer) d.resolve(got);
      else if (got.startsWith("unknown command")) d.reject(new Error(`${name}: ${got}`));
    };
    lineListeners.add(listener);
    child.stdin.write(`${line}\n`);
    return withTimeout(d.promise, timeout, `${name}: ${line}`).finally(() => lineListeners.delete(listener));
  };

  const url = `http://127.0.0.1:${port}`;
  return { port, url, wsUrl: `ws://127.0.0.1:${port}`, stop, output: () => output, command: sendCommand };
}

function tail(text, lines = 60) {
  return text.split("\n").slice(-lines).join("\n");
}

/** `PORT=<port> mix fenix.conformance` from the repository root; `env` is added to its environment. */
export function startConformance({ env = {} } = {}) {
  return startServer({
    name: "conformance",
    command: "mix",
    args: ["fenix.conformance"],
    cwd: ROOT,
    env,
    externalUrl: process.env.FENIX_CONFORMANCE_URL,
  });
}

const HTTPS_READY_RE = /https listening at https:\/\/localhost:(\d+)/;

/**
 * The conformance app with its HTTPS listener too (`HTTPS_PORT=0`), a conformance app
 * of this test's own: the certificate is made for the run, in a temporary directory.
 * Adds to `startServer`'s result `httpsPort`, `httpsUrl` and `wssUrl`
 * (`https://localhost:<port>`, which the certificate names) and `ca`, the PEM CA that
 * a client trusts; `stop()` also removes the directory.
 */
export async function startConformanceTls() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fenix-tls-"));
  const server = await startServer({
    name: "conformance (tls)",
    command: "mix",
    args: ["fenix.conformance"],
    cwd: ROOT,
    env: { HTTPS_PORT: "0", FENIX_TLS_DIR: dir },
  });
  // Printed before the ready line.
  const httpsPort = Number(server.output().match(HTTPS_READY_RE)[1]);
  const stop = server.stop;
  return {
    ...server,
    httpsPort,
    httpsUrl: `https://localhost:${httpsPort}`,
    wssUrl: `wss://localhost:${httpsPort}`,
    ca: fs.readFileSync(path.join(dir, "ca.pem")),
    stop: async () => {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * For a test file against the conformance app: starts it before the file's tests, stops
 * it after them, and disconnects every socket after each test. Returns a handle whose
 * `server` is the running app (set once the tests run).
 */
export function useConformance() {
  const handle = { server: null };
  before(async () => {
    handle.server = await startConformance();
  });
  after(async () => {
    await handle.server?.stop();
  });
  afterEach(() => disconnectAll());
  return handle;
}

/**
 * `PORT=<port> mix fenix.conformance --control`: a conformance app of this test's own
 * (never FENIX_CONFORMANCE_URL's), whose `command("kill dispatcher", "killed dispatcher")`
 * and `command("kill endpoint", "killed endpoint")` kill parts of its supervision tree.
 */
export function startControlledConformance({ env = {} } = {}) {
  return startServer({
    name: "conformance (controlled)",
    command: "mix",
    args: ["fenix.conformance", "--control"],
    cwd: ROOT,
    env,
    control: true,
  });
}

/** `PORT=<port> mix run --no-halt` from examples/chat. */
export function startChat() {
  return startServer({
    name: "chat",
    command: "mix",
    args: ["run", "--no-halt"],
    cwd: path.join(ROOT, "examples/chat"),
    externalUrl: process.env.FENIX_CHAT_URL,
  });
}

// ---------------------------------------------------------------------------------------
// Promise utilities
// ---------------------------------------------------------------------------------------

/** Rejects with `label` if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, label) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** A promise plus its resolve/reject. */
export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// ---------------------------------------------------------------------------------------
// The phoenix npm client
// ---------------------------------------------------------------------------------------

/**
 * Serializer 1.0.0 for the phoenix client: JSON objects. The client's built-in serializer
 * speaks 2.0.0 (arrays) only, so a 1.0.0 client passes these as `encode`/`decode`.
 * Client frames look like the capture: `{"topic","event","payload","ref","join_ref"}`,
 * with no `join_ref` key when it is null (heartbeats). Server frames carry no join_ref.
 */
export const v1Codec = {
  encode(msg, callback) {
    const obj = { topic: msg.topic, event: msg.event, payload: msg.payload, ref: msg.ref };
    if (msg.join_ref != null) obj.join_ref = msg.join_ref;
    return callback(JSON.stringify(obj));
  },
  decode(raw, callback) {
    const m = JSON.parse(raw);
    return callback({
      join_ref: m.join_ref ?? null,
      ref: m.ref ?? null,
      topic: m.topic,
      event: m.event,
      payload: m.payload,
    });
  },
};

/** The two serializers the conformance app speaks. */
export const VSNS = ["1.0.0", "2.0.0"];

const sockets = new Set();

/**
 * A phoenix `Socket` for `<wsUrl>/socket`, not yet connected.
 * `vsn` "2.0.0" uses the client's default serializer; "1.0.0" passes `vsn` and `v1Codec`.
 * Every socket made here is disconnected by `disconnectAll()`.
 */
export function makeSocket(wsUrl, { vsn = "2.0.0", params = {}, ...opts } = {}) {
  const codec = vsn === "1.0.0" ? { vsn, encode: v1Codec.encode, decode: v1Codec.decode } : {};
  const socket = new Socket(`${wsUrl}/socket`, {
    transport: WebSocket,
    params,
    // Fail fast instead of retrying for minutes when something is wrong.
    reconnectAfterMs: () => 60_000,
    rejoinAfterMs: () => 60_000,
    timeout: TIMEOUT_MS,
    ...codec,
    ...opts,
  });
  sockets.add(socket);
  return socket;
}

/**
 * Connects a phoenix `Socket` and resolves with it once the WebSocket is open.
 * Rejects with the transport error if the connection is refused (e.g. `token=deny`).
 */
export function connect(wsUrl, opts = {}) {
  const socket = makeSocket(wsUrl, opts);
  const d = deferred();
  const refs = [
    socket.onOpen(() => d.resolve(socket)),
    socket.onError((err) => {
      const e = new Error(`socket error: ${err?.message ?? err?.type ?? err}`);
      e.transportError = err;
      d.reject(e);
    }),
  ];
  socket.connect();
  return withTimeout(d.promise, TIMEOUT_MS, `connect ${JSON.stringify(opts.params ?? {})}`).finally(() =>
    socket.off(refs),
  );
}

/**
 * Tries to connect and resolves with the error the client reports if the server refuses.
 * Rejects if the socket opens instead.
 */
export function connectRefused(wsUrl, opts = {}) {
  const socket = makeSocket(wsUrl, opts);
  const d = deferred();
  socket.onOpen(() => d.reject(new Error("socket opened, expected it to be refused")));
  socket.onError((err) => d.resolve(err));
  socket.connect();
  return withTimeout(d.promise, TIMEOUT_MS, "refused connection").finally(() => socket.disconnect());
}

/** Disconnects every socket made by `makeSocket`/`connect`. */
export async function disconnectAll() {
  const all = [...sockets];
  sockets.clear();
  await Promise.all(
    all.map(
      (socket) =>
        new Promise((resolve) => {
          for (const ch of socket.channels) {
            ch.rejoinTimer?.reset();
          }
          const t = setTimeout(resolve, 1_000);
          socket.disconnect(() => {
            clearTimeout(t);
            resolve();
          });
        }),
    ),
  );
}

/** Error carrying a non-ok join/push outcome. */
export class ReplyError extends Error {
  constructor(what, status, response) {
    super(`${what}: ${status} ${JSON.stringify(response)}`);
    this.status = status;
    this.response = response;
  }
}

/**
 * Joins `channel`: resolves with the response on "ok", rejects with a `ReplyError`
 * (`.status` "error" or "timeout", `.response`) otherwise.
 */
export function join(channel, timeout = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    channel
      .join(timeout)
      .receive("ok", resolve)
      .receive("error", (resp) => reject(new ReplyError(`join ${channel.topic}`, "error", resp)))
      .receive("timeout", (resp) => reject(new ReplyError(`join ${channel.topic}`, "timeout", resp)));
  });
}

/** Polls `condition` until it holds (a guard against hangs, not a timing assertion). */
export async function eventually(label, condition, timeout = 30_000) {
  await withTimeout(
    (async () => {
      while (!condition()) await sleep(20);
    })(),
    timeout,
    label,
  );
}

/** `socket.channel(topic, params)` + `join`; resolves with `{channel, response}`. */
export async function joinTopic(socket, topic, params = {}) {
  const channel = socket.channel(topic, params);
  const response = await join(channel);
  return { channel, response };
}

/**
 * Pushes `event` and resolves with `{status, response}` for an "ok" or "error" reply;
 * rejects on timeout (no reply).
 */
export function pushAwait(channel, event, payload = {}, timeout = TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    channel
      .push(event, payload, timeout)
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () =>
        reject(new ReplyError(`push ${event} on ${channel.topic}`, "timeout", null)),
      );
  });
}

/**
 * Resolves with the payload of the next `event` on `channel` (phx_error and phx_close
 * included). Call it BEFORE doing what triggers the event.
 */
export function nextEvent(channel, event, timeout = TIMEOUT_MS) {
  const d = deferred();
  const ref = channel.on(event, (payload) => d.resolve(payload));
  return withTimeout(d.promise, timeout, `event ${event} on ${channel.topic}`).finally(() =>
    channel.off(event, ref),
  );
}

/**
 * Records every `event` on `channel`. `.items` is the list of payloads so far;
 * `.waitFor(n)` resolves once `n` have arrived; `.stop()` unsubscribes.
 */
export function collect(channel, event) {
  const items = [];
  let waiter = null;
  const ref = channel.on(event, (payload) => {
    items.push(payload);
    if (waiter && items.length >= waiter.n) waiter.resolve(items);
  });
  return {
    items,
    waitFor(n, timeout = TIMEOUT_MS) {
      if (items.length >= n) return Promise.resolve(items);
      const d = deferred();
      waiter = { n, resolve: d.resolve };
      return withTimeout(d.promise, timeout, `${n} x ${event} on ${channel.topic} (got ${items.length})`);
    },
    stop() {
      channel.off(event, ref);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Raw WebSocket clients: exact frames
// ---------------------------------------------------------------------------------------

const rawClients = new Set();

/**
 * A WebSocket client with a queue of received frames, for tests where the exact frames
 * matter. Text frames are kept as the exact strings the server sent.
 */
export class RawClient {
  /**
   * Opens `<wsUrl><path>` (path includes the query string). Resolves once open; rejects
   * with an Error carrying `.statusCode` if the server answers the upgrade with an HTTP
   * response instead.
   */
  static open(wsUrl, pathAndQuery, { protocols, headers = {}, label = "raw", track = true } = {}) {
    const client = new RawClient(new WebSocket(`${wsUrl}${pathAndQuery}`, protocols, { headers }), label);
    // `track: false` keeps the client out of `closeAllRaw()` (for connections that must
    // outlive one test).
    if (track) rawClients.add(client);
    return client.opened;
  }

  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.frames = [];
    this.waiters = [];
    this.closeInfo = null;
    this.closed = deferred();
    this.upgradeHeaders = null;
    const opened = deferred();
    this.opened = withTimeout(opened.promise, TIMEOUT_MS, `${label}: open`);
    // Silence unhandled rejections; callers that care await `opened`.
    this.opened.catch(() => {});

    ws.on("upgrade", (res) => {
      this.upgradeHeaders = res.headers;
    });
    ws.on("open", () => opened.resolve(this));
    ws.on("unexpected-response", (_req, res) => {
      const err = new Error(`${label}: upgrade answered HTTP ${res.statusCode}`);
      err.statusCode = res.statusCode;
      err.headers = res.headers;
      res.resume();
      opened.reject(err);
      ws.terminate();
    });
    ws.on("error", (err) => {
      opened.reject(err);
    });
    ws.on("message", (data, isBinary) => {
      const frame = isBinary ? { binary: Buffer.from(data) } : data.toString("utf8");
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(frame);
      else this.frames.push(frame);
    });
    ws.on("close", (code, reason) => {
      this.closeInfo = { code, reason: reason.toString("utf8") };
      this.closed.resolve(this.closeInfo);
      for (const w of this.waiters.splice(0)) {
        w.reject(new Error(`${label}: closed (code ${code}) while waiting for a frame`));
      }
    });
  }

  /** The negotiated subprotocol ("" when none). */
  get protocol() {
    return this.ws.protocol;
  }

  /** Sends a text frame: a string as is, anything else JSON-encoded. */
  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The next frame received (text as a string, binary as `{binary: Buffer}`). */
  next(timeout = TIMEOUT_MS) {
    if (this.frames.length > 0) return Promise.resolve(this.frames.shift());
    if (this.closeInfo) {
      return Promise.reject(new Error(`${this.label}: closed (code ${this.closeInfo.code}), no more frames`));
    }
    const d = deferred();
    this.waiters.push(d);
    return withTimeout(d.promise, timeout, `${this.label}: next frame`).catch((err) => {
      const i = this.waiters.indexOf(d);
      if (i >= 0) this.waiters.splice(i, 1);
      throw err;
    });
  }

  /** Resolves with `{code, reason}` once the connection has closed. */
  waitClose(timeout = TIMEOUT_MS) {
    return withTimeout(this.closed.promise, timeout, `${this.label}: close`);
  }

  close() {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000);
    }
  }
}

/** Closes every raw client opened by `RawClient.open`. */
export async function closeAllRaw() {
  const all = [...rawClients];
  rawClients.clear();
  await Promise.all(
    all.map(async (c) => {
      if (c.closeInfo) return;
      c.close();
      try {
        await c.waitClose(1_000);
      } catch {
        c.ws.terminate();
      }
    }),
  );
}

/**
 * Rewrites a 2.0.0 frame (literal JSON array) as the 1.0.0 object the same message
 * is on the wire (see vectors/phoenix_wire_frames.md):
 *   client -> server: `{"topic","event","payload","ref","join_ref"}`, no join_ref key when null;
 *   server -> client: `{"event","payload","ref","topic"}`, no join_ref at all. For phx_error
 *   and phx_close the 2.0.0 frame carries the join_ref in both slots, so `ref` is it.
 */
export function toV1(frame, direction) {
  const [joinRef, ref, topic, event, payload] = JSON.parse(frame);
  if (direction === ">>") {
    const obj = { topic, event, payload, ref };
    if (joinRef !== null) obj.join_ref = joinRef;
    return JSON.stringify(obj);
  }
  return JSON.stringify({ event, payload, ref, topic });
}

/**
 * Runs a wire script against the server, one directive per line, in the capture's notation.
 * Frames are written as 2.0.0 arrays; with `vsn: "1.0.0"` they are rewritten by `toV1`.
 *
 *   [a] .. open ?user_id=u1     open raw client `a` (vsn is appended to the query)
 *   [a] >> ["1","1","room:x","phx_join",{}]      send this text frame
 *   [a] << ["1","1","room:x","phx_reply",{...}]  the NEXT frame `a` receives is exactly this
 *   [a] .. closed 1001          `a`'s connection closes with this code (no frames before)
 *   # comment / blank lines are ignored
 *
 * The label may be omitted: it defaults to `a`. When the script ends, each client still open
 * sends a heartbeat and must get exactly its reply next, proving no stray frame is queued.
 */
export async function runScript(wsUrl, vsn, script) {
  const clients = new Map();
  let heartbeatRef = 9000;
  const lines = script
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const line of lines) {
    const m = line.match(/^(?:\[(\w+)\]\s+)?(>>|<<|\.\.)\s+(.*)$/);
    if (!m) throw new Error(`bad script line: ${line}`);
    const [, label = "a", op, rest] = m;
    const where = `[${label}] ${op} ${rest}`;
    if (op === "..") {
      const [cmd, arg = ""] = rest.split(/\s+/, 2);
      if (cmd === "open") {
        const query = arg.startsWith("?") ? arg.slice(1) : arg;
        const q = new URLSearchParams(query);
        q.set("vsn", vsn);
        clients.set(label, await RawClient.open(wsUrl, `/socket/websocket?${q}`, { label }));
      } else if (cmd === "closed") {
        const c = mustClient(clients, label, where);
        const frameOrClose = await Promise.race([c.next().then((f) => ({ frame: f })), c.waitClose()]).catch(
          (e) => ({ error: e }),
        );
        if (frameOrClose.frame !== undefined) {
          throw new Error(`${where}: expected the connection to close, got frame ${fmt(frameOrClose.frame)}`);
        }
        const info = c.closeInfo ?? (await c.waitClose());
        if (String(info.code) !== arg) {
          throw new Error(`${where}: closed with code ${info.code}, expected ${arg}`);
        }
      } else {
        throw new Error(`unknown directive: ${line}`);
      }
      continue;
    }
    const c = mustClient(clients, label, where);
    const expected = vsn === "1.0.0" ? toV1(rest, op) : JSON.stringify(JSON.parse(rest));
    if (op === ">>") {
      c.send(expected);
    } else {
      let got;
      try {
        got = await c.next();
      } catch (err) {
        throw new Error(`${where}\n  expected: ${expected}\n  but: ${err.message}`);
      }
      if (got !== expected) {
        throw new Error(`${where}\n  expected: ${expected}\n  got:      ${fmt(got)}`);
      }
    }
  }
  for (const [label, c] of clients) {
    if (c.closeInfo) continue;
    const ref = String(heartbeatRef++);
    const hb = `[null,"${ref}","phoenix","heartbeat",{}]`;
    const reply = `[null,"${ref}","phoenix","phx_reply",{"response":{},"status":"ok"}]`;
    c.send(vsn === "1.0.0" ? toV1(hb, ">>") : hb);
    const expected = vsn === "1.0.0" ? toV1(reply, "<<") : reply;
    const got = await c.next();
    if (got !== expected) {
      throw new Error(`[${label}] end of script: unexpected frame\n  expected: ${expected}\n  got:      ${fmt(got)}`);
    }
    c.close();
  }
  return clients;
}

function mustClient(clients, label, where) {
  const c = clients.get(label);
  if (!c) throw new Error(`${where}: client ${label} was never opened`);
  return c;
}

function fmt(frame) {
  return typeof frame === "string" ? frame : `<binary ${frame.binary.toString("hex")}>`;
}

// ---------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------

/**
 * Sends a WebSocket upgrade request over plain HTTP and resolves with
 * `{statusCode, headers, upgraded}` (upgraded = the server answered 101).
 */
export function rawUpgrade(httpUrl, pathAndQuery, extraHeaders = {}) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.request(`${httpUrl}${pathAndQuery}`, {
        headers: {
          Connection: "Upgrade",
          Upgrade: "websocket",
          "Sec-WebSocket-Version": "13",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
          ...extraHeaders,
        },
      });
      req.on("upgrade", (res, socket) => {
        socket.destroy();
        resolve({ statusCode: res.statusCode, headers: res.headers, upgraded: true });
      });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ statusCode: res.statusCode, headers: res.headers, body, upgraded: false }));
      });
      req.on("error", reject);
      req.end();
    }),
    TIMEOUT_MS,
    `upgrade ${pathAndQuery}`,
  );
}

/**
 * The second `Sec-WebSocket-Protocol` entry the phoenix client sends for `authToken`:
 * the prefix, then `btoa(token)` without `=` padding (exactly what phoenix.js does).
 */
export function authProtocol(token) {
  return `base64url.bearer.phx.${Buffer.from(token).toString("base64").replace(/=/g, "")}`;
}

/** A topic name no other test uses. */
let topicSeq = 0;
export function uniqueTopic(prefix) {
  topicSeq += 1;
  return `room:${prefix}-${process.pid}-${topicSeq}`;
}

// ---------------------------------------------------------------------------------------
// The server seen from /proc (Linux): its process, its memory, TCP queues
// ---------------------------------------------------------------------------------------

const TCP_LISTEN = "0A";

/**
 * Every TCP socket of the machine from /proc/net/tcp and /proc/net/tcp6, as
 * `{localPort, remotePort, state, txQueue, rxQueue, inode}`; `state` is the kernel's hex
 * code ("01" established, "0A" listening), `rxQueue` the bytes received and not yet read
 * by the application (for a listening socket: its accept backlog).
 */
export function tcpSockets() {
  const out = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue; // no IPv6
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [txQueue, rxQueue] = f[4].split(":").map((h) => parseInt(h, 16));
      out.push({
        localPort: parseInt(f[1].split(":")[1], 16),
        remotePort: parseInt(f[2].split(":")[1], 16),
        state: f[3],
        txQueue,
        rxQueue,
        inode: f[9],
      });
    }
  }
  return out;
}

/**
 * The pid of the process that listens on TCP `port`. For the conformance app that is the
 * BEAM (`beam.smp`), whose engine owns the listening socket, however the app was started
 * (`mix` execs into it today; a wrapper or a release would not change the answer), and
 * also for a server given by FENIX_CONFORMANCE_URL. Throws if no process of this user
 * holds that socket.
 */
export function listenerPid(port) {
  const listening = tcpSockets().filter((s) => s.state === TCP_LISTEN && s.localPort === port);
  const wanted = new Set(listening.map((s) => `socket:[${s.inode}]`));
  if (wanted.size === 0) throw new Error(`nothing listens on port ${port}`);
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds;
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // gone, or another user's
    }
    for (const fd of fds) {
      try {
        if (wanted.has(fs.readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // closed meanwhile
      }
    }
  }
  throw new Error(`no process of this user holds the socket listening on port ${port}`);
}

/** The command name of `pid` (`/proc/<pid>/comm`), e.g. "beam.smp". */
export function processName(pid) {
  return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
}

/** Resident memory of `pid` (VmRSS from /proc/<pid>/status), in bytes. */
export function rssBytes(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB$/m);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}
