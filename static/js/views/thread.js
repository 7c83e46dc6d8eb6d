// A forum thread (/forum/t/<id>): the opening post and its replies, oldest first, with votes, the
// reply form, and editing and deleting for authors; watch; pin and lock for site moderators.
// Text is Markdown: the server renders and sanitizes it (`html`), and only that field is inserted
// as HTML; the `body` source comes only to its author, for editing.
// Live on `live:thread:<id>`: new replies appear at the end (never above what is being read),
// edits, deletes and scores change in place, and the thread's title, lock and pin follow. The
// member's own vote (`my_vote`) is theirs: pushes say the score only.
// An edited thread or reply's "(edited)" mark opens its edit history (the versions edits replaced)
// in a panel, for its author and moderators — the only ones the server shows it to.

import { del, get, patch, post } from "../api.js";
import { h, mount, toast } from "../dom.js";
import { actionButton, byline, confirmAction, displayName, fill, formatNumber, formState, generalError, isMe, isStaff,
  keepTimesFresh, LIMITS, liveStreams, markdown, plural, stamp, subnav, textField } from "../community.js";
import { panel, refusalText } from "../reactions.js";
import { loadCategories } from "./forum.js";

const PAGE = 50;

// ▲ score ▼: a second tap on the same arrow takes the vote back.
function voteBox(state, path, noun) {
  const score = h("span", { class: "score", "aria-live": "polite" });
  const up = h("button", { class: "vote up", type: "button", "aria-label": `Upvote ${noun}` }, "▲");
  const down = h("button", { class: "vote down", type: "button", "aria-label": `Downvote ${noun}` }, "▼");
  const box = h("span", { class: "votes", role: "group", "aria-label": `Votes on ${noun}` }, up, score, down);
  const paint = () => {
    score.textContent = formatNumber(state.score);
    score.dataset.score = String(state.score);
    score.setAttribute("aria-label", `Score ${formatNumber(state.score)}`);
    up.setAttribute("aria-pressed", String(state.my_vote === 1));
    down.setAttribute("aria-pressed", String(state.my_vote === -1));
  };
  const vote = (value) => async () => {
    if (up.disabled) return;
    up.disabled = down.disabled = true;
    try {
      const answer = await post(path, { value: state.my_vote === value ? 0 : value });
      state.score = answer.score;
      state.my_vote = answer.my_vote;
      paint();
    } catch (e) { toast(e.message); } finally { up.disabled = down.disabled = false; }
  };
  up.addEventListener("click", vote(1));
  down.addEventListener("click", vote(-1));
  paint();
  return { el: box, paint };
}

// An author's edit in place: the Markdown source in a box, Save or Cancel.
function editForm(source, max, label, save, done) {
  const field = textField(label, { name: "body", max, rows: 6, value: source });
  const general = generalError();
  const state = formState([field], general);
  const submit = h("button", { class: "btn", type: "submit" }, "Save");
  const cancel = h("button", { class: "btn secondary", type: "button" }, "Cancel");
  const form = h("form", { class: "stack edit-form", novalidate: true }, field.el, general, h("div", { class: "row" }, submit, cancel));
  cancel.addEventListener("click", () => done(null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (!field.input.value.trim()) { field.input.focus(); return; }
    if (state.over()) return;
    submit.disabled = true;
    try { done(await save(field.input.value.trim())); } catch (e) { state.show(e); } finally { submit.disabled = false; }
  });
  queueMicrotask(() => field.input.focus());
  return form;
}

// Who may open the history: its author and site moderators (the server answers 403 to anyone else).
const mayReadHistory = (author) => isMe(author) || isStaff();

