// The game servers (issue 18): their cards (the public home page and /servers) and a server's own
// page (/servers/:id), public and live, fast on a phone and readable offline.
//
// Data: the home data (`GET /api/home`: servers, events, posts, and the position of the live
// channel `status:servers` it was read at) comes inlined in the page (`<script id="boot">`, so the
// first render asks the API nothing), or from the last copy kept in localStorage, or from the API.
// Following `status:servers` from that position (`since`) brings any copy up to date: the changes
// after it are replayed, live ones follow (a guest socket when signed out: live.js). Offline, the
// last known state shows, labelled "Offline — last updated HH:MM".
//
// Nothing from a game server is inserted as markup, except the MOTD the server rendered
// (`motd_html`), and that only through `motdNodes`: never parsed as HTML, rebuilt from text, <br>
// and <span> with known `mc-*` classes — whatever else it holds is shown as text.

import { get } from "../api.js";
import { fill, formatNumber, plural, subnav } from "../community.js";
import { h, mount, toast } from "../dom.js";
import { live, session } from "../session.js";

export const STATUS_CHANNEL = "status:servers";
const STORE_KEY = "vonix:home";
const HOLDER = "servers";
const CHARTS = { "24h": { label: "24 h", ms: 24 * 3600e3 }, "7d": { label: "7 days", ms: 7 * 24 * 3600e3 } };
const SVG = "http://www.w3.org/2000/svg";
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }); // HH:MM

// --- the home data ------------------------------------------------------------------------------------
// {servers, events, posts, status: {offset, epoch}, at}; `at`: when it was last known to be current.
export const store = new EventTarget(); // "change" (the data changed), "state" (online / offline)
let data = null;
let fetched = false; // read from the network (the boot block or the API) since this page loaded
let fetchedAt = 0; // when (this device's clock): the events and posts are not live, read them again later
let failed = false; // the last attempt to reach the server failed
let skew = 0; // the server's clock minus this device's: `at` is kept in the server's time
const FRESH_MS = 60000; // an inlined copy older than this came from a cache: ask the API too

const stamp = (value) => Date.parse(value?.at || "") || 0;

function readBoot() {
  const el = document.getElementById("boot");
  if (!el) return null;
  el.remove(); // read once: a later visit of "/" in this tab has newer data than the page's
  try { return JSON.parse(el.textContent); } catch { return null; }
}

function readSaved() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY) || "null"); } catch { return null; }
}

function save() {
  try { localStorage.setItem(STORE_KEY, JSON.stringify(data)); } catch { /* full or denied: memory only */ }
}

function valid(value) {
  return value && Array.isArray(value.servers) ? value : null;
}

// The freshest copy at hand (no request): the page's own block, the one in memory, the saved one.
export function homeData() {
  const boot = valid(readBoot());
  if (!data) data = valid(readSaved());
  if (boot && (!data || stamp(boot) >= stamp(data))) {
    data = boot;
    fetched = Math.abs(Date.now() - stamp(boot)) < FRESH_MS; // else the page came from the worker's cache
    if (fetched) { skew = stamp(boot) - Date.now(); fetchedAt = Date.now(); }
    save();
  }
  return data;
}

function touch() {
  if (data) data.at = new Date(Date.now() + skew).toISOString();
}

export function isOffline() {
  return !navigator.onLine || failed;
}

function changed(what) {
  save();
  store.dispatchEvent(new CustomEvent("change", { detail: what }));
}

function setFailed(value) {
  if (failed === value) return;
  failed = value;
  store.dispatchEvent(new CustomEvent("state"));
}

// Read the home data from the API when what is at hand did not come from the network (or, with
// `maxAge`, came from it longer ago than that). Offline, nothing is asked: the last copy shows.
export async function refresh({ maxAge = Infinity } = {}) {
  if (fetched && Date.now() - fetchedAt <= maxAge) return data;
  if (!navigator.onLine) {
    setFailed(true);
    if (!data) throw new Error("offline");
    return data;
  }
  try {
    const body = await get("/api/home");
    data = body;
    fetched = true;
    fetchedAt = Date.now();
    skew = stamp(body) - Date.now();
    setFailed(false);
    changed({ all: true });
    if (live.holds(STATUS_CHANNEL, HOLDER)) resubscribe(); // follow on from the new copy's position
  } catch (error) {
    setFailed(true);
    if (!data) throw error;
  }
  return data;
}

