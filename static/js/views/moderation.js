// Moderation. The moderators' queue (/moderation, site staff only): open reports, newest first, each
// with who reported whom, where, the message and the reason, and what to do about it — Dismiss,
// Delete message, Mute or Ban, each asked once more; the resolved reports; and the sanctions in
// force, each with Lift. The queue is live: `report` and `report_resolved` arrive on the personal
// channel (docs/protocol.md, "Personal channel events"); nothing is polled, and the list is asked
// again only after a gap the personal channel cannot replay. The tab bar's Moderation entry (site
// staff only) counts the open reports.
//
// Also here, for every screen: the forms that mute, ban, kick and report (profile.js and the room
// panel use them), and the notice a member sees when a moderator mutes or bans them (`sanction`,
// `sanction_lifted`): a banner above the screen, kept until it runs out or is lifted.

import { del, errorText, get, post } from "../api.js";
import { ago, append, h, mount, profilePath, toast, when } from "../dom.js";
import { bus, live, session } from "../session.js";

export const MUTE_CHOICES = [[10, "10 minutes"], [60, "1 hour"], [1440, "1 day"], [10080, "1 week"]];
export const BAN_CHOICES = [[1440, "1 day"], [10080, "1 week"], [43200, "30 days"], [null, "permanently"]];
const RESOLUTION_TEXT = { dismiss: "Dismissed", delete: "Message deleted", mute: "Muted", ban: "Banned" };
const MAX_TIMER_MS = 2 ** 31 - 1;

export function isSiteStaff(me = session.me) {
  return ["admin", "moderator"].includes(me?.role);
}

// "# den" for a room, "a direct message" for a DM, "everywhere" for a site-wide sanction (null).
export function placeText(channel) {
  if (!channel) return "everywhere";
  if (channel.startsWith("room:")) return `# ${channel.slice(5)}`;
  if (channel.startsWith("dm:")) return "a direct message";
  return channel;
}

function durationText(minutes) {
  const known = [...MUTE_CHOICES, ...BAN_CHOICES].find(([value]) => value === minutes);
  if (known) return minutes === null ? known[1] : `for ${known[1]}`;
  return minutes === null ? "permanently" : `for ${minutes} min`;
}

// A moment in words: "until 14:05" or "until 3 Mar, 14:05"; "for good" without one.
function untilNodes(until) {
  return until ? ["until ", when(until)] : ["for good"];
}

function errorLine() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(el, error) {
  el.hidden = false;
  el.textContent = typeof error === "string" ? error : errorText(error);
}

// --- the forms other screens use -----------------------------------------------------------------

// The "asked once more" step of a moderation action: what it does in words, a duration when it has
// one (mute: 10 minutes to a week; ban: a day to permanent), a reason and the button that does it.
// `run({minutes, reason})` does it; a refusal (403 not_moderator, 422, ...) shows in the form.
export function actionForm({ kind, username, question, reason = "required", confirm = null,
  submitLabel = null, onDone = null, onCancel = null, run }) {
  const choices = kind === "mute" ? MUTE_CHOICES : kind === "ban" ? BAN_CHOICES : null;
  const duration = choices ? h("select", { name: "minutes" },
    choices.map(([value, label]) => h("option", { value: value === null ? "" : String(value) },
      value === null ? "Permanently" : label))) : null;
  const reasonBox = reason ? h("textarea", { name: "reason", rows: 2, maxlength: 500, required: reason === "required",
    placeholder: reason !== "required" ? "Optional: the report's reason is used"
      : kind === "kick" ? "Why: kept in the moderation log" : "Why: kept in the log and shown to them" })
    : null;
  const error = errorLine();
  const submit = h("button", { class: `btn${["dismiss", "lift"].includes(kind) ? "" : " danger"}`, type: "submit" });
  const cancel = h("button", { class: "btn secondary", type: "button" }, "Cancel");
  const minutes = () => (duration ? (duration.value === "" ? null : Number(duration.value)) : null);
  const label = () => {
    if (submitLabel) return submitLabel;
    const verb = { mute: "Mute", ban: "Ban", kick: "Kick" }[kind] || "Confirm";
    return `${verb} ${username}${choices ? ` ${durationText(minutes())}` : ""}`;
  };
  submit.textContent = label();
  duration?.addEventListener("change", () => { submit.textContent = label(); });
  const form = h("form", { class: "stack mod-form", "data-kind": kind, "aria-label": question },
    h("p", { class: "mod-question" }, question),
    duration ? h("label", {}, "How long", duration) : null,
    reasonBox ? h("label", {}, "Reason", reasonBox) : null,
    confirm ? h("p", { class: "muted" }, confirm) : null,
    error, h("div", { class: "row" }, submit, cancel));
  cancel.addEventListener("click", () => onCancel?.());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reasonBox ? reasonBox.value.trim() : "";
    if (reason === "required" && !text) { reasonBox.focus(); return; }
    error.hidden = true;
    submit.disabled = true;
    try {
      const result = await run({ minutes: minutes(), reason: text || null });
      onDone?.(result, { minutes: minutes(), reason: text });
    } catch (e) {
      showError(error, e);
      submit.disabled = false;
    }
  });
  queueMicrotask(() => (duration || reasonBox || cancel).focus());
  return form;
}

