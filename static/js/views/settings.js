// Settings: push notifications on this device, sessions, two-factor authentication, sign out.

import { del, get, post } from "../api.js";
import { field, h, mount, toast, when } from "../dom.js";
import { currentSubscription, disablePush, enablePush, pushSupported } from "../push.js";
import { navigate } from "../router.js";
import { session, signOut } from "../session.js";

function section(title, ...children) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...children);
}

async function pushSection() {
  const state = h("p", { role: "status" });
  const toggle = h("button", { class: "btn", type: "button" });
  const test = h("button", { class: "btn secondary", type: "button" }, "Send a test notification");
  async function refresh() {
    if (!pushSupported()) { state.textContent = "This browser cannot receive push notifications."; toggle.hidden = true; test.hidden = true; return; }
    if (!session.config?.push?.enabled) { state.textContent = "Push notifications are not set up on this server."; toggle.hidden = true; test.hidden = true; return; }
    const subscription = await currentSubscription().catch(() => null);
    state.textContent = subscription ? "On for this device: mentions, replies and messages reach you when Vonix is closed."
      : "Off for this device.";
    toggle.textContent = subscription ? "Turn off on this device" : "Turn on push notifications";
    test.hidden = !subscription;
  }
  toggle.addEventListener("click", async () => {
    try { (await currentSubscription()) ? await disablePush() : await enablePush(); } catch (e) { toast(e.message); }
    refresh();
  });
  test.addEventListener("click", async () => {
    try { const r = await post("/api/push/test"); toast(r.sent ? "Test notification sent." : "No device accepted it."); } catch (e) { toast(e.message); }
  });
  await refresh();
  return section("Notifications", state, h("div", { class: "row" }, toggle, test));
}

async function sessionsSection() {
  const list = h("ul", { class: "list" });
  async function load() {
    const { sessions } = await get("/api/auth/sessions");
    list.replaceChildren(...sessions.map((s) => h("li", { class: "item" }, h("span", { class: "grow" },
      h("span", { class: "title" }, s.device || "Unknown device", s.current ? " (this device)" : ""),
      h("span", { class: "sub" }, `${s.ip || "?"} · since `, when(s.created_at), " · active ", when(s.last_active_at),
        s.mfa ? " · 2FA" : "")),
    s.current ? null : h("button", { class: "btn danger", type: "button", "aria-label": `Sign out ${s.device || "session"}`,
      onclick: async () => { await del(`/api/auth/sessions/${s.id}`); load(); } }, "Sign out"))));
  }
  const others = h("button", { class: "btn secondary", type: "button" }, "Sign out all other sessions");
  others.addEventListener("click", async () => {
    const { revoked } = await del("/api/auth/sessions");
    toast(`${revoked} session${revoked === 1 ? "" : "s"} signed out.`);
    load();
  });
  try { await load(); } catch (e) { list.replaceChildren(h("li", { class: "error" }, e.message)); }
  return section("Sessions", list, others);
}

function mfaSection() {
  const body = h("div", { class: "stack" });
  const me = session.me;
  function off() {
    const start = h("button", { class: "btn", type: "button" }, "Set up two-factor authentication");
    start.addEventListener("click", async () => {
      try {
        const enrol = await post("/api/auth/2fa/enroll");
        const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", required: true, minlength: 6, maxlength: 8 });
        const form = h("form", { class: "stack" },
          h("img", { class: "qr", alt: "QR code for your authenticator app", src: `data:image/svg+xml;base64,${btoa(enrol.qr_svg)}` }),
          h("p", {}, "Or enter this key: ", h("code", {}, enrol.secret)),
          field("Code from the app", code), h("button", { class: "btn", type: "submit" }, "Turn on"));
        form.addEventListener("submit", async (event) => {
          event.preventDefault();
          try {
            const { recovery_codes: codes } = await post("/api/auth/2fa/confirm", { code: code.value });
            me.mfa_enabled = true;
            body.replaceChildren(h("p", { role: "status" }, "Two-factor authentication is on. Keep these recovery codes somewhere safe; each works once:"),
              h("div", { class: "codes" }, codes.map((c) => h("code", {}, c))));
          } catch (e) { toast(e.message); }
        });
        body.replaceChildren(form);
      } catch (e) { toast(e.message); }
    });
    body.replaceChildren(h("p", {}, "Status: off."), start);
  }
  function on() {
    const password = h("input", { type: "password", autocomplete: "current-password", required: true });
    const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", required: true });
    const form = h("form", { class: "stack" }, field("Password", password), field("Code", code),
      h("button", { class: "btn danger", type: "submit" }, "Turn off two-factor authentication"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try { await post("/api/auth/2fa/disable", { password: password.value, code: code.value }); me.mfa_enabled = false; off(); }
      catch (e) { toast(e.message); }
    });
    body.replaceChildren(h("p", {}, "Status: on ✓"), form);
  }
  me && me.mfa_enabled ? on() : off();
  return section("Two-factor authentication", body);
}

export async function settingsView() {
  const me = session.me || {};
  const out = h("button", { class: "btn danger", type: "button" }, "Sign out");
  out.addEventListener("click", async () => { await signOut(); navigate("/signin", { replace: true }); });
  const page = h("section", {}, h("h1", {}, "Settings"),
    section("Account", h("p", {}, `Signed in as ${me.username || "?"}`, me.email ? ` (${me.email})` : ""), out));
  mount(page);
  page.append(await pushSection(), mfaSection(), await sessionsSection());
}
