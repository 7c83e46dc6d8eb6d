// Boot: service worker (with the "new version ready" flow), session, live connection, routes.

import { apiLimited, apiStatus } from "./api.js";
import { HOME, render, route } from "./router.js";
import { bus, live, loadConfig, loadMe, loadUnread, session, startLive } from "./session.js";
import { loadAll } from "./unread.js";
import "./people.js"; // friends, requests and blocks: loaded on sign-in, live on the personal channel
import { resetView, signinView, signupView, verifyView } from "./views/auth.js";
import { chatView } from "./views/chat.js";
import { dmsView } from "./views/dms.js";
import { eventsView, eventView } from "./views/events.js";
import { feedView, postView } from "./views/feed.js";
import { categoryView, forumView } from "./views/forum.js";
import { friendsView } from "./views/friends.js";
import { groupsView, groupView } from "./views/groups.js";
import { homeView } from "./views/home.js";
import { landingView } from "./views/landing.js";
import { leaderboardView } from "./views/leaderboard.js";
import { minecraftLinkView } from "./views/mclink.js";
import { moderationView, staffNav } from "./views/moderation.js"; // also: the notice of a member's own mute or ban
import { notificationsView } from "./views/notifications.js";
import { profileView } from "./views/profile.js";
import { editProfileView } from "./views/profileedit.js";
import { roomsView } from "./views/rooms.js";
import { searchView } from "./views/search.js";
import { serverView, serversView } from "./views/servers.js";
import { serversAdminView } from "./views/serversadmin.js";
import { settingsView } from "./views/settings.js";
import { openView, shareView } from "./views/share.js";
import { threadView } from "./views/thread.js";
import "./send.js";

const STATE_TEXT = { idle: "Not connected", connecting: "Connecting…", connected: "Live", reconnecting: "Reconnecting…",
  offline: "Offline", closed: "Disconnected" };

// The top bar says what works right now. The socket's state is the base; while the API refuses
// (429) it says "Busy — retrying in N s" instead, never "Live".
let baseState = "idle";
let countdown = null;

function paint(state, text) {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  el.querySelector(".conn-text").textContent = text;
}

function showState(state = baseState) {
  baseState = state;
  const until = apiLimited();
  clearInterval(countdown);
  countdown = null;
  if (until > Date.now()) {
    const tick = () => {
      const seconds = Math.max(1, Math.ceil((until - Date.now()) / 1000));
      paint("limited", `Busy — retrying in ${seconds} s`);
      if (until <= Date.now()) { clearInterval(countdown); paint("limited", "Busy — retrying…"); }
    };
    tick();
    countdown = setInterval(tick, 1000);
    return;
  }
  if (until) { paint("limited", "Busy — retrying…"); return; }
  paint(state, STATE_TEXT[state] || state);
}
live.addEventListener("state", (event) => showState(event.detail.state));
apiStatus.addEventListener("change", () => showState());
live.addEventListener("signedout", () => { session.me = null; render(); });
bus.addEventListener("signedin", () => { loadAll(); });

async function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/", type: "module" });
  let userAsked = false;
  const banner = document.getElementById("update");
  const offer = (worker) => {
    banner.hidden = false;
    document.getElementById("update-reload").onclick = () => { userAsked = true; worker.postMessage({ type: "skip-waiting" }); };
  };
  if (registration.waiting && navigator.serviceWorker.controller) offer(registration.waiting);
  registration.addEventListener("updatefound", () => {
    const worker = registration.installing;
    worker?.addEventListener("statechange", () => {
      if (worker.state === "installed" && navigator.serviceWorker.controller) offer(worker);
    });
  });
  navigator.serviceWorker.addEventListener("controllerchange", () => { if (userAsked) location.reload(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) registration.update().catch(() => {}); });
  setInterval(() => registration.update().catch(() => {}), 30 * 60 * 1000);
}

const COMMUNITY_SECTIONS = new Set(["community", "forum", "feed", "posts", "groups", "events", "leaderboard", "servers"]);

function setNav(ctx) {
  const nav = document.getElementById("nav");
  nav.hidden = !session.me; // public screens (the game servers) keep a member's tabs
  staffNav(); // site staff: the Moderation entry
  const first = location.pathname.split("/")[1] || "rooms";
  const section = COMMUNITY_SECTIONS.has(first) ? "community" : first; // one tab for every community screen
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const search = document.getElementById("top-search"); // the top bar's search button
  search.hidden = nav.hidden;
  if (section === "search") search.setAttribute("aria-current", "page");
  else search.removeAttribute("aria-current");
}

render.guard = async (ctx, view) => {
  if (ctx.auth && !session.me) {
    const next = encodeURIComponent(location.pathname + location.search + location.hash);
    history.replaceState({}, "", `/signin?next=${next}`);
    return render();
  }
  if (!ctx.auth && session.me && ["/signin", "/signup"].includes(location.pathname)) {
    history.replaceState({}, "", HOME);
    return render();
  }
  setNav(ctx);
  document.title = `Vonix · ${location.pathname.split("/").filter(Boolean).map(decodeURIComponent).join(" · ") || "home"}`;
  document.getElementById("main").scrollTop = 0; // #main scrolls: a new screen starts at its top
  await view(ctx);
  // The new screen takes the focus (keyboard and screen-reader users start there), unless the
  // member is already in it: a composer can be typed into before its screen has finished loading
  // (history, subscription), and moving the focus then sent their Enter nowhere.
  const main = document.getElementById("main");
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true });
};

route("/", landingView, { auth: false }); // signed out: the public home page (servers, events, posts)
route("/signin", signinView, { auth: false });
route("/signup", signupView, { auth: false });
route("/reset-password", resetView, { auth: false });
route("/verify-email", verifyView, { auth: false });
route("/rooms", roomsView);
route("/rooms/:name", chatView);
route("/dms", dmsView);
route("/dms/:username", chatView);
route("/friends", friendsView);
route("/u/:username", profileView);
route("/notifications", notificationsView);
route("/search", searchView);
route("/moderation", moderationView);
route("/settings", settingsView);
route("/settings/profile", editProfileView);
route("/community", homeView);
route("/forum", forumView);
route("/forum/c/:id", categoryView);
route("/forum/t/:id", threadView);
route("/feed", feedView);
route("/posts/:id", postView);
route("/groups", groupsView);
route("/groups/:id", groupView);
route("/events", eventsView);
route("/events/:id", eventView);
route("/leaderboard", leaderboardView);
route("/servers", serversView, { auth: false }); // the game servers' live status is public
route("/servers/:id", serverView, { auth: false });
route("/admin/servers", serversAdminView);
route("/settings/minecraft", minecraftLinkView);
route("/open", openView);
route("/share", shareView);
render.redirect = () => { history.replaceState({}, "", session.me ? HOME : "/signin"); return render(); };

async function boot() {
  registerWorker().catch((error) => console.warn("service worker", error));
  await Promise.all([loadConfig(), loadMe()]);
  if (session.me) {
    startLive(); // also loads the rooms and DMs the unread counts follow
    loadUnread();
  }
  showState(session.me ? live.state : navigator.onLine ? "idle" : "offline");
  await render();
}

boot();
