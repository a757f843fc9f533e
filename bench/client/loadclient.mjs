// WebSocket fan-out load client for bench/run.py.
//
// Usage: node loadclient.mjs <config.json>
//
// Connects N clients to one room (each with its own session cookie), waits
// for every `hello`, then lets S senders send
//   {"type":"message","text":"<sender>:<seq>:<send time, ms>"}
// either at a fixed total rate ("rate"), as fast as the server echoes them
// back ("saturation": a bounded window of unanswered messages per sender), or
// not at all ("idle"). Every client records the send->receive latency of
// every message (same process, same monotonic clock) and counts deliveries.
//
// Progress goes to stderr; stdout carries JSON lines for the runner:
//   {"phase": "..."}            phase changes (the runner samples server CPU/RSS)
//   {"phase": "settled"}        all hellos in; waits for "continue" on stdin
//                               when config.waitForRunner (RSS of idle sockets)
//   {"result": {...}}           the final numbers, last line

import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const cfg = {
  clients: 100,
  senders: 10,
  mode: 'rate', // rate | saturation | idle
  rate: 10, // messages/s, all senders together (rate mode)
  window: 1, // unanswered messages per sender (saturation mode)
  duration: 10, // seconds of sending
  drain: 5, // seconds to wait for stragglers after sending stops
  settle: 2, // seconds between the last hello and sending (idle RSS sample)
  connectConcurrency: 256, // handshakes in flight at once
  connectTimeout: 180, // seconds for the whole connect + hello phase
  handshakeTimeout: 60, // seconds for one handshake
  localAddresses: [], // source IPs to spread over (empty: let the kernel pick)
  deflate: false, // offer permessage-deflate
  waitForRunner: false,
  sessions: [], // session keys, one per client (none: no cookie)
  urls: [], // room URLs, one per server process: client i uses urls[i % urls.length]
  resume: true, // closed with 1013 while sending or draining: reconnect with ?after=<last id>, as the contract says
  resumeDelay: 0.5, // seconds before reconnecting ("a little later"), plus up to as much again at random
  ...JSON.parse(readFileSync(process.argv[2], 'utf8')),
};
if (cfg.url) cfg.urls = [cfg.url];
// Each process checks Origin against its own host and port.
const ORIGINS = cfg.urls.map((url) => cfg.origin || new URL(url).origin.replace(/^ws/, 'http'));

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const log = (...args) => process.stderr.write(`[client] ${args.join(' ')}\n`);
const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- limits ----------------------------------------------------------------

// Node cannot raise RLIMIT_NOFILE itself; the runner raises it before spawning us.
function openFileLimit() {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    return Number(line.split(/\s+/)[3]);
  } catch {
    return Infinity;
  }
}
if (openFileLimit() < cfg.clients + 100) {
  log(`warning: open-file limit ${openFileLimit()} < ${cfg.clients} clients; raise it (ulimit -n)`);
}

// -- statistics -------------------------------------------------------------

/** Growable array of float64 samples, in chunks so millions stay cheap. */
class Samples {
  constructor() {
    this.chunks = [new Float64Array(65536)];
    this.n = 0;
  }
  push(value) {
    const chunk = this.chunks[this.chunks.length - 1];
    const i = this.n % 65536;
    chunk[i] = value;
    this.n += 1;
    if (i === 65535) this.chunks.push(new Float64Array(65536));
  }
  summary() {
    const all = new Float64Array(this.n);
    let offset = 0;
    for (const chunk of this.chunks) {
      const take = Math.min(65536, this.n - offset);
      if (take <= 0) break;
      all.set(chunk.subarray(0, take), offset);
      offset += take;
    }
    all.sort();
    const at = (q) => (this.n ? all[Math.min(this.n - 1, Math.floor(q * this.n))] : null);
    return { count: this.n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: this.n ? all[this.n - 1] : null };
  }
}

const stats = {
  handshakeOk: 0,
  handshakeFailed: 0,
  handshakeFailures: {}, // reason -> count
  hellos: 0,
  closedAfterOpen: 0,
  eventsByType: {},
  errorsByCode: {},
  delivered: 0, // unique (message, client) deliveries of this run's messages
  deliveredInWindow: 0, // ... received while sending was on
  duplicatesOrReordered: 0,
  foreignMessages: 0, // message events whose text is not ours
  closed1013: 0, // closed by the server with 1013 (fell behind) while sending or draining
  resumed: 0, // ... and reconnected with ?after=<last id> (hello received again)
  resumeFailed: 0, // ... whose reconnect failed
  deliveredByReplay: 0, // unique deliveries that came in a resume's replay
};
const latency = new Samples();
const handshakeTimes = new Samples();

