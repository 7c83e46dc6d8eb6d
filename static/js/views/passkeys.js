// Passkeys: the settings section (add, name, list with last use, rename, remove) and the two
// sign-in buttons — a passkey alone on the sign-in screen, a passkey instead of the code on the
// 2FA step. The server's refusals arrive coded (passkey_wrong_origin, passkey_cloned, …) and are
// shown in its own words.

import { del, errorText, get, patch, post } from "../api.js";
import { ago, field, h, toast, when } from "../dom.js";
import { createPasskey, getPasskey, passkeyErrorText, passkeysSupported } from "../webauthn.js";

function errorLine() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(line, error) {
  line.hidden = false;
  line.textContent = passkeyErrorText(error) || errorText(error);
}

function passkeyRow(passkey, reload, error) {
  const used = passkey.last_used_at ? `last used ${ago(passkey.last_used_at)}` : "never used";
  const title = h("span", { class: "title" }, passkey.name,
    passkey.backed_up ? h("span", { class: "badge" }, "synced") : null);
  const item = h("li", { class: "item passkey", "data-passkey": passkey.id });
  const rename = h("button", { class: "btn secondary", type: "button", "aria-label": `Rename ${passkey.name}` }, "Rename");
  const remove = h("button", { class: "btn danger", type: "button", "aria-label": `Remove ${passkey.name}` }, "Remove");
  const show = () => item.replaceChildren(
    h("span", { class: "grow" }, title, h("span", { class: "sub" }, used, " · added ", when(passkey.created_at))),
    h("span", { class: "row" }, rename, remove));
  rename.addEventListener("click", () => {
    const name = h("input", { value: passkey.name, required: true, maxlength: 64, autocomplete: "off" });
    const form = h("form", { class: "row grow" }, field("Passkey name", name),
      h("button", { class: "btn", type: "submit" }, "Save"),
      h("button", { class: "btn secondary", type: "button", onclick: show }, "Cancel"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await patch(`/api/auth/passkeys/${passkey.id}`, { name: name.value }); reload(); }
      catch (e) { showError(error, e); }
    });
    item.replaceChildren(form);
    name.select();
  });
  remove.addEventListener("click", async () => {
    try { await del(`/api/auth/passkeys/${passkey.id}`); toast(`Passkey “${passkey.name}” removed.`); reload(); }
    catch (e) { showError(error, e); }
  });
  show();
  return item;
}

export async function passkeysSection() {
  const list = h("ul", { class: "list", "aria-label": "Passkeys" });
  const error = errorLine();
  const empty = h("p", { class: "muted" }, "No passkeys yet.");
  async function load() {
    error.hidden = true;
    const { passkeys } = await get("/api/auth/passkeys");
    empty.hidden = passkeys.length > 0;
    list.replaceChildren(...passkeys.map((p) => passkeyRow(p, () => load().catch((e) => showError(error, e)), error)));
  }
  const name = h("input", { name: "passkey-name", maxlength: 64, autocomplete: "off", placeholder: "e.g. My phone" });
  const add = h("button", { class: "btn", type: "submit" }, "Add a passkey");
  const form = h("form", { class: "stack" }, field("Name for the new passkey", name, "Optional; you can rename it later."), add);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    add.disabled = true;
    try {
      const { challenge_id: challengeId, publicKey } = await post("/api/auth/passkeys/register/options");
      const credential = await createPasskey(publicKey);
      const body = { challenge_id: challengeId, credential };
      if (name.value.trim()) body.name = name.value.trim();
      const { passkey } = await post("/api/auth/passkeys/register", body);
      name.value = "";
      toast(`Passkey “${passkey.name}” added.`);
      await load();
    } catch (e) { showError(error, e); } finally { add.disabled = false; }
  });
  const intro = h("p", {}, "Sign in with your device's fingerprint, face or screen lock instead of your password, "
    + "or use a passkey in place of the authenticator app's code at the 2FA step.");
  if (!passkeysSupported()) {
    form.hidden = true;
    intro.textContent = "This browser cannot use passkeys.";
  }
  try { await load(); } catch (e) { showError(error, e); }
  return h("section", { class: "card", "aria-label": "Passkeys" }, h("h2", {}, "Passkeys"), intro, list, empty, error, form);
}

// "Sign in with a passkey" on the sign-in screen: no username, the device offers its passkeys.
export function passkeySignInButton(error, done) {
  if (!passkeysSupported()) return null;
  const button = h("button", { class: "btn secondary", type: "button" }, "Sign in with a passkey");
  button.addEventListener("click", async () => {
    error.hidden = true;
    button.disabled = true;
    try {
      const { challenge_id: challengeId, publicKey } = await post("/api/auth/login/passkey/options");
      const credential = await getPasskey(publicKey);
      done(await post("/api/auth/login/passkey", { challenge_id: challengeId, credential, mode: "cookie" }));
    } catch (e) { showError(error, e); } finally { button.disabled = false; }
  });
  return button;
}

// On the 2FA step: a passkey of this account instead of the authenticator app's code.
export function passkeyMfaButton(ticket, error, done) {
  if (!passkeysSupported()) return null;
  const button = h("button", { class: "btn secondary passkey-alt", type: "button" }, "Use a passkey instead");
  button.addEventListener("click", async () => {
    error.hidden = true;
    button.disabled = true;
    try {
      const { challenge_id: challengeId, publicKey } = await post("/api/auth/login/mfa/passkey/options", { mfa_ticket: ticket });
      const credential = await getPasskey(publicKey);
      done(await post("/api/auth/login/mfa/passkey", { mfa_ticket: ticket, challenge_id: challengeId, credential, mode: "cookie" }));
    } catch (e) { showError(error, e); } finally { button.disabled = false; }
  });
  return button;
}