function sortServers(list) {
  return list.sort((a, b) => (a.position ?? 0) - (b.position ?? 0) || String(a.name).localeCompare(String(b.name)));
}

function apply(message) {
  if (!data || !message || typeof message !== "object") return;
  if ((message.type === "server_status" || message.type === "server_updated") && message.server?.id !== undefined) {
    const at = data.servers.findIndex((s) => s.id === message.server.id);
    if (at >= 0) data.servers[at] = message.server;
    else data.servers.push(message.server);
    sortServers(data.servers);
    changed({ server: message.server.id, order: message.type === "server_updated" || at < 0 });
  } else if (message.type === "server_removed") {
    data.servers = data.servers.filter((s) => s.id !== message.id);
    changed({ server: message.id, order: true });
  }
}

// --- following the live channel (one holder for every view of this module) ------------------------------
let followers = 0;

function position() {
  const status = data?.status;
  return status && Number.isInteger(status.offset) && status.epoch ? { offset: status.offset, epoch: status.epoch } : null;
}

function resubscribe() {
  live.unsubscribe(STATUS_CHANNEL, HOLDER);
  live.subscribe(STATUS_CHANNEL, position(), HOLDER);
}

live.addEventListener("message", (event) => {
  const { channel, frame } = event.detail;
  if (channel !== STATUS_CHANNEL || !followers || !data) return;
  data.status = { offset: frame.offset, epoch: frame.epoch };
  touch();
  apply(frame.data);
});
live.addEventListener("subscribed", (event) => {
  if (event.detail.channel !== STATUS_CHANNEL || !data) return;
  const now = live.position(STATUS_CHANNEL);
  if (now) data.status = now;
  touch(); // followed from here on: current
  setFailed(false);
  changed({ confirmed: true });
});
live.addEventListener("reset", (event) => {
  // The changes since our copy could not be replayed: read the list again (live ones follow).
  if (event.detail.channel !== STATUS_CHANNEL || !data || !followers) return;
  get("/api/servers").then((body) => {
    data.servers = sortServers(body.servers || []);
    const now = live.position(STATUS_CHANNEL);
    if (now) data.status = now;
    touch();
    changed({ all: true });
  }).catch(() => setFailed(true));
});
window.addEventListener("offline", () => store.dispatchEvent(new CustomEvent("state")));
window.addEventListener("online", () => store.dispatchEvent(new CustomEvent("state")));

// A view follows the servers while it is shown; `onChange(detail)` runs on every change.
export function follow(ctx, onChange) {
  followers += 1;
  const listener = (event) => onChange(event.detail);
  store.addEventListener("change", listener);
  live.subscribe(STATUS_CHANNEL, position(), HOLDER);
  ctx.onLeave(() => {
    followers -= 1;
    store.removeEventListener("change", listener);
    if (!followers) live.unsubscribe(STATUS_CHANNEL, HOLDER);
  });
}

// "Offline — last updated 14:05", shown while the network is gone.
export function offlineNote(ctx) {
  const note = h("p", { class: "offline-note", role: "status", hidden: true });
  const paint = () => {
    note.hidden = !isOffline();
    const at = stamp(data);
    note.textContent = at ? `Offline — last updated ${timeFormat.format(new Date(at - skew))}` : "Offline";
  };
  store.addEventListener("state", paint);
  store.addEventListener("change", paint);
  ctx.onLeave(() => { store.removeEventListener("state", paint); store.removeEventListener("change", paint); });
  paint();
  return note;
}

