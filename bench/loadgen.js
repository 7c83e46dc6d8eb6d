// Load generator for bench/bench_fanout.py: websocket clients in one Node.js process, driven by
// JSON commands on stdin (one per line), answering one JSON line per command on stdout. No npm
// packages: a fresh machine needs only `node`.
//
// It is built to cost less CPU than the server it measures:
// - a minimal RFC 6455 client on `net` (handshake with Sec-WebSocket-Accept check, masked client
//   frames, ping/pong, close, fragments): frames are parsed straight out of one shared read buffer
//   (`onread`), with no stream machinery, no copying and no UTF-8 decoding;
// - frames are never JSON-parsed on the hot path: a client counts the `{"op":"message"` lines of a
//   frame (a byte test per line), reads the sequence number of the first message of each frame to
//   prove delivery is contiguous, and only sampled clients (every Nth) read each message's
//   publish timestamp for latency.
//
// Commands:
//   {"cmd":"connect", "urls":[..], "tokens":[..], "channels":[..], "group":G, "n":N, "concurrency":C,
//    "sample_every":K, "seq_key":"offset"|"seq"}
//      client i: urls[i % len], tokens[i % len], channels[floor(i / G) % len]; each connects with
//      `Authorization: Bearer <token>` on the upgrade and subscribes; -> {connected, failed, seconds}
//   {"cmd":"fanout", "urls", "token", "channel", "window", "rate", "publishers", "check_order",
//    "warmup", "seconds", "pids":{"server":[..], ..}}
//      `publishers` connections (spread over `urls`) publish in turn; rate null: closed loop, at
//      most `window` messages not yet received by every client; rate R: R messages/s.
//      -> deliveries/s in the measured window, latency, loss (and order errors when
//      `check_order`), CPU ticks of each pid group, of this process and of each core
//   {"cmd":"rooms", "rate", "warmup", "seconds", "pids":{..}}
//      every client publishes `rate` messages/s in its own channel (random phase).
//   {"cmd":"storm_connect", "url", "target", "tokens":[..], "rooms":[..], "per_client":3, "n", "concurrency",
//    "batch":true, "presence":null|bool, "track":true}
//      reconnect storm clients (bench/bench_storm.py, a separate client class: the fan-out path is
//      untouched). Client i: tokens[i % len], rooms[(i * per_client + k) % len] for k < per_client,
//      one batch subscribe (batch false: one per room); `track`: read offsets (false for a server
//      without them). A close later makes the client reconnect to `target` and resubscribe with
//      `since`. -> {connected, failed, seconds, errors}
//   {"cmd":"storm", "target", "rooms":[..], "publish_urls":[..], "publish_token", "publishers", "rate",
//    "before", "after", "kill_pid", "kill_signal", "jitter_ms", "handshake_timeout", "max_wait", "quiesce",
//    "pids":{name:[pid]}, "parents":{name:pid}}
//      publishers on publish_urls publish `rate` messages/s round robin over the rooms; after
//      `before` s, kill_signal (SIGTERM) to kill_pid; waits until every client is back (max_wait s), publishes
//      `after` s more, stops, waits until every client holds each room's last acknowledged offset
//      (quiesce s). -> all_back_seconds (null: not_back > 0 clients were not back within max_wait),
//      reconnect_ms {p50,p99,max} (every client back, late ones too), lost, duplicates,
//      not_recovered, retries, closes by code, CPU ticks from SIGTERM to the last client back
//      (`parents`: the pid's children too; `a`: kill_pid), listen_overflows
//   {"cmd":"cpu", "pids":{..}}  CPU ticks now;  {"cmd":"close"}  closes every client;
//   {"cmd":"exit"}
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const readline = require('readline');

const NL = 10;
const now = () => performance.timeOrigin + performance.now(); // ms, same clock as the publisher
// Where a message carries its send time: `"t":` in fan-out data; rooms are chat channels, whose
// data is only {"text"} (the chat message schema), so the time leads the text as `t:<seconds>`.
const T_KEYS = { fanout: Buffer.from('"t":'), rooms: Buffer.from('"text":"t:') };

const state = {
  clients: [],
  seqKey: Buffer.from('"offset":'),
  sampleEvery: 41, // prime: sampled clients spread over replicas and rooms
  mode: 'idle', // idle | fanout | rooms
  delivered: 0, // message lines received by all clients since the start
  samples: [],
  sampling: false,
  orderErrors: 0,
  checkOrder: true, // off when several publishers feed a server that assigns no sequence
  // closed-loop level tracking (fan-out): reached[k % RING] = clients that have >= k messages
  reached: new Int32Array(1 << 16),
  minLevel: 0,
  published: 0,
  closedClients: 0,
  onLevel: null,
};
const RING_MASK = (1 << 16) - 1;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function log(...args) {
  process.stderr.write('[loadgen] ' + args.join(' ') + '\n');
}

function cpuTicks(pid, sysOnly = false) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (sysOnly ? 0 : Number(fields[11])) + Number(fields[12]);
  } catch (e) {
    return 0;
  }
}

function coreTicks() {
  // per core: busy (everything but idle and iowait) and total ticks, from /proc/stat
  const out = {};
  try {
    for (const line of fs.readFileSync('/proc/stat', 'latin1').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const v = m[2].trim().split(/\s+/).map(Number);
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
      out[`core${m[1]}_busy`] = total - v[3] - v[4];
      out[`core${m[1]}_total`] = total;
      out[`core${m[1]}_softirq`] = v[6];
    }
  } catch (e) { /* not Linux */ }
  return out;
}

function cpuSnapshot(pids) {
  const snap = coreTicks();
  for (const [name, list] of Object.entries(pids || {})) {
    snap[name] = list.reduce((sum, pid) => sum + cpuTicks(pid), 0);
  }
  snap.loadgen = cpuTicks(process.pid);
  snap.loadgen_sys = cpuTicks(process.pid, true);
  return snap;
}

function cpuDelta(a, b) {
  const out = {};
  for (const name of Object.keys(b)) out[name] = b[name] - (a[name] || 0);
  return out;
}

function readNumber(buf, pos) {
  // an unsigned integer or decimal starting at pos (no JSON parse)
  let end = pos;
  while (end < buf.length) {
    const c = buf[end];
    if ((c >= 48 && c <= 57) || c === 46) end++;
    else break;
  }
  return Number(buf.toString('latin1', pos, end));
}

