// The public home page ("/", issue 18). Signed out: the community at a glance — the game servers
// (address to copy, live status and player count, MOTD), a players chart for the last 24 hours,
// the next public events and the latest public posts, and the way in (sign in / create an account).
// Signed in, "/" leads to the member's home; the servers are one tap away at /servers.
//
// The data comes inlined in the page (views/servers.js: `homeData`), so the first render asks the
// API nothing; the chart is read after it. Offline, the last known state shows, labelled.

import { h, mount } from "../dom.js";
import { byline, fill, plural } from "../community.js";
import { HOME, navigate } from "../router.js";
import { session } from "../session.js";
import { eventRow } from "./events.js";
import { follow, homeData, offlineNote, playersChart, refresh, serverList, store } from "./servers.js";

const POST_PREVIEW = 280;
const LISTS_MAX_AGE = 5 * 60 * 1000; // events and posts are not live here: read again after this

function section(title, className, ...children) {
  return h("section", { class: `home-section ${className}`, "aria-label": title }, h("h2", {}, title), ...children);
}

function postRow(post) {
  const text = String(post.content || "");
  return h("li", { class: "card public-post" },
    byline(post.author, post.created_at, { small: true }),
    h("p", { class: "post-preview" }, text.length > POST_PREVIEW ? `${text.slice(0, POST_PREVIEW)}…` : text),
    h("p", { class: "muted small" }, `${plural(post.likes || 0, "like")} · ${plural(post.comments || 0, "comment")}`));
}

// The chart of one server (a picker when there are several): the first online one by default.
function chartSection(ctx) {
  const slot = h("div", { class: "chart-holder" });
  const picker = h("div", { class: "row chart-servers", role: "group", "aria-label": "Server" });
  let shown = null;
  const show = (id) => {
    shown = id;
    for (const b of picker.children) b.setAttribute("aria-pressed", String(Number(b.dataset.server) === id));
    const chart = playersChart(ctx, id);
    fill(slot, chart);
    chart.load();
  };
  const update = ({ retry = false } = {}) => {
    const servers = homeData()?.servers || [];
    fill(picker, ...(servers.length > 1 ? servers.map((s) => {
      const button = h("button", { class: "btn secondary", type: "button", "data-server": s.id, "aria-pressed": "false" }, s.name);
      button.addEventListener("click", () => show(s.id));
      return button;
    }) : []));
    if (!servers.length) { shown = null; fill(slot, h("p", { class: "muted" }, "No servers to chart yet.")); return; }
    if (!servers.some((s) => s.id === shown)) show((servers.find((s) => s.status?.online) || servers[0]).id);
    else if (retry && !slot.querySelector("svg")) show(shown); // back online: read it again
    else for (const b of picker.children) b.setAttribute("aria-pressed", String(Number(b.dataset.server) === shown));
  };
  const el = section("Players, last 24 hours", "home-chart", picker, slot);
  el.update = update;
  return el;
}

export async function landingView(ctx) {
  if (session.me) { navigate(HOME, { replace: true }); return; }
  const first = homeData();
  const servers = serverList("No game servers are listed yet.");
  const chart = chartSection(ctx);
  const events = h("ul", { class: "list event-list", "aria-label": "Upcoming events" });
  const posts = h("ul", { class: "list post-previews", "aria-label": "Recent posts" });
  const eventsSection = section("Upcoming events", "home-events", events);
  const postsSection = section("Recent posts", "home-posts", posts);
  const root = h("section", { class: "landing" },
    h("div", { class: "hero" },
      h("h1", {}, "Vonix Network"),
      h("p", { class: "muted" }, "Our Minecraft servers, live — and the community that plays on them."),
      h("p", { class: "row hero-actions" },
        h("a", { class: "btn", href: "/signup", "data-link": true }, "Create an account"),
        h("a", { class: "btn secondary", href: "/signin", "data-link": true }, "Sign in"))),
    offlineNote(ctx),
    section("Game servers", "home-servers", servers),
    chart, eventsSection, postsSection);
  const paintLists = () => {
    const data = homeData();
    const upcoming = (data?.events || []).filter((e) => new Date(e.ends_at || e.starts_at) > new Date());
    fill(events, ...upcoming.map((e) => eventRow(e)));
    eventsSection.hidden = !upcoming.length;
    fill(posts, ...(data?.posts || []).map(postRow));
    postsSection.hidden = !(data?.posts || []).length;
  };
  paintLists();
  mount(root);
  follow(ctx, (detail) => {
    servers.update(detail);
    if (detail.all) paintLists();
    if (detail.all || detail.order) chart.update();
  });
  const onState = () => chart.update({ retry: navigator.onLine });
  store.addEventListener("state", onState);
  ctx.onLeave(() => store.removeEventListener("state", onState));
  if (!first) fill(servers, h("li", { class: "muted" }, "Loading…"));
  try {
    await refresh({ maxAge: LISTS_MAX_AGE });
  } catch {
    if (ctx.current()) fill(servers, h("li", { class: "error" }, "The servers could not be loaded."));
  }
  if (!ctx.current()) return;
  if (!first) { servers.update(); paintLists(); }
  chart.update();
}
