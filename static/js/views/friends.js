// Friends: incoming requests (accept, decline), friends (online first, with when they were last
// seen), requests sent (cancel), blocked members (unblock) and "add a friend" by username. Live:
// every change comes from the personal channel through people.js; nothing is polled.

import { del, errorText, post } from "../api.js";
import { ago, avatar, field, h, mount, profilePath, toast } from "../dom.js";
import { navigate } from "../router.js";
import { loadPeople, noteRelationship, peopleLists, peopleLoaded, peopleStore } from "../people.js";

const REFRESH_AGO_MS = 30 * 1000;

// "Online", "Last seen 5 min ago", "Offline"; null when the server does not say (`online: null`).
export function presence(person, { long = false } = {}) {
  if (person.online === null || person.online === undefined) return null;
  const online = Boolean(person.online);
  const text = online ? "Online" : person.last_seen_at ? `Last seen ${ago(person.last_seen_at)}` : "Offline";
  const el = h("span", { class: `presence${online ? " on" : ""}`, "data-presence": online ? "online" : "offline" },
    h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "presence-text" }, text));
  if (!online && person.last_seen_at) {
    el.dataset.since = person.last_seen_at;
    if (long) el.title = new Date(person.last_seen_at).toLocaleString();
  }
  return el;
}

// Keeps "last seen N min ago" true while a screen stays open (text only: no request).
export function refreshAgo(root) {
  for (const el of root.querySelectorAll(".presence[data-since] .presence-text")) {
    el.textContent = `Last seen ${ago(el.parentElement.dataset.since)}`;
  }
}

export function displayName(person) {
  return person.display_name || person.username;
}

// One member in a list: avatar and names (a link to the profile), then the row's buttons.
export function personRow(person, { sub = null, actions = [], dot = false } = {}) {
  const name = displayName(person);
  const pic = h("span", { class: "avatar-wrap" }, avatar(person));
  if (dot && person.online) pic.append(h("span", { class: "online-dot", "aria-hidden": "true" }));
  return h("li", { class: "person-row", "data-user": person.username },
    h("a", { class: "person", href: profilePath(person.username), "data-link": true, "aria-label": `${name} (@${person.username})` },
      pic, h("span", { class: "grow" }, h("span", { class: "title" }, name),
        h("span", { class: "sub" }, sub ?? `@${person.username}`))),
    actions.length ? h("span", { class: "person-actions" }, ...actions) : null);
}

function button(label, onClick, { kind = "", name = label } = {}) {
  const el = h("button", { class: `btn${kind ? ` ${kind}` : ""}`, type: "button", "aria-label": name }, label);
  el.addEventListener("click", async () => {
    el.disabled = true;
    try { await onClick(); } catch (e) { toast(errorText(e)); } finally { el.disabled = false; }
  });
  return el;
}

const SECTIONS = {
  incoming: { title: "Friend requests", empty: null },
  friends: { title: "Your friends", empty: "No friends yet. Add someone by their username, or from their profile." },
  outgoing: { title: "Sent requests", empty: null },
  blocked: { title: "Blocked", empty: null },
};

function rows(kind, people) {
  const at = (p) => encodeURIComponent(p.username);
  if (kind === "incoming") {
    return people.map((p) => personRow(p, { actions: [
      button("Accept", async () => noteRelationship(p, (await post(`/api/friends/${at(p)}/accept`)).relationship),
        { name: `Accept ${p.username}` }),
      button("Decline", async () => { await post(`/api/friends/${at(p)}/decline`); noteRelationship(p, "none"); },
        { kind: "secondary", name: `Decline ${p.username}` }),
    ] }));
  }
  if (kind === "friends") {
    return people.map((p) => {
      const state = presence(p);
      return personRow(p, { dot: true, sub: state, actions: [
        button("Message", () => navigate(`/dms/${at(p)}`), { kind: "secondary", name: `Message ${p.username}` }),
      ] });
    });
  }
  if (kind === "outgoing") {
    return people.map((p) => personRow(p, { sub: `@${p.username} · request sent`, actions: [
      button("Cancel", async () => { await del(`/api/friends/${at(p)}`); noteRelationship(p, "none"); },
        { kind: "secondary", name: `Cancel request to ${p.username}` }),
    ] }));
  }
  return people.map((p) => personRow(p, { actions: [
    button("Unblock", async () => { await del(`/api/blocks/${at(p)}`); noteRelationship(p, "none"); },
      { kind: "secondary", name: `Unblock ${p.username}` }),
  ] }));
}

