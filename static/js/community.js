// What the community screens share (docs/community.md): bylines with rank and level, times (how
// long ago; an event's time in the viewer's own time zone), the server's Markdown HTML, forms that
// keep the member's text when the server refuses it and say why under each field, the "N new"
// bar, and following `live:` streams through the app's one websocket.
//
// Following a stream (`liveStreams`): the view subscribes before it reads over HTTP and holds
// back the pushes that arrive meanwhile, so nothing falls between the read and the subscription;
// after a reconnect live.js resubscribes with `since`: what the server still holds is replayed,
// otherwise (`recovered: false`) the view reads its data over HTTP again. The screen says it is
// following everything by `data-live="ready"` on its root.

import { errorText } from "./api.js";
import { ago, append, avatar, h, profilePath, toast } from "./dom.js";
import { refusalText } from "./reactions.js";
import { live, session } from "./session.js";
import { fieldCounter } from "./textlimit.js";

export const LIMITS = { threadTitle: 200, threadBody: 10000, reply: 5000, post: 2000, comment: 1000, groupName: 64,
  groupDescription: 2000, eventTitle: 200, eventDescription: 5000 };
export const POST_IMAGE_MAX_BYTES = 8 * 1024 * 1024;
export const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
const REFRESH_TIMES_MS = 30 * 1000;
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const number = new Intl.NumberFormat();

// replaceChildren, but like h(): null and false children are left out (the DOM would write "null").
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const formatNumber = (value) => number.format(Number(value) || 0);
export const plural = (count, one, many = `${one}s`) => `${formatNumber(count)} ${Number(count) === 1 ? one : many}`;

// --- who and when --------------------------------------------------------------------------------

export function displayName(author) {
  return author ? author.display_name || author.username : "Deleted member";
}

// A rank an admin gave the member, in its colour (CSSOM: the CSP allows no inline style attribute).
export function rankChip(rank) {
  if (!rank) return null;
  const chip = h("span", { class: "rank-chip", title: rank.name }, rank.badge ? `${rank.badge} ${rank.name}` : rank.name);
  chip.style.color = rank.colour;
  chip.style.borderColor = rank.colour;
  return chip;
}

export function levelChip(level) {
  if (level === undefined || level === null) return null;
  return h("span", { class: "level-chip", title: `Level ${level}`, "aria-label": `level ${level}` }, `Lv ${level}`);
}

// "5 min ago", with the full date on hover; `refreshTimes` keeps the words true while a screen stays.
export function stamp(value, prefix = "") {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  return h("time", { class: "ago", datetime: date.toISOString(), title: full.format(date), "data-prefix": prefix },
    `${prefix}${ago(value)}`);
}

export function refreshTimes(root) {
  for (const el of root.querySelectorAll("time.ago")) el.textContent = `${el.dataset.prefix || ""}${ago(el.dateTime)}`;
}

// Keeps a screen's "N min ago" current (text only, no request) until the view is left.
export function keepTimesFresh(ctx, root) {
  const timer = setInterval(() => refreshTimes(root), REFRESH_TIMES_MS);
  ctx.onLeave(() => clearInterval(timer));
}

// The author's picture and name (links to the profile), rank, level, then when. `onEdited`: the
// "(edited)" mark is a button that opens the edit history (for those who may read it).
export function byline(author, at, { edited = null, small = false, onEdited = null } = {}) {
  const name = displayName(author);
  const parts = author
    ? [h("a", { class: "avatar-link", href: profilePath(author.username), "data-link": true, tabindex: "-1",
      "aria-hidden": "true" }, avatar(author)),
    h("a", { class: "who", href: profilePath(author.username), "data-link": true, title: `@${author.username}` }, name),
    rankChip(author.rank), levelChip(author.level)]
    : [avatar(null), h("span", { class: "who muted" }, name)];
  return h("div", { class: `byline${small ? " small" : ""}` }, ...parts, stamp(at), editedMark(edited, onEdited));
}

