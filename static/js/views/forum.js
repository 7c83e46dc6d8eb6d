// The forum: its categories (/forum) and a category's threads (/forum/c/<id>), with "New thread".
// Live (docs/community.md): each category's `live:forum:<id>` stream. On the category list a new
// thread or a reply moves the category's last activity at once and its counts follow (read again,
// a moment later, since a stream's thread says its own count, not the category's); in a category,
// a thread's replies, score, title, pin and lock change in place, a deleted thread goes, and new
// threads wait behind a "N new threads" bar rather than pushing the list under the reader's finger.
// Admins (`admin.forum.manage`) also manage the categories here: "New category" above the list, and
// each category's "Edit" opens a panel to change it or delete it (only an empty one).

import { del, get, patch, post } from "../api.js";
import { h, mount, toast } from "../dom.js";
import { byline, confirmAction, fill, formState, generalError, isAdmin, keepTimesFresh, LIMITS, liveStreams, newBar,
  plural, selectField, stamp, subnav, tabs, textField } from "../community.js";
import { panel } from "../reactions.js";
import { navigate } from "../router.js";

const PAGE = 20;
const SORTS = [["latest", "Latest"], ["top", "Top"], ["new", "New"]];
const RULES = [["everyone", "Everyone"], ["members", "Members"], ["moderator", "Moderators"], ["admin", "Admins"]];
const CATEGORY_LIMITS = { name: 64, description: 2000, position: 1000000 };

export async function loadCategories() {
  return (await get("/api/forum/categories")).categories;
}

// One thread in a list: its title (a link), badges, the author's byline, replies, score, last activity.
export function threadRow(thread, { category = null } = {}) {
  const title = h("a", { class: "thread-title", href: `/forum/t/${thread.id}`, "data-link": true });
  const badges = h("span", { class: "thread-badges" });
  const stats = h("span", { class: "thread-stats" });
  const when = h("span", { class: "thread-when" });
  const el = h("li", { class: "thread-row", "data-thread": thread.id },
    h("div", { class: "thread-line" }, badges, title),
    h("div", { class: "thread-meta" }, byline(thread.author, thread.created_at, { small: true }),
      category ? h("span", { class: "muted thread-category" }, `in ${category}`) : null),
    h("div", { class: "thread-foot" }, stats, when));
  el.paint = (t) => {
    el.thread = t;
    title.textContent = t.deleted && !t.title ? "Deleted thread" : t.title;
    fill(badges, ...[t.pinned ? h("span", { class: "badge pin", title: "Pinned" }, "Pinned") : null,
      t.locked ? h("span", { class: "badge lock", title: "Locked" }, "Locked") : null].filter(Boolean));
    stats.textContent = `${plural(t.replies, "reply", "replies")} · ${plural(t.score, "point")}`;
    stats.dataset.replies = String(t.replies);
    fill(when, stamp(t.last_activity_at || t.created_at, "active "));
  };
  el.paint(thread);
  return el;
}

// --- managing categories (admins) ----------------------------------------------------------------

