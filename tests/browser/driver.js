#!/usr/bin/env node
// Drives Debian's Chromium (never a downloaded browser) with playwright-core for
// tests/test_dashboard.py.
//
// Protocol: one JSON command per line on stdin, one JSON answer per line on stdout
// ({"id", "ok", "result"} or {"id", "ok": false, "error"}). The test owns the daemon
// and the scenario; this script only operates the browser and reports what it saw:
//
//   {"cmd": "open", "url": U, "width": W, "height": H}    load the page
//   {"cmd": "phase", "name": N}                            label console messages from now on
//   {"cmd": "wait", "js": EXPR, "ms": MS}                  wait until EXPR is truthy, answer its value
//   {"cmd": "eval", "js": EXPR}                            answer the value of EXPR
//   {"cmd": "click", "selector": S}
//   {"cmd": "offline", "value": true|false}                emulate the browser going off/on line
//   {"cmd": "screenshot", "path": P}
//   {"cmd": "close"}                                       answer the console log, then exit
//
// Every console message of type error/warning, every uncaught page error and every
// crash is recorded with the phase it happened in. The browser is always closed:
// on "close", at the end of stdin, on a signal, or after --max-seconds.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const EXECUTABLE = option("--executable", process.env.CHROMIUM || "/usr/bin/chromium");
const MAX_SECONDS = Number(option("--max-seconds", "120"));

// Each "--browser-arg X" adds X to Chromium's command line (tests/test_proxy.py maps a
// host name and trusts its test certificate that way).
const EXTRA_ARGS = args.flatMap((arg, i) => (arg === "--browser-arg" && i + 1 < args.length ? [args[i + 1]] : []));
const LAUNCH_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ...EXTRA_ARGS,
];

let context = null;
let page = null;
let profile = null;
let phase = "start";
const consoleLog = [];   // {phase, kind, type, text, location}
let closing = null;

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function shutdown(code) {
  if (!closing) {
    closing = (async () => {
      try { if (context) await context.close(); } catch (_) { /* already gone */ }
      try { if (profile) fs.rmSync(profile, { recursive: true, force: true }); } catch (_) { /* best effort */ }
    })();
  }
  await closing;
  process.exit(code);
}

async function launch() {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "osintd-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: EXECUTABLE,
    headless: true,
    args: LAUNCH_ARGS,
    viewport: { width: 1360, height: 900 },
    timeout: 30000,
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("console", (msg) => {
    const type = msg.type();
    if (type === "error" || type === "warning") {
      const loc = msg.location();
      consoleLog.push({ phase, kind: "console", type, text: msg.text(), location: loc && loc.url ? `${loc.url}:${loc.lineNumber}` : "" });
    }
  });
  page.on("pageerror", (err) => consoleLog.push({ phase, kind: "pageerror", type: "error", text: String(err && err.stack || err) }));
  page.on("crash", () => consoleLog.push({ phase, kind: "crash", type: "error", text: "page crashed" }));
}

const commands = {
  async open({ url, width, height }) {
    if (!context) await launch();
    if (width && height) await page.setViewportSize({ width, height });
    const response = await page.goto(url, { waitUntil: "load", timeout: 15000 });
    return { status: response ? response.status() : null, csp: response ? response.headers()["content-security-policy"] || null : null };
  },
  async phase({ name }) {
    phase = String(name);
    return phase;
  },
  async wait({ js, ms }) {
    // Polls with page.evaluate (the DevTools protocol, which the page's CSP does not govern);
    // page.waitForFunction would compile the expression inside the page, which 'unsafe-eval' forbids.
    const deadline = Date.now() + (ms || 10000);
    for (;;) {
      const value = await page.evaluate(js);
      if (value) return value;
      if (Date.now() >= deadline) throw new Error(`still ${JSON.stringify(value)} after ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  },
  async eval({ js }) {
    return page.evaluate(js);
  },
  async click({ selector }) {
    await page.click(selector, { timeout: 5000 });
    return true;
  },
  async offline({ value }) {
    await context.setOffline(Boolean(value));
    return Boolean(value);
  },
  async screenshot({ path: file }) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
    return file;
  },
  async close() {
    return { console: consoleLog };
  },
};

async function main() {
  const timer = setTimeout(() => {
    process.stderr.write(`driver: no end after ${MAX_SECONDS} s, closing the browser\n`);
    shutdown(3);
  }, MAX_SECONDS * 1000);
  timer.unref();
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => shutdown(4));

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let cmd;
    try { cmd = JSON.parse(line); } catch (err) { send({ ok: false, error: `bad command: ${err.message}` }); continue; }
    const fn = commands[cmd.cmd];
    if (!fn) { send({ id: cmd.id, ok: false, error: `unknown command ${cmd.cmd}` }); continue; }
    try {
      if (cmd.cmd !== "open" && cmd.cmd !== "phase" && cmd.cmd !== "close" && !page) throw new Error("no page: send open first");
      const result = await fn(cmd);
      send({ id: cmd.id, ok: true, result });
    } catch (err) {
      send({ id: cmd.id, ok: false, error: String(err && err.message || err) });
    }
    if (cmd.cmd === "close") break;
  }
  await shutdown(0);
}

main().catch((err) => {
  process.stderr.write(`driver: ${err && err.stack || err}\n`);
  shutdown(1);
});
