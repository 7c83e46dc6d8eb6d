// Tiny DOM helpers: no framework, no innerHTML with data (text only), so no XSS and no inline script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function mount(view) {
  const main = document.getElementById("main");
  main.replaceChildren(view);
  return main;
}

export function toast(text, ms = 3500) {
  const el = document.getElementById("toast");
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, ms);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });

export function when(value) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  const today = new Date().toDateString() === date.toDateString();
  return h("time", { datetime: date.toISOString() }, today ? timeFormat.format(date) : dayFormat.format(date));
}

// A member's picture: their upload (or Minecraft head) when the server gave one (`avatar.small` /
// `avatar.large`), else the generated initial.
export function avatar(user, { large = false, alt = "" } = {}) {
  const name = (user && user.username) || "?";
  const urls = user && user.avatar;
  const src = (urls && (large ? urls.large || urls.small : urls.small || urls.large))
    || `/avatars/${encodeURIComponent(name)}.svg`;
  const px = large ? 96 : 36;
  return h("img", { class: large ? "avatar avatar-lg" : "avatar", src, alt, width: px, height: px, loading: "lazy" });
}

// Where a member's profile lives.
export function profilePath(username) {
  return `/u/${encodeURIComponent(username)}`;
}

// Message text with @mentions emphasised (in bold and colour: readable without colour alone).
export function richText(text, me) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/(^|[^A-Za-z0-9_@])@([A-Za-z0-9_]{3,32})/g)) {
    const start = match.index + match[1].length;
    parts.push(text.slice(last, start));
    const strong = h("strong", { class: "mention" }, `@${match[2]}`);
    if (me && match[2].toLowerCase() === me.toLowerCase()) strong.setAttribute("aria-label", `@${match[2]} (you)`);
    parts.push(strong);
    last = start + match[2].length + 1;
  }
  parts.push(text.slice(last));
  return parts;
}

export function field(label, input, hint) {
  return h("label", {}, label, hint ? h("span", { class: "hint" }, hint) : null, input);
}

// "just now", "5 min ago", "3 h ago", "2 days ago": how long since a moment, for "last seen".
export function ago(value, now = Date.now()) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 60) return "just now";
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  return `${days} day${days === 1 ? "" : "s"} ago`;
}