// The category's fields as a form: empty (`category` null) to create one, filled to edit it. Only
// what changed is sent on an edit (the API changes only the fields sent); a refusal stays beside its
// field with the admin's text kept. `onSaved(category)` once the server took it.
function categoryForm(category, onSaved) {
  const name = textField("Name", { name: "name", max: CATEGORY_LIMITS.name, value: category?.name || "" });
  const description = textField("Description", { name: "description", max: CATEGORY_LIMITS.description, rows: 3,
    required: false, value: category?.description || "" });
  const position = textField("Position", { name: "position", type: "number", required: false,
    hint: category ? "lower comes first" : "lower comes first; empty: after the last",
    value: category ? String(category.position) : "", attrs: { min: 0, max: CATEGORY_LIMITS.position, inputmode: "numeric" } });
  const view = selectField("Who can read it", { name: "view", options: RULES, value: category?.view || "everyone" });
  const postRule = selectField("Who can post", { name: "post", options: RULES, value: category?.post || "members" });
  const general = generalError();
  const submit = h("button", { class: "btn", type: "submit" }, category ? "Save category" : "Create category");
  const state = formState([name, description, position, view, postRule], general);
  const form = h("form", { class: "stack category-form", novalidate: true }, name.el, description.el, position.el,
    h("div", { class: "two" }, view.el, postRule.el), general, submit);

  // Everything the form says, as the API's fields (a blank description is none; a blank position: the server's default).
  const values = () => ({
    name: name.input.value.trim(),
    description: description.input.value.trim() || null,
    position: position.input.value.trim() === "" ? null : Number(position.input.value),
    view: view.input.value,
    post: postRule.input.value,
  });
  const body = () => {
    const now = values();
    if (!category) return Object.fromEntries(Object.entries(now).filter(([, v]) => v !== null));
    const was = { name: category.name, description: category.description || null, position: category.position,
      view: category.view, post: category.post };
    const changed = Object.fromEntries(Object.entries(now).filter(([k, v]) => v !== was[k]));
    if (changed.position === null) delete changed.position; // emptied: stays where it is
    return changed;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (!name.input.value.trim()) { name.input.focus(); return; }
    if (state.over()) return;
    const fields = body();
    submit.disabled = true;
    try {
      const saved = category && !Object.keys(fields).length ? category
        : category ? await patch(`/api/admin/forum/categories/${category.id}`, fields)
          : await post("/api/admin/forum/categories", fields);
      if (!category) {
        for (const f of [name, description, position]) { f.input.value = ""; f.showCount(); }
        view.input.value = "everyone";
        postRule.input.value = "members";
      }
      onSaved(saved);
    } catch (e) {
      // The server's reasons in the form's words: a taken name (409) under Name, a position out of range under Position.
      const details = e.code === "category_exists"
        ? [{ field: "name", message: "A category with this name exists: choose another name." }]
        : (e.details || []).map((d) => (d.field === "position"
          ? { ...d, message: "A position is a whole number from 0 to 1,000,000." } : d));
      state.show({ ...e, message: e.message, code: e.code, status: e.status, details });
    } finally { submit.disabled = false; }
  });
  return form;
}

// The panel that edits a category and deletes it (the server keeps a category with threads: 409).
function openCategoryPanel(ctx, category, onChanged) {
  const refusal = h("p", { class: "error", role: "alert", hidden: true });
  const remove = confirmAction("Delete category", `Delete “${category.name}” for everyone?`, async () => {
    refusal.hidden = true;
    try {
      await del(`/api/admin/forum/categories/${category.id}`);
    } catch (e) {
      if (e.code !== "category_not_empty") throw e;
      refusal.hidden = false;
      refusal.textContent = `“${category.name}” still has threads: only an empty category can be deleted. `
        + "Delete its threads first.";
      return;
    }
    dialog.close();
    toast("Category deleted.");
    onChanged();
  });
  const dialog = panel(`Edit ${category.name}`, categoryForm(category, () => {
    dialog.close();
    toast("Category saved.");
    onChanged();
  }), h("div", { class: "danger-zone" }, h("p", { class: "muted" }, "Only a category without threads can be deleted."),
    refusal, remove));
  dialog.classList.add("category-panel", "form-panel");
  ctx.onLeave(() => dialog.close());
  dialog.querySelector("input")?.focus();
  return dialog;
}

