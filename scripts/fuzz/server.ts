/** A server to fuzz: the app ("all") on a fresh test database with one finished generation. */
import { excerpt } from "./report.ts";
import { urls } from "./run.ts";

export interface FuzzServer {
  /** Base URL (http://localhost:port/). */
  url: string;
  /** Error lines the server logged (masked errors keep their detail here), the first few. */
  errors: string[];
  errorCount(): number;
  close(): Promise<void>;
}

/** The PostgreSQL the CLI uses: DATABASE_URL's, else 127.0.0.1:5432/test when it answers, else an embedded one (undefined). */
export async function defaultDatabaseServer(): Promise<string | undefined> {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  const local = "postgresql://postgres@127.0.0.1:5432/test";
  const pg = (await import("pg")).default;
  const c = new pg.Client({ connectionString: local, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
    return local;
  } catch {
    return undefined;
  }
}

/**
 * A server ("all": API and worker) on a fresh test database, as the tests start one, with one finished
 * generation (2 images, previews) so that real ids, cursors, images and previews exist.
 * `database`: a PostgreSQL server URL; default as the tests (DATABASE_URL, else embedded).
 */
export async function startFuzzServer(o: { database?: string } = {}): Promise<FuzzServer> {
  const h = await import("../../test/server-helpers.ts");
  const db = await h.createTestDatabase(o.database);
  const errors: string[] = [];
  let count = 0;
  const log = (line: string, fields?: { level?: string; err?: unknown; event?: string }) => {
    if (fields?.event === "http_request") return;
    if (!(/request failed|graphql-yoga/.test(line) || fields?.level === "error" || fields?.err !== undefined)) return;
    count++;
    if (errors.length < 50) errors.push(excerpt(line.split("\n").slice(0, 3).join(" | "), 400));
  };
  let app;
  try {
    app = await h.startTestApp(db.url, "all", { log: log as (line: string) => void });
    const g = await h.create(app, { prompt: "a big red circle in the centre, blue background", seed: 7, count: 2 });
    await h.eventsOverSse(app, g.id);
  } catch (e) {
    await app?.close();
    await db.drop();
    throw e;
  }
  const started = app;
  return {
    url: urls(started.url!).base.toString(),
    errors,
    errorCount: () => count,
    async close() {
      await started.close();
      await db.drop();
    },
  };
}
