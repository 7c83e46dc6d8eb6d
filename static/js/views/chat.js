// A room or a direct conversation: live messages, scroll-back, presence, typing and the composer.
// Messages written here go through the outbox (send.js): they show as pending until the server has
// them, whether they leave over the websocket or, offline, through Background Sync later.
//
// Edits, deletes and reactions arrive as message events (docs/protocol.md, "Message events"),
// wherever messages arrive: live pushes, `missed` on resubscribing, REST pages. An event is never
// shown as a message; it changes the message at `data.target` when its offset is above that
// message's `rev` (then `rev` is the event's offset), so history, recovery and live pushes in any
// overlap give the same screen. Events are kept by target: a message loaded later (an older page,
// a history reload) gets the ones newer than its `rev`. Each message has actions (hover or focus
// on desktop, the "…" button or a long press on phones): react, reply, edit and delete (own
// messages; delete also for the room's owner and moderators and site staff), report.

import { get, post } from "../api.js";
import { rankChip } from "../community.js";
import { avatar, h, mount, profilePath, richText, toast, when } from "../dom.js";
import { mentionAutocomplete } from "../mentions.js";
import * as outbox from "../outbox.js";
import { isBlocked, peopleStore } from "../people.js";
import { amend, applyReaction, isEvent, onLongPress, openWhoReacted, panel, QUICK, reactionsFrom, refusalText,
  renderChips } from "../reactions.js";
import { RETURNED_KEY, send } from "../send.js";
import { bus, live, session } from "../session.js";
import { counter } from "../textlimit.js";
import { track } from "../unread.js";
import { openRoomInfo } from "./roominfo.js";

const MAX_KEPT_EVENTS = 2000; // events remembered for messages not on screen (yet)
const editedFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

const PAGE = 50;
const TYPING_SHOWN_MS = 3500;
const TYPING_SEND_MS = 2500;

const ROOM_KEY = (name) => `vonix:room:${name}`;

class NoSuchRoom extends Error {}

// The room's metadata (GET /api/rooms/{name}): a 404 `room_not_found` means no such room (or a
// private one the member is not in). Offline, the copy kept from the last visit stands in.
async function roomMeta(name) {
  try {
    const room = await get(`/api/rooms/${encodeURIComponent(name)}`);
    localStorage.setItem(ROOM_KEY(name), JSON.stringify(room));
    return room;
  } catch (error) {
    if (error.code === "room_not_found") {
      localStorage.removeItem(ROOM_KEY(name));
      throw new NoSuchRoom(name);
    }
    if (error.status && error.status !== 404 && error.status < 500) throw error;
    const cached = localStorage.getItem(ROOM_KEY(name));
    return cached ? JSON.parse(cached) : { channel: `room:${name}`, kind: "room", title: null, topic: null, member: false,
      role: null, offline: true };
  }
}

async function resolveChannel(params) {
  if (params.name) {
    const room = await roomMeta(params.name);
    return { channel: `room:${params.name}`, title: `# ${params.name}`, room: params.name, meta: room };
  }
  const key = `vonix:dm:${params.username.toLowerCase()}`;
  try {
    const { channel } = await post("/api/dms", { username: params.username });
    localStorage.setItem(key, channel);
    return { channel, title: params.username, dm: params.username };
  } catch (error) {
    const cached = localStorage.getItem(key);
    if (cached && !error.status) return { channel: cached, title: params.username, dm: params.username };
    throw error;
  }
}

function noSuchRoom(name) {
  mount(h("section", { class: "card narrow" }, h("h1", {}, "No such room"),
    h("p", {}, `There is no room called # ${name}, or it is private and you are not a member.`),
    h("p", {}, h("a", { class: "btn", href: "/rooms", "data-link": true }, "Back to rooms"))));
  document.title = "Vonix · no such room";
}