// The edit history of a thread (`kind` "thread") or a reply, newest first: each entry is a version
// an edit replaced, with who replaced it and when. Closed when the screen is left.
function openEditHistory(ctx, kind, id, opener) {
  const list = h("ol", { class: "edit-history", "aria-label": "Earlier versions" }, h("li", { class: "muted" }, "Loading…"));
  const dialog = panel(kind === "thread" ? "Thread edit history" : "Reply edit history",
    h("p", { class: "muted" }, "Earlier versions, newest first."), list);
  dialog.classList.add("history-panel");
  dialog.addEventListener("close", () => { if (opener?.isConnected) opener.focus(); });
  ctx.onLeave(() => dialog.close());
  const path = kind === "thread" ? `/api/forum/threads/${id}/edits` : `/api/forum/replies/${id}/edits`;
  get(path).then(({ edits }) => {
    fill(list, ...edits.map((edit) => h("li", { class: "edit-version", "data-edit": edit.id },
      h("p", { class: "muted edit-when" }, "Replaced ", stamp(edit.replaced_at),
        edit.editor ? ` by ${displayName(edit.editor)}` : null),
      edit.title ? h("p", { class: "edit-title" }, edit.title) : null,
      markdown(edit.html))));
    if (!edits.length) fill(list, h("li", { class: "muted" }, "No earlier versions."));
  }).catch((error) => fill(list, h("li", { class: "error", role: "alert" }, refusalText(error))));
  return dialog;
}

function notFound(root) {
  fill(root, subnav("/forum"), h("div", { class: "card narrow" }, h("h1", {}, "No such thread"),
    h("p", {}, "It was removed, or you may not see it."),
    h("p", {}, h("a", { class: "btn", href: "/forum", "data-link": true }, "Back to the forum"))));
  document.title = "Vonix · no such thread";
}