// Impose a mute or ban (`channel` "room:<name>", or null for site-wide): the 201 answer.
export function impose(kind, username, channel, minutes, reason) {
  return post("/api/moderation/sanctions", { kind, username, ...(channel ? { channel } : {}), minutes, reason });
}

// A member reports a member (`{username}`) or a message (`{channel, offset}`): reason, then "Send report".
export function reportForm({ target, question, onDone = null, onCancel = null }) {
  const reason = h("textarea", { name: "reason", rows: 3, maxlength: 500, required: true,
    placeholder: "Spam, harassment, something else…" });
  const error = errorLine();
  const submit = h("button", { class: "btn", type: "submit" }, "Send report");
  const cancel = h("button", { class: "btn secondary", type: "button" }, "Cancel");
  const form = h("form", { class: "stack mod-form report-form", "aria-label": "Report" },
    h("label", {}, question, reason), error, h("div", { class: "row" }, submit, cancel));
  cancel.addEventListener("click", () => onCancel?.());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reason.value.trim();
    if (!text) { reason.focus(); return; }
    error.hidden = true;
    submit.disabled = true;
    try {
      await post("/api/reports", { ...target, reason: text });
      form.replaceChildren(h("p", { class: "reported", role: "status" }, "Reported. Moderators will take a look."));
      toast("Reported.");
      onDone?.();
    } catch (e) {
      showError(error, e.code === "report_self" ? "You cannot report yourself." : e);
      submit.disabled = false;
    }
  });
  queueMicrotask(() => reason.focus());
  return form;
}

// --- a member's own sanctions: the notice ------------------------------------------------------

const NOTICE_KEY = "vonix:sanctions";
let notices = []; // {id, kind, channel, until, reason}
let noticeTimer = null;

function noticeOwner() {
  return session.me ? String(session.me.id) : null;
}

function saveNotices() {
  const owner = noticeOwner();
  if (!owner) return;
  try {
    if (notices.length) localStorage.setItem(NOTICE_KEY, JSON.stringify({ owner, notices }));
    else localStorage.removeItem(NOTICE_KEY);
  } catch { /* storage full: memory only */ }
}

function loadNotices() {
  try {
    const kept = JSON.parse(localStorage.getItem(NOTICE_KEY) || "null");
    return kept && kept.owner === noticeOwner() && Array.isArray(kept.notices) ? kept.notices : [];
  } catch { return []; }
}

const running = (s) => !s.until || Date.parse(s.until) > Date.now();

function noticeText(s) {
  const place = s.channel ? placeText(s.channel) : null;
  if (s.kind === "mute") return place ? `You are muted in ${place} ` : "You are muted everywhere on Vonix ";
  return place ? `You are banned from ${place} ` : "You are banned from Vonix ";
}

function paintNotices() {
  notices = notices.filter(running);
  let box = document.getElementById("sanctions");
  if (!notices.length) { box?.remove(); clearTimeout(noticeTimer); return; }
  if (!box) {
    box = h("div", { id: "sanctions", class: "sanctions", role: "alert" });
    document.getElementById("update").after(box);
  }
  box.replaceChildren(...notices.map((s) => {
    const dismiss = h("button", { class: "btn", type: "button", "aria-label": "Dismiss this notice" }, "OK");
    dismiss.addEventListener("click", () => { notices = notices.filter((n) => n.id !== s.id); saveNotices(); paintNotices(); });
    return h("div", { class: "banner sanction", "data-sanction": s.id, "data-kind": s.kind },
      h("span", { class: "banner-text" }, h("strong", {}, noticeText(s), ...untilNodes(s.until), "."),
        s.reason ? h("span", { class: "sanction-reason" }, ` Reason: ${s.reason}`) : null), dismiss);
  }));
  // The first one to run out takes its notice with it.
  clearTimeout(noticeTimer);
  const ends = notices.filter((s) => s.until).map((s) => Date.parse(s.until) - Date.now());
  if (ends.length) {
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, Math.min(...ends)) + 500);
    noticeTimer = setTimeout(() => { saveNotices(); paintNotices(); }, wait);
  }
}

