import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import type { App } from "../src/app.ts";
import { unpackCodes } from "../src/jobs/codes.ts";
import { collect, finalImages, sharedModel } from "./helpers.ts";
import { createClient as createSseClient } from "graphql-sse";
import type { Json } from "./helpers.ts";
import {
  create, createTestDatabase, eventsOverSse, gql, spawnMosaic as spawnShared, startTestApp, stopEmbedded, uuidOf, waitFor,
  type MosaicProcess, type TestDatabase,
} from "./server-helpers.ts";

let db: TestDatabase;
const children: ChildProcess[] = [];

before(async () => {
  db = await createTestDatabase();
});

async function stopChildren(): Promise<void> {
  for (const c of children) c.kill("SIGTERM");
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once("exit", r)))));
  children.length = 0;
}

after(async () => {
  await stopChildren();
  await db?.drop();
  await stopEmbedded();
});

/** A real `mosaic` process on this file's database, stopped after the file's tests. */
async function spawnMosaic(args: string[]): Promise<MosaicProcess> {
  const p = await spawnShared(args, { DATABASE_URL: db.url });
  children.push(p.child);
  return p;
}

test("two API processes and one worker: a client of one API sees a generation created through the other", async () => {
  const [a, b] = await Promise.all([spawnMosaic(["serve", "--role", "api"]), spawnMosaic(["serve", "--role", "api"])]);
  await spawnMosaic(["worker"]);
  const apiA = { url: a.url } as App;
  const apiB = { url: b.url } as App;
  const health = await gql(apiA, "{ health { role } }");
  assert.equal(health.data.health.role, "api");
  const g = await create(apiA, { prompt: "a big orange circle at the top, blue background", count: 2, seed: 21, previewInterval: 128 });
  const events = await eventsOverSse(apiB, g.id);
  assert.equal(events[events.length - 1].__typename, "Completed");
  assert.ok(events.some((e) => e.__typename === "Progress" && e.previews.length === 2), "previews cross processes");
  const img = events[events.length - 1].generation.images[0];
  assert.ok(img.url.startsWith(new URL(b.url!).origin), "image URLs point at the API the client uses");
  assert.equal((await fetch(img.url)).status, 200);
  await stopChildren();
});

