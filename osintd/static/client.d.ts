// Types for osintd's JavaScript client (GET /client.js). Served at GET /client.d.ts.

/** A server message: the decoded JSON object; see the README's protocol table for each type's fields. */
export interface ServerMessage {
  type: string;
  timestamp?: string;
  seq?: number;
  [field: string]: unknown;
}

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "offline" | "closed";

/** The connection's state changed; retryInMs is set while waiting to reconnect. */
export interface StateChange {
  readonly state: ConnectionState;
  readonly failedAttempts: number;
  readonly retryInMs: number | null;
  readonly reason: string | null;
}

/** Broadcasts firstMissing..lastMissing never arrived (unfiltered clients only). */
export interface Gap {
  readonly epoch: string | null;
  readonly firstMissing: number;
  readonly lastMissing: number;
  readonly missing: number;
  /** The type of the message that revealed the gap (a broadcast, or "heartbeat"). */
  readonly noticedBy: string;
}

/** The server could not replay what was missed: start again from snapshot. */
export interface Resync {
  readonly reason: string;
  readonly oldEpoch: string | null;
  readonly newEpoch: string;
  /** The resume point the client asked for. */
  readonly since: number | null;
  /** The snapshot message that follows (also delivered to "snapshot" handlers). */
  readonly snapshot: ServerMessage;
}

export interface ClientStats {
  state: ConnectionState;
  connects: number;
  reconnects: number;
  failedAttempts: number;
  disconnects: number;
  heartbeatTimeouts: number;
  gaps: number;
  missedMessages: number;
  resumes: number;
  resyncs: number;
  duplicatesDropped: number;
  handlerErrors: number;
  messagesByType: Record<string, number>;
  lastSeq: number | null;
  epoch: string | null;
  clientId: string | null;
}

export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** What the client needs of a WebSocket: the browser's, or Node's `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ClientOptions {
  /** Message types to receive (all when left out). */
  types?: string[] | string | null;
  /** Repository globs to receive (all when left out). */
  repos?: string[] | string | null;
  /** Resume from a point saved by an earlier run (both or neither). */
  since?: number | null;
  epoch?: string | null;
  /** Sent as ?token= to a server with client authentication on. */
  token?: string | null;
  /** Ask for a snapshot on a fresh connection (default true; a resync always brings one). */
  snapshot?: boolean;
  /** Required in Node, which has no global WebSocket before version 22: e.g. the `ws` package's export. */
  WebSocket?: WebSocketConstructor;
  heartbeatTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  connectTimeoutMs?: number;
  pingTimeoutMs?: number;
  /** A float in [0, 1) that drives the back-off jitter (default Math.random). */
  randomFraction?: () => number;
  /** Sees messages whose type has no handler of its own. */
  defaultHandler?: MessageHandler;
  /** Where the client reports; by default only handler errors, to console.error. */
  logger?: Logger;
}

export type MessageHandler = (message: ServerMessage) => void | Promise<void>;

export class HandshakeRefused extends Error {
  readonly statusCode: number;
  readonly detail: string;
  constructor(statusCode: number, message: string);
}

export class Backoff {
  constructor(baseMs?: number, capMs?: number, randomFraction?: () => number);
  failures: number;
  nextDelay(): number;
  reset(): void;
}

export interface Verdict {
  deliver: boolean;
  duplicate: boolean;
  gap: Gap | null;
  resync: Resync | null;
}

export class SequenceTracker {
  constructor(checkContinuity: boolean, since?: number | null, epoch?: string | null);
  checkContinuity: boolean;
  epoch: string | null;
  lastSeq: number | null;
  resumePoint(): { since: number; epoch: string } | null;
  connectionOpened(): { since: number; epoch: string } | null;
  subscriptionChanged(checkContinuity: boolean): void;
  observe(message: ServerMessage): Verdict;
}

export class LiveUpdatesClient {
  /** url defaults to this page's own server in a browser, else ws://localhost:8000/ws/live-updates. */
  constructor(url?: string, options?: ClientOptions);
  readonly url: string;
  types: string[] | null;
  repos: string[] | null;
  readonly stats: ClientStats;
  readonly filtered: boolean;
  readonly state: ConnectionState;
  readonly connected: boolean;
  readonly clientId: string | null;
  readonly lastSeq: number | null;
  readonly epoch: string | null;

  on(kind: "state", handler: (change: StateChange) => void): (change: StateChange) => void;
  on(kind: "gap", handler: (gap: Gap) => void | Promise<void>): (gap: Gap) => void | Promise<void>;
  on(kind: "resync", handler: (resync: Resync) => void | Promise<void>): (resync: Resync) => void | Promise<void>;
  on(kind: string, handler: MessageHandler): MessageHandler;
  off(kind: string, handler: (...args: any[]) => unknown): void;

  /** Connect and stay connected until close(); rejects with HandshakeRefused on a final refusal. */
  run(): Promise<void>;
  close(): Promise<void>;
  waitConnected(): Promise<void>;
  /** The round trip in ms, or null. */
  ping(timeoutMs?: number): Promise<number | null>;
  subscribe(subscription?: { types?: string[] | null; repos?: string[] | null }): void;
}