export async function forumView(ctx) {
  const list = h("ul", { class: "list", "aria-label": "Categories" }, h("li", { class: "muted" }, "Loading…"));
  const admin = isAdmin();
  const create = admin ? h("details", { class: "card create category-create" }, h("summary", {}, "New category")) : null;
  const root = h("section", { class: "community forum" }, subnav("/forum"), h("h1", {}, "Forum"), create, list);
  mount(root);
  keepTimesFresh(ctx, root);
  const rows = new Map(); // id -> {el, category, paint}
  let reloadTimer = null;
  // After an admin's change: the list as the server has it now (names, order, rules and all).
  const redraw = () => loadCategories().then((categories) => { if (ctx.current()) draw(categories); })
    .catch((e) => toast(e.message));
  create?.append(categoryForm(null, (saved) => {
    create.open = false;
    toast(`Category “${saved.name}” created.`);
    redraw();
  }));

  function row(category) {
    const stats = h("span", { class: "sub category-stats" });
    const when = h("span", { class: "category-when" });
    const link = h("a", { class: "item", href: `/forum/c/${category.id}`, "data-link": true, "data-category": category.id },
      h("span", { class: "avatar room-icon", "aria-hidden": "true" }, "§"),
      h("span", { class: "grow" }, h("span", { class: "title" }, category.name),
        category.description ? h("span", { class: "sub" }, category.description) : null, stats),
      when);
    const paint = (c) => {
      stats.textContent = `${plural(c.threads, "thread")} · ${plural(c.replies, "reply", "replies")}`;
      stats.dataset.threads = String(c.threads);
      stats.dataset.replies = String(c.replies);
      fill(when, c.last_activity_at ? stamp(c.last_activity_at) : h("span", { class: "muted" }, "quiet"));
    };
    paint(category);
    const manage = admin ? h("button", { class: "btn secondary category-manage", type: "button", "aria-haspopup": "dialog",
      "aria-label": `Edit category ${category.name}`, "data-manage": category.id }, "Edit") : null;
    manage?.addEventListener("click", () => openCategoryPanel(ctx, category, redraw));
    return { el: h("li", { class: manage ? "category-row" : null }, link, manage), category: { ...category }, paint };
  }
  function draw(categories) {
    const known = new Set(categories.map((c) => c.id));
    for (const id of rows.keys()) if (!known.has(id)) streams.drop(`live:forum:${id}`);
    rows.clear();
    fill(list, ...categories.map((c) => {
      const r = row(c);
      rows.set(c.id, r);
      streams.follow(`live:forum:${c.id}`);
      return r.el;
    }));
    if (!categories.length) fill(list, h("li", { class: "muted" }, "No categories yet."));
  }
  async function reload() {
    const categories = await loadCategories();
    if (!ctx.current()) return;
    const known = new Set(categories.map((c) => c.id));
    if (categories.length !== rows.size || ![...rows.keys()].every((id) => known.has(id))) { draw(categories); return; }
    for (const c of categories) { const r = rows.get(c.id); r.category = { ...c }; r.paint(c); }
  }
  // Counts come back from the server, spread over a second so a busy forum's readers do not ask at once.
  const reloadSoon = () => {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => { reloadTimer = null; reload().catch(() => {}); }, 300 + Math.random() * 1200);
  };
  ctx.onLeave(() => clearTimeout(reloadTimer));
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      const r = rows.get(Number(channel.split(":")[2]));
      if (!r) return;
      const thread = data.thread;
      if (data.type === "thread_created" && thread) {
        r.category.threads += 1;
        r.category.last_activity_at = thread.created_at;
        r.paint(r.category);
        reloadSoon();
      } else if (data.type === "thread_updated" && thread) {
        const at = thread.last_activity_at;
        if (at && (!r.category.last_activity_at || new Date(at) > new Date(r.category.last_activity_at))) {
          r.category.last_activity_at = at;
          r.paint(r.category);
        }
        reloadSoon();
      } else if (data.type === "thread_deleted") reloadSoon();
    },
    onReset: () => reload().catch(() => {}),
  });
  try {
    draw(await loadCategories());
  } catch (e) {
    fill(list, h("li", { class: "error" }, navigator.onLine ? `The forum could not be loaded: ${e.message}`
      : "You are offline: the forum shows once connected."));
  }
  streams.ready();
}

function threadForm(category) {
  const title = textField("Title", { name: "title", max: LIMITS.threadTitle });
  const body = textField("Post", { name: "body", max: LIMITS.threadBody, rows: 6,
    hint: "Markdown: **bold**, _italic_, lists, links, tables, @mentions" });
  const general = generalError();
  const submit = h("button", { class: "btn", type: "submit" }, "Post thread");
  const state = formState([title, body], general);
  const form = h("form", { class: "stack", novalidate: true }, title.el, body.el, general, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (!title.input.value.trim()) { title.input.focus(); return; }
    if (!body.input.value.trim()) { body.input.focus(); return; }
    if (state.over()) return;
    submit.disabled = true;
    try {
      const thread = await post(`/api/forum/categories/${category.id}/threads`,
        { title: title.input.value.trim(), body: body.input.value.trim() });
      navigate(`/forum/t/${thread.id}`);
    } catch (e) { state.show(e); } finally { submit.disabled = false; }
  });
  return form;
}

