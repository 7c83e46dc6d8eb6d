// Game servers, for admins (/admin/servers; docs/minecraft.md): the list with each server's live
// status, adding one, editing, deleting and moving it up or down the public list. The server's
// refusals show under their fields and the admin's text stays; "Keys" opens the server's plugin
// API keys (serverkeys.js). Live on `status:servers`: a poll's result (`server_status`), another
// admin's edit (`server_updated`) or removal (`server_removed`).

import { del, get, patch, post, put } from "../api.js";
import { h, mount, toast } from "../dom.js";
import { actionButton, confirmAction, fill, formState, generalError, liveStreams, selectField, textField } from "../community.js";
import { keysPanel } from "./serverkeys.js";

const CHANNEL = "status:servers";
const DEFAULT_PORT = { java: 25565, bedrock: 19132 };
const REASON_TEXT = {
  timeout: "no answer in time", refused: "connection refused", bad_response: "not a Minecraft answer",
  closed: "closed the connection", unreachable: "host unreachable", breaker_open: "failing: paused",
};

function statusText(server) {
  const status = server.status;
  if (!status) return "Not checked yet";
  if (!status.online) return `Offline (${REASON_TEXT[status.reason] || status.reason || "unknown"})`;
  const players = status.players || {};
  return `Online · ${players.online}/${players.max} players${status.version ? ` · ${status.version}` : ""}`;
}

function serverForm(server, { onSaved, onCancel }) {
  const editing = Boolean(server);
  const value = (key, fallback = "") => (server && server[key] !== null && server[key] !== undefined ? String(server[key]) : fallback);
  const name = textField("Name", { name: "name", max: 100, hint: "3 to 100 characters", value: value("name") });
  const host = textField("Host", { name: "host", hint: "play.example.net or an IP address", value: value("host"),
    attrs: { autocapitalize: "off", spellcheck: "false", inputmode: "url" } });
  const edition = selectField("Edition", { name: "edition", options: [["java", "Java"], ["bedrock", "Bedrock"]],
    value: value("edition", "java") });
  const port = textField("Port", { name: "port", type: "number", required: false, hint: "empty: the edition's default",
    value: server && server.port !== DEFAULT_PORT[server.edition] ? value("port") : "",
    attrs: { min: 1, max: 65535, inputmode: "numeric" } });
  const placeholder = () => port.input.setAttribute("placeholder", String(DEFAULT_PORT[edition.input.value] || 25565));
  edition.input.addEventListener("change", placeholder);
  placeholder();
  const description = textField("Description", { name: "description", max: 500, rows: 3, required: false,
    value: value("description") });
  const version = textField("Version", { name: "version", required: false, hint: "e.g. 1.21.4", value: value("version") });
  const modpack = textField("Modpack", { name: "modpack", required: false, value: value("modpack") });
  const mapUrl = textField("Map link", { name: "map_url", type: "url", required: false, hint: "https://…",
    value: value("map_url") });
  const modpackUrl = textField("Modpack page", { name: "modpack_url", type: "url", required: false, hint: "https://…",
    value: value("modpack_url") });
  const fields = [name, host, edition, port, description, version, modpack, mapUrl, modpackUrl];
  const general = generalError();
  const state = formState(fields, general);
  const submit = h("button", { class: "btn", type: "submit" }, editing ? "Save" : "Add server");
  const cancel = editing ? h("button", { class: "btn secondary", type: "button" }, "Cancel") : null;
  cancel?.addEventListener("click", onCancel);
  const form = h("form", { class: "stack server-form", novalidate: true, "data-server-form": editing ? server.id : "new" },
    ...fields.map((f) => f.el), general, h("div", { class: "row" }, submit, cancel));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    state.clear();
    if (state.over()) return;
    const body = {
      name: name.input.value.trim(), host: host.input.value.trim(), edition: edition.input.value,
      description: description.input.value.trim(), version: version.input.value.trim(),
      modpack: modpack.input.value.trim(), map_url: mapUrl.input.value.trim() || null,
      modpack_url: modpackUrl.input.value.trim() || null,
    };
    const rawPort = port.input.value.trim();
    if (rawPort) body.port = Number(rawPort);
    else if (editing) body.port = null;
    submit.disabled = true;
    try {
      const saved = editing ? await patch(`/api/admin/servers/${server.id}`, body) : await post("/api/admin/servers", body);
      if (!editing) for (const f of fields) if (f.input.tagName !== "SELECT") f.input.value = "";
      onSaved(saved);
    } catch (error) { state.show(error); } finally { submit.disabled = false; }
  });
  return form;
}