function readInt(buf, pos) {
  let value = 0;
  for (let i = pos; i < buf.length; i++) {
    const c = buf[i] - 48;
    if (c < 0 || c > 9) break;
    value = value * 10 + c;
  }
  return value;
}

function isMessageLine(buf, start) {
  // {"op":"message"  -> 'o' at +2, 'm' at +7 ; acks are {"id":..., presence {"op":"join"...
  return buf[start + 2] === 111 && buf[start + 7] === 109;
}


// --- a minimal websocket client --------------------------------------------------------------
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const READ_BUFFER = Buffer.allocUnsafe(1 << 18); // shared: every read is handled synchronously

function encodeFrame(opcode, payload) {
  const length = payload.length;
  const ext = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = Buffer.allocUnsafe(2 + ext + 4 + length);
  frame[0] = 0x80 | opcode;
  if (ext === 0) frame[1] = 0x80 | length;
  else if (ext === 2) { frame[1] = 0x80 | 126; frame.writeUInt16BE(length, 2); }
  else { frame[1] = 0x80 | 127; frame.writeBigUInt64BE(BigInt(length), 2); }
  const maskAt = 2 + ext;
  crypto.randomFillSync(frame, maskAt, 4);
  for (let i = 0; i < length; i++) frame[maskAt + 4 + i] = payload[i] ^ frame[maskAt + (i & 3)];
  return frame;
}

class RawWs {
  // handlers: onOpen(), onMessage(buf) (a view, valid only during the call), onClose(code, why)
  constructor(url, token, handlers) {
    const u = new URL(url);
    this.handlers = handlers;
    this.key = crypto.randomBytes(16).toString('base64');
    this.accept = crypto.createHash('sha1').update(this.key + WS_GUID).digest('base64');
    this.open = false;
    this.pending = null; // bytes of an incomplete frame (copied out of the shared buffer)
    this.fragments = null;
    this.closeCode = null;
    this.failure = null;
    this.socket = net.connect({
      host: u.hostname, port: Number(u.port), noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n, buf) => { this.onData(buf.subarray(0, n)); } },
    });
    this.socket.on('connect', () => {
      this.socket.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
                        `Connection: Upgrade\r\nSec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n` +
                        `Authorization: Bearer ${token}\r\n\r\n`);
    });
    this.socket.on('error', (err) => { this.failure = this.failure || String(err.message); });
    this.socket.on('close', () => {
      if (this.closeCode === null) this.closeCode = this.open ? 1006 : 0;
      this.handlers.onClose(this.closeCode, this.failure);
    });
  }

  onData(chunk) {
    let data = chunk;
    if (this.pending !== null) {
      data = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let pos = 0;
    if (!this.open) {
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) {
        this.pending = Buffer.from(data);
        return;
      }
      const head = data.toString('latin1', 0, end);
      if (!head.startsWith('HTTP/1.1 101') || !head.includes(this.accept)) {
        this.failure = head.split('\r\n')[0];
        this.socket.destroy();
        return;
      }
      this.open = true;
      pos = end + 4;
      this.handlers.onOpen();
    }
    const length = data.length;
    while (pos + 2 <= length) {
      const b0 = data[pos];
      const b1 = data[pos + 1];
      let size = b1 & 127;
      let header = 2;
      if (size === 126) {
        if (pos + 4 > length) break;
        size = data.readUInt16BE(pos + 2);
        header = 4;
      } else if (size === 127) {
        if (pos + 10 > length) break;
        size = Number(data.readBigUInt64BE(pos + 2));
        header = 10;
      }
      const masked = (b1 & 128) !== 0;
      if (masked) header += 4;
      if (pos + header + size > length) break;
      let payload = data.subarray(pos + header, pos + header + size);
      if (masked) { // servers never mask; unmask a copy anyway
        const key = data.subarray(pos + header - 4, pos + header);
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
      }
      pos += header + size;
      this.onFrame(b0, payload);
      if (this.socket.destroyed) return;
    }
    if (pos < length) this.pending = Buffer.from(data.subarray(pos));
  }

  onFrame(b0, payload) {
    const opcode = b0 & 15;
    const fin = (b0 & 128) !== 0;
    if (opcode === 1 || opcode === 2) {
      if (fin) this.handlers.onMessage(payload);
      else this.fragments = [Buffer.from(payload)];
    } else if (opcode === 0 && this.fragments !== null) {
      this.fragments.push(Buffer.from(payload));
      if (fin) {
        const whole = Buffer.concat(this.fragments);
        this.fragments = null;
        this.handlers.onMessage(whole);
      }
    } else if (opcode === 9) {
      this.socket.write(encodeFrame(10, payload));
    } else if (opcode === 8) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.socket.end(encodeFrame(8, payload.subarray(0, 2)));
    }
  }

  send(text) {
    this.socket.write(encodeFrame(1, Buffer.from(text)));
  }

  close() {
    if (this.socket.destroyed) return;
    if (this.open) this.socket.end(encodeFrame(8, Buffer.from([0x03, 0xe8])));
    else this.socket.destroy();
  }

  terminate() {
    this.socket.destroy();
  }
}

class Client {
  constructor(index, url, token, channel, sampled) {
    this.index = index;
    this.url = url;
    this.token = token;
    this.channel = channel;
    this.sampled = sampled;
    this.ws = null;
    this.subscribed = false;
    this.count = 0; // message lines received
    this.last = -1; // last sequence seen (fan-out contiguity)
    this.acked = 0;
    this.ackErrors = 0;
    this.sent = 0;
    this.closeCode = null;
    this.retired = false;
    this.nextId = 2;
  }

  open() {
    return new Promise((resolve) => {
      let done = false;
      const finish = (why) => {
        if (!done) {
          done = true;
          resolve(why);
        }
      };
      this.ws = new RawWs(this.url, this.token, {
        onOpen: () => this.ws.send(`{"id":1,"op":"subscribe","channel":"${this.channel}"}`),
        onMessage: (data) => {
          if (this.subscribed) {
            this.onFrame(data);
            return;
          }
          // before the subscribe reply: look for {"id":1,...}
          let start = 0;
          for (;;) {
            const end = data.indexOf(NL, start);
            const line = data.toString('latin1', start, end === -1 ? data.length : end);
            if (line.startsWith('{"id":1,')) {
              if (line.includes('"ok":true')) {
                this.subscribed = true;
                finish(null);
              } else {
                finish(line.slice(0, 200));
              }
            }
            if (end === -1) break;
            start = end + 1;
          }
        },
        onClose: (code, why) => {
          this.closeCode = code;
          if (this.subscribed && !this.retired) {
            state.closedClients++;
            if (state.closedClients <= 3) log(`client ${this.index} closed with ${code}`);
          }
          finish(why || `closed ${code}`);
        },
      });
    });
  }

