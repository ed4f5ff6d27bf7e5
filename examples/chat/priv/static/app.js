// Fenix chat demo: the unmodified phoenix.js client (global `Phoenix`) talking to a Fenix
// server. Connects to /socket with {user_id: name}, joins room:lobby, sends `shout`
// {body, user} and renders every `shout` broadcast ({user, body}). The "online" list is
// the client's own `Phoenix.Presence` of the channel (presence_state, then presence_diff),
// redrawn on each sync: one entry per name, with its number of tabs when more than one.
(function () {
  "use strict";

  const TOPIC = "room:lobby";
  const $ = (id) => document.getElementById(id);

  const statusEl = $("status");
  const nameForm = $("name-form");
  const nameInput = $("name");
  const room = $("room");
  const messages = $("messages");
  const messageForm = $("message-form");
  const messageInput = $("message");
  const me = $("me");
  const onlineList = $("online-list");
  const onlineCount = $("online-count");

  let name = null;
  let channel = null;

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  function defaultName() {
    const params = new URLSearchParams(window.location.search);
    return (
      params.get("name") ||
      safeStorage("get") ||
      "guest-" + String(1000 + Math.floor(Math.random() * 9000))
    );
  }

  // localStorage can throw (privacy modes, file://): the name is a convenience only.
  function safeStorage(op, value) {
    try {
      if (op === "get") return window.localStorage.getItem("fenix-chat:name");
      window.localStorage.setItem("fenix-chat:name", value);
    } catch (_e) {
      return null;
    }
    return null;
  }

  function render(user, body, kind) {
    const li = document.createElement("li");
    li.className = "message" + (kind ? " message--" + kind : "");
    li.dataset.testid = kind === "system" ? "system-message" : "message";
    if (kind !== "system") {
      const who = document.createElement("span");
      who.className = "message__user";
      who.dataset.testid = "message-user";
      who.textContent = user;
      li.appendChild(who);
    }
    const text = document.createElement("span");
    text.className = "message__body";
    text.dataset.testid = "message-body";
    text.textContent = body;
    li.appendChild(text);
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.appendChild(time);

    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    messages.appendChild(li);
    if (atBottom) messages.scrollTop = messages.scrollHeight;
  }

  function system(text) {
    render(null, text, "system");
  }

  function renderOnline(presence) {
    const users = presence
      .list((user, { metas }) => ({ user, tabs: metas.length }))
      .sort((a, b) => a.user.localeCompare(b.user));
    const items = users.map(({ user, tabs }) => {
      const li = document.createElement("li");
      li.className = "online__user" + (user === name ? " online__user--me" : "");
      li.dataset.testid = "online-user";
      li.dataset.user = user;
      const who = document.createElement("span");
      who.dataset.testid = "online-name";
      who.textContent = user;
      li.appendChild(who);
      if (tabs > 1) {
        const count = document.createElement("span");
        count.className = "online__tabs";
        count.textContent = "×" + tabs;
        count.title = tabs + " tabs";
        li.appendChild(count);
      }
      return li;
    });
    onlineList.replaceChildren(...items);
    onlineCount.textContent = String(users.length);
  }

  function start(chosen) {
    name = chosen.trim().slice(0, 40) || defaultName();
    safeStorage("set", name);
    me.textContent = name;
    nameForm.hidden = true;
    room.hidden = false;
    setStatus("connecting", "connecting…");

    // `?transport=longpoll` forces phoenix.js's LongPoll transport (the server has
    // `longpoll: true`); WebSocket otherwise.
    const longPoll = new URLSearchParams(window.location.search).get("transport") === "longpoll";
    const options = { params: { user_id: name }, ...(longPoll ? { transport: window.Phoenix.LongPoll } : {}) };
    const socket = new window.Phoenix.Socket("/socket", options);
    socket.onOpen(() => {
      if (!channel || channel.state !== "joined") setStatus("connected", "connected");
    });
    socket.onError(() => setStatus("error", "connection error, retrying…"));
    socket.onClose(() => setStatus("disconnected", "disconnected, reconnecting…"));
    socket.connect();

    channel = socket.channel(TOPIC, {});
    const presence = new window.Phoenix.Presence(channel);
    presence.onSync(() => renderOnline(presence));
    channel.on("shout", (payload) => {
      render(String(payload.user ?? "?"), String(payload.body ?? ""), payload.user === name ? "mine" : null);
    });
    channel.onError(() => setStatus("error", "channel error, rejoining…"));
    channel
      .join()
      .receive("ok", () => {
        setStatus("joined", "connected as " + name);
        messageInput.focus();
      })
      .receive("error", (resp) => {
        setStatus("error", "could not join");
        system("Could not join " + TOPIC + ": " + ((resp && resp.reason) || "error"));
      })
      .receive("timeout", () => setStatus("error", "join timed out, retrying…"));
  }

  nameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    start(nameInput.value);
  });

  messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = messageInput.value.trim();
    if (!body || !channel) return;
    channel
      .push("shout", { body: body, user: name })
      .receive("error", (resp) => system("Not sent: " + ((resp && resp.reason) || "error")))
      .receive("timeout", () => system("Not sent: the server did not answer"));
    messageInput.value = "";
    messageInput.focus();
  });

  nameInput.value = defaultName();
  if (new URLSearchParams(window.location.search).has("name")) {
    start(nameInput.value);
  } else {
    nameInput.focus();
    nameInput.select();
  }
})();
