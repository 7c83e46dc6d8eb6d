// Sign in (password, then a 2FA code when the account has it; Google and Discord), sign up,
// password reset and email verification.

import { api, errorText, post } from "../api.js";
import { field, h, mount, toast } from "../dom.js";
import { HOME, navigate } from "../router.js";
import { session, signedIn } from "../session.js";
import { passkeyMfaButton, passkeySignInButton } from "./passkeys.js";

function errorLine() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

// The server's own words: its message and each field's reason ("That code is not right. …").
function showError(el, error) {
  el.hidden = false;
  el.textContent = errorText(error);
}

function afterSignIn(user, query) {
  signedIn(user);
  const next = query.get("next");
  navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : HOME, { replace: true });
}

const OAUTH_ERRORS = { provider_error: "The sign-in provider refused or failed.", not_configured: "That sign-in is not set up.",
  // Only a provider-verified address reaches this (it is the member's own): an account made before
  // email confirmation existed claims it without having confirmed it.
  email_unverified_conflict: "An account that never confirmed this email address has it: sign in to it with its " +
    "password, then link the provider in Settings.",
  account_disabled: "That account is not active.", already_linked: "That provider account is linked to another account." };

export function signinView({ query, hash }) {
  const error = errorLine();
  const login = h("input", { name: "login", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const providers = (session.config && session.config.oauth) || {};
  const next = encodeURIComponent(query.get("next") || HOME);
  const oauthButton = (name, label) => providers[name]
    ? h("a", { class: "btn secondary", href: `/api/auth/oauth/${name}/login?next=${next}` }, label)
    : h("button", { type: "button", class: "btn secondary", disabled: true, title: "Not set up on this server" },
      `${label} (not set up)`);
  const form = h("form", { class: "stack", "aria-labelledby": "signin-title" },
    field("Username or email", login), field("Password", password), error,
    h("button", { class: "btn", type: "submit" }, "Sign in"));
  const card = h("section", { class: "card" },
    h("h1", { id: "signin-title" }, "Sign in to Vonix"), form,
    h("p", { class: "divider" }, "or"),
    h("div", { class: "oauth" }, passkeySignInButton(error, (body) => afterSignIn(body.user, query)),
      oauthButton("google", "Continue with Google"), oauthButton("discord", "Continue with Discord")),
    h("p", {}, "New here? ", h("a", { href: "/signup", "data-link": true }, "Create an account"), " · ",
      h("a", { href: "/reset-password", "data-link": true }, "Forgot your password?")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const body = await post("/api/auth/login", { login: login.value, password: password.value, mode: "cookie" });
      if (body.mfa_required) mfaStep(body.mfa_ticket, query);
      else afterSignIn(body.user, query);
    } catch (e) { showError(error, e); }
  });
  const oauthError = query.get("oauth_error");
  if (oauthError) showError(error, { message: OAUTH_ERRORS[oauthError] || `Sign-in failed (${oauthError}).` });
  const ticket = new URLSearchParams(hash).get("mfa_ticket");
  if (ticket) { history.replaceState({}, "", location.pathname + location.search); return mfaStep(ticket, query); }
  mount(h("div", { class: "narrow main-inner" }, card));
}

function mfaStep(ticket, query) {
  const error = errorLine();
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true,
    autofocus: true, minlength: 6, maxlength: 16 });
  const form = h("form", { class: "stack" },
    field("Code", code, "The 6-digit code from your authenticator app, or a recovery code."), error,
    h("button", { class: "btn", type: "submit" }, "Verify"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const body = await post("/api/auth/login/mfa", { mfa_ticket: ticket, code: code.value, mode: "cookie" });
      afterSignIn(body.user, query);
    } catch (e) { showError(error, e); }
  });
  mount(h("section", { class: "card narrow" }, h("h1", {}, "Two-factor authentication"), form,
    passkeyMfaButton(ticket, error, (body) => afterSignIn(body.user, query))));
  code.focus();
}

export function signupView({ query }) {
  const error = errorLine();
  const username = h("input", { name: "username", autocomplete: "username", required: true, pattern: "[A-Za-z0-9_]{3,32}" });
  const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true,
    minlength: 10 });
  // /signup?code=K7Q2XM: a code from the game (/link) links the new account to the Minecraft player.
  const given = (query.get("code") || "").trim();
  const code = given ? h("input", { name: "code", value: given, required: true, maxlength: 16, autocomplete: "off" }) : null;
  const player = h("p", { class: "muted", role: "status", hidden: true });
  if (code) {
    post("/api/minecraft/codes/check", { code: given }).then((found) => {
      if (!username.value && found.username) username.value = found.username;
      player.hidden = false;
      player.textContent = `This account will be linked to the Minecraft player ${found.name}.`;
    }).catch((e) => showError(error, e));
  }
  const form = h("form", { class: "stack" },
    code ? field("Code from the game", code) : null, player,
    field("Username", username, "3–32 letters, digits or _ (your Minecraft name works)"), field("Email", email),
    field("Password", password, "At least 10 characters; common passwords are refused."), error,
    h("button", { class: "btn", type: "submit" }, "Create account"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      if (code) await post("/api/minecraft/signup", { code: code.value.trim(), username: username.value, email: email.value, password: password.value });
      else await post("/api/auth/register", { username: username.value, email: email.value, password: password.value });
      // The address is only pending until its mailed link is opened (the same answer whether or not
      // it has an account elsewhere: then its owner gets a notice instead): sign in by username now.
      const body = await post("/api/auth/login", { login: username.value, password: password.value, mode: "cookie" });
      afterSignIn(body.user, query);
      toast(`Welcome! We sent a mail to ${email.value}: open its link to confirm your address.`, 12000);
    } catch (e) { showError(error, e); }
  });
  mount(h("section", { class: "card narrow" }, h("h1", {}, "Join Vonix"), form,
    h("p", {}, "Have an account? ", h("a", { href: "/signin", "data-link": true }, "Sign in"))));
}

export function resetView({ query }) {
  const error = errorLine();
  const token = query.get("token");
  const done = h("p", { role: "status" });
  if (!token) {
    const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email" });
    const form = h("form", { class: "stack" }, field("Email", email), error, done,
      h("button", { class: "btn", type: "submit" }, "Send reset link"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await post("/api/auth/password/forgot", { email: email.value });
        done.textContent = "If that address has an account, a reset link is on its way.";
      } catch (e) { showError(error, e); }
    });
    return mount(h("section", { class: "card narrow" }, h("h1", {}, "Reset your password"), form));
  }
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true });
  const form = h("form", { class: "stack" }, field("New password", password), error, done,
    h("button", { class: "btn", type: "submit" }, "Set password"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await post("/api/auth/password/reset", { token, password: password.value });
      done.replaceChildren("Password changed. ", h("a", { href: "/signin", "data-link": true }, "Sign in"));
    } catch (e) { showError(error, e); }
  });
  mount(h("section", { class: "card narrow" }, h("h1", {}, "Choose a new password"), form));
}

export async function verifyView({ query }) {
  const status = h("p", { role: "status" }, "Checking your link…");
  mount(h("section", { class: "card narrow" }, h("h1", {}, "Email verification"), status));
  try {
    await api("POST", "/api/auth/email/verify", { token: query.get("token") || "" });
    status.replaceChildren("Your email address is verified. ", h("a", { href: HOME, "data-link": true }, "Open Vonix"));
  } catch (e) {
    status.textContent = e.message;
    status.className = "error";
  }
}
