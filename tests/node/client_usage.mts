// Type-checked by tests/test_client_resume.py (tsc --noEmit) against osintd/static/client.d.ts:
// what the README shows a TypeScript user writing must compile, and misuse must not.
import {
  Gap, HandshakeRefused, LiveUpdatesClient, Resync, ServerMessage, StateChange, WebSocketLike,
} from "../../osintd/static/client.js";

declare const NodeWebSocket: new (url: string) => WebSocketLike;   // e.g. the ws package's export

const client = new LiveUpdatesClient("ws://localhost:8000/ws/live-updates", {
  types: ["new_event", "ranking_change"],
  repos: ["openai/*"],
  since: 41,
  epoch: "a1b2c3",
  token: "secret",
  WebSocket: NodeWebSocket,
  backoffBaseMs: 500,
});
client.on("new_event", (m: ServerMessage) => console.log(m.type, m.seq));
client.on("gap", (gap: Gap) => console.log(gap.firstMissing, gap.lastMissing, gap.noticedBy));
client.on("resync", async (resync: Resync) => console.log(resync.newEpoch, resync.snapshot.seq));
client.on("state", (change: StateChange) => console.log(change.state, change.retryInMs));
client.subscribe({ types: ["new_event"] });

async function main(): Promise<void> {
  const rtt: number | null = await client.ping();
  const seq: number | null = client.lastSeq;
  console.log(rtt, seq, client.stats.duplicatesDropped, client.epoch);
  try {
    await client.run();
  } catch (error) {
    if (error instanceof HandshakeRefused) console.log(error.statusCode);
  }
  await client.close();
}
main();

// @ts-expect-error: options are checked (a misspelt one is an error)
new LiveUpdatesClient("ws://h/ws/live-updates", { heartbeatTimeout: 60 });
// @ts-expect-error: a gap is not a message
client.on("gap", (gap: Gap) => gap.event_id.toUpperCase());
