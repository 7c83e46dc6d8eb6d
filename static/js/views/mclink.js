// Settings → Minecraft (/settings/minecraft): link your Minecraft account with the 6-character code
// the game gives you (type /link in game), see the linked name and head, unlink (docs/plugins.md).

import { del, errorText, get, post } from "../api.js";
import { field, h, mount, profilePath, toast } from "../dom.js";
import { session } from "../session.js";

function errorLine() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function linkedCard(minecraft, onUnlink) {
  const head = minecraft.head
    ? h("img", { class: "avatar avatar-lg", src: minecraft.head, alt: `${minecraft.name}'s Minecraft head`, width: 96, height: 96 })
    : null;
  const unlink = h("button", { class: "btn danger", type: "button" }, "Unlink");
  const error = errorLine();
  unlink.addEventListener("click", async () => {
    error.hidden = true;
    try {
      await del("/api/minecraft/link");
      toast("Your Minecraft account is unlinked.");
      onUnlink();
    } catch (e) { error.hidden = false; error.textContent = errorText(e); }
  });
  const me = session.me;
  return h("section", { class: "card", "aria-label": "Linked Minecraft account" },
    h("h2", {}, "Linked"),
    h("div", { class: "avatar-row" }, head,
      h("p", { class: "grow" }, h("strong", { class: "minecraft", "data-minecraft": minecraft.name }, minecraft.name),
        h("br"), h("span", { class: "muted" }, minecraft.uuid))),
    h("p", {}, "Your profile shows this name and head.",
      me ? [" ", h("a", { href: profilePath(me.username), "data-link": true }, "View your profile")] : null),
    error, h("div", { class: "row" }, unlink));
}

function codeForm(onLinked) {
  const code = h("input", { name: "code", required: true, autocomplete: "one-time-code", autocapitalize: "characters",
    spellcheck: false, minlength: 6, maxlength: 16, placeholder: "K7Q2XM" });
  const error = errorLine();
  const form = h("form", { class: "stack", "aria-label": "Link with a code" },
    field("Code from the game", code, "Join one of our servers and type /link: it gives you a 6-character code, valid 10 minutes."),
    error, h("button", { class: "btn", type: "submit" }, "Link"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const state = await post("/api/minecraft/link", { code: code.value.trim() });
      toast(`Linked to ${state.minecraft.name}.`);
      onLinked(state);
    } catch (e) { error.hidden = false; error.textContent = errorText(e); code.select(); }
  });
  return h("section", { class: "card", "aria-label": "Link your Minecraft account" },
    h("h2", {}, "Link your Minecraft account"), form);
}

export async function minecraftLinkView(ctx) {
  const status = h("p", { class: "muted", role: "status" }, "Loading…");
  const page = h("section", { class: "narrow" }, h("h1", {}, "Minecraft"), status);
  mount(page);
  let state;
  try {
    state = await get("/api/minecraft/link");
  } catch (e) {
    status.className = "error";
    status.textContent = `Could not load your Minecraft link: ${errorText(e)}`;
    return;
  }
  if (ctx && ctx.current && !ctx.current()) return;
  const show = (next) => {
    status.replaceChildren();
    const body = next.linked ? linkedCard(next.minecraft, () => show({ linked: false })) : codeForm(show);
    page.replaceChildren(page.firstChild, body);
  };
  show(state);
}
