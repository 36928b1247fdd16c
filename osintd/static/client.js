// osintd live-updates client: an ES module for browsers and Node >= 18.
//
// Served by osintd at GET /client.js (types at GET /client.d.ts). It follows the same
// rules as the Python clients (osintd/client.py for trio, osintd/aio.py for asyncio;
// the rules are written out in osintd/client.py's docstring):
//
// * It remembers the epoch and the last seq it has accounted for; every reconnect asks
//   for ?since=SEQ&epoch=E, so the server replays what was missed ("resumed",
//   recovered: true) or says it cannot (recovered: false) and sends a snapshot, which
//   becomes a "resync" event: throw away what was built from earlier messages.
// * A broadcast whose seq is not above the last one accounted for is a duplicate and
//   is dropped: no broadcast reaches the handlers twice, across reconnects too.
// * An unfiltered client (no types, no repos) checks continuity: a seq more than one
//   above the last, or a heartbeat naming a seq above it, is a "gap" event; the message
//   that revealed it is not delivered and the client reconnects with resume, so the
//   server replays the missing messages and that one, in order. A filtered client
//   skips seqs by design: it only advances its resume point by heartbeats.
// * Nothing received for heartbeatTimeoutMs (60 s): the connection is dead, a new one
//   is made. Back-off: the n-th consecutive failed attempt waits a random time between
//   half and all of min(backoffCapMs, backoffBaseMs * 2**n); a connection on which the
//   server's "connection" message arrived resets the count.
// * A handshake refused for good (400, 401, 403, 404, 421, 426 ...) ends run() with a
//   HandshakeRefused. Only Node's `ws` reports the status; a browser's WebSocket hides
//   it, so there every failed handshake is retried.
// * In a browser that goes off line the client waits for the "online" event instead of
//   retrying (state "offline"), and then tries at once.
//
// Usage:
//   import { LiveUpdatesClient } from "/client.js";     // Node: see README "Clients"
//   const client = new LiveUpdatesClient("ws://localhost:8000/ws/live-updates");
//   client.on("new_event", (m) => console.log(m.title));
//   client.run();                                        // until client.close()
//
// Handlers run one at a time in arrival order (an async handler is awaited before the
// next message); one that throws is reported to logger.error and the next message is
// delivered anyway. "*" sees every server message after its type's own handlers;
// options.defaultHandler sees messages whose type has no handler. "state", "gap" and
// "resync" are the client's own events and receive records, not messages.

const CONTROL_TYPES = new Set(["connection", "snapshot", "heartbeat", "resumed"]);
const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
const OWN_KEYS = new Set(["types", "repos", "since", "epoch", "snapshot", "token"]);
const SILENT_LOGGER = Object.freeze({ debug() {}, info() {}, warn() {}, error: (...args) => console.error(...args) });

/** The server answered the WebSocket handshake with an HTTP error that retrying will not fix. */
export class HandshakeRefused extends Error {
  constructor(statusCode, message) {
    super(`server refused the connection: ${statusCode} ${message}`.trim());
    this.name = "HandshakeRefused";
    this.statusCode = statusCode;
    this.detail = message;
  }
}

/** Jittered exponential back-off (milliseconds). */
export class Backoff {
  constructor(baseMs = 1000, capMs = 30000, randomFraction = Math.random) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.randomFraction = randomFraction;
    this.failures = 0;
  }

  nextDelay() {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 62));
    this.failures += 1;
    return ceiling * (0.5 + 0.5 * this.randomFraction());
  }

  reset() {
    this.failures = 0;
  }
}

function seqOf(message) {
  return Number.isInteger(message.seq) ? message.seq : null;
}

/** The resume point and the rules that judge each message against it; no I/O. */
export class SequenceTracker {
  constructor(checkContinuity, since = null, epoch = null) {
    this.checkContinuity = checkContinuity;
    this.epoch = epoch ?? null;
    this.lastSeq = epoch != null && since != null ? since : null;
    this._resuming = false;
    this._snapshotIsBaseline = false;
    this._refusal = null;
    this._rebase = false;
  }

