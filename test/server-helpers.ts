/**
 * Real PostgreSQL for the server tests: a fresh database per test file, on DATABASE_URL's server
 * when it is set, otherwise on an embedded PostgreSQL started for the file.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient as createSseClient } from "graphql-sse";
import { createClient as createWsClient } from "graphql-ws";
import { spawn, type ChildProcess } from "node:child_process";
import pg from "pg";
import WebSocket from "ws";
import { startApp, type App } from "../src/app.ts";
import { DEFAULT_ACCESS, type AccessSettings } from "../src/auth/access.ts";
import type { Role } from "../src/graphql/context.ts";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { startEmbedded, type EmbeddedDatabase } from "../src/db/embedded.ts";
import type { LogFn } from "../src/ops/log.ts";
import type { QueueSettings } from "../src/jobs/queue.ts";
import { MODEL_DIR, type Json } from "./helpers.ts";

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

let embedded: { db: EmbeddedDatabase; dir: string } | null = null;

async function serverUrl(): Promise<string> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  if (!embedded) {
    const dir = await mkdtemp(path.join(tmpdir(), "mosaic-pg-"));
    // Port 0: a free one (a random fixed port collided with other test runs on the same machine).
    embedded = { db: await startEmbedded(dir, 0, () => {}), dir };
  }
  return embedded.db.url;
}

/** A fresh database on `server` (a connection URL), or on the default test server. */
export async function createTestDatabase(server?: string): Promise<TestDatabase> {
  const base = server ?? (await serverUrl());
  const name = `mosaic_test_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function stopEmbedded(): Promise<void> {
  if (!embedded) return;
  await embedded.db.stop();
  await rm(embedded.dir, { recursive: true, force: true });
  embedded = null;
}

export interface TestAppOptions {
  queue?: QueueSettings;
  batchImages?: number;
  corsOrigins?: string[];
  trustProxy?: boolean;
  publicUrl?: string;
  graphiql?: boolean;
  retentionDays?: number;
  access?: AccessSettings;
  /** Receives the process's log lines (silent by default). */
  log?: LogFn;
}

/**
 * Tests act as one client (one address) that queues far more than a person would: without a key,
 * the default quotas (4 active per address) would refuse them. Quota tests pass their own.
 */
export const UNLIMITED_ACCESS: AccessSettings = { ...DEFAULT_ACCESS, quotas: { active: 1_000_000, imagesPerHour: 1_000_000_000, queueLimit: 1_000_000 } };
const UNLIMITED_ENV = { MOSAIC_QUOTA_ACTIVE: "1000000", MOSAIC_QUOTA_IMAGES_PER_HOUR: "1000000000", MOSAIC_QUEUE_LIMIT: "1000000" };

export function startTestApp(url: string, role: Role, o: TestAppOptions = {}): Promise<App> {
  return startApp({ role, port: 0, databaseUrl: url, dataDir: "unused", embeddedPort: 0, modelFolder: MODEL_DIR, provider: "cpu", log: o.log ?? (() => {}), queue: o.queue, batchImages: o.batchImages, corsOrigins: o.corsOrigins, trustProxy: o.trustProxy, publicUrl: o.publicUrl, graphiql: o.graphiql, retentionDays: o.retentionDays, access: o.access ?? UNLIMITED_ACCESS });
}

/** The row id inside a Relay global id. */
export const uuidOf = (globalId: string) => Buffer.from(globalId, "base64").toString().split(":")[1]!;

/** Polls `check` every 20 ms until it returns a value, or fails after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface MosaicProcess {
  child: ChildProcess;
  url: string | null;
  /** Everything it wrote to stderr so far. */
  log(): string;
}

/** A real `mosaic` process (serve, or worker); resolves once it is up, with its GraphQL URL for serve. */
export function spawnMosaic(args: string[], env: Record<string, string>): Promise<MosaicProcess> {
  const isWorker = args[0] === "worker";
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, "bin", "mosaic.js"), ...args, ...(isWorker ? [] : ["--port", "0"])], {
    env: { ...process.env, MOSAIC_MODEL: MODEL_DIR, ...UNLIMITED_ENV, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  const p: MosaicProcess = { child, url: null, log: () => err };
  return new Promise((resolve, reject) => {
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const url = /GraphQL and GraphiQL at (\S+)/.exec(err)?.[1];
      if (url) resolve({ ...p, url });
      else if (isWorker && err.includes("worker started")) resolve(p);
    });
    child.once("exit", (code, signal) => reject(new Error(`mosaic ${args.join(" ")} exited ${code ?? signal}: ${err}`)));
  });
}

export interface GqlResult {
  data?: Json;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export async function gql(app: App, query: string, variables: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<GqlResult> {
  const res = await fetch(app.url!, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query, variables }) });
  return (await res.json()) as GqlResult;
}

export const EVENTS = `subscription($id: ID!) { generationEvents(id: $id) {
  __typename
  ... on Queued { position etaSeconds }
  ... on Progress { tokensDone tokensTotal previews { index tokensDone url } }
  ... on Completed { generation { status images { index seed width height url(size: 128) } } }
  ... on Failed { code message }
  ... on Cancelled { generation { status tokensDone } }
} }`;

/** All events of one subscription, over SSE (yoga's default transport). */
export async function eventsOverSse(app: App, id: string, onEvent?: (e: Json) => void): Promise<Json[]> {
  const client = createSseClient({ url: app.url! });
  const out: Json[] = [];
  try {
    for await (const r of client.iterate({ query: EVENTS, variables: { id } })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      const e = (r.data as Json).generationEvents;
      out.push(e);
      onEvent?.(e);
    }
  } finally {
    client.dispose();
  }
  return out;
}

/** The same over graphql-ws on the same port and path. */
export async function eventsOverWs(app: App, id: string): Promise<Json[]> {
  const client = createWsClient({ url: app.url!.replace(/^http/, "ws"), webSocketImpl: WebSocket });
  const out: Json[] = [];
  try {
    for await (const r of client.iterate({ query: EVENTS, variables: { id } })) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      out.push((r.data as Json).generationEvents);
    }
  } finally {
    await client.dispose();
  }
  return out;
}

export const CREATE = `mutation($input: CreateGenerationInput!) { createGeneration(input: $input) { id status seed count normalizedPrompt } }`;

export async function create(app: App, input: Record<string, unknown>): Promise<{ id: string; status: string; seed: number }> {
  const r = await gql(app, CREATE, { input });
  if (r.errors) throw new Error(JSON.stringify(r.errors));
  return r.data.createGeneration;
}

/** One SQL statement on its own connection: the rows. */
export async function sql(url: string, text: string, params: unknown[] = []): Promise<Json[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(text, params)).rows;
  } finally {
    await c.end();
  }
}
