/**
 * Jobs that survive what happens to real deployments: a worker killed with SIGKILL, a worker that
 * stops cleanly, a job that kills every worker, time zones other than UTC, a dropped LISTEN
 * connection and a database restart. Real processes and a real PostgreSQL.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import WebSocket from "ws";
import type { App } from "../src/app.ts";
import { startEmbedded, type EmbeddedDatabase } from "../src/db/embedded.ts";
import { encodeFrame } from "../src/images/encode.ts";
import { enqueue } from "../src/jobs/queue.ts";
import { estimateSeconds } from "../src/jobs/eta.ts";
import { collect, finalImages, sharedModel, shippedShape } from "./helpers.ts";
import {
  create, createTestDatabase, eventsOverSse, gql, spawnMosaic, sql, startTestApp, stopEmbedded, uuidOf, waitFor,
  type MosaicProcess, type TestDatabase,
} from "./server-helpers.ts";

const LEASE = { leaseMs: 2_000, maxAttempts: 3 };
/** Tokens per image of the shipped model, its scene plan's included (model.json). */
const { sequenceLength } = shippedShape();
const procs: MosaicProcess[] = [];
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase();
});

after(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
  await db?.drop();
  await stopEmbedded();
});

async function row(url: string, id: string) {
  return (await sql(url, `SELECT status::text, "tokensDone", "workerId", attempts, "errorCode", "startedAt", "finishedAt" FROM "Generation" WHERE id = $1`, [id]))[0];
}


/** The PNG bytes an uninterrupted run of the same request gives. */
async function uninterrupted(input: { prompt: string; count: number; seed: number }): Promise<Buffer[]> {
  const images = finalImages(await collect(await sharedModel(), { ...input, previewInterval: 0 }));
  return Promise.all(images.map((img) => encodeFrame(img, { format: "png" })));
}

async function storedImages(url: string, id: string): Promise<Buffer[]> {
  const rows = await sql(url, `SELECT bytes FROM "Image" WHERE "generationId" = $1 ORDER BY index`, [id]);
  return rows.map((r) => r.bytes as Buffer);
}

test("a worker killed with SIGKILL half way: another resumes from the saved codes, same bytes, little work lost", async () => {
  const env = { DATABASE_URL: db.url, MOSAIC_LEASE_SECONDS: "2" };
  const api = await spawnMosaic(["serve", "--role", "api"], env);
  procs.push(api);
  const first = await spawnMosaic(["worker"], env);
  procs.push(first);
  const input = { prompt: "a big white circle on the left, red background", count: 9, seed: 77, previewInterval: 32 };
  const g = await create({ url: api.url } as App, input);
  const id = uuidOf(g.id);
  let seen = 0;
  await waitFor("half the tokens", async () => {
    seen = (await row(db.url, id)).tokensDone;
    return seen >= Math.floor(sequenceLength / 2);
  });
  first.child.kill("SIGKILL");
  const killedAt = seen;
  const second = await spawnMosaic(["worker"], env);
  procs.push(second);
  const events = await eventsOverSse({ url: api.url } as App, g.id);
  assert.equal(events[events.length - 1].__typename, "Completed");
  const resumedAt = Number(/resuming at token (\d+)/.exec(second.log())?.[1]);
  assert.ok(resumedAt >= killedAt, `resumed at ${resumedAt}, not from zero (the row said ${killedAt} before the kill)`);
  const progress = events.filter((e) => e.__typename === "Progress").map((e) => e.tokensDone);
  assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "progress continues, never drops back");
  const r = await row(db.url, id);
  assert.equal(r.attempts, 2);
  assert.ok(r.startedAt <= r.finishedAt);
  const stored = await storedImages(db.url, id);
  const expected = await uninterrupted(input);
  assert.equal(stored.length, 9);
  stored.forEach((b, i) => assert.ok(b.equals(expected[i]!), `image ${i} is byte-identical to an uninterrupted run`));
  second.child.kill("SIGTERM");
  api.child.kill("SIGTERM");
});

