/**
 * What one generation costs each part of a deployment, measured on real processes: an API process
 * (`serve --role api`) and a worker (`mosaic worker`) against a PostgreSQL of their own, each generation
 * created over HTTP and followed to the end by one SSE subscriber, as a client would. Per generation and
 * per image: rows inserted and updated (PostgreSQL's own counters), transactions, WAL bytes, NOTIFYs,
 * bytes of images, previews and codes stored, and CPU seconds of the API process, the worker (all of it,
 * and its main thread, which records events and writes), the database server, plus the PNG encoding a
 * worker does per preview and per image. docs/scaling.md turns these into capacities.
 *   npm run bench:scaling [-- --count 1 --generations 32] [--count 9 --generations 8] [--preview-interval 16]
 * With no --count, both sizes run (1 image, then a 3×3 grid). Uses an embedded PostgreSQL in a temporary
 * folder (DATABASE_URL is ignored: the database's CPU is read from its processes, so it must be this
 * machine's and carry nothing else).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "graphql-sse";
import pg from "pg";
import sharp from "sharp";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { startEmbedded } from "../src/db/embedded.ts";
import { encodeFrame } from "../src/images/encode.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string" }, generations: { type: "string" }, "preview-interval": { type: "string", default: "16" },
    batch: { type: "string", default: "16" },
  },
});
const previewInterval = Number(values["preview-interval"]);
const runs: { count: number; generations: number }[] = values.count
  ? [{ count: Number(values.count), generations: Number(values.generations ?? 16) }]
  : [{ count: 1, generations: Number(values.generations ?? 32) }, { count: 9, generations: Number(values.generations ?? 8) }];
const PROMPTS = ["a big red circle in the centre, blue background", "a small yellow triangle on the left, purple background",
  "green background with a large white square at the bottom", "a big orange triangle on the right, black background"];
/** USER_HZ: clock ticks per second in /proc/<pid>/stat (100 on Linux). */
const TICK = 100;

