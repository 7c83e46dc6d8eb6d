// The social feed (/feed, /feed?feed=friends), one post (/posts/<id>), and the post list a group's
// page shows too. Posts are plain text (no HTML), with an optional picture uploaded after the post
// exists (PUT /api/posts/<id>/image). Live (docs/community.md):
//   - a new post by someone else (`live:feed:everyone`, a friend's `feed_post` on the personal
//     channel, a group's `live:group:<id>`) never lands under the reader's finger: a "N new posts"
//     bar at the top says so and shows them on a tap;
//   - each post on screen follows `live:post:<id>`: likes and comment counts, comments coming and
//     going, the post deleted.
// Writing keeps the text until the server has accepted it; its reasons show under the fields.

import { del, get, post, put } from "../api.js";
import { h, mount, toast } from "../dom.js";
import { byline, confirmAction, fill, formatNumber, formState, generalError, imagePicker,
  keepTimesFresh, LIMITS, liveStreams, newBar, subnav, tabs, textField } from "../community.js";
import { navigate } from "../router.js";
import { refusalText } from "../reactions.js";
import { bus, live, session } from "../session.js";
import { reportForm } from "./moderation.js";

const PAGE = 20;

function likeButton(noun, state, toggle) {
  const count = h("span", { class: "like-count" }, formatNumber(state.likes));
  const button = h("button", { class: "btn secondary like", type: "button" }, h("span", { "aria-hidden": "true" }, "♥"),
    " ", h("span", { class: "like-word" }, "Like"), " ", count);
  const paint = () => {
    count.textContent = formatNumber(state.likes);
    button.setAttribute("aria-pressed", String(Boolean(state.liked)));
    button.setAttribute("aria-label", `Like ${noun}: ${formatNumber(state.likes)} like${state.likes === 1 ? "" : "s"}`);
    button.dataset.likes = String(state.likes);
  };
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    try {
      const answer = state.liked ? await del(`${toggle}`) : await post(`${toggle}`);
      state.likes = answer.likes;
      state.liked = answer.liked;
      paint();
    } catch (e) { toast(refusalText(e)); } finally { button.disabled = false; }
  });
  paint();
  return { button, paint };
}

// --- comments ---------------------------------------------------------------------------------------