  onFrame(buf) {
    const fanout = state.mode === 'fanout';
    let start = 0;
    let first = true;
    let lines = 0;
    for (;;) {
      const end = buf.indexOf(NL, start);
      if (isMessageLine(buf, start)) {
        lines++;
        if (fanout && first && state.checkOrder) {
          // contiguity: the first message of a frame must follow the last of the previous frame
          first = false;
          const at = buf.indexOf(state.seqKey, start);
          const seq = at === -1 ? -1 : readInt(buf, at + state.seqKey.length);
          if (this.last !== -1 && seq !== this.last + 1) state.orderErrors++;
          this.last = seq - 1; // advanced by `lines` below
        }
        if (this.sampled && state.sampling) {
          const tKey = state.mode === 'rooms' ? T_KEYS.rooms : (state.tKey || T_KEYS.fanout);
          const at = buf.indexOf(tKey, start);
          if (at !== -1 && (end === -1 || at < end)) {
            state.samples.push(now() - readNumber(buf, at + tKey.length));
          }
        }
      } else if (buf[start + 2] === 105) {
        // {"id":..  an ack of this client's own publish
        this.acked++;
        const slice = buf.toString('latin1', start, end === -1 ? buf.length : end);
        if (!slice.includes('"ok":true')) {
          this.ackErrors++;
          if (this.ackErrors <= 3) log('publish refused', slice.slice(0, 200));
        }
      }
      if (end === -1) break;
      start = end + 1;
    }
    if (lines === 0) return;
    if (fanout && state.checkOrder) this.last += lines;
    const before = this.count;
    this.count += lines;
    state.delivered += lines;
    if (fanout) {
      const reached = state.reached;
      for (let k = before + 1; k <= this.count; k++) reached[k & RING_MASK]++;
      advanceLevel();
    }
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function latency(samples) {
  const sorted = Float64Array.from(samples).sort();
  return { samples: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99),
           max: sorted.length ? sorted[sorted.length - 1] : null };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect(cmd) {
  state.seqKey = Buffer.from(`"${cmd.seq_key || 'offset'}":`);
  state.sampleEvery = cmd.sample_every || 41;
  const base = state.clients.length;
  const fresh = [];
  for (let j = 0; j < cmd.n; j++) {
    const i = base + j;
    fresh.push(new Client(i, cmd.urls[i % cmd.urls.length], cmd.tokens[i % cmd.tokens.length],
                          cmd.channels[Math.floor(i / (cmd.group || cmd.n)) % cmd.channels.length],
                          i % state.sampleEvery === 0));
  }
  const done = await openAll(fresh, cmd.concurrency, (client) => client.open(), (client) => state.clients.push(client),
                             (client) => { if (client.ws) client.ws.terminate(); });
  return { ...done, total: state.clients.length };
}

// Open `clients` at most `concurrency` at a time; `open` resolves null or why it failed.
async function openAll(clients, concurrency, open, onOpen, onFail) {
  const started = now();
  let next = 0;
  let failed = 0;
  const errors = {};
  const worker = async () => {
    while (next < clients.length) {
      const client = clients[next++];
      const why = await open(client);
      if (why === null) {
        onOpen(client);
      } else {
        failed++;
        errors[why] = (errors[why] || 0) + 1;
        onFail(client);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency || 100, clients.length) }, worker));
  return { connected: clients.length - failed, failed, seconds: (now() - started) / 1000, errors };
}

function openPublisher(url, token, onMessage, onClose) {
  return new Promise((resolve, reject) => {
    let opened = false;
    const ws = new RawWs(url, token, {
      onOpen: () => { opened = true; resolve(ws); },
      onMessage,
      onClose: (code, why) => {
        if (!opened) reject(new Error(`publisher: ${why || code}`));
        else onClose(code);
      },
    });
  });
}

function advanceLevel() {
  // the highest k such that every open client has received k messages
  const reached = state.reached;
  const need = state.clients.length - state.closedClients;
  while (state.minLevel < state.published && reached[(state.minLevel + 1) & RING_MASK] >= need) {
    reached[(state.minLevel + 1) & RING_MASK] = 0;
    state.minLevel++;
  }
  if (state.onLevel !== null) state.onLevel();
}

async function fanout(cmd) {
  const clients = state.clients;
  const n = clients.length;
  let acked = 0;
  let refused = 0;
  let publisherClosed = null;
  const onAck = (buf) => {
    let start = 0;
    for (;;) {
      const end = buf.indexOf(NL, start);
      if (buf[start + 2] === 105) {
        acked++;
        const line = buf.toString('latin1', start, end === -1 ? buf.length : end);
        if (!line.includes('"ok":true')) {
          refused++;
          if (refused <= 3) log('publish refused', line.slice(0, 200));
        }
      }
      if (end === -1) break;
      start = end + 1;
    }
  };
  const publishers = [];
  for (let i = 0; i < (cmd.publishers || 1); i++) {
    const urls = cmd.urls || [cmd.url];
    const onClose = (code) => { publisherClosed = code; };
    publishers.push(await openPublisher(urls[i % urls.length], cmd.token, onAck, onClose));
  }

  const counts0 = clients.map((c) => c.count);
  const published0 = state.published;
  const orderErrors0 = state.orderErrors;
  let running = true;
  const window = cmd.window || 16;
  state.checkOrder = cmd.check_order !== false;
  const channel = cmd.channel;
  // Chat channels take only the chat message schema: the send time leads the text there.
  const chat = /^(room|dm):/.test(channel);
  state.tKey = chat ? T_KEYS.rooms : T_KEYS.fanout;
  const publishOne = () => {
    const seq = ++state.published;
    const data = chat ? `{"text":"t:${now().toFixed(3)} #${seq}"}` : `{"seq":${seq},"t":${now().toFixed(3)}}`;
    publishers[seq % publishers.length].send(`{"id":${seq},"op":"publish","channel":"${channel}","data":${data}}`);
  };
  const pump = () => {
    while (running && state.published - state.minLevel < window) publishOne();
  };
  state.mode = 'fanout';
  let timer = null;
  if (cmd.rate == null) {
    state.onLevel = pump;
    pump();
  } else {
    state.onLevel = null;
    const tStart = now();
    timer = setInterval(() => {
      const due = Math.floor(((now() - tStart) / 1000) * cmd.rate) - (state.published - published0);
      for (let k = 0; k < due && running; k++) publishOne();
    }, 2);
  }
  await sleep((cmd.warmup || 1) * 1000);
  state.samples = [];
  state.sampling = true;
  const cpu0 = cpuSnapshot(cmd.pids);
  const d0 = state.delivered;
  const t0 = now();
  const p0 = state.published;
  await sleep(cmd.seconds * 1000);
  const t1 = now();
  const d1 = state.delivered;
  const p1 = state.published;
  const cpu1 = cpuSnapshot(cmd.pids);
  state.sampling = false;
  running = false;
  state.onLevel = null;
  if (timer) clearInterval(timer);
  // drain: wait until every client has every message (or give up)
  const drainStart = now();
  while (state.minLevel < state.published && now() - drainStart < (cmd.drain || 10) * 1000) await sleep(20);
  const drainSeconds = (now() - drainStart) / 1000;
  await sleep(100);
  const sent = state.published - published0;
  let received = 0;
  let closed = 0;
  clients.forEach((c, i) => {
    received += c.count - counts0[i];
    if (c.closeCode !== null) closed++;
  });
  for (const p of publishers) p.close();
  const elapsed = (t1 - t0) / 1000;
  return {
    clients: n, published: sent, acked, refused, publisher_closed: publisherClosed,
    expected: sent * n, received, lost: sent * n - received, order_errors: state.orderErrors - orderErrors0,
    closed, window_seconds: elapsed, deliveries_per_s: (d1 - d0) / elapsed, publishes_per_s: (p1 - p0) / elapsed,
    latency_ms: latency(state.samples), cpu_ticks: cpuDelta(cpu0, cpu1), drain_seconds: drainSeconds,
  };
}

async function rooms(cmd) {
  const clients = state.clients;
  state.mode = 'rooms';
  state.onLevel = null;
  const byChannel = new Map();
  for (const c of clients) {
    if (!byChannel.has(c.channel)) byChannel.set(c.channel, []);
    byChannel.get(c.channel).push(c);
  }
  const received0 = clients.map((c) => c.count);
  const publishedIn = new Map(); // channel -> messages sent
  const period = 1000 / cmd.rate;
  const schedule = clients.map((c) => ({ c, phase: Math.random() * period }));
  schedule.sort((a, b) => a.phase - b.phase);
  const start = now() + 20;
  for (const s of schedule) s.due = start + s.phase;
  let running = true;
  let ptr = 0;
  let published = 0;
  const tick = () => {
    const t = now();
    while (running && schedule.length && schedule[ptr].due <= t) {
      const s = schedule[ptr];
      const c = s.c;
      c.sent++;
      published++;
      publishedIn.set(c.channel, (publishedIn.get(c.channel) || 0) + 1);
      c.ws.send(`{"id":${c.nextId++},"op":"publish","channel":"${c.channel}","data":{` +
                `"text":"t:${now().toFixed(3)} hello from the rooms benchmark #${c.sent}"}}`);
      s.due += period;
      ptr = (ptr + 1) % schedule.length;
    }
  };
  const timer = setInterval(tick, 2);
  await sleep((cmd.warmup || 1) * 1000);
  state.samples = [];
  state.sampling = true;
  const cpu0 = cpuSnapshot(cmd.pids);
  const d0 = state.delivered;
  const p0 = published;
  const t0 = now();
  await sleep(cmd.seconds * 1000);
  const t1 = now();
  const d1 = state.delivered;
  const p1 = published;
  const cpu1 = cpuSnapshot(cmd.pids);
  state.sampling = false;
  running = false;
  clearInterval(timer);
  const expectedFor = (c) => publishedIn.get(c.channel) || 0;
  const countReceived = () => clients.reduce((sum, c, i) => sum + (c.count - received0[i]), 0);
  const expected = clients.reduce((sum, c) => sum + expectedFor(c), 0);
  const drainStart = now();
  while (countReceived() < expected && now() - drainStart < (cmd.drain || 10) * 1000) await sleep(20);
  const drainSeconds = (now() - drainStart) / 1000;
  await sleep(200);
  const received = countReceived();
  let acked = 0;
  let refused = 0;
  let closed = 0;
  for (const c of clients) {
    acked += c.acked;
    refused += c.ackErrors;
    if (c.closeCode !== null) closed++;
  }
  const elapsed = (t1 - t0) / 1000;
  return {
    clients: clients.length, channels: byChannel.size, published, acked, refused, expected, received,
    lost: expected - received, closed, window_seconds: elapsed, deliveries_per_s: (d1 - d0) / elapsed,
    publishes_per_s: (p1 - p0) / elapsed, latency_ms: latency(state.samples), cpu_ticks: cpuDelta(cpu0, cpu1),
    drain_seconds: drainSeconds,
  };
}

// --- reconnect storm (bench/bench_storm.py) ------------------------------------------------------
// Separate clients (StormClient) so the fan-out hot path above gains no work: each storm client
// holds a few channels, tracks the last offset seen per channel from live pushes and from the
// `missed` of its subscribe replies, and counts duplicates and gaps. A message line is read by
// position (`{"op":"message","channel":"<name>","offset":N`, the server's fixed key order), replies
// (rare: subscribes) are JSON-parsed. A close (1012 from a draining replica, or any other) while
// the storm is on makes the client reconnect to `storm.target` after a random jitter and
// resubscribe every channel with `since`.
const MSG_CHANNEL_AT = Buffer.byteLength('{"op":"message","channel":"');
const OFFSET_KEY = Buffer.from('"offset":');
const MAX_TRACKED_GAP = 100000; // a bigger gap is counted as lost without remembering each offset
const MAX_ATTEMPTS = 10; // reconnect attempts per client before it counts as failed

function freshStorm() {
  return {
    clients: [],
    target: null, // where a closed client reconnects
    active: false, // the storm has begun (SIGTERM sent)
    jitterMs: 250,
    // a reconnect whose upgrade is not answered by then is abandoned and tried again; browsers (the
    // PWA) have no such timeout of their own, TCP retransmits until the server accepts
    handshakeMs: 30000,
    batch: true, // one batch subscribe per connection, else one subscribe per channel
    presence: null, // the `presence` flag of subscribe (null: not sent, the server's default)
    track: true, // offsets are tracked (the reference server has none)
    back: 0, // clients resubscribed after their first close
    failed: 0, // clients that gave up (MAX_ATTEMPTS)
    firstClose: 0,
    lastClose: 0,
    lastBack: 0,
    closes: {}, // close code of the first connection -> count
    closedEarly: 0, // first connection closed before the storm began
    closedAgain: 0, // a connection closed after the client was back
    retries: 0,
    retryReasons: {},
    subRetries: 0, // channels subscribed again on the same connection after a refusal
    subErrors: {},
    delivered: 0, // message lines received
    recovered: 0, // messages received in `missed`
    killedAt: 0,
    early: 0, // a message for a channel before its first subscribe reply
    foreign: 0, // a message for a channel the client does not hold
    dupSamples: [],
    gapSamples: [],
  };
}
let storm = freshStorm();

class StormClient {
  constructor(index, token, channels, rooms) {
    this.index = index;
    this.token = token;
    this.channels = channels;
    this.channelBufs = channels.map((c) => Buffer.from(c));
    this.rooms = rooms; // index of each channel in the command's room list
    const k = channels.length;
    this.first = new Array(k).fill(-1); // offset of the first subscribe reply
    this.last = new Array(k).fill(-1); // highest offset seen
    this.epoch = new Array(k).fill(null);
    this.missing = new Array(k).fill(null); // Set of skipped offsets, or null
    this.lostUntracked = 0;
    this.received = 0;
    this.dups = 0;
    this.late = 0; // filled a gap (out of order)
    this.notRecovered = 0;
    this.announced = 0; // messages a `recovered: false` reply told the client it may have missed
    this.lastSub = new Array(k).fill(null); // the last subscribe result per channel (diagnostics)
    this.epochChanged = 0;
    this.ws = null;
    this.subBase = 0;
    this.subIdx = []; // channel indices of the subscribe in flight, in request order
    this.failedSubs = [];
    this.nextId = 1;
    this.pendingSubs = 0;
    this.attemptTimer = null;
    this.subscribedOnce = false;
    this.phase = 'new'; // connecting | live | waiting | reconnecting | failed
    this.closedAt = 0;
    this.reconnectAt = 0;
    this.backAt = 0;
    this.openAt = 0; // the reconnect's upgrade answered (101): the rest of the way back is the subscribe
    this.attempts = 0;
    this.timedOut = false;
    this.ready = null; // resolves the first connect: null or why it failed
    this.retired = false;
  }

