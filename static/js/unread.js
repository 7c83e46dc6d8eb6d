// Unread counts of the member's rooms and DMs, live, and each DM's last message.
//
// The lists (GET /api/rooms, GET /api/dms) give a snapshot: each channel's last offset and unread
// count, so its read marker is last - unread. The socket stays subscribed to the member's rooms and
// DMs (the most recent 50), so every message after the snapshot is counted as it arrives, unless it
// is the member's own. Read markers move the count down: this tab's (`localread`) at once, and any
// device's through the `read` push on the personal channel. Views render from here and listen for
// "change" events; the numbers match what the server says after any sequence of reads.
//
// Edits, deletes and reactions are messages of their own (docs/protocol.md, "Message events") but
// not new messages: they move the channel's position, never its count, its order in the lists or a
// DM's preview — except that an edit or delete of the message a DM preview shows changes the preview.

import { get } from "./api.js";
import { isEvent } from "./reactions.js";
import { bus, live, session } from "./session.js";

const HOLDER = "unread";
const MAX_FOLLOWED = 50;
const REFRESH_DELAY_MS = 400;

export const unreadStore = new EventTarget(); // "change" {channel | null}
const entries = new Map(); // channel -> {channel, kind, base, marker, extra: Set<offset>, lastMessage, user, title}
let inflight = { rooms: null, dms: null };
let refreshTimer = null;

function changed(channel = null) {
  unreadStore.dispatchEvent(new CustomEvent("change", { detail: { channel } }));
}

function countOf(entry) {
  let extra = 0;
  for (const offset of entry.extra) if (offset > entry.marker && offset > entry.base) extra += 1;
  return Math.max(0, entry.base - entry.marker) + extra;
}

export function unreadOf(channel) {
  const entry = entries.get(channel);
  return entry ? countOf(entry) : 0;
}

export function lastMessageOf(channel) {
  return entries.get(channel)?.lastMessage ?? null;
}

export function dmEntries() {
  return [...entries.values()].filter((e) => e.kind === "dm");
}

// Merge a server snapshot: markers only move forward, so the newer of the two wins.
function seed(channel, fields, { lastOffset, unread }) {
  let entry = entries.get(channel);
  if (!entry) {
    entry = { channel, base: 0, marker: 0, extra: new Set(), lastMessage: null, lastAt: 0 };
    entries.set(channel, entry);
  }
  Object.assign(entry, fields);
  const marker = Math.max(0, lastOffset - unread);
  if (lastOffset >= entry.base) {
    entry.base = lastOffset;
    entry.marker = Math.max(entry.marker, marker);
    for (const offset of entry.extra) if (offset <= entry.base) entry.extra.delete(offset);
  }
  return entry;
}

function follow() {
  // The most recently active first; the open conversation holds its own subscription.
  const chosen = [...entries.values()].filter((e) => e.followable)
    .sort((a, b) => (b.lastAt - a.lastAt) || (countOf(b) - countOf(a))).slice(0, MAX_FOLLOWED);
  const keep = new Set(chosen.map((e) => e.channel));
  for (const entry of entries.values()) {
    if (keep.has(entry.channel)) live.subscribe(entry.channel, null, HOLDER);
    else if (live.holds(entry.channel, HOLDER)) live.unsubscribe(entry.channel, HOLDER);
  }
}

function dmLast(message) {
  if (!message) return null;
  return { text: message.text, from: message.from ?? null, ts: message.ts };
}

// GET /api/rooms through the store (concurrent callers share one request); returns the rooms.
export function loadRooms() {
  inflight.rooms ||= get("/api/rooms").then(({ rooms }) => {
    for (const room of rooms) {
      if (room.kind === "dm" || !room.member) continue;
      seed(room.channel, { kind: room.kind, title: room.title, followable: true }, {
        lastOffset: room.last_offset, unread: room.unread });
    }
    follow();
    changed();
    return rooms;
  }).finally(() => { inflight.rooms = null; });
  return inflight.rooms;
}

// GET /api/dms through the store; returns the conversations, most recent first.
export function loadDms() {
  inflight.dms ||= get("/api/dms").then(({ dms }) => {
    for (const dm of dms) {
      const entry = seed(dm.channel, { kind: "dm", user: dm.user, followable: true }, {
        lastOffset: dm.last_offset, unread: dm.unread });
      const last = dmLast(dm.last_message);
      if (last && (!entry.lastMessage || entry.lastMessageOffset === undefined || entry.lastMessageOffset <= dm.last_offset)) {
        entry.lastMessage = last;
        entry.lastMessageOffset = dm.last_offset;
        if (entry.lastShownOffset !== undefined && entry.lastShownOffset < dm.last_offset) entry.lastShownOffset = undefined;
      }
      entry.lastAt = Math.max(entry.lastAt, last ? Date.parse(last.ts) || 0 : 0);
    }
    follow();
    changed();
    return dms;
  }).finally(() => { inflight.dms = null; });
  return inflight.dms;
}