test("a worker that stops cleanly hands its jobs back with their codes; the next one resumes them", async () => {
  const lines: string[] = [];
  const api = await startTestApp(db.url, "api");
  let worker: App | null = await startTestApp(db.url, "worker", { queue: LEASE });
  try {
    // Nine images with previews every 8 tokens: long enough to stop it part way on an idle machine too.
    const input = { prompt: "a small green square at the top, purple background", count: 9, seed: 12, previewInterval: 8 };
    const g = await create(api, input);
    const id = uuidOf(g.id);
    await waitFor("32 tokens", async () => (await row(db.url, id)).tokensDone >= 32);
    await worker.close();
    worker = null;
    const handed = await row(db.url, id);
    assert.equal(handed.status, "QUEUED");
    assert.equal(handed.workerId, null);
    assert.equal(handed.attempts, 0, "a clean hand-back is not counted as an attempt");
    assert.ok(handed.tokensDone >= 32 && handed.tokensDone < sequenceLength, `codes saved at ${handed.tokensDone}`);
    worker = await startTestApp(db.url, "worker", { queue: LEASE, log: (l) => lines.push(l) });
    assert.equal((await eventsOverSse(api, g.id)).pop().__typename, "Completed");
    assert.ok(lines.some((l) => l.includes(`resuming at token ${handed.tokensDone}`)), lines.join("\n"));
    const expected = await uninterrupted(input);
    (await storedImages(db.url, id)).forEach((b, i) => assert.ok(b.equals(expected[i]!), `image ${i}`));
  } finally {
    await worker?.close();
    await api.close();
  }
});

test("a job that kills its worker every time ends FAILED after the set attempts; the jobs behind it complete", async () => {
  const env = { DATABASE_URL: db.url, MOSAIC_LEASE_SECONDS: "1", MOSAIC_MAX_ATTEMPTS: "2", MOSAIC_WORKER_BATCH: "1" };
  const api = await startTestApp(db.url, "api");
  try {
    const bad = await create(api, { prompt: "the job that crashes its worker", seed: 1, previewInterval: 0 });
    const behind = [await create(api, { prompt: "a big red circle in the centre, blue background", seed: 2, previewInterval: 0 }),
      await create(api, { prompt: "a small yellow triangle on the left, purple background", seed: 3, previewInterval: 0 })];
    const badId = uuidOf(bad.id);
    // Each worker that takes it dies (as if the job crashed it).
    for (let attempt = 1; attempt <= 2; attempt++) {
      const w = await spawnMosaic(["worker"], env);
      procs.push(w);
      await waitFor(`attempt ${attempt}`, async () => {
        const r = await row(db.url, badId);
        return r.status === "RUNNING" && r.attempts === attempt;
      });
      w.child.kill("SIGKILL");
    }
    const healthy = await spawnMosaic(["worker"], env);
    procs.push(healthy);
    const outcome = (await eventsOverSse(api, bad.id)).pop();
    assert.equal(outcome.__typename, "Failed");
    assert.equal(outcome.code, "WORKER_LOST");
    assert.doesNotMatch(outcome.message, /\/|at |Error/, "a plain message for clients");
    for (const g of behind) assert.equal((await eventsOverSse(api, g.id)).pop().__typename, "Completed");
    healthy.child.kill("SIGTERM");
  } finally {
    await api.close();
  }
});