// --- pieces -----------------------------------------------------------------------------------------------
const MC_CLASSES = new Set(["black", "dark-blue", "dark-green", "dark-aqua", "dark-red", "dark-purple", "gold", "gray",
  "dark-gray", "blue", "green", "aqua", "red", "light-purple", "yellow", "white",
  "bold", "italic", "underlined", "strikethrough", "obfuscated"].map((name) => `mc-${name}`));

// The server's rendered MOTD as DOM nodes. The server's markup is a flat run of
// `<span class="mc-…">text</span>` and `<br>` with the text HTML-escaped; only those exact tokens
// become elements (and only known mc-* classes are kept): anything else, a tag included, stays
// text. Nothing is parsed as HTML, so no attribute (an event handler) ever reaches an element.
const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
const MOTD_TOKEN = /<span class="([a-z0-9 -]*)">|<\/span>|<br\s*\/?>/gi;
const MAX_NESTING = 16;

function decodeEntities(text) {
  return text.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});/gi, (all, code) => {
    if (code[0] !== "#") return ENTITIES[code.toLowerCase()] ?? all;
    const point = code[1] === "x" || code[1] === "X" ? Number.parseInt(code.slice(2), 16) : Number.parseInt(code.slice(1), 10);
    return point > 0 && point <= 0x10ffff ? String.fromCodePoint(point) : all;
  });
}

export function motdNodes(html) {
  const root = document.createDocumentFragment();
  const stack = [root];
  const text = (value) => { if (value) stack[stack.length - 1].append(document.createTextNode(decodeEntities(value))); };
  const source = String(html || "");
  let last = 0;
  for (const match of source.matchAll(MOTD_TOKEN)) {
    text(source.slice(last, match.index));
    last = match.index + match[0].length;
    const token = match[0].toLowerCase();
    if (token.startsWith("<br")) stack[stack.length - 1].append(document.createElement("br"));
    else if (token === "</span>") { if (stack.length > 1) stack.pop(); }
    else if (stack.length <= MAX_NESTING) {
      const span = document.createElement("span");
      const classes = match[1].split(/\s+/).filter((name) => MC_CLASSES.has(name));
      if (classes.length) span.className = classes.join(" ");
      stack[stack.length - 1].append(span);
      stack.push(span);
    }
  }
  text(source.slice(last));
  return root;
}

export function safeUrl(value) {
  try {
    const url = new URL(String(value || ""));
    return ["http:", "https:"].includes(url.protocol) ? url.href : null;
  } catch { return null; }
}

function faviconUrl(server) {
  const url = server.status?.favicon_url;
  return typeof url === "string" && url.startsWith(`/api/servers/${server.id}/favicon`) ? url : null;
}

function stateOf(server) {
  if (!server.status) return { key: "unknown", text: "Checking…" };
  return server.status.online ? { key: "online", text: "Online" } : { key: "offline", text: "Offline" };
}

function playersText(server) {
  const players = server.status?.online ? server.status.players : null;
  if (!players) return "";
  return `${formatNumber(players.online)} / ${formatNumber(players.max)} players`;
}

function editionText(server) {
  const edition = server.edition === "bedrock" ? "Bedrock" : "Java";
  return [edition, server.version, server.modpack].filter(Boolean).join(" · ");
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (an insecure origin, a refused permission): select it in a field instead.
    const field = h("input", { class: "copy-fallback", value: text, readonly: true, "aria-hidden": "true" });
    document.body.append(field);
    field.select();
    let done = false;
    try { done = document.execCommand("copy"); } catch { done = false; }
    field.remove();
    return done;
  }
}

