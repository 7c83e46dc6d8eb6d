// History-API router: client routes map to view functions; links marked data-link stay in the app.

const routes = [];
let leaving = [];

// Where a signed-in member lands (sign-in, "/", the logo): what is new in the community.
export const HOME = "/community";

export function route(pattern, view, { auth = true } = {}) {
  const keys = [];
  const regex = new RegExp("^" + pattern.replace(/:(\w+)/g, (_, key) => { keys.push(key); return "([^/]+)"; }) + "/?$");
  routes.push({ regex, keys, view, auth });
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", path);
  else history.pushState({}, "", path);
  render();
}

let generation = 0;

export async function render() {
  for (const fn of leaving) { try { fn(); } catch { /* a view's clean-up must not stop the next */ } }
  leaving = [];
  const mine = ++generation;
  const path = location.pathname;
  for (const { regex, keys, view, auth } of routes) {
    const match = path.match(regex);
    if (!match) continue;
    const params = Object.fromEntries(keys.map((key, i) => [key, decodeURIComponent(match[i + 1])]));
    // A view that awaits before it mounts checks `current()` after the wait: another navigation
    // may have replaced it meanwhile, and a stale view must not mount over the new one.
    const ctx = { params, query: new URLSearchParams(location.search), hash: location.hash.slice(1), auth,
      onLeave: (fn) => leaving.push(fn), current: () => mine === generation };
    await render.guard(ctx, view);
    return;
  }
  navigate("/rooms", { replace: true });
}
render.guard = async (ctx, view) => view(ctx);

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", () => render());
