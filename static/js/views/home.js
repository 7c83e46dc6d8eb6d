// The community's home (/community, the "Community" tab): what is new — the latest forum threads,
// the latest posts and the next events — with the way into each section and the chat rooms.
// Live like the sections themselves: threads' replies and scores change in place and new threads
// come in on top (`live:forum:<id>` of the categories shown), new posts wait behind the "N new
// posts" bar (`live:feed:everyone`), events follow `live:events:all`.

import { get } from "../api.js";
import { h, mount } from "../dom.js";
import { fill, keepTimesFresh, liveStreams, subnav } from "../community.js";
import { eventRow } from "./events.js";
import { postList } from "./feed.js";
import { loadCategories, threadRow } from "./forum.js";

const THREADS = 5;
const CATEGORIES = 6; // the home reads the newest threads of this many categories at most
const EVENTS = 3;

function section(title, href, linkText, ...children) {
  return h("section", { class: "home-section", "aria-label": title },
    h("div", { class: "section-head" }, h("h2", {}, title), h("a", { class: "btn secondary", href, "data-link": true }, linkText)),
    ...children);
}

export async function homeView(ctx) {
  const threads = h("ul", { class: "list thread-list", "aria-label": "Latest threads" }, h("li", { class: "muted" }, "Loading…"));
  const events = h("ul", { class: "list event-list", "aria-label": "Upcoming events" }, h("li", { class: "muted" }, "Loading…"));
  const root = h("section", { class: "community home" }, subnav("/community"), h("h1", {}, "Community"));
  const posts = postList(ctx, root, { path: "/api/posts?feed=everyone", feedChannel: "live:feed:everyone", limit: 3,
    paged: false, empty: "No posts yet." });
  root.append(
    section("Latest in the forum", "/forum", "Forum", threads),
    section("Latest posts", "/feed", "Feed", posts.el),
    section("Upcoming events", "/events", "Events", events),
    h("p", { class: "row home-links" }, h("a", { class: "btn secondary", href: "/groups", "data-link": true }, "Groups"),
      h("a", { class: "btn secondary", href: "/leaderboard", "data-link": true }, "Leaderboard"),
      h("a", { class: "btn secondary", href: "/rooms", "data-link": true }, "Chat rooms")));
  mount(root);
  keepTimesFresh(ctx, root);

  const threadRows = new Map();
  const names = new Map();
  const eventRows = new Map();
  const placeThread = (thread, where) => {
    if (threadRows.has(thread.id)) { threadRows.get(thread.id).paint({ ...threadRows.get(thread.id).thread, ...thread }); return; }
    const row = threadRow(thread, { category: names.get(thread.category_id) });
    threadRows.set(thread.id, row);
    threads.querySelector("li.muted")?.remove();
    if (where === "start") threads.prepend(row); else threads.append(row);
    while (threads.children.length > THREADS) { const last = threads.lastElementChild; threadRows.delete(last.thread?.id); last.remove(); }
  };
  const placeEvent = (event) => {
    if (eventRows.has(event.id)) { eventRows.get(event.id).paint({ ...eventRows.get(event.id).event, ...event }); return; }
    if (new Date(event.ends_at || event.starts_at) < new Date()) return;
    const row = eventRow(event);
    eventRows.set(event.id, row);
    events.querySelector("li.muted")?.remove();
    const after = [...events.children].find((li) => li.event && new Date(li.event.starts_at) > new Date(event.starts_at));
    events.insertBefore(row, after || null);
    while (events.children.length > EVENTS) { const last = events.lastElementChild; eventRows.delete(last.event?.id); last.remove(); }
  };
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (channel === "live:events:all") {
        if ((data.type === "event_created" || data.type === "event_updated") && data.event) {
          const known = eventRows.get(data.event.id);
          placeEvent(known ? { ...data.event, my_status: data.event.my_status ?? known.event.my_status } : data.event);
        } else if (data.type === "event_deleted") { eventRows.get(data.id)?.remove(); eventRows.delete(data.id); }
        return;
      }
      if (data.type === "thread_created" && data.thread) placeThread(data.thread, "start");
      else if (data.type === "thread_updated" && data.thread && threadRows.has(data.thread.id)) placeThread(data.thread);
      else if (data.type === "thread_deleted") { threadRows.get(data.id)?.remove(); threadRows.delete(data.id); }
    },
    onReset: (channel) => (channel === "live:events:all" ? loadEvents() : loadThreads()).catch(() => {}),
  });
  streams.follow("live:events:all");
  await streams.settled();
  if (!ctx.current()) return;

  async function loadThreads() {
    const categories = (await loadCategories()).slice(0, CATEGORIES);
    for (const c of categories) { names.set(c.id, c.name); streams.follow(`live:forum:${c.id}`); }
    const pages = await Promise.all(categories.map((c) => get(`/api/forum/categories/${c.id}/threads?sort=latest&limit=${THREADS}`)));
    const latest = pages.flatMap((page) => page.items)
      .sort((a, b) => new Date(b.last_activity_at || b.created_at) - new Date(a.last_activity_at || a.created_at)).slice(0, THREADS);
    threadRows.clear();
    fill(threads);
    for (const t of latest) placeThread(t, "end");
    if (!latest.length) fill(threads, h("li", { class: "muted" }, "No threads yet: start one in the forum."));
  }
  async function loadEvents() {
    const page = await get(`/api/events?when=upcoming&limit=${EVENTS}`);
    eventRows.clear();
    fill(events);
    for (const e of page.items) placeEvent(e);
    if (!page.items.length) fill(events, h("li", { class: "muted" }, "Nothing planned yet."));
  }
  const failed = (list, what) => (e) => fill(list, h("li", { class: "error" },
    navigator.onLine ? `${what} could not be loaded: ${e.message}` : `You are offline: ${what.toLowerCase()} show once connected.`));
  await Promise.all([loadThreads().catch(failed(threads, "Threads")), loadEvents().catch(failed(events, "Events")), posts.start()]);
  streams.ready();
}
