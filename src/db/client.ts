/** The database a process uses: DATABASE_URL when set, else the embedded PostgreSQL; migrated. */
import { PrismaPg } from "@prisma/adapter-pg";
import { MosaicError } from "../engine/errors.ts";
import { startEmbedded, type EmbeddedDatabase } from "./embedded.ts";
import { errorSummary, isDatabaseUnavailable } from "./errors.ts";
import { PrismaClient } from "./generated/client.ts";
import { migrate } from "./migrate.ts";

export type Prisma = InstanceType<typeof PrismaClient>;

export interface Database {
  prisma: Prisma;
  url: string;
  embedded: EmbeddedDatabase | null;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url?: string;
  dataDir: string;
  embeddedPort: number;
  log: (line: string) => void;
}

export async function openDatabase(o: DatabaseOptions): Promise<Database> {
  const embedded = o.url ? null : await startEmbedded(o.dataDir, o.embeddedPort, o.log);
  const url = o.url ?? embedded!.url;
  try {
    const m = await migrate(url);
    if (m.applied.length) o.log(`mosaic: applied migrations ${m.applied.join(", ")}`);
  } catch (e) {
    await embedded?.stop();
    // The operator's DATABASE_URL: one line saying what is wrong with it, not the driver's stack.
    if (o.url && (isDatabaseUnavailable(e) || refusedUs(e))) throw new MosaicError("DATABASE_UNAVAILABLE", `cannot use the database at ${where(o.url)}: ${errorSummary(e)}`, { cause: e });
    throw e;
  }
  // Prisma's pg adapter reads timestamptz values as if they were UTC, dropping the offset PostgreSQL
  // prints in the session's time zone (with the database set to Europe/Berlin every time came back
  // an hour late). Its sessions therefore run in UTC; the values are timestamptz either way, and the
  // lease arithmetic uses the database's now().
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, options: "-c TimeZone=UTC" }) });
  return {
    prisma, url, embedded,
    async close() {
      await prisma.$disconnect();
      await embedded?.stop();
    },
  };
}

/** Host, port and database of a URL, without its user and password. */
function where(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || "5432"}${u.pathname}`;
}

/** PostgreSQL refused this client: a password or role it does not accept (28xxx), no such database (3D000). */
function refusedUs(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("28") || code === "3D000");
}