function editedMark(edited, onEdited) {
  if (!edited) return null;
  const title = `Edited ${full.format(new Date(edited))}`;
  if (!onEdited) return h("span", { class: "edited", title }, "(edited)");
  const button = h("button", { class: "edited edited-button", type: "button", title, "aria-haspopup": "dialog",
    "aria-label": "Edited: show the edit history" }, "(edited)");
  button.addEventListener("click", () => onEdited(button));
  return button;
}

// Event times, always in the viewer's time zone (the browser's), with the zone's name.
const eventDay = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric" });
const eventTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const eventZone = new Intl.DateTimeFormat(undefined, { hour: "2-digit", timeZoneName: "short" });

function zoneName(date) {
  return eventZone.formatToParts(date).find((part) => part.type === "timeZoneName")?.value || "";
}

export function eventWhen(startsAt, endsAt) {
  const start = new Date(startsAt);
  const end = endsAt ? new Date(endsAt) : null;
  if (Number.isNaN(start.getTime())) return "";
  const sameDay = end && eventDay.format(start) === eventDay.format(end);
  const first = `${eventDay.format(start)}, ${eventTime.format(start)}`;
  const last = !end ? "" : sameDay ? eventTime.format(end) : `${eventDay.format(end)}, ${eventTime.format(end)}`;
  return `${first}${last ? ` – ${last}` : ""} ${zoneName(start)}`.trim();
}

export function eventTimeEl(event) {
  return h("time", { class: "event-when", datetime: new Date(event.starts_at).toISOString() },
    eventWhen(event.starts_at, event.ends_at));
}

export function viewerTimeZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch { return null; }
}

