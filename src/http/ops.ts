/**
 * Operations endpoints, answered by every role: /metrics (Prometheus text), /livez (the process
 * answers), /readyz (it can do its work: the database answers, every migration is applied, the model
 * is loaded and, for a worker, its engine is running and it is claiming jobs), and /health (the older
 * summary, kept for compatibility). An API serves them on its HTTP port beside GraphQL; a worker-only
 * process on a small server of its own (MOSAIC_METRICS_PORT, default 9464). Also here: request ids
 * and the one log line per HTTP request.
 */
import { randomUUID } from "node:crypto";
import { readdir } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Prisma } from "../db/client.ts";
import { MIGRATIONS_DIR } from "../db/migrate.ts";
import type { ModelInfo } from "../engine/model.ts";
import type { LogFn } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";

export const DEFAULT_METRICS_PORT = 9464;
/** A check that takes longer than this counts as failed (a probe must answer promptly). */
const CHECK_TIMEOUT_MS = 2_000;

export interface OpsTarget {
  role: "all" | "api" | "worker";
  prisma: Prisma;
  model: ModelInfo;
  metrics: Metrics;
  /** The worker of this process (null for an API): running once its engine thread loaded the model and it claims jobs, until it stops. */
  worker: { running: boolean; provider: string } | null;
  /** True once the process is shutting down: readiness fails at once so load balancers stop sending work. */
  closing(): boolean;
}

export interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

export interface Readiness {
  ready: boolean;
  role: string;
  checks: Record<string, Check>;
}

let migrationNames: Promise<string[]> | null = null;

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS); }),
  ]).finally(() => clearTimeout(timer));
}

const short = (e: unknown) => (e instanceof Error ? e.message : String(e)).trim().split("\n").pop()!.slice(0, 200);

export async function readiness(t: OpsTarget): Promise<Readiness> {
  const checks: Record<string, Check> = {};
  try {
    await withTimeout(t.prisma.$queryRaw`SELECT 1`, "the database");
    checks.database = { ok: true };
  } catch (e) {
    checks.database = { ok: false, error: short(e) };
  }
  if (checks.database.ok) {
    try {
      migrationNames ??= readdir(MIGRATIONS_DIR, { withFileTypes: true }).then((d) => d.filter((x) => x.isDirectory()).map((x) => x.name).sort());
      const [names, rows] = await Promise.all([migrationNames, withTimeout(t.prisma.$queryRaw<{ name: string }[]>`
        SELECT migration_name AS name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`, "the database")]);
      const applied = new Set(rows.map((r) => r.name));
      const pending = names.filter((n) => !applied.has(n));
      checks.migrations = pending.length ? { ok: false, pending } : { ok: true, applied: names.length };
    } catch (e) {
      checks.migrations = { ok: false, error: short(e) };
    }
  } else checks.migrations = { ok: false, error: "the database is unreachable" };
  checks.model = { ok: true, name: t.model.manifest.name, version: t.model.manifest.version };
  if (t.worker) checks.engine = { ok: t.worker.running, provider: t.worker.provider };
  checks.shutdown = { ok: !t.closing() };
  return { ready: Object.values(checks).every((c) => c.ok), role: t.role, checks };
}

async function health(t: OpsTarget): Promise<{ ok: boolean; role: string; queued: number; running: number }> {
  try {
    const rows = await withTimeout(t.prisma.generation.groupBy({ by: ["status"], where: { status: { in: ["QUEUED", "RUNNING"] } }, _count: true }), "the database");
    const n = (s: string) => rows.find((r) => r.status === s)?._count ?? 0;
    return { ok: true, role: t.role, queued: n("QUEUED"), running: n("RUNNING") };
  } catch {
    return { ok: false, role: t.role, queued: 0, running: 0 };
  }
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
};

/** Answers /metrics, /livez, /readyz and /health; false for any other path. */
export async function serveOps(req: IncomingMessage, res: ServerResponse, path: string, t: OpsTarget): Promise<boolean> {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  switch (path) {
    case "/metrics": {
      const text = await t.metrics.text();
      res.writeHead(200, { "content-type": t.metrics.contentType, "cache-control": "no-store" });
      res.end(text);
      return true;
    }
    case "/livez":
      json(res, 200, { ok: true, role: t.role, uptimeSeconds: Math.round(process.uptime() * 10) / 10 });
      return true;
    case "/readyz": {
      const r = await readiness(t);
      json(res, r.ready ? 200 : 503, r);
      return true;
    }
    case "/health": {
      const h = await health(t);
      json(res, h.ok ? 200 : 503, h);
      return true;
    }
    default:
      return false;
  }
}

/** The request's id: its x-request-id header when it is a sane token (a proxy's), else a new UUID. */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  return typeof given === "string" && /^[\w.:@/+=-]{1,128}$/.test(given) ? given : randomUUID();
}

/** A low-cardinality name for a path, for metrics. */
export function routeOf(path: string): string {
  if (path === "/graphql" || path === "/" || path === "/metrics" || path === "/livez" || path === "/readyz" || path === "/health") return path;
  if (path.startsWith("/images/")) return "/images";
  if (path.startsWith("/previews/")) return "/previews";
  return "other";
}

const PROBES = new Set(["/metrics", "/livez", "/readyz", "/health"]);

/**
 * Gives the request its id (set on the request for handlers downstream, and returned in the
 * response's x-request-id), and logs one line and counts it when the response ends. Probes and
 * scrapes are logged at debug level (they come every few seconds).
 */
export function trackRequest(req: IncomingMessage, res: ServerResponse, path: string, log: LogFn, metrics: Metrics): string {
  const requestId = requestIdOf(req);
  req.headers["x-request-id"] = requestId;
  res.setHeader("x-request-id", requestId);
  const t0 = performance.now();
  const route = routeOf(path);
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    const seconds = (performance.now() - t0) / 1000;
    const status = res.headersSent ? res.statusCode : 499;
    metrics.httpRequests.inc({ route, method: req.method ?? "GET", status: String(status) });
    metrics.httpDuration.observe({ route }, seconds);
    log(`${req.method} ${path} ${status}`, {
      event: "http_request", requestId, method: req.method, path, route, status, ms: Math.round(seconds * 10_000) / 10,
      level: PROBES.has(path) ? "debug" : status >= 500 ? "warn" : "info",
    });
  };
  res.once("finish", finish);
  res.once("close", finish);
  return requestId;
}

/** A worker's own small HTTP server for the operations endpoints. */
export interface OpsServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the operations server on `port`. When the port is the default one and taken (several workers
 * on one host), it falls back to a free port and says so; a port given explicitly must be free.
 */
export async function startOpsServer(t: OpsTarget, port: number, explicit: boolean, log: LogFn, host = "127.0.0.1"): Promise<OpsServer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    trackRequest(req, res, path, log, t.metrics);
    serveOps(req, res, path, t).then((answered) => {
      if (!answered) json(res, 404, { error: { code: "NOT_FOUND", message: "this port serves /metrics, /livez, /readyz and /health" } });
    }).catch((e: unknown) => {
      log("ops request failed", { err: e });
      if (!res.headersSent) json(res, 500, { error: { code: "INTERNAL", message: "internal error" } });
      else res.end();
    });
  });
  const listen = (p: number) => new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(p, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  try {
    await listen(port);
  } catch (e) {
    if (explicit || (e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
    await listen(0);
    log(`mosaic: port ${port} is taken; metrics and probes on port ${(server.address() as AddressInfo).port} instead`, { level: "warn" });
  }
  const url = `http://localhost:${(server.address() as AddressInfo).port}`;
  return {
    server, url,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