for (const zone of ["Europe/Berlin", "America/New_York"]) {
  test(`one clock under timezone ${zone}: live jobs keep their lease, dead ones are requeued within it, times in order`, async () => {
    const tz = await createTestDatabase();
    const name = new URL(tz.url).pathname.slice(1);
    await sql(tz.url, `ALTER DATABASE ${name} SET timezone = '${zone}'`);
    const lines: string[] = [];
    const app = await startTestApp(tz.url, "all", { queue: LEASE, log: (l) => lines.push(l) });
    try {
      // Longer than the lease: heartbeats must keep it.
      const g = await create(app, { prompt: "a big blue square in the centre, yellow background", count: 9, seed: 5, previewInterval: 8 });
      const t0 = Date.now();
      assert.equal((await eventsOverSse(app, g.id)).pop().__typename, "Completed");
      const took = Date.now() - t0;
      const r = await row(tz.url, uuidOf(g.id));
      assert.equal(r.attempts, 1, `never requeued (ran ${took} ms with a ${LEASE.leaseMs} ms lease): ${lines.join("\n")}`);
      assert.ok(r.startedAt <= r.finishedAt, `startedAt ${r.startedAt.toISOString()} ≤ finishedAt ${r.finishedAt.toISOString()}`);
      const api = await gql(app, `query($id: ID!) { generation(id: $id) { createdAt startedAt finishedAt } }`, { id: g.id });
      const t = api.data.generation;
      assert.ok(Math.abs(Date.parse(t.finishedAt) - Date.now()) < 60_000, `finishedAt ${t.finishedAt} is now, whatever the zone`);
      assert.ok(Date.parse(t.createdAt) <= Date.parse(t.startedAt) && Date.parse(t.startedAt) <= Date.parse(t.finishedAt));

      // A job whose worker died 3 s ago (past the 2 s lease) and one whose worker is alive.
      const dead = uuidOf((await create(app, { prompt: "dead", seed: 1 })).id);
      const live = uuidOf((await create(app, { prompt: "live", seed: 1 })).id);
      await sql(tz.url, `UPDATE "Generation" SET status = 'RUNNING', "workerId" = 'gone', attempts = 1, "startedAt" = now() - interval '3 seconds', "heartbeatAt" = now() - interval '3 seconds' WHERE id = $1`, [dead]);
      await sql(tz.url, `UPDATE "Generation" SET status = 'RUNNING', "workerId" = 'alive', attempts = 1, "startedAt" = now(), "heartbeatAt" = now() WHERE id = $1`, [live]);
      const requeued = Date.now();
      await waitFor("the dead job requeued", async () => (await row(tz.url, dead)).workerId !== "gone", LEASE.leaseMs * 2);
      assert.ok(Date.now() - requeued <= LEASE.leaseMs * 1.5, `requeued after ${Date.now() - requeued} ms`);
      assert.equal((await row(tz.url, live)).workerId, "alive", "a job with a fresh heartbeat stays with its worker");
    } finally {
      await app.close();
      await tz.drop();
    }
  });
}

