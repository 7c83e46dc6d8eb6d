// Message events (docs/protocol.md, "Message events"): edits, deletes and reactions are messages of
// their own on a channel, whose `data.type` says what they change in the message at `data.target`.
// Here: telling them from messages, changing a message (the websocket op when connected, the REST
// endpoint otherwise), the reaction chips under a message and the "who reacted" list.

import { del, errorText, get, patch, post } from "./api.js";
import { h } from "./dom.js";
import { live, session } from "./session.js";

export const EVENT_TYPES = new Set(["edit", "delete", "reaction"]);
// The picker offers these (the server accepts any single emoji).
export const QUICK = ["👍", "❤️", "😂", "😮", "😢", "🎉", "🔥", "⛏️"];

export function isEvent(data) {
  return Boolean(data && typeof data === "object" && EVENT_TYPES.has(data.type));
}

// Change a message: `op` is edit, delete, react or unreact; `fields` {data} or {emoji}. Over the
// websocket when it is up (the change comes back as an event push), else through the REST API.
export function amend(channel, op, offset, fields = {}) {
  if (live.connected) return live.request(op, { channel, offset, ...fields });
  const base = `/api/channels/${encodeURIComponent(channel)}/messages/${offset}`;
  if (op === "edit") return patch(base, { data: fields.data });
  if (op === "delete") return del(base);
  if (op === "react") return post(`${base}/reactions`, { emoji: fields.emoji });
  return del(`${base}/reactions?emoji=${encodeURIComponent(fields.emoji)}`);
}

const stamp = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

// The server's words, for a member: capitalised, its ISO times in local time, the wait when it gave one.
export function refusalText(error) {
  if (!error) return "Something went wrong.";
  if (!error.code && !navigator.onLine) return "You are offline: try again once connected.";
  if (!error.code && /not connected|connection closed|timed out/.test(error.message || "")) {
    return "Not connected: try again in a moment.";
  }
  let text = errorText(error) || error.message || "Refused.";
  text = text.replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?/g, (iso) => {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : stamp.format(date);
  });
  text = text[0].toUpperCase() + text.slice(1);
  if (!/[.!?]$/.test(text)) text += ".";
  if (error.code === "rate_limited" && error.retry_after && !/muted/.test(text)) {
    text += ` Try again in ${Math.max(1, Math.ceil(error.retry_after))} s.`;
  }
  return text;
}

// A message's reactions as the client keeps them: emoji -> {count, users: Set of user ids known}.
export function reactionsFrom(list) {
  const map = new Map();
  for (const r of list || []) {
    if (r && r.emoji && r.count > 0) map.set(r.emoji, { count: r.count, users: new Set(r.users || []) });
  }
  return map;
}

// A reaction event: the emoji's count is absolute; `on` says whether `from` added or removed theirs.
export function applyReaction(map, data, from) {
  const entry = map.get(data.emoji) || { count: 0, users: new Set() };
  entry.count = Math.max(0, Number(data.count) || 0);
  if (from && typeof from.id === "number") {
    if (data.on) entry.users.add(from.id);
    else entry.users.delete(from.id);
  }
  if (entry.count > 0) map.set(data.emoji, entry);
  else map.delete(data.emoji);
}

export function mine(entry) {
  return Boolean(session.me && entry.users.has(session.me.id));
}