  connectFirst(url) {
    return new Promise((resolve) => {
      this.ready = resolve;
      this.phase = 'connecting';
      this.open(url);
    });
  }

  open(url) {
    const ws = new RawWs(url, this.token, {
      onOpen: () => {
        if (ws !== this.ws) return;
        if (this.attemptTimer !== null) {
          // like the PWA (static/js/live.js), once connected the client waits for its subscribe reply
          clearTimeout(this.attemptTimer);
          this.attemptTimer = null;
        }
        if (this.subscribedOnce && this.openAt === 0) this.openAt = now();
        this.subscribe(this.channels.map((_, i) => i));
      },
      onMessage: (buf) => { if (ws === this.ws) this.onFrame(buf); },
      onClose: (code, why) => { if (ws === this.ws) this.onClose(code, why); },
    });
    this.ws = ws;
  }

  subscribe(indices) {
    // `since` once the channel has a position (every resubscribe); the first subscribe has none
    const since = (i) => (storm.track && this.epoch[i] !== null
      ? `,"since":{"offset":${this.last[i]},"epoch":${JSON.stringify(this.epoch[i])}}` : '');
    const presence = storm.presence === null ? '' : `,"presence":${storm.presence}`;
    this.subBase = this.nextId;
    this.subIdx = indices;
    this.failedSubs = [];
    this.pendingSubs = indices.length;
    if (storm.batch) {
      this.nextId++;
      const items = indices.map((i) => {
        const s = since(i);
        return s ? `{"channel":"${this.channels[i]}"${s}}` : `"${this.channels[i]}"`;
      });
      this.ws.send(`{"id":${this.subBase},"op":"subscribe","channels":[${items.join(',')}]${presence}}`);
    } else {
      for (const i of indices) {
        this.ws.send(`{"id":${this.nextId++},"op":"subscribe","channel":"${this.channels[i]}"${since(i)}${presence}}`);
      }
    }
  }

