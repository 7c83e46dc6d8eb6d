// REST calls in cookie mode: the session lives in HttpOnly cookies; state-changing calls carry the
// CSRF header from the readable vonix_csrf cookie. An expired access token is refreshed once.
//
// A 429 is not an error the member should see: the call waits the server's `Retry-After` and tries
// again (reads always, writes at most twice), and `apiStatus` tells the page that the API is
// refusing for now, so the top bar says "Busy — retrying" instead of "Live".

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details || [];
  }
}

// The reason a request was refused, in words a member reads: the message plus each field's reason.
export function errorText(error) {
  const label = (field) => {
    const last = String(field || "").split(".").pop().replace(/_/g, " ");
    return last ? last[0].toUpperCase() + last.slice(1) : "";
  };
  const reasons = (error.details || []).filter((d) => d.message && d.message !== error.message)
    .map((d) => (d.field && !/^(body|__root__)$/.test(d.field) ? `${label(d.field)}: ${d.message}` : d.message));
  const main = error.message && !/[.!?]$/.test(error.message) && reasons.length ? `${error.message}.` : error.message;
  return [main, ...reasons].filter(Boolean).join(" ");
}

function cookie(name) {
  const match = document.cookie.match(new RegExp(`(?:^|;\\s*)${name}=([^;]+)`));
  return match ? decodeURIComponent(match[1]) : null;
}

export function csrfToken() {
  return cookie("vonix_csrf") || "";
}

// The readable `vonix_session` cookie holds the access token's expiry (unix seconds); no cookie
// means no session, so a signed-out start asks the server nothing (and logs no 401).
export function sessionExpiry() {
  const value = Number(cookie("vonix_session"));
  return cookie("vonix_session") !== null && Number.isFinite(value) ? value : null;
}

let refreshing = null;

// "ok", "refused" (the session is gone) or "offline" (the server could not be reached).
export async function refreshStatus() {
  refreshing ||= fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((response) => (response.ok ? "ok" : response.status === 429 || response.status >= 500 ? "offline" : "refused"))
    .catch(() => "offline")
    .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  return refreshing;
}

export async function refreshSession() {
  return (await refreshStatus()) === "ok";
}

// --- 429 handling -----------------------------------------------------------------------------
export const apiStatus = new EventTarget(); // "change" {limited, until}
const DEFAULT_WAIT = 2;
const MAX_WAIT = 60;
const WRITE_RETRIES = 2;
const READ_RETRIES = 20; // reads retry "always"; this only stops a server that never recovers
let limitedUntil = 0;
let waiting = 0;

export function apiLimited() {
  return waiting > 0 ? limitedUntil : 0;
}

function announce() {
  apiStatus.dispatchEvent(new CustomEvent("change", { detail: { limited: waiting > 0, until: limitedUntil } }));
}

function retryAfter(response) {
  const value = Number.parseFloat(response.headers.get("retry-after"));
  const seconds = Number.isFinite(value) && value >= 0 ? value : DEFAULT_WAIT;
  return Math.min(MAX_WAIT, Math.max(seconds, 0.25));
}

async function waitOut(seconds) {
  waiting += 1;
  limitedUntil = Math.max(limitedUntil, Date.now() + seconds * 1000);
  announce();
  try {
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  } finally {
    waiting -= 1;
  }
}

// `body` is sent as JSON, except a Blob (a picked File): its bytes go as they are, with its type.
export async function api(method, path, body, { retry = true, attempt = 0 } = {}) {
  const headers = { accept: "application/json" };
  const raw = typeof Blob !== "undefined" && body instanceof Blob;
  if (body !== undefined) headers["content-type"] = raw ? body.type || "application/octet-stream" : "application/json";
  const safe = ["GET", "HEAD"].includes(method);
  if (!safe) headers["x-csrf-token"] = csrfToken();
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  if (response.status === 429 && attempt < (safe ? READ_RETRIES : WRITE_RETRIES)) {
    await waitOut(retryAfter(response));
    return api(method, path, body, { retry, attempt: attempt + 1 });
  }
  if (waiting === 0 && limitedUntil) {
    limitedUntil = 0;
    announce(); // the API answers again (or this call gave up: its caller says so)
  }
  if (response.status === 401 && retry && !path.startsWith("/api/auth/login")) {
    if (await refreshSession()) return api(method, path, body, { retry: false });
  }
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path, body) => api("DELETE", path, body);
