// The offline outbox in IndexedDB, shared by the page and the service worker (an ES module both import).
// Each item is one message written by this browser: {cid, channel, data, csrf, created, state}.
// `cid` (the client message id) is the publish nonce: sending it twice returns the first offset.

const DB_NAME = "vonix";
const STORE = "outbox";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const store = request.result.createObjectStore(STORE, { keyPath: "cid" });
      store.createIndex("created", "created");
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, work) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const result = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "c" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const put = (item) => run("readwrite", (store) => store.put(item));
export const remove = (cid) => run("readwrite", (store) => store.delete(cid));
export const get = (cid) => run("readonly", (store) => store.get(cid));

export async function all(channel) {
  const items = (await run("readonly", (store) => store.index("created").getAll())) || [];
  return channel ? items.filter((item) => item.channel === channel) : items;
}

export async function clear() {
  await run("readwrite", (store) => store.clear());
}

// Send every queued item through the REST fallback (the service worker's `sync` handler);
// `csrf` is an async function giving the current CSRF cookie.
// Returns [{cid, channel, offset}] sent and [{cid, channel, error}] refused; throws when the network
// or the server is down so the browser retries the sync later.
export async function flushOverHttp(csrf) {
  const sent = [];
  const refused = [];
  for (const item of await all()) {
    const post = async () => fetch(`/api/channels/${encodeURIComponent(item.channel)}/messages`, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": (await csrf()) || item.csrf || "" },
      body: JSON.stringify({ data: item.data, nonce: item.cid }),
    });
    let response = await post();
    if (response.status === 401) {
      const refreshed = await fetch("/api/auth/refresh", { method: "POST", credentials: "same-origin" });
      if (!refreshed.ok) throw new Error("signed out");
      response = await post();
    }
    if (response.status === 201) {
      const { offset } = await response.json();
      await remove(item.cid);
      sent.push({ cid: item.cid, channel: item.channel, offset });
    } else if (response.status === 429 || response.status >= 500) {
      throw new Error(`server answered ${response.status}`);
    } else {
      const body = await response.json().catch(() => ({}));
      if (body.error && body.error.code === "csrf_failed") throw new Error("csrf token out of date");
      await remove(item.cid);
      const reasons = ((body.error && body.error.details) || []).map((d) => d.message).filter(Boolean);
      const message = (body.error && body.error.message) || "";
      // Muted in the room: an open conversation puts the text back in its box (send.js does the same).
      const muted = response.status === 403 && /\bmuted\b/i.test(message);
      refused.push({ cid: item.cid, channel: item.channel, error: reasons.join("; ") || message || `${response.status}`,
        ...(muted ? { returned: true, data: item.data, refusal: { code: "forbidden", message, temporary: true } } : {}) });
    }
  }
  return { sent, refused };
}
