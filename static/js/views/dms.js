// Direct messages: the conversation list and starting a new one.

import { get } from "../api.js";
import { avatar, field, h, mount } from "../dom.js";
import { navigate } from "../router.js";

export async function dmsView() {
  const list = h("ul", { class: "list", "aria-label": "Conversations" }, h("li", { class: "muted" }, "Loading…"));
  const username = h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_]{3,32}", autocomplete: "off" });
  const form = h("form", { class: "row" }, field("Message someone", username), h("button", { class: "btn", type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => { event.preventDefault(); navigate(`/dms/${encodeURIComponent(username.value)}`); });
  mount(h("section", {}, h("h1", {}, "Direct messages"), h("div", { class: "card" }, form), list));
  try {
    const { dms } = await get("/api/dms");
    list.replaceChildren(...dms.map((dm) => h("li", {}, h("a", {
      class: `item${dm.unread ? " unread" : ""}`, href: `/dms/${encodeURIComponent(dm.user.username)}`, "data-link": true },
    avatar(dm.user), h("span", { class: "grow" }, h("span", { class: "title" }, dm.user.username),
      h("span", { class: "sub" }, `${dm.last_offset} message${dm.last_offset === 1 ? "" : "s"}`)),
    dm.unread ? h("span", { class: "count", "aria-label": `${dm.unread} unread` }, String(dm.unread)) : null))));
    if (!dms.length) list.replaceChildren(h("li", { class: "muted" }, "No conversations yet."));
  } catch (e) {
    list.replaceChildren(h("li", { class: "error" }, `Conversations could not be loaded: ${e.message}`));
  }
}
