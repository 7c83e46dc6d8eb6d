// Room list with unread counts (live: unread.js follows the member's rooms), and creating a room.

import { h, field, mount, toast } from "../dom.js";
import { post } from "../api.js";
import { navigate } from "../router.js";
import { loadRooms, unreadOf, unreadStore } from "../unread.js";

function unreadBadge(count) {
  return h("span", { class: "count", "aria-label": `${count} unread`, hidden: !count }, String(count));
}

function setCount(link, count) {
  const badge = link.querySelector(".count");
  badge.hidden = !count;
  badge.textContent = String(count);
  badge.setAttribute("aria-label", `${count} unread`);
  link.classList.toggle("unread", count > 0);
  link.dataset.unread = String(count);
}

export async function roomsView({ onLeave }) {
  const list = h("ul", { class: "list", "aria-label": "Rooms" }, h("li", { class: "muted" }, "Loading rooms…"));
  const name = h("input", { name: "name", required: true, pattern: "[a-z0-9][a-z0-9_\\-]{0,63}", placeholder: "survival-smp" });
  const isPrivate = h("input", { type: "checkbox", name: "private" });
  const form = h("form", { class: "stack" }, field("Room name", name, "lower-case letters, digits, - and _"),
    h("label", { class: "row" }, isPrivate, "Private (members only)"), h("button", { class: "btn", type: "submit" }, "Create room"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post("/api/rooms", { name: name.value, private: isPrivate.checked });
      navigate(`/rooms/${name.value}`);
    } catch (e) { toast(e.message); }
  });
  mount(h("section", {}, h("h1", {}, "Rooms"), list,
    h("details", { class: "card create" }, h("summary", {}, "Create a room"), form)));
  const links = new Map(); // channel -> link
  const onChange = (event) => {
    const only = event.detail.channel;
    for (const [channel, link] of links) if (!only || only === channel) setCount(link, unreadOf(channel));
  };
  unreadStore.addEventListener("change", onChange);
  onLeave(() => unreadStore.removeEventListener("change", onChange));
  try {
    const rooms = await loadRooms();
    const shown = rooms.filter((room) => room.kind !== "dm");
    list.replaceChildren(...shown.map((room) => {
      const short = room.channel.replace(/^room:/, "");
      const link = h("a", { class: "item", href: `/rooms/${short}`, "data-link": true, "data-channel": room.channel },
        h("span", { class: "avatar room-icon", "aria-hidden": "true" }, "#"),
        h("span", { class: "grow" }, h("span", { class: "title" }, `# ${room.title || short}`),
          h("span", { class: "sub" }, room.topic || (room.kind === "private_room" ? "Private room" : "Public room"))),
        room.kind === "private_room" ? h("span", { class: "badge" }, "private") : null,
        unreadBadge(0));
      links.set(room.channel, link);
      setCount(link, room.member ? unreadOf(room.channel) : 0);
      return h("li", {}, link);
    }));
    if (!shown.length) list.replaceChildren(h("li", { class: "muted" }, "No rooms yet."));
  } catch (e) {
    list.replaceChildren(h("li", { class: "error" }, `Rooms could not be loaded: ${e.message}`));
  }
}
