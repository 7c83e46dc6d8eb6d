// A room or a direct conversation: live messages, scroll-back, presence, typing and the composer.
// Messages written here go through the outbox (send.js): they show as pending until the server has
// them, whether they leave over the websocket or, offline, through Background Sync later.

import { get, post } from "../api.js";
import { avatar, h, mount, richText, toast, when } from "../dom.js";
import * as outbox from "../outbox.js";
import { send } from "../send.js";
import { bus, live, session } from "../session.js";
import { counter } from "../textlimit.js";
import { track } from "../unread.js";
import { openRoomInfo } from "./roominfo.js";

const PAGE = 50;
const TYPING_SHOWN_MS = 3500;
const TYPING_SEND_MS = 2500;

const ROOM_KEY = (name) => `vonix:room:${name}`;

class NoSuchRoom extends Error {}

// The room's metadata (GET /api/rooms/{name}): a 404 `room_not_found` means no such room (or a
// private one the member is not in). Offline, the copy kept from the last visit stands in.
async function roomMeta(name) {
  try {
    const room = await get(`/api/rooms/${encodeURIComponent(name)}`);
    localStorage.setItem(ROOM_KEY(name), JSON.stringify(room));
    return room;
  } catch (error) {
    if (error.code === "room_not_found") {
      localStorage.removeItem(ROOM_KEY(name));
      throw new NoSuchRoom(name);
    }
    if (error.status && error.status !== 404 && error.status < 500) throw error;
    const cached = localStorage.getItem(ROOM_KEY(name));
    return cached ? JSON.parse(cached) : { channel: `room:${name}`, kind: "room", title: null, topic: null, member: false,
      role: null, offline: true };
  }
}

async function resolveChannel(params) {
  if (params.name) {
    const room = await roomMeta(params.name);
    return { channel: `room:${params.name}`, title: `# ${params.name}`, room: params.name, meta: room };
  }
  const key = `vonix:dm:${params.username.toLowerCase()}`;
  try {
    const { channel } = await post("/api/dms", { username: params.username });
    localStorage.setItem(key, channel);
    return { channel, title: params.username, dm: params.username };
  } catch (error) {
    const cached = localStorage.getItem(key);
    if (cached && !error.status) return { channel: cached, title: params.username, dm: params.username };
    throw error;
  }
}

function noSuchRoom(name) {
  mount(h("section", { class: "card narrow" }, h("h1", {}, "No such room"),
    h("p", {}, `There is no room called # ${name}, or it is private and you are not a member.`),
    h("p", {}, h("a", { class: "btn", href: "/rooms", "data-link": true }, "Back to rooms"))));
  document.title = "Vonix · no such room";
}

