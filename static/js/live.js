// One websocket per tab (protocol v1, docs/protocol.md): requests by id, pushes as events,
// reconnect with exponential backoff and jitter, resubscribe with `since` so nothing is missed or
// doubled, and a connection state the page shows.
//
// Events: "state" {state}, "message" {channel, frame}, "typing"/"presence_diff" {channel, frame},
// "reset" {channel} (the gap could not be recovered: reload history), "subscribed" {channel, reply},
// "localread" {channel, offset} (this tab read up to offset), "signedout", "removed" {channel, frame}
// (a moderator kicked or banned this member from a room: the channel is dropped and never
// resubscribed by itself), "refused" {channel, error} (a subscription the server will not give).
//
// Several parts of the page may follow one channel (the open conversation and the unread store):
// each subscribes as a `holder`; the socket unsubscribes when the last holder lets go.
//
// Guests (docs/protocol.md, "Guests"): signed out, the socket opens without a session only to
// follow public `status:` channels (the home page's live server status). Subscribing one while
// stopped starts guest mode; the socket opens while a public channel is followed and closes when
// none is; it reconnects and recovers with `since` like any connection. `start()` (sign-in) drops
// the guest socket and opens the signed-in one, which resubscribes what the guest followed.
//
// Read markers travel on the socket (`read` op), coalesced: at most one per channel per second,
// flushed at once when a view is left or the tab is hidden. A busy room used to cost one HTTP
// request per message received, which exhausted the API budget.

import { refreshSession } from "./api.js";

const BASE_DELAY = 500;
const MAX_DELAY = 10000;
const NO_RECONNECT = new Set([4003, 4004, 4005, 4009]);
const REAUTH = new Set([4001, 4002, 4100]);
const READ_EVERY_MS = 1000;
const isPublic = (channel) => channel.startsWith("status:");