  onFrame(buf) {
    let start = 0;
    for (;;) {
      const end = buf.indexOf(NL, start);
      const stop = end === -1 ? buf.length : end;
      const b2 = buf[start + 2];
      if (b2 === 111 && buf[start + 7] === 109) { // {"op":"message"
        storm.delivered++;
        if (storm.track) this.onMessageLine(buf, start);
      } else if (b2 === 105) { // {"id":  a reply
        this.onReply(JSON.parse(buf.toString('utf8', start, stop)));
      } // presence_diff, typing: ignored
      if (end === -1) break;
      start = end + 1;
    }
  }

  onMessageLine(buf, start) {
    const from = start + MSG_CHANNEL_AT;
    const quote = buf.indexOf(34, from);
    const length = quote - from;
    const bufs = this.channelBufs;
    for (let i = 0; i < bufs.length; i++) {
      if (bufs[i].length === length && bufs[i].compare(buf, from, quote) === 0) {
        const at = buf.indexOf(OFFSET_KEY, quote);
        this.see(i, readInt(buf, at + OFFSET_KEY.length));
        return;
      }
    }
    storm.foreign++;
  }

  see(ch, offset, via = 'live') {
    if (this.epoch[ch] === null) { // before the first subscribe reply: the server broke its order
      storm.early++;
      return;
    }
    const last = this.last[ch];
    if (offset === last + 1) {
      this.last[ch] = offset;
      this.received++;
      return;
    }
    if (offset > last) {
      const gap = offset - last - 1;
      if (storm.gapSamples.length < 8) {
        storm.gapSamples.push(`client ${this.index} ${this.channels[ch]}: ${last} -> ${offset} (${via}, ${this.phase}, ` +
                              `attempts ${this.attempts}, last subscribe ${JSON.stringify(this.lastSub[ch])})`);
      }
      if (gap > MAX_TRACKED_GAP) {
        this.lostUntracked += gap;
      } else {
        const m = this.missing[ch] || (this.missing[ch] = new Set());
        for (let o = last + 1; o < offset; o++) m.add(o);
      }
      this.last[ch] = offset;
      this.received++;
      return;
    }
    const m = this.missing[ch];
    if (m !== null && m.delete(offset)) {
      this.late++;
      this.received++;
      return;
    }
    this.dups++;
    if (storm.dupSamples.length < 5) {
      storm.dupSamples.push(`client ${this.index} ${this.channels[ch]}: offset ${offset} again (${via}, last ${last}, ` +
                            `first ${this.first[ch]}, ${this.phase}, attempts ${this.attempts}, ` +
                            `last subscribe ${JSON.stringify(this.lastSub[ch])})`);
    }
  }