export function loadAll() {
  if (!session.me) return Promise.resolve();
  return Promise.all([loadRooms(), loadDms()]).catch(() => {});
}

// A conversation opened in this tab (it may be new: a room just joined, a first DM).
export function track(channel, { kind, lastOffset, user = null, title = null }) {
  const known = entries.get(channel);
  const entry = seed(channel, { kind, followable: true, ...(user && !known?.user ? { user } : {}),
    ...(title ? { title } : {}) }, { lastOffset, unread: 0 });
  entry.lastAt = Math.max(entry.lastAt, Date.now());
  follow();
  changed(channel);
}

export function forget(channel) {
  if (live.holds(channel, HOLDER)) live.unsubscribe(channel, HOLDER);
  if (entries.delete(channel)) changed(channel);
}

function refreshSoon(which) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (!session.me) return;
    (which === "dms" ? loadDms() : which === "rooms" ? loadRooms() : loadAll()).catch(() => {});
  }, REFRESH_DELAY_MS);
}

live.addEventListener("message", (event) => {
  const { channel, frame } = event.detail;
  const entry = entries.get(channel);
  if (!entry || typeof frame.offset !== "number") return;
  entry.top = Math.max(entry.top ?? 0, frame.offset);
  if (isEvent(frame.data)) {
    const { type, target } = frame.data;
    if (entry.kind === "dm" && entry.lastMessage && target === entry.lastShownOffset && type !== "reaction") {
      entry.lastMessage = { ...entry.lastMessage, text: type === "edit" ? String(frame.data.text ?? "") : "Message deleted" };
      changed(channel);
    }
    return;
  }
  if (frame.deleted) return; // recovered already deleted: nothing to read (the server counts it so too)
  const mine = Boolean(session.me && frame.from && frame.from.id === session.me.id);
  if (!mine && frame.offset > entry.base && frame.offset > entry.marker) entry.extra.add(frame.offset);
  if (entry.kind === "dm" && (entry.lastMessageOffset === undefined || frame.offset >= entry.lastMessageOffset)) {
    entry.lastMessage = { text: frame.data?.text ?? "", from: frame.from ?? null, ts: frame.ts };
    entry.lastMessageOffset = frame.offset;
    entry.lastShownOffset = frame.offset;
  }
  entry.lastAt = Date.now();
  changed(channel);
});

// Subscribed "from now": messages between the list's snapshot and the subscription were not
// delivered, so when the channel moved on meanwhile, ask the list again.
live.addEventListener("subscribed", (event) => {
  const { channel, reply } = event.detail;
  const entry = entries.get(channel);
  if (!entry || !reply || typeof reply.offset !== "number") return;
  const seen = Math.max(entry.base, entry.marker, entry.top ?? 0);
  if (reply.offset > seen) refreshSoon(entry.kind === "dm" ? "dms" : "rooms");
});

function markRead(channel, offset) {
  const entry = entries.get(channel);
  if (!entry || offset <= entry.marker) return;
  entry.marker = offset;
  changed(channel);
}

live.addEventListener("localread", (event) => markRead(event.detail.channel, event.detail.offset));

// Any device of this member read a conversation.
bus.addEventListener("read", (event) => {
  const { channel, offset } = event.detail;
  if (typeof offset === "number") markRead(channel, offset);
});

// A DM from someone not in the list yet: fetch the list again (once, shortly).
bus.addEventListener("notification", (event) => {
  const channel = event.detail.notification?.channel;
  if (channel && channel.startsWith("dm:") && !entries.has(channel)) refreshSoon("dms");
});

// Kicked or banned from a room: it is not the member's any more (live.js dropped the channel).
live.addEventListener("removed", (event) => forget(event.detail.channel));

// A gap the socket could not replay: the counts of that channel come from the server again.
live.addEventListener("reset", (event) => {
  const entry = entries.get(event.detail.channel);
  if (entry) refreshSoon(entry.kind === "dm" ? "dms" : "rooms");
});

function clearAll() {
  for (const channel of entries.keys()) if (live.holds(channel, HOLDER)) live.unsubscribe(channel, HOLDER);
  entries.clear();
  inflight = { rooms: null, dms: null };
  changed();
}

bus.addEventListener("signedout", clearAll);
live.addEventListener("signedout", clearAll);
