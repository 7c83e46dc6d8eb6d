// The leaderboard (/leaderboard): the members with the most XP, of all time or this week, with
// their level's title in its colour, and the ranks admins give (name, colour, badge). There is no
// stream of everyone's XP: the board is read again when this member gains XP (their own `xp`
// event on the personal channel) and when the screen comes back into view.

import { get } from "../api.js";
import { avatar, h, mount, profilePath } from "../dom.js";
import { displayName, fill, formatNumber, rankChip, subnav, tabs } from "../community.js";
import { navigate } from "../router.js";
import { bus, session } from "../session.js";

function entryRow(entry) {
  const user = entry.user;
  const me = session.me && user.username === session.me.username;
  const title = h("span", { class: "level-title" }, `Lv ${entry.level} · ${entry.title}`);
  if (entry.colour) title.style.color = entry.colour; // CSSOM: allowed by the style-src policy
  return h("li", { class: `item leader${me ? " me" : ""}`, "data-user": user.username, "data-position": entry.position },
    h("span", { class: "position", "aria-label": `Position ${entry.position}` }, `#${entry.position}`),
    h("a", { class: "person", href: profilePath(user.username), "data-link": true },
      h("span", { class: "avatar-wrap" }, avatar(user)),
      h("span", { class: "grow" }, h("span", { class: "title" }, displayName(user), me ? " (you)" : ""), h("span", { class: "sub" }, title))),
    h("span", { class: "xp" }, `${formatNumber(entry.xp)} XP`));
}

export async function leaderboardView(ctx) {
  const period = ctx.query.get("period") === "week" ? "week" : "all";
  const list = h("ol", { class: "list leaderboard", "aria-label": period === "week" ? "This week" : "All time" },
    h("li", { class: "muted" }, "Loading…"));
  const ranks = h("section", { class: "card ranks", hidden: true, "aria-label": "Ranks" });
  const root = h("section", { class: "community leaderboard-page" }, subnav("/leaderboard"), h("h1", {}, "Leaderboard"),
    tabs([["all", "All time"], ["week", "This week"]], period, "Period",
      (key) => navigate(key === "week" ? "/leaderboard?period=week" : "/leaderboard", { replace: true })),
    list, ranks);
  mount(root);

  let loading = null;
  async function load() {
    loading ||= get(`/api/leaderboard?period=${period}`).then((board) => {
      if (!ctx.current()) return;
      fill(list, ...board.entries.map(entryRow));
      if (!board.entries.length) fill(list, h("li", { class: "muted" }, "Nobody has XP yet."));
    }).finally(() => { loading = null; });
    return loading;
  }
  let timer = null;
  const soon = () => { clearTimeout(timer); timer = setTimeout(() => load().catch(() => {}), 1000); };
  const onVisible = () => { if (document.visibilityState === "visible") soon(); };
  bus.addEventListener("xp", soon);
  document.addEventListener("visibilitychange", onVisible);
  ctx.onLeave(() => { clearTimeout(timer); bus.removeEventListener("xp", soon); document.removeEventListener("visibilitychange", onVisible); });
  try {
    await load();
  } catch (e) {
    fill(list, h("li", { class: "error" }, navigator.onLine ? `The leaderboard could not be loaded: ${e.message}`
      : "You are offline: the leaderboard shows once connected."));
  }
  try {
    const { ranks: all } = await get("/api/ranks");
    if (all.length && ctx.current()) {
      fill(ranks, h("h2", {}, "Ranks"), h("p", { class: "muted" }, "Given by the admins; shown beside members' names."),
        h("p", { class: "row" }, all.map((r) => rankChip(r))));
      ranks.hidden = false;
    }
  } catch { /* the ranks are a legend: the board stands without it */ }
}
