// Load generator for bench/bench_fanout.py: websocket clients on the `ws` library, one process,
// driven by JSON commands on stdin (one per line), answering one JSON line per command on stdout.
//
// It is built to cost less CPU than the server it measures: frames are never JSON-parsed on the
// hot path. A client counts the `{"op":"message"` lines of each frame (a byte test per line), reads
// the sequence number of the first message of each frame to prove delivery is contiguous, and
// only the sampled clients (every Nth) read the publish timestamp of each message for latency.
//
// Commands:
//   {"cmd":"connect", "urls":[..], "tokens":[..], "channels":[..], "group":G, "n":N, "concurrency":C,
//    "sample_every":K, "seq_key":"offset"|"seq"}
//      client i: urls[i % len], tokens[i % len], channels[floor(i / G) % len]; each connects with
//      `Authorization: Bearer <token>` on the upgrade and subscribes; -> {connected, failed, seconds}
//   {"cmd":"fanout", "url", "token", "channel", "window", "rate", "warmup", "seconds", "pids":{..}}
//      one publisher; rate null: closed loop, at most `window` messages not yet received by every
//      client; rate R: R messages/s. -> deliveries/s in the measured window, latency, loss, CPU
//   {"cmd":"rooms", "rate", "warmup", "seconds", "pids":{..}}
//      every client publishes `rate` messages/s in its own channel (random phase).
//   {"cmd":"close"}  closes every client and exits.
'use strict';

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');

const NL = 10;
const now = () => performance.timeOrigin + performance.now(); // ms, same clock as the publisher
const T_KEY = Buffer.from('"t":');

const state = {
  clients: [],
  seqKey: Buffer.from('"offset":'),
  sampleEvery: 40,
  mode: 'idle', // idle | fanout | rooms
  delivered: 0, // message lines received by all clients since the start
  samples: [],
  sampling: false,
  orderErrors: 0,
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

function cpuTicks(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
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
  return Number(buf.latin1Slice(pos, end));
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
    this.nextId = 2;
  }

  open() {
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok, why) => {
        if (!done) {
          done = true;
          resolve(ok ? null : why || 'failed');
        }
      };
      const ws = new WebSocket(this.url, {
        headers: { Authorization: `Bearer ${this.token}` },
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: 30000,
        maxPayload: 64 * 1024 * 1024,
      });
      this.ws = ws;
      ws.on('open', () => ws.send(`{"id":1,"op":"subscribe","channel":"${this.channel}"}`));
      ws.on('message', (data) => {
        if (this.subscribed) {
          this.onFrame(data);
          return;
        }
        // before the subscribe reply: look for {"id":1,...}
        let start = 0;
        for (;;) {
          const end = data.indexOf(NL, start);
          const line = data.latin1Slice(start, end === -1 ? data.length : end);
          if (line.startsWith('{"id":1,')) {
            if (line.includes('"ok":true')) {
              this.subscribed = true;
              finish(true);
            } else {
              finish(false, line.slice(0, 200));
            }
          }
          if (end === -1) break;
          start = end + 1;
        }
      });
      ws.on('error', (err) => finish(false, String(err && err.message)));
      ws.on('close', (code) => {
        this.closeCode = code;
        if (this.subscribed) {
          state.closedClients++;
          if (state.closedClients <= 3) log(`client ${this.index} closed with ${code}`);
        }
        finish(false, `closed ${code}`);
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
        if (fanout && first) {
          // contiguity: the first message of a frame must follow the last of the previous frame
          first = false;
          const at = buf.indexOf(state.seqKey, start);
          const seq = at === -1 ? -1 : readInt(buf, at + state.seqKey.length);
          if (this.last !== -1 && seq !== this.last + 1) state.orderErrors++;
          this.last = seq - 1; // advanced by `lines` below
        }
        if (this.sampled && state.sampling) {
          const at = buf.indexOf(T_KEY, start);
          if (at !== -1 && (end === -1 || at < end)) {
            state.samples.push(now() - readNumber(buf, at + T_KEY.length));
          }
        }
      } else if (buf[start + 2] === 105) {
        // {"id":..  an ack of this client's own publish
        this.acked++;
        const slice = buf.latin1Slice(start, end === -1 ? buf.length : end);
        if (!slice.includes('"ok":true')) {
          this.ackErrors++;
          if (this.ackErrors <= 3) log('publish refused', slice.slice(0, 200));
        }
      }
      if (end === -1) break;
      start = end + 1;
    }
    if (lines === 0) return;
    if (fanout) this.last += lines;
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
  state.sampleEvery = cmd.sample_every || 40;
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

function openPublisher(url, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false,
                                    skipUTF8Validation: true });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
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
  const publisher = await openPublisher(cmd.url, cmd.token);
  let acked = 0;
  let refused = 0;
  publisher.on('message', (buf) => {
    let start = 0;
    for (;;) {
      const end = buf.indexOf(NL, start);
      if (buf[start + 2] === 105) {
        acked++;
        const line = buf.latin1Slice(start, end === -1 ? buf.length : end);
        if (!line.includes('"ok":true')) {
          refused++;
          if (refused <= 3) log('publish refused', line.slice(0, 200));
        }
      }
      if (end === -1) break;
      start = end + 1;
    }
  });
  let publisherClosed = null;
  publisher.on('close', (code) => { publisherClosed = code; });

  const counts0 = clients.map((c) => c.count);
  const published0 = state.published;
  const orderErrors0 = state.orderErrors;
  let running = true;
  const window = cmd.window || 16;
  const channel = cmd.channel;
  const publishOne = () => {
    const seq = ++state.published;
    publisher.send(`{"id":${seq},"op":"publish","channel":"${channel}","data":{"seq":${seq},` +
                   `"t":${now().toFixed(3)}}}`);
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
  publisher.close();
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
    while (running && schedule[ptr].due <= t) {
      const s = schedule[ptr];
      const c = s.c;
      c.sent++;
      published++;
      publishedIn.set(c.channel, (publishedIn.get(c.channel) || 0) + 1);
      c.ws.send(`{"id":${c.nextId++},"op":"publish","channel":"${c.channel}","data":{"seq":${c.sent},` +
                `"t":${now().toFixed(3)},"text":"hello from the rooms benchmark"}}`);
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
    c.subscribed = false; // not counted as a loss
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