  onReply(reply) {
    const id = reply.id;
    const count = storm.batch ? 1 : this.subIdx.length;
    if (typeof id !== 'number' || id < this.subBase || id >= this.subBase + count || this.pendingSubs <= 0) {
      storm.subErrors.unexpected_reply = (storm.subErrors.unexpected_reply || 0) + 1;
      if (storm.subErrors.unexpected_reply <= 3) log('unexpected reply', JSON.stringify(reply).slice(0, 200));
      return;
    }
    if (!storm.batch) {
      this.onSubscribed(this.subIdx[id - this.subBase], reply);
    } else if (!reply.ok || !Array.isArray(reply.results) || reply.results.length !== this.subIdx.length) {
      const code = reply.error ? reply.error.code : 'bad batch reply';
      for (const i of this.subIdx) this.onSubscribed(i, { ok: false, error: { code } });
    } else {
      reply.results.forEach((result, j) => this.onSubscribed(this.subIdx[j], result));
    }
  }

  onSubscribed(i, result) {
    if (!result.ok) {
      const code = result.error ? result.error.code : 'refused';
      storm.subErrors[code] = (storm.subErrors[code] || 0) + 1;
      if (storm.subErrors[code] <= 3) log(`client ${this.index}: subscribe refused`, JSON.stringify(result).slice(0, 300));
      this.failedSubs.push(i);
    } else if (storm.track && result.channel !== this.channels[i]) {
      storm.subErrors.channel_mismatch = (storm.subErrors.channel_mismatch || 0) + 1;
      this.failedSubs.push(i);
    } else if (storm.track) {
      if (this.epoch[i] === null) {
        this.first[i] = this.last[i] = result.offset;
        this.epoch[i] = result.epoch;
      } else {
        const missed = result.missed || [];
        this.lastSub[i] = { since: this.last[i], offset: result.offset, recovered: result.recovered,
                            missed: missed.length ? [missed[0].offset, missed[missed.length - 1].offset] : [],
                            at_ms: Math.round(now() - (storm.killedAt || now())) };
        if (result.epoch !== this.epoch[i]) this.epochChanged++;
        if (!result.recovered) {
          this.notRecovered++;
          this.announced += Math.max(0, result.offset - this.last[i]);
        }
        for (const m of missed) {
          storm.recovered++;
          storm.delivered++;
          if (m.channel === this.channels[i]) this.see(i, m.offset, 'missed');
          else storm.foreign++;
        }
      }
    }
    if (--this.pendingSubs > 0) return;
    if (this.failedSubs.length === 0) {
      this.onAllSubscribed();
    } else if (!this.subscribedOnce) {
      this.finishFirst(`subscribe refused: ${JSON.stringify(result.error || result).slice(0, 120)}`);
    } else {
      // what the PWA does (static/js/live.js): subscribe the refused channels again, on the same
      // connection, 2 s later
      const failed = this.failedSubs;
      const ws = this.ws;
      storm.subRetries += failed.length;
      setTimeout(() => { if (ws === this.ws && ws.open && !ws.socket.destroyed) this.subscribe(failed); },
                 2000);
    }
  }

  finishFirst(why) {
    if (this.ready !== null) {
      const resolve = this.ready;
      this.ready = null;
      resolve(why);
    }
  }

  onAllSubscribed() {
    if (!this.subscribedOnce) {
      this.subscribedOnce = true;
      this.phase = 'live';
      this.finishFirst(null);
      return;
    }
    this.phase = 'live';
    if (this.attemptTimer !== null) {
      clearTimeout(this.attemptTimer);
      this.attemptTimer = null;
    }
    if (this.backAt === 0) {
      this.backAt = now();
      storm.back++;
      storm.lastBack = this.backAt;
    }
  }

  onClose(code, why) {
    if (this.retired) return;
    if (!this.subscribedOnce) {
      this.finishFirst(why || `closed ${code}`);
      return;
    }
    if (this.phase === 'live') {
      const t = now();
      if (this.closedAt === 0) {
        this.closedAt = t;
        storm.closes[code] = (storm.closes[code] || 0) + 1;
        if (!storm.active) storm.closedEarly++;
        if (storm.firstClose === 0) storm.firstClose = t;
        storm.lastClose = Math.max(storm.lastClose, t);
      } else {
        storm.closedAgain++;
        if (storm.closedAgain <= 3) log(`client ${this.index}: closed again with ${code} ${why || ''}`);
      }
      this.phase = 'waiting';
      setTimeout(() => this.reconnect(), Math.random() * storm.jitterMs);
    } else if (this.phase === 'reconnecting') {
      if (this.attemptTimer !== null) {
        clearTimeout(this.attemptTimer);
        this.attemptTimer = null;
      }
      const reason = this.timedOut ? `upgrade not answered within ${storm.handshakeMs / 1000} s` : (why || `closed ${code}`);
      this.timedOut = false;
      storm.retries++;
      storm.retryReasons[reason] = (storm.retryReasons[reason] || 0) + 1;
      if (this.attempts >= MAX_ATTEMPTS) {
        this.phase = 'failed';
        storm.failed++;
        return;
      }
      this.phase = 'waiting';
      setTimeout(() => this.reconnect(), 100 * this.attempts + Math.random() * 100);
    }
  }

  reconnect() {
    if (this.retired || storm.target === null) return;
    this.phase = 'reconnecting';
    this.attempts++;
    if (this.reconnectAt === 0) this.reconnectAt = now();
    this.open(storm.target);
    const ws = this.ws;
    this.attemptTimer = setTimeout(() => {
      this.attemptTimer = null;
      if (ws === this.ws && this.phase === 'reconnecting') {
        this.timedOut = true;
        ws.terminate();
      }
    }, storm.handshakeMs);
  }

