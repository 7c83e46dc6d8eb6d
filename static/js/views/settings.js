// Settings: your profile (edited on /settings/profile), push notifications on this device, sessions,
// two-factor authentication, sign out.

import { del, errorText, get, post } from "../api.js";
import { ago, avatar, field, h, mount, profilePath, toast, when } from "../dom.js";
import { currentSubscription, disablePush, enablePush, pushSupported } from "../push.js";
import { navigate } from "../router.js";
import { session, signOut } from "../session.js";
import { passkeysSection } from "./passkeys.js";

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

// "Chrome on Android": the browser and system a session signed in from.
export function deviceName(s) {
  const browser = (s.browser || "").replace(/\s+[\d.]+$/, "");
  const os = (s.os || "").replace(/\s+[\d.]+$/, "");
  if (browser && os) return `${browser} on ${os}`;
  return s.device || browser || os || "Unknown device";
}

function sessionRow(s, reload) {
  const name = deviceName(s);
  const seen = s.current ? "active now" : s.last_active_at ? `last seen ${ago(s.last_active_at)}` : "";
  const detail = [s.browser, s.os].filter(Boolean).join(", ");
  return h("li", { class: "item", "data-session": s.id, "data-current": s.current ? "true" : null },
    h("span", { class: "grow" },
      h("span", { class: "title" }, [name, seen].filter(Boolean).join(" · "),
        s.current ? h("span", { class: "badge" }, "this device") : null),
      h("span", { class: "sub" }, [detail, s.ip].filter(Boolean).join(" · "), detail || s.ip ? " · " : "",
        "signed in ", when(s.created_at), s.mfa ? " · 2FA" : "")),
    s.current ? null : h("button", { class: "btn danger", type: "button", "aria-label": `Sign out ${name}`,
      onclick: async () => {
        try { await del(`/api/auth/sessions/${s.id}`); } catch (e) { toast(errorText(e)); }
        reload();
      } }, "Sign out"));
}

async function sessionsSection() {
  const list = h("ul", { class: "list", "aria-label": "Sessions" });
  async function load() {
    const { sessions } = await get("/api/auth/sessions");
    // This device first, then the most recently active.
    sessions.sort((a, b) => (b.current - a.current) || String(b.last_active_at).localeCompare(String(a.last_active_at)));
    list.replaceChildren(...sessions.map((s) => sessionRow(s, () => load().catch(() => {}))));
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

// The server's reason, where the member is looking (not only a passing toast).
function errorLine() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

function showError(line, error) {
  line.hidden = false;
  line.textContent = errorText(error);
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
        const error = errorLine();
        const form = h("form", { class: "stack" },
          h("img", { class: "qr", alt: "QR code for your authenticator app", src: `data:image/svg+xml;base64,${btoa(enrol.qr_svg)}` }),
          h("p", {}, "Or enter this key: ", h("code", {}, enrol.secret)),
          field("Code from the app", code), error, h("button", { class: "btn", type: "submit" }, "Turn on"));
        form.addEventListener("submit", async (event) => {
          event.preventDefault();
          error.hidden = true;
          try {
            const { recovery_codes: codes } = await post("/api/auth/2fa/confirm", { code: code.value });
            me.mfa_enabled = true;
            body.replaceChildren(h("p", { role: "status" }, "Two-factor authentication is on. Keep these recovery codes somewhere safe; each works once:"),
              h("div", { class: "codes" }, codes.map((c) => h("code", {}, c))));
          } catch (e) { showError(error, e); code.select(); }
        });
        body.replaceChildren(form);
      } catch (e) { toast(e.message); }
    });
    body.replaceChildren(h("p", {}, "Status: off."), start);
  }
  function on() {
    const password = h("input", { type: "password", autocomplete: "current-password", required: true });
    const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", required: true });
    const error = errorLine();
    const form = h("form", { class: "stack" }, field("Password", password), field("Code", code), error,
      h("button", { class: "btn danger", type: "submit" }, "Turn off two-factor authentication"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      try { await post("/api/auth/2fa/disable", { password: password.value, code: code.value }); me.mfa_enabled = false; off(); }
      catch (e) { showError(error, e); }
    });
    body.replaceChildren(h("p", {}, "Status: on ✓"), form);
  }
  me && me.mfa_enabled ? on() : off();
  return section("Two-factor authentication", body);
}

// A pending address: what the member typed, theirs once they open the link mailed to it. The
// server answers "accepted" to "send it again" whatever it does, so the text promises nothing more.
function emailPending() {
  const again = h("button", { type: "button", class: "btn secondary" }, "Send the link again");
  again.addEventListener("click", async () => {
    again.disabled = true;
    try {
      await post("/api/auth/email/resend");
      toast("If this address can still be confirmed, a new link is on its way.", 8000);
    } catch (e) { toast(errorText(e)); again.disabled = false; }
  });
  return h("div", { class: "stack", "data-email-pending": "" },
    h("p", { class: "muted" }, "Email not confirmed yet: open the link we mailed to it. Until then, sign in with your username."),
    h("p", {}, again));
}

export async function settingsView() {
  const me = session.me || {};
  const out = h("button", { class: "btn danger", type: "button" }, "Sign out");
  out.addEventListener("click", async () => { await signOut(); navigate("/signin", { replace: true }); });
  // The picture's URLs are in the profile (GET /api/users/me), not in the signed-in copy.
  const picture = h("span", { class: "avatar-edit" }, avatar(me.avatar ? me : { username: me.username }));
  const name = h("strong", {}, me.display_name || me.username || "?");
  get("/api/users/me").then((mine) => {
    picture.replaceChildren(avatar(mine));
    name.textContent = mine.display_name || mine.username;
  }).catch(() => { /* offline: the initial and the name kept on this device */ });
  const profile = section("Profile", h("div", { class: "avatar-row" }, picture,
    h("p", { class: "grow" }, name, me.username ? ` @${me.username}` : "")),
  h("div", { class: "row" }, h("a", { class: "btn", href: "/settings/profile", "data-link": true }, "Edit profile"),
    me.username ? h("a", { class: "btn secondary", href: profilePath(me.username), "data-link": true }, "View profile") : null));
  const minecraft = section("Minecraft", h("p", {}, "Link your Minecraft account with a code from the game."),
    h("a", { class: "btn secondary", href: "/settings/minecraft", "data-link": true }, "Minecraft account"));
  const page = h("section", {}, h("h1", {}, "Settings"), profile, minecraft,
    section("Account", h("p", {}, `Signed in as ${me.username || "?"}`, me.email ? ` (${me.email})` : ""),
      // A pending address: what the member typed, not theirs until the mailed link is opened.
      me.email && !me.email_verified ? emailPending() : null, out));
  mount(page);
  page.append(await pushSection(), mfaSection(), await passkeysSection(), await sessionsSection());
}