bus.addEventListener("sanction", (event) => {
  const { id, kind, channel = null, until = null, reason = null } = event.detail || {};
  if (!id || !kind) return;
  notices = notices.filter((n) => n.id !== id).concat({ id, kind, channel, until, reason });
  saveNotices();
  paintNotices();
});

bus.addEventListener("sanction_lifted", (event) => {
  const gone = notices.find((n) => n.id === event.detail?.id);
  if (!gone) return;
  notices = notices.filter((n) => n !== gone);
  saveNotices();
  paintNotices();
  toast(gone.kind === "mute" ? `You are no longer muted${gone.channel ? ` in ${placeText(gone.channel)}` : ""}.`
    : `Your ban${gone.channel ? ` from ${placeText(gone.channel)}` : ""} was lifted.`);
});

// --- the queue: open reports, kept here so the tab bar's count and the screen agree -------------

export const queue = new EventTarget(); // "change" {id | null}, "resolved" {report}
const open = new Map(); // id -> report (open ones, as far as this tab knows)
let openMore = null; // next_before of the open list (more than one page open)
let openLoaded = false;
let openInflight = null;
let early = []; // events that came while the list was on its way: applied on top of it

function queueChanged(id = null) {
  paintCount();
  queue.dispatchEvent(new CustomEvent("change", { detail: { id } }));
}

export function openReports() {
  return [...open.values()].sort((a, b) => b.id - a.id);
}

export function openLoadedYet() {
  return openLoaded;
}

export function moreOpen() {
  return openMore;
}

export function loadOpen({ older = false } = {}) {
  if (!isSiteStaff()) return Promise.resolve();
  if (openInflight) return openInflight;
  const query = older && openMore ? `&before=${openMore}` : "";
  openInflight = get(`/api/admin/reports?status=open${query}`).then((page) => {
    if (!older) open.clear();
    for (const report of page.reports) open.set(report.id, report);
    openMore = page.next_before;
    openLoaded = true;
    const queued = early;
    early = [];
    for (const apply of queued) apply();
    queueChanged();
  }).finally(() => { openInflight = null; });
  return openInflight;
}

function paintCount() {
  const badge = document.getElementById("reports-count");
  if (!badge) return;
  const count = open.size;
  badge.hidden = !count;
  badge.textContent = openMore ? `${count}+` : String(count);
  badge.setAttribute("aria-label", `${count}${openMore ? "+" : ""} open report${count === 1 ? "" : "s"}`);
}

// This tab resolved one (the answer), or another moderator did (the event): out of the open list.
function settle(report) {
  const known = open.get(report.id);
  open.delete(report.id);
  const done = { ...(known || {}), ...report, status: "resolved" };
  queue.dispatchEvent(new CustomEvent("resolved", { detail: { report: done } }));
  queueChanged(report.id);
}

bus.addEventListener("report", (event) => {
  const report = event.detail?.report;
  if (!report || !isSiteStaff() || report.status !== "open") return;
  const apply = () => open.set(report.id, report);
  if (openInflight) early.push(apply);
  apply();
  queueChanged(report.id);
});

bus.addEventListener("report_resolved", (event) => {
  const { id, resolution } = event.detail || {};
  if (!id || !isSiteStaff()) return;
  if (openInflight) early.push(() => open.delete(id));
  settle({ id, resolution });
});

live.addEventListener("reset", (event) => {
  if (session.me && event.detail.channel === `user:${session.me.id}` && openLoaded) loadOpen().catch(() => {});
});

const SVG = "http://www.w3.org/2000/svg";

function shieldIcon() {
  const svg = document.createElementNS(SVG, "svg");
  for (const [key, value] of Object.entries({ class: "icon", viewBox: "0 0 24 24", "aria-hidden": "true", focusable: "false" })) {
    svg.setAttribute(key, value);
  }
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM9 12l2 2 4-4");
  svg.append(path);
  return svg;
}

