/**
 * The worker's batched progress writes, against a real PostgreSQL: all running jobs' progress in one
 * statement per interval, previews only with their row's progress, lost rows reported.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openDatabase, type Database } from "../src/db/client.ts";
import { packCodes } from "../src/jobs/codes.ts";
import { LostJob, type Job } from "../src/jobs/job.ts";
import { ProgressWriter } from "../src/jobs/progress-writer.ts";
import { claimNext, enqueue } from "../src/jobs/queue.ts";
import { createTestDatabase, stopEmbedded, waitFor, type TestDatabase } from "./server-helpers.ts";

let tdb: TestDatabase;
let db: Database;

before(async () => {
  tdb = await createTestDatabase();
  db = await openDatabase({ url: tdb.url, dataDir: "unused", embeddedPort: 0, log: () => {} });
});

after(async () => {
  await db.close();
  await tdb.drop();
  await stopEmbedded();
});

/** `n` generations claimed by `worker`, as the worker holds them. */
async function claimed(worker: string, n: number): Promise<Job[]> {
  const model = `m-${worker}`;
  for (let i = 0; i < n; i++) {
    await enqueue(db.prisma, {
      prompt: `p${i}`, normalizedPrompt: `p${i}`, model, count: 1, seed: i, guidanceScale: 3, topK: 50, topP: 1, temperature: 1,
      previewInterval: 4, tokensTotal: 16,
    });
  }
  const jobs: Job[] = [];
  for (let i = 0; i < n; i++) {
    const row = (await claimNext(db.prisma, worker, model))!;
    jobs.push({ row, grids: [new Int32Array(16)], finished: false, dropped: false, chain: Promise.resolve(), tokensDone: 0, tokensSaved: 0, claimedAt: performance.now(), queueWaitMs: null, previewed: false });
  }
  return jobs;
}

/** The writer, on a Prisma client that counts its raw queries. */
function writer(worker: string, lost: Job[]): { w: ProgressWriter; statements: () => number } {
  let n = 0;
  const counting = new Proxy(db.prisma, {
    get(target, key) {
      if (key === "$queryRaw") return (...args: Parameters<typeof target.$queryRaw>) => { n++; return target.$queryRaw(...args); };
      return Reflect.get(target, key);
    },
  });
  const w = new ProgressWriter(counting, worker, { log: () => {}, lost: (job, e) => { assert.ok(e instanceof LostJob); lost.push(job); } });
  return { w, statements: () => n };
}

const progress = (job: Job, tokens: number) => {
  for (let t = job.tokensDone; t < tokens; t++) job.grids[0]![t] = 100 + t;
  job.tokensDone = tokens;
};

const frame = (shade: number) => ({ width: 2, height: 2, data: new Uint8Array(12).fill(shade) });

test("every running job's progress goes out in one statement, with the codes a resume needs", async () => {
  const jobs = await claimed("w1", 6);
  const lost: Job[] = [];
  const { w, statements } = writer("w1", lost);
  // Each job reports twice within one interval: one write, at the newest point.
  for (const j of jobs) { progress(j, 3); w.mark(j); }
  for (const j of jobs) { progress(j, 5); w.mark(j); }
  await waitFor("progress written", async () => jobs.every((j) => j.tokensSaved === 5));
  assert.equal(statements(), 1);
  const rows = await db.prisma.generation.findMany({ where: { id: { in: jobs.map((j) => j.row.id) } } });
  for (const r of rows) {
    assert.equal(r.tokensDone, 5);
    assert.deepEqual(new Uint8Array(r.codes!), packCodes(jobs.find((j) => j.row.id === r.id)!.grids));
  }
  assert.deepEqual(lost, []);
  await w.stop();
});

test("a preview is stored with its row's progress, and none for a row that ended before the write", async () => {
  const [a, b] = await claimed("w2", 2) as [Job, Job];
  const lost: Job[] = [];
  const { w } = writer("w2", lost);
  progress(a, 4);
  await w.preview(a, 4, [frame(10)]);
  progress(a, 8);
  await w.preview(a, 8, [frame(20)]);
  // b's row ends before the write (its final images delete every preview): no preview may outlive them.
  await db.prisma.generation.update({ where: { id: b.row.id }, data: { status: "COMPLETED" } });
  progress(b, 4);
  await w.preview(b, 4, [frame(30)]);
  await waitFor("a's newest preview written", async () => (await db.prisma.preview.count({ where: { generationId: a.row.id, tokensDone: 8 } })) === 1);
  assert.ok(a.previewed);
  const stored = await db.prisma.preview.findFirstOrThrow({ where: { generationId: a.row.id, tokensDone: 8 } });
  assert.deepEqual([stored.width, stored.height, stored.index], [2, 2, 0]);
  // Written in the same statements as a's: nothing for b, whose row had ended.
  assert.equal(await db.prisma.preview.count({ where: { generationId: b.row.id } }), 0);
  const rowB = await db.prisma.generation.findUniqueOrThrow({ where: { id: b.row.id } });
  assert.equal(rowB.tokensDone, 0);
  assert.deepEqual(lost, [b]);
  await w.stop();
});

test("a job whose row another worker took is reported lost; the others are written", async () => {
  const [mine, taken] = await claimed("w3", 2) as [Job, Job];
  const lost: Job[] = [];
  const { w } = writer("w3", lost);
  await db.prisma.generation.update({ where: { id: taken.row.id }, data: { workerId: "someone-else" } });
  for (const j of [mine, taken]) { progress(j, 6); w.mark(j); }
  await waitFor("lost reported", async () => lost.length === 1 && mine.tokensSaved === 6);
  assert.equal(lost[0], taken);
  const row = await db.prisma.generation.findUniqueOrThrow({ where: { id: taken.row.id } });
  assert.equal(row.tokensDone, 0);
  await w.stop();
});
