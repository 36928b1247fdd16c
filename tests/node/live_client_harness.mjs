#!/usr/bin/env node
// Runs osintd's JavaScript client (osintd/static/client.js) in Node with the `ws` package,
// for tests/test_client_resume.py, which runs the same scenarios against the Python clients.
//
//   node live_client_harness.mjs CLIENT_MODULE CONFIG_JSON
//
// CLIENT_MODULE is a copy of client.js named *.mjs (Node before 22 does not detect ES
// module syntax in a .js file outside a "type": "module" package). CONFIG_JSON is
// {"url", "options"}; "randomFraction": 0 in options means "always 0".
//
// stdout: one JSON line per thing the client hands its handlers, in order:
//   {"kind": "message"|"state"|"gap"|"resync", "item": ...}
// and, when the client has ended, {"kind": "stats", "item": stats} then
// {"kind": "ended", "error": null | {"statusCode", "message"}}.
// stdin: "close" closes the client; the end of stdin does too.
import readline from "node:readline";
import { pathToFileURL } from "node:url";
import WebSocket from "ws";

const [modulePath, configText] = process.argv.slice(2);
const { LiveUpdatesClient } = await import(pathToFileURL(modulePath).href);
const config = JSON.parse(configText);
const options = { ...config.options, WebSocket };
if (options.randomFraction !== undefined) {
  const fraction = options.randomFraction;
  options.randomFraction = () => fraction;
}

const emit = (kind, item) => process.stdout.write(JSON.stringify({ kind, item }) + "\n");
const client = new LiveUpdatesClient(config.url, options);
client.on("*", (message) => emit("message", message));
for (const event of ["state", "gap", "resync"]) client.on(event, (record) => emit(event, record));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => { if (line.trim() === "close") client.close(); });
lines.on("close", () => client.close());

let error = null;
try {
  await client.run();
} catch (refused) {
  error = { statusCode: refused.statusCode ?? null, message: String(refused.message) };
}
emit("stats", client.stats);
process.stdout.write(JSON.stringify({ kind: "ended", error }) + "\n");
process.exit(0);