// The tab bar's Moderation entry: there for site staff only (not hidden: absent), before Settings.
export function staffNav() {
  const nav = document.getElementById("nav");
  let link = nav.querySelector('a[data-nav="moderation"]');
  if (!isSiteStaff()) { link?.remove(); return; }
  if (!link) {
    link = h("a", { href: "/moderation", "data-link": true, "data-nav": "moderation" }, shieldIcon(),
      h("span", { class: "label" }, "Moderation"), " ", h("span", { id: "reports-count", class: "count", hidden: true }));
    nav.insertBefore(link, nav.querySelector('a[data-nav="settings"]'));
    paintCount();
    if (!openLoaded) loadOpen().catch(() => {});
  }
}

bus.addEventListener("signedin", () => {
  notices = loadNotices();
  paintNotices();
  if (isSiteStaff() && !openLoaded) loadOpen().catch(() => {});
});

function signedOut() {
  open.clear();
  openLoaded = false;
  openMore = null;
  early = [];
  notices = [];
  paintNotices();
  document.querySelector('#nav a[data-nav="moderation"]')?.remove();
}
bus.addEventListener("signedout", signedOut);

// --- the screen --------------------------------------------------------------------------------

function roomLink(report) {
  if (!report.channel) return null;
  if (report.channel.startsWith("room:") && report.offset) {
    return h("a", { href: `/rooms/${encodeURIComponent(report.channel.slice(5))}#m${report.offset}`, "data-link": true },
      placeText(report.channel));
  }
  return h("span", {}, placeText(report.channel));
}

function userLink(username) {
  return username ? h("a", { class: "report-user", href: profilePath(username), "data-link": true }, `@${username}`)
    : h("span", { class: "muted" }, "a deleted member");
}

function reportBody(report) {
  const about = report.offset
    ? [h("p", { class: "report-head" }, h("span", { class: "report-what" }, "Message by "), userLink(report.user),
      report.channel ? [" in ", roomLink(report)] : null),
    report.text !== null && report.text !== undefined
      ? h("blockquote", { class: "report-text" }, report.text)
      : h("p", { class: "report-text muted" }, "The message was deleted.")]
    : [h("p", { class: "report-head" }, h("span", { class: "report-what" }, "Member "), userLink(report.user))];
  return [...about,
    h("p", { class: "report-reason" }, h("span", { class: "muted" }, "Reported by "), userLink(report.reporter),
      h("span", { class: "muted" }, " · "),
      h("time", { datetime: report.created_at, title: new Date(report.created_at).toLocaleString() }, ago(report.created_at))),
    h("p", { class: "reason-text" }, report.reason)];
}

function openItem(report, { onResolved }) {
  const item = h("li", { class: "card report", "data-report": report.id });
  const actions = h("div", { class: "row report-actions" });
  const asking = h("div", { class: "report-confirm" });
  const who = report.user || "the member";
  const place = report.channel && report.channel.startsWith("room:") ? `in ${placeText(report.channel)}` : "everywhere";
  const resolve = (action) => async ({ minutes, reason }) => post(`/api/admin/reports/${report.id}/resolve`,
    { action, ...(minutes !== null && minutes !== undefined ? { minutes } : {}), ...(reason ? { reason } : {}) });
  const done = (words) => (result) => { toast(words(result)); onResolved(result); };
  const close = () => { asking.replaceChildren(); actions.hidden = false; };
  const ask = (form) => { asking.replaceChildren(form); actions.hidden = true; };
  const button = (label, kind, makeForm, name = label) => {
    const el = h("button", { class: `btn${kind ? ` ${kind}` : ""}`, type: "button", "aria-label": `${name} (report ${report.id})` }, label);
    el.addEventListener("click", () => ask(makeForm()));
    return el;
  };
  append(actions, [
    button("Dismiss", "secondary", () => actionForm({ kind: "dismiss", username: who, reason: null,
      question: `Dismiss this report? Nothing happens to ${who}.`, submitLabel: "Dismiss report",
      run: resolve("dismiss"), onDone: done(() => "Report dismissed."), onCancel: close })),
    report.offset ? button("Delete message", "danger", () => actionForm({ kind: "delete", username: who, reason: null,
      question: `Delete this message from ${placeText(report.channel)} and close the report?`, submitLabel: "Delete message",
      run: resolve("delete"), onDone: done(() => "Message deleted."), onCancel: close })) : null,
    report.user ? button("Mute", "danger", () => actionForm({ kind: "mute", username: report.user, reason: "optional",
      question: `Mute ${report.user} ${place}?`, run: resolve("mute"),
      onDone: done(() => `${report.user} is muted ${place}.`), onCancel: close }), "Mute") : null,
    report.user ? button("Ban", "danger", () => actionForm({ kind: "ban", username: report.user, reason: "optional",
      question: place === "everywhere" ? `Ban ${report.user} from Vonix?` : `Ban ${report.user} from ${placeText(report.channel)}?`,
      confirm: place === "everywhere" ? "A site ban signs them out everywhere." : null,
      run: resolve("ban"), onDone: done(() => `${report.user} is banned.`), onCancel: close }), "Ban") : null]);
  item.append(...reportBody(report), actions, asking);
  return item;
}