// -- clients ----------------------------------------------------------------

const SENDERS = cfg.mode === 'idle' ? 0 : Math.min(cfg.senders, cfg.clients);
const TYPE_RE = /^\{\s*"type"\s*:\s*"([a-z_]+)"/;
const TEXT_RE = /"text"\s*:\s*"(\d+):(\d+):([\d.]+)"/;
const CODE_RE = /"code"\s*:\s*"([a-z_]+)"/;
const ID_RE = /"id"\s*:\s*(\d+)/;
const LAST_ID_RE = /"last_id"\s*:\s*(\d+)/;

const clients = [];
const sent = new Int32Array(SENDERS); // messages sent per sender
const rejected = new Int32Array(SENDERS); // error events a sender got back
const echoed = new Int32Array(SENDERS); // own messages a sender got back
let sending = false;
let sendStart = 0;
let sendEnd = Infinity;
let phase = 'connect';
let lastDelivery = 0;

function onMessage(client, data) {
  // Look at the head only: a presence list for 10,000 users is large, and
  // decoding it in full for every client would make the client the bottleneck.
  const head = data.toString('latin1', 0, Math.min(data.length, 48));
  const match = TYPE_RE.exec(head);
  const type = match ? match[1] : 'unknown';
  stats.eventsByType[type] = (stats.eventsByType[type] || 0) + 1;
  if (type === 'message') {
    const received = now();
    const text = TEXT_RE.exec(data.toString());
    if (!text) {
      stats.foreignMessages += 1;
      return;
    }
    const sender = Number(text[1]);
    const seq = Number(text[2]);
    const id = ID_RE.exec(data.toString('latin1', 0, Math.min(data.length, 64)));
    if (id) client.lastId = Math.max(client.lastId, Number(id[1]));
    if (sender >= SENDERS) {
      stats.foreignMessages += 1;
      return;
    }
    if (seq <= client.lastSeq[sender]) {
      stats.duplicatesOrReordered += 1;
      return;
    }
    client.lastSeq[sender] = seq;
    stats.delivered += 1;
    if (client.replaying) stats.deliveredByReplay += 1;
    lastDelivery = received;
    if (received <= sendEnd) stats.deliveredInWindow += 1;
    latency.push(received - Number(text[3]));
    if (sender === client.index) {
      echoed[sender] += 1;
      if (cfg.mode === 'saturation') sendNext(client);
    }
  } else if (type === 'hello') {
    const lastId = LAST_ID_RE.exec(data.toString());
    if (!client.hello && lastId) client.lastId = Number(lastId[1]);
    if (client.replaying === null) {
      client.replaying = true; // a resume: what comes before presence is the replay
      stats.resumed += 1;
    }
    if (!client.hello) {
      client.hello = true;
      stats.hellos += 1;
    }
  } else if (type === 'presence') {
    client.replaying = false;
  } else if (type === 'error') {
    const code = CODE_RE.exec(data.toString());
    const name = code ? code[1] : 'unknown';
    stats.errorsByCode[name] = (stats.errorsByCode[name] || 0) + 1;
    if (client.index < SENDERS) {
      rejected[client.index] += 1;
      if (cfg.mode === 'saturation') sendNext(client);
    }
  }
}

function connect(index) {
  return new Promise((resolve) => {
    const target = index % cfg.urls.length;
    const headers = { Origin: ORIGINS[target] };
    const session = cfg.sessions[index];
    if (session) headers.Cookie = `sessionid=${session}`;
    const options = {
      headers,
      perMessageDeflate: cfg.deflate,
      handshakeTimeout: cfg.handshakeTimeout * 1000,
      skipUTF8Validation: true, // the client's CPU is not what is measured
    };
    if (cfg.localAddresses.length) options.localAddress = cfg.localAddresses[index % cfg.localAddresses.length];
    const client = {
      index,
      ws: null,
      hello: false,
      open: false,
      lastSeq: new Int32Array(SENDERS).fill(-1),
      lastId: 0,
      replaying: false, // null: resuming, hello not yet in; true: replay until presence
    };
    const started = now();
    let settled = false;
    const fail = (reason) => {
      if (settled) return;
      settled = true;
      stats.handshakeFailed += 1;
      stats.handshakeFailures[reason] = (stats.handshakeFailures[reason] || 0) + 1;
      resolve(null);
    };
    const ws = new WebSocket(cfg.urls[target], options);
    client.ws = ws;
    ws.on('open', () => {
      settled = true;
      client.open = true;
      stats.handshakeOk += 1;
      handshakeTimes.push(now() - started);
      resolve(client);
    });
    ws.on('unexpected-response', (request, response) => {
      fail(`http_${response.statusCode}`);
      request.destroy();
    });
    ws.on('error', (err) => fail(err.code || err.message.slice(0, 40)));
    ws.on('close', (code) => {
      if (client.open) {
        closed(client, code);
      } else {
        fail('closed');
      }
    });
    ws.on('message', (data) => onMessage(client, data));
  });
}

function closed(client, code) {
  client.open = false;
  if (phase !== 'done') stats.closedAfterOpen += 1;
  if (code === 1013 && (phase === 'send' || phase === 'drain')) {
    stats.closed1013 += 1;
    if (cfg.resume) setTimeout(() => resume(client), cfg.resumeDelay * 1000 * (1 + Math.random()));
  }
}

function resume(client) {
  // The contract's way back after 1013: reconnect a little later, ask for what came after the last id.
  if (phase === 'done') return;
  const target = client.index % cfg.urls.length;
  const headers = { Origin: ORIGINS[target] };
  const session = cfg.sessions[client.index];
  if (session) headers.Cookie = `sessionid=${session}`;
  const options = { headers, perMessageDeflate: cfg.deflate, handshakeTimeout: cfg.handshakeTimeout * 1000, skipUTF8Validation: true };
  if (cfg.localAddresses.length) options.localAddress = cfg.localAddresses[client.index % cfg.localAddresses.length];
  const ws = new WebSocket(`${cfg.urls[target]}?after=${client.lastId}`, options);
  client.ws = ws;
  client.replaying = null;
  ws.on('open', () => {
    client.open = true;
  });
  let failed = false;
  const fail = () => {
    if (failed || client.open) return;
    failed = true;
    stats.resumeFailed += 1;
  };
  ws.on('unexpected-response', (request) => {
    fail();
    request.destroy();
  });
  ws.on('error', fail);
  ws.on('close', (code) => {
    if (client.open) closed(client, code); // else it never opened (resumeFailed, or an error)
  });
  ws.on('message', (data) => onMessage(client, data));
}

// -- sending ------------------------------------------------------------------

function sendOne(client) {
  const sender = client.index;
  if (!client.open) return false;
  const seq = sent[sender];
  sent[sender] += 1;
  client.ws.send(`{"type":"message","text":"${sender}:${seq}:${now().toFixed(3)}"}`);
  return true;
}

function sendNext(client) {
  if (sending && now() < sendEnd) sendOne(client);
}

async function runRate(senders) {
  // Message k is due at sendStart + k / rate, from sender k % S: an even
  // schedule that catches up (sends everything due) after a late timer.
  const interval = 1000 / cfg.rate;
  let k = 0;
  while (now() < sendEnd) {
    const due = Math.floor((now() - sendStart) / interval) + 1;
    while (k < due) {
      sendOne(senders[k % senders.length]);
      k += 1;
    }
    await sleep(Math.max(1, Math.min(interval, sendEnd - now()) - 1));
  }
}

async function runSaturation(senders) {
  for (const client of senders) for (let i = 0; i < cfg.window; i += 1) sendOne(client);
  while (now() < sendEnd) await sleep(Math.min(100, sendEnd - now()));
}

// -- main ---------------------------------------------------------------------

async function main() {
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const hardDeadline = now() + cfg.connectTimeout * 1000;

  // Connect with a bounded number of handshakes in flight.
  log(`connecting ${cfg.clients} clients to ${cfg.urls.join(', ')} (${cfg.connectConcurrency} in flight)`);
  const connectStart = now();
  let next = 0;
  let lastOpen = connectStart;
  const workers = [];
  for (let w = 0; w < Math.min(cfg.connectConcurrency, cfg.clients); w += 1) {
    workers.push(
      (async () => {
        while (next < cfg.clients && now() < hardDeadline) {
          const client = await connect(next++);
          if (client) {
            clients.push(client);
            lastOpen = now();
          }
        }
      })(),
    );
  }
  await Promise.race([Promise.all(workers), sleep(cfg.connectTimeout * 1000)]);
  const connectSeconds = (lastOpen - connectStart) / 1000;
  emit({ phase: 'handshakes_done' });
  log(`${stats.handshakeOk} open, ${stats.handshakeFailed} failed in ${connectSeconds.toFixed(2)} s`);

  const waitingForHello = () => clients.some((c) => c.open && !c.hello);
  while (waitingForHello() && now() < hardDeadline) await sleep(20);
  const helloSeconds = (now() - connectStart) / 1000;
  log(`${stats.hellos} hellos after ${helloSeconds.toFixed(2)} s`);
  await sleep(cfg.settle * 1000);
  emit({ phase: 'settled' });
  if (cfg.waitForRunner) {
    const lines = createInterface({ input: process.stdin });
    await Promise.race([new Promise((resolve) => lines.once('line', resolve)), sleep(120000)]);
    lines.close();
  }

  // Only clients that completed the handshake and got hello take part.
  const ready = clients.filter((c) => c.hello && c.open).sort((a, b) => a.index - b.index);
  const receivers = ready.length;
  const senders = ready.filter((c) => c.index < SENDERS);
  const cpuBefore = process.cpuUsage();
  if (cfg.mode !== 'idle' && senders.length) {
    phase = 'send';
    emit({ phase: 'send_start' });
    sending = true;
    sendStart = now();
    sendEnd = sendStart + cfg.duration * 1000;
    if (cfg.mode === 'rate') await runRate(senders);
    else await runSaturation(senders);
    sending = false;
    sendEnd = now();
    emit({ phase: 'send_done' });
    phase = 'drain';
    const accepted = () => sent.reduce((a, b) => a + b, 0) - rejected.reduce((a, b) => a + b, 0);
    const drainEnd = now() + cfg.drain * 1000;
    while (stats.delivered < accepted() * receivers && now() < drainEnd) await sleep(20);
  }
  phase = 'done';
  const cpuMessaging = process.cpuUsage(cpuBefore);
  emit({ phase: 'drained' });
  loopDelay.disable();

  const sentTotal = sent.reduce((a, b) => a + b, 0);
  const rejectedTotal = rejected.reduce((a, b) => a + b, 0);
  const sendSeconds = cfg.mode === 'idle' ? 0 : (sendEnd - sendStart) / 1000;
  const expected = (sentTotal - rejectedTotal) * receivers;
  const cpu = process.cpuUsage();
  const result = {
    mode: cfg.mode,
    clients: cfg.clients,
    receivers,
    senders: senders.length,
    handshakes_ok: stats.handshakeOk,
    handshakes_failed: stats.handshakeFailed,
    handshakes_not_attempted: cfg.clients - next, // the connect time limit came first
    handshake_failures: stats.handshakeFailures,
    handshake_seconds: connectSeconds,
    handshakes_per_s: connectSeconds > 0 ? stats.handshakeOk / connectSeconds : null,
    handshake_ms: handshakeTimes.summary(),
    hellos: stats.hellos,
    hello_seconds: helloSeconds,
    send_seconds: sendSeconds,
    messages_sent: sentTotal,
    messages_rejected: rejectedTotal,
    messages_echoed: echoed.reduce((a, b) => a + b, 0),
    expected_deliveries: expected,
    delivered: stats.delivered,
    delivered_in_window: stats.deliveredInWindow,
    // Deliveries owed when sending stopped: the backlog the server (and the clients) held then.
    backlog_at_send_end: expected - stats.deliveredInWindow,
    closed_1013: stats.closed1013,
    resumed: stats.resumed,
    resume_failed: stats.resumeFailed,
    delivered_by_replay: stats.deliveredByReplay,
    lost: expected - stats.delivered,
    loss_pct: expected ? (100 * (expected - stats.delivered)) / expected : null,
    offered_per_s: sendSeconds ? expected / sendSeconds : null,
    // Throughput includes the tail: a server that falls behind and catches up
    // during the drain is as slow as the time it took to deliver everything.
    delivered_per_s: sendSeconds ? stats.delivered / (Math.max(lastDelivery, sendEnd) - sendStart) * 1000 : null,
    delivery_seconds: sendSeconds ? (Math.max(lastDelivery, sendEnd) - sendStart) / 1000 : null,
    latency_ms: latency.summary(),
    duplicates_or_reordered: stats.duplicatesOrReordered,
    foreign_messages: stats.foreignMessages,
    closed_after_open: stats.closedAfterOpen,
    events_by_type: stats.eventsByType,
    errors_by_code: stats.errorsByCode,
    client_cpu_s: (cpu.user + cpu.system) / 1e6,
    client_cpu_messaging_s: (cpuMessaging.user + cpuMessaging.system) / 1e6,
    client_loop_delay_p99_ms: loopDelay.percentile(99) / 1e6,
  };
  emit({ result });
  for (const client of clients) client.ws.terminate();
  setTimeout(() => process.exit(0), 200);
}

main().catch((err) => {
  log(err.stack || String(err));
  process.exit(1);
});
