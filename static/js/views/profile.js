// A member's profile (/u/<username>): picture, names, role and badges, level and XP, when they
// joined, online or last seen, their Minecraft account and bio, and what you can do with them —
// befriend (or cancel, accept, decline, remove), message, block or unblock (both asked once more).
// Your own profile offers "Edit profile". Live: a relationship change (from either side, in any
// tab) or a friend's presence change redraws it; nothing is polled. Anyone may report a member
// (asked for a reason); site moderators and admins also mute or ban them site-wide and see (and
// lift) the member's sanctions in force.

import { del, errorText, get, post, put } from "../api.js";
import { append, avatar, h, mount, toast } from "../dom.js";
import { navigate } from "../router.js";
import { friendOf, noteRelationship, peopleStore, relationOf } from "../people.js";
import { displayName, presence, refreshAgo } from "./friends.js";
import { actionForm, impose, isSiteStaff, reportForm, sanctionList } from "./moderation.js";

const REFRESH_AGO_MS = 30 * 1000;
const ROLE_LABEL = { admin: "Admin", moderator: "Moderator", bot: "Bot" };
const dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric" });
const number = new Intl.NumberFormat();

const RELATION_TEXT = {
  friends: () => "✓ You are friends",
  outgoing: () => "Friend request sent",
  incoming: (name) => `${name} sent you a friend request`,
  blocked: (name) => `You blocked ${name}. Their messages are hidden from you.`,
};

// Why a conversation could not be opened, in the member's words.
export function dmRefusal(error, name) {
  if (error.code === "dm_not_allowed") return `${name} only accepts direct messages from friends.`;
  if (error.code === "dm_blocked") return `You can't send ${name} direct messages.`;
  return errorText(error);
}

function notFound(username) {
  mount(h("section", { class: "card narrow" }, h("h1", {}, "No such member"),
    h("p", {}, `There is no member called ${username}.`),
    h("p", {}, h("a", { class: "btn", href: "/friends", "data-link": true }, "Back to friends"))));
  document.title = "Vonix · no such member";
}