  resumePoint() {
    return this.epoch === null || this.lastSeq === null ? null : { since: this.lastSeq, epoch: this.epoch };
  }

  /** A new connection is being made: the resume point it should ask for, or null. */
  connectionOpened() {
    const point = this.resumePoint();
    this._resuming = point !== null;
    this._snapshotIsBaseline = point === null;
    this._refusal = null;
    return point;
  }

  /** The subscription changed on a live connection: the next seq is a new baseline. */
  subscriptionChanged(checkContinuity) {
    this.checkContinuity = checkContinuity;
    this._rebase = true;
  }

  /** What to do with one message: {deliver, duplicate, gap, resync}. */
  observe(message) {
    const kind = message.type;
    const seq = seqOf(message);
    if (kind === "connection") {
      if (!this._resuming && seq !== null && typeof message.epoch === "string") {
        this.epoch = message.epoch;
        this.lastSeq = seq;
      }
      return verdict(true);
    }
    if (kind === "resumed") {
      if (!message.recovered) this._refusal = String(message.reason || "the server could not resume");
      return verdict(true);
    }
    if (kind === "snapshot") return this._snapshot(message, seq);
    if (seq === null || this.lastSeq === null) {
      if (seq !== null && kind !== "heartbeat") this.lastSeq = seq;
      return verdict(true);
    }
    if (this._rebase && seq > this.lastSeq) {
      this._rebase = false;
      this.lastSeq = seq;
      return verdict(true);
    }
    if (kind === "heartbeat") {
      if (seq > this.lastSeq) {
        if (this.checkContinuity) return verdict(false, { gap: makeGap(this.epoch, this.lastSeq + 1, seq, kind) });
        this.lastSeq = seq;   // everything up to it was either delivered or filtered out
      }
      return verdict(true);
    }
    if (seq <= this.lastSeq) return verdict(false, { duplicate: true });
    if (this.checkContinuity && seq > this.lastSeq + 1) {
      return verdict(false, { gap: makeGap(this.epoch, this.lastSeq + 1, seq - 1, String(kind)) });
    }
    this.lastSeq = seq;
    return verdict(true);
  }

  _snapshot(message, seq) {
    if (typeof message.epoch !== "string" || seq === null) return verdict(true);
    let resync = null;
    if (!this._snapshotIsBaseline) {
      resync = Object.freeze({ reason: this._refusal || "the server sent a new snapshot", oldEpoch: this.epoch,
                               newEpoch: message.epoch, since: this.lastSeq, snapshot: message });
    }
    this._snapshotIsBaseline = false;
    this._resuming = false;
    this._rebase = false;
    this.epoch = message.epoch;
    this.lastSeq = seq;
    return verdict(true, { resync });
  }
}

function verdict(deliver, { duplicate = false, gap = null, resync = null } = {}) {
  return { deliver, duplicate, gap, resync };
}

function makeGap(epoch, firstMissing, lastMissing, noticedBy) {
  return Object.freeze({ epoch, firstMissing, lastMissing, noticedBy, missing: lastMissing - firstMissing + 1 });
}

function splitList(value) {
  if (value == null) return null;
  const items = typeof value === "string" ? value.split(",") : Array.from(value);
  return items.map((item) => String(item).trim()).filter((item) => item);
}

function encodeValue(value) {
  return encodeURIComponent(value).replace(/%2C/gi, ",").replace(/%2F/gi, "/").replace(/%3F/gi, "?")
    .replace(/%5B/gi, "[").replace(/%5D/gi, "]");
}

function defaultUrl() {
  const where = globalThis.location;
  if (where && /^https?:$/.test(where.protocol)) {
    return (where.protocol === "https:" ? "wss://" : "ws://") + where.host + "/ws/live-updates";
  }
  return "ws://localhost:8000/ws/live-updates";
}

