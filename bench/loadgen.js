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
  const started = now();
  let next = 0;
  let failed = 0;
  const errors = {};
  const worker = async () => {
    while (next < fresh.length) {
      const client = fresh[next++];
      const why = await client.open();
      if (why === null) {
        state.clients.push(client);
      } else {
        failed++;
        errors[why] = (errors[why] || 0) + 1;
        if (client.ws) client.ws.terminate();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(cmd.concurrency || 100, fresh.length) }, worker));
  const seconds = (now() - started) / 1000;
  return { connected: fresh.length - failed, failed, seconds, errors, total: state.clients.length };
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

async function closeAll() {
  const closing = state.clients.filter((c) => c.ws && c.closeCode === null);
  for (const c of state.clients) {
    c.retired = true; // not counted as a loss
    if (c.ws) c.ws.terminate();
  }
  const n = state.clients.length;
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