export async function threadView(ctx) {
  const id = Number(ctx.params.id);
  const root = h("section", { class: "community thread" }, subnav("/forum"), h("p", { class: "muted", role: "status" }, "Loading…"));
  mount(root);
  const replies = new Map(); // id -> li
  let cursor = null;
  const thread = {};
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (data.type === "reply_created" && data.reply) addReply(data.reply, true);
      else if (data.type === "reply_updated" && data.reply) replies.get(data.reply.id)?.paint(data.reply);
      else if (data.type === "thread_updated" && data.thread) paintThread(data.thread);
    },
    onReset: () => reload().catch(() => {}),
  });
  if (Number.isInteger(id) && id > 0) streams.follow(`live:thread:${id}`);
  await streams.settled();
  let first;
  try {
    first = await get(`/api/forum/threads/${id}`);
  } catch (e) {
    if (!ctx.current()) return;
    if (e.status === 404 || e.status === 422) return notFound(root);
    fill(root, subnav("/forum"), h("p", { class: "error", role: "alert" },
      navigator.onLine ? `This thread could not be loaded: ${e.message}` : "You are offline: the thread shows once connected."));
    return;
  }
  if (!ctx.current()) return;

  // --- the opening post ---
  const title = h("h1", { class: "thread-h1" });
  const badges = h("span", { class: "thread-badges" });
  const crumbs = h("p", { class: "crumbs" }, h("a", { href: "/forum", "data-link": true }, "Forum"), " › ",
    h("a", { class: "crumb-category", href: `/forum/c/${first.thread.category_id}`, "data-link": true }, "Category"));
  const head = h("div", { class: "thread-byline" });
  const body = h("div", { class: "thread-body" });
  const tombstoneNote = h("p", { class: "muted tombstone", hidden: true }, "This thread was deleted.");
  const stats = h("p", { class: "muted thread-stats" });
  const actions = h("div", { class: "row post-actions thread-actions" });
  const opening = h("article", { class: "card thread-main" }, crumbs, h("div", { class: "thread-line" }, badges, title), head,
    tombstoneNote, body, stats, actions);
  let editing = false;

  // `push`: the fields come from the stream, which says the score, not this member's vote, source or watch.
  function paintThread(fields, { push = true } = {}) {
    const keep = { my_vote: thread.my_vote, body: thread.body, watching: thread.watching };
    Object.assign(thread, fields);
    if (push) {
      thread.my_vote = keep.my_vote ?? 0;
      if (fields.body === undefined) thread.body = keep.body;
      if (fields.watching === undefined) thread.watching = keep.watching;
    }
    title.textContent = thread.deleted && !thread.title ? "Deleted thread" : thread.title;
    document.title = `Vonix · ${thread.title || "thread"}`;
    fill(badges, ...[thread.pinned ? h("span", { class: "badge pin" }, "Pinned") : null,
      thread.locked ? h("span", { class: "badge lock" }, "Locked") : null].filter(Boolean));
    fill(head, byline(thread.author, thread.created_at, { edited: thread.edited_at,
      onEdited: mayReadHistory(thread.author) ? (button) => openEditHistory(ctx, "thread", id, button) : null }));
    tombstoneNote.hidden = !thread.deleted;
    if (!editing) fill(body, markdown(thread.html));
    stats.textContent = `${plural(thread.replies, "reply", "replies")} · ${plural(thread.views, "view")}`;
    stats.dataset.replies = String(thread.replies);
    paintActions();
    paintComposer();
  }

  function paintActions() {
    const t = thread;
    const staff = isStaff();
    const items = [t.deleted ? null : voteBox(thread, `/api/forum/threads/${id}/vote`, "thread").el,
      actionButton(t.watching ? "Watching" : "Watch", async () => {
        if (t.watching) await del(`/api/forum/threads/${id}/watch`); else await post(`/api/forum/threads/${id}/watch`);
        thread.watching = !t.watching;
        paintActions();
      }, { attrs: { "aria-pressed": String(Boolean(t.watching)), title: "Be notified of new replies" } }),
      !t.deleted && typeof t.body === "string" ? actionButton("Edit", async () => startEdit()) : null,
      !t.deleted && (isMe(t.author) || staff) ? confirmAction("Delete", "Delete this thread? Its replies stay.", async () => {
        await del(`/api/forum/threads/${id}`);
        toast("Thread deleted.");
        await reload();
      }, { attrs: { "aria-label": "Delete thread" } }) : null,
      staff ? actionButton(t.pinned ? "Unpin" : "Pin", async () => {
        paintThread(await post(`/api/forum/threads/${id}/${t.pinned ? "unpin" : "pin"}`), { push: false });
      }) : null,
      staff ? actionButton(t.locked ? "Unlock" : "Lock", async () => {
        paintThread(await post(`/api/forum/threads/${id}/${t.locked ? "unlock" : "lock"}`), { push: false });
      }) : null];
    fill(actions, ...items.filter(Boolean));
  }

  function startEdit() {
    editing = true;
    fill(body, editForm(thread.body, LIMITS.threadBody, "Edit your post",
      (text) => patch(`/api/forum/threads/${id}`, { body: text }), (saved) => {
        editing = false;
        if (saved) paintThread({ ...saved, body: saved.body ?? thread.body }, { push: false });
        else fill(body, markdown(thread.html));
      }));
  }

  // --- replies ---
  const list = h("ol", { class: "reply-list", "aria-label": "Replies", "aria-live": "polite" });
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "More replies");
  const none = h("p", { class: "muted" }, "No replies yet.");

  function replyEl(initial) {
    const r = { ...initial };
    const li = h("li", { class: "card reply", "data-reply": r.id, id: `r${r.id}` });
    let replyEditing = false;
    li.paint = (fields, { push = true } = {}) => {
      const keep = { my_vote: r.my_vote, body: r.body };
      Object.assign(r, fields);
      if (push) { r.my_vote = keep.my_vote ?? 0; if (fields.body === undefined) r.body = keep.body; }
      li.reply = r;
      if (replyEditing) return;
      if (r.deleted) {
        li.classList.add("deleted");
        fill(li, h("p", { class: "muted tombstone" }, "Reply deleted"));
        return;
      }
      const content = h("div", { class: "reply-body" }, markdown(r.html));
      const edit = typeof r.body === "string" ? actionButton("Edit", async () => {
        replyEditing = true;
        fill(content, editForm(r.body, LIMITS.reply, "Edit your reply",
          (text) => patch(`/api/forum/replies/${r.id}`, { body: text }), (saved) => {
            replyEditing = false;
            if (saved) li.paint({ ...saved, body: saved.body ?? r.body }, { push: false });
            else fill(content, markdown(r.html));
          }));
      }) : null;
      const remove = isMe(r.author) || isStaff() ? confirmAction("Delete", "Delete this reply?", async () => {
        const answer = await del(`/api/forum/replies/${r.id}`);
        li.paint(answer && typeof answer === "object" && "deleted" in answer ? answer : { deleted: true }, { push: false });
      }, { attrs: { "aria-label": "Delete reply" } }) : null;
      fill(li, byline(r.author, r.created_at, { edited: r.edited_at,
        onEdited: mayReadHistory(r.author) ? (button) => openEditHistory(ctx, "reply", r.id, button) : null }), content,
        h("div", { class: "row post-actions" }, voteBox(r, `/api/forum/replies/${r.id}/vote`, "reply").el, edit, remove));
    };
    li.paint({}, { push: false });
    return li;
  }

  function addReply(reply, live = false) {
    // Known already (the push often beats the answer to this member's own reply): the member's own
    // shape (with `body`, for editing, and `my_vote`) wins over the public one of a push.
    if (replies.has(reply.id)) { replies.get(reply.id).paint(reply, { push: live }); return; }
    if (live && cursor) { more.textContent = "More replies (new ones too)"; return; } // older pages first
    const li = replyEl(reply);
    replies.set(reply.id, li);
    list.append(li);
    none.hidden = true;
  }

  async function loadReplies() {
    const page = await get(`/api/forum/threads/${id}?limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`);
    for (const reply of page.replies.items) addReply(reply);
    cursor = page.replies.next;
    more.hidden = !cursor;
    if (!cursor) more.textContent = "More replies";
  }
  more.addEventListener("click", () => loadReplies().catch((e) => toast(e.message)));

  async function reload() {
    const fresh = await get(`/api/forum/threads/${id}?limit=${PAGE}`);
    if (!ctx.current()) return;
    paintThread(fresh.thread, { push: false });
    replies.clear();
    fill(list);
    for (const reply of fresh.replies.items) addReply(reply);
    cursor = fresh.replies.next;
    more.hidden = !cursor;
    none.hidden = replies.size > 0;
  }

  // --- the reply form ---
  const input = textField("Your reply", { name: "body", max: LIMITS.reply, rows: 4,
    hint: "Markdown and @mentions", attrs: { placeholder: "Write a reply" } });
  const general = generalError();
  const send = h("button", { class: "btn", type: "submit" }, "Reply");
  const replyState = formState([input], general);
  const composer = h("form", { class: "card stack reply-form", "aria-label": "Reply", novalidate: true }, input.el, general, send);
  const lockedNote = h("p", { class: "card muted locked-note", role: "status", hidden: true });
  // Locked: members read only; site moderators may still reply (the server lets them).
  function paintComposer() {
    composer.hidden = Boolean(thread.deleted || (thread.locked && !isStaff()));
    lockedNote.hidden = !thread.locked;
    lockedNote.textContent = isStaff() ? "This thread is locked: only moderators may reply."
      : "This thread is locked: no new replies.";
  }
  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    replyState.clear();
    const text = input.input.value.trim();
    if (!text) { input.input.focus(); return; }
    if (replyState.over()) { input.input.focus(); return; }
    send.disabled = true;
    try {
      const reply = await post(`/api/forum/threads/${id}/replies`, { body: text });
      input.input.value = "";
      input.showCount();
      if (cursor) await loadReplies().catch(() => {});
      addReply(reply);
      replies.get(reply.id)?.scrollIntoView({ block: "nearest" });
    } catch (e) {
      if (e.code === "thread_locked") paintThread({ locked: true }, { push: false });
      replyState.show(e);
    } finally { send.disabled = false; }
  });

  fill(root, subnav("/forum"), opening, h("h2", {}, "Replies"), none, list, more, lockedNote, composer);
  keepTimesFresh(ctx, root);
  paintThread(first.thread, { push: false });
  for (const reply of first.replies.items) addReply(reply);
  cursor = first.replies.next;
  more.hidden = !cursor;
  none.hidden = replies.size > 0;
  streams.ready();
  loadCategories().then((categories) => {
    const category = categories.find((c) => c.id === thread.category_id);
    if (category) crumbs.querySelector(".crumb-category").textContent = category.name;
  }).catch(() => {});
  if (ctx.hash && /^r\d+$/.test(ctx.hash)) document.getElementById(ctx.hash)?.scrollIntoView({ block: "center" });
}
