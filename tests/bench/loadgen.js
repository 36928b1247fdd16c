#!/usr/bin/env node
// Load generator for tests/bench/run.py.
//
// Opens N WebSocket clients (the `ws` package, no compression) spread over W
// worker processes, counts what they receive and measures, for every
// `new_event`, the time from its `timestamp` (stamped by the server when the
// message was made) to its arrival here, on the same machine clock.
//
// Controlled over stdin/stdout with one JSON object per line:
//   stdout {"event":"ready", ...}     all clients connected (or failed)
//   stdin  {"cmd":"start"}            start a measuring window (counters reset)
//   stdout {"event":"started"}
//   stdin  {"cmd":"stop"}             end the window
//   stdout {"event":"stats", ...}     what the window saw, summed over workers
//   stdin  {"cmd":"quit"}             close every client and exit
// It also exits when stdin closes or after --max-seconds, whatever happens.
//
//   node loadgen.js --url ws://127.0.0.1:PORT/ws/live-updates --clients 1000
//                   [--workers 2] [--concurrency 64] [--max-seconds 300]
// --url may name several servers, comma-separated: each worker spreads its
// clients over them in turn (client i to URL i mod n), so they share evenly.
'use strict';

const { fork } = require('child_process');
const readline = require('readline');
const { performance } = require('perf_hooks');

// Latency histogram: bucket i holds latencies (microseconds) in [G^i, G^(i+1)).
const G = 1.01;
const LOG_G = Math.log(G);
const BUCKETS = Math.ceil(Math.log(1e9) / LOG_G) + 2; // up to ~1000 s