export function addressLine(server) {
  const button = h("button", { class: "btn secondary copy-btn", type: "button", "aria-label": `Copy the address ${server.address}` },
    "Copy");
  button.addEventListener("click", async () => {
    const done = await copyText(server.address);
    button.textContent = done ? "Copied" : "Copy";
    toast(done ? `Copied ${server.address}` : "Copying failed: select the address to copy it.");
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
  return h("p", { class: "server-address" }, h("code", { class: "address", translate: "no" }, server.address), button);
}

function statusBadge(server) {
  const state = stateOf(server);
  return h("span", { class: "server-state", "data-state": state.key }, h("span", { class: "dot", "aria-hidden": "true" }),
    state.text);
}

// One server's card (a list item); `card.paint(server)` redraws it in place.
export function serverCard(server) {
  const li = h("li", { class: "card server-card" });
  li.paint = (s) => {
    li.server = s;
    li.dataset.serverId = String(s.id);
    li.dataset.state = stateOf(s).key;
    const icon = faviconUrl(s);
    const motd = s.status?.online && s.status.motd_html ? h("p", { class: "motd" }, motdNodes(s.status.motd_html)) : null;
    fill(li,
      h("div", { class: "server-head" },
        icon ? h("img", { class: "server-icon", src: icon, alt: "", width: 48, height: 48, loading: "lazy" })
          : h("span", { class: "server-icon placeholder", "aria-hidden": "true" }, (s.name || "?").slice(0, 1).toUpperCase()),
        h("div", { class: "grow" },
          h("h3", { class: "server-name" }, h("a", { href: `/servers/${s.id}`, "data-link": true }, s.name)),
          h("p", { class: "server-meta" }, statusBadge(s),
            h("span", { class: "server-players", "data-online": s.status?.players?.online ?? "" }, playersText(s))))),
      motd,
      addressLine(s),
      h("p", { class: "server-edition muted" }, editionText(s)));
  };
  li.paint(server);
  return li;
}

// The list of cards, kept in step with the data (`list.update(detail)`).
export function serverList(empty = "No game servers yet.") {
  const list = h("ul", { class: "list server-list", "aria-label": "Game servers" });
  const cards = new Map();
  list.update = (detail = { all: true }) => {
    const servers = data?.servers || [];
    if (detail.server !== undefined && !detail.order && !detail.all && cards.has(detail.server)) {
      const server = servers.find((s) => s.id === detail.server);
      if (server) { cards.get(detail.server).paint(server); return; }
    }
    if (detail.confirmed && cards.size === servers.length) return;
    cards.clear();
    fill(list, ...servers.map((s) => { const card = serverCard(s); cards.set(s.id, card); return card; }));
    if (!servers.length) fill(list, h("li", { class: "muted" }, empty));
  };
  list.update();
  return list;
}

// --- the players chart (an inline SVG drawn here) -------------------------------------------------------
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  for (const child of children) if (child) el.append(child);
  return el;
}

// The chart's top: a round number whose half is whole too (the grid's middle line is labelled).
function niceCeiling(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

// `width`: the box's CSS width, so the labels keep their size on a phone (the SVG is not scaled down).
export function drawChart(history, range, width = 600) {
  const W = Math.round(Math.min(900, Math.max(280, width))), H = W < 480 ? 160 : 200, L = 34, R = 8, T = 10, B = 24;
  const span = CHARTS[range]?.ms || CHARTS["24h"].ms;
  const end = Date.now();
  const start = end - span;
  const points = (history.points || []).map((p) => ({ at: Date.parse(p.at), players: Number(p.players) || 0,
    online: Number(p.online) || 0, max: Number(p.max) || 0 })).filter((p) => p.at >= start - 3600e3 && p.at <= end + 60e3)
    .sort((a, b) => a.at - b.at);
  const peak = points.reduce((m, p) => Math.max(m, p.players), 0);
  const top = niceCeiling(Math.max(peak, 1));
  const x = (at) => L + ((Math.min(Math.max(at, start), end) - start) / span) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  const grid = svg("g", { class: "chart-grid" });
  for (const v of [0, top / 2, top]) {
    grid.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    grid.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, document.createTextNode(formatNumber(v))));
  }
  grid.append(svg("text", { x: L, y: H - 6, "text-anchor": "start" }, document.createTextNode(range === "7d" ? "7 days ago" : "24 h ago")));
  grid.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, document.createTextNode("now")));
  // Offline stretches shaded; the players line broken where the server was down.
  const bucket = range === "7d" ? 3600e3 : 300e3;
  const shade = svg("g", { class: "chart-down" });
  const runs = [];
  let run = [];
  for (const p of points) {
    if (p.online < 0.5) {
      shade.append(svg("rect", { x: x(p.at), y: T, width: Math.max(1, x(p.at + bucket) - x(p.at)), height: H - T - B }));
    }
    if (p.online <= 0) { if (run.length) runs.push(run); run = []; continue; }
    if (run.length && p.at - run[run.length - 1].at > bucket * 2.5) { runs.push(run); run = []; }
    run.push(p);
  }
  if (run.length) runs.push(run);
  const lines = svg("g", { class: "chart-line" });
  for (const r of runs) {
    const path = r.map((p, i) => `${i ? "L" : "M"}${x(p.at).toFixed(1)},${y(p.players).toFixed(1)}`).join("");
    const area = `${path}L${x(r[r.length - 1].at).toFixed(1)},${y(0)}L${x(r[0].at).toFixed(1)},${y(0)}Z`;
    lines.append(svg("path", { class: "area", d: area }), svg("path", { class: "stroke", d: r.length > 1 ? path : `${path}h2` }));
  }
  const last = points[points.length - 1];
  const summary = points.length
    ? `Players over the last ${CHARTS[range].label}: peak ${formatNumber(Math.round(peak))}, now ${formatNumber(Math.round(last?.players || 0))}.`
    : `No player counts recorded in the last ${CHARTS[range].label} yet.`;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary,
    "data-points": points.length },
  svg("title", {}, document.createTextNode(summary)), grid, shade, lines);
  return h("figure", { class: "chart-box" }, chart, h("figcaption", { class: "muted" }, summary));
}

