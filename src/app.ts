/**
 * A running Mosaic process in one of its roles: "all" (API and worker, the default), "api" or
 * "worker". Every role talks to the others only through PostgreSQL.
 */
import type { AddressInfo } from "node:net";
import { DEFAULT_ACCESS, openAccess, type AccessSettings } from "./auth/access.ts";
import { openDatabase, type Database } from "./db/client.ts";
import { loadModelInfo, type ModelInfo } from "./engine/model.ts";
import { RemoteEngine } from "./engine/thread/remote.ts";
import type { ProviderName } from "./engine/providers.ts";
import type { Role } from "./graphql/context.ts";
import { createHttpServer, GRAPHQL_PATH, type HttpServer } from "./graphql/server.ts";
import { DEFAULT_METRICS_PORT, startOpsServer, type OpsServer, type OpsTarget } from "./http/ops.ts";
import { EventBus } from "./jobs/events.ts";
import { DEFAULT_QUEUE, type QueueSettings } from "./jobs/queue.ts";
import { activeSubscriptions } from "./jobs/watch.ts";
import { DEFAULT_BATCH_IMAGES, Worker } from "./jobs/worker.ts";
import type { LogFn } from "./ops/log.ts";
import { Metrics } from "./ops/metrics.ts";

/** The default listening address: this machine only. */
export const LOOPBACK = "127.0.0.1";

export interface AppOptions {
  role: Role;
  port: number;
  databaseUrl?: string;
  dataDir: string;
  embeddedPort: number;
  modelFolder: string;
  provider: ProviderName;
  /** Most images a worker decodes together (continuous batching). */
  batchImages?: number;
  /** Leases and attempts (MOSAIC_LEASE_SECONDS, MOSAIC_MAX_ATTEMPTS). */
  queue?: QueueSettings;
  /**
   * Port of a separate server for /metrics, /livez, /readyz and /health (MOSAIC_METRICS_PORT). A
   * worker-only process always has one (default 9464, or a free port when that one is taken); an API
   * answers them on its own port, and on this one too when it is given.
   */
  metricsPort?: number;
  /** Where the HTTP servers listen (HOST); default 127.0.0.1 (with MOSAIC_AUTH=off, anyone who can reach it can use it). */
  host?: string;
  /** Origins besides the server's own whose pages may call it (MOSAIC_CORS_ORIGINS). */
  corsOrigins?: string[];
  /** Believe X-Forwarded-Host/-Proto (MOSAIC_TRUST_PROXY): only behind a proxy that sets them. */
  trustProxy?: boolean;
  /** Build image URLs on this address instead of the request's Host (MOSAIC_PUBLIC_URL). */
  publicUrl?: string;
  /** Serve GraphiQL and answer introspection (MOSAIC_GRAPHIQL). */
  graphiql?: boolean;
  /** Delete generations that ended this many days ago (MOSAIC_RETENTION_DAYS); unset: keep all. */
  retentionDays?: number;
  /** MOSAIC_AUTH, quotas, signed-URL lifetime, subscriptions per connection (default: auth off, default quotas). */
  access?: AccessSettings;
  log: LogFn;
}

export interface App {
  /** Where GraphQL is served (null for a worker). */
  url: string | null;
  db: Database;
  worker: Worker | null;
  /** The model's manifest and files (every role reads it). */
  model: ModelInfo;
  /** The engine thread running the model (null for an API process). */
  engine: RemoteEngine | null;
  /** This process's Prometheus metrics. */
  metrics: Metrics;
  /** Base URL of the separate operations server (/metrics, /livez, /readyz, /health), or null when there is none. */
  opsUrl: string | null;
  close(): Promise<void>;
}

export async function startApp(o: AppOptions): Promise<App> {
  // The model is checked before anything else starts: a bad folder should fail fast and clearly.
  const model: ModelInfo = await loadModelInfo(o.modelFolder);
  // A worker's engine runs in its own thread, so inference never blocks this one.
  const engine = o.role === "api" ? null : await RemoteEngine.start({ modelFolder: o.modelFolder, provider: o.provider }, {
    events: () => {}, failed: () => {}, step: () => {}, log: o.log,
  });
  let db: Database;
  try {
    db = await openDatabase({ url: o.databaseUrl, dataDir: o.dataDir, embeddedPort: o.embeddedPort, log: o.log });
  } catch (e) {
    await engine?.release();
    throw e;
  }
  const bus = new EventBus(db.url, o.log);
  await bus.start();
  const metrics = new Metrics();
  metrics.attach({
    prisma: db.prisma, bus, role: o.role, model: model.manifest, provider: engine?.provider ?? "none",
    batchImages: engine ? o.batchImages ?? DEFAULT_BATCH_IMAGES : 0, subscriptions: () => activeSubscriptions(bus),
  });
  let worker: Worker | null = null;
  let http: HttpServer | null = null;
  let ops: OpsServer | null = null;
  let url: string | null = null;
  let closing = false;
  const opsTarget: OpsTarget = {
    role: o.role, prisma: db.prisma, model, metrics, closing: () => closing,
    worker: engine ? { get running() { return worker?.running ?? false; }, provider: engine.provider } : null,
  };
  try {
    if (o.role !== "api") {
      worker = new Worker(db.prisma, bus, engine!, model, { log: o.log, batchImages: o.batchImages, healthFile: process.env.MOSAIC_HEALTH_FILE, queue: o.queue, metrics, retentionDays: o.retentionDays });
      await worker.start();
    }
    if (o.role === "worker" || o.metricsPort !== undefined) {
      ops = await startOpsServer(opsTarget, o.metricsPort ?? DEFAULT_METRICS_PORT, o.metricsPort !== undefined, o.log, o.host ?? LOOPBACK);
    }
    if (o.role !== "worker") {
      const access = await openAccess(db.prisma, o.access ?? DEFAULT_ACCESS);
      http = createHttpServer({ prisma: db.prisma, bus, model, role: o.role, startedAt: new Date(), queue: o.queue ?? DEFAULT_QUEUE, log: o.log, access }, opsTarget, { corsOrigins: o.corsOrigins, trustProxy: o.trustProxy, publicUrl: o.publicUrl, graphiql: o.graphiql });
      await new Promise<void>((resolve, reject) => {
        http!.server.once("error", reject);
        http!.server.listen(o.port, o.host ?? LOOPBACK, resolve);
      });
      url = `http://localhost:${(http.server.address() as AddressInfo).port}${GRAPHQL_PATH}`;
    }
  } catch (e) {
    await ops?.close();
    await worker?.stop();
    await bus.close();
    await engine?.release();
    await db.close();
    throw e;
  }
  let shutdown: Promise<void> | null = null;
  return {
    url, db, worker, engine, model, metrics, opsUrl: ops?.url ?? null,
    close() {
      closing = true;
      shutdown ??= (async () => {
        await http?.close();
        await worker?.stop();
        await ops?.close();
        await bus.close();
        await engine?.release();
        await db.close();
      })();
      return shutdown;
    },
  };
}