// A `datetime-local` value ("2030-06-01T19:00") as ISO 8601 with this device's offset for that date.
export function localIso(value) {
  if (!value) return "";
  const date = new Date(value); // a date-time without an offset is local time
  if (Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
    + `${pad(date.getMinutes())}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// An ISO time as a `datetime-local` value in this device's time zone ("2030-06-01T19:00"): what
// `localIso` reads back, so an untouched field sends the same instant.
export function localInput(value) {
  const date = new Date(value);
  if (!value || Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
    + `${pad(date.getMinutes())}`;
}

// --- the server's Markdown ------------------------------------------------------------------------

// The `html` field only: rendered and sanitized by the server (allow-list). Links into the app
// (`/u/<name>` mentions) stay in the app; every other text of the community goes in as text.
export function markdown(html) {
  const el = h("div", { class: "md" });
  el.innerHTML = html || "";
  for (const link of el.querySelectorAll("a[href]")) {
    if (link.getAttribute("href").startsWith("/") && !link.getAttribute("href").startsWith("//")) link.dataset.link = "";
  }
  return el;
}

// --- forms ----------------------------------------------------------------------------------------

// A pydantic reason reads "Value error, The title …": the member needs the sentence only.
export function reason(detail) {
  return String(detail.message || "").replace(/^Value error,\s*/i, "");
}

let fieldIds = 0;

// A labelled input or textarea with its counter (when `max` is given) and its error line.
export function textField(label, { name, max = null, rows = 0, hint = null, value = "", type = "text", required = true,
  attrs = {} } = {}) {
  const id = `f${++fieldIds}`;
  const input = rows
    ? h("textarea", { name, rows, required, id, ...attrs })
    : h("input", { name, type, required, id, autocomplete: "off", ...attrs });
  input.value = value;
  const count = max ? h("p", { class: "counter field-count", id: `${id}-count`, "aria-live": "polite" }) : null;
  const error = h("p", { class: "error field-error", id: `${id}-error`, role: "alert", hidden: true });
  input.setAttribute("aria-describedby", [count ? count.id : null, error.id].filter(Boolean).join(" "));
  const showCount = () => {
    if (!count) return { over: false };
    const state = fieldCounter(input.value.trim(), max);
    count.textContent = state.text;
    count.classList.toggle("error", state.over);
    return state;
  };
  input.addEventListener("input", showCount);
  showCount();
  const el = h("div", { class: "field", "data-field": name },
    h("label", { for: id }, label, hint ? h("span", { class: "hint" }, hint) : null), input, count, error);
  return { el, input, count, error, showCount, name };
}

// A labelled <select> with its error line, in the shape `formState` takes (a choice is never over a limit).
export function selectField(label, { name, options, value = null, hint = null } = {}) {
  const id = `f${++fieldIds}`;
  const error = h("p", { class: "error field-error", id: `${id}-error`, role: "alert", hidden: true });
  const input = h("select", { name, id, "aria-describedby": error.id },
    options.map(([key, text]) => h("option", { value: key }, text)));
  if (value !== null) input.value = value;
  const el = h("div", { class: "field", "data-field": name },
    h("label", { for: id }, label, hint ? h("span", { class: "hint" }, hint) : null), input, error);
  return { el, input, count: null, error, showCount: () => ({ over: false }), name };
}

function say(line, text) {
  line.hidden = !text;
  line.textContent = text || "";
}

// The form's state: errors under their fields (`details[].field`, first part), the rest in the
// general line; the member's text is never cleared on a refusal. `run` answers true when it worked.
export function formState(fields, general) {
  const byName = new Map(fields.filter(Boolean).map((f) => [f.name, f]));
  const clear = () => {
    say(general, "");
    for (const f of byName.values()) { say(f.error, ""); f.input.removeAttribute("aria-invalid"); }
  };
  const show = (error) => {
    const rest = [];
    for (const detail of error.details || []) {
      const path = String(detail.field || "");
      const f = byName.get(path) || byName.get(path.split(".")[0]) || byName.get(path.split(".").pop());
      if (f) {
        say(f.error, [f.error.textContent, reason(detail)].filter(Boolean).join(" "));
        f.input.setAttribute("aria-invalid", "true");
      } else rest.push(detail);
    }
    if (rest.length || !(error.details || []).length) {
      say(general, error.code || error.status ? errorText({ message: error.message, details: rest }) : refusalText(error));
    }
    const first = [...byName.values()].find((f) => f.input.getAttribute("aria-invalid") === "true");
    first?.input.focus();
  };
  const over = () => [...byName.values()].some((f) => f.showCount().over);
  return { clear, show, over, say: (text) => say(general, text) };
}

export function generalError() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

// A button that runs an async action once at a time; a refusal goes to `onError` (a toast by default).
export function actionButton(label, run, { kind = "secondary", attrs = {}, onError } = {}) {
  const el = h("button", { class: `btn${kind ? ` ${kind}` : ""}`, type: "button", ...attrs }, label);
  el.addEventListener("click", async () => {
    if (el.disabled) return;
    el.disabled = true;
    try { await run(el); } catch (error) { (onError || ((e) => toast(refusalText(e))))(error); } finally { el.disabled = false; }
  });
  return el;
}

// A picked image, checked and previewed in the page before anything is sent (data: URL: the CSP
// allows data: images, not blob:).
export function imagePicker(label = "Picture (optional)") {
  const field = textField(label, { name: "image", type: "file", required: false,
    attrs: { accept: IMAGE_TYPES.join(",") } });
  const preview = h("div", { class: "image-preview", hidden: true });
  let picked = null;
  const clear = () => { picked = null; field.input.value = ""; preview.hidden = true; fill(preview); };
  const remove = h("button", { class: "btn secondary", type: "button" }, "Remove picture");
  remove.addEventListener("click", clear);
  field.input.addEventListener("change", () => {
    say(field.error, "");
    const file = field.input.files && field.input.files[0];
    picked = null;
    preview.hidden = true;
    if (!file) return;
    if (!IMAGE_TYPES.includes(file.type)) { say(field.error, "Choose a PNG, JPEG or WebP image."); field.input.value = ""; return; }
    if (file.size > POST_IMAGE_MAX_BYTES) { say(field.error, "That image is larger than 8 MB: choose a smaller one."); field.input.value = ""; return; }
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      if (!(field.input.files && field.input.files[0] === file)) return;
      picked = file;
      fill(preview, h("img", { src: reader.result, alt: "Preview of the picture", class: "post-image" }), remove);
      preview.hidden = false;
    });
    reader.addEventListener("error", () => say(field.error, "That file could not be read."));
    reader.readAsDataURL(file);
  });
  field.el.append(preview);
  return { field, get file() { return picked; }, clear };
}

// --- lists ----------------------------------------------------------------------------------------

// "N new posts": shown at the top of a list instead of inserting under the reader's finger; a tap
// shows them (`onShow`). `set(0)` hides it.
export function newBar(noun) {
  const bar = h("button", { class: "new-bar", type: "button", hidden: true, "aria-live": "polite" });
  return {
    el: bar,
    set(count, { unknown = false } = {}) {
      bar.hidden = !count && !unknown;
      bar.textContent = unknown ? `New ${noun}s — show` : `${plural(count, `new ${noun}`)} — show`;
      bar.dataset.count = String(count);
      bar.dataset.unknown = String(Boolean(unknown));
    },
  };
}

export function tabs(items, selected, label, onPick) {
  const bar = h("div", { class: "tabs", role: "tablist", "aria-label": label });
  const paint = (key) => { for (const el of bar.children) el.setAttribute("aria-selected", String(el.dataset.tab === key)); };
  for (const [key, text] of items) {
    const el = h("button", { class: "tab", type: "button", role: "tab", "data-tab": key }, text);
    el.addEventListener("click", () => { paint(key); onPick(key); });
    bar.append(el);
  }
  paint(selected);
  return bar;
}

// The community's sections, above each of its screens.
const SECTIONS = [["/community", "Home"], ["/forum", "Forum"], ["/feed", "Feed"], ["/groups", "Groups"],
  ["/events", "Events"], ["/leaderboard", "Leaderboard"], ["/servers", "Servers"]];

export function subnav(current) {
  return h("nav", { class: "subnav", "aria-label": "Community" }, SECTIONS.map(([href, text]) =>
    h("a", { href, "data-link": true, "aria-current": href === current ? "page" : null }, text)));
}

export function isStaff() {
  return ["admin", "moderator"].includes(session.me?.role);
}

// Forum categories are managed by admins (`admin.forum.manage`); the server checks again.
export function isAdmin() {
  return session.me?.role === "admin";
}

export function isMe(author) {
  return Boolean(author && session.me && author.username.toLowerCase() === session.me.username.toLowerCase());
}

// --- live streams ---------------------------------------------------------------------------------

let holders = 0;

// Follows `live:` channels for one view: `follow(channel)` subscribes, `settled()` waits for the
// server's confirmation (then the view reads over HTTP); pushes go to `onEvent(channel, data)` once
// `ready()` was called (held back until then); `onReset(channel)` when a gap could not be replayed
// (read over HTTP again); everything is let go when the view is. Channels of items found by the
// read (each post of a list) are followed after it: their counts are as fresh as that read.
export function liveStreams(ctx, root, { onEvent, onReset = () => {}, onRefused = () => {} }) {
  const holder = `community-${++holders}`;
  const channels = new Set();
  let held = [];
  let isReady = false;
  // Several parts of one screen may follow streams (a group and its posts): ready when all are.
  const part = { settled: () => isReady && [...channels].every((c) => live.isSubscribed(c)) };
  root.liveParts ||= new Set();
  root.liveParts.add(part);
  const paint = () => {
    root.dataset.live = [...root.liveParts].every((p) => p.settled()) ? "ready" : "waiting";
  };
  const onMessage = (event) => {
    const { channel, frame } = event.detail;
    if (!channels.has(channel)) return;
    const data = frame.data || {};
    if (!isReady) held.push([channel, data]);
    else onEvent(channel, data);
  };
  const early = new Set(); // followed before the HTTP read: their first confirmation should precede it
  const confirmed = new Set();
  let waiters = [];
  const onSubscribed = (event) => {
    const { channel } = event.detail;
    if (!channels.has(channel)) return;
    // Confirmed only after the screen's read (offline, a slow connection): the read may be older
    // than the subscription, so the screen reads again.
    if (!confirmed.has(channel) && early.has(channel) && isReady) onReset(channel);
    confirmed.add(channel);
    paint();
    for (const wake of waiters) wake();
  };
  const onState = () => { paint(); for (const wake of waiters) wake(); };
  const onLiveReset = (event) => { if (channels.has(event.detail.channel) && isReady) onReset(event.detail.channel); };
  const onLiveRefused = (event) => {
    if (!channels.has(event.detail.channel)) return;
    channels.delete(event.detail.channel);
    live.unsubscribe(event.detail.channel, holder);
    onRefused(event.detail.channel, event.detail.error);
    paint();
  };
  live.addEventListener("message", onMessage);
  live.addEventListener("subscribed", onSubscribed);
  live.addEventListener("state", onState);
  live.addEventListener("reset", onLiveReset);
  live.addEventListener("refused", onLiveRefused);
  ctx.onLeave(() => {
    live.removeEventListener("message", onMessage);
    live.removeEventListener("subscribed", onSubscribed);
    live.removeEventListener("state", onState);
    live.removeEventListener("reset", onLiveReset);
    live.removeEventListener("refused", onLiveRefused);
    for (const channel of channels) live.unsubscribe(channel, holder);
    channels.clear();
    root.liveParts.delete(part);
  });
  paint();
  return {
    follow(channel) {
      if (channels.has(channel)) return;
      channels.add(channel);
      if (!isReady) early.add(channel);
      if (live.isSubscribed(channel)) confirmed.add(channel); // another part of the page follows it already
      live.subscribe(channel, null, holder);
      paint();
    },
    // Wait (a moment at most, and not while offline) until the server confirmed every channel
    // followed so far: the HTTP read that follows then cannot miss a change between the two. A
    // page load's socket is still connecting when the screen mounts: that is worth the wait.
    settled(timeout = 2000) {
      const waiting = ["connecting", "reconnecting", "connected"].includes(live.state); // offline: read the cache now
      const done = () => !waiting || ["offline", "closed", "idle"].includes(live.state)
        || [...channels].every((c) => confirmed.has(c) || live.isSubscribed(c));
      if (done()) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(finish, timeout);
        function finish() { clearTimeout(timer); waiters = waiters.filter((w) => w !== check); resolve(); }
        function check() { if (done()) finish(); }
        waiters.push(check);
      });
    },
    drop(channel) {
      if (!channels.delete(channel)) return;
      live.unsubscribe(channel, holder);
      paint();
    },
    has: (channel) => channels.has(channel),
    // The HTTP read is in: apply what arrived meanwhile, then every push as it comes.
    ready() {
      isReady = true;
      const queued = held;
      held = [];
      for (const [channel, data] of queued) onEvent(channel, data);
      paint();
    },
  };
}

// A destructive action asked once more in place: "Delete" turns into the question, the button that
// does it and "Cancel" (the safe default, focused).
export function confirmAction(label, question, run, { attrs = {} } = {}) {
  const box = h("span", { class: "confirm-box" });
  const start = h("button", { class: "btn danger", type: "button", ...attrs }, label);
  const reset = () => { box.classList.remove("asking"); fill(box, start); };
  start.addEventListener("click", () => {
    const cancel = h("button", { class: "btn secondary", type: "button" }, "Cancel");
    cancel.addEventListener("click", () => { reset(); start.focus(); });
    const yes = actionButton(label, async () => { await run(); reset(); }, { kind: "danger" });
    box.classList.add("asking");
    fill(box, h("span", { class: "confirm-question", role: "status" }, question), yes, cancel);
    cancel.focus();
  });
  reset();
  return box;
}
