// The chat demo (examples/chat, `PORT=<port> mix run --no-halt`) in headless Chromium:
// two pages join room:lobby through the unmodified phoenix.js; a message typed in one
// appears in the other; each page's "online" list (the client's Presence) shows who is in
// the room, and follows pages that open and close; a page whose WebSocket is refused falls
// back to long-poll and chats with the others.
//
// Run: node --test test/js/browser.test.mjs
//   FENIX_CHAT_URL=http://127.0.0.1:4000  use a chat demo that is already running
//   CHROMIUM=/path/to/chromium            default /usr/bin/chromium
//   FENIX_SCREENSHOTS=/some/dir            where the screenshot goes (default: the OS temp dir)

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, startChat } from "./helpers.mjs";

const T = { timeout: 60_000 };
const WAIT = { timeout: 15_000 };

let chat;
let browser;
const pageErrors = [];

before(
  async () => {
    chat = await startChat();
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  },
  { timeout: 150_000 },
);

after(async () => {
  await browser?.close();
  await chat?.stop();
});

/** A fresh browser context (own storage) with one page, errors recorded. */
async function openPage(query, beforeLoad = () => {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  beforeLoad(page);
  page.on("pageerror", (err) => pageErrors.push(`${query}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") pageErrors.push(`${query}: console: ${msg.text()}`);
  });
  await page.goto(`${chat.url}/${query}`);
  return page;
}

const joined = (page) => page.locator('[data-testid="status"][data-state="joined"]').waitFor(WAIT);

async function say(page, text) {
  const input = page.locator('[data-testid="message-input"]');
  await input.fill(text);
  await input.press("Enter");
}

/** Waits for a message with this body and returns its user. */
async function seen(page, text) {
  const message = page.locator('[data-testid="message"]').filter({
    has: page.locator('[data-testid="message-body"]', { hasText: text }),
  });
  await message.first().waitFor(WAIT);
  assert.equal(await message.count(), 1, `"${text}" rendered once`);
  return (await message.locator('[data-testid="message-user"]').textContent()).trim();
}

/** The entry of `user` in the page's online list. */
const onlineEntry = (page, user) => page.locator(`[data-testid="online-user"][data-user="${user}"]`);

/** The names in the page's online list, in its order. */
async function onlineNames(page) {
  return (await page.locator('[data-testid="online-name"]').allTextContents()).map((t) => t.trim());
}

describe("chat demo in headless Chromium", () => {
  it("serves the page and the unmodified phoenix.js (global Phoenix)", T, async () => {
    const page = await openPage("?name=probe");
    assert.equal(await page.evaluate(() => typeof window.Phoenix?.Socket), "function");
    const res = await fetch(`${chat.url}/phoenix.js`);
    assert.equal(res.status, 200);
    const served = await res.text();
    const shipped = await fs.readFile(path.join(ROOT, "node_modules/phoenix/priv/static/phoenix.js"), "utf8");
    assert.ok(served === shipped, "/phoenix.js is node_modules/phoenix/priv/static/phoenix.js, unmodified");
    await joined(page);
    await page.context().close();
  });

  it("a message typed in one page appears in the other (and in the sender's)", T, async () => {
    const alice = await openPage("?name=alice");
    const bob = await openPage("?name=bob");
    await Promise.all([joined(alice), joined(bob)]);

    const hello = `hello from alice ${Date.now()}`;
    await say(alice, hello);
    assert.equal(await seen(bob, hello), "alice");
    assert.equal(await seen(alice, hello), "alice");
    // The input is cleared after sending.
    assert.equal(await alice.locator('[data-testid="message-input"]').inputValue(), "");

    const reply = `hi alice, bob here ${Date.now()}`;
    await say(bob, reply);
    assert.equal(await seen(alice, reply), "bob");
    assert.equal(await seen(bob, reply), "bob");

    // Markup in a message is shown as text, not interpreted.
    const markup = `<b id="injected">bold?</b> ${Date.now()}`;
    await say(alice, markup);
    assert.equal(await seen(bob, markup), "alice");
    assert.equal(await bob.locator("#injected").count(), 0);

    await alice.context().close();
    await bob.context().close();
  });

  it("without ?name the page asks for a name (default guest-NNNN), then joins", T, async () => {
    const page = await openPage("");
    const nameInput = page.locator('[data-testid="name-input"]');
    await nameInput.waitFor(WAIT);
    assert.match(await nameInput.inputValue(), /^guest-\d{4}$/);
    await nameInput.fill("carol");
    await page.locator('[data-testid="join"]').click();
    await joined(page);
    assert.equal(await page.locator('[data-testid="me"]').textContent(), "carol");

    const other = await openPage("?name=dave");
    await joined(other);
    const text = `carol was here ${Date.now()}`;
    await say(page, text);
    assert.equal(await seen(other, text), "carol");

    await page.context().close();
    await other.context().close();
  });

  it("the online list shows a page that joins and drops it when the page closes", T, async (t) => {
    // Names of this run only: other tests' pages may still be leaving the lobby.
    const stamp = Date.now() % 10_000;
    const erin = `erin-${stamp}`;
    const frank = `frank-${stamp}`;
    const first = await openPage(`?name=${erin}`);
    await joined(first);
    await onlineEntry(first, erin).waitFor(WAIT);
    assert.ok((await first.locator('[data-testid="online-user"].online__user--me').allTextContents()).includes(erin), "own name marked");

    const second = await openPage(`?name=${frank}`);
    await joined(second);
    await onlineEntry(first, frank).waitFor(WAIT);
    await onlineEntry(second, erin).waitFor(WAIT);
    for (const page of [first, second]) {
      const names = await onlineNames(page);
      assert.ok(names.includes(erin) && names.includes(frank), `both online: ${names}`);
      assert.equal(await page.locator('[data-testid="online-count"]').textContent(), String(names.length));
    }

    const hello = `frank says hi ${stamp}`;
    await say(second, hello);
    assert.equal(await seen(first, hello), frank);
    const shot = path.join(process.env.FENIX_SCREENSHOTS || os.tmpdir(), "fenix-chat-online.png");
    await first.screenshot({ path: shot });
    t.diagnostic(`screenshot: ${shot}`);

    await second.context().close();
    await onlineEntry(first, frank).waitFor({ ...WAIT, state: "detached" });
    const names = await onlineNames(first);
    assert.ok(names.includes(erin) && !names.includes(frank), `frank gone, erin stays: ${names}`);
    assert.equal(await first.locator('[data-testid="online-count"]').textContent(), String(names.length));

    await first.context().close();
  });

  it("one name in two tabs is one entry that counts its tabs", T, async () => {
    const stamp = Date.now() % 10_000;
    const gina = `gina-${stamp}`;
    const watcher = await openPage(`?name=watcher-${stamp}`);
    const tab1 = await openPage(`?name=${gina}`);
    const tab2 = await openPage(`?name=${gina}`);
    await Promise.all([joined(watcher), joined(tab1), joined(tab2)]);

    const entry = onlineEntry(watcher, gina);
    await entry.filter({ hasText: "×2" }).waitFor(WAIT);
    assert.equal(await entry.count(), 1, "one entry per name");

    await tab2.context().close();
    await entry.filter({ hasNotText: "×" }).waitFor(WAIT);
    assert.equal(await entry.count(), 1, "still online in the other tab");

    await watcher.context().close();
    await tab1.context().close();
  });

  it("a page whose WebSocket is refused falls back to long-poll (longPollFallbackMs) and chats with the others", T, async () => {
    const watcher = await openPage("?name=watcher");
    await joined(watcher);
    // Its own context, errors not recorded: the refused WebSocket is logged by Chromium.
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${chat.url}/?name=fallback`);
    const result = await page.evaluate(async () => {
      // The page's WebSocket goes to a path that answers 404, as behind a proxy that
      // refuses upgrades; phoenix.js then falls back to its LongPoll transport.
      class Refused extends WebSocket {
        constructor(url, protocols) {
          super(url.replace("/socket/websocket", "/refused/websocket"), protocols);
        }
      }
      const socket = new window.Phoenix.Socket("/socket", { transport: Refused, longPollFallbackMs: 300, params: { user_id: "fallback" } });
      socket.connect();
      const channel = socket.channel("room:lobby", {});
      const within = (promise, what) =>
        Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), 10_000))]);
      await within(new Promise((resolve, reject) => channel.join().receive("ok", resolve).receive("error", reject)), "join");
      const echoed = new Promise((resolve) => channel.on("shout", (payload) => payload.body === "over long-poll" && resolve(payload)));
      channel.push("shout", { body: "over long-poll" });
      const shout = await within(echoed, "own shout");
      return { longPoll: socket.conn instanceof window.Phoenix.LongPoll, user: shout.user };
    });
    assert.deepEqual(result, { longPoll: true, user: "fallback" });
    assert.equal(await seen(watcher, "over long-poll"), "fallback", "a WebSocket page sees the long-poll page's message");
    await context.close();
    await watcher.context().close();
  });

  it("the demo forced onto long-poll (?transport=longpoll) chats and shows who is online", T, async () => {
    const stamp = Date.now() % 10_000;
    const [ws, lp] = [`ws-${stamp}`, `lp-${stamp}`];
    const watcher = await openPage(`?name=${ws}`);
    const seenTransports = { longPoll: 0, webSockets: 0 };
    const polling = await openPage(`?name=${lp}&transport=longpoll`, (page) => {
      page.on("request", (request) => request.url().includes("/socket/longpoll") && (seenTransports.longPoll += 1));
      page.on("websocket", () => (seenTransports.webSockets += 1));
    });
    await Promise.all([joined(watcher), joined(polling)]);
    await onlineEntry(watcher, lp).waitFor(WAIT);
    await onlineEntry(polling, ws).waitFor(WAIT);

    await say(polling, `hello from ${lp}`);
    assert.equal(await seen(watcher, `hello from ${lp}`), lp);
    await say(watcher, `hello from ${ws}`);
    assert.equal(await seen(polling, `hello from ${ws}`), ws);
    assert.ok(seenTransports.longPoll > 0 && seenTransports.webSockets === 0, JSON.stringify(seenTransports));

    await polling.context().close();
    // A long-poll session ends when nobody polls it for 1.5 windows (15 s by default).
    await onlineEntry(watcher, lp).waitFor({ timeout: 30_000, state: "detached" });
    await watcher.context().close();
  });

  it("no script errors in any page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
