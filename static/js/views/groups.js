// Groups (/groups, /groups/<id>): public groups and your private ones, starting one, joining
// (a private group: a request its owner or moderators approve), leaving, the members, the group's
// chat room, its posts, and the owner's and moderators' tools (requests, moderator role).
// Live on `live:group:<id>` (docs/community.md): members joining and leaving, join requests (for
// those who act on them), the group edited, and the group's new posts behind a "N new posts" bar.

import { get, patch, post, put } from "../api.js";
import { avatar, h, mount, profilePath, toast } from "../dom.js";
import { actionButton, displayName, fill, formState, generalError, keepTimesFresh, levelChip, LIMITS, liveStreams,
  plural, rankChip, subnav, textField } from "../community.js";
import { navigate } from "../router.js";
import { postComposer, postList } from "./feed.js";

const PAGE = 20;
const ROLE_TEXT = { owner: "Owner", moderator: "Moderator", member: "Member", pending: "Request sent" };

function groupRow(group) {
  const li = h("li", { "data-group": group.id });
  li.paint = (g) => {
    li.group = g;
    fill(li, h("a", { class: "item", href: `/groups/${g.id}`, "data-link": true },
      h("span", { class: "avatar room-icon", "aria-hidden": "true" }, "⚑"),
      h("span", { class: "grow" }, h("span", { class: "title" }, g.name),
        h("span", { class: "sub group-members", "data-members": g.members }, `${plural(g.members, "member")}`
          + `${g.visibility === "private" ? " · private" : ""}`),
        g.description ? h("span", { class: "sub" }, g.description) : null),
      g.my_role ? h("span", { class: "badge" }, ROLE_TEXT[g.my_role] || g.my_role) : null));
  };
  li.paint(group);
  return li;
}

function groupForm() {
  const name = textField("Name", { name: "name", max: LIMITS.groupName, hint: "3 to 64 characters" });
  const description = textField("Description", { name: "description", max: LIMITS.groupDescription, rows: 3, required: false });
  const isPrivate = h("input", { type: "checkbox", name: "private" });
  const general = generalError();
  const submit = h("button", { class: "btn", type: "submit" }, "Create group");
  const state = formState([name, description], general);
  const form = h("form", { class: "stack", novalidate: true }, name.el, description.el,
    h("label", { class: "row" }, isPrivate, "Private (members join on approval; its posts and room are members only)"),
    general, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (!name.input.value.trim()) { name.input.focus(); return; }
    if (state.over()) return;
    submit.disabled = true;
    try {
      const body = { name: name.input.value.trim(), visibility: isPrivate.checked ? "private" : "public" };
      if (description.input.value.trim()) body.description = description.input.value.trim();
      const group = await post("/api/groups", body);
      navigate(`/groups/${group.id}`);
    } catch (e) { state.show(e); } finally { submit.disabled = false; }
  });
  return form;
}