test("the LISTEN connection, dropped again and again, comes back as exactly one; subscribers still complete", async () => {
  const app = await startTestApp(db.url, "all");
  try {
    const name = new URL(db.url).pathname.slice(1);
    const listeners = async () => (await sql(db.url, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'`, [name])).map((r) => r.pid);
    for (let i = 0; i < 4; i++) {
      const pids = await waitFor("a LISTEN connection", async () => { const p = await listeners(); return p.length ? p : null; });
      assert.equal(pids.length, 1, `one LISTEN connection per process (round ${i})`);
      await sql(db.url, `SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid`, [pids]);
      await waitFor("a new LISTEN connection", async () => { const p = await listeners(); return p.length && !p.includes(pids[0]!) ? p : null; });
    }
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal((await listeners()).length, 1, "still exactly one after the drops");
    const g = await create(app, { prompt: "a big purple triangle in the centre, green background", count: 2, seed: 4, previewInterval: 64 });
    const events = await eventsOverSse(app, g.id);
    assert.equal(events.pop().__typename, "Completed");
  } finally {
    await app.close();
  }
});

test("a subscriber whose notification never comes still sees the change (periodic re-read)", async () => {
  const app = await startTestApp(db.url, "api");
  try {
    const g = await create(app, { prompt: "nobody will run this", seed: 1 });
    // Changed behind the bus's back: no NOTIFY.
    setTimeout(() => void sql(db.url, `UPDATE "Generation" SET status = 'CANCELLED', "finishedAt" = now() WHERE id = $1`, [uuidOf(g.id)]), 300);
    const t0 = Date.now();
    const events = await eventsOverSse(app, g.id);
    assert.deepEqual(events.map((e) => e.__typename), ["Queued", "Cancelled"]);
    assert.ok(Date.now() - t0 < 5_000, `noticed after ${Date.now() - t0} ms`);
  } finally {
    await app.close();
  }
});

test("the database restarts mid-run: the generation completes, the subscriber rides through, requests meanwhile get UNAVAILABLE", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "mosaic-restart-"));
  let pgServer: EmbeddedDatabase | null = await startEmbedded(dir, 0, () => {});
  // It comes back on the same port, as a restarted server would.
  const port = Number(new URL(pgServer.url).port);
  const lines: string[] = [];
  const app = await startTestApp(pgServer.url, "all", { log: (l) => lines.push(l) });
  try {
    const input = { prompt: "a small black circle in the bottom right corner, orange background", count: 9, seed: 8, previewInterval: 16 };
    const g = await create(app, input);
    const id = uuidOf(g.id);
    const events = eventsOverSse(app, g.id);
    await waitFor("64 tokens", async () => (await row(pgServer!.url, id)).tokensDone >= 64);
    await pgServer.stop();
    const during = await gql(app, `mutation { createGeneration(input: { prompt: "during the outage" }) { id } }`);
    assert.equal(during.errors?.[0]?.extensions?.code, "UNAVAILABLE", JSON.stringify(during));
    assert.doesNotMatch(JSON.stringify(during), /127\.0\.0\.1|prisma|\.ts|at /i, "no driver text or paths for clients");
    await new Promise((r) => setTimeout(r, 3_000));
    pgServer = await startEmbedded(dir, port, () => {});
    const seen = await events;
    assert.equal(seen[seen.length - 1].__typename, "Completed", seen.map((e) => e.__typename).join(","));
    const r = await row(pgServer.url, id);
    assert.equal(r.status, "COMPLETED");
    assert.equal((await sql(pgServer.url, `SELECT count(*)::int AS n FROM "Generation" WHERE status = 'RUNNING'`))[0].n, 0);
    const expected = await uninterrupted(input);
    (await storedImages(pgServer.url, id)).forEach((b, i) => assert.ok(b.equals(expected[i]!), `image ${i} after the outage`));
  } finally {
    await app.close();
    await pgServer?.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("back to back: the next job starts within 100 ms of the last one's end; queued ETAs are within 50% for a backlog of 100", async () => {
  const serial = await createTestDatabase();
  const app = await startTestApp(serial.url, "all", { batchImages: 1 });
  try {
    const jobs = [];
    for (let i = 0; i < 6; i++) jobs.push(await create(app, { prompt: "a small red circle on the left, white background", seed: i, previewInterval: 0 }));
    for (const g of jobs) assert.equal((await eventsOverSse(app, g.id)).pop().__typename, "Completed");
    const rows = await sql(serial.url, `SELECT "startedAt", "finishedAt" FROM "Generation" ORDER BY "startedAt"`);
    const gaps = rows.slice(1).map((r, i) => r.startedAt.getTime() - rows[i].finishedAt.getTime());
    assert.ok(gaps.every((g) => g < 100), `gaps between jobs: ${gaps.join(", ")} ms`);
  } finally {
    await app.close();
    await serial.drop();
  }

  const backlog = await createTestDatabase();
  const all = await startTestApp(backlog.url, "all");
  try {
    // History first: the ETA comes from measured throughput.
    const warm = [];
    for (let i = 0; i < 24; i++) warm.push(await create(all, { prompt: "a big blue square in the centre, yellow background", seed: i, previewInterval: 0 }));
    for (const g of warm) assert.equal((await eventsOverSse(all, g.id)).pop().__typename, "Completed");
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push(uuidOf((await create(all, { prompt: "a big blue square in the centre, yellow background", seed: 100 + i, previewInterval: 0 })).id));
    const t0 = Date.now();
    const predicted: [string, number][] = [];
    for (const id of [ids[49]!, ids[74]!, ids[99]!]) {
      const g = await all.db.prisma.generation.findUnique({ where: { id } });
      if (g!.status !== "QUEUED") continue;
      predicted.push([id, await estimateSeconds(all.db.prisma, g!)]);
    }
    assert.ok(predicted.length >= 2, "the backlog is still queued");
    // Twice a second, one query: polling each row every 20 ms (a new connection each time) took a
    // share of the 2 cores from the worker whose throughput the ETAs predicted, during the backlog only.
    for (const end = Date.now() + 120_000; ; await new Promise((r) => setTimeout(r, 500))) {
      const [{ n }] = await sql(backlog.url, `SELECT count(*)::int AS n FROM "Generation" WHERE id = ANY($1::uuid[]) AND status <> 'COMPLETED'`, [ids]);
      if (n === 0) break;
      assert.ok(Date.now() < end, `${n} of the backlog not completed after 120 s`);
    }
    for (const [id, eta] of predicted) {
      const actual = ((await row(backlog.url, id)).startedAt.getTime() - t0) / 1000;
      assert.ok(Math.abs(eta - actual) <= 0.5 * actual, `predicted ${eta} s, started after ${actual.toFixed(2)} s`);
    }
  } finally {
    await all.close();
    await backlog.drop();
  }
});

test("the API answers health within 100 ms (p99) while the engine runs 3×3 grids in the same process", async () => {
  const app = await startTestApp(db.url, "all");
  try {
    const base = new URL(app.url!).origin;
    const times: number[] = [];
    // Grid after grid until there are enough samples: on a fast machine one 3×3 can end after fewer than
    // 20 checks (CI once saw 17). With under 100 samples the p99 is the single slowest answer, and one
    // scheduling hiccup of a machine busy with something else failed the run (108 ms of 45).
    for (let seed = 6; times.length < 200 && seed < 40; seed++) {
      const g = await create(app, { prompt: "a big green triangle in the centre, white background", count: 9, seed, previewInterval: 16 });
      const id = uuidOf(g.id);
      await waitFor("the grid to start", async () => (await row(db.url, id)).tokensDone > 0);
      while ((await row(db.url, id)).status === "RUNNING") {
        const t0 = performance.now();
        const res = await fetch(`${base}/health`);
        await res.text();
        times.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    assert.ok(times.length >= 100, `${times.length} health checks during the runs`);
    times.sort((a, b) => a - b);
    const p99 = times[Math.min(times.length - 1, Math.floor(times.length * 0.99))]!;
    assert.ok(p99 < 100, `health p99 ${p99.toFixed(1)} ms over ${times.length} requests`);
  } finally {
    await app.close();
  }
});

test("stopping an API closes graphql-ws sockets with 1001 (going away), so standard clients reconnect", async () => {
  const api = await spawnMosaic(["serve", "--role", "api"], { DATABASE_URL: db.url });
  procs.push(api);
  const g = await create({ url: api.url } as App, { prompt: "waits in the queue, no worker here", seed: 1 });
  const ws = new WebSocket(api.url!.replace(/^http/, "ws"), "graphql-transport-ws");
  const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
  await new Promise((r) => ws.on("open", r));
  ws.send(JSON.stringify({ type: "connection_init" }));
  await new Promise((r) => ws.once("message", r));
  const first = new Promise((r) => ws.once("message", r));
  ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query: `subscription($id: ID!) { generationEvents(id: $id) { __typename } }`, variables: { id: g.id } } }));
  await first;
  api.child.kill("SIGTERM");
  assert.equal(await closed, 1001);
});

