// A game server's plugin API keys, for admins (inside /admin/servers; docs/plugins.md): the plugin
// signs in with one to ask for link codes, look players up and run the game chat bridge. A new key
// is shown once (only its hash is kept), so the panel says so and offers a copy button; keys are
// listed with their prefix and last use, and revoking one closes its bridge at once.

import { del, get, post } from "../api.js";
import { h, toast } from "../dom.js";
import { confirmAction, fill, formState, generalError, textField } from "../community.js";

function when(iso) {
  return iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "never";
}

function keyRow(key, server, onRevoked) {
  const facts = `${key.prefix}… · created ${when(key.created_at)} · last used ${when(key.last_used_at)}`;
  return h("li", { class: "item plugin-key", "data-key": key.id, "data-revoked": String(key.revoked) },
    h("span", { class: "grow" },
      h("span", { class: "title" }, key.name),
      h("span", { class: "sub muted" }, key.revoked ? `${facts} · revoked ${when(key.revoked_at)}` : facts)),
    key.revoked ? null : confirmAction("Revoke", `Revoke ${key.name}? A plugin using it stops at once.`, async () => {
      onRevoked(await del(`/api/admin/servers/${server.id}/keys/${key.id}`));
    }, { attrs: { "aria-label": `Revoke ${key.name}` } }));
}

function shownOnce(secret) {
  const code = h("code", { class: "secret" }, secret);
  const copy = h("button", { class: "btn secondary", type: "button" }, "Copy key");
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(secret); toast("Key copied"); } catch { toast("Select the key and copy it"); }
  });
  return h("div", { class: "card stack new-key", role: "status" },
    h("p", {}, h("strong", {}, "Copy this key now: "), "it is shown only once. Put it in the plugin's configuration."),
    code, h("div", { class: "row" }, copy));
}

export function keysPanel(server) {
  const list = h("ul", { class: "list plugin-keys", "aria-label": `API keys of ${server.name}` },
    h("li", { class: "muted" }, "Loading…"));
  const fresh = h("div");
  const name = textField("Key name", { name: "name", max: 100, hint: "where it is used, e.g. Paper plugin" });
  const general = generalError();
  const state = formState([name], general);
  const issue = h("button", { class: "btn", type: "submit" }, "Issue key");
  const form = h("form", { class: "stack", novalidate: true }, name.el, general, h("div", { class: "row" }, issue));
  let keys = [];

  const paint = () => {
    fill(list, keys.length ? keys.map((k) => keyRow(k, server, (revoked) => {
      keys = keys.map((x) => (x.id === revoked.id ? revoked : x));
      paint();
      toast(`${revoked.name} revoked`);
    })) : [h("li", { class: "muted" }, "No keys yet.")]);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (state.over()) return;
    issue.disabled = true;
    try {
      const made = await post(`/api/admin/servers/${server.id}/keys`, { name: name.input.value.trim() });
      const { key: secret, ...row } = made;
      keys = [row, ...keys];
      name.input.value = "";
      fill(fresh, shownOnce(secret));
      paint();
    } catch (error) { state.show(error); } finally { issue.disabled = false; }
  });
  get(`/api/admin/servers/${server.id}/keys`).then((answer) => { keys = answer.keys; paint(); },
    () => fill(list, h("li", { class: "error" }, "The keys could not be loaded.")));
  return h("section", { class: "stack server-keys", "aria-label": `Plugin keys of ${server.name}` },
    h("h3", {}, "Plugin API keys"), fresh, list, form);
}