export async function categoryView(ctx) {
  const id = Number(ctx.params.id);
  const sort = SORTS.some(([key]) => key === ctx.query.get("sort")) ? ctx.query.get("sort") : "latest";
  const root = h("section", { class: "community category" }, subnav("/forum"), h("p", { class: "muted", role: "status" }, "Loading…"));
  mount(root);
  let category;
  try {
    category = (await loadCategories()).find((c) => c.id === id);
  } catch (e) {
    if (!ctx.current()) return;
    fill(root, subnav("/forum"), h("p", { class: "error", role: "alert" },
      navigator.onLine ? `The forum could not be loaded: ${e.message}` : "You are offline: the forum shows once connected."));
    return;
  }
  if (!ctx.current()) return;
  if (!category) {
    fill(root, subnav("/forum"), h("div", { class: "card narrow" }, h("h1", {}, "No such category"),
      h("p", {}, "It was removed, or you may not see it."),
      h("p", {}, h("a", { class: "btn", href: "/forum", "data-link": true }, "Back to the forum"))));
    return;
  }
  document.title = `Vonix · ${category.name}`;
  const rows = new Map();
  let pending = [];
  let cursor = null;
  const list = h("ul", { class: "list thread-list", "aria-label": "Threads" });
  const status = h("p", { class: "muted", role: "status" }, "Loading threads…");
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "More threads");
  const bar = newBar("thread");
  fill(root, subnav("/forum"),
    h("div", { class: "page-head" }, h("p", { class: "crumbs" }, h("a", { href: "/forum", "data-link": true }, "Forum"), " ›"),
      h("h1", {}, category.name), category.description ? h("p", { class: "muted" }, category.description) : null),
    category.can_post ? h("details", { class: "card create" }, h("summary", {}, "New thread"), threadForm(category))
      : h("p", { class: "muted" }, "Only some members may start threads here."),
    tabs(SORTS, sort, "Sort threads", (key) => navigate(`/forum/c/${id}${key === "latest" ? "" : `?sort=${key}`}`, { replace: true })),
    bar.el, status, list, more);
  keepTimesFresh(ctx, root);

  function show(thread, where) {
    pending = pending.filter((t) => t.id !== thread.id);
    bar.set(pending.length);
    if (rows.has(thread.id)) { rows.get(thread.id).paint(thread); return; }
    const el = threadRow(thread);
    rows.set(thread.id, el);
    if (where === "start") {
      const firstUnpinned = [...list.children].find((li) => !li.thread?.pinned);
      list.insertBefore(el, thread.pinned ? list.firstElementChild : firstUnpinned || null);
    } else list.append(el);
    status.hidden = true;
  }
  async function load(reset) {
    const page = await get(`/api/forum/categories/${id}/threads?sort=${sort}&limit=${PAGE}`
      + `${!reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (reset) { rows.clear(); fill(list); pending = []; bar.set(0); }
    for (const t of page.items) show(t, "end");
    cursor = page.next;
    more.hidden = !cursor;
    status.hidden = rows.size > 0;
    status.textContent = "No threads yet.";
  }
  more.addEventListener("click", () => load(false).catch((e) => toast(e.message)));
  bar.el.addEventListener("click", async () => {
    if (bar.el.dataset.unknown === "true") await load(true).catch((e) => toast(e.message));
    else for (const t of [...pending].reverse()) show(t, "start");
    pending = [];
    bar.set(0);
    list.firstElementChild?.querySelector("a.thread-title")?.focus();
  });
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (data.type === "thread_created" && data.thread && !rows.has(data.thread.id)
          && !pending.some((t) => t.id === data.thread.id)) {
        pending.unshift(data.thread);
        bar.set(pending.length);
      } else if (data.type === "thread_updated" && data.thread) {
        const row = rows.get(data.thread.id);
        if (row) row.paint({ ...row.thread, ...data.thread });
        else pending = pending.map((t) => (t.id === data.thread.id ? { ...t, ...data.thread } : t));
      } else if (data.type === "thread_deleted") {
        rows.get(data.id)?.remove();
        rows.delete(data.id);
        pending = pending.filter((t) => t.id !== data.id);
        bar.set(pending.length);
      }
    },
    onReset: () => bar.set(pending.length, { unknown: true }),
  });
  streams.follow(`live:forum:${id}`);
  await streams.settled();
  if (!ctx.current()) return;
  try {
    await load(true);
  } catch (e) {
    status.className = "error";
    status.textContent = navigator.onLine ? `Threads could not be loaded: ${e.message}` : "You are offline: threads show once connected.";
  }
  streams.ready();
}