export async function serversAdminView(ctx) {
  const list = h("ul", { class: "list servers-admin-list", "aria-label": "Game servers" });
  const empty = h("p", { class: "muted" }, "No servers yet: add the first one below.");
  const notice = h("p", { class: "error", role: "alert", hidden: true });
  const rows = new Map();
  let servers = [];

  const addForm = serverForm(null, {
    onSaved: (saved) => { upsert(saved); toast(`${saved.name} added`); },
    onCancel: () => {},
  });
  const root = h("section", { class: "servers-admin stack" },
    h("h1", {}, "Game servers"),
    h("p", { class: "muted" }, "The servers on the public list. Vonix checks each one regularly; "
      + "players see the status live."),
    notice, empty, list,
    h("details", { class: "card", open: true }, h("summary", {}, "Add a server"), addForm));
  mount(root);

  const move = async (server, step) => {
    const ids = servers.map((s) => s.id);
    const at = ids.indexOf(server.id);
    const to = at + step;
    if (at < 0 || to < 0 || to >= ids.length) return;
    [ids[at], ids[to]] = [ids[to], ids[at]];
    const answer = await put("/api/admin/servers/order", { ids });
    servers = answer.servers;
    paintAll();
  };

  const row = (server) => {
    const li = h("li", { "data-server": server.id });
    li.paint = (s, editing = false) => {
      const index = servers.findIndex((x) => x.id === s.id);
      const status = h("p", { class: "muted server-status", "data-online": s.status ? String(s.status.online) : "unknown" },
        statusText(s));
      const item = h("div", { class: "card stack server-card" },
        h("div", {},
          h("strong", { class: "title" }, s.name),
          h("span", { class: "sub server-address muted" }, ` ${s.address} · ${s.edition === "bedrock" ? "Bedrock" : "Java"}`)),
        status,
        h("div", { class: "row server-actions" },
          actionButton("↑", () => move(s, -1), { attrs: { "aria-label": `Move ${s.name} up`, disabled: index <= 0 } }),
          actionButton("↓", () => move(s, 1), { attrs: { "aria-label": `Move ${s.name} down`,
            disabled: index < 0 || index >= servers.length - 1 } }),
          actionButton("Edit", async () => li.paint(s, true), { attrs: { "aria-label": `Edit ${s.name}` } }),
          actionButton("Keys", async () => { li.keysOpen = !li.keysOpen; li.paint(li.server, li.editing); },
            { attrs: { "aria-label": `Plugin keys of ${s.name}`, "aria-expanded": String(Boolean(li.keysOpen)) } }),
          confirmAction("Delete", `Delete ${s.name} and its status history?`, async () => {
            await del(`/api/admin/servers/${s.id}`);
            remove(s.id);
          }, { attrs: { "aria-label": `Delete ${s.name}` } })));
      fill(li, item, editing ? h("div", { class: "card" }, serverForm(s, {
        onSaved: (saved) => { upsert(saved); toast("Saved"); },
        onCancel: () => li.paint(li.server),
      })) : null, li.keysOpen ? (li.keys ||= h("div", { class: "card" }, keysPanel(s))) : null);
      li.server = s;
      li.editing = editing;
    };
    li.paint(server);
    return li;
  };

  function paintAll() {
    servers.sort((a, b) => a.position - b.position || a.name.localeCompare(b.name));
    const keep = new Map(rows);
    rows.clear();
    fill(list, servers.map((s) => {
      const li = keep.get(s.id) || row(s);
      rows.set(s.id, li);
      if (!li.editing) li.paint(s);
      return li;
    }));
    empty.hidden = servers.length > 0;
  }

  function upsert(server) {
    const at = servers.findIndex((s) => s.id === server.id);
    if (at >= 0) servers[at] = server;
    else servers.push(server);
    const li = rows.get(server.id);
    if (li && li.editing && at >= 0) { li.editing = false; }
    paintAll();
  }

  function remove(id) {
    servers = servers.filter((s) => s.id !== id);
    rows.delete(id);
    paintAll();
  }

  const load = async () => {
    try {
      servers = (await get("/api/admin/servers")).servers;
      notice.hidden = true;
      paintAll();
    } catch (error) {
      notice.hidden = false;
      notice.textContent = error.status === 403 ? "Only admins manage the game servers." : "The servers could not be loaded.";
      empty.hidden = true;
    }
  };

  const streams = liveStreams(ctx, root, {
    onEvent: (_channel, data) => {
      if (data.type === "server_removed") { remove(data.id); return; }
      if (!data.server) return;
      const at = servers.findIndex((s) => s.id === data.server.id);
      if (at < 0 && data.type !== "server_updated") return;
      const li = rows.get(data.server.id);
      if (li && li.editing) { // keep the admin's form; refresh the status line only
        servers[at] = data.server;
        li.querySelector(".server-status").textContent = statusText(data.server);
        li.querySelector(".server-status").dataset.online = data.server.status ? String(data.server.status.online) : "unknown";
        return;
      }
      upsert(data.server);
    },
    onReset: () => { load(); },
  });
  streams.follow(CHANNEL);
  await streams.settled();
  await load();
  streams.ready();
}
