// The share target (/share?title&text&url: post shared text into a chosen room) and the
// `web+vonix:` protocol handler (/open?link=web+vonix://room/general).

import { get } from "../api.js";
import { field, h, mount } from "../dom.js";
import { navigate } from "../router.js";
import { send } from "../send.js";

export function linkTarget(link) {
  const rest = String(link || "").replace(/^web\+vonix:(\/\/)?/i, "");
  const [kind, name] = rest.split(/[/?#]/).filter(Boolean);
  const safe = (value) => /^[A-Za-z0-9_\-]{1,64}$/.test(value || "");
  if (kind === "room" && safe(name)) return `/rooms/${name}`;
  if ((kind === "dm" || kind === "user") && safe(name)) return `/dms/${name}`;
  if (kind === "notifications") return "/notifications";
  if (kind === "dms") return "/dms";
  return "/rooms";
}

export function openView({ query }) {
  navigate(linkTarget(query.get("link")), { replace: true });
}

export async function shareView({ query }) {
  const shared = [query.get("title"), query.get("text"), query.get("url")].filter(Boolean).join("\n");
  const text = h("textarea", { name: "text", rows: 4, required: true }, shared);
  const room = h("select", { name: "room", required: true }, h("option", { value: "room:general" }, "# general"));
  const form = h("form", { class: "stack" }, field("Message", text), field("Room", room),
    h("button", { class: "btn", type: "submit" }, "Post to room"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await send(room.value, { text: text.value });
    navigate(`/rooms/${room.value.replace(/^room:/, "")}`, { replace: true });
  });
  mount(h("section", { class: "card narrow" }, h("h1", {}, "Share to Vonix"), form));
  try {
    const { rooms } = await get("/api/rooms");
    room.replaceChildren(...rooms.filter((r) => r.kind !== "dm").map((r) =>
      h("option", { value: r.channel }, `# ${r.channel.replace(/^room:/, "")}`)));
  } catch { /* offline: general only */ }
}
