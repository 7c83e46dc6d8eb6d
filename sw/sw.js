// The Vonix service worker (served at /sw.js, scope /). The server fills in BUILD (a hash of every
// client file) and PRECACHE (the app shell's URLs), so each client change installs a new version.
//
// Strategies by request kind:
//   navigations ............ network first, then the cached app shell, then /offline.html
//   /static/*, manifest .... cache first (precached shell, versioned caches; the precache is
//                            fetched past the HTTP cache, and the server says no-cache too)
//   history pages and the
//   lists the app reads
//   (community, home page
//   and game servers) ...... network first with cache fallback (vonix-api-*)
//   /avatars/*, uploaded
//   /media/avatars/* ....... stale-while-revalidate
// Background Sync "outbox" sends messages written offline through the REST fallback; push
// messages become notifications; a click opens (or focuses) the page they link to.

import { flushOverHttp } from "/static/js/outbox.js";

const BUILD = "__BUILD__";
const PRECACHE = __PRECACHE__;
const SHELL = `vonix-shell-${BUILD}`;
const STATIC = `vonix-static-${BUILD}`;
const API = "vonix-api-v1";
const AVATARS = "vonix-avatars-v1";
const KEEP = new Set([SHELL, STATIC, API, AVATARS]);
const CACHED_READS = [/^\/api\/channels\/[^/]+\/messages$/, /^\/api\/rooms$/, /^\/api\/dms$/, /^\/api\/auth\/me$/,
  /^\/api\/notifications$/, /^\/api\/notifications\/unread$/, /^\/api\/app\/config$/, /^\/api\/friends$/,
  // the community's lists and pages (docs/community.md): read again online, the last copy offline
  /^\/api\/forum\/categories$/, /^\/api\/forum\/categories\/\d+\/threads$/, /^\/api\/forum\/threads\/\d+$/,
  /^\/api\/posts$/, /^\/api\/posts\/\d+$/, /^\/api\/groups$/, /^\/api\/groups\/\d+$/, /^\/api\/events$/,
  /^\/api\/events\/\d+$/, /^\/api\/leaderboard$/,
  // the public home page and the game servers (issue 18): the last known state offline
  /^\/api\/home$/, /^\/api\/servers$/, /^\/api\/servers\/\d+$/, /^\/api\/servers\/\d+\/history$/];
const NAVIGATION_TIMEOUT = 5000;

self.addEventListener("install", (event) => {
  // `cache: "reload"`: the precache takes fresh copies from the server, never the browser's HTTP
  // cache, which may still hold the previous release's files (they have no hash in their names).
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(
    PRECACHE.map((url) => new Request(url, { cache: "reload" })))));
  // No skipWaiting here: an update waits until the page's "Reload" button asks for it.
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("vonix-") && !KEEP.has(name)) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  const data = event.data || {};
  if (data.type === "skip-waiting") self.skipWaiting();
  if (data.type === "flush-outbox") event.waitUntil(flushOutbox());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    // API navigations (OAuth sign-in and its redirects) go straight to the network.
    if (!url.pathname.startsWith("/api/")) event.respondWith(navigation(request));
  } else if (url.pathname.startsWith("/static/") || url.pathname === "/manifest.json" || url.pathname === "/favicon.ico") {
    event.respondWith(cacheFirst(request));
  } else if (url.pathname.startsWith("/avatars/") || url.pathname.startsWith("/media/avatars/")) {
    event.respondWith(staleWhileRevalidate(event, request));
  } else if (CACHED_READS.some((pattern) => pattern.test(url.pathname))) {
    event.respondWith(networkFirst(request));
  }
});

async function navigation(request) {
  try {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), NAVIGATION_TIMEOUT);
    const response = await fetch(request, { signal: controller.signal });
    clearTimeout(timer);
    return response;
  } catch {
    const shell = await caches.match("/", { cacheName: SHELL });
    return shell || (await caches.match("/offline.html")) || new Response("Offline", { status: 503 });
  }
}

async function cacheFirst(request) {
  const cached = await caches.match(request, { ignoreSearch: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) (await caches.open(STATIC)).put(request, response.clone());
  return response;
}

async function networkFirst(request) {
  const cache = await caches.open(API);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    else if (response.status === 401) await cache.delete(request);
    return response;
  } catch (error) {
    const cached = await cache.match(request);
    if (cached) return cached;
    throw error;
  }
}

async function staleWhileRevalidate(event, request) {
  const cache = await caches.open(AVATARS);
  const cached = await cache.match(request);
  const refresh = fetch(request).then((response) => {
    if (response.ok) cache.put(request, response.clone());
    return response;
  });
  if (cached) {
    event.waitUntil(refresh.catch(() => {}));
    return cached;
  }
  return refresh;
}

// --- Background Sync: the offline outbox ---------------------------------------------------------
async function csrf() {
  try {
    const cookie = self.cookieStore ? await self.cookieStore.get("vonix_csrf") : null;
    return cookie ? decodeURIComponent(cookie.value) : "";
  } catch {
    return "";
  }
}

async function flushOutbox() {
  const { sent, refused } = await flushOverHttp(csrf);
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const client of windows) {
    if (sent.length) client.postMessage({ type: "outbox-sent", sent });
    if (refused.length) client.postMessage({ type: "outbox-failed", refused });
  }
}

self.addEventListener("sync", (event) => {
  if (event.tag === "outbox") event.waitUntil(flushOutbox());
});

// --- Push ------------------------------------------------------------------------------------------
self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: "Vonix", body: event.data ? event.data.text() : "" };
  }
  const title = data.title || "Vonix";
  event.waitUntil(self.registration.showNotification(title, {
    body: data.body || "",
    tag: data.tag || "vonix",
    renotify: Boolean(data.tag),
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/badge-96.png",
    data: { url: data.url || "/notifications", id: data.id ?? null, kind: data.kind || null },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(event.notification.data?.url || "/notifications", self.location.origin);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).origin === target.origin && "focus" in client) {
        await client.focus();
        return client.navigate(target.href);
      }
    }
    return self.clients.openWindow(target.href);
  })());
});
