/**
 * A running Mosaic process in one of its roles: "all" (API and worker, the default), "api" or
 * "worker". Every role talks to the others only through PostgreSQL.
 */
import type { AddressInfo } from "node:net";
import { openDatabase, type Database } from "./db/client.ts";
import { loadModelInfo, type ModelInfo } from "./engine/model.ts";
import { RemoteEngine } from "./engine/thread/remote.ts";
import type { ProviderName } from "./engine/providers.ts";
import type { Role } from "./graphql/context.ts";
import { createHttpServer, GRAPHQL_PATH, type HttpServer } from "./graphql/server.ts";
import { EventBus } from "./jobs/events.ts";
import { DEFAULT_QUEUE, type QueueSettings } from "./jobs/queue.ts";
import { Worker } from "./jobs/worker.ts";

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
  log: (line: string) => void;
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
  let worker: Worker | null = null;
  let http: HttpServer | null = null;
  let url: string | null = null;
  try {
    if (o.role !== "api") {
      worker = new Worker(db.prisma, bus, engine!, model, { log: o.log, batchImages: o.batchImages, healthFile: process.env.MOSAIC_HEALTH_FILE, queue: o.queue });
      await worker.start();
    }
    if (o.role !== "worker") {
      http = createHttpServer({ prisma: db.prisma, bus, model, role: o.role, startedAt: new Date(), queue: o.queue ?? DEFAULT_QUEUE, log: o.log });
      await new Promise<void>((resolve, reject) => {
        http!.server.once("error", reject);
        http!.server.listen(o.port, resolve);
      });
      url = `http://localhost:${(http.server.address() as AddressInfo).port}${GRAPHQL_PATH}`;
    }
  } catch (e) {
    await worker?.stop();
    await bus.close();
    await engine?.release();
    await db.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    url, db, worker, engine, model,
    close() {
      closing ??= (async () => {
        await http?.close();
        await worker?.stop();
        await bus.close();
        await engine?.release();
        await db.close();
      })();
      return closing;
    },
  };
}