// Hold a control down (touch or pen) — or right-click it, when `rightClick` — and `fn` runs
// instead of the click. A finger that moves (scrolling) cancels the hold.
// `skip`: a selector of parts (buttons, links) whose own taps and holds are left alone.
export function onLongPress(el, fn, { ms = 500, rightClick = true, skip = null } = {}) {
  let timer = null;
  let start = null;
  let fired = false;
  let touch = false;
  const cancel = () => { clearTimeout(timer); timer = null; };
  el.addEventListener("pointerdown", (event) => {
    touch = event.pointerType !== "mouse";
    fired = false;
    if (!touch || (skip && event.target.closest?.(skip))) return;
    start = { x: event.clientX, y: event.clientY };
    cancel();
    timer = setTimeout(() => { timer = null; fired = true; fn(event); }, ms);
  });
  el.addEventListener("pointermove", (event) => {
    if (timer && start && Math.hypot(event.clientX - start.x, event.clientY - start.y) > 10) cancel();
  });
  for (const type of ["pointerup", "pointercancel"]) el.addEventListener(type, cancel);
  el.addEventListener("contextmenu", (event) => {
    if ((!touch && !rightClick) || (skip && event.target.closest?.(skip))) return; // the browser's menu stays
    event.preventDefault();
    if (fired) return;
    cancel();
    fired = true;
    fn(event);
  });
  // The click that ends a long press is not a tap.
  el.addEventListener("click", (event) => {
    if (!fired) return;
    fired = false;
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);
}

// The chips under a message: emoji and count, pressed when the member is among the reactors; a tap
// toggles theirs (`toggle(emoji, mine)`), holding one or the "…" button lists who reacted (`who()`).
export function renderChips(box, map, { toggle, who }) {
  box.replaceChildren();
  box.hidden = map.size === 0;
  for (const [emoji, entry] of map) {
    const pressed = mine(entry);
    const chip = h("button", { type: "button", class: "chip", "aria-pressed": String(pressed), "data-emoji": emoji,
      "aria-label": `${emoji} ${entry.count}: ${pressed ? "remove your reaction" : "react"}` },
    h("span", { class: "chip-emoji", "aria-hidden": "true" }, emoji),
    h("span", { class: "chip-count", "aria-hidden": "true" }, String(entry.count)));
    chip.addEventListener("click", () => toggle(emoji, pressed));
    onLongPress(chip, () => who());
    box.append(chip);
  }
  if (map.size) {
    const more = h("button", { type: "button", class: "chip chip-who", "aria-haspopup": "dialog",
      "aria-label": "Who reacted", title: "Who reacted" }, "…");
    more.addEventListener("click", () => who());
    box.append(more);
  }
}

// A small modal panel (closed by Escape, its Close button or a tap outside it); removed once closed.
export function panel(label, ...children) {
  const close = h("button", { class: "btn secondary panel-close", type: "button" }, "Close");
  const body = h("div", { class: "panel-body" }, ...children);
  const dialog = h("dialog", { class: "card panel", "aria-label": label },
    h("div", { class: "panel-head" }, h("h2", {}, label), close), body);
  close.addEventListener("click", () => dialog.close());
  // A tap outside closes it — one that began outside too: the finger lifting from the long press
  // that opened it is not one.
  let outside = false;
  dialog.addEventListener("pointerdown", (event) => { outside = event.target === dialog; });
  dialog.addEventListener("click", (event) => { if (outside && event.target === dialog) dialog.close(); outside = false; });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  dialog.body = body;
  return dialog;
}

// GET …/messages/{offset}/reactions: everyone who reacted, by emoji.
export function openWhoReacted(channel, offset) {
  const list = h("ul", { class: "who-reacted", "aria-label": "Reactions" }, h("li", { class: "muted" }, "Loading…"));
  const dialog = panel("Reactions", list);
  get(`/api/channels/${encodeURIComponent(channel)}/messages/${offset}/reactions`).then(({ reactions }) => {
    list.replaceChildren(...reactions.map((r) => h("li", {},
      h("span", { class: "who-emoji", "aria-label": `${r.emoji} ${r.count}` }, `${r.emoji} ${r.count}`),
      h("span", { class: "who-names" }, r.users.map((u) => u.display_name && u.display_name !== u.username
        ? `${u.display_name} (@${u.username})` : `@${u.username}`).join(", ")))));
    if (!reactions.length) list.replaceChildren(h("li", { class: "muted" }, "No reactions any more."));
  }).catch((error) => {
    list.replaceChildren(h("li", { class: "error", role: "alert" }, refusalText(error)));
  });
  return dialog;
}
