// Search (/search?q=…&type=users): messages in the rooms and conversations you may read, or
// members by name. The box asks the server once the member pauses typing (or presses Enter); a
// newer question cancels the one still on its way, and only the newest answer is shown. Message
// results show the matched words in <mark> (the server's highlight segments, as text), who wrote
// it, where and when; a tap opens the conversation at that message (`#m<offset>`, as notifications
// link). Member results open the profile. "Load more" follows `next_cursor`. The question and the
// tab live in the address, so Back returns to the same results.

import { ApiError, errorText, get } from "../api.js";
import { ago, avatar, h, mount } from "../dom.js";
import { session } from "../session.js";
import { dmEntries, loadDms } from "../unread.js";
import { personRow } from "./friends.js";
import { placeText, reportForm } from "./moderation.js";

const PAUSE_MS = 350;
const PAGE = 20;
const ROLE_LABEL = { admin: "Admin", moderator: "Moderator", bot: "Bot" };
const TABS = [["messages", "Messages"], ["users", "Members"]];

// A GET the member can cancel: a newer question aborts the older one. 401 (refresh) and 429 (wait)
// go through the shared client, which knows how to recover from both.
async function fetchPage(path, signal) {
  const response = await fetch(path, { headers: { accept: "application/json" }, credentials: "same-origin", signal });
  if (response.status === 401 || response.status === 429) return get(path);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// The conversation a result belongs to: a room's path, or the DM's (with the other member's name).
function conversationOf(hit) {
  if (hit.channel.startsWith("room:")) {
    const name = hit.channel.slice(5);
    return { path: `/rooms/${encodeURIComponent(name)}`, label: placeText(hit.channel) };
  }
  if (hit.channel.startsWith("dm:")) {
    const dm = dmEntries().find((entry) => entry.channel === hit.channel && entry.user);
    const other = dm ? dm.user.username
      : hit.from && session.me && hit.from.id !== session.me.id ? hit.from.username : null;
    return other ? { path: `/dms/${encodeURIComponent(other)}`, label: `Direct message with ${other}` }
      : { path: null, label: "Direct message" };
  }
  return { path: null, label: hit.channel };
}

function snippet(segments) {
  return h("span", { class: "hit-text" }, (segments || []).map(([text, matched]) => (matched ? h("mark", {}, text) : text)));
}

export async function searchView(ctx) {
  let q = (ctx.query.get("q") || "").trim();
  let type = ctx.query.get("type") === "users" ? "users" : "messages";
  const input = h("input", { type: "search", name: "q", value: q, autocomplete: "off", enterkeyhint: "search",
    spellcheck: "false", placeholder: "Words, or a member's name", "aria-label": "Search", "aria-describedby": "search-error" });
  const fieldError = h("p", { class: "error", id: "search-error", role: "alert", hidden: true });
  const form = h("form", { class: "row search-form", role: "search" }, input,
    h("button", { class: "btn", type: "submit" }, "Search"));
  const tabs = TABS.map(([key, label]) => {
    const el = h("button", { class: "tab", type: "button", role: "tab", id: `search-tab-${key}`, "data-tab": key,
      "aria-controls": "search-panel" }, label);
    el.addEventListener("click", () => { if (type !== key) { type = key; paintTabs(); run(); } });
    return el;
  });
  const status = h("p", { class: "muted search-status", role: "status" });
  const results = h("ul", { class: "list search-results", id: "search-results", "aria-label": "Results" });
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "Load more");
  const panel = h("div", { id: "search-panel", role: "tabpanel" }, status, results, more);
  mount(h("section", { class: "search" }, h("h1", {}, "Search"), form, fieldError,
    h("div", { class: "tabs", role: "tablist", "aria-label": "Search in" }, tabs), panel));

  let controller = null;
  let timer = null;
  let cursor = null;
  let asked = null; // {q, type} of the results on screen

  function paintTabs() {
    for (const el of tabs) el.setAttribute("aria-selected", String(el.dataset.tab === type));
    panel.setAttribute("aria-labelledby", `search-tab-${type}`);
    results.classList.toggle("people-list", type === "users");
  }

  function remember() {
    const params = new URLSearchParams();
    if (q) params.set("q", q);
    if (type === "users") params.set("type", "users");
    const query = params.toString();
    const url = `/search${query ? `?${query}` : ""}`;
    if (location.pathname + location.search !== url) history.replaceState({}, "", url);
  }

  function messageRow(hit) {
    const where = conversationOf(hit);
    const who = hit.from ? hit.from.username : "deleted member";
    const href = where.path ? `${where.path}#m${hit.offset}` : null;
    const time = h("time", { datetime: new Date(hit.ts * 1000).toISOString(), title: new Date(hit.ts * 1000).toLocaleString() },
      ago(hit.ts));
    const body = [avatar(hit.from), h("span", { class: "grow" },
      h("span", { class: "hit-meta" }, h("strong", { class: "hit-who" }, who), h("span", { class: "hit-where" }, where.label), time),
      snippet(hit.highlight))];
    const link = href
      ? h("a", { class: "item hit", href, "data-link": true, "data-channel": hit.channel, "data-offset": hit.offset }, body)
      : h("div", { class: "item hit", "data-channel": hit.channel, "data-offset": hit.offset }, body);
    const row = h("li", { class: "hit-row" }, link);
    const mine = hit.from && session.me && hit.from.id === session.me.id;
    if (hit.from && !mine) {
      const report = h("button", { class: "btn secondary hit-report", type: "button", "aria-label": `Report message from ${who}`,
        title: "Report" }, "⚑");
      report.addEventListener("click", () => {
        if (row.querySelector(".report-form")) return;
        report.setAttribute("aria-expanded", "true");
        row.append(reportForm({ target: { channel: hit.channel, offset: hit.offset },
          question: `Why should moderators look at this message from ${who}?`,
          onDone: () => report.remove(),
          onCancel: () => { row.querySelector(".report-form")?.remove(); report.setAttribute("aria-expanded", "false"); report.focus(); } }));
      });
      row.append(report);
    }
    return row;
  }

  function userRow(user) {
    const role = ROLE_LABEL[user.role];
    return personRow(user, { sub: `@${user.username}${role ? ` · ${role}` : ""}` });
  }

  function showError(error) {
    if (error.status === 422) {
      const reasons = (error.details || []).filter((d) => d.field === "q" || /q$/.test(d.field || ""));
      fieldError.hidden = false;
      fieldError.textContent = reasons.length ? `Search: ${reasons.map((d) => d.message).join("; ")}.` : errorText(error);
      input.setAttribute("aria-invalid", "true");
      status.textContent = "";
      return;
    }
    status.className = "error search-status";
    status.textContent = `Search failed: ${errorText(error)}`;
  }

  // Ask the server: page one (`older` false) replaces the results, "Load more" appends.
  async function ask(older = false) {
    clearTimeout(timer);
    controller?.abort();
    if (!q) {
      controller = null;
      results.replaceChildren();
      more.hidden = true;
      status.className = "muted search-status";
      status.textContent = "Type a word to search messages, or part of a name to find members.";
      asked = null;
      return;
    }
    const mine = new AbortController();
    controller = mine;
    const params = new URLSearchParams({ q, limit: String(PAGE) });
    if (type === "users") params.set("type", "users");
    if (older && cursor) params.set("cursor", cursor);
    if (!older) { status.className = "muted search-status"; status.textContent = "Searching…"; }
    more.disabled = true;
    try {
      const page = await fetchPage(`/api/search?${params}`, mine.signal);
      if (controller !== mine || !ctx.current()) return;
      const items = type === "users" ? page.users : page.messages;
      if (type === "messages" && items.some((hit) => hit.channel.startsWith("dm:")
          && !dmEntries().some((entry) => entry.channel === hit.channel))) {
        await loadDms().catch(() => {}); // which member each conversation is with
        if (controller !== mine || !ctx.current()) return;
      }
      fieldError.hidden = true;
      input.removeAttribute("aria-invalid");
      if (!older) results.replaceChildren();
      results.append(...items.map(type === "users" ? userRow : messageRow));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      asked = { q, type };
      status.className = "muted search-status";
      const count = results.querySelectorAll(":scope > li").length;
      status.textContent = !count ? (type === "users" ? `No members match “${q}”.` : `No messages match “${q}”.`)
        : `${count}${cursor ? "+" : ""} ${type === "users" ? "member" : "message"}${count === 1 && !cursor ? "" : "s"}`;
    } catch (error) {
      if (error.name === "AbortError" || controller !== mine || !ctx.current()) return;
      if (!older) { results.replaceChildren(); more.hidden = true; }
      showError(error);
    } finally {
      if (controller === mine) { controller = null; more.disabled = false; }
    }
  }

  function run() {
    q = input.value.trim();
    remember();
    if (asked && asked.q === q && asked.type === type && !controller) return;
    ask(false);
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    fieldError.hidden = true;
    input.removeAttribute("aria-invalid");
    timer = setTimeout(run, PAUSE_MS);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    asked = null; // Enter asks again, even for the same words
    run();
  });
  more.addEventListener("click", () => ask(true));
  ctx.onLeave(() => { clearTimeout(timer); controller?.abort(); });

  paintTabs();
  // A fresh search starts in the box (after the router has focused the screen); results keep the
  // focus where the screen put it.
  if (!q) setTimeout(() => { if (ctx.current()) input.focus(); }, 0);
  await ask(false);
}
