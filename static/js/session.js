// The signed-in user, the websocket and the app-wide event bus, shared by every view.

import { get, post, refreshSession, refreshStatus, sessionExpiry } from "./api.js";
import { Live } from "./live.js";
import * as outbox from "./outbox.js";

export const bus = new EventTarget();
export const live = new Live();
export const session = { me: null, unread: 0, config: null };

const ME_KEY = "vonix:me";

const EXPIRY_MARGIN_S = 30;

function cachedMe() {
  const cached = localStorage.getItem(ME_KEY);
  return cached ? JSON.parse(cached) : null;
}

function forgetMe() {
  session.me = null;
  localStorage.removeItem(ME_KEY);
  return null;
}

// Who is signed in. The readable `vonix_session` cookie (the access token's expiry) says whether
// there is a session at all: without it the start is signed out and asks the server nothing; an
// access token about to expire is refreshed first, so no request fails with 401 on the way.
export async function loadMe() {
  const expiry = sessionExpiry();
  if (expiry === null) return forgetMe();
  if (expiry - EXPIRY_MARGIN_S <= Date.now() / 1000) {
    const refreshed = await refreshStatus();
    if (refreshed === "refused") return forgetMe();
    if (refreshed === "offline") return (session.me = cachedMe());
  }
  try {
    session.me = await get("/api/auth/me");
    localStorage.setItem(ME_KEY, JSON.stringify(session.me));
  } catch (error) {
    if (error.status === 401) return forgetMe();
    // Offline or the server is down: carry on as the last signed-in user (cached pages and the outbox).
    session.me = cachedMe();
  }
  return session.me;
}

export async function loadConfig() {
  try {
    session.config = await get("/api/app/config");
  } catch {
    session.config = session.config || { oauth: {}, push: { enabled: false } };
  }
  return session.config;
}

export function signedIn(user) {
  session.me = user;
  localStorage.setItem(ME_KEY, JSON.stringify(user));
  startLive();
}

const KEEP_FRESH_MS = 10 * 60 * 1000; // access tokens live 15 minutes: renew before the cookie expires
let keepFresh = null;

export function startLive() {
  if (!session.me) return;
  live.start();
  live.subscribe(`user:${session.me.id}`, null, "session");
  bus.dispatchEvent(new CustomEvent("signedin", { detail: session.me }));
  clearInterval(keepFresh);
  keepFresh = setInterval(() => { if (navigator.onLine) refreshSession(); }, KEEP_FRESH_MS);
}

export async function signOut() {
  live.flushReads();
  try { await post("/api/auth/logout"); } catch { /* already signed out */ }
  live.stop();
  bus.dispatchEvent(new CustomEvent("signedout"));
  clearInterval(keepFresh);
  session.me = null;
  localStorage.removeItem(ME_KEY);
  await outbox.clear().catch(() => {});
  if ("caches" in window) {
    for (const name of await caches.keys()) if (name.startsWith("vonix-api")) await caches.delete(name);
  }
}

export function setUnread(count) {
  if (typeof count !== "number") return;
  session.unread = count;
  const badge = document.getElementById("notif-count");
  badge.hidden = !count;
  badge.textContent = String(count);
  badge.setAttribute("aria-label", `${count} unread`);
}

// The personal channel is ephemeral: after a gap it cannot be replayed, so re-read the count.
export function loadUnread() {
  if (!session.me) return Promise.resolve();
  return get("/api/notifications/unread").then((body) => setUnread(body.unread)).catch(() => {});
}

live.addEventListener("reset", (event) => {
  if (session.me && event.detail.channel === `user:${session.me.id}`) loadUnread();
});

// Personal channel: notifications arrive as `message` pushes whose data says what happened.
live.addEventListener("message", (event) => {
  const { channel, frame } = event.detail;
  if (!session.me || channel !== `user:${session.me.id}`) return;
  const data = frame.data || {};
  if (typeof data.unread === "number") setUnread(data.unread);
  bus.dispatchEvent(new CustomEvent(data.type || "personal", { detail: data }));
});
