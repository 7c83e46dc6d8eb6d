// Shows /api/health on the landing page; the full client replaces this page (PWA issue).
const statusEl = document.getElementById("status");
const list = document.getElementById("components");

async function refresh() {
  try {
    const response = await fetch("/api/health", { headers: { accept: "application/json" } });
    const body = await response.json();
    statusEl.textContent = `Server ${body.status} · version ${body.version}`;
    list.replaceChildren(
      ...Object.entries(body.components).map(([name, component]) => {
        const item = document.createElement("li");
        item.className = component.status === "down" ? "down" : "ok";
        item.textContent = `${name}: ${component.status}`;
        return item;
      }),
    );
  } catch {
    statusEl.textContent = "Server unreachable";
  }
}

refresh();
setInterval(refresh, 10000);