// The reason an add was refused, in the member's words.
function addError(error, username) {
  switch (error.code) {
    case "user_not_found": return `There is no member called ${username}.`;
    case "friend_self": return "That is you.";
    case "already_friends": return `You and ${username} are already friends.`;
    case "friend_request_refused": return `${username} is not accepting friend requests from you.`;
    case "user_blocked": return `You blocked ${username}: unblock them first.`;
    default: return errorText(error);
  }
}

export async function friendsView({ onLeave }) {
  const username = h("input", { name: "username", required: true, pattern: "[A-Za-z0-9_]{3,32}", autocomplete: "off",
    autocapitalize: "none", spellcheck: "false", "aria-describedby": "add-friend-error" });
  const error = h("p", { class: "error", id: "add-friend-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn", type: "submit" }, "Send request");
  const form = h("form", { class: "row" }, field("Add a friend", username, "their username"),
    submit);
  const sections = {};
  for (const [kind, { title }] of Object.entries(SECTIONS)) {
    const count = h("span", { class: "count", hidden: true });
    const list = h("ul", { class: "list people-list", "aria-label": title });
    sections[kind] = { el: h("section", { class: "friends-section", "data-section": kind, "aria-label": title },
      h("h2", {}, title, " ", count), list), list, count };
  }
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const page = h("section", { class: "friends" }, h("h1", {}, "Friends"), h("div", { class: "card" }, form, error), status,
    sections.incoming.el, sections.friends.el, sections.outgoing.el, sections.blocked.el);
  mount(page);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = username.value.trim();
    error.hidden = true;
    username.removeAttribute("aria-invalid");
    if (!name) return;
    submit.disabled = true;
    try {
      const result = await post("/api/friends", { username: name });
      const known = peopleLists().incoming.find((p) => p.username.toLowerCase() === result.username.toLowerCase());
      noteRelationship(known || { username: result.username }, result.relationship);
      username.value = "";
      toast(result.relationship === "friends" ? `You and ${result.username} are now friends.`
        : `Friend request sent to ${result.username}.`);
    } catch (e) {
      error.hidden = false;
      error.textContent = addError(e, name);
      username.setAttribute("aria-invalid", "true");
      username.focus();
    } finally { submit.disabled = false; }
  });

  const draw = () => {
    const lists = peopleLists();
    status.hidden = true;
    for (const [kind, { empty }] of Object.entries(SECTIONS)) {
      const { el, list, count } = sections[kind];
      const people = lists[kind];
      list.replaceChildren(...rows(kind, people));
      if (!people.length && empty) list.replaceChildren(h("li", { class: "muted" }, empty));
      el.hidden = !people.length && !empty;
      count.hidden = !people.length;
      count.textContent = String(people.length);
      count.setAttribute("aria-label", `${people.length}`);
    }
  };
  const onChange = () => { if (peopleLoaded()) draw(); };
  peopleStore.addEventListener("change", onChange);
  const timer = setInterval(() => refreshAgo(page), REFRESH_AGO_MS);
  onLeave(() => { peopleStore.removeEventListener("change", onChange); clearInterval(timer); });
  for (const section of Object.values(sections)) section.el.hidden = true;
  if (peopleLoaded()) { draw(); return; }
  try {
    await loadPeople();
    draw();
  } catch (e) {
    status.className = "error";
    status.textContent = `Friends could not be loaded: ${errorText(e)}`;
  }
}