test("notifications: a claim's is marked with its worker, and a completion's is sent at the commit that makes the row COMPLETED", async () => {
  const app = await startTestApp(db.url, "all");
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  const seen: { event: Record<string, unknown>; status: string; images: number }[] = [];
  let reads = Promise.resolve();
  try {
    await listener.query("LISTEN mosaic_events");
    listener.on("notification", (msg) => {
      const event = JSON.parse(msg.payload!) as Record<string, unknown>;
      if (event.kind !== "generation" || event.progress) return;
      // What a subscriber told by it would read at once.
      reads = reads.then(async () => {
        const [r] = await sql(db.url, `SELECT status::text, (SELECT count(*)::int FROM "Image" WHERE "generationId" = $1) AS images FROM "Generation" WHERE id = $1`, [event.id]);
        seen.push({ event, status: r!.status as string, images: r!.images as number });
      });
    });
    const g = await create(app, { prompt: "a big red circle in the centre, blue background", seed: 11, previewInterval: 0 });
    assert.equal((await eventsOverSse(app, g.id)).pop().__typename, "Completed");
    const id = uuidOf(g.id);
    await waitFor("the completion's notification", async () => seen.some((s) => s.event.id === id && s.status === "COMPLETED"));
    await reads;
    const mine = seen.filter((s) => s.event.id === id);
    const workerId = (await row(db.url, id)).workerId as string;
    // Two, in commit order: the claim's and the completion's, both marked with the worker that wrote them.
    assert.equal(mine.length, 2, `the claim's and the completion's: ${JSON.stringify(mine)}`);
    assert.ok(mine.every((s) => s.event.by === workerId), `marked with its worker: ${JSON.stringify(mine)}`);
    const done = mine[1]!;
    assert.deepEqual([done.status, done.images], ["COMPLETED", 1], "read when told: already COMPLETED, with its image");
  } finally {
    await listener.end();
    await app.close();
  }
});