export class Live extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.state = "idle";
    this.nextId = 1;
    this.pending = new Map();
    this.channels = new Map(); // channel -> {since: {offset, epoch} | null, holders: Set, subscribed: bool}
    this.reads = new Map(); // channel -> {pending, sent, lastAt, timer}
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.guest = false;
    this.guestTimer = null;
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.dropForOffline());
    document.addEventListener("visibilitychange", () => { if (document.hidden) this.flushReads(); });
    window.addEventListener("pagehide", () => this.flushReads());
  }

  get connected() { return this.state === "connected"; }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  start() {
    if (this.guest) this.dropGuest();
    this.stopped = false;
    this.connect();
  }

  // Signed out: follow the public channels held (others are forgotten), over a socket without a session.
  startGuest() {
    this.guest = true;
    this.stopped = false;
    for (const channel of [...this.channels.keys()]) if (!isPublic(channel)) this.channels.delete(channel);
    for (const entry of this.reads.values()) clearTimeout(entry.timer);
    this.reads.clear();
    this.attempt = 0;
    this.connect();
  }

  // Signing in: the guest socket goes; what it followed is subscribed again, with `since`, on the new one.
  dropGuest() {
    this.guest = false;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "signed in");
    for (const state of this.channels.values()) { state.subscribed = false; state.asking = false; }
    for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
    this.pending.clear();
    this.attempt = 0;
  }

  stop() {
    this.stopped = true;
    this.guest = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this.channels.clear();
    for (const entry of this.reads.values()) clearTimeout(entry.timer);
    this.reads.clear();
    this.setState("idle");
  }

  reconnectNow() {
    if (this.stopped || (this.ws && this.ws.readyState <= 1)) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  dropForOffline() {
    if (this.stopped) return;
    this.setState("offline");
    if (this.ws) this.ws.close(4000, "offline");
  }

  connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    if (!navigator.onLine) { this.setState("offline"); return; }
    if (this.guest && !this.channels.size) { this.setState("idle"); return; } // nothing to follow yet
    this.setState(this.attempt === 0 && this.state !== "reconnecting" ? "connecting" : "reconnecting");
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setState("connected");
      this.subscribeMany([...this.channels.keys()]); // one batch frame, not one per channel
      this.flushReads();
    };
    ws.onmessage = (event) => {
      for (const line of String(event.data).split("\n")) {
        if (line) this.onFrame(JSON.parse(line));
      }
    };
    ws.onclose = (event) => this.onClose(ws, event.code);
  }

  async onClose(ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    for (const state of this.channels.values()) { state.subscribed = false; state.asking = false; }
    for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
    this.pending.clear();
    if (this.stopped) return;
    if (!navigator.onLine) { this.setState("offline"); return; }
    if (this.guest) {
      // No session to refresh: a guest refused (a stale cookie, a foreign origin) stays closed.
      if (NO_RECONNECT.has(code) || code === 4001) { this.setState("closed"); return; }
      if (!this.channels.size) { this.setState("idle"); return; }
      this.setState("reconnecting");
      this.schedule(code === 1012 ? 0 : undefined);
      return;
    }
    if (NO_RECONNECT.has(code)) {
      this.setState("closed");
      if (code === 4003) {
        this.stopped = true; // signed out: a public page may follow its status channels as a guest
        this.dispatchEvent(new CustomEvent("signedout"));
      }
      return;
    }
    this.setState("reconnecting");
    if (REAUTH.has(code) && !(await refreshSession())) {
      this.stopped = true;
      this.dispatchEvent(new CustomEvent("signedout"));
      return;
    }
    this.schedule(code === 1012 ? 0 : undefined);
  }

  schedule(delay) {
    // Exponential backoff with "equal jitter": half fixed, half random, so a restart's clients spread out.
    const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    const wait = delay ?? ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), wait);
  }

  onFrame(frame) {
    if (frame.id !== undefined && frame.id !== null && this.pending.has(frame.id)) {
      const { resolve, reject, onReply } = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      // onReply runs now, before the live frames that follow the reply in this same websocket frame
      // (a promise would resolve only after them): recovered messages come before live ones.
      if (frame.ok && onReply) onReply(frame);
      if (frame.ok) resolve(frame);
      else reject(Object.assign(new Error(frame.error.message), frame.error));
      return;
    }
    if (!frame.op) return;
    if (frame.op === "message") this.deliver(frame);
    else if (frame.op === "removed") this.removed(frame);
    else this.dispatchEvent(new CustomEvent(frame.op, { detail: { channel: frame.channel, frame } }));
  }

  deliver(frame) {
    const state = this.channels.get(frame.channel);
    if (!state) return;
    if (state.since && frame.epoch === state.since.epoch && frame.offset <= state.since.offset) return; // seen
    state.since = { offset: frame.offset, epoch: frame.epoch };
    this.dispatchEvent(new CustomEvent("message", { detail: { channel: frame.channel, frame } }));
  }

  // Kicked or banned from a room (docs/protocol.md, "Pushes"): the server has unsubscribed every
  // connection of this member from it. Forget the channel for every holder, so neither a reconnect
  // nor a read marker asks for it again; whoever shows it hears "removed".
  removed(frame) {
    const { channel } = frame;
    if (!channel) return;
    this.channels.delete(channel);
    const read = this.reads.get(channel);
    if (read) { clearTimeout(read.timer); this.reads.delete(channel); }
    this.dispatchEvent(new CustomEvent("removed", { detail: { channel, frame } }));
  }

  request(op, fields = {}, timeout = 10000, onReply = null) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error("timed out")); }, timeout);
      this.pending.set(id, {
        resolve: (value) => { clearTimeout(timer); resolve(value); },
        reject: (error) => { clearTimeout(timer); reject(error); },
        onReply,
      });
      this.ws.send(JSON.stringify({ id, op, ...fields }));
    });
  }

  // Follow a channel from `since` ({offset, epoch} of the last message the caller has), or from now.
  // A channel another holder already follows keeps its position (its messages reach every listener).
  subscribe(channel, since = null, holder = "view") {
    const state = this.channels.get(channel);
    if (!state) {
      if (this.guest && !isPublic(channel)) return; // a guest follows public channels only
      this.channels.set(channel, { since, holders: new Set([holder]), subscribed: false, asking: false, wanted: null });
      if (this.stopped && isPublic(channel)) this.startGuest();
      else if (this.guest && !this.ws) this.reconnectNow();
      else if (this.connected) this.sendSubscribe(channel);
      return;
    }
    state.holders.add(holder);
    // A holder that has the channel up to `since` joins one whose subscription is not confirmed
    // yet: start from the older of the two positions, so nothing in between goes missing.
    if (!since || state.subscribed) return;
    if (state.asking) state.wanted = since;
    else if (!state.since || (state.since.epoch === since.epoch && since.offset < state.since.offset)) state.since = since;
  }

  unsubscribe(channel, holder = "view") {
    const state = this.channels.get(channel);
    if (!state) return;
    state.holders.delete(holder);
    if (state.holders.size) return;
    this.channels.delete(channel);
    if (this.connected) this.request("unsubscribe", { channel }).catch(() => {});
    // A guest following nothing public closes its socket, a moment later: the next screen may follow again.
    if (this.guest && !this.channels.size) {
      clearTimeout(this.guestTimer);
      this.guestTimer = setTimeout(() => this.closeIdleGuest(), 1000);
    }
  }

  closeIdleGuest() {
    if (!this.guest || this.channels.size) return;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "bye");
    if (this.state !== "offline") this.setState("idle");
  }

  // True once the server confirmed the subscription on the current connection.
  isSubscribed(channel) {
    return Boolean(this.channels.get(channel)?.subscribed);
  }

  // The last position this tab has of a channel ({offset, epoch}), or null.
  position(channel) {
    return this.channels.get(channel)?.since ?? null;
  }

  holds(channel, holder) {
    return Boolean(this.channels.get(channel)?.holders.has(holder));
  }

  sendSubscribe(channel) {
    this.subscribeMany([channel]);
  }

  // Subscribe channels in batch frames of up to 100 (after a reconnect: every channel in one op).
  subscribeMany(channels) {
    for (let i = 0; i < channels.length; i += 100) this.sendBatch(channels.slice(i, i + 100));
  }

  async sendBatch(channels) {
    const asked = new Map(); // channel -> {state, since}
    for (const channel of channels) {
      const state = this.channels.get(channel);
      if (!state || state.asking) continue;
      state.asking = true;
      asked.set(channel, { state, since: state.since });
    }
    if (!asked.size) return;
    const items = [...asked].map(([channel, { since }]) => (since ? { channel, since } : channel));
    const onReply = (reply) => {
      for (const result of reply.results) {
        const entry = asked.get(result.channel);
        if (!entry) continue;
        entry.state.asking = false;
        if (result.ok) this.subscribed(result.channel, entry.state, entry.since, result);
        else this.refused(result.channel, entry.state, result.error);
      }
    };
    try {
      await this.request("subscribe", { channels: items }, 10000, onReply);
    } catch (error) {
      for (const [channel, { state }] of asked) {
        if (!state.asking) continue; // answered
        state.asking = false;
        this.refused(channel, state, { temporary: true, code: error.code });
      }
    }
  }

  subscribed(channel, state, since, reply) {
    const wanted = state.wanted;
    state.wanted = null;
    if (wanted && (wanted.epoch !== reply.epoch || wanted.offset < (since?.offset ?? reply.offset))) {
      // A holder joined while this subscription was asked from a later point: it missed some.
      state.since = { offset: reply.offset, epoch: reply.epoch };
      this.dispatchEvent(new CustomEvent("reset", { detail: { channel } })); // its holders reload
    } else if (since && !reply.recovered) {
      state.since = { offset: reply.offset, epoch: reply.epoch };
      this.dispatchEvent(new CustomEvent("reset", { detail: { channel } }));
    } else {
      for (const frame of reply.missed || []) this.deliver(frame);
      if (!state.since || state.since.offset < reply.offset || state.since.epoch !== reply.epoch) {
        state.since = { offset: Math.max(reply.offset, state.since?.offset ?? 0), epoch: reply.epoch };
      }
    }
    if (this.channels.get(channel) === state) state.subscribed = true;
    this.dispatchEvent(new CustomEvent("subscribed", { detail: { channel, reply } }));
  }

  refused(channel, state, error) {
    if (error.code === "already_subscribed") { state.subscribed = true; return; }
    if (error.temporary) setTimeout(() => this.channels.has(channel) && this.connected && this.sendSubscribe(channel), 2000);
    else if (error.code) this.dispatchEvent(new CustomEvent("refused", { detail: { channel, error } }));
  }

  // This tab has seen `channel` up to `offset`: tell the server, at most once a second per channel.
  read(channel, offset) {
    if (!Number.isInteger(offset) || offset < 1) return;
    let entry = this.reads.get(channel);
    if (!entry) { entry = { pending: 0, sent: 0, lastAt: 0, timer: null }; this.reads.set(channel, entry); }
    if (offset <= entry.pending || offset <= entry.sent) return;
    entry.pending = offset;
    this.dispatchEvent(new CustomEvent("localread", { detail: { channel, offset } }));
    if (entry.timer) return;
    const wait = entry.lastAt + READ_EVERY_MS - Date.now();
    if (wait <= 0) this.sendRead(channel);
    else entry.timer = setTimeout(() => this.sendRead(channel), wait);
  }

  // Send what is waiting now (leaving a conversation, hiding the tab, a new connection).
  flushReads(channel = null) {
    for (const [name, entry] of this.reads) {
      if ((channel === null || name === channel) && entry.pending > entry.sent) this.sendRead(name);
    }
  }

  sendRead(channel) {
    const entry = this.reads.get(channel);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.timer = null;
    if (entry.pending <= entry.sent || !this.connected) return; // sent when the socket is back
    const offset = entry.pending;
    const before = entry.sent;
    entry.sent = offset;
    entry.lastAt = Date.now();
    this.request("read", { channel, offset }).catch((error) => {
      if (!error.temporary && error.code) return; // not a member any more, say: nothing to retry
      if (entry.sent === offset) entry.sent = before;
      if (this.reads.get(channel) === entry && !entry.timer) {
        entry.timer = setTimeout(() => this.sendRead(channel), Math.max(READ_EVERY_MS, (error.retry_after || 0) * 1000));
      }
    });
  }

  publish(channel, data, nonce) {
    return this.request("publish", { channel, data, nonce });
  }

  typing(channel) {
    return this.request("typing", { channel }).catch(() => {});
  }

  presence(channel) {
    return this.request("presence", { channel });
  }
}