  retire() {
    this.retired = true;
    if (this.attemptTimer !== null) clearTimeout(this.attemptTimer);
    if (this.ws) this.ws.terminate();
  }
}

async function stormConnect(cmd) {
  // client i holds rooms[(i * per + k) % len] for k < per: every room gets the same number of clients
  storm = freshStorm();
  storm.target = cmd.target || null;
  storm.batch = cmd.batch !== false;
  storm.presence = cmd.presence == null ? null : Boolean(cmd.presence);
  storm.track = cmd.track !== false;
  const per = cmd.per_client || 3;
  const rooms = cmd.rooms;
  const fresh = [];
  for (let i = 0; i < cmd.n; i++) {
    const idx = [];
    for (let k = 0; k < per; k++) idx.push((i * per + k) % rooms.length);
    fresh.push(new StormClient(i, cmd.tokens[i % cmd.tokens.length], idx.map((j) => rooms[j]), idx));
  }
  return openAll(fresh, cmd.concurrency, (client) => client.connectFirst(cmd.url),
                 (client) => storm.clients.push(client), (client) => client.retire());
}

function childPids(parent) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) out.push(Number(name));
    } catch (e) { /* gone */ }
  }
  return out;
}

function listenOverflows() {
  // TcpExt ListenOverflows (machine-wide): connections dropped because a listen queue was full
  try {
    const lines = fs.readFileSync('/proc/net/netstat', 'latin1').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (!lines[i].startsWith('TcpExt:')) continue;
      const at = lines[i].split(' ').indexOf('ListenOverflows');
      return at === -1 ? 0 : Number(lines[i + 1].split(' ')[at]);
    }
  } catch (e) { /* not Linux */ }
  return 0;
}

function stormCpu(cmd) {
  // CPU ticks per pid (name -> {pid: ticks}), the children of `parents` (PostgreSQL backends come
  // and go) included; with the cores' and this process's ticks
  const perPid = {};
  const groups = { ...(cmd.pids || {}) };
  for (const [name, parent] of Object.entries(cmd.parents || {})) {
    groups[name] = [...(groups[name] || []), ...childPids(parent)];
  }
  for (const [name, list] of Object.entries(groups)) {
    perPid[name] = {};
    for (const pid of list) perPid[name][pid] = cpuTicks(pid);
  }
  const base = cpuSnapshot({});
  base.listen_overflows = listenOverflows();
  return { perPid, base };
}

function stormCpuDelta(a, b) {
  // a pid gone by the end lost its ticks with it: counted only while alive at both ends (a pid
  // born meanwhile counts from 0)
  const out = cpuDelta(a.base, b.base);
  for (const [name, pids] of Object.entries(b.perPid)) {
    out[name] = 0;
    for (const [pid, ticks] of Object.entries(pids)) {
      if (ticks > 0) out[name] += ticks - ((a.perPid[name] || {})[pid] || 0);
    }
  }
  return out;
}

function stormLatency(values) {
  const sorted = Float64Array.from(values).sort();
  return { n: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99),
           max: sorted.length ? sorted[sorted.length - 1] : null };
}

