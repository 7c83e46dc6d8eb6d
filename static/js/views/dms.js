// Direct messages: the conversations (last message, its time, unread count; live through
// unread.js, most recent first) and starting a new one.

import { avatar, field, h, mount, when } from "../dom.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { dmEntries, lastMessageOf, loadDms, unreadOf, unreadStore } from "../unread.js";

function preview(last) {
  if (!last) return "No messages yet";
  const mine = session.me && last.from && last.from.id === session.me.id;
  const text = String(last.text ?? "").replace(/\s+/g, " ").trim();
  return mine ? `You: ${text}` : text;
}

function row(dm) {
  const count = unreadOf(dm.channel);
  const last = lastMessageOf(dm.channel);
  const link = h("a", { class: `item${count ? " unread" : ""}`, href: `/dms/${encodeURIComponent(dm.user.username)}`,
    "data-link": true, "data-channel": dm.channel, "data-unread": count },
  avatar(dm.user), h("span", { class: "grow" }, h("span", { class: "title" }, dm.user.username),
    h("span", { class: "sub", title: last ? String(last.text ?? "") : null }, preview(last))),
  last && last.ts ? when(last.ts) : null,
  count ? h("span", { class: "count", "aria-label": `${count} unread` }, String(count)) : null);
  return h("li", {}, link);
}

export async function dmsView({ onLeave }) {
  const list = h("ul", { class: "list", "aria-label": "Conversations" }, h("li", { class: "muted" }, "Loading…"));
  const username = h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_]{3,32}", autocomplete: "off" });
  const form = h("form", { class: "row" }, field("Message someone", username), h("button", { class: "btn", type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => { event.preventDefault(); navigate(`/dms/${encodeURIComponent(username.value)}`); });
  mount(h("section", {}, h("h1", {}, "Direct messages"), h("div", { class: "card" }, form), list));
  let loaded = false;
  const draw = () => {
    // Most recent conversation first, as a new message moves it up.
    const dms = dmEntries().filter((dm) => dm.user)
      .sort((a, b) => ((lastMessageOf(b.channel)?.ts ? Date.parse(lastMessageOf(b.channel).ts) : 0)
        - (lastMessageOf(a.channel)?.ts ? Date.parse(lastMessageOf(a.channel).ts) : 0)));
    list.replaceChildren(...dms.map(row));
    if (!dms.length) list.replaceChildren(h("li", { class: "muted" }, "No conversations yet."));
  };
  let pending = false;
  const onChange = () => {
    if (!loaded || pending) return;
    pending = true;
    setTimeout(() => { pending = false; draw(); }, 0);
  };
  unreadStore.addEventListener("change", onChange);
  onLeave(() => unreadStore.removeEventListener("change", onChange));
  try {
    await loadDms();
    loaded = true;
    draw();
  } catch (e) {
    list.replaceChildren(h("li", { class: "error" }, `Conversations could not be loaded: ${e.message}`));
  }
}
