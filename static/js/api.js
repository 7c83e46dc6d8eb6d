// REST calls in cookie mode: the session lives in HttpOnly cookies; state-changing calls carry the
// CSRF header from the readable vonix_csrf cookie. An expired access token is refreshed once.

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || `http_${status}`;
    this.details = error.details || [];
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)vonix_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

let refreshing = null;

export async function refreshSession() {
  refreshing ||= fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((response) => response.ok)
    .catch(() => false)
    .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  return refreshing;
}

export async function api(method, path, body, { retry = true } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) headers["x-csrf-token"] = csrfToken();
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && retry && !path.startsWith("/api/auth/login")) {
    if (await refreshSession()) return api(method, path, body, { retry: false });
  }
  const text = response.status === 204 ? "" : await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const del = (path, body) => api("DELETE", path, body);