async function stormRun(cmd) {
  const clients = storm.clients;
  const n = clients.length;
  if (cmd.target) storm.target = cmd.target;
  storm.jitterMs = cmd.jitter_ms == null ? 250 : cmd.jitter_ms;
  if (cmd.handshake_timeout) storm.handshakeMs = cmd.handshake_timeout * 1000;
  const rooms = cmd.rooms;
  // publishers: `publishers` connections on the surviving replica, round robin over the rooms
  const maxAcked = new Array(rooms.length).fill(0);
  const roomOf = new Map(); // publish id -> room index (replies may come out of order)
  let sent = 0;
  let acked = 0;
  let refused = 0;
  let publisherClosed = 0;
  const onAck = (buf) => {
    let start = 0;
    for (;;) {
      const end = buf.indexOf(NL, start);
      if (buf[start + 2] === 105) {
        const id = readInt(buf, start + 6);
        const room = roomOf.get(id);
        roomOf.delete(id);
        const line = buf.toString('latin1', start, end === -1 ? buf.length : end);
        acked++;
        if (!line.includes('"ok":true')) {
          refused++;
          if (refused <= 3) log('storm publish refused', line.slice(0, 200));
        } else if (room !== undefined) {
          const at = line.indexOf('"offset":');
          if (at !== -1) maxAcked[room] = Math.max(maxAcked[room], Number.parseInt(line.slice(at + 9), 10));
        }
      }
      if (end === -1) break;
      start = end + 1;
    }
  };
  const publishers = [];
  for (let i = 0; i < (cmd.publishers || 1); i++) {
    publishers.push(await openPublisher(cmd.publish_urls[i % cmd.publish_urls.length], cmd.publish_token, onAck,
                                        () => { publisherClosed++; }));
  }
  let publishing = true;
  const pubStart = now();
  const timer = setInterval(() => {
    const due = Math.floor(((now() - pubStart) / 1000) * cmd.rate) - sent;
    for (let k = 0; k < due && publishing; k++) {
      const seq = ++sent;
      const room = seq % rooms.length;
      roomOf.set(seq, room);
      publishers[seq % publishers.length].send(
        `{"id":${seq},"op":"publish","channel":"${rooms[room]}","data":{"text":"storm message #${seq}"}}`);
    }
  }, 5);

  await sleep((cmd.before || 2) * 1000);
  const sentBefore = sent;
  const cpu0 = stormCpu(cmd);
  const killed0 = cmd.kill_pid ? cpuTicks(cmd.kill_pid) : 0;
  let killed = killed0; // the draining replica's ticks, sampled while it lives
  const tKill = now();
  storm.killedAt = tKill;
  storm.active = true;
  if (cmd.kill_pid) process.kill(cmd.kill_pid, cmd.kill_signal || 'SIGTERM');
  const timeout = (cmd.max_wait || 60) * 1000;
  while (storm.back + storm.failed < n && now() - tKill < timeout) {
    await sleep(10);
    if (cmd.kill_pid) killed = Math.max(killed, cpuTicks(cmd.kill_pid));
  }
  const tAll = now();
  const backInTime = storm.back; // clients back by the deadline (max_wait)
  const cpu1 = stormCpu(cmd);
  if (cmd.kill_pid) killed = Math.max(killed, cpuTicks(cmd.kill_pid));
  const sentStorm = sent - sentBefore;

  await sleep((cmd.after || 2) * 1000);
  publishing = false;
  clearInterval(timer);
  const tStop = now();
  while (acked < sent && now() - tStop < 10000) await sleep(10);
  // quiescence: every client holds its rooms' last acknowledged offsets (or give up)
  const caughtUp = () => clients.every((c) => c.phase === 'failed' || c.rooms.every((r, i) => c.last[i] >= maxAcked[r]));
  const quiesceStart = now();
  if (storm.track) {
    while (!caughtUp() && now() - quiesceStart < (cmd.quiesce || 10) * 1000) await sleep(25);
  } else {
    await sleep(500);
  }
  const quiesceSeconds = (now() - quiesceStart) / 1000;
  for (const p of publishers) p.close();

  const reconnect = [];
  const afterJitter = [];
  const toOpen = []; // reconnect sent -> upgrade answered: TCP accept and the handshake
  const toSubscribed = []; // upgrade answered -> resubscribe reply
  const backPerSecond = []; // clients back in each second after the signal
  let lost = 0;
  let expected = 0;
  let received = 0;
  let dups = 0;
  let late = 0;
  let notRecovered = 0;
  let announced = 0;
  let epochChanged = 0;
  let neverBack = 0;
  let lostClients = 0;
  for (const c of clients) {
    if (c.backAt > 0) {
      reconnect.push(c.backAt - c.closedAt);
      afterJitter.push(c.backAt - c.reconnectAt);
      if (c.openAt > 0) {
        toOpen.push(c.openAt - c.reconnectAt);
        toSubscribed.push(c.backAt - c.openAt);
      }
      const second = Math.max(0, Math.floor((c.backAt - tKill) / 1000));
      while (backPerSecond.length <= second) backPerSecond.push(0);
      backPerSecond[second]++;
    } else {
      neverBack++;
    }
    dups += c.dups;
    late += c.late;
    received += c.received;
    notRecovered += c.notRecovered;
    announced += c.announced;
    epochChanged += c.epochChanged;
    if (!storm.track) continue;
    let mine = c.lostUntracked;
    c.rooms.forEach((r, i) => {
      const final = maxAcked[r];
      expected += Math.max(0, final - c.first[i]);
      mine += (c.missing[i] ? c.missing[i].size : 0) + Math.max(0, final - c.last[i]);
    });
    lost += mine;
    if (mine) lostClients++;
  }
  return {
    clients: n, channels_per_client: clients.length ? clients[0].channels.length : 0, rooms: rooms.length,
    batch: storm.batch, tracked: storm.track,
    published: sent, published_during_storm: sentStorm, acked, refused, publisher_closed: publisherClosed,
    publish_seconds: (tStop - pubStart) / 1000,
    // null when some were not back within max_wait (they may have come back later: last_back_seconds)
    all_back_seconds: backInTime === n ? (storm.lastBack - tKill) / 1000 : null,
    last_back_seconds: storm.back ? (storm.lastBack - tKill) / 1000 : null,
    storm_seconds: (tAll - tKill) / 1000,
    first_close_seconds: storm.firstClose ? (storm.firstClose - tKill) / 1000 : null,
    last_close_seconds: storm.lastClose ? (storm.lastClose - tKill) / 1000 : null,
    back: storm.back, not_back: n - backInTime, never_back: neverBack, failed: storm.failed, retries: storm.retries,
    retry_reasons: storm.retryReasons, subscribe_errors: storm.subErrors, subscribe_retries: storm.subRetries,
    closes: storm.closes,
    closed_early: storm.closedEarly, closed_again: storm.closedAgain,
    reconnect_ms: stormLatency(reconnect), after_jitter_ms: stormLatency(afterJitter),
    open_ms: stormLatency(toOpen), subscribed_ms: stormLatency(toSubscribed), back_per_second: backPerSecond,
    expected: storm.track ? expected : null, received: storm.track ? received : null,
    lost: storm.track ? lost : null, lost_clients: storm.track ? lostClients : null,
    duplicates: storm.track ? dups : null, late, not_recovered: notRecovered, not_recovered_messages: announced,
    epoch_changed: epochChanged,
    recovered_messages: storm.recovered, delivered: storm.delivered, early: storm.early, foreign: storm.foreign,
    dup_samples: storm.dupSamples, gap_samples: storm.gapSamples,
    final_offsets: maxAcked, quiesce_seconds: quiesceSeconds,
    cpu_ticks: { ...stormCpuDelta(cpu0, cpu1), a: killed - killed0 },
  };
}

async function closeAll() {
  const closing = state.clients.filter((c) => c.ws && c.closeCode === null);
  for (const c of state.clients) {
    c.retired = true; // not counted as a loss
    if (c.ws) c.ws.terminate();
  }
  for (const c of storm.clients) c.retire();
  const n = state.clients.length + storm.clients.length;
  storm = freshStorm();
  state.clients = [];
  state.minLevel = 0;
  state.published = 0;
  state.closedClients = 0;
  state.reached.fill(0);
  state.delivered = 0;
  state.orderErrors = 0;
  state.mode = 'idle';
  const started = now();
  while (closing.some((c) => c.closeCode === null) && now() - started < 5000) await sleep(20);
  return { closed: n };
}

async function handle(cmd) {
  switch (cmd.cmd) {
    case 'connect': return connect(cmd);
    case 'fanout': return fanout(cmd);
    case 'rooms': return rooms(cmd);
    case 'storm_connect': return stormConnect(cmd);
    case 'storm': return stormRun(cmd);
    case 'cpu': return { cpu_ticks: cpuSnapshot(cmd.pids) };
    case 'close': return closeAll();
    case 'exit': setTimeout(() => process.exit(0), 10); return { exiting: true };
    default: throw new Error(`unknown command ${cmd.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let cmd;
    try {
      cmd = JSON.parse(line);
      emit({ ok: true, cmd: cmd.cmd, result: await handle(cmd) });
    } catch (err) {
      emit({ ok: false, cmd: cmd && cmd.cmd, error: String((err && err.stack) || err) });
    }
  });
});
rl.on('close', () => {
  chain.then(() => process.exit(0));
});