function commentsPanel(postState) {
  const rows = new Map(); // id -> li
  const list = h("ul", { class: "list comments", "aria-label": "Comments" });
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "More comments");
  const status = h("p", { class: "muted", role: "status" }, "Loading comments…");
  const content = textField("Comment", { name: "content", max: LIMITS.comment, rows: 2,
    attrs: { placeholder: "Write a comment" } });
  const general = generalError();
  const send = h("button", { class: "btn", type: "submit" }, "Comment");
  const form = h("form", { class: "stack comment-form", novalidate: true }, content.el, general, send);
  const state = formState([content], general);
  let cursor = null;
  let loaded = false;

  function row(comment) {
    const like = likeButton("comment", comment, `/api/comments/${comment.id}/like`);
    const item = h("li", { class: "comment", "data-comment": comment.id },
      byline(comment.author, comment.created_at, { small: true }),
      h("p", { class: "comment-text" }, comment.content),
      h("div", { class: "row post-actions" }, like.button,
        comment.can_delete ? confirmAction("Delete", "Delete this comment?", async () => {
          await del(`/api/comments/${comment.id}`);
          gone(comment.id);
        }, { attrs: { "aria-label": "Delete comment" } }) : null));
    item.comment = comment;
    item.like = like;
    return item;
  }
  // `own`: this member's answer (with `can_delete`, `liked`), which replaces a push's public shape.
  function add(comment, own = false) {
    if (rows.has(comment.id) && !own) return;
    const item = row(comment);
    if (rows.has(comment.id)) { rows.get(comment.id).replaceWith(item); rows.set(comment.id, item); return; }
    rows.set(comment.id, item);
    list.append(item);
    status.hidden = true;
  }
  function gone(id) {
    rows.get(id)?.remove();
    rows.delete(id);
    if (!rows.size && loaded) { status.hidden = false; status.textContent = "No comments yet."; }
  }
  async function load() {
    const page = await get(`/api/posts/${postState.id}/comments?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    for (const comment of page.items) add(comment);
    cursor = page.next;
    more.hidden = !cursor;
    loaded = true;
    if (!rows.size) status.textContent = "No comments yet.";
  }
  more.addEventListener("click", () => load().catch((e) => toast(e.message)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    const text = content.input.value.trim();
    if (!text) { content.input.focus(); return; }
    if (state.over()) { content.input.focus(); return; }
    send.disabled = true;
    try {
      const comment = await post(`/api/posts/${postState.id}/comments`, { content: text });
      content.input.value = "";
      content.showCount();
      if (!cursor || rows.has(comment.id)) add(comment, true); // older pages still to read: it shows at their end
    } catch (e) { state.show(e); } finally { send.disabled = false; }
  });
  const el = h("div", { class: "comments-box" }, status, list, more, form);
  return {
    el,
    load,
    get loaded() { return loaded; },
    live(data) {
      if (data.type === "comment_created" && data.comment && loaded && !cursor) add(data.comment);
      else if (data.type === "comment_deleted") gone(data.id);
      else if (data.type === "comment_updated") {
        const item = rows.get(data.id);
        if (item) { item.comment.likes = data.likes; item.like.paint(); }
      }
    },
    async reload() {
      cursor = null;
      for (const id of [...rows.keys()]) { rows.get(id).remove(); rows.delete(id); }
      await load();
    },
  };
}

// --- one post ---------------------------------------------------------------------------------------

function visibilityLabel(p) {
  if (p.group_id) return null;
  return p.visibility === "friends" ? h("span", { class: "badge" }, "friends") : null;
}

function postImage(image) {
  if (!image || !image.url) return null;
  return h("img", { class: "post-image", src: image.url, alt: "", width: image.width || null,
    height: image.height || null, loading: "lazy" });
}

// A post card: `card.live(data)` applies its stream's pushes, `card.update(fields)` its own changes.
export function postCard(initial, { open = false, onGone = () => {} } = {}) {
  const p = { ...initial };
  const like = likeButton("post", p, `/api/posts/${p.id}/like`);
  const commentCount = h("span", { class: "comment-count" }, formatNumber(p.comments));
  const toggle = h("button", { class: "btn secondary", type: "button", "aria-expanded": "false" }, "Comments ", commentCount);
  let comments = null;
  const body = h("div", { class: "post-body" });
  const extra = h("div", { class: "post-extra" });
  const paintBody = () => fill(body, h("p", { class: "post-text" }, p.content), postImage(p.image));
  const paintCounts = () => {
    commentCount.textContent = formatNumber(p.comments);
    toggle.setAttribute("aria-label", `Comments: ${formatNumber(p.comments)}`);
    toggle.dataset.comments = String(p.comments);
    like.paint();
  };
  const showComments = async () => {
    comments ||= commentsPanel(p);
    if (!comments.el.isConnected) extra.append(comments.el);
    toggle.setAttribute("aria-expanded", "true");
    if (!comments.loaded) await comments.load().catch((e) => toast(`Comments could not be loaded: ${e.message}`));
  };
  toggle.addEventListener("click", () => {
    if (toggle.getAttribute("aria-expanded") === "true") { comments?.el.remove(); toggle.setAttribute("aria-expanded", "false"); }
    else showComments();
  });
  const report = h("button", { class: "btn secondary", type: "button", "aria-label": "Report post" }, "Report");
  report.addEventListener("click", () => {
    if (extra.querySelector(".report-form")) return;
    extra.prepend(reportForm({ target: { target: "post", id: p.id }, question: "Why should moderators look at this post?",
      onDone: () => report.remove(), onCancel: () => extra.querySelector(".report-form")?.remove() }));
  });
  const mine = p.author && session.me && p.author.username === session.me.username;
  const card = h("article", { class: "card post", "data-post": p.id, "aria-label": `Post by ${p.author ? p.author.username : "a deleted member"}` },
    h("div", { class: "post-head" }, byline(p.author, p.created_at),
      h("a", { class: "post-link", href: `/posts/${p.id}`, "data-link": true, "aria-label": "Open post" }, "Open"),
      visibilityLabel(p)),
    body,
    h("div", { class: "row post-actions" }, like.button, toggle,
      p.can_delete ? confirmAction("Delete", "Delete this post?", async () => {
        await del(`/api/posts/${p.id}`);
        onGone(p.id, card);
      }, { attrs: { "aria-label": "Delete post" } }) : null,
      mine ? null : report),
    extra);
  card.update = (fields) => {
    Object.assign(p, fields);
    if ("content" in fields || "image" in fields) paintBody();
    paintCounts();
  };
  card.live = (data) => {
    if (data.type === "post_updated") {
      card.update(Object.fromEntries(["likes", "comments", "image", "content"].filter((key) => key in data).map((key) => [key, data[key]])));
    }
    else if (data.type === "post_deleted") onGone(p.id, card);
    else comments?.live(data);
  };
  card.reload = async () => {
    const fresh = await get(`/api/posts/${p.id}`);
    card.update(fresh);
    if (comments?.loaded) await comments.reload();
  };
  paintBody();
  paintCounts();
  if (open) showComments();
  return card;
}

function tombstone(card) {
  const stone = h("p", { class: "card muted post-gone", role: "status" }, "This post was deleted.");
  card.replaceWith(stone);
}

// --- writing a post ---------------------------------------------------------------------------------

export function postComposer({ groupId = null, onPosted }) {
  const content = textField(groupId ? "Post to the group" : "Share something", { name: "content", max: LIMITS.post, rows: 2,
    attrs: { placeholder: "What are you building?" } });
  const visibility = h("select", { name: "visibility", id: "post-visibility" },
    h("option", { value: "public" }, "Everyone"), h("option", { value: "friends" }, "Friends only"));
  const visibilityField = { name: "visibility", input: visibility, error: h("p", { class: "error field-error", hidden: true }),
    showCount: () => ({ over: false }) };
  const picker = imagePicker();
  const general = generalError();
  const submit = h("button", { class: "btn", type: "submit" }, "Post");
  const state = formState([content, picker.field, visibilityField], general);
  // Who sees it and the picture open once the member starts writing: a phone's first screen stays the feed.
  const options = h("div", { class: "stack composer-options", hidden: true },
    groupId ? null : h("div", { class: "field" }, h("label", { for: "post-visibility" }, "Who sees it"), visibility,
      visibilityField.error),
    picker.field.el);
  const open = () => { options.hidden = false; };
  content.input.addEventListener("focus", open);
  content.input.addEventListener("input", open);
  const form = h("form", { class: "card stack composer-card", "aria-label": "New post", novalidate: true },
    content.el, options, general, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    const text = content.input.value.trim();
    if (!text) { content.input.focus(); return; }
    if (state.over()) { content.input.focus(); return; }
    submit.disabled = true;
    const file = picker.file;
    try {
      const body = { content: text };
      if (groupId) body.group_id = groupId;
      else body.visibility = visibility.value;
      const created = await post("/api/posts", body);
      content.input.value = "";
      content.showCount();
      options.hidden = true;
      onPosted(created);
      if (file) {
        try {
          const answer = await put(`/api/posts/${created.id}/image`, file);
          picker.clear();
          onPosted({ ...created, image: answer && answer.image !== undefined ? answer.image : answer }, true);
        } catch (e) {
          options.hidden = false;
          picker.field.error.hidden = false;
          picker.field.error.textContent = `Your post is up, but its picture was refused: ${e.message}`;
        }
      }
    } catch (e) { open(); state.show(e); } finally { submit.disabled = false; }
  });
  return form;
}

// --- a list of posts --------------------------------------------------------------------------------

// Newest first; `path` is the GET (feed or group). New posts from elsewhere wait behind the bar.
export function postList(ctx, root, { path, feedChannel = null, friends = false, groupId = null,
  empty = "No posts yet.", limit = PAGE, paged = true }) {
  const cards = new Map(); // id -> card
  let pending = []; // newest first
  const list = h("div", { class: "post-list", role: "feed", "aria-label": "Posts" });
  const bar = newBar("post");
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "Older posts");
  const status = h("p", { class: "muted", role: "status" }, "Loading posts…");
  let cursor = null;
  let ready = false;

  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (channel === feedChannel) {
        if (data.type === "post_created") incoming(data.post);
        return;
      }
      cards.get(Number(channel.split(":")[2]))?.live(data);
    },
    onReset(channel) {
      if (channel === feedChannel) checkNew().catch(() => bar.set(pending.length, { unknown: true }));
      else cards.get(Number(channel.split(":")[2]))?.reload().catch(() => {});
    },
  });

  function gone(id, card) {
    streams.drop(`live:post:${id}`);
    cards.delete(id);
    if (card?.isConnected) tombstone(card);
  }
  function show(p, where) {
    pending = pending.filter((other) => other.id !== p.id);
    bar.set(pending.length);
    if (cards.has(p.id)) return cards.get(p.id);
    const card = postCard(p, { onGone: gone });
    cards.set(p.id, card);
    streams.follow(`live:post:${p.id}`);
    if (where === "start") list.prepend(card);
    else list.append(card);
    status.hidden = true;
    return card;
  }
  function incoming(p) {
    if (!p || cards.has(p.id) || pending.some((other) => other.id === p.id)) return;
    if (groupId !== null && p.group_id !== groupId) return;
    pending.unshift(p);
    bar.set(pending.length);
  }
  // The bar's posts as they are now (a picture or likes may have come since the push): the newest
  // page is read again and what is not on screen yet goes on top. Without an overlap with the
  // screen (a gap the stream could not replay, or very many new posts) the list starts afresh.
  async function showNew() {
    let page;
    try {
      page = await get(`${path}${path.includes("?") ? "&" : "?"}limit=${limit}`);
    } catch {
      for (const p of [...pending].reverse()) show(p, "start"); // offline: the posts as pushed
      return;
    }
    if (cards.size && !page.items.some((p) => cards.has(p.id))) { await load(true); return; }
    for (const p of page.items) cards.get(p.id)?.update(p);
    for (const p of page.items.filter((item) => !cards.has(item.id)).reverse()) show(p, "start");
  }
  // The stream could not replay a gap: what is new since is read from the newest page, and the bar
  // counts it (or, without an overlap with the screen, says there is more).
  async function checkNew() {
    const page = await get(`${path}${path.includes("?") ? "&" : "?"}limit=${limit}`);
    for (const p of page.items) cards.get(p.id)?.update(p);
    if (cards.size && !page.items.some((p) => cards.has(p.id))) { bar.set(pending.length, { unknown: true }); return; }
    for (const p of page.items.filter((item) => !cards.has(item.id)).reverse()) incoming(p);
  }
  bar.el.addEventListener("click", async () => {
    if (bar.el.disabled) return;
    bar.el.disabled = true;
    try { await showNew(); } catch (e) { toast(e.message); } finally { bar.el.disabled = false; }
    pending = [];
    bar.set(0);
    list.firstElementChild?.scrollIntoView({ block: "start" });
    list.firstElementChild?.querySelector("a.who")?.focus({ preventScroll: true });
  });

  async function load(reset) {
    const page = await get(`${path}${path.includes("?") ? "&" : "?"}limit=${limit}${!reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (reset) {
      for (const id of [...cards.keys()]) streams.drop(`live:post:${id}`);
      cards.clear();
      fill(list);
    }
    for (const p of page.items) show(p, "end");
    cursor = page.next;
    more.hidden = !cursor || !paged;
    status.hidden = cards.size > 0;
    status.textContent = empty;
  }
  more.addEventListener("click", () => load(false).catch((e) => toast(e.message)));

  // A friend's post arrives on the personal channel (the friends feed).
  const onFriendPost = (event) => { if (friends && ready) incoming(event.detail.post); };
  const onPersonalReset = (event) => {
    if (friends && ready && session.me && event.detail.channel === `user:${session.me.id}`) bar.set(pending.length, { unknown: true });
  };
  bus.addEventListener("feed_post", onFriendPost);
  live.addEventListener("reset", onPersonalReset);
  ctx.onLeave(() => { bus.removeEventListener("feed_post", onFriendPost); live.removeEventListener("reset", onPersonalReset); });

  return {
    el: h("div", { class: "posts" }, bar.el, status, list, more),
    // This member's own new post (or its picture): shown at once, at the top.
    mine(p, update = false) {
      const card = cards.get(p.id);
      if (card && update) card.update({ image: p.image });
      else if (!card) show(p, "start");
    },
    async start() {
      if (feedChannel) streams.follow(feedChannel);
      await streams.settled();
      try {
        await load(true);
      } catch (e) {
        status.className = "error";
        status.textContent = navigator.onLine ? `Posts could not be loaded: ${e.message}` : "You are offline: posts show once connected.";
      }
      ready = true;
      streams.ready();
    },
  };
}

// --- screens ----------------------------------------------------------------------------------------

export async function feedView(ctx) {
  const which = ctx.query.get("feed") === "friends" ? "friends" : "everyone";
  const root = h("section", { class: "community feed", "data-feed": which });
  const posts = postList(ctx, root, {
    path: `/api/posts?feed=${which}`,
    feedChannel: which === "everyone" ? "live:feed:everyone" : null,
    friends: which === "friends",
    empty: which === "friends" ? "Nothing from your friends yet." : "No posts yet: be the first.",
  });
  const composer = postComposer({ onPosted: (p, update) => {
    if (which === "everyone" && p.visibility === "friends" && !update) toast("Posted for your friends: it shows in the Friends feed.");
    else posts.mine(p, update);
  } });
  root.append(subnav("/feed"), h("h1", {}, "Feed"),
    tabs([["everyone", "Everyone"], ["friends", "Friends"]], which, "Whose posts",
      (key) => navigate(key === "friends" ? "/feed?feed=friends" : "/feed", { replace: true })),
    composer, posts.el);
  mount(root);
  keepTimesFresh(ctx, root);
  await posts.start();
}

export async function postView(ctx) {
  const id = Number(ctx.params.id);
  const root = h("section", { class: "community post-page" }, subnav("/feed"), h("p", { class: "muted", role: "status" }, "Loading…"));
  mount(root);
  let card = null;
  const streams = liveStreams(ctx, root, {
    onEvent: (channel, data) => card?.live(data),
    onReset: () => card?.reload().catch(() => {}),
  });
  if (Number.isInteger(id) && id > 0) streams.follow(`live:post:${id}`);
  await streams.settled();
  let p;
  try {
    p = await get(`/api/posts/${id}`);
  } catch (e) {
    if (!ctx.current()) return;
    fill(root, subnav("/feed"), h("div", { class: "card narrow" },
      h("h1", {}, e.status === 404 ? "No such post" : "This post could not be loaded"),
      h("p", {}, e.status === 404 ? "It was deleted, or it is not shared with you." : e.message),
      h("p", {}, h("a", { class: "btn", href: "/feed", "data-link": true }, "Back to the feed"))));
    return;
  }
  if (!ctx.current()) return;
  card = postCard(p, { open: true, onGone: (_, el) => { if (el.isConnected) tombstone(el); } });
  fill(root, subnav("/feed"), h("h1", { class: "visually-hidden" }, "Post"), card);
  keepTimesFresh(ctx, root);
  streams.ready();
}