// A chart for one server with its range switch (`ranges`: which to offer).
export function playersChart(ctx, serverId, { ranges = ["24h"], range = "24h" } = {}) {
  const box = h("div", { class: "chart-slot", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading the chart…"));
  let current = range;
  const load = async () => {
    const asked = current;
    try {
      const history = await get(`/api/servers/${serverId}/history?range=${asked}`);
      if (!ctx.current() || asked !== current) return;
      fill(box, drawChart(history, asked, box.clientWidth || 600));
      box.dataset.range = asked;
    } catch (error) {
      if (!ctx.current()) return;
      fill(box, h("p", { class: "muted" }, isOffline() ? "The chart shows once connected." : `The chart could not be loaded: ${error.message}`));
    }
  };
  const root = h("div", { class: "players-chart" });
  if (ranges.length > 1) {
    const bar = h("div", { class: "row chart-ranges", role: "group", "aria-label": "Chart range" });
    for (const key of ranges) {
      const button = h("button", { class: "btn secondary", type: "button", "aria-pressed": String(key === current), "data-range": key },
        CHARTS[key].label);
      button.addEventListener("click", () => {
        if (key === current) return;
        current = key;
        for (const b of bar.children) b.setAttribute("aria-pressed", String(b.dataset.range === key));
        load();
      });
      bar.append(button);
    }
    root.append(bar);
  }
  root.append(box);
  root.load = load;
  return root;
}

// Signed-in members reach these public pages from the community: keep their tab bar.
async function ensureData(root) {
  const at = homeData();
  if (!fetched) {
    try { await refresh(); } catch { if (!at) fill(root, h("p", { class: "error" }, "The servers could not be loaded.")); }
  }
  return data;
}

// --- /servers ---------------------------------------------------------------------------------------------
export async function serversView(ctx) {
  homeData();
  const list = serverList();
  const root = h("section", { class: "servers" },
    session.me ? subnav("/servers") : null,
    h("h1", {}, "Game servers"),
    session.me?.role === "admin" ? h("p", {}, h("a", { href: "/admin/servers", "data-link": true }, "Manage servers")) : null,
    offlineNote(ctx), list);
  mount(root);
  follow(ctx, (detail) => list.update(detail));
  await ensureData(list);
  if (!ctx.current()) return;
  list.update();
}

// --- /servers/:id -----------------------------------------------------------------------------------------
function detailRow(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function uptimeText(value) {
  return typeof value === "number" ? `${value.toFixed(value >= 99.95 || value === 0 ? 0 : 1)} %` : "—";
}

function linkTo(url, text) {
  const safe = safeUrl(url);
  return safe ? h("a", { href: safe, rel: "noopener noreferrer", target: "_blank" }, text) : null;
}

function serverInfo(s) {
  const status = s.status;
  const players = status?.online ? status.players : null;
  const names = players?.sample || [];
  const map = linkTo(s.map_url, "Open the map");
  const modpack = s.modpack_url ? linkTo(s.modpack_url, s.modpack || "Modpack page") : null;
  return [
    h("div", { class: "card server-status", "data-state": stateOf(s).key },
      h("p", { class: "server-meta" }, statusBadge(s),
        h("span", { class: "server-players", "data-online": players?.online ?? "" }, playersText(s))),
      status?.online && status.motd_html ? h("p", { class: "motd" }, motdNodes(status.motd_html)) : null,
      !status?.online && status?.reason ? h("p", { class: "muted" }, `Not answering (${status.reason.replace(/_/g, " ")}).`) : null,
      addressLine(s),
      status?.checked_at ? h("p", { class: "muted small" }, `Checked at ${timeFormat.format(new Date(status.checked_at))}`) : null),
    s.description ? h("p", { class: "server-description" }, s.description) : null,
    h("dl", { class: "server-details" },
      detailRow("Edition", s.edition === "bedrock" ? "Bedrock" : "Java"),
      detailRow("Version", s.version || status?.version || "—"),
      s.modpack || modpack ? detailRow("Modpack", modpack || s.modpack) : null,
      map ? detailRow("Map", map) : null,
      detailRow("Uptime, 24 h", uptimeText(s.uptime?.["24h"])),
      detailRow("Uptime, 7 days", uptimeText(s.uptime?.["7d"]))),
    h("section", { class: "home-section", "aria-label": "Players online" },
      h("h2", {}, players?.exact ? `Online now (${formatNumber(names.length)})` : "Players online"),
      names.length
        ? h("ul", { class: "player-list", "data-exact": String(Boolean(players.exact)) }, names.map((name) => h("li", {}, name)))
        : h("p", { class: "muted" }, players ? (players.online ? "The server does not list its players." : "Nobody is playing right now.")
          : "The server is not answering."),
      players && !players.exact && names.length && players.online > names.length
        ? h("p", { class: "muted small" }, `A sample: ${plural(players.online - names.length, "more player")} not listed.`) : null),
  ];
}

export async function serverView(ctx) {
  const id = Number(ctx.params.id);
  homeData();
  const title = h("h1", {}, "Game server");
  const info = h("div", { class: "server-info" });
  const chart = playersChart(ctx, id, { ranges: ["24h", "7d"] });
  const root = h("section", { class: "server-page" },
    h("p", { class: "crumbs" }, h("a", { href: "/servers", "data-link": true }, "Game servers")),
    title, offlineNote(ctx), info,
    h("section", { class: "home-section", "aria-label": "Players over time" }, h("h2", {}, "Players over time"), chart));
  mount(root);
  const paint = () => {
    const server = data?.servers.find((s) => s.id === id);
    if (!server) return false;
    title.textContent = server.name;
    document.title = `Vonix · ${server.name}`;
    fill(info, ...serverInfo(server));
    return true;
  };
  follow(ctx, (detail) => { if (detail.all || detail.server === id || detail.confirmed) paint(); });
  if (!paint()) fill(info, h("p", { class: "muted" }, "Loading…"));
  await ensureData(info);
  if (!ctx.current()) return;
  if (!paint()) {
    try {
      const server = await get(`/api/servers/${id}`);
      if (!ctx.current()) return;
      data?.servers.push(server);
      paint();
    } catch (error) {
      if (!ctx.current()) return;
      fill(info, h("p", { class: "error" }, error.status === 404 ? "No such server." : `The server could not be loaded: ${error.message}`));
      return;
    }
  }
  chart.load();
}
