/** The server's settings from the environment, with their defaults (the engine's, model folder and provider, are in engine/settings.ts). */
import path from "node:path";
import { badInput } from "./engine/errors.ts";
import { DEFAULT_ACCESS, type AccessSettings } from "./auth/access.ts";
import { parseAuthMode } from "./auth/viewer.ts";
import { DEFAULT_QUOTAS } from "./jobs/admission.ts";
import { DEFAULT_QUEUE, type QueueSettings } from "./jobs/queue.ts";

export interface ServerConfig {
  port: number;
  databaseUrl: string | undefined;
  dataDir: string;
  embeddedPort: number;
  batchImages: number;
  /** Port of the separate /metrics, /livez, /readyz server (MOSAIC_METRICS_PORT); unset: 9464 for a worker, none for serve. */
  metricsPort: number | undefined;
  /** Address the HTTP servers listen on (HOST); unset: 127.0.0.1 only (a fresh install needs no key). */
  host: string | undefined;
  /** Other origins whose pages may call the API from a browser (MOSAIC_CORS_ORIGINS, comma-separated); none by default. */
  corsOrigins: string[];
  /** Believe X-Forwarded-* headers (MOSAIC_TRUST_PROXY=1): only behind a reverse proxy that sets them. */
  trustProxy: boolean;
  /** The address clients reach the server at (MOSAIC_PUBLIC_URL): image URLs are built on it, whatever Host a client sends. */
  publicUrl: string | undefined;
  /** GraphiQL and introspection (MOSAIC_GRAPHIQL=0 turns both off); default on, off with MOSAIC_AUTH=required. */
  graphiql: boolean;
  /** Days a finished generation is kept (MOSAIC_RETENTION_DAYS); undefined: for ever. */
  retentionDays: number | undefined;
  /** Lease of a running job, in ms (MOSAIC_LEASE_SECONDS), and how many claims a job may have (MOSAIC_MAX_ATTEMPTS). */
  queue: QueueSettings;
  /** MOSAIC_AUTH, the quotas, signed-URL lifetime and the per-connection subscription cap. */
  access: AccessSettings;
}

/** A setting written in digits, as a number; NaN otherwise (Number() also reads "1e99" and "0x10"). */
const digits = (v: string) => (/^\s*\d{1,15}\s*$/.test(v) ? Number(v) : Number.NaN);

function intEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = digits(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw badInput(`${name} must be a port number (got "${v}")`);
  return n;
}

/** DATABASE_URL, when set, is a postgres:// or postgresql:// URL ("notaurl" was read as a host named "base"). */
function databaseUrl(v: string | undefined): string | undefined {
  if (!v) return undefined;
  let ok = false;
  try {
    const u = new URL(v);
    ok = (u.protocol === "postgres:" || u.protocol === "postgresql:") && u.hostname !== "";
  } catch {
    // refused below
  }
  // The value is not echoed: it may carry a password.
  if (!ok) throw badInput("DATABASE_URL must be a postgresql://user@host:port/database URL");
  return v;
}

/**
 * MOSAIC_PUBLIC_URL, when set: an http(s) URL with an optional path (a proxy's prefix), without user,
 * query or fragment. Returned without a trailing slash, since image paths are appended to it.
 */
function publicUrl(v: string | undefined): string | undefined {
  if (!v) return undefined;
  let u: URL | undefined;
  try {
    u = new URL(v);
  } catch {
    // refused below
  }
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:") || u.username || u.password || u.search || u.hash || v.includes("?") || v.includes("#")) {
    throw badInput(`MOSAIC_PUBLIC_URL must be an http:// or https:// address such as https://mosaic.example.com (got "${v}")`);
  }
  return `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
}

/** A whole number from 1 to `max`, written in digits. */
function positiveEnv(name: string, fallback: number, max = 1_000_000_000): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = digits(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw badInput(`${name} must be a whole number from 1 to ${max} (got "${v}")`);
  return n;
}

function secondsEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.5 || n > 86_400) throw badInput(`${name} must be a number of seconds from 0.5 to 86400 (got "${v}")`);
  return n;
}

/** MOSAIC_GRAPHIQL: on or off when set; unset, on with auth off and off when keys are required. */
function graphiqlEnv(): boolean {
  const v = (process.env.MOSAIC_GRAPHIQL ?? "").toLowerCase();
  if (v === "") return authMode() !== "required";
  return !["0", "false", "no", "off"].includes(v);
}

function authMode() {
  try {
    return parseAuthMode(process.env.MOSAIC_AUTH);
  } catch (e) {
    throw badInput((e as Error).message);
  }
}

export function serverConfig(flags: { port?: string } = {}): ServerConfig {
  const port = flags.port !== undefined ? digits(flags.port) : intEnv("PORT", 4000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw badInput(`--port must be a port number (got "${flags.port}")`);
  return {
    port,
    databaseUrl: databaseUrl(process.env.DATABASE_URL),
    dataDir: path.resolve(process.env.MOSAIC_DATA_DIR ?? "data"),
    embeddedPort: intEnv("MOSAIC_EMBEDDED_PG_PORT", 0), // 0: 54329 when free, else any free port
    batchImages: positiveEnv("MOSAIC_WORKER_BATCH", 16),
    metricsPort: process.env.MOSAIC_METRICS_PORT ? intEnv("MOSAIC_METRICS_PORT", 0) : undefined,
    host: process.env.HOST || undefined,
    retentionDays: process.env.MOSAIC_RETENTION_DAYS ? positiveEnv("MOSAIC_RETENTION_DAYS", 1) : undefined,
    graphiql: graphiqlEnv(),
    trustProxy: ["1", "true", "yes"].includes((process.env.MOSAIC_TRUST_PROXY ?? "").toLowerCase()),
    publicUrl: publicUrl(process.env.MOSAIC_PUBLIC_URL),
    corsOrigins: (process.env.MOSAIC_CORS_ORIGINS ?? "").split(",").map((o) => o.trim().replace(/\/+$/, "")).filter(Boolean),
    access: {
      auth: authMode(),
      quotas: {
        active: positiveEnv("MOSAIC_QUOTA_ACTIVE", DEFAULT_QUOTAS.active),
        imagesPerHour: positiveEnv("MOSAIC_QUOTA_IMAGES_PER_HOUR", DEFAULT_QUOTAS.imagesPerHour),
        queueLimit: positiveEnv("MOSAIC_QUEUE_LIMIT", DEFAULT_QUOTAS.queueLimit),
      },
      // A year at most: a link's expiry must stay a 12-digit Unix time (signing.ts).
      urlTtlSeconds: positiveEnv("MOSAIC_URL_TTL_SECONDS", DEFAULT_ACCESS.urlTtlSeconds, 31_536_000),
      maxSubscriptionsPerSocket: positiveEnv("MOSAIC_WS_MAX_SUBSCRIPTIONS", DEFAULT_ACCESS.maxSubscriptionsPerSocket),
    },
    queue: { leaseMs: secondsEnv("MOSAIC_LEASE_SECONDS", DEFAULT_QUEUE.leaseMs / 1000) * 1000, maxAttempts: positiveEnv("MOSAIC_MAX_ATTEMPTS", DEFAULT_QUEUE.maxAttempts) },
  };
}