export async function chatView(ctx) {
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  mount(h("section", {}, status));
  let target;
  try {
    target = await resolveChannel(ctx.params);
    if (ctx.current && !ctx.current()) return; // navigated elsewhere meanwhile
  } catch (error) {
    if (ctx.current && !ctx.current()) return;
    if (error instanceof NoSuchRoom) return noSuchRoom(ctx.params.name);
    status.textContent = error.message;
    status.className = "error";
    return;
  }
  const { channel } = target;
  const me = session.me;
  const byOffset = new Map();
  const pendingEls = new Map();
  let oldest = null;
  let newest = 0;
  let replyTo = null;
  let lastTypingSent = 0;
  const typers = new Map();

  const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": `Messages in ${target.title}`,
    tabindex: "0" });
  const older = h("button", { class: "btn secondary older", type: "button", hidden: true }, "Load older messages");
  log.append(older);
  const typingLine = h("p", { class: "typing", "aria-live": "polite" });
  const peopleList = h("ul", { class: "list", "aria-label": "Online now" });
  const people = h("aside", { class: "people", hidden: true, id: "people" }, h("h2", {}, "Online"), peopleList);
  const peopleToggle = h("button", { class: "btn secondary people-toggle", type: "button", "aria-controls": "people",
    "aria-expanded": "false" }, "Online: –");
  // No maxlength: a paste longer than the limit stays whole; the counter says so and Send waits.
  const input = h("textarea", { name: "text", rows: 1, required: true, "aria-label": `Message ${target.title}`,
    placeholder: `Message ${target.title}` });
  const replying = h("p", { class: "replying", hidden: true });
  const count = h("p", { class: "replying counter", id: "composer-count", "aria-live": "polite", hidden: true });
  const sendButton = h("button", { class: "btn", type: "submit" }, "Send");
  const composer = h("form", { class: "composer" }, replying, count, input, sendButton);
  const title = h("h1", {}, target.title);
  if (target.meta?.topic) title.title = target.meta.topic;
  const info = target.room ? h("button", { class: "btn secondary room-info-toggle", type: "button", "aria-haspopup": "dialog",
    "aria-label": `Room info: # ${target.room}`, title: "Members, topic, invite, leave" }, "Info") : null;
  const head = h("div", { class: "chat-head" }, title, h("span", { class: "row" }, peopleToggle, info));
  mount(h("section", { class: "chat" }, head, log, typingLine, composer, people));
  let infoDialog = null;
  info?.addEventListener("click", () => {
    infoDialog = openRoomInfo(target.meta, (room) => { title.title = room.topic || ""; });
  });

  peopleToggle.addEventListener("click", () => {
    people.hidden = !people.hidden;
    peopleToggle.setAttribute("aria-expanded", String(!people.hidden));
  });

  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const toBottom = () => { log.scrollTop = log.scrollHeight; };

  function messageEl({ offset, data, from, ts }, pendingState) {
    const text = (data && typeof data.text === "string") ? data.text : JSON.stringify(data);
    const who = from ? from.username : "Vonix";
    const quote = data && data.reply_to ? byOffset.get(data.reply_to) : null;
    const el = h("article", { class: "msg", "data-offset": offset ?? "", "data-cid": data?.cid ?? "", id: offset ? `m${offset}` : null,
      "aria-label": `${who}` },
    avatar(from || { username: "Vonix" }),
    h("div", { class: "meta" }, h("span", { class: "who" }, who), ts ? when(ts) : null,
      pendingState ? h("span", { class: "state", role: "status" }, pendingState) : null,
      h("span", { class: "actions" }, h("button", { type: "button", "aria-label": `Reply to ${who}` }, "Reply"))),
    data && data.reply_to ? h("div", { class: "quote" }, quote ? `↪ ${quote.dataset.who}: ${quote.dataset.text}` : `↪ message ${data.reply_to}`) : null,
    h("div", { class: "text" }, richText(text, me && me.username)));
    el.dataset.who = who;
    el.dataset.text = text.slice(0, 80);
    if (pendingState) el.classList.add("pending");
    el.querySelector(".actions button").addEventListener("click", () => {
      if (!el.dataset.offset) return toast("You can reply once the message is sent.");
      replyTo = { offset: Number(el.dataset.offset), who };
      replying.hidden = false;
      replying.replaceChildren(h("span", { class: "replying-to" }, "Replying to ", h("span", { class: "who" }, who)), h("button", { type: "button", class: "btn secondary", onclick: clearReply },
        "Cancel reply"));
      input.focus();
    });
    return el;
  }

  function clearReply() { replyTo = null; replying.hidden = true; replying.replaceChildren(); }

  function insert(el, offset) {
    // Keep offset order; pending (unsent) messages stay below every sent one.
    let before = null;
    for (const child of [...log.children].reverse()) {
      const other = child.dataset.offset;
      if (child === older) break;
      if (!other || Number(other) > offset) before = child;
      else break;
    }
    log.insertBefore(el, before);
  }

  function addMessage(frame) {
    if (byOffset.has(frame.offset)) return;
    const stick = atBottom();
    const pending = frame.data && frame.data.cid ? pendingEls.get(frame.data.cid) : null;
    if (pending) { pending.remove(); pendingEls.delete(frame.data.cid); }
    const el = messageEl(frame);
    byOffset.set(frame.offset, el);
    insert(el, frame.offset);
    newest = Math.max(newest, frame.offset);
    oldest = oldest === null ? frame.offset : Math.min(oldest, frame.offset);
    if (stick || pending) toBottom();
    markRead();
  }

  function addPending(item, state = "Waiting to send") {
    if (pendingEls.has(item.cid)) return;
    const el = messageEl({ data: item.data, from: me, ts: item.created / 1000 }, state);
    pendingEls.set(item.cid, el);
    log.append(el);
    toBottom();
  }

  // Read markers: only while this conversation is on screen (tab visible); live.read coalesces
  // them (one `read` op per second at most) and flushes when the view is left or the tab hidden.
  function markRead() {
    if (newest && document.visibilityState === "visible") live.read(channel, newest);
  }
  const onVisible = () => { if (document.visibilityState === "visible") markRead(); };
  document.addEventListener("visibilitychange", onVisible);

  async function loadLatest() {
    const page = await get(`/api/channels/${encodeURIComponent(channel)}/messages?limit=${PAGE}`);
    // Messages that arrived live while the page was on its way are newer than the page: keep them
    // (dropping them lost a message sent while a conversation was still opening).
    for (const [offset, el] of byOffset) {
      if (offset <= page.offset) { el.remove(); byOffset.delete(offset); }
    }
    oldest = byOffset.size ? Math.min(...byOffset.keys()) : null;
    for (const frame of page.messages) addMessage(frame);
    older.hidden = !page.next_before;
    toBottom();
    return page;
  }

  older.addEventListener("click", async () => {
    try {
      const page = await get(`/api/channels/${encodeURIComponent(channel)}/messages?limit=${PAGE}&before=${oldest}`);
      const height = log.scrollHeight;
      for (const frame of page.messages) addMessage(frame);
      older.hidden = !page.next_before;
      log.scrollTop += log.scrollHeight - height;
    } catch (e) { toast(`Older messages could not be loaded: ${e.message}`); }
  });
  const sentinel = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !older.hidden) older.click();
  }, { root: log });
  sentinel.observe(older);

  function renderPeople(users) {
    peopleList.replaceChildren(...users.map((u) => h("li", { "data-user": u.id }, u.username,
      me && u.id === me.id ? h("span", { class: "you" }, " (you)") : null)));
    peopleToggle.textContent = `Online: ${users.length}`;
    peopleToggle.removeAttribute("title");
  }
  // Without a live connection nobody's presence is known: say so rather than show a stale count.
  function presenceUnknown() {
    present.clear();
    const why = navigator.onLine ? "presence unknown while disconnected" : "presence unknown while offline";
    peopleList.replaceChildren(h("li", { class: "muted" }, why[0].toUpperCase() + why.slice(1)));
    peopleToggle.textContent = "Online: –";
    peopleToggle.title = why;
  }
  const present = new Map();
  const onState = (event) => { if (event.detail.state !== "connected") presenceUnknown(); };
  const onSubscribed = async (event) => {
    if (event.detail.channel !== channel) return;
    try {
      const reply = await live.presence(channel);
      present.clear();
      for (const u of reply.users) present.set(u.id, u);
      renderPeople([...present.values()]);
    } catch { /* presence is best effort */ }
  };
  const onPresence = (event) => {
    const { channel: ch, frame } = event.detail;
    if (ch !== channel || !live.connected) return;
    for (const user of frame.leaves) present.delete(user.id);
    for (const user of frame.joins) present.set(user.id, user);
    renderPeople([...present.values()]);
  };
  const showTyping = () => {
    const names = [...typers.keys()];
    typingLine.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
      : `${names.join(", ")} are typing…`;
  };
  const onTyping = (event) => {
    const { channel: ch, frame } = event.detail;
    if (ch !== channel || (me && frame.user.id === me.id)) return;
    clearTimeout(typers.get(frame.user.username));
    typers.set(frame.user.username, setTimeout(() => { typers.delete(frame.user.username); showTyping(); }, TYPING_SHOWN_MS));
    showTyping();
  };
  const onMessage = (event) => {
    if (event.detail.channel !== channel) return;
    const frame = event.detail.frame;
    if (frame.from && typers.has(frame.from.username)) { clearTimeout(typers.get(frame.from.username)); typers.delete(frame.from.username); showTyping(); }
    addMessage(frame);
  };
  const onReset = async (event) => { if (event.detail.channel === channel) await loadLatest().catch(() => {}); };
  const onAdded = (event) => { if (event.detail.channel === channel) addPending(event.detail); };
  const onSent = (event) => {
    const { cid, offset } = event.detail;
    const el = pendingEls.get(cid);
    if (!el) return;
    if (byOffset.has(offset)) { el.remove(); pendingEls.delete(cid); return; }
    el.querySelector(".state").textContent = "Sent";
  };
  const onFailed = (event) => {
    const el = pendingEls.get(event.detail.cid);
    if (!el) return;
    el.classList.add("failed");
    const state = el.querySelector(".state");
    state.textContent = `Not sent: ${event.detail.error}`;
    state.classList.add("failed");
  };
  live.addEventListener("state", onState);
  live.addEventListener("subscribed", onSubscribed);
  live.addEventListener("presence_diff", onPresence);
  live.addEventListener("typing", onTyping);
  live.addEventListener("message", onMessage);
  live.addEventListener("reset", onReset);
  bus.addEventListener("outbox-added", onAdded);
  bus.addEventListener("outbox-sent", onSent);
  bus.addEventListener("outbox-failed", onFailed);
  ctx.onLeave(() => {
    live.flushReads(channel);
    live.unsubscribe(channel);
    sentinel.disconnect();
    infoDialog?.close();
    document.removeEventListener("visibilitychange", onVisible);
    live.removeEventListener("state", onState);
    live.removeEventListener("subscribed", onSubscribed);
    live.removeEventListener("presence_diff", onPresence);
    live.removeEventListener("typing", onTyping);
    live.removeEventListener("message", onMessage);
    live.removeEventListener("reset", onReset);
    bus.removeEventListener("outbox-added", onAdded);
    bus.removeEventListener("outbox-sent", onSent);
    bus.removeEventListener("outbox-failed", onFailed);
  });

  function showCount() {
    const state = counter(input.value);
    count.hidden = !state.shown;
    count.textContent = state.text;
    count.classList.toggle("error", state.over);
    sendButton.disabled = state.over;
    if (state.over) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", state.shown ? "composer-count" : "");
    return state;
  }

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    if (showCount().over) { input.focus(); return; } // never cut it short: the member decides
    const data = { text };
    if (replyTo) data.reply_to = replyTo.offset;
    input.value = "";
    showCount();
    clearReply();
    await send(channel, data);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); composer.requestSubmit(); }
  });
  input.addEventListener("input", () => {
    showCount();
    const now = Date.now();
    if (input.value && now - lastTypingSent > TYPING_SEND_MS && live.connected) { lastTypingSent = now; live.typing(channel); }
  });

  // Opening a public room joins it (once: GET /api/rooms/{name} says whether it is needed).
  if (target.room && navigator.onLine && target.meta && !target.meta.member && !target.meta.offline
      && target.meta.kind === "room") {
    post(`/api/rooms/${encodeURIComponent(target.room)}/join`).then(() => {
      target.meta.member = true;
      target.meta.role = target.meta.role || "member";
      track(channel, { kind: "room", lastOffset: newest });
    }).catch(() => {});
  }
  presenceUnknown();
  let page = null;
  try {
    page = await loadLatest();
  } catch (error) {
    log.append(h("p", { class: "error", role: "alert" }, navigator.onLine ? `Messages could not be loaded: ${error.message}`
      : "You are offline and this conversation has not been saved on this device yet."));
  }
  for (const item of await outbox.all(channel)) addPending(item, live.connected ? "Sending…" : "Waiting to send");
  live.subscribe(channel, page ? { offset: page.offset, epoch: page.epoch } : null);
  if (live.isSubscribed(channel)) {
    // Followed already (the unread counts): messages it saw before this view listened are not in
    // a page that came from before them, so load the latest again.
    const position = live.position(channel);
    if (page && position && position.offset > newest) await loadLatest().catch(() => {});
    onSubscribed({ detail: { channel } });
  }
  if (page && (target.dm || target.meta?.member)) {
    track(channel, { kind: target.dm ? "dm" : target.meta.kind, lastOffset: page.offset,
      ...(target.dm ? { user: { username: target.dm } } : {}) });
  }
  markRead();
  if (ctx.hash && /^m\d+$/.test(ctx.hash)) {
    const el = byOffset.get(Number(ctx.hash.slice(1)));
    if (el) { el.classList.add("highlight"); el.scrollIntoView({ block: "center" }); }
  }
  input.focus();
}