function facts(profile) {
  const rows = [
    ["Level", `${number.format(profile.level ?? 0)} · ${number.format(profile.xp ?? 0)} XP`],
    ["Joined", profile.joined_at ? h("time", { datetime: profile.joined_at }, dateFormat.format(new Date(profile.joined_at))) : "—"],
  ];
  if (profile.minecraft) rows.push(["Minecraft", h("span", { class: "minecraft" }, profile.minecraft.name || profile.minecraft.uuid)]);
  return h("dl", { class: "facts" }, rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
}

export async function profileView(ctx) {
  const username = ctx.params.username;
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  mount(h("section", {}, status));
  const path = `/api/users/${encodeURIComponent(username)}`;
  let profile;
  try {
    profile = await get(path);
  } catch (error) {
    if (!ctx.current()) return;
    if (error.code === "user_not_found") return notFound(username);
    status.className = "error";
    status.textContent = `This profile could not be loaded: ${errorText(error)}`;
    return;
  }
  if (!ctx.current()) return;

  const page = h("section", { class: "profile", "data-user": profile.username });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const fail = (e) => { error.hidden = false; error.textContent = typeof e === "string" ? e : errorText(e); };
  let confirming = null; // the question being asked, kept across a live redraw
  let modPanel = null; // the open report / mute / ban form: one element, kept across a live redraw
  const staff = isSiteStaff();
  const sanctions = h("div", { class: "profile-sanctions" });
  mount(page);

  // Run a change; the answer (and the live event after it) redraws the screen.
  const act = (button, run) => async () => {
    error.hidden = true;
    button.disabled = true;
    try { await run(); } catch (e) { fail(e); } finally { button.disabled = false; }
  };
  const btn = (label, kind, run, attrs = {}) => {
    const el = h("button", { class: `btn${kind ? ` ${kind}` : ""}`, type: "button", ...attrs }, label);
    el.addEventListener("click", act(el, run));
    return el;
  };
  const changed = (relationship) => {
    confirming = null;
    noteRelationship(profile, relationship); // the lists (and so this screen, through onChange) follow at once
    if (profile.relationship !== relationship) {
      profile.relationship = relationship;
      paint();
      reload();
    }
  };
  const ask = (question, yesLabel, run) => {
    confirming = { question, yesLabel, run };
    paint();
  };

  function actionButtons() {
    const name = displayName(profile);
    const at = encodeURIComponent(profile.username);
    if (profile.relationship === "self") {
      return [h("a", { class: "btn", href: "/settings/profile", "data-link": true }, "Edit profile"),
        h("a", { class: "btn secondary", href: "/friends", "data-link": true }, "Friends")];
    }
    if (confirming) {
      const { question, yesLabel, run } = confirming;
      const yes = btn(yesLabel, "danger", async () => {
        confirming = null;
        try { await run(); } finally { paint(); }
      });
      const no = h("button", { class: "btn secondary", type: "button" }, "Cancel");
      no.addEventListener("click", () => { confirming = null; paint(); });
      return [h("p", { class: "confirm", role: "status" }, question), yes, no];
    }
    const message = btn("Message", "secondary", async () => {
      try {
        await post("/api/dms", { username: profile.username });
      } catch (e) {
        fail(e.status === 403 ? dmRefusal(e, name) : e);
        return;
      }
      navigate(`/dms/${at}`);
    });
    const block = btn("Block", "danger", async () => ask(
      `Block ${name}? You won't see their messages, and they can't message you or send you friend requests.`,
      `Block ${profile.username}`, async () => changed((await put(`/api/blocks/${at}`)).relationship)));
    switch (profile.relationship) {
      case "blocked":
        return [btn("Unblock", "secondary", async () => ask(`Unblock ${name}? Their messages show again.`,
          `Unblock ${profile.username}`, async () => { await del(`/api/blocks/${at}`); changed("none"); }))];
      case "friends":
        return [message, btn("Remove friend", "secondary", async () => ask(`Remove ${name} from your friends?`,
          "Remove friend", async () => { await del(`/api/friends/${at}`); changed("none"); })), block];
      case "incoming":
        return [btn("Accept", "", async () => changed((await post(`/api/friends/${at}/accept`)).relationship)),
          btn("Decline", "secondary", async () => { await post(`/api/friends/${at}/decline`); changed("none"); }),
          message, block];
      case "outgoing":
        return [btn("Cancel request", "secondary", async () => { await del(`/api/friends/${at}`); changed("none"); }),
          message, block];
      default:
        return [btn("Add friend", "", async () => {
          try {
            changed((await post("/api/friends", { username: profile.username })).relationship);
          } catch (e) {
            if (e.code === "friend_request_refused") throw new Error(`${name} is not accepting friend requests from you.`);
            throw e;
          }
        }), message, block];
    }
  }

  // Report (anyone), Mute and Ban site-wide (site staff): a form under the buttons, asked once more.
  function moderationRow() {
    if (profile.relationship === "self") return null;
    const name = displayName(profile);
    const open = (makeForm) => () => { modPanel = h("div", { class: "card mod-panel" }, makeForm()); paint(); };
    const shut = () => { modPanel = null; paint(); };
    const button = (label, kind, makeForm) => {
      const el = h("button", { class: `btn ${kind}`, type: "button" }, label);
      el.addEventListener("click", open(makeForm));
      return el;
    };
    const sanction = (kind) => () => actionForm({ kind, username: profile.username,
      question: kind === "mute" ? `Mute ${name} everywhere?` : `Ban ${name} from Vonix?`,
      confirm: kind === "ban" ? "A site ban signs them out everywhere and stops them signing in." : null,
      run: ({ minutes, reason }) => impose(kind, profile.username, null, minutes, reason),
      onDone: () => {
        toast(kind === "mute" ? `${profile.username} is muted.` : `${profile.username} is banned.`);
        shut();
        loadSanctions();
      },
      onCancel: shut });
    return h("div", { class: "row profile-mod" },
      button("Report", "secondary", () => reportForm({ target: { username: profile.username },
        question: `Why should moderators look at ${name}?`,
        onDone: () => setTimeout(() => { if (modPanel && ctx.current()) shut(); }, 2500), onCancel: shut })),
      staff ? button("Mute", "danger", sanction("mute")) : null,
      staff ? button("Ban", "danger", sanction("ban")) : null);
  }

  // Site staff: the member's mutes and bans in force, each with Lift.
  async function loadSanctions() {
    if (!staff || profile.relationship === "self") return;
    try {
      const { sanctions: list } = await get(`/api/moderation/sanctions?username=${encodeURIComponent(profile.username)}`);
      if (!ctx.current()) return;
      sanctions.replaceChildren(...(list.length ? [h("h2", {}, "Sanctions in force"), sanctionList(list, {
        onLifted: () => loadSanctions() })] : []));
    } catch (e) {
      sanctions.replaceChildren(h("p", { class: "error" }, `Sanctions could not be loaded: ${errorText(e)}`));
    }
  }

  function paint() {
    const name = displayName(profile);
    document.title = `Vonix · ${name}`;
    const badges = [...new Set([ROLE_LABEL[profile.role], ...(profile.badges || []).map((b) => ROLE_LABEL[b] || b)])]
      .filter(Boolean);
    const relation = RELATION_TEXT[profile.relationship];
    const typing = modPanel?.contains(document.activeElement) ? document.activeElement : null; // kept through a redraw
    page.dataset.relationship = profile.relationship;
    page.replaceChildren();
    append(page, [
      h("div", { class: "card profile-head" }, avatar(profile, { large: true, alt: `${name}'s picture` }),
        h("div", { class: "grow" },
          h("h1", {}, name),
          h("p", { class: "handle" }, `@${profile.username}`),
          badges.length ? h("p", { class: "badges" }, badges.map((b) => h("span", { class: "badge" }, b))) : null,
          h("p", { class: "presence-line" }, presence(profile, { long: true })))),
      relation ? h("p", { class: "relation", role: "status", "data-relationship": profile.relationship },
        relation(name)) : null,
      h("div", { class: `row profile-actions${confirming ? " confirming" : ""}` }, actionButtons()),
      error,
      modPanel ? null : moderationRow(),
      modPanel,
      sanctions,
      h("div", { class: "card" }, facts(profile), h("h2", {}, "About"),
        h("p", { class: `bio${profile.bio ? "" : " muted"}` }, profile.bio || "No bio yet."))]);
    if (confirming) page.querySelector(".profile-actions .btn.secondary")?.focus(); // "Cancel": the safe default
    else typing?.focus();
  }

  let reloading = null;
  async function reload() {
    reloading ||= get(path).then((fresh) => {
      if (!ctx.current()) return;
      profile = fresh;
      paint();
    }).catch(() => {}).finally(() => { reloading = null; });
    return reloading;
  }

  const same = (name) => String(name || "").toLowerCase() === profile.username.toLowerCase();
  const onChange = (event) => {
    const { username: who, relationship } = event.detail;
    if (profile.relationship === "self") return;
    if (who === null) {
      if (relationOf(profile.username) !== profile.relationship) reload();
      return;
    }
    if (!same(who)) return;
    if (relationship !== undefined) {
      if (relationship !== profile.relationship) {
        profile.relationship = relationship; // at once; the profile follows (who may DM whom, online)
        confirming = null;
        paint();
        reload();
      }
      return;
    }
    const friend = friendOf(profile.username); // a friend came online or left
    if (friend && friend.online !== null && friend.online !== undefined) {
      profile.online = friend.online;
      profile.last_seen_at = friend.last_seen_at;
      paint();
    }
  };
  const onProfile = (event) => {
    if (profile.relationship !== "self") return;
    Object.assign(profile, event.detail);
    paint();
  };
  peopleStore.addEventListener("change", onChange);
  peopleStore.addEventListener("profile", onProfile);
  const timer = setInterval(() => refreshAgo(page), REFRESH_AGO_MS);
  ctx.onLeave(() => {
    peopleStore.removeEventListener("change", onChange);
    peopleStore.removeEventListener("profile", onProfile);
    clearInterval(timer);
  });
  paint();
  loadSanctions();
}