export async function groupsView(ctx) {
  const rows = new Map();
  let cursor = null;
  const list = h("ul", { class: "list", "aria-label": "Groups" }, h("li", { class: "muted" }, "Loading…"));
  const more = h("button", { class: "btn secondary", type: "button", hidden: true }, "More groups");
  const root = h("section", { class: "community groups" }, subnav("/groups"), h("h1", {}, "Groups"),
    h("details", { class: "card create" }, h("summary", {}, "Start a group"), groupForm()), list, more);
  mount(root);
  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      const li = rows.get(Number(channel.split(":")[2]));
      if (!li) return;
      if (data.type === "group_updated" && data.group) li.paint({ ...li.group, ...data.group, my_role: li.group.my_role });
      else if ((data.type === "member_joined" || data.type === "member_left") && typeof data.members === "number") {
        li.paint({ ...li.group, members: data.members });
      }
    },
    onReset: () => load(true).catch(() => {}),
  });
  async function load(reset) {
    const page = await get(`/api/groups?limit=${PAGE}${!reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    if (reset) { rows.clear(); fill(list); }
    for (const g of page.items) {
      if (rows.has(g.id)) { rows.get(g.id).paint(g); continue; }
      const li = groupRow(g);
      rows.set(g.id, li);
      list.append(li);
      streams.follow(`live:group:${g.id}`);
    }
    cursor = page.next;
    more.hidden = !cursor;
    if (!rows.size) fill(list, h("li", { class: "muted" }, "No groups yet: start one."));
  }
  more.addEventListener("click", () => load(false).catch((e) => toast(e.message)));
  try {
    await load(true);
  } catch (e) {
    fill(list, h("li", { class: "error" }, navigator.onLine ? `Groups could not be loaded: ${e.message}`
      : "You are offline: groups show once connected."));
  }
  streams.ready();
}

// --- one group --------------------------------------------------------------------------------------

function memberRow(user, extra = []) {
  return h("li", { class: "person-row", "data-user": user.username },
    h("a", { class: "person", href: profilePath(user.username), "data-link": true },
      h("span", { class: "avatar-wrap" }, avatar(user)),
      h("span", { class: "grow" }, h("span", { class: "title" }, displayName(user)),
        h("span", { class: "sub" }, `@${user.username}`, " ", rankChip(user.rank), " ", levelChip(user.level)))),
    extra.length ? h("span", { class: "person-actions" }, ...extra) : null);
}

export async function groupView(ctx) {
  const id = Number(ctx.params.id);
  const root = h("section", { class: "community group" }, subnav("/groups"), h("p", { class: "muted", role: "status" }, "Loading…"));
  mount(root);
  let group = null;
  const head = h("div", { class: "card group-head" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const membersBox = h("details", { class: "card group-members-box" }, h("summary", {}, "Members"));
  const membersList = h("ul", { class: "list people-list", "aria-label": "Members" });
  const requestsBox = h("section", { class: "card", hidden: true, "aria-label": "Join requests" }, h("h2", {}, "Join requests"));
  const requestsList = h("ul", { class: "list people-list", "aria-label": "Join requests" });
  requestsBox.append(requestsList);
  membersBox.append(membersList);
  const postsBox = h("section", { class: "group-posts", "aria-label": "Posts" });
  let posts = null;
  const canModerate = () => ["owner", "moderator"].includes(group?.my_role);
  const isMember = () => ["owner", "moderator", "member"].includes(group?.my_role);

  const streams = liveStreams(ctx, root, {
    onEvent(channel, data) {
      if (channel !== `live:group:${id}` || !group) return;
      if (data.type === "group_updated" && data.group) { group = { ...group, ...data.group, my_role: group.my_role }; paintHead(); }
      else if (data.type === "member_joined" || data.type === "member_left") {
        if (typeof data.members === "number") group.members = data.members;
        paintHead();
        if (membersBox.open) loadMembers().catch(() => {});
        if (data.type === "member_joined" && data.user) requestsList.querySelector(`[data-user="${CSS.escape(data.user.username)}"]`)?.remove();
      } else if (data.type === "join_request" && data.user && canModerate()) addRequest(data.user);
    },
    onReset: () => reload().catch(() => {}),
  });
  if (Number.isInteger(id) && id > 0) streams.follow(`live:group:${id}`);
  await streams.settled();

  async function reload() {
    group = await get(`/api/groups/${id}`);
    paintHead();
    if (canModerate()) loadRequests().catch(() => {});
  }

  function paintHead() {
    document.title = `Vonix · ${group.name}`;
    const room = group.room ? group.room.replace(/^room:/, "") : null;
    const act = (label, run, kind = "") => actionButton(label, async () => {
      error.hidden = true;
      try { await run(); } catch (e) { error.hidden = false; error.textContent = e.message; }
    }, { kind });
    const buttons = [];
    if (!group.my_role) buttons.push(act(group.visibility === "private" ? "Ask to join" : "Join", async () => {
      const answer = await post(`/api/groups/${id}/join`);
      group = { ...group, ...(answer && answer.id ? answer : {}), my_role: answer?.my_role ?? (group.visibility === "private" ? "pending" : "member") };
      paintHead();
    }));
    if (group.my_role && group.my_role !== "owner") {
      buttons.push(act(group.my_role === "pending" ? "Cancel request" : "Leave", async () => {
        await post(`/api/groups/${id}/leave`);
        group.my_role = null;
        paintHead();
      }, "secondary"));
    }
    if (room && isMember()) buttons.push(h("a", { class: "btn secondary", href: `/rooms/${encodeURIComponent(room)}`, "data-link": true }, "Open chat room"));
    if (isMember()) buttons.push(h("a", { class: "btn secondary", href: `/events?group=${id}`, "data-link": true }, "Plan an event"));
    fill(head,
      h("p", { class: "crumbs" }, h("a", { href: "/groups", "data-link": true }, "Groups"), " ›"),
      h("h1", {}, group.name),
      h("p", { class: "muted group-facts" }, h("span", { class: "group-members", "data-members": group.members }, plural(group.members, "member")),
        group.visibility === "private" ? " · private" : " · public",
        group.my_role ? ` · ${ROLE_TEXT[group.my_role] || group.my_role}` : ""),
      group.description ? h("p", { class: "group-description" }, group.description) : null,
      h("div", { class: "row" }, buttons), error,
      group.my_role === "owner" || group.my_role === "moderator" ? editBox() : null);
    requestsBox.hidden = !canModerate() || !requestsList.children.length;
    mountPosts();
  }

  function editBox() {
    const name = textField("Name", { name: "name", max: LIMITS.groupName, value: group.name });
    const description = textField("Description", { name: "description", max: LIMITS.groupDescription, rows: 3,
      required: false, value: group.description || "" });
    const general = generalError();
    const state = formState([name, description], general);
    const save = h("button", { class: "btn", type: "submit" }, "Save");
    const form = h("form", { class: "stack", novalidate: true }, name.el, description.el, general, save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      state.clear();
      if (state.over()) return;
      save.disabled = true;
      try {
        const fresh = await patch(`/api/groups/${id}`, { name: name.input.value.trim(), description: description.input.value.trim() });
        group = { ...group, ...fresh };
        paintHead();
        toast("Group saved.");
      } catch (e) { state.show(e); } finally { save.disabled = false; }
    });
    return h("details", { class: "edit-group" }, h("summary", {}, "Edit group"), form);
  }

  async function loadMembers() {
    const page = await get(`/api/groups/${id}/members?limit=50`);
    const items = page.items || page.members || [];
    fill(membersList, ...items.map((m) => {
      const user = m.user || m;
      const role = m.role;
      const extra = [];
      if (role) extra.push(h("span", { class: "badge" }, ROLE_TEXT[role] || role));
      if (group.my_role === "owner" && role && role !== "owner") {
        const next = role === "moderator" ? "member" : "moderator";
        extra.push(actionButton(next === "moderator" ? "Make moderator" : "Remove moderator", async () => {
          await put(`/api/groups/${id}/members/${encodeURIComponent(user.username)}/role`, { role: next });
          await loadMembers();
        }));
      }
      return memberRow(user, extra);
    }));
    if (!items.length) fill(membersList, h("li", { class: "muted" }, "No members."));
  }
  membersBox.addEventListener("toggle", () => { if (membersBox.open) loadMembers().catch((e) => toast(e.message)); });

  function addRequest(user) {
    if (requestsList.querySelector(`[data-user="${CSS.escape(user.username)}"]`)) return;
    const at = encodeURIComponent(user.username);
    const row = memberRow(user, [
      actionButton("Approve", async () => { await post(`/api/groups/${id}/requests/${at}/approve`); row.remove(); paintHead(); },
        { kind: "", attrs: { "aria-label": `Approve ${user.username}` } }),
      actionButton("Decline", async () => { await post(`/api/groups/${id}/requests/${at}/decline`); row.remove(); paintHead(); },
        { attrs: { "aria-label": `Decline ${user.username}` } }),
    ]);
    requestsList.append(row);
    requestsBox.hidden = false;
  }
  async function loadRequests() {
    const page = await get(`/api/groups/${id}/requests`);
    fill(requestsList);
    for (const r of page.items || page.requests || []) addRequest(r.user || r);
    requestsBox.hidden = !requestsList.children.length;
  }

  // The group's posts: members of a private group, anyone for a public one; members write too.
  let composer = null;
  function mountPosts() {
    if (!group || (group.visibility === "private" && !isMember())) return;
    if (!posts) {
      posts = postList(ctx, root, { path: `/api/posts?group=${id}`, feedChannel: `live:group:${id}`, groupId: id,
        empty: "No posts in this group yet." });
      fill(postsBox, h("h2", {}, "Posts"), posts.el);
      posts.start();
    }
    if (isMember() && !composer) {
      composer = postComposer({ groupId: id, onPosted: (p, update) => posts.mine(p, update) });
      posts.el.before(composer);
    } else if (!isMember() && composer) {
      composer.remove();
      composer = null;
    }
  }

  try {
    group = await get(`/api/groups/${id}`);
  } catch (e) {
    if (!ctx.current()) return;
    fill(root, subnav("/groups"), h("div", { class: "card narrow" },
      h("h1", {}, e.status === 404 ? "No such group" : "This group could not be loaded"),
      h("p", {}, e.status === 404 ? "It was removed, or it is private and you are not a member." : e.message),
      h("p", {}, h("a", { class: "btn", href: "/groups", "data-link": true }, "All groups"))));
    return;
  }
  if (!ctx.current()) return;
  fill(root, subnav("/groups"), head, requestsBox, membersBox, postsBox);
  keepTimesFresh(ctx, root);
  paintHead();
  streams.ready();
  if (canModerate()) loadRequests().catch(() => {});
}
