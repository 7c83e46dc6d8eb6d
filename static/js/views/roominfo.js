// The room panel, opened from the chat header: topic (owners and moderators edit it), the member
// list (each member a link to their profile), inviting by username (owners and moderators), and
// leaving the room. Room staff (the owner and moderators) and site staff also get slow mode and,
// for each member below them, Kick, Mute in room and Ban from room (asked once more, with a
// reason); the owner (or an admin) makes members moderators and back.

import { errorText, get, patch, post, put } from "../api.js";
import { avatar, field, h, profilePath, toast } from "../dom.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { forget } from "../unread.js";
import { actionForm, impose, isSiteStaff } from "./moderation.js";

const ROLE_LABEL = { owner: "owner", moderator: "moderator" };
const ROOM_RANK = { owner: 2, moderator: 1 };
const SLOW_CHOICES = [[0, "Off"], [5, "5 s"], [30, "30 s"], [60, "1 min"], [300, "5 min"]];

export function canModerate(room) {
  return ["owner", "moderator"].includes(room.role) || session.me?.role === "admin";
}

// Kicks, mutes, bans and slow mode: the room's owner and moderators, and site staff.
export function roomStaff(room) {
  return ["owner", "moderator"].includes(room.role) || isSiteStaff();
}

function slowText(seconds) {
  const known = SLOW_CHOICES.find(([value]) => value === seconds);
  return known ? known[1] : `${seconds} s`;
}

// `room` is GET /api/rooms/{name}; `onChange(room)` hears a new topic or slow mode.
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

  if (roomStaff(room)) {
    const current = Number(room.slow_mode) || 0;
    const choices = SLOW_CHOICES.some(([value]) => value === current) ? SLOW_CHOICES : [...SLOW_CHOICES, [current, `${current} s`]];
    const seconds = h("select", { name: "slow_mode", "aria-label": "Slow mode" }, choices.map(([value, label]) =>
      h("option", { value: String(value), selected: value === current }, label)));
    const slowState = h("p", { class: "muted slow-state", role: "status" },
      current ? `Members send one message every ${slowText(current)}.` : "Off: members send as fast as they like.");
    const slow = h("form", { class: "row slow-form" }, seconds,
      h("button", { class: "btn", type: "submit" }, "Set slow mode"));
    slow.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      try {
        const result = await put(`${path}/slow-mode`, { seconds: Number(seconds.value) });
        room.slow_mode = result.slow_mode;
        slowState.textContent = result.slow_mode ? `Members send one message every ${slowText(result.slow_mode)}.`
          : "Off: members send as fast as they like.";
        toast(result.slow_mode ? `Slow mode: ${slowText(result.slow_mode)}.` : "Slow mode is off.");
        onChange?.(room);
      } catch (e) { fail(e); }
    });
    body.append(h("h3", {}, "Slow mode"), slow, slowState);
  }

  // What the signed-in member may do to `m` here (the server decides; this only hides what it refuses).
  const myRank = isSiteStaff() ? 3 : ROOM_RANK[room.role] || 0;
  const mayAct = (m) => myRank > 0 && !(session.me && m.id === session.me.id)
    && (isSiteStaff() || myRank > (ROOM_RANK[m.role] || 0));
  const mayAppoint = (m) => (room.role === "owner" || session.me?.role === "admin") && m.role !== "owner"
    && !(session.me && m.id === session.me.id);

  function memberTools(m, row) {
    const panel = h("div", { class: "member-mod" });
    const toggle = h("button", { class: "btn secondary", type: "button", "aria-expanded": "false",
      "aria-label": `Manage ${m.username}` }, "Manage");
    const who = m.display_name || m.username;
    const shut = () => { panel.replaceChildren(); toggle.setAttribute("aria-expanded", "false"); };
    const problem = h("p", { class: "error", role: "alert", hidden: true });
    const done = (text) => { toast(text); shut(); loadMembers(); };
    const ask = (form) => { panel.replaceChildren(form); };
    const menu = () => {
      problem.hidden = true;
      const button = (label, kind, run) => {
        const el = h("button", { class: `btn ${kind}`, type: "button" }, label);
        el.addEventListener("click", run);
        return el;
      };
      const sanction = (kind) => () => ask(actionForm({ kind, username: m.username,
        question: kind === "mute" ? `Mute ${who} in # ${name}?` : `Ban ${who} from # ${name}?`,
        confirm: kind === "ban" ? "They leave the room and cannot come back until the ban ends." : null,
        run: ({ minutes, reason }) => impose(kind, m.username, room.channel, minutes, reason),
        onDone: () => done(kind === "mute" ? `${m.username} is muted in # ${name}.` : `${m.username} is banned from # ${name}.`),
        onCancel: menu }));
      const buttons = [];
      if (mayAct(m)) {
        buttons.push(button("Kick", "danger", () => ask(actionForm({ kind: "kick", username: m.username,
          question: `Kick ${who} out of # ${name}?`, confirm: "They may join again.",
          run: ({ reason }) => post(`${path}/kick`, { username: m.username, reason }),
          onDone: () => done(`${m.username} was kicked from # ${name}.`), onCancel: menu }))),
        button("Mute in room", "danger", sanction("mute")), button("Ban from room", "danger", sanction("ban")));
      }
      if (mayAppoint(m)) {
        const promote = m.role !== "moderator";
        const el = button(promote ? "Make moderator" : "Remove moderator", "secondary", async () => {
          el.disabled = true;
          problem.hidden = true;
          try {
            await put(`${path}/members/${encodeURIComponent(m.username)}/role`, { role: promote ? "moderator" : "member" });
            done(promote ? `${m.username} is now a moderator of # ${name}.` : `${m.username} is no longer a moderator.`);
          } catch (e) {
            problem.hidden = false;
            problem.textContent = errorText(e);
            el.disabled = false;
          }
        });
        buttons.push(el);
      }
      panel.replaceChildren(h("div", { class: "row member-actions" }, buttons), problem);
    };
    toggle.addEventListener("click", () => {
      if (toggle.getAttribute("aria-expanded") === "true") { shut(); return; }
      toggle.setAttribute("aria-expanded", "true");
      menu();
    });
    row.querySelector(".item").append(toggle);
    row.append(panel);
  }

  body.append(h("h3", {}, "Members"), members);
  async function loadMembers() {
    try {
      const { members: list } = await get(`${path}/members`);
      // Each member's picture and name lead to their profile (navigating closes this panel).
      members.replaceChildren(...list.map((m) => {
        const row = h("li", { class: "member-row", "data-user": m.id, "data-username": m.username },
          h("div", { class: "item" },
            h("a", { class: "avatar-link", href: profilePath(m.username), "data-link": true, tabindex: "-1", "aria-hidden": "true" },
              avatar(m)),
            h("a", { class: "grow member-link", href: profilePath(m.username), "data-link": true },
              m.display_name || m.username, session.me && m.id === session.me.id ? " (you)" : ""),
            ROLE_LABEL[m.role] ? h("span", { class: "badge" }, ROLE_LABEL[m.role]) : null));
        if (mayAct(m) || mayAppoint(m)) memberTools(m, row);
        return row;
      }));
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