/** utime + stime of a process (all threads), or of one thread, in seconds. */
function cpuOf(pid: number, tid?: number): number {
  const stat = readFileSync(tid ? `/proc/${pid}/task/${tid}/stat` : `/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
}

/** The postmaster and every process it started (backends, WAL writer, checkpointer...). */
function postgresCpu(postmaster: number): number {
  let total = cpuOf(postmaster);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === postmaster) total += cpuOf(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

function spawnMosaic(args: string[], env: Record<string, string>): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mosaic.js"), ...args], {
    env: { ...process.env, LOG_LEVEL: "info", ...env }, stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  return new Promise((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /"event":"(?:listening|ops_listening)","url":"([^"]+)"/.exec(err);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once("exit", (code) => reject(new Error(`mosaic ${args.join(" ")} exited ${code}: ${err}`)));
  });
}

async function gql(url: string, query: string, variables: Record<string, unknown> = {}) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, variables }) });
  const body = (await res.json()) as { data?: Record<string, { id: string }>; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data!;
}

/** The worker's own histogram of run times (its /metrics). */
async function runSeconds(opsUrl: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
  return { sum: read("mosaic_generation_run_seconds_sum"), count: read("mosaic_generation_run_seconds_count") };
}

interface Snapshot {
  api: number;
  worker: number;
  workerMain: number;
  db: number;
  tables: Map<string, { ins: number; upd: number; del: number }>;
  commits: number;
  wal: string;
}

const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "–");

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "mosaic-scaling-"));
  const server = await startEmbedded(dir, 0, () => {});
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const results: string[] = [];
  try {
    for (const { count, generations } of runs) {
      const name = `scaling_${count}_${Date.now()}`;
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(server.url);
      url.pathname = `/${name}`;
      // One client queueing the whole load: lift the per-address quotas (default 4 active).
      const env = { DATABASE_URL: url.toString(), MOSAIC_WORKER_BATCH: values.batch!, MOSAIC_QUOTA_ACTIVE: "1000000", MOSAIC_QUOTA_IMAGES_PER_HOUR: "1000000000", MOSAIC_QUEUE_LIMIT: "1000000" };
      const api = await spawnMosaic(["serve", "--role", "api", "--port", "0"], env);
      const worker = await spawnMosaic(["worker"], { ...env, MOSAIC_METRICS_PORT: "0" });
      const db = new pg.Client({ connectionString: url.toString() });
      await db.connect();
      const [{ pid: backend }] = (await db.query("SELECT pg_backend_pid() AS pid")).rows;
      const postmaster = Number(readFileSync(`/proc/${backend}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
      const listener = new pg.Client({ connectionString: url.toString() });
      await listener.connect();
      const notes = { generation: 0, queue: 0, bytes: 0 };
      listener.on("notification", (m) => {
        const kind = (JSON.parse(m.payload!) as { kind: "generation" | "queue" }).kind;
        notes[kind]++;
        notes.bytes += Buffer.byteLength(m.payload!);
      });
      await listener.query("LISTEN mosaic_events");

      const run = async (n: number, seedBase: number): Promise<string[]> => {
        const sse = createClient({ url: api.url });
        const ids: string[] = [];
        await Promise.all(Array.from({ length: n }, async (_, i) => {
          const g = await gql(api.url, `mutation($input: CreateGenerationInput!) { createGeneration(input: $input) { id } }`, {
            input: { prompt: PROMPTS[i % PROMPTS.length], count, seed: seedBase + i, previewInterval },
          });
          const id = g.createGeneration!.id;
          ids.push(Buffer.from(id, "base64").toString().split(":")[1]!);
          let last = "";
          for await (const r of sse.iterate({ query: `subscription($id: ID!) { generationEvents(id: $id) { __typename ... on Progress { tokensDone previews { url } } ... on Completed { generation { images { url } } } } }`, variables: { id } })) {
            last = (r.data as { generationEvents: { __typename: string } }).generationEvents.__typename;
          }
          if (last !== "Completed") throw new Error(`generation ended ${last}`);
        }));
        sse.dispose();
        return ids;
      };

      const cpu = () => ({ api: cpuOf(api.child.pid!), worker: cpuOf(worker.child.pid!), workerMain: cpuOf(worker.child.pid!, worker.child.pid!), db: postgresCpu(postmaster) });
      /** PostgreSQL's counters: an idle backend reports them within 10 s (PGSTAT_IDLE_INTERVAL), so wait that long first. */
      const counters = async () => {
        await new Promise((r) => setTimeout(r, 11_000));
        const tables = new Map<string, { ins: number; upd: number; del: number }>();
        for (const r of (await db.query(`SELECT relname, n_tup_ins::float AS ins, n_tup_upd::float AS upd, n_tup_del::float AS del FROM pg_stat_user_tables`)).rows) {
          tables.set(r.relname, { ins: r.ins, upd: r.upd, del: r.del });
        }
        const [{ commits }] = (await db.query(`SELECT xact_commit::float AS commits FROM pg_stat_database WHERE datname = current_database()`)).rows;
        const [{ wal }] = (await db.query(`SELECT pg_current_wal_lsn()::text AS wal`)).rows;
        return { tables, commits, wal };
      };

      await run(2, 10_000); // warm-up: the engine's first runs, JIT, connection pools
      // CPU is read right at the run's start and end; the counters after the wait (idle time adds nothing to them).
      const before: Snapshot = { ...(await counters()), ...cpu() };
      const runBefore = await runSeconds(worker.url);
      const notesBefore = { ...notes };
      const t0 = performance.now();
      const ids = await run(generations, 0);
      const wall = (performance.now() - t0) / 1000;
      const cpuAfter = cpu();
      const runAfter = await runSeconds(worker.url);
      const meanRun = (runAfter.sum - runBefore.sum) / (runAfter.count - runBefore.count);
      const afterSnap: Snapshot = { ...(await counters()), ...cpuAfter };

      const n = generations;
      const images = n * count;
      const [{ wal: walBytes }] = (await db.query(`SELECT pg_wal_lsn_diff($1, $2)::float AS wal`, [afterSnap.wal, before.wal])).rows;
      const [stored] = (await db.query(`
        SELECT (SELECT COALESCE(SUM(octet_length(bytes)), 0) FROM "Image" WHERE "generationId" = ANY($1::uuid[]))::float AS images,
               (SELECT COALESCE(SUM(octet_length(bytes)), 0) FROM "Preview" WHERE "generationId" = ANY($1::uuid[]))::float AS previews,
               (SELECT COALESCE(SUM(octet_length(codes)), 0) FROM "Generation" WHERE id = ANY($1::uuid[]))::float AS codes`, [ids])).rows;
      const d = (k: "api" | "worker" | "workerMain" | "db") => afterSnap[k] - before[k];
      const tableDelta = (t: string) => {
        const a = afterSnap.tables.get(t) ?? { ins: 0, upd: 0, del: 0 };
        const b = before.tables.get(t) ?? { ins: 0, upd: 0, del: 0 };
        return { ins: (a.ins - b.ins) / n, upd: (a.upd - b.upd) / n, del: (a.del - b.del) / n };
      };

      // PNG encoding, as the worker does it, of the stored frames (decoded back to raw pixels).
      const sample = (await db.query(`SELECT (SELECT bytes FROM "Image" WHERE "generationId" = ANY($1::uuid[]) LIMIT 1) AS image,
        (SELECT bytes FROM "Preview" WHERE "generationId" = ANY($1::uuid[]) LIMIT 1) AS preview`, [ids])).rows[0];
      const encodeMs = async (png: Buffer | null): Promise<number> => {
        if (!png) return NaN;
        const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
        const frame = { width: info.width, height: info.height, data: new Uint8Array(data) };
        const c0 = process.cpuUsage();
        for (let i = 0; i < 50; i++) await encodeFrame(frame, { format: "png" });
        const c = process.cpuUsage(c0);
        return (c.user + c.system) / 1000 / 50;
      };
      const pngImageMs = await encodeMs(sample.image);
      // A completed generation's previews are deleted with its images: when none is left, its preview
      // frames (the same size as the images) are timed as an image is.
      const pngPreviewMs = sample.preview ? await encodeMs(sample.preview) : pngImageMs;

      // Preview frames written per image: PostgreSQL's insert counter, since completed ones are deleted.
      const previewSets = tableDelta("Preview").ins / count;
      const lines = [
        `### ${count === 1 ? "one image" : `${count} images (3×3)`} per generation: ${n} generations, previews every ${previewInterval} tokens (${fmt(previewSets, 0)} per image), one SSE subscriber each`,
        "",
        "| per generation | value | per image |",
        "| --- | --- | --- |",
        ...["Generation", "Preview", "Image", "WorkerProcess"].map((t) => {
          const x = tableDelta(t);
          return `| rows in \`${t}\`: inserted / updated | ${fmt(x.ins)} / ${fmt(x.upd)} | ${fmt(x.ins / count, 2)} / ${fmt(x.upd / count, 2)} |`;
        }),
        `| transactions committed | ${fmt((afterSnap.commits - before.commits) / n)} | ${fmt((afterSnap.commits - before.commits) / images, 1)} |`,
        `| WAL written | ${fmt(walBytes / n / 1024)} KiB | ${fmt(walBytes / images / 1024)} KiB |`,
        `| NOTIFYs (generation / queue) | ${fmt((notes.generation - notesBefore.generation) / n)} / ${fmt((notes.queue - notesBefore.queue) / n)} | ${fmt((notes.generation - notesBefore.generation) / images)} / ${fmt((notes.queue - notesBefore.queue) / images)} |`,
        `| stored: images | ${fmt(stored.images / n / 1024)} KiB | ${fmt(stored.images / images / 1024)} KiB |`,
        `| stored: previews | ${fmt(stored.previews / n / 1024)} KiB | ${fmt(stored.previews / images / 1024)} KiB |`,
        `| stored: codes | ${fmt(stored.codes / n / 1024, 2)} KiB | ${fmt(stored.codes / images / 1024, 2)} KiB |`,
        `| CPU: API process | ${fmt((d("api") / n) * 1000)} ms | ${fmt((d("api") / images) * 1000)} ms |`,
        `| CPU: worker process (inference on the CPU here) | ${fmt((d("worker") / n) * 1000)} ms | ${fmt((d("worker") / images) * 1000)} ms |`,
        `| CPU: worker main thread (recording, writes, NOTIFY) | ${fmt((d("workerMain") / n) * 1000)} ms | ${fmt((d("workerMain") / images) * 1000)} ms |`,
        `| CPU: PNG encoding (previews + image, libvips threads) | ${fmt((pngPreviewMs * previewSets + pngImageMs) * count)} ms | ${fmt(pngPreviewMs * previewSets + pngImageMs)} ms |`,
        `| CPU: PostgreSQL (all its processes) | ${fmt((d("db") / n) * 1000)} ms | ${fmt((d("db") / images) * 1000)} ms |`,
        `| run time of a generation (claim to stored, mean; the worker's mosaic_generation_run_seconds) | ${fmt(meanRun, 2)} s | |`,
        `| wall time of the run | ${fmt(wall)} s (${fmt(images / wall, 2)} images/s on this machine) | |`,
        "",
        `PNG encode: ${fmt(pngImageMs, 2)} ms per final image, ${fmt(pngPreviewMs, 2)} ms per preview frame (CPU time, median machine load).`,
        "",
      ];
      console.log(lines.join("\n"));
      results.push(...lines);
      await listener.end();
      await db.end();
      for (const p of [api, worker]) {
        p.child.kill("SIGTERM");
        await new Promise((r) => p.child.once("exit", r));
      }
    }
    console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, Node ${process.version}, PostgreSQL embedded (${(await admin.query("SHOW server_version")).rows[0].server_version})`);
  } finally {
    await admin.end();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