function resolvedItem(report) {
  return h("li", { class: "card report resolved", "data-report": report.id },
    ...reportBody(report),
    h("p", { class: "resolution" }, h("span", { class: "badge" }, RESOLUTION_TEXT[report.resolution] || report.resolution || "Resolved")));
}

function sanctionItem(sanction, { onLifted }) {
  const what = sanction.kind === "mute" ? "Muted" : "Banned";
  const where = sanction.channel_id === null || sanction.channel_id === undefined ? "everywhere"
    : sanction.channel ? `in ${placeText(sanction.channel)}` : "in one room";
  const item = h("li", { class: "card sanction-item", "data-sanction": sanction.id });
  const lift = h("button", { class: "btn secondary", type: "button", "aria-label": `Lift ${sanction.username}'s ${sanction.kind}` }, "Lift");
  const asking = h("div", { class: "report-confirm" });
  lift.addEventListener("click", () => {
    lift.hidden = true;
    asking.replaceChildren(actionForm({ kind: "lift", username: sanction.username, reason: null,
      question: `Lift ${sanction.username}'s ${sanction.kind} now?`, submitLabel: `Lift ${sanction.kind}`,
      run: () => del(`/api/moderation/sanctions/${sanction.id}`),
      onDone: () => { toast(`${sanction.username}'s ${sanction.kind} was lifted.`); onLifted(sanction); },
      onCancel: () => { asking.replaceChildren(); lift.hidden = false; } }));
  });
  append(item, [h("div", { class: "sanction-line" },
    h("p", { class: "grow" }, userLink(sanction.username), " ", h("strong", {}, what), ` ${where} `, ...untilNodes(sanction.until)),
    lift),
  sanction.reason ? h("p", { class: "reason-text" }, sanction.reason) : null, asking]);
  return item;
}

// Sanctions in force, for one member (their profile) or all: a list with Lift.
export function sanctionList(sanctions, { onLifted } = {}) {
  const list = h("ul", { class: "list mod-list", "aria-label": "Sanctions in force" });
  const draw = () => {
    list.replaceChildren(...sanctions.map((s) => sanctionItem(s, { onLifted: (gone) => {
      sanctions = sanctions.filter((x) => x.id !== gone.id);
      draw();
      onLifted?.(gone);
    } })));
    if (!sanctions.length) list.replaceChildren(h("li", { class: "muted" }, "No sanctions in force."));
  };
  draw();
  return list;
}

const TABS = [["open", "Open"], ["resolved", "Resolved"], ["sanctions", "Sanctions"]];

