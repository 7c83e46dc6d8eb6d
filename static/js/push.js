// Web push on this device: ask permission, subscribe with the server's VAPID key, register it.

import { del, post } from "./api.js";
import { session } from "./session.js";

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function withTimeout(promise, ms, message) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(message)), ms))]);
}

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

export async function currentSubscription() {
  if (!pushSupported()) return null;
  const registration = await navigator.serviceWorker.ready;
  return registration.pushManager.getSubscription();
}

export async function enablePush() {
  const config = session.config && session.config.push;
  if (!config || !config.enabled) throw new Error("Push notifications are not set up on this server.");
  if ((await Notification.requestPermission()) !== "granted") throw new Error("Notifications are blocked for this site.");
  const registration = await navigator.serviceWorker.ready;
  // subscribe() can hang without a reachable push service: give up after a while instead.
  const subscription = await withTimeout(registration.pushManager.subscribe({
    userVisibleOnly: true, applicationServerKey: keyBytes(config.public_key) }), 15000,
  "The browser's push service did not answer.");
  const json = subscription.toJSON();
  await post("/api/push/subscriptions", { endpoint: json.endpoint, keys: json.keys });
  return subscription;
}

export async function disablePush() {
  const subscription = await currentSubscription();
  if (!subscription) return;
  await del("/api/push/subscriptions", { endpoint: subscription.endpoint }).catch(() => {});
  await subscription.unsubscribe();
}
