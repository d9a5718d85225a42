/**
 * End-to-end throughput against the engine's own (not a test): 100 queued one-image generations
 * drained by a worker (claims, engine thread, recording in PostgreSQL, notifications, PNG encoding)
 * versus the same 100 requests fed straight into one continuous batch of the same size, side by side
 * in one run, previews off and on.
 *   npm run bench:server [-- --jobs 100] [--batch 16]
 * Uses DATABASE_URL's server when set, otherwise an embedded PostgreSQL in a temporary folder.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { startApp } from "../src/app.ts";
import { modelFolder } from "../src/engine/settings.ts";
import { DecodeBatch } from "../src/engine/batch.ts";
import type { GenerateRequest } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { sequenceLength } from "../src/engine/model-format.ts";
import { enqueue } from "../src/jobs/queue.ts";
import { createTestDatabase, stopEmbedded } from "../test/server-helpers.ts";

const { values } = parseArgs({ options: { jobs: { type: "string", default: "100" }, batch: { type: "string", default: "16" }, model: { type: "string" } } });
const jobs = Number(values.jobs);
const batchImages = Number(values.batch);
const folder = modelFolder(values.model);
const PROMPTS = ["a big red circle in the centre, blue background", "a small yellow triangle on the left, purple background",
  "green background with a large white square at the bottom", "a big orange triangle on the right, black background"];
const request = (i: number, previewInterval: number): GenerateRequest => ({ prompt: PROMPTS[i % PROMPTS.length]!, seed: i, previewInterval });

/** The engine alone: the requests through one continuous batch, joining as others leave. */
async function engineAlone(model: Model, previewInterval: number): Promise<number> {
  const batch = new DecodeBatch(model);
  let next = 0;
  let done = 0;
  const live = new Set<ReturnType<DecodeBatch["admit"]>>();
  const t0 = performance.now();
  while (done < jobs) {
    while (next < jobs && batch.images < batchImages) live.add(batch.admit(request(next++, previewInterval)));
    await batch.step();
    for (const m of live) {
      m.drain();
      if (m.done) {
        live.delete(m);
        done++;
      }
    }
  }
  return jobs / ((performance.now() - t0) / 1000);
}

/** The server: the requests queued first, then drained by a worker; first start to last finish, from the rows. */
async function server(previewInterval: number): Promise<number> {
  const db = await createTestDatabase();
  const common = { port: 0, databaseUrl: db.url, dataDir: "unused", embeddedPort: 0, modelFolder: folder, provider: "cpu" as const, log: () => {} };
  const api = await startApp({ ...common, role: "api" });
  const model = api.model.manifest;
  for (let i = 0; i < jobs; i++) {
    const r = request(i, previewInterval);
    await enqueue(api.db.prisma, {
      prompt: r.prompt, normalizedPrompt: r.prompt, model: model.name, count: 1, seed: r.seed!, ...model.sampling,
      previewInterval, tokensTotal: sequenceLength(model.architecture),
    });
  }
  const worker = await startApp({ ...common, role: "worker", batchImages });
  for (;;) {
    const left = await api.db.prisma.generation.count({ where: { status: { in: ["QUEUED", "RUNNING"] } } });
    if (left === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const span = await api.db.prisma.$queryRaw<{ s: number }[]>`SELECT EXTRACT(EPOCH FROM MAX("finishedAt") - MIN("startedAt"))::float AS s FROM "Generation"`;
  await worker.close();
  await api.close();
  await db.drop();
  return jobs / span[0]!.s;
}

const model = await loadModel(folder);
await engineAlone(model, 0); // warm-up
console.log(`Server vs engine: ${jobs} one-image generations, batch ${batchImages}, model ${model.manifest.name}, ` +
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}\n`);
console.log("| previews | engine alone: images/s | server end to end: images/s | server / engine |");
console.log("| --- | --- | --- | --- |");
for (const interval of [0, 16]) {
  const e = await engineAlone(model, interval);
  const s = await server(interval);
  console.log(`| ${interval ? `every ${interval} tokens` : "off"} | ${e.toFixed(2)} | ${s.toFixed(2)} | ${(s / e * 100).toFixed(0)}% |`);
}
await model.release();
await stopEmbedded();