export async function moderationView(ctx) {
  if (!isSiteStaff()) {
    mount(h("section", { class: "card narrow" }, h("h1", {}, "Moderation"),
      h("p", {}, "Only site moderators and admins see the moderation queue."),
      h("p", {}, h("a", { class: "btn", href: "/rooms", "data-link": true }, "Back to rooms"))));
    return;
  }
  let tab = TABS.some(([key]) => key === ctx.query.get("tab")) ? ctx.query.get("tab") : "open";
  const openCount = h("span", { class: "count", hidden: true });
  const tabs = TABS.map(([key, label]) => {
    const el = h("button", { class: "tab", type: "button", role: "tab", id: `tab-${key}`, "aria-controls": "mod-panel",
      "data-tab": key }, label, key === "open" ? [" ", openCount] : null);
    el.addEventListener("click", () => show(key));
    return el;
  });
  const status = h("p", { class: "muted", role: "status" });
  const panel = h("div", { id: "mod-panel", role: "tabpanel" });
  mount(h("section", { class: "moderation" }, h("h1", {}, "Moderation"),
    h("div", { class: "tabs", role: "tablist", "aria-label": "Moderation" }, tabs), status, panel));

  // Open reports: one element per report, made once (a half-typed reason survives live changes).
  const openList = h("ul", { class: "list mod-list", "aria-label": "Open reports", "aria-live": "polite" });
  const openMoreButton = h("button", { class: "btn secondary", type: "button", hidden: true }, "Older reports");
  const openEmpty = h("p", { class: "muted empty" }, "No open reports. New ones show up here as they come in.");
  const items = new Map();
  const resolvedList = h("ul", { class: "list mod-list", "aria-label": "Resolved reports" });
  const resolvedMore = h("button", { class: "btn secondary", type: "button", hidden: true }, "Older resolved reports");
  let resolved = null; // loaded on first view; then live
  let resolvedBefore = null;

  const drawOpen = () => {
    const reports = openReports();
    const keep = new Set(reports.map((r) => r.id));
    for (const [id, el] of items) if (!keep.has(id)) { el.remove(); items.delete(id); }
    let previous = null;
    for (const report of reports) {
      let el = items.get(report.id);
      if (!el) {
        el = openItem(report, { onResolved: (result) => settle(result) });
        items.set(report.id, el);
      }
      if (previous ? previous.nextSibling !== el : openList.firstChild !== el) {
        if (previous) previous.after(el); else openList.prepend(el);
      }
      previous = el;
    }
    openEmpty.hidden = reports.length > 0;
    openMoreButton.hidden = !moreOpen();
    openCount.hidden = !reports.length;
    openCount.textContent = moreOpen() ? `${reports.length}+` : String(reports.length);
  };
  const drawResolved = () => {
    resolvedList.replaceChildren(...resolved.map(resolvedItem));
    if (!resolved.length) resolvedList.replaceChildren(h("li", { class: "muted" }, "No resolved reports yet."));
    resolvedMore.hidden = !resolvedBefore;
  };
  async function loadResolved(older = false) {
    const page = await get(`/api/admin/reports?status=resolved${older && resolvedBefore ? `&before=${resolvedBefore}` : ""}`);
    resolved = older ? resolved.concat(page.reports) : page.reports;
    resolvedBefore = page.next_before;
  }

  async function show(key) {
    tab = key;
    for (const el of tabs) el.setAttribute("aria-selected", String(el.dataset.tab === key));
    panel.setAttribute("aria-labelledby", `tab-${key}`);
    const url = key === "open" ? "/moderation" : `/moderation?tab=${key}`;
    if (location.pathname + location.search !== url) history.replaceState({}, "", url);
    status.textContent = "";
    status.className = "muted";
    try {
      if (key === "open") {
        panel.replaceChildren(openEmpty, openList, openMoreButton);
        if (!openLoadedYet()) { status.textContent = "Loading…"; await loadOpen(); }
        drawOpen();
      } else if (key === "resolved") {
        panel.replaceChildren(resolvedList, resolvedMore);
        if (!resolved) { status.textContent = "Loading…"; await loadResolved(); }
        drawResolved();
      } else {
        panel.replaceChildren();
        status.textContent = "Loading…";
        const { sanctions } = await get("/api/moderation/sanctions");
        if (tab !== "sanctions" || !ctx.current()) return;
        panel.replaceChildren(sanctionList(sanctions));
      }
      if (tab === key) status.textContent = "";
    } catch (e) {
      if (tab !== key || !ctx.current()) return;
      status.className = "error";
      status.textContent = `Could not load: ${errorText(e)}`;
    }
  }

  openMoreButton.addEventListener("click", () => loadOpen({ older: true }).catch((e) => toast(errorText(e))));
  resolvedMore.addEventListener("click", async () => {
    try { await loadResolved(true); drawResolved(); } catch (e) { toast(errorText(e)); }
  });
  const onChange = () => { if (openLoadedYet()) drawOpen(); };
  const onResolved = async (event) => {
    if (!resolved) return;
    const report = event.detail.report;
    if (resolved.some((r) => r.id === report.id)) return;
    if (!report.created_at) { // one this tab never had (an older page): ask for the list again
      try { await loadResolved(); } catch { return; }
    } else {
      resolved.unshift(report);
    }
    if (tab === "resolved" && ctx.current()) drawResolved();
  };
  queue.addEventListener("change", onChange);
  queue.addEventListener("resolved", onResolved);
  ctx.onLeave(() => {
    queue.removeEventListener("change", onChange);
    queue.removeEventListener("resolved", onResolved);
  });
  await show(tab);
}