function parseArgs(argv) {
  const args = { workers: 2, concurrency: 64, 'max-seconds': 300 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--worker') { args.worker = true; continue; }
    if (!a.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${a}`);
    args[a.slice(2)] = argv[++i];
  }
  return args;
}

// ------------------------------------------------------------------ worker

function runWorker() {
  const WebSocket = require('ws');
  let clients = [];
  let newEvents;        // Uint32Array: new_event messages per client in the window
  let heartbeats;       // Uint32Array: heartbeats per client in the window
  let warned;           // Uint8Array: 1 if the client was told the server is overloaded (in the window)
  let win = null;       // the current window's counters
  let cpuAtStart = null;
  let tStart = 0;
  let closedTotal = 0;
  const closeCodes = {};

  function resetWindow() {
    win = {
      frames: 0, newEvent: 0, newEventBytes: 0, heartbeats: 0, negative: 0,
      maxLatencyUs: 0, hist: new Uint32Array(BUCKETS), closed: 0, closeCodes: {}, warnings: 0,
    };
    if (newEvents) { newEvents.fill(0); heartbeats.fill(0); warned.fill(0); }
    cpuAtStart = process.cpuUsage();
    tStart = performance.now();
  }
  resetWindow();

  // Timestamps look like 2026-11-26T13:13:37.015088+00:00; the seconds part is
  // parsed once per second, the microseconds every time.
  let lastPrefix = '';
  let lastPrefixMs = 0;
  const KEY = Buffer.from('"timestamp":"');
  const origin = performance.timeOrigin;

  function onMessage(index, data) {
    win.frames++;
    // Both servers put "type" first: {"type":"new_event",...
    const c0 = data[9];
    if (c0 === 0x6e /* n */ && data[10] === 0x65 && data[11] === 0x77 && data[12] === 0x5f) {
      win.newEvent++;
      win.newEventBytes += data.length;
      newEvents[index]++;
      const at = data.indexOf(KEY, 18);
      if (at < 0) return;
      const p = at + KEY.length;
      const prefix = data.latin1Slice(p, p + 19);
      if (prefix !== lastPrefix) {
        lastPrefix = prefix;
        lastPrefixMs = Date.parse(prefix + 'Z');
      }
      let micros = 0;
      for (let k = p + 20; k < p + 26; k++) micros = micros * 10 + (data[k] - 48);
      const createdUs = lastPrefixMs * 1000 + micros;
      const nowUs = (origin + performance.now()) * 1000;
      const lat = nowUs - createdUs;
      if (lat <= 1) { win.negative += lat < 0 ? 1 : 0; win.hist[0]++; return; }
      const b = Math.floor(Math.log(lat) / LOG_G);
      win.hist[b < BUCKETS ? b : BUCKETS - 1]++;
      if (lat > win.maxLatencyUs) win.maxLatencyUs = lat;
    } else if (c0 === 0x68 /* h */ && data[10] === 0x65 && data[11] === 0x61) { // heartbeat
      win.heartbeats++;
      heartbeats[index]++;
    } else if ((c0 === 0x65 /* error */ || c0 === 0x73 /* system_status */) &&
               (data.includes(OVERLOADED) || data.includes(SHEDDING))) {
      win.warnings++;
      warned[index] = 1;
    }
  }
  // osintd's error SERVER_OVERLOADED, or a system_status whose pipeline is "shedding".
  const OVERLOADED = Buffer.from('"SERVER_OVERLOADED"');
  const SHEDDING = Buffer.from('"pipeline":"shedding"');

  function connectAll(cfg) {
    const n = cfg.clients;
    const urls = cfg.url.split(',');
    newEvents = new Uint32Array(n);
    heartbeats = new Uint32Array(n);
    warned = new Uint8Array(n);
    clients = new Array(n).fill(null);
    const open = new Uint8Array(n);
    let next = 0, done = 0, ok = 0, failed = 0, retries = 0;
    const errors = {};
    const t0 = performance.now();
    const finish = () => {
      process.send({ type: 'connected', ok, failed, retries, errors,
                     seconds: (performance.now() - t0) / 1000 });
    };
    if (n === 0) { finish(); return; }
    const attempt = (index, tries) => {
      let opened = false;
      const ws = new WebSocket(urls[index % urls.length], {
        perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 15000,
      });
      clients[index] = ws;
      ws.on('open', () => {
        opened = true; open[index] = 1; ok++; done++;
        launch();
        if (done === n) finish();
      });
      ws.on('message', (data) => onMessage(index, data));
      ws.on('error', (err) => {
        if (opened) return;
        const key = String(err && (err.code || err.message)).slice(0, 80);
        errors[key] = (errors[key] || 0) + 1;
      });
      ws.on('close', (code) => {
        if (opened) {
          open[index] = 0;
          closedTotal++; win.closed++;
          win.closeCodes[code] = (win.closeCodes[code] || 0) + 1;
          closeCodes[code] = (closeCodes[code] || 0) + 1;
          return;
        }
        if (tries < 3) {  // a refused or reset handshake: try again a little later
          retries++;
          setTimeout(() => attempt(index, tries + 1), 250 * (tries + 1));
        } else {
          failed++; done++;
          launch();
          if (done === n) finish();
        }
      });
    };
    let inFlight = 0;
    const launch = () => {
      // keep at most cfg.concurrency handshakes in flight
      if (inFlight > 0) inFlight--;
      while (inFlight < cfg.concurrency && next < n) { inFlight++; attempt(next++, 0); }
    };
    inFlight = 0;
    const first = Math.min(cfg.concurrency, n);
    for (let i = 0; i < first; i++) { inFlight++; attempt(next++, 0); }
    // expose for stats
    runWorker.open = open;
  }

  function stats() {
    const cpu = process.cpuUsage(cpuAtStart);
    const open = runWorker.open || new Uint8Array(0);
    let openCount = 0, minNew = Infinity, maxNew = 0, minHb = Infinity, withTwoHb = 0, warnedCount = 0;
    for (let i = 0; warned && i < warned.length; i++) warnedCount += warned[i];
    for (let i = 0; i < open.length; i++) {
      if (!open[i]) continue;
      openCount++;
      if (newEvents[i] < minNew) minNew = newEvents[i];
      if (newEvents[i] > maxNew) maxNew = newEvents[i];
      if (heartbeats[i] < minHb) minHb = heartbeats[i];
      if (heartbeats[i] >= 2) withTwoHb++;
    }
    const hist = {};
    for (let i = 0; i < BUCKETS; i++) if (win.hist[i]) hist[i] = win.hist[i];
    return {
      type: 'stats', seconds: (performance.now() - tStart) / 1000,
      frames: win.frames, new_event: win.newEvent, new_event_bytes: win.newEventBytes,
      heartbeats: win.heartbeats, negative_latencies: win.negative, max_latency_us: win.maxLatencyUs,
      hist, closed_in_window: win.closed, close_codes_in_window: win.closeCodes,
      closed_total: closedTotal, open: openCount,
      min_new_event_per_client: openCount ? minNew : 0, max_new_event_per_client: maxNew,
      min_heartbeats_per_client: openCount ? minHb : 0, clients_with_2_heartbeats: withTwoHb,
      warnings: win.warnings, clients_warned: warnedCount,
      cpu_user_us: cpu.user, cpu_system_us: cpu.system,
    };
  }

  process.on('message', (msg) => {
    if (msg.cmd === 'connect') connectAll(msg);
    else if (msg.cmd === 'start') { resetWindow(); process.send({ type: 'started' }); }
    else if (msg.cmd === 'stop') process.send(stats());
    else if (msg.cmd === 'quit') {
      for (const ws of clients) if (ws) { try { ws.terminate(); } catch (e) { /* already gone */ } }
      setTimeout(() => process.exit(0), 50);
    }
  });
  process.on('disconnect', () => process.exit(0)); // the main process is gone
}

// -------------------------------------------------------------------- main

function runMain(args) {
  const url = args.url;
  const total = parseInt(args.clients, 10);
  const nWorkers = Math.max(1, Math.min(parseInt(args.workers, 10), total || 1));
  const concurrency = parseInt(args.concurrency, 10);
  const maxSeconds = parseFloat(args['max-seconds']);
  const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

  const workers = [];
  for (let w = 0; w < nWorkers; w++) {
    const share = Math.floor(total / nWorkers) + (w < total % nWorkers ? 1 : 0);
    const child = fork(__filename, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push({ child, share, pending: null });
  }

  let waiting = null; // { type, replies: [], resolve }
  const expect = (type) => new Promise((resolve) => { waiting = { type, replies: [], resolve }; });
  for (const w of workers) {
    w.child.on('message', (msg) => {
      if (waiting && msg.type === waiting.type) {
        waiting.replies.push(msg);
        if (waiting.replies.length === workers.length) { const r = waiting; waiting = null; r.resolve(r.replies); }
      }
    });
    w.child.on('exit', (code) => {
      if (!quitting) { out({ event: 'error', message: `worker ${w.child.pid} exited with ${code}` }); shutdown(1); }
    });
  }
  let quitting = false;
  const shutdown = (code) => {
    if (quitting) return;
    quitting = true;
    for (const w of workers) { try { w.child.send({ cmd: 'quit' }); } catch (e) { /* gone */ } }
    setTimeout(() => {
      for (const w of workers) { try { w.child.kill('SIGKILL'); } catch (e) { /* gone */ } }
      process.exit(code);
    }, 1500).unref();
    const poll = setInterval(() => {
      if (workers.every((w) => w.child.exitCode !== null || w.child.signalCode !== null)) {
        clearInterval(poll); process.exit(code);
      }
    }, 20);
  };
  setTimeout(() => { out({ event: 'error', message: `max-seconds ${maxSeconds} reached` }); shutdown(2); },
             maxSeconds * 1000).unref();

  (async () => {
    const connected = expect('connected');
    workers.forEach((w) => w.child.send({ cmd: 'connect', url, clients: w.share, concurrency }));
    const replies = await connected;
    const errors = {};
    for (const r of replies) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] || 0) + v;
    out({
      event: 'ready', connected: replies.reduce((s, r) => s + r.ok, 0),
      failed: replies.reduce((s, r) => s + r.failed, 0), retries: replies.reduce((s, r) => s + r.retries, 0),
      errors, connect_seconds: Math.max(...replies.map((r) => r.seconds)),
      pids: [process.pid, ...workers.map((w) => w.child.pid)],
    });
  })();

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    let msg;
    try { msg = JSON.parse(line); } catch (e) { return; }
    if (msg.cmd === 'start') {
      const p = expect('started');
      workers.forEach((w) => w.child.send({ cmd: 'start' }));
      await p;
      out({ event: 'started' });
    } else if (msg.cmd === 'stop') {
      const p = expect('stats');
      workers.forEach((w) => w.child.send({ cmd: 'stop' }));
      out(merge(await p));
    } else if (msg.cmd === 'quit') {
      shutdown(0);
    }
  });
  rl.on('close', () => shutdown(0));
}

function merge(parts) {
  const sum = (k) => parts.reduce((s, p) => s + p[k], 0);
  const hist = new Map();
  for (const p of parts) for (const [i, c] of Object.entries(p.hist)) hist.set(+i, (hist.get(+i) || 0) + c);
  const idx = [...hist.keys()].sort((a, b) => a - b);
  const n = idx.reduce((s, i) => s + hist.get(i), 0);
  const pct = (q) => {
    if (!n) return null;
    const rank = Math.ceil(q * n);
    let seen = 0;
    for (const i of idx) { seen += hist.get(i); if (seen >= rank) return Math.pow(G, i + 0.5) / 1000; }
    return null;
  };
  let mean = null;
  if (n) mean = idx.reduce((s, i) => s + hist.get(i) * Math.pow(G, i + 0.5), 0) / n / 1000;
  const codes = {};
  for (const p of parts) for (const [k, v] of Object.entries(p.close_codes_in_window)) codes[k] = (codes[k] || 0) + v;
  const seconds = Math.max(...parts.map((p) => p.seconds));
  const newEvent = sum('new_event');
  return {
    event: 'stats', seconds, workers: parts.length,
    frames: sum('frames'), new_event: newEvent, heartbeats: sum('heartbeats'),
    new_event_per_second: newEvent / seconds, frames_per_second: sum('frames') / seconds,
    avg_new_event_bytes: newEvent ? sum('new_event_bytes') / newEvent : null,
    latency_ms: { count: n, mean, p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), p999: pct(0.999),
                  max: Math.max(...parts.map((p) => p.max_latency_us)) / 1000 },
    negative_latencies: sum('negative_latencies'),
    open: sum('open'), closed_in_window: sum('closed_in_window'), close_codes_in_window: codes,
    closed_total: sum('closed_total'),
    min_new_event_per_client: Math.min(...parts.filter((p) => p.open).map((p) => p.min_new_event_per_client), Infinity),
    max_new_event_per_client: Math.max(...parts.map((p) => p.max_new_event_per_client)),
    min_heartbeats_per_client: Math.min(...parts.filter((p) => p.open).map((p) => p.min_heartbeats_per_client), Infinity),
    clients_with_2_heartbeats: sum('clients_with_2_heartbeats'),
    warnings: sum('warnings'), clients_warned: sum('clients_warned'),
    worker_cpu_seconds: (sum('cpu_user_us') + sum('cpu_system_us')) / 1e6,
    worker_cpu_user_seconds: sum('cpu_user_us') / 1e6, worker_cpu_system_seconds: sum('cpu_system_us') / 1e6,
    worker_cpu_percent_max: Math.max(...parts.map((p) => (p.cpu_user_us + p.cpu_system_us) / 1e4 / p.seconds)),
  };
}

const args = parseArgs(process.argv.slice(2));
if (args.worker) runWorker(); else runMain(args);