test("a worker claims only generations of the model it serves; models says who serves what", async () => {
  const app = await startTestApp(db.url, "all");
  try {
    const models = await gql(app, `{ models { name workers } }`);
    assert.deepEqual(models.data.models, [{ name: "mosaic-shapes", workers: 1 }]);
    // A generation for a model no worker here serves (as an API of a two-model deployment would queue it):
    // its tokensTotal is DALL·E mega's 16×16 grid, not the shipped model's.
    const other = await enqueue(app.db.prisma, {
      prompt: "a big red circle in the centre, blue background", normalizedPrompt: "a big red circle in the centre , blue background", model: "dalle-mega",
      count: 1, seed: 1, guidanceScale: 1, topK: 16, topP: 1, temperature: 0.7, previewInterval: 0, tokensTotal: 256,
    });
    const mine = await create(app, { prompt: "a small blue square at the top, white background", seed: 2, previewInterval: 0 });
    assert.equal((await eventsOverSse(app, mine.id)).pop().__typename, "Completed", "behind it, its own model's job runs");
    await new Promise((r) => setTimeout(r, 500));
    const r = await row(db.url, other.id);
    assert.equal(r.status, "QUEUED", "the other model's generation waits for a worker of that model");
    assert.equal(r.attempts, 0);
  } finally {
    await app.close();
  }
  const after = await startTestApp(db.url, "api");
  try {
    await sql(db.url, `UPDATE "WorkerProcess" SET "heartbeatAt" = now() - interval '1 hour'`);
    assert.deepEqual((await gql(after, `{ models { workers } }`)).data.models, [{ workers: 0 }], "no live worker once heartbeats stop");
  } finally {
    await after.close();
  }
});

test("with no HOST the API listens on 127.0.0.1 only and says so; HOST=0.0.0.0 with MOSAIC_AUTH=off warns that anyone can use it; with keys required, no warning", async () => {
  const local = await spawnMosaic(["serve", "--role", "api"], { DATABASE_URL: db.url });
  procs.push(local);
  await waitFor("the listening line", async () => /listening on 127\.0\.0\.1 only/.test(local.log()), 10_000);
  assert.doesNotMatch(local.log(), /anyone who can reach this address/);
  assert.equal((await fetch(`http://127.0.0.1:${new URL(local.url!).port}/livez`)).status, 200);
  local.child.kill("SIGTERM");
  const open = await spawnMosaic(["serve", "--role", "api"], { DATABASE_URL: db.url, HOST: "0.0.0.0" });
  procs.push(open);
  await waitFor("the warning", async () => /listening on 0\.0\.0\.0 with MOSAIC_AUTH=off: anyone who can reach this address/.test(open.log()), 10_000);
  open.child.kill("SIGTERM");
  const keyed = await spawnMosaic(["serve", "--role", "api"], { DATABASE_URL: db.url, HOST: "0.0.0.0", MOSAIC_AUTH: "required" });
  procs.push(keyed);
  await waitFor("the keys line", async () => /API keys required/.test(keyed.log()), 10_000);
  assert.doesNotMatch(keyed.log(), /anyone who can reach this address/);
  keyed.child.kill("SIGTERM");
});

test("retention: a worker deletes generations that ended over MOSAIC_RETENTION_DAYS ago, with their images; recent ones stay", async () => {
  const keep = await startTestApp(db.url, "all");
  let oldId: string;
  let recentId: string;
  try {
    const old = await create(keep, { prompt: "an old red circle", seed: 1, previewInterval: 64 });
    const recent = await create(keep, { prompt: "a recent blue square", seed: 2, previewInterval: 0 });
    for (const g of [old, recent]) assert.equal((await eventsOverSse(keep, g.id)).pop().__typename, "Completed");
    [oldId, recentId] = [uuidOf(old.id), uuidOf(recent.id)];
  } finally {
    await keep.close();
  }
  await sql(db.url, `UPDATE "Generation" SET "finishedAt" = now() - interval '40 days' WHERE id = $1`, [oldId]);
  const lines: string[] = [];
  const worker = await startTestApp(db.url, "worker", { retentionDays: 30, log: (l) => lines.push(l) });
  try {
    await waitFor("the old one deleted", async () => (await sql(db.url, `SELECT 1 FROM "Generation" WHERE id = $1`, [oldId])).length === 0, 10_000);
    assert.equal((await sql(db.url, `SELECT count(*)::int AS n FROM "Image" WHERE "generationId" = $1`, [oldId]))[0].n, 0, "its images went with it");
    assert.equal((await sql(db.url, `SELECT count(*)::int AS n FROM "Preview" WHERE "generationId" = $1`, [oldId]))[0].n, 0, "and its previews");
    assert.equal((await row(db.url, recentId)).status, "COMPLETED", "a recent one stays");
    assert.ok(lines.some((l) => /deleted \d+ generation\(s\) that ended over 30 days ago/.test(l)), lines.join("\n"));
  } finally {
    await worker.close();
  }
});
