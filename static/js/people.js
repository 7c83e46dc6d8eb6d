// The signed-in member's people: friends (with who is online), friend requests both ways and the
// members they blocked — live.
//
// GET /api/friends gives the snapshot; after it, every change arrives on the personal channel
// (docs/protocol.md, "Personal channel events"): `relationship` (a request sent, accepted,
// declined or cancelled, a friend removed, a block or unblock — from any tab or device),
// `friend_presence` (a friend's first connection or last one gone) and `profile` (the member's own
// profile changed elsewhere). Nothing is polled: the list is asked again only when the personal
// channel had a gap it cannot replay. Views render from here and listen for "change" events
// ({username} of the one member who changed, or null for everything); the nav badge shows the
// number of incoming requests.

import { get } from "./api.js";
import { bus, live, session } from "./session.js";

export const peopleStore = new EventTarget(); // "change" {username | null, relationship?}, "profile" {fields}
const KINDS = ["friends", "incoming", "outgoing", "blocked"];
const ME_KEY = "vonix:me";
let lists = { friends: [], incoming: [], outgoing: [], blocked: [] };
let loaded = false;
let inflight = null;
let early = []; // events that arrived while the snapshot was on its way: applied on top of it

const key = (username) => String(username || "").toLowerCase();

function changed(username = null, relationship = undefined) {
  peopleStore.dispatchEvent(new CustomEvent("change", { detail: { username, relationship } }));
}

function paintBadge() {
  const badge = document.getElementById("friends-count");
  if (!badge) return;
  const count = lists.incoming.length;
  badge.hidden = !count;
  badge.textContent = String(count);
  badge.setAttribute("aria-label", `${count} friend request${count === 1 ? "" : "s"}`);
}

// Online friends first, then by name (as the server orders them).
function sortFriends() {
  lists.friends.sort((a, b) => (Boolean(b.online) - Boolean(a.online)) || key(a.username).localeCompare(key(b.username)));
}

export function peopleLoaded() {
  return loaded;
}

export function peopleLists() {
  return lists;
}

export function isBlocked(username) {
  const wanted = key(username);
  return Boolean(wanted) && lists.blocked.some((p) => key(p.username) === wanted);
}

export function friendOf(username) {
  const wanted = key(username);
  return lists.friends.find((p) => key(p.username) === wanted) || null;
}

// "friends", "incoming", "outgoing", "blocked" or "none", as far as the lists know.
export function relationOf(username) {
  const wanted = key(username);
  for (const kind of KINDS) if (lists[kind].some((p) => key(p.username) === wanted)) return kind;
  return "none";
}

export function loadPeople() {
  if (!session.me) return Promise.resolve(lists);
  inflight ||= get("/api/friends").then((body) => {
    lists = { friends: body.friends || [], incoming: body.incoming || [], outgoing: body.outgoing || [],
      blocked: body.blocked || [] };
    loaded = true;
    const queued = early;
    early = [];
    for (const data of queued) apply(data);
    sortFriends();
    paintBadge();
    changed();
    return lists;
  }).finally(() => { inflight = null; });
  return inflight;
}

// A member who just became a friend: the event has no presence, so ask their profile once.
async function fillPresence(username) {
  try {
    const profile = await get(`/api/users/${encodeURIComponent(username)}`);
    const friend = friendOf(username);
    if (!friend) return;
    friend.online = profile.online;
    friend.last_seen_at = profile.last_seen_at;
    sortFriends();
    changed(username);
  } catch { /* shown without presence until the next event */ }
}

function apply(data) {
  if (data.type === "relationship" && data.user && data.user.username) {
    const wanted = key(data.user.username);
    const before = friendOf(data.user.username);
    for (const kind of KINDS) lists[kind] = lists[kind].filter((p) => key(p.username) !== wanted);
    const kind = data.relationship;
    if (kind === "friends") {
      lists.friends.push({ ...data.user, online: before ? before.online : null,
        last_seen_at: before ? before.last_seen_at : null });
      if (!before && loaded) fillPresence(data.user.username);
      sortFriends();
    } else if (KINDS.includes(kind)) {
      lists[kind].push({ ...data.user });
      lists[kind].sort((a, b) => key(a.username).localeCompare(key(b.username)));
    }
    return true;
  }
  if (data.type === "friend_presence" && data.username) {
    const friend = friendOf(data.username);
    if (!friend) return true;
    friend.online = Boolean(data.online);
    if (data.last_seen_at || !data.online) friend.last_seen_at = data.last_seen_at ?? friend.last_seen_at;
    sortFriends();
    return true;
  }
  return false;
}

// This tab's own change, answered by the server: shown at once (its event, when it comes, agrees).
export function noteRelationship(person, relationship) {
  if (!person || !person.username) return;
  const { username, display_name = null, avatar = null, role = "member" } = person;
  onPersonal({ detail: { type: "relationship", user: { username, display_name, avatar, role }, relationship } });
}

function onPersonal(event) {
  const data = event.detail || {};
  if (inflight && !loaded) { early.push(data); return; }
  if (inflight) early.push(data); // a reload on its way: apply now and again on top of its answer
  if (!apply(data)) return;
  paintBadge();
  if (data.type === "relationship") changed(data.user.username, data.relationship);
  else changed(data.username);
}

bus.addEventListener("relationship", onPersonal);
bus.addEventListener("friend_presence", onPersonal);

// The member's own profile changed (this tab or another): keep the signed-in copy current.
bus.addEventListener("profile", (event) => {
  const { type, ...fields } = event.detail || {};
  if (!session.me) return;
  Object.assign(session.me, fields);
  try { localStorage.setItem(ME_KEY, JSON.stringify(session.me)); } catch { /* storage full: memory only */ }
  peopleStore.dispatchEvent(new CustomEvent("profile", { detail: fields }));
});

export function ownProfileChanged(fields) {
  if (!session.me) return;
  Object.assign(session.me, fields);
  try { localStorage.setItem(ME_KEY, JSON.stringify(session.me)); } catch { /* storage full: memory only */ }
}

// The personal channel cannot replay a gap: whatever happened meanwhile comes from the list again.
live.addEventListener("reset", (event) => {
  if (session.me && event.detail.channel === `user:${session.me.id}`) loadPeople().catch(() => {});
});

bus.addEventListener("signedin", () => { loadPeople().catch(() => {}); });

function clear() {
  lists = { friends: [], incoming: [], outgoing: [], blocked: [] };
  loaded = false;
  early = [];
  paintBadge();
  changed();
}

bus.addEventListener("signedout", clear);
live.addEventListener("signedout", clear);