test("queued generations survive a restart and complete; a queued one cancels at once", async () => {
  let api: App | null = await startTestApp(db.url, "api");
  const first = await create(api, { prompt: "a small red square on the left, yellow background", seed: 5 });
  const second = await create(api, { prompt: "a big blue triangle on the right, white background", seed: 6 });
  const third = await create(api, { prompt: "to be cancelled", seed: 7 });
  const cancel = await gql(api, `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`, { id: third.id });
  assert.equal(cancel.data.cancelGeneration.status, "CANCELLED", "no worker runs it: cancelled while queued");
  const positions = await gql(api, `query($a: ID!, $b: ID!, $c: ID!) { a: generation(id: $a) { status queuePosition } b: generation(id: $b) { status queuePosition } c: generation(id: $c) { queuePosition } }`, { a: first.id, b: second.id, c: third.id });
  assert.deepEqual(positions.data, { a: { status: "QUEUED", queuePosition: 1 }, b: { status: "QUEUED", queuePosition: 2 }, c: { queuePosition: null } });
  // The Queued event: its place and a wait that grows with the work ahead (one image each here).
  const client = createSseClient({ url: api.url! });
  const firstEvent = async (id: string) => {
    for await (const e of client.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename ... on Queued { position etaSeconds } } }`, variables: { id } })) return (e.data as Json).generationEvents;
  };
  const [q1, q2] = [await firstEvent(first.id), await firstEvent(second.id)];
  client.dispose();
  assert.equal(q1.position, 1);
  assert.equal(q2.position, 2);
  assert.ok(q2.etaSeconds > q1.etaSeconds && q1.etaSeconds >= 0, `ETA ${q1.etaSeconds} s then ${q2.etaSeconds} s`);
  await api.close();
  api = null;

  const all = await startTestApp(db.url, "all");
  try {
    for (const g of [first, second]) {
      const events = await eventsOverSse(all, g.id);
      assert.equal(events[events.length - 1].__typename, "Completed");
    }
    assert.deepEqual((await eventsOverSse(all, third.id)).map((e) => e.__typename), ["Cancelled"]);
  } finally {
    await all.close();
  }
});

test("a generation left RUNNING by a dead worker is picked up again", async () => {
  const api = await startTestApp(db.url, "api");
  const g = await create(api, { prompt: "a big green square in the centre, black background", seed: 9 });
  const uuid = Buffer.from(g.id, "base64").toString().split(":")[1]!;
  // What a worker that died mid-run leaves behind: RUNNING, its heartbeat long past.
  await api.db.prisma.generation.update({
    where: { id: uuid },
    data: { status: "RUNNING", workerId: "dead-worker", startedAt: new Date(Date.now() - 60_000), heartbeatAt: new Date(Date.now() - 60_000), tokensDone: 100 },
  });
  const worker = await startTestApp(db.url, "worker");
  try {
    const events = await eventsOverSse(api, g.id);
    assert.equal(events[events.length - 1].__typename, "Completed");
    const row = await api.db.prisma.generation.findUnique({ where: { id: uuid } });
    assert.notEqual(row!.workerId, "dead-worker");
    assert.equal(row!.attempts, 1);
  } finally {
    await worker.close();
    await api.close();
  }
});

test("a worker whose job was taken from it (requeued and claimed elsewhere) drops its result and writes nothing", async () => {
  const lines: string[] = [];
  const app = await startTestApp(db.url, "all", { log: (l) => lines.push(l) });
  try {
    const g = await create(app, { prompt: "a big yellow circle on the right, black background", count: 9, seed: 31, previewInterval: 16 });
    const id = uuidOf(g.id);
    // What another worker does after presuming this one dead: the row is now its. Taken only while it
    // is RUNNING, in one statement: a check ("32 tokens done") and a separate update raced with the
    // worker finishing under load (CI, 2026-12-01: the row was COMPLETED, with all its tokens, by the update).
    await waitFor("the job running, then taken", async () => (await app.db.prisma.$executeRaw`
      UPDATE "Generation" SET "workerId" = 'another-worker' WHERE id = ${id}::uuid AND status = 'RUNNING'`) === 1, 60_000);
    await waitFor("the worker to notice", async () => lines.some((l) => l.includes(`generation ${id} was taken from this worker`)), 30_000);
    const row = await app.db.prisma.generation.findUnique({ where: { id }, include: { images: true } });
    assert.equal(row!.workerId, "another-worker");
    assert.equal(row!.status, "RUNNING", "the old worker neither completes nor fails it");
    assert.equal(row!.images.length, 0);
  } finally {
    await app.close();
  }
});

test("a worker decodes waiting generations in one batch, with the results each gets alone", async () => {
  const api = await startTestApp(db.url, "api");
  const inputs = [
    { prompt: "a big red circle on the left, white background", count: 2, seed: 51, topK: 16 },
    { prompt: "a small blue square at the bottom, yellow background", count: 1, seed: 52, topK: 16 },
    { prompt: "a big black triangle in the centre, green background", count: 3, seed: 53, topK: 16 },
  ];
  const created = [];
  for (const input of inputs) created.push(await create(api, input));
  const worker = await startTestApp(db.url, "worker");
  try {
    for (const g of created) assert.equal((await eventsOverSse(api, g.id)).pop().__typename, "Completed");
    const rows = await api.db.prisma.generation.findMany({ where: { seed: { in: [51, 52, 53] } }, orderBy: { seed: "asc" } });
    // They ran at the same time: each started before any of them finished.
    const firstFinish = Math.min(...rows.map((r) => r.finishedAt!.getTime()));
    assert.ok(rows.every((r) => r.startedAt!.getTime() <= firstFinish), "all three were in the batch together");
    const model = await sharedModel();
    for (const [i, r] of rows.entries()) {
      const input = inputs[i]!;
      const alone = finalImages(await collect(model, { prompt: input.prompt, count: input.count, seed: input.seed, sampling: { topK: input.topK }, previewInterval: 0 }));
      assert.deepEqual(unpackCodes(r.codes!, r.count).map((c) => Array.from(c)), alone.map((a) => Array.from(a.codes)), `generation ${i}`);
    }
  } finally {
    await worker.close();
    await api.close();
  }
});
