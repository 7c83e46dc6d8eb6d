// Sending messages: every message goes to the IndexedDB outbox first (with its client id, the
// nonce), shows as pending, then leaves over the websocket when connected; otherwise a Background
// Sync (tag "outbox") lets the service worker send it through the REST fallback, even with the
// page closed. Whichever path runs first wins; the nonce makes the other a no-op.

import { csrfToken } from "./api.js";
import * as outbox from "./outbox.js";
import { bus, live } from "./session.js";

let flushing = false;
let again = false; // a message was queued while a flush ran: run once more

export async function send(channel, data) {
  const cid = outbox.newCid();
  const item = { cid, channel, data: { ...data, cid }, csrf: csrfToken(), created: Date.now() };
  await outbox.put(item);
  bus.dispatchEvent(new CustomEvent("outbox-added", { detail: item }));
  if (live.connected) flush();
  else requestSync();
  return item;
}

export async function requestSync() {
  try {
    const registration = await navigator.serviceWorker?.ready;
    if (registration && registration.sync) await registration.sync.register("outbox");
  } catch {
    // No Background Sync here: the reconnect flush sends it.
  }
}

// Why the server refused a message, in words: its message and each field's reason.
function refusal(error) {
  const reasons = (error.details || []).map((d) => d.message).filter(Boolean);
  return reasons.length ? reasons.join("; ") : error.message;
}

// Refusals that will not pass by retrying soon: muted in the room (`forbidden`, temporary, until a
// time the message gives) and a room's slow mode (`rate_limited` naming it). The message leaves the
// outbox — no retry loop for minutes or hours — and goes back to its author's message box: the
// open conversation hears "outbox-failed" with `returned: true`; a closed one finds it kept under
// RETURNED_KEY(channel) when it opens.
export const RETURNED_KEY = (channel) => `vonix:returned:${channel}`;

function returned(error) {
  return (error.code === "forbidden" && error.temporary)
    || (error.code === "rate_limited" && /slow mode/i.test(error.message || ""));
}

function keepReturned(item, error) {
  try {
    const kept = JSON.parse(localStorage.getItem(RETURNED_KEY(item.channel)) || "[]");
    kept.push({ cid: item.cid, data: item.data, error: { code: error.code, message: error.message,
      temporary: error.temporary, retry_after: error.retry_after } });
    localStorage.setItem(RETURNED_KEY(item.channel), JSON.stringify(kept.slice(-20)));
  } catch { /* storage full: the open conversation still gets the event */ }
}

let paceTimer = null;

export async function flush() {
  if (!live.connected) return;
  if (flushing) { again = true; return; }
  flushing = true;
  let paced = false;
  try {
    again = false;
    for (const item of await outbox.all()) {
      if (!live.connected) break;
      try {
        const reply = await live.publish(item.channel, item.data, item.cid);
        await outbox.remove(item.cid);
        bus.dispatchEvent(new CustomEvent("outbox-sent", { detail: { cid: item.cid, channel: item.channel,
          offset: reply.offset } }));
      } catch (error) {
        if (returned(error)) {
          await outbox.remove(item.cid);
          keepReturned(item, error);
          bus.dispatchEvent(new CustomEvent("outbox-failed", { detail: { cid: item.cid, channel: item.channel,
            error: refusal(error), code: error.code, returned: true, data: item.data,
            refusal: { code: error.code, message: error.message, temporary: error.temporary,
              retry_after: error.retry_after } } }));
          continue;
        }
        if (error.code === "rate_limited") {
          // Sending faster than the server takes: wait as long as it says, then carry on.
          clearTimeout(paceTimer);
          paceTimer = setTimeout(flush, Math.max(100, (error.retry_after || 1) * 1000));
          paced = true;
          break;
        }
        if (error.temporary || !error.code) break; // try again on the next connect
        await outbox.remove(item.cid);
        bus.dispatchEvent(new CustomEvent("outbox-failed", { detail: { cid: item.cid, channel: item.channel,
          error: refusal(error), code: error.code } }));
      }
    }
  } finally {
    flushing = false;
  }
  if (again && !paced && live.connected) flush();
}

live.addEventListener("state", (event) => { if (event.detail.state === "connected") flush(); });

navigator.serviceWorker?.addEventListener("message", (event) => {
  const data = event.data || {};
  if (data.type === "outbox-sent") for (const sent of data.sent) bus.dispatchEvent(new CustomEvent("outbox-sent", { detail: sent }));
  if (data.type === "outbox-failed") for (const failed of data.refused) bus.dispatchEvent(new CustomEvent("outbox-failed", { detail: failed }));
});
