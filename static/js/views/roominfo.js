// The room panel, opened from the chat header: topic (owners and moderators edit it), the member
// list, inviting by username (owners and moderators), and leaving the room.

import { errorText, get, patch, post } from "../api.js";
import { field, h, toast } from "../dom.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { forget } from "../unread.js";

const ROLE_LABEL = { owner: "owner", moderator: "moderator" };

export function canModerate(room) {
  return ["owner", "moderator"].includes(room.role) || session.me?.role === "admin";
}

// `room` is GET /api/rooms/{name}; `onChange(room)` hears a new topic.
export function openRoomInfo(room, onChange) {
  const name = room.channel.replace(/^room:/, "");
  const path = `/api/rooms/${encodeURIComponent(name)}`;
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const fail = (e) => { error.hidden = false; error.textContent = errorText(e); };
  const members = h("ul", { class: "list", "aria-label": "Members" }, h("li", { class: "muted" }, "Loading members…"));
  const topicText = h("p", { class: "topic" }, room.topic || "No topic.");
  const close = h("button", { class: "btn secondary", type: "button" }, "Close");
  const body = h("div", { class: "stack" });
  const dialog = h("dialog", { class: "card room-info", "aria-label": `Room # ${name}` },
    h("div", { class: "chat-head" }, h("h2", {}, `# ${room.title || name}`), close), body);

  body.append(h("p", { class: "muted" }, room.kind === "private_room" ? "Private room: members only." : "Public room."),
    h("h3", {}, "Topic"), topicText);
  if (canModerate(room)) {
    const topic = h("input", { name: "topic", maxlength: 500, value: room.topic || "", "aria-label": "Topic" });
    const form = h("form", { class: "row" }, topic, h("button", { class: "btn", type: "submit" }, "Save topic"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      try {
        const updated = await patch(path, { topic: topic.value.trim() || null });
        Object.assign(room, updated);
        topicText.textContent = room.topic || "No topic.";
        toast("Topic saved.");
        onChange?.(room);
      } catch (e) { fail(e); }
    });
    body.append(form);
  }

  body.append(h("h3", {}, "Members"), members);
  async function loadMembers() {
    try {
      const { members: list } = await get(`${path}/members`);
      members.replaceChildren(...list.map((m) => h("li", { class: "item", "data-user": m.id },
        h("span", { class: "grow" }, m.username, session.me && m.id === session.me.id ? " (you)" : ""),
        ROLE_LABEL[m.role] ? h("span", { class: "badge" }, ROLE_LABEL[m.role]) : null)));
      if (!list.length) members.replaceChildren(h("li", { class: "muted" }, "No members."));
    } catch (e) { members.replaceChildren(h("li", { class: "error" }, errorText(e))); }
  }

  if (canModerate(room)) {
    const username = h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_]{3,32}", autocomplete: "off" });
    const invite = h("form", { class: "row" }, field("Invite by username", username),
      h("button", { class: "btn", type: "submit" }, "Invite"));
    invite.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      try {
        const result = await post(`${path}/invite`, { username: username.value.trim() });
        toast(result.already_member ? `${result.invited} is already a member.` : `${result.invited} was added to # ${name}.`);
        username.value = "";
        await loadMembers();
      } catch (e) { fail(e); }
    });
    body.append(invite);
  }

  if (room.member) {
    const leave = h("button", { class: "btn danger", type: "button" }, "Leave room");
    leave.addEventListener("click", async () => {
      // Private rooms take an invitation to come back: ask once more, in the panel.
      if (room.kind === "private_room" && !leave.dataset.confirm) {
        leave.dataset.confirm = "1";
        leave.textContent = `Leave # ${name} for good`;
        leave.after(h("p", { class: "muted", role: "status" }, "You need an invitation to come back."));
        return;
      }
      error.hidden = true;
      try {
        await post(`${path}/leave`);
        forget(room.channel);
        dialog.close();
        toast(`You left # ${name}.`);
        navigate("/rooms");
      } catch (e) { fail(e); }
    });
    body.append(leave);
  }
  body.append(error);

  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  loadMembers();
  return dialog;
}
