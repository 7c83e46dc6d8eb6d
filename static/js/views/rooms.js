// Room list with unread counts, and creating a room.

import { get, post } from "../api.js";
import { field, h, mount, toast } from "../dom.js";
import { navigate } from "../router.js";

function unreadBadge(count) {
  return count ? h("span", { class: "count", "aria-label": `${count} unread` }, String(count)) : null;
}

export async function roomsView() {
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
  try {
    const { rooms } = await get("/api/rooms");
    const shown = rooms.filter((room) => room.kind !== "dm");
    list.replaceChildren(...shown.map((room) => {
      const short = room.channel.replace(/^room:/, "");
      return h("li", {}, h("a", { class: `item${room.unread ? " unread" : ""}`, href: `/rooms/${short}`, "data-link": true },
        h("span", { class: "avatar room-icon", "aria-hidden": "true" }, "#"),
        h("span", { class: "grow" }, h("span", { class: "title" }, `# ${room.title || short}`),
          h("span", { class: "sub" }, room.topic || (room.kind === "private_room" ? "Private room" : "Public room"))),
        room.kind === "private_room" ? h("span", { class: "badge" }, "private") : null,
        unreadBadge(room.unread)));
    }));
    if (!shown.length) list.replaceChildren(h("li", { class: "muted" }, "No rooms yet."));
  } catch (e) {
    list.replaceChildren(h("li", { class: "error" }, `Rooms could not be loaded: ${e.message}`));
  }
}
