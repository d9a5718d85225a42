/**
 * Many SSE subscribers on one generation (not a test): time to the first event after subscribing,
 * and the delay from the worker's write to each client, for 100, 300 and 500 subscribers; also
 * whether every subscriber got every preview set.
 *   npm run bench:subscribers [-- --subscribers 100,300,500]
 * A reference LISTEN connection reads the row at each notification: the time it first sees a
 * tokensDone value stands for the write's time (it is at most a notification later).
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { createClient } from "graphql-sse";
import pg from "pg";
import { startApp, type App } from "../src/app.ts";
import { modelFolder } from "../src/engine/settings.ts";
import { CHANNEL } from "../src/jobs/events.ts";
import { create, createTestDatabase, stopEmbedded } from "../test/server-helpers.ts";

const { values } = parseArgs({ options: { subscribers: { type: "string", default: "100,300,500" }, model: { type: "string" } } });
const levels = values.subscribers!.split(",").map(Number);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
const QUERY = `subscription($id: ID!) { generationEvents(id: $id) { __typename ... on Progress { tokensDone previews { index } } } }`;

async function run(n: number): Promise<string> {
  const db = await createTestDatabase();
  const common = { port: 0, databaseUrl: db.url, dataDir: "unused", embeddedPort: 0, modelFolder: modelFolder(values.model), provider: "cpu" as const, log: () => {} };
  const api = await startApp({ ...common, role: "api" });
  const g = await create(api, { prompt: "a big red circle in the centre, blue background", count: 9, seed: 1, previewInterval: 16 });
  const uuid = Buffer.from(g.id, "base64").toString().split(":")[1]!;
  // The reference clock for writes.
  const written = new Map<number, number>();
  const ref = new pg.Client({ connectionString: db.url });
  await ref.connect();
  await ref.query(`LISTEN ${CHANNEL}`);
  const reader = new pg.Client({ connectionString: db.url });
  await reader.connect();
  ref.on("notification", async (m) => {
    if (!m.payload?.includes(uuid)) return;
    const t = performance.now();
    const r = await reader.query(`SELECT "tokensDone" FROM "Generation" WHERE id = $1`, [uuid]);
    const done = r.rows[0].tokensDone as number;
    if (!written.has(done)) written.set(done, t);
  });
  const firsts: number[] = [];
  const received: { tokensDone: number; at: number; previews: number }[][] = [];
  const clients = Array.from({ length: n }, () => createClient({ url: api.url! }));
  const firstSeen = clients.map((client, i) => new Promise<void>((resolve) => {
    received[i] = [];
    const t0 = performance.now();
    let first = true;
    void (async () => {
      for await (const e of client.iterate({ query: QUERY, variables: { id: g.id } })) {
        const ev = (e.data as { generationEvents: { __typename: string; tokensDone?: number; previews?: unknown[] } }).generationEvents;
        if (first) {
          firsts.push(performance.now() - t0);
          first = false;
          resolve();
        }
        if (ev.__typename === "Progress") received[i]!.push({ tokensDone: ev.tokensDone!, at: performance.now(), previews: ev.previews!.length });
      }
    })();
  }));
  await Promise.all(firstSeen);
  // One more subscriber at a time, with the n already there: what a user opening the page sees.
  const joins: number[] = [];
  for (let k = 0; k < 20; k++) {
    const c = createClient({ url: api.url! });
    const t0 = performance.now();
    for await (const _ of c.iterate({ query: QUERY, variables: { id: g.id } })) {
      joins.push(performance.now() - t0);
      break;
    }
    c.dispose();
  }
  const worker: App = await startApp({ ...common, role: "worker" });
  for (;;) {
    const r = await reader.query(`SELECT status::text FROM "Generation" WHERE id = $1`, [uuid]);
    if (r.rows[0].status === "COMPLETED") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 1_000));
  const delays: number[] = [];
  for (const list of received) for (const e of list) {
    const w = written.get(e.tokensDone);
    if (w !== undefined) delays.push(e.at - w);
  }
  const previewSets = received.map((list) => list.filter((e) => e.previews > 0).length);
  clients.forEach((c) => c.dispose());
  await ref.end();
  await reader.end();
  await worker.close();
  await api.close();
  await db.drop();
  return `| ${n} | ${pct(firsts, 0.5).toFixed(0)} ms | ${pct(firsts, 0.99).toFixed(0)} ms | ${pct(joins, 0.5).toFixed(0)} ms | ${pct(joins, 0.99).toFixed(0)} ms | ${pct(delays, 0.5).toFixed(0)} ms | ${pct(delays, 0.99).toFixed(0)} ms | ${Math.min(...previewSets)}–${Math.max(...previewSets)} of 16 |`;
}

console.log(`SSE subscribers on one 3×3 generation (previews every 16 tokens), API and worker as separate apps in one process, ` +
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}\n`);
console.log("| subscribers | first event, all subscribing at once: p50 | p99 | first event, one more joining: p50 | p99 | write → client p50 | write → client p99 | preview sets per subscriber |");
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const n of levels) console.log(await run(n));
await stopEmbedded();
