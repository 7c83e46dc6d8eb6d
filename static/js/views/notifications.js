// Notifications: mentions, replies and direct messages, newest first; live while the page is open.

import { get, post } from "../api.js";
import { avatar, h, mount, toast, when } from "../dom.js";
import { navigate } from "../router.js";
import { bus, setUnread } from "../session.js";

function row(note) {
  const item = h("li", {}, h("a", { class: `item${note.read ? "" : " unread"}`, href: note.url, "data-id": note.id,
    "data-channel": note.channel, "data-offset": note.offset },
    avatar(note.actor), h("span", { class: "grow" }, h("span", { class: "title" }, note.title),
      h("span", { class: "sub" }, note.body)),
    note.read ? null : h("span", { class: "badge" }, "new"), when(note.created_at)));
  item.querySelector("a").addEventListener("click", async (event) => {
    event.preventDefault();
    if (!note.read) {
      try { setUnread((await post(`/api/notifications/${note.id}/read`)).unread); } catch { /* offline: still open it */ }
    }
    navigate(note.url);
  });
  return item;
}

export async function notificationsView({ onLeave }) {
  const list = h("ul", { class: "list", "aria-label": "Notifications", "aria-live": "polite" },
    h("li", { class: "muted" }, "Loading…"));
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "Older notifications");
  const markAll = h("button", { class: "btn secondary", type: "button" }, "Mark all as read");
  mount(h("section", {}, h("div", { class: "row chat-head" }, h("h1", {}, "Notifications"), markAll), list, more));
  let before = null;
  async function load(reset) {
    const query = before && !reset ? `?before=${before}` : "";
    const page = await get(`/api/notifications${query}`);
    setUnread(page.unread);
    if (reset) list.replaceChildren();
    list.append(...page.notifications.map(row));
    if (!list.children.length) list.append(h("li", { class: "muted" }, "Nothing yet. Mentions, replies and messages show up here."));
    before = page.next_before;
    more.hidden = !before;
  }
  more.addEventListener("click", () => load(false));
  markAll.addEventListener("click", async () => {
    try { await post("/api/notifications/read", { all: true }); await load(true); } catch (e) { toast(e.message); }
  });
  const onNew = (event) => {
    list.querySelector("li.muted")?.remove();
    list.prepend(row(event.detail.notification));
  };
  // Read elsewhere (a conversation opened on any device, "mark all" on another): show them read.
  const settle = (link) => {
    link.classList.remove("unread");
    link.querySelector(".badge")?.remove();
  };
  const onRead = (event) => {
    const { channel, offset } = event.detail;
    for (const link of list.querySelectorAll("a.item.unread")) {
      if (link.dataset.channel === channel && Number(link.dataset.offset) <= offset) settle(link);
    }
  };
  const onAllRead = (event) => {
    const ids = event.detail.ids;
    for (const link of list.querySelectorAll("a.item.unread")) {
      if (!Array.isArray(ids) || ids.includes(Number(link.dataset.id))) settle(link);
    }
  };
  bus.addEventListener("notification", onNew);
  bus.addEventListener("read", onRead);
  bus.addEventListener("notifications_read", onAllRead);
  onLeave(() => {
    bus.removeEventListener("notification", onNew);
    bus.removeEventListener("read", onRead);
    bus.removeEventListener("notifications_read", onAllRead);
  });
  try { await load(true); } catch (e) { list.replaceChildren(h("li", { class: "error" }, e.message)); }
}
