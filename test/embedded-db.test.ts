import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { startApp } from "../src/app.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { startEmbedded } from "../src/db/embedded.ts";
import { MODEL_DIR } from "./helpers.ts";
import { create, eventsOverSse, gql } from "./server-helpers.ts";

const BIN = path.join(PACKAGE_ROOT, "bin", "mosaic.js");
const run = promisify(execFile);
const scratch: string[] = [];
after(() => Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), "mosaic-data-"));
  scratch.push(d);
  return d;
}

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

const postmasterPid = (dataDir: string) => Number(readFileSync(path.join(dataDir, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, check: () => Promise<T | null | undefined | false> | T | null | undefined | false, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("with no DATABASE_URL the embedded PostgreSQL keeps history in MOSAIC_DATA_DIR across restarts", async () => {
  const dataDir = await tempDir();
  const start = () => startApp({ role: "all", port: 0, dataDir, embeddedPort: 0, modelFolder: MODEL_DIR, provider: "cpu", log: () => {} });
  let app = await start();
  assert.ok(app.db.embedded, "embedded database in use");
  assert.ok(existsSync(path.join(dataDir, "postgres", "PG_VERSION")));
  const g = await create(app, { prompt: "a small white triangle at the top, red background", seed: 41 });
  assert.equal((await eventsOverSse(app, g.id)).pop().__typename, "Completed");
  await app.close();
  // Stopped cleanly: the port is free again and a new start reuses the same data.
  app = await start();
  const r = await gql(app, `query($id: ID!) { generation(id: $id) { status prompt } }`, { id: g.id });
  assert.deepEqual(r.data.generation, { status: "COMPLETED", prompt: "a small white triangle at the top, red background" });
  await app.close();
});

test("two data directories run at once on ports of their own; a second start on the same directory is refused, naming it; each has its own 0600 password", async () => {
  const [a, b] = [await tempDir(), await tempDir()];
  const dbA = await startEmbedded(a, 0, () => {});
  try {
    const dbB = await startEmbedded(b, 0, () => {});
    try {
      assert.notEqual(dbA.port, dbB.port);
      assert.equal(new URL(dbA.url).port, String(dbA.port), "the URL carries the chosen port");
      assert.deepEqual(await query(dbA.url, "SELECT 1 AS a"), [{ a: 1 }]);
      assert.deepEqual(await query(dbB.url, "SELECT 2 AS b"), [{ b: 2 }]);

      const refused = await startEmbedded(a, 0, () => {}).then(async (db) => { await db.stop(); return null; }, (e: Error) => e);
      assert.ok(refused, "a second start on the same directory is refused");
      assert.match(refused.message, /in use by another Mosaic process/);
      assert.ok(refused.message.includes(a), refused.message);
      // The refused start left the running one alone.
      assert.deepEqual(await query(dbA.url, "SELECT 1 AS a"), [{ a: 1 }]);

      for (const [dir, db] of [[a, dbA], [b, dbB]] as const) {
        const file = path.join(dir, "postgres.password");
        assert.equal((await stat(file)).mode & 0o777, 0o600, "password file is owner-only");
        const password = (await readFile(file, "utf8")).trim();
        assert.notEqual(password, "mosaic");
        assert.ok(password.length >= 20, "a random password");
        assert.equal(decodeURIComponent(new URL(db.url).password), password);
        const legacy = new URL(db.url);
        legacy.password = "mosaic";
        await assert.rejects(query(legacy.toString(), "SELECT 1"), /password authentication failed/);
      }
      assert.notEqual((await readFile(path.join(a, "postgres.password"), "utf8")), await readFile(path.join(b, "postgres.password"), "utf8"));
    } finally {
      await dbB.stop();
    }
  } finally {
    await dbA.stop();
  }
  // Stopped: the directory can be used again, with the same password and so the same URL.
  const again = await startEmbedded(a, dbA.port, () => {});
  assert.equal(again.url, dbA.url);
  // A directory from before the password file, with the old fixed password, keeps working and gets its own.
  await query(again.url, "ALTER ROLE mosaic PASSWORD 'mosaic'");
  await again.stop();
  await rm(path.join(a, "postgres.password"));
  const lines: string[] = [];
  const old = await startEmbedded(a, 0, (l) => lines.push(l));
  try {
    const password = (await readFile(path.join(a, "postgres.password"), "utf8")).trim();
    assert.notEqual(password, "mosaic");
    assert.deepEqual(await query(old.url, "SELECT 3 AS c"), [{ c: 3 }]);
    const legacy = new URL(old.url);
    legacy.password = "mosaic";
    await assert.rejects(query(legacy.toString(), "SELECT 1"), /password authentication failed/);
    assert.ok(lines.some((l) => l.includes("had the old fixed password")), lines.join("\n"));
  } finally {
    await old.stop();
  }
});

test("a killed PostgreSQL server is restarted and serves queries again; stop() does not restart it", async () => {
  const dir = await tempDir();
  const lines: string[] = [];
  const db = await startEmbedded(dir, 0, (l) => lines.push(l), { restartDelayMs: 200 });
  try {
    await query(db.url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)");
    const first = postmasterPid(dir);
    assert.equal(db.pid, first);
    process.kill(first, "SIGKILL");
    const t0 = Date.now();
    const second = await until("a new postmaster", () => {
      const p = postmasterPid(dir);
      return p !== first && db.pid === p && p;
    }, 10_000);
    assert.deepEqual(await until("queries to work again", () => query(db.url, "SELECT n FROM kept"), 10_000), [{ n: 7 }]);
    assert.ok(Date.now() - t0 < 5_000, `back after ${Date.now() - t0} ms`);
    assert.ok(lines.some((l) => /exited unexpectedly \(signal SIGKILL(; it said: .*)?\); restarting it in/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => /running again/.test(l)), lines.join("\n"));

    await db.stop();
    assert.ok(!running(second), "stopped");
    await new Promise((r) => setTimeout(r, 800)); // four restart delays
    assert.ok(!existsSync(path.join(dir, "postgres", "postmaster.pid")), "not restarted after stop()");
    assert.equal(db.pid, null);
  } finally {
    await db.stop();
  }
});

test("a startup failure says why: an explicitly set port that is taken is named, with PostgreSQL's own words", async () => {
  const dir = await tempDir();
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen({ host: "127.0.0.1", port: 0 }, r));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    await assert.rejects(startEmbedded(dir, port, () => {}), (e: unknown) => {
      assert.ok(e instanceof Error, `rejects with an Error (got ${String(e)})`);
      assert.match(e.message, new RegExp(`port ${port}\\b`));
      assert.match(e.message, /could not bind IPv4 address "127\.0\.0\.1": Address already in use/);
      assert.match(e.message, /MOSAIC_EMBEDDED_PG_PORT/);
      return true;
    });
  } finally {
    blocker.close();
  }
  // The failed start released the directory and left no server behind.
  assert.ok(!existsSync(path.join(dir, "postgres.lock")));
  const db = await startEmbedded(dir, 0, () => {});
  await db.stop();
});

test("mosaic serve: a second process on its data directory is refused with a readable reason; SIGINT to its process group stops it cleanly", async () => {
  const dataDir = await tempDir();
  const env = { ...process.env, MOSAIC_DATA_DIR: dataDir, MOSAIC_EMBEDDED_PG_PORT: "", DATABASE_URL: "" };
  // Detached: a process group of its own, as a terminal's foreground job.
  const serve = spawn(process.execPath, [BIN, "serve", "--port", "0", "--model", MODEL_DIR], { env, detached: true, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  serve.stderr!.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
  const exited = new Promise<number | null>((r) => serve.once("exit", (code) => r(code)));
  try {
    await until("mosaic serve to start", () => stderr.includes("GraphQL and GraphiQL at"), 60_000);
    const postgres = postmasterPid(dataDir);
    const group = (pid: number) => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[2];
    assert.notEqual(group(postgres), group(serve.pid!), "PostgreSQL runs in a process group of its own");

    const second = await run(process.execPath, [BIN, "migrate"], { env }).then(() => null, (e: { code: number; stderr: string }) => e);
    assert.ok(second, "a second process on the same directory is refused");
    assert.notEqual(second.code, 0);
    assert.ok(second.stderr.includes(`the data directory ${dataDir} is in use by another Mosaic process (pid ${serve.pid})`), second.stderr);
    assert.doesNotMatch(second.stderr, /undefined|\n\s+at /);

    process.kill(-serve.pid!, "SIGINT");
    assert.equal(await exited, 0, stderr);
    const at = stderr.indexOf("SIGINT, shutting down");
    assert.ok(at >= 0, stderr);
    const shutdown = stderr.slice(at);
    // Plain or JSON log lines: while shutting down, the database stayed up until the end (it did not
    // get the signal too): no lost connection, no Prisma error, no stack trace, no warning.
    assert.doesNotMatch(shutdown, /can't reach database server|connection lost|exited unexpectedly|PrismaClient|(\n|\\n)\s+at |"level":[456]0|\b(WARN|ERROR)\b/i, stderr);
    assert.ok(!running(postgres), "PostgreSQL stopped with it");
    assert.ok(!existsSync(path.join(dataDir, "postgres.lock")));
  } finally {
    if (serve.exitCode === null) process.kill(-serve.pid!, "SIGKILL");
  }
});