export async function chatView(ctx) {
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  mount(h("section", {}, status));
  let target;
  try {
    target = await resolveChannel(ctx.params);
    if (ctx.current && !ctx.current()) return; // navigated elsewhere meanwhile
  } catch (error) {
    if (ctx.current && !ctx.current()) return;
    if (error instanceof NoSuchRoom) return noSuchRoom(ctx.params.name);
    status.textContent = error.message;
    status.className = "error";
    return;
  }
  const { channel } = target;
  const me = session.me;
  const byOffset = new Map();
  const pendingEls = new Map();
  let oldest = null;
  let newest = 0;
  let replyTo = null;
  let editing = null; // {offset, draft}: the composer edits that message; `draft` comes back after
  let removed = false; // kicked or banned from the room: nothing more is sent or subscribed
  let lastTypingSent = 0;
  const typers = new Map();
  const eventsByTarget = new Map(); // target offset -> event frames (offset order)
  const dialogs = new Set();

  // aria-busy until the history, the outbox and the subscription are in: screen readers wait for
  // the whole page instead of reading a half-loaded one.
  const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": `Messages in ${target.title}`,
    tabindex: "0", "aria-busy": "true" });
  const older = h("button", { class: "btn secondary older", type: "button", hidden: true }, "Load older messages");
  log.append(older);
  const typingLine = h("p", { class: "typing", "aria-live": "polite" });
  const peopleList = h("ul", { class: "list", "aria-label": "Online now" });
  const people = h("aside", { class: "people", hidden: true, id: "people" }, h("h2", {}, "Online"), peopleList);
  const peopleToggle = h("button", { class: "btn secondary people-toggle", type: "button", "aria-controls": "people",
    "aria-expanded": "false" }, "Online: –");
  // No maxlength: a paste longer than the limit stays whole; the counter says so and Send waits.
  const input = h("textarea", { name: "text", rows: 1, required: true, "aria-label": `Message ${target.title}`,
    placeholder: `Message ${target.title}` });
  const replying = h("p", { class: "replying", hidden: true });
  const count = h("p", { class: "replying counter", id: "composer-count", "aria-live": "polite", hidden: true });
  const sendButton = h("button", { class: "btn", type: "submit" }, "Send");
  // What the server said about the last thing sent from here (muted, slow mode, an edit refused).
  const note = h("p", { class: "composer-note error", role: "alert", hidden: true });
  const removedBanner = h("div", { class: "removed-banner", role: "alert", hidden: true });
  const composer = h("form", { class: "composer" }, removedBanner, note, replying, count, input, sendButton);
  const mentions = mentionAutocomplete(input, composer, roomMembers);
  const title = h("h1", {}, target.title);
  if (target.meta?.topic) title.title = target.meta.topic;
  const info = target.room ? h("button", { class: "btn secondary room-info-toggle", type: "button", "aria-haspopup": "dialog",
    "aria-label": `Room info: # ${target.room}`, title: "Members, topic, invite, leave" }, "Info") : null;
  const slow = Number(target.meta?.slow_mode) > 0 ? h("span", { class: "slow-hint",
    title: `Slow mode: members send one message every ${target.meta.slow_mode} s` }, `Slow mode: ${target.meta.slow_mode} s`) : null;
  // Slow mode is said under the title (beside it when there is room), never squeezing the title out.
  const head = h("div", { class: "chat-head" }, slow ? h("div", { class: "chat-title" }, title, slow) : title,
    h("span", { class: "row" }, peopleToggle, info));
  mount(h("section", { class: "chat" }, head, log, typingLine, composer, people));
  let infoDialog = null;
  info?.addEventListener("click", () => {
    infoDialog = openRoomInfo(target.meta, (room) => { title.title = room.topic || ""; });
  });

  peopleToggle.addEventListener("click", () => {
    people.hidden = !people.hidden;
    peopleToggle.setAttribute("aria-expanded", String(!people.hidden));
  });

  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 60;
  const toBottom = () => { log.scrollTop = log.scrollHeight; };

  // A message's author and picture lead to their profile (the server's own messages have none).
  const authorLinks = (from, who) => {
    if (!from) return [avatar({ username: "Vonix" }), h("span", { class: "who" }, who)];
    const href = profilePath(from.username);
    return [h("a", { class: "avatar-link", href, "data-link": true, tabindex: "-1", "aria-hidden": "true" }, avatar(from)),
      h("a", { class: "who", href, "data-link": true, title: `${who}'s profile` }, who)];
  };

  // The line a reply shows of the message it answers.
  function quoteText(offset) {
    const quote = byOffset.get(offset);
    if (!quote) return `↪ message ${offset}`;
    if (quote.classList.contains("deleted")) return "↪ Message deleted";
    if (isBlocked(quote.dataset.author)) return "↪ Blocked message";
    return `↪ ${quote.dataset.who}: ${quote.dataset.text}`;
  }

  function refreshQuotes(offset) {
    for (const el of log.querySelectorAll(`.msg[data-reply-to="${offset}"]`)) {
      if (el.parts?.quote) el.parts.quote.textContent = quoteText(offset);
    }
  }

  function messageEl(frame, pendingState) {
    if (frame.deleted) return tombstone(frame);
    const { offset, data, from, ts } = frame;
    const text = (data && typeof data.text === "string") ? data.text : JSON.stringify(data);
    // A bridge bot relays for someone in the game or on Discord: "[game] Steve" (text only, never HTML).
    const via = data && data.via && typeof data.via.name === "string" ? data.via : null;
    const who = via ? `[${via.source === "discord" ? "discord" : "game"}] ${via.name}` : from ? from.username : "Vonix";
    const [picture, author] = via ? [avatar({ username: via.name }), h("span", { class: "who via", title: `${who}, relayed by ${from ? from.username : "Vonix"}` },
      h("span", { class: "via-source" }, `[${via.source === "discord" ? "discord" : "game"}]`), " ", h("span", { class: "via-name" }, via.name))]
      : authorLinks(from, who);
    const reply = h("button", { type: "button", class: "act-reply", "aria-label": `Reply to ${who}`, title: "Reply" },
      h("span", { class: "act-label" }, "Reply"), h("span", { class: "act-icon", "aria-hidden": "true" }, "↩"));
    const actions = h("span", { class: "actions" }, reply);
    const edited = h("span", { class: "edited", hidden: true }, "(edited)");
    const quote = data && data.reply_to ? h("div", { class: "quote" }, quoteText(data.reply_to)) : null;
    const textEl = h("div", { class: "text" }, richText(text, me && me.username));
    const chips = h("div", { class: "reactions", role: "group", "aria-label": "Reactions", hidden: true });
    const el = h("article", { class: "msg", "data-offset": offset ?? "", "data-cid": data?.cid ?? "", id: offset ? `m${offset}` : null,
      "data-reply-to": data?.reply_to ?? null, "aria-label": `${who}` },
    picture,
    h("div", { class: "meta" }, author, rankChip(from && from.rank), ts ? when(ts) : null, edited,
      pendingState ? h("span", { class: "state", role: "status" }, pendingState) : null, actions),
    quote, textEl, chips);
    el.dataset.who = who;
    el.dataset.author = from ? from.username : ""; // a member's (the server's own messages have none)
    el.dataset.text = text.slice(0, 80);
    el.msg = { offset, from, ts, data, rev: frame.rev || 0, editedAt: frame.edited_at || null, deleted: false,
      reactions: reactionsFrom(frame.reactions) };
    el.parts = { text: textEl, edited, chips, quote };
    if (pendingState) el.classList.add("pending");
    if (via && data.system) { el.classList.add("system"); textEl.classList.add("muted"); } // a game event: joined, died…
    reply.addEventListener("click", () => {
      if (!el.dataset.offset) return toast("You can reply once the message is sent.");
      startReply(el);
    });
    if (offset) {
      const react = h("button", { type: "button", class: "act-react", "aria-haspopup": "dialog",
        "aria-label": `React to ${who}'s message` }, "React");
      const more = h("button", { type: "button", class: "act-more", "aria-haspopup": "dialog",
        "aria-label": `More actions on ${who}'s message`, title: "React, reply, edit, delete, report" }, "…");
      react.addEventListener("click", () => openPicker(el));
      more.addEventListener("click", () => openActions(el));
      actions.prepend(react);
      actions.append(more);
      // Phones: hold a message for its actions (its buttons and links keep their own taps).
      onLongPress(el, () => { if (!el.classList.contains("blocked") && !el.msg.deleted) openActions(el); },
        { rightClick: false, skip: "button, a, .quote" });
      if (el.msg.editedAt) showEdited(el);
      paintReactions(el);
    }
    return el;
  }

  // A deleted message: one quiet row in its place, nothing to act on.
  function tombstone({ offset, from, ts, rev }) {
    const el = h("article", { class: "msg deleted", "data-offset": offset, id: `m${offset}`, "aria-label": "Deleted message" },
      h("p", { class: "tombstone" }, h("span", {}, "Message deleted"), ts ? when(ts) : null));
    el.dataset.who = from ? from.username : "Vonix";
    el.dataset.author = from ? from.username : "";
    el.dataset.text = "";
    el.msg = { offset, from, ts, data: null, rev: rev || 0, deleted: true, reactions: new Map() };
    return el;
  }

  function showEdited(el) {
    const at = el.msg.editedAt;
    const date = typeof at === "number" ? new Date(at * 1000) : new Date(at);
    el.parts.edited.hidden = false;
    el.parts.edited.title = Number.isNaN(date.getTime()) ? "Edited" : `Edited ${editedFormat.format(date)}`;
  }

  function paintReactions(el) {
    renderChips(el.parts.chips, el.msg.reactions, {
      toggle: (emoji, already) => react(el, emoji, already),
      who: () => keep(openWhoReacted(channel, el.msg.offset)),
    });
  }

  // An event changes its target only when newer than what the target shows (its `rev`).
  // Returns the element now standing for the message (a delete swaps in a tombstone).
  function applyEvent(el, frame) {
    const m = el.msg;
    if (!m || !m.offset || frame.offset <= (m.rev || 0)) return el;
    m.rev = frame.offset;
    if (m.deleted) return el;
    const data = frame.data;
    if (data.type === "edit" && typeof data.text === "string") {
      m.data = { ...(m.data || {}), text: data.text };
      m.editedAt = frame.ts ?? Date.now() / 1000;
      el.parts.text.replaceChildren(...richText(data.text, me && me.username));
      el.dataset.text = data.text.slice(0, 80);
      showEdited(el);
      refreshQuotes(m.offset);
    } else if (data.type === "delete") {
      return becomeTombstone(el);
    } else if (data.type === "reaction" && typeof data.emoji === "string") {
      applyReaction(m.reactions, data, frame.from);
      paintReactions(el);
    }
    return el;
  }

  function becomeTombstone(el) {
    const { offset, from, ts, rev } = el.msg;
    const stone = tombstone({ offset, from, ts, rev });
    if (el.isConnected) el.replaceWith(stone);
    byOffset.set(offset, stone);
    for (const dialog of dialogs) if (dialog.dataset.offset === String(offset)) dialog.close();
    if (editing && editing.offset === offset) { stopEditing(); showNote("The message you were editing was deleted."); }
    if (replyTo && replyTo.offset === offset) clearReply();
    refreshQuotes(offset);
    return stone;
  }

  // Events are kept by target, so a message that shows up later (an older page, a reload of the
  // history) still gets those newer than its `rev`.
  function remember(frame) {
    const target = frame.data.target;
    let list = eventsByTarget.get(target);
    if (!list) {
      list = [];
      eventsByTarget.set(target, list);
      if (eventsByTarget.size > MAX_KEPT_EVENTS) eventsByTarget.delete(eventsByTarget.keys().next().value);
    }
    if (list.some((e) => e.offset === frame.offset)) return;
    list.push(frame);
    list.sort((a, b) => a.offset - b.offset);
  }

  function addEvent(frame) {
    newest = Math.max(newest, frame.offset); // read markers go past events too (they are never unread)
    if (typeof frame.data.target === "number") {
      remember(frame);
      const el = byOffset.get(frame.data.target);
      if (el) {
        const stick = atBottom();
        applyEvent(el, frame);
        if (stick) toBottom();
      }
    }
    markRead();
  }

  function startReply(el) {
    if (removed) return;
    stopEditing();
    const who = el.dataset.who;
    replyTo = { offset: Number(el.dataset.offset), who };
    replying.hidden = false;
    replying.replaceChildren(h("span", { class: "replying-to" }, "Replying to ", h("span", { class: "who" }, who)), h("button", { type: "button", class: "btn secondary", onclick: clearReply },
      "Cancel reply"));
    input.focus();
  }

  function clearReply() {
    replyTo = null;
    if (editing) return;
    replying.hidden = true;
    replying.replaceChildren();
  }

  // --- editing in the composer -------------------------------------------------------------------
  function startEditing(el) {
    if (removed || !el.msg || el.msg.deleted) return;
    clearReply();
    if (!editing) editing = { draft: input.value };
    log.querySelector(".msg.editing")?.classList.remove("editing");
    editing.offset = el.msg.offset;
    el.classList.add("editing");
    hideNote();
    mentions.close();
    input.value = el.msg.data.text;
    replying.hidden = false;
    replying.replaceChildren(h("span", { class: "replying-to" }, "Editing your message"),
      h("button", { type: "button", class: "btn secondary", onclick: () => { stopEditing(); input.focus(); } }, "Cancel edit"));
    sendButton.textContent = "Save";
    showCount();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  function stopEditing() {
    if (!editing) return;
    const { draft, offset } = editing;
    editing = null;
    byOffset.get(offset)?.classList.remove("editing");
    replying.hidden = true;
    replying.replaceChildren();
    sendButton.textContent = "Send";
    input.value = draft;
    showCount();
  }

  async function saveEdit(text) {
    const { offset } = editing;
    if (byOffset.get(offset)?.msg?.data?.text === text) { stopEditing(); return; }
    sendButton.disabled = true;
    try {
      await amend(channel, "edit", offset, { data: { text } });
      if (editing && editing.offset === offset) stopEditing();
      hideNote();
    } catch (error) {
      showNote(refusalText(error)); // the text stays in the box, still in edit mode
    } finally {
      showCount();
    }
  }

  function showNote(text) {
    note.textContent = text;
    note.hidden = false;
  }

  function hideNote() {
    note.hidden = true;
    note.textContent = "";
  }

  // --- acting on a message -----------------------------------------------------------------------
  const own = (m) => Boolean(me && m.from && m.from.id === me.id);
  // Deleting: your own messages; in a room, also its owner and moderators and site staff.
  const mayDelete = (m) => own(m) || Boolean(target.room && (["owner", "moderator"].includes(target.meta?.role)
    || ["admin", "moderator"].includes(me?.role)));

  function keep(dialog) {
    dialogs.add(dialog);
    dialog.addEventListener("close", () => dialogs.delete(dialog));
    return dialog;
  }

  async function react(el, emoji, already) {
    if (removed || !el.msg?.offset) return;
    try {
      await amend(channel, already ? "unreact" : "react", el.msg.offset, { emoji });
    } catch (error) {
      toast(refusalText(error));
    }
  }

  function pickerFor(el, done) {
    return h("div", { class: "picker", role: "group", "aria-label": "Pick a reaction" }, QUICK.map((emoji) => {
      const entry = el.msg.reactions.get(emoji);
      const pressed = Boolean(entry && me && entry.users.has(me.id));
      const button = h("button", { type: "button", "aria-pressed": String(pressed),
        "aria-label": pressed ? `Remove your ${emoji}` : `React ${emoji}` }, emoji);
      button.addEventListener("click", () => { done(); react(el, emoji, pressed); });
      return button;
    }));
  }

  function openPicker(el) {
    if (removed || el.msg.deleted) return;
    const dialog = keep(panel("React", pickerFor(el, () => dialog.close())));
    dialog.dataset.offset = String(el.msg.offset);
    dialog.classList.add("picker-panel");
    dialog.querySelector(".picker button")?.focus();
  }

  function openActions(el) {
    const m = el.msg;
    if (removed || !m || m.deleted || !m.offset) return;
    const who = el.dataset.who;
    const close = () => dialog.close();
    const item = (label, fn, cls = "secondary") => {
      const button = h("button", { type: "button", class: `btn ${cls}` }, label);
      button.addEventListener("click", fn);
      return button;
    };
    const items = [item("Reply", () => { close(); startReply(el); })];
    if (own(m) && typeof m.data?.text === "string") items.push(item("Edit", () => { close(); startEditing(el); }));
    if (m.reactions.size) items.push(item("Who reacted", () => { close(); keep(openWhoReacted(channel, m.offset)); }));
    if (typeof m.data?.text === "string" && navigator.clipboard) {
      items.push(item("Copy text", () => {
        close();
        navigator.clipboard.writeText(m.data.text).then(() => toast("Copied."), () => toast("Could not copy."));
      }));
    }
    if (mayDelete(m)) items.push(item("Delete", () => confirmDelete(dialog, el), "danger"));
    if (!own(m) && m.from) items.push(item("Report", () => reportForm(dialog, el), "secondary"));
    const dialog = keep(panel(`Message from ${who}`, pickerFor(el, close), h("div", { class: "menu-actions" }, items)));
    dialog.dataset.offset = String(m.offset);
    dialog.classList.add("msg-menu");
    dialog.querySelector(".picker button")?.focus();
  }

  function confirmDelete(dialog, el) {
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const yes = h("button", { type: "button", class: "btn danger" }, "Delete message");
    const no = h("button", { type: "button", class: "btn secondary" }, "Cancel");
    dialog.body.replaceChildren(h("p", {}, own(el.msg) ? "Delete your message? It is removed for everyone."
      : `Delete this message from ${el.dataset.who}? It is removed for everyone.`), h("div", { class: "row" }, yes, no), error);
    no.addEventListener("click", () => dialog.close());
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      error.hidden = true;
      try {
        await amend(channel, "delete", el.msg.offset);
        dialog.close();
        toast("Message deleted.");
      } catch (e) {
        error.hidden = false;
        error.textContent = refusalText(e);
        yes.disabled = false;
      }
    });
    yes.focus();
  }

  function reportForm(dialog, el) {
    const reason = h("textarea", { name: "reason", rows: 3, maxlength: 500, required: true,
      placeholder: "Spam, harassment, something else…" });
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "btn" }, "Send report");
    const cancel = h("button", { type: "button", class: "btn secondary" }, "Cancel");
    const form = h("form", { class: "stack report-form" },
      h("label", {}, `Why should moderators look at this message from ${el.dataset.who}?`, reason),
      h("div", { class: "row" }, submit, cancel), error);
    dialog.body.replaceChildren(form);
    cancel.addEventListener("click", () => dialog.close());
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = reason.value.trim();
      if (!text) { reason.focus(); return; }
      submit.disabled = true;
      error.hidden = true;
      try {
        await post("/api/reports", { channel, offset: el.msg.offset, reason: text });
        dialog.body.replaceChildren(h("p", { class: "reported", role: "status" }, "Reported. Moderators will take a look."));
        dialog.querySelector(".panel-close")?.focus();
        toast("Reported.");
      } catch (e) {
        error.hidden = false;
        error.textContent = refusalText(e);
        submit.disabled = false;
      }
    });
    reason.focus();
  }

  // Kicked or banned (a `removed` push), or the subscription refused: say so and stop sending.
  function showRemoved(heading, detail = "") {
    removed = true;
    stopEditing();
    clearReply();
    mentions.close();
    hideNote();
    for (const dialog of [...dialogs]) dialog.close();
    removedBanner.replaceChildren(...[h("strong", {}, heading), detail ? h("span", { class: "removed-detail" }, detail) : null,
      h("a", { class: "btn secondary", href: "/rooms", "data-link": true }, "Back to rooms")].filter(Boolean));
    removedBanner.hidden = false;
    input.disabled = true;
    input.placeholder = "You cannot send messages here";
    showCount();
    for (const timer of typers.values()) clearTimeout(timer);
    typers.clear();
    showTyping();
    presenceUnknown();
  }

  // Messages the server sent back (muted, slow mode): their text returns to the box, nothing is lost.
  function giveBack(items) {
    if (!items.length) return;
    for (const item of items) {
      pendingEls.get(item.cid)?.remove();
      pendingEls.delete(item.cid);
      const text = String(item.data?.text ?? "");
      if (!text) continue;
      if (editing) editing.draft = editing.draft.trim() ? `${editing.draft}\n${text}` : text;
      else input.value = input.value.trim() ? `${input.value}\n${text}` : text;
      if (item.data?.reply_to && !replyTo && !editing && byOffset.has(item.data.reply_to)) startReply(byOffset.get(item.data.reply_to));
    }
    showNote(refusalText(items[items.length - 1].error));
    showCount();
  }

  // Who may be mentioned: the room's members, or the other member of a DM.
  async function roomMembers() {
    if (target.dm) return [{ username: target.dm }];
    const { members } = await get(`/api/rooms/${encodeURIComponent(target.room)}/members`);
    return members;
  }

  // A member you blocked: their messages stay in the history but show as one collapsed row, whose
  // "Show" reveals that message (in this view). The message's own parts wait aside meanwhile.
  function applyBlock(el) {
    const blocked = Boolean(el.dataset.offset) && !el.classList.contains("deleted") && isBlocked(el.dataset.author)
      && !el.dataset.revealed;
    if (blocked === el.classList.contains("blocked")) return el;
    if (blocked) {
      el.hiddenParts = [...el.childNodes];
      const show = h("button", { class: "btn secondary", type: "button",
        "aria-label": `Show blocked message from ${el.dataset.author}` }, "Show");
      show.addEventListener("click", () => {
        el.dataset.revealed = "1";
        applyBlock(el);
        el.querySelector(".who")?.focus();
      });
      el.classList.add("blocked");
      el.setAttribute("aria-label", "Blocked message");
      el.replaceChildren(h("p", { class: "blocked-row" }, h("span", { class: "blocked-text" }, "Blocked message"), show));
    } else {
      el.classList.remove("blocked");
      el.setAttribute("aria-label", el.dataset.who);
      el.replaceChildren(...(el.hiddenParts || []));
      el.hiddenParts = null;
    }
    return el;
  }

  function insert(el, offset) {
    // Keep offset order; pending (unsent) messages stay below every sent one.
    let before = null;
    for (const child of [...log.children].reverse()) {
      const other = child.dataset.offset;
      if (child === older) break;
      if (!other || Number(other) > offset) before = child;
      else break;
    }
    log.insertBefore(el, before);
  }

  // Every frame of the channel comes here, from pushes, recovery and pages alike.
  function addMessage(frame) {
    if (isEvent(frame.data)) { addEvent(frame); return; }
    if (byOffset.has(frame.offset)) return;
    const stick = atBottom();
    const pending = frame.data && frame.data.cid ? pendingEls.get(frame.data.cid) : null;
    if (pending) { pending.remove(); pendingEls.delete(frame.data.cid); }
    let el = messageEl(frame);
    for (const event of eventsByTarget.get(frame.offset) || []) el = applyEvent(el, event);
    el = applyBlock(el);
    byOffset.set(frame.offset, el);
    insert(el, frame.offset);
    newest = Math.max(newest, frame.offset);
    oldest = oldest === null ? frame.offset : Math.min(oldest, frame.offset);
    if (stick || pending) toBottom();
    markRead();
  }

  function addPending(item, state = "Waiting to send") {
    if (pendingEls.has(item.cid)) return;
    const el = messageEl({ data: item.data, from: me, ts: item.created / 1000 }, state);
    pendingEls.set(item.cid, el);
    log.append(el);
    toBottom();
  }

  // Read markers: only while this conversation is on screen (tab visible); live.read coalesces
  // them (one `read` op per second at most) and flushes when the view is left or the tab hidden.
  function markRead() {
    if (newest && !removed && document.visibilityState === "visible") live.read(channel, newest);
  }
  const onVisible = () => { if (document.visibilityState === "visible") markRead(); };
  document.addEventListener("visibilitychange", onVisible);

  async function loadLatest() {
    const page = await get(`/api/channels/${encodeURIComponent(channel)}/messages?limit=${PAGE}`);
    // Messages that arrived live while the page was on its way are newer than the page: keep them
    // (dropping them lost a message sent while a conversation was still opening).
    for (const [offset, el] of byOffset) {
      if (offset <= page.offset) { el.remove(); byOffset.delete(offset); }
    }
    oldest = byOffset.size ? Math.min(...byOffset.keys()) : null;
    for (const frame of page.messages) addMessage(frame);
    older.hidden = !page.next_before;
    toBottom();
    return page;
  }

  older.addEventListener("click", async () => {
    try {
      const page = await get(`/api/channels/${encodeURIComponent(channel)}/messages?limit=${PAGE}&before=${oldest}`);
      const height = log.scrollHeight;
      for (const frame of page.messages) addMessage(frame);
      older.hidden = !page.next_before;
      log.scrollTop += log.scrollHeight - height;
    } catch (e) { toast(`Older messages could not be loaded: ${e.message}`); }
  });
  const sentinel = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !older.hidden) older.click();
  }, { root: log });
  sentinel.observe(older);

  function renderPeople(users) {
    peopleList.replaceChildren(...users.map((u) => h("li", { "data-user": u.id }, u.username,
      me && u.id === me.id ? h("span", { class: "you" }, " (you)") : null)));
    peopleToggle.textContent = `Online: ${users.length}`;
    peopleToggle.removeAttribute("title");
  }
  // Without a live connection nobody's presence is known: say so rather than show a stale count.
  function presenceUnknown() {
    present.clear();
    const why = navigator.onLine ? "presence unknown while disconnected" : "presence unknown while offline";
    peopleList.replaceChildren(h("li", { class: "muted" }, why[0].toUpperCase() + why.slice(1)));
    peopleToggle.textContent = "Online: –";
    peopleToggle.title = why;
  }
  const present = new Map();
  const onState = (event) => { if (event.detail.state !== "connected") presenceUnknown(); };
  const onSubscribed = async (event) => {
    if (event.detail.channel !== channel) return;
    try {
      const reply = await live.presence(channel);
      present.clear();
      for (const u of reply.users) present.set(u.id, u);
      renderPeople([...present.values()]);
    } catch { /* presence is best effort */ }
  };
  const onPresence = (event) => {
    const { channel: ch, frame } = event.detail;
    if (ch !== channel || !live.connected) return;
    for (const user of frame.leaves) present.delete(user.id);
    for (const user of frame.joins) present.set(user.id, user);
    renderPeople([...present.values()]);
  };
  const showTyping = () => {
    const names = [...typers.keys()];
    typingLine.textContent = names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…`
      : `${names.join(", ")} are typing…`;
  };
  const onTyping = (event) => {
    const { channel: ch, frame } = event.detail;
    if (ch !== channel || (me && frame.user.id === me.id)) return;
    clearTimeout(typers.get(frame.user.username));
    typers.set(frame.user.username, setTimeout(() => { typers.delete(frame.user.username); showTyping(); }, TYPING_SHOWN_MS));
    showTyping();
  };
  const onMessage = (event) => {
    if (event.detail.channel !== channel) return;
    const frame = event.detail.frame;
    if (frame.from && typers.has(frame.from.username) && !isEvent(frame.data)) { clearTimeout(typers.get(frame.from.username)); typers.delete(frame.from.username); showTyping(); }
    addMessage(frame);
  };
  const onReset = async (event) => { if (event.detail.channel === channel) await loadLatest().catch(() => {}); };
  const onAdded = (event) => { if (event.detail.channel === channel) addPending(event.detail); };
  const onSent = (event) => {
    const { cid, offset } = event.detail;
    const el = pendingEls.get(cid);
    if (!el) return;
    if (byOffset.has(offset)) { el.remove(); pendingEls.delete(cid); return; }
    el.querySelector(".state").textContent = "Sent";
  };
  const onFailed = (event) => {
    if (event.detail.returned) {
      if (event.detail.channel !== channel) return;
      localStorage.removeItem(RETURNED_KEY(channel));
      giveBack([{ cid: event.detail.cid, data: event.detail.data, error: event.detail.refusal }]);
      return;
    }
    const el = pendingEls.get(event.detail.cid);
    if (!el) return;
    el.classList.add("failed");
    const state = el.querySelector(".state");
    state.textContent = `Not sent: ${event.detail.error}`;
    state.classList.add("failed");
  };
  // Blocking or unblocking someone (here or in another tab) folds or unfolds their messages.
  const onPeople = (event) => {
    const who = event.detail.username;
    if (who && !["blocked", "none", undefined].includes(event.detail.relationship)) return;
    for (const el of byOffset.values()) {
      if (who && el.dataset.author.toLowerCase() !== who.toLowerCase()) continue;
      if (!isBlocked(el.dataset.author)) delete el.dataset.revealed; // blocked again later: folded again
      applyBlock(el);
    }
  };
  const onRemoved = (event) => {
    if (event.detail.channel !== channel) return;
    showRemoved(event.detail.frame.reason === "banned" ? "You are banned from this room"
      : "You were removed from this room");
  };
  const onRefused = (event) => {
    const { channel: ch, error } = event.detail;
    if (ch !== channel || error.code !== "forbidden") return;
    showRemoved(/banned/i.test(error.message || "") ? "You are banned from this room" : "You cannot follow this conversation",
      refusalText(error));
  };
  peopleStore.addEventListener("change", onPeople);
  live.addEventListener("removed", onRemoved);
  live.addEventListener("refused", onRefused);
  live.addEventListener("state", onState);
  live.addEventListener("subscribed", onSubscribed);
  live.addEventListener("presence_diff", onPresence);
  live.addEventListener("typing", onTyping);
  live.addEventListener("message", onMessage);
  live.addEventListener("reset", onReset);
  bus.addEventListener("outbox-added", onAdded);
  bus.addEventListener("outbox-sent", onSent);
  bus.addEventListener("outbox-failed", onFailed);
  ctx.onLeave(() => {
    live.flushReads(channel);
    live.unsubscribe(channel);
    sentinel.disconnect();
    infoDialog?.close();
    for (const dialog of [...dialogs]) dialog.close();
    peopleStore.removeEventListener("change", onPeople);
    live.removeEventListener("removed", onRemoved);
    live.removeEventListener("refused", onRefused);
    document.removeEventListener("visibilitychange", onVisible);
    live.removeEventListener("state", onState);
    live.removeEventListener("subscribed", onSubscribed);
    live.removeEventListener("presence_diff", onPresence);
    live.removeEventListener("typing", onTyping);
    live.removeEventListener("message", onMessage);
    live.removeEventListener("reset", onReset);
    bus.removeEventListener("outbox-added", onAdded);
    bus.removeEventListener("outbox-sent", onSent);
    bus.removeEventListener("outbox-failed", onFailed);
  });

  function showCount() {
    const state = counter(input.value);
    count.hidden = !state.shown;
    count.textContent = state.text;
    count.classList.toggle("error", state.over);
    sendButton.disabled = state.over || removed;
    if (state.over) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", state.shown ? "composer-count" : "");
    return state;
  }

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (removed) return;
    const text = input.value.trim();
    if (!text) return;
    if (showCount().over) { input.focus(); return; } // never cut it short: the member decides
    mentions.close();
    if (editing) { await saveEdit(text); return; }
    hideNote();
    const data = { text };
    if (replyTo) data.reply_to = replyTo.offset;
    input.value = "";
    showCount();
    clearReply();
    await send(channel, data);
  });
  input.addEventListener("keydown", (event) => {
    if (mentions.onKey(event)) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); composer.requestSubmit(); }
    else if (event.key === "Escape" && (editing || replyTo)) {
      event.preventDefault();
      if (editing) stopEditing();
      else clearReply();
    }
  });
  input.addEventListener("input", () => {
    showCount();
    const now = Date.now();
    if (input.value && now - lastTypingSent > TYPING_SEND_MS && live.connected) { lastTypingSent = now; live.typing(channel); }
  });

  // Opening a public room joins it (once: GET /api/rooms/{name} says whether it is needed).
  if (target.room && navigator.onLine && target.meta && !target.meta.member && !target.meta.offline
      && target.meta.kind === "room") {
    post(`/api/rooms/${encodeURIComponent(target.room)}/join`).then(() => {
      target.meta.member = true;
      target.meta.role = target.meta.role || "member";
      track(channel, { kind: "room", lastOffset: newest });
    }).catch(() => {});
  }
  presenceUnknown();
  let page = null;
  try {
    page = await loadLatest();
  } catch (error) {
    log.append(h("p", { class: "error", role: "alert" }, navigator.onLine ? `Messages could not be loaded: ${error.message}`
      : "You are offline and this conversation has not been saved on this device yet."));
  }
  for (const item of await outbox.all(channel)) addPending(item, live.connected ? "Sending…" : "Waiting to send");
  try { // refused while this conversation was closed (muted, slow mode): back in the box
    const kept = JSON.parse(localStorage.getItem(RETURNED_KEY(channel)) || "[]");
    localStorage.removeItem(RETURNED_KEY(channel));
    giveBack(kept);
  } catch { /* nothing kept */ }
  live.subscribe(channel, page ? { offset: page.offset, epoch: page.epoch } : null);
  if (live.isSubscribed(channel)) {
    // Followed already (the unread counts): the channel moved on since the page was read, and what
    // came meanwhile is not all here (the follower may have started after a message this page
    // missed, while a later one reached this view live): load the latest again. Comparing with the
    // newest message shown instead lost such a message whenever a later one had arrived.
    const position = live.position(channel);
    if (page && position && position.offset > page.offset) await loadLatest().catch(() => {});
    onSubscribed({ detail: { channel } });
  }
  if (page && (target.dm || target.meta?.member)) {
    track(channel, { kind: target.dm ? "dm" : target.meta.kind, lastOffset: page.offset,
      ...(target.dm ? { user: { username: target.dm } } : {}) });
  }
  markRead();
  if (ctx.hash && /^m\d+$/.test(ctx.hash)) {
    const el = byOffset.get(Number(ctx.hash.slice(1)));
    if (el) { el.classList.add("highlight"); el.scrollIntoView({ block: "center" }); }
  }
  log.setAttribute("aria-busy", "false");
  // Ready to type where a keyboard is at hand; on a touch screen focusing would pop the on-screen
  // keyboard over half the conversation the member came to read.
  if (matchMedia("(hover: hover) and (pointer: fine)").matches) input.focus();
}