function newStats() {
  return { state: "idle", connects: 0, reconnects: 0, failedAttempts: 0, disconnects: 0, heartbeatTimeouts: 0,
           gaps: 0, missedMessages: 0, resumes: 0, resyncs: 0, duplicatesDropped: 0, handlerErrors: 0,
           messagesByType: {}, lastSeq: null, epoch: null, clientId: null };
}

function describeClose(code, reason) {
  if (code == null) return "closed";
  return reason ? `closed with ${code} ${reason}` : `closed with ${code}`;
}

// Node's `ws` reports a refused handshake as "Unexpected server response: 404".
function refusedStatus(errorEvent) {
  if (!errorEvent) return null;
  const text = String(errorEvent.message || (errorEvent.error && errorEvent.error.message) || "");
  const found = /Unexpected server response: (\d{3})/.exec(text);
  return found ? Number(found[1]) : null;
}

function deferred() {
  let resolve;
  const promise = new Promise((done) => { resolve = done; });
  return { promise, resolve };
}

/** One subscription to osintd's live updates that reconnects and resumes by itself. */
export class LiveUpdatesClient {
  constructor(url = defaultUrl(), options = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") throw new TypeError(`${url} is not a ws:// or wss:// URL`);
    const params = parsed.searchParams;
    const types = options.types !== undefined ? splitList(options.types) : splitList(params.get("types"));
    const repos = options.repos !== undefined ? splitList(options.repos) : splitList(params.get("repos"));
    this.url = url;
    this.types = types;
    this.repos = repos;
    this.options = {
      heartbeatTimeoutMs: 60000, backoffBaseMs: 1000, backoffCapMs: 30000, connectTimeoutMs: 10000,
      pingTimeoutMs: 5000,
      snapshot: options.snapshot ?? !["0", "false"].includes(params.get("snapshot") ?? ""),
      ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)),
    };
    this._base = parsed.search.slice(1).split("&").filter((part) => {
      if (!part) return false;
      const key = decodeURIComponent(part.split("=")[0].replace(/\+/g, " "));
      return !OWN_KEYS.has(key) || (key === "token" && options.token == null);
    });
    parsed.search = "";
    this._address = parsed.toString();
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("no WebSocket here: pass one, e.g. new LiveUpdatesClient(url, { WebSocket: (await import('ws')).default })");
    }
    this._logger = options.logger || SILENT_LOGGER;
    this.stats = newStats();
    this._tracker = new SequenceTracker(!this.filtered, options.since ?? null, options.epoch ?? null);
    this.stats.lastSeq = this._tracker.lastSeq;
    this.stats.epoch = this._tracker.epoch;
    this._backoff = new Backoff(this.options.backoffBaseMs, this.options.backoffCapMs, options.randomFraction || Math.random);
    this._handlers = new Map();
    this._defaultHandler = options.defaultHandler || null;
    this._ws = null;
    this._pongWaiters = [];
    this._connected = deferred();
    this._stopped = deferred();
    this._running = false;
    this._closing = false;
    this._established = false;
    this._endConnection = null;     // ends the current attempt (close())
    this._wake = null;              // ends the wait between attempts (close(), "online")
    this._retryTimer = null;
  }

  /** True when this client asked for less than everything (it sees seq gaps by design). */
  get filtered() { return this.types !== null || this.repos !== null; }
  get state() { return this.stats.state; }
  get connected() { return this.stats.state === "connected"; }
  get clientId() { return this.stats.clientId; }
  get lastSeq() { return this._tracker.lastSeq; }
  get epoch() { return this._tracker.epoch; }

  /** Call handler for each message of type kind ("*": every message; "state", "gap",
   *  "resync": the client's own events). Returns the handler. */
  on(kind, handler) {
    if (typeof handler !== "function") throw new TypeError("on(kind, handler) needs a function");
    if (!this._handlers.has(kind)) this._handlers.set(kind, []);
    this._handlers.get(kind).push(handler);
    return handler;
  }

  off(kind, handler) {
    const list = this._handlers.get(kind);
    const at = list ? list.indexOf(handler) : -1;
    if (at >= 0) list.splice(at, 1);
  }

  /** Connect, and stay connected (reconnecting as needed) until close(). Rejects with
   *  HandshakeRefused when the server refuses the handshake for good. */
  async run() {
    if (this._running) throw new Error("this client is already running");
    this._running = true;
    this._stopped = deferred();
    const onlineTarget = typeof globalThis.addEventListener === "function" ? globalThis : null;
    const online = () => { if (this._wake) { this._backoff.reset(); this._wake(); } };
    const offline = () => {
      if (!this._wake) return;   // an attempt in progress fails, and _pause sees navigator.onLine
      clearTimeout(this._retryTimer);
      this._setState("offline", { reason: "the browser is off line" });
    };
    if (onlineTarget) {
      onlineTarget.addEventListener("online", online);
      onlineTarget.addEventListener("offline", offline);
    }
    try {
      while (!this._closing) {
        const ended = await this._oneConnection();
        if (ended.refused) throw ended.refused;
        if (this._closing) break;
        await this._pause(ended);
      }
    } finally {
      if (onlineTarget) {
        onlineTarget.removeEventListener("online", online);
        onlineTarget.removeEventListener("offline", offline);
      }
      this._running = false;
      this._setState("closed");
      this._stopped.resolve();
    }
  }

  /** Close the connection (code 1000) and make run() end; resolves once it has. */
  async close() {
    this._closing = true;
    if (this._endConnection) this._endConnection({ reason: "closed by the client" });
    if (this._wake) this._wake();
    if (this._running) await this._stopped.promise;
  }

  /** Resolves once a connection is up (the server's "connection" message arrived). */
  waitConnected() {
    return this._connected.promise;
  }

  /** Send {"type": "ping"}: the round trip in ms, or null when not connected or no pong came in time. */
  ping(timeoutMs = this.options.pingTimeoutMs) {
    const ws = this._ws;
    if (!ws) return Promise.resolve(null);
    const started = now();
    return new Promise((resolve) => {
      const waiter = (gotPong) => {
        clearTimeout(timer);
        const at = this._pongWaiters.indexOf(waiter);
        if (at >= 0) this._pongWaiters.splice(at, 1);
        resolve(gotPong ? now() - started : null);
      };
      const timer = setTimeout(() => waiter(false), timeoutMs);
      this._pongWaiters.push(waiter);
      try { ws.send('{"type":"ping"}'); } catch (_) { waiter(false); }
    });
  }

  /** Change what this client receives, on the open connection and on every later one.
   *  null (or leaving a key out) means "all". */
  subscribe({ types = null, repos = null } = {}) {
    this.types = splitList(types);
    this.repos = splitList(repos);
    this._tracker.subscriptionChanged(!this.filtered);
    const ws = this._ws;
    if (ws) {
      const message = { type: "subscribe" };
      if (this.types !== null) message.types = this._askedTypes();
      if (this.repos !== null) message.repos = this.repos;
      ws.send(JSON.stringify(message));
    }
  }

  // ------------------------------------------------------------ connections

  _askedTypes() {
    // Heartbeats keep the connection known to be alive: asked for even when not wanted.
    return this.types.includes("heartbeat") ? this.types : [...this.types, "heartbeat"];
  }

  _deliversHeartbeats() {
    return this.types === null || this.types.includes("heartbeat");
  }

  _connectUrl(resume) {
    const query = [...this._base];
    if (this.types !== null) query.push("types=" + encodeValue(this._askedTypes().join(",")));
    if (this.repos !== null) query.push("repos=" + encodeValue(this.repos.join(",")));
    if (resume) query.push("since=" + resume.since, "epoch=" + encodeValue(resume.epoch));
    else if (!this.options.snapshot) query.push("snapshot=0");
    if (this.options.token != null) query.push("token=" + encodeValue(String(this.options.token)));
    return this._address + (query.length ? "?" + query.join("&") : "");
  }

  async _pause(ended) {
    let delay = this._backoff.nextDelay();
    if (ended.retryAfterMs != null) delay = Math.max(delay, ended.retryAfterMs);
    const woken = new Promise((resolve) => { this._wake = resolve; });
    if (globalThis.navigator && globalThis.navigator.onLine === false) {
      this._logger.warn(`connection to ${this.url} ended (${ended.reason}); waiting to be on line`);
      this._setState("offline", { reason: ended.reason });
    } else {
      this._logger.warn(`connection to ${this.url} ended (${ended.reason}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
      this._setState("reconnecting", { retryInMs: delay, reason: ended.reason });
      this._retryTimer = setTimeout(() => this._wake && this._wake(), delay);
    }
    await woken;
    clearTimeout(this._retryTimer);
    this._wake = null;
  }

  _oneConnection() {
    return new Promise((resolve) => {
      const url = this._connectUrl(this._tracker.connectionOpened());
      this._established = false;
      this._setState(this.stats.connects === 0 ? "connecting" : "reconnecting");
      const inbox = [];
      let ws = null, opened = false, done = false, pumping = false, closedWith = null, lastError = null;
      let connectTimer = null, silenceTimer = null;

      const finish = (ended, closeSocket = true) => {
        if (done) return;
        done = true;
        clearTimeout(connectTimer);
        clearTimeout(silenceTimer);
        this._endConnection = null;
        this._ws = null;
        if (ws) {
          ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
          ws.onerror = () => {};  // a late error of a socket given up on is not news
          if (closeSocket && ws.readyState <= 1) {
            try { ws.close(1000); } catch (_) { /* already closing */ }
          }
        }
        for (const waiter of [...this._pongWaiters]) waiter(false);
        if (this._established) {
          this.stats.disconnects += 1;
          this._connected = deferred();
        } else {
          this.stats.failedAttempts += 1;
        }
        resolve(ended);
      };
      this._endConnection = finish;

      const armSilence = () => {
        clearTimeout(silenceTimer);
        const timeout = this.options.heartbeatTimeoutMs;
        silenceTimer = setTimeout(() => {
          this.stats.heartbeatTimeouts += 1;
          this._logger.warn(`nothing received for ${timeout / 1000} s: treating the connection as dead`);
          finish({ reason: `nothing received for ${timeout / 1000} s` });
        }, timeout);
      };

      const pump = async () => {
        if (pumping) return;
        pumping = true;
        while (inbox.length && !done) {
          const message = this._decode(inbox.shift());
          if (message === null) continue;
          const gap = await this._accept(message);
          if (gap && !done) {
            finish({ reason: `missed seq ${gap.firstMissing}..${gap.lastMissing}; resuming` });
          }
        }
        pumping = false;
        if (!done && closedWith && !inbox.length) finish(closedWith, false);
      };

      try {
        ws = new this._WebSocket(url);
      } catch (error) {
        finish({ reason: `cannot connect: ${error && error.message || error}` });
        return;
      }
      connectTimer = setTimeout(() => finish({ reason: `handshake took over ${this.options.connectTimeoutMs / 1000} s` }),
                                this.options.connectTimeoutMs);
      ws.onopen = () => {
        opened = true;
        clearTimeout(connectTimer);
        this._ws = ws;
        armSilence();
      };
      ws.onmessage = (event) => {
        armSilence();
        inbox.push(event.data);
        pump();
      };
      ws.onerror = (event) => { lastError = event; };
      ws.onclose = (event) => {
        clearTimeout(silenceTimer);
        this._ws = null;
        if (!opened) {
          const status = refusedStatus(lastError);
          if (status !== null && !RETRYABLE_STATUS.has(status)) {
            finish({ reason: `refused: ${status}`, refused: new HandshakeRefused(status, "") }, false);
          } else {
            finish({ reason: status !== null ? `refused: ${status}` : "cannot connect" }, false);
          }
          return;
        }
        closedWith = { reason: describeClose(event.code, event.reason) };
        if (!pumping) pump();
      };
    });
  }

  _decode(data) {
    if (typeof data !== "string") {
      this._logger.warn("ignored a binary frame");
      return null;
    }
    let message;
    try { message = JSON.parse(data); } catch (_) {
      this._logger.warn(`ignored a frame that is not JSON: ${data.slice(0, 80)}`);
      return null;
    }
    if (!message || typeof message !== "object" || typeof message.type !== "string") {
      this._logger.warn(`ignored a message without a type: ${data.slice(0, 80)}`);
      return null;
    }
    return message;
  }

  /** Judge, count and deliver one message; returns the gap it revealed, if any. */
  async _accept(message) {
    const kind = message.type;
    const verdict = this._tracker.observe(message);
    this.stats.lastSeq = this._tracker.lastSeq;
    this.stats.epoch = this._tracker.epoch;
    if (kind === "connection") {
      this._connectionEstablished(message);
    } else if (kind === "pong") {
      const waiter = this._pongWaiters[0];
      if (waiter) waiter(true);
    } else if (kind === "resumed") {
      if (message.recovered) this.stats.resumes += 1;
      else this._logger.warn(`resume refused: ${message.reason}`);
    }
    if (verdict.gap) {
      this.stats.gaps += 1;
      this.stats.missedMessages += verdict.gap.missing;
      this._logger.warn(`gap in seq: ${verdict.gap.missing} message(s) missing, noticed by a ${verdict.gap.noticedBy}`);
      await this._emit("gap", verdict.gap);
      return verdict.gap;
    }
    if (verdict.duplicate) {
      this.stats.duplicatesDropped += 1;
      return null;
    }
    if (verdict.resync) {
      this.stats.resyncs += 1;
      await this._emit("resync", verdict.resync);
    }
    this.stats.messagesByType[kind] = (this.stats.messagesByType[kind] || 0) + 1;
    if (kind === "heartbeat" && !this._deliversHeartbeats()) return null;
    await this._dispatch(message);
    return null;
  }

  _connectionEstablished(message) {
    this._established = true;
    this.stats.connects += 1;
    if (this.stats.connects > 1) this.stats.reconnects += 1;
    this.stats.clientId = message.client_id ?? null;
    this._backoff.reset();
    this._logger.info(`connected to ${this.url} as ${message.client_id} (epoch ${message.epoch}, seq ${message.seq})`);
    this._setState("connected");
    this._connected.resolve();
  }

  // --------------------------------------------------------------- handlers

  async _dispatch(message) {
    const own = this._handlers.get(message.type);
    if (own && own.length) {
      for (const handler of [...own]) await this._call(handler, message, message.type);
    } else if (this._defaultHandler) {
      await this._call(this._defaultHandler, message, message.type);
    }
    for (const handler of [...(this._handlers.get("*") || [])]) await this._call(handler, message, message.type);
  }

  async _emit(event, record) {
    for (const handler of [...(this._handlers.get(event) || [])]) await this._call(handler, record, event);
  }

  async _call(handler, argument, kind) {
    try {
      const result = handler(argument);
      if (result && typeof result.then === "function") await result;
    } catch (error) {
      this.stats.handlerErrors += 1;
      this._logger.error(`handler for ${kind} threw`, error);
    }
  }

  _setState(state, { retryInMs = null, reason = null } = {}) {
    this.stats.state = state;
    const change = Object.freeze({ state, failedAttempts: this._backoff.failures, retryInMs, reason });
    // Synchronous: states also change where nothing may wait (while closing).
    for (const handler of [...(this._handlers.get("state") || [])]) {
      try {
        handler(change);
      } catch (error) {
        this.stats.handlerErrors += 1;
        this._logger.error("handler for state threw", error);
      }
    }
  }
}

function now() {
  return globalThis.performance ? globalThis.performance.now() : Date.now();
}
