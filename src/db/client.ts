/** The database a process uses: DATABASE_URL when set, else the embedded PostgreSQL; migrated. */
import { PrismaPg } from "@prisma/adapter-pg";
import { startEmbedded, type EmbeddedDatabase } from "./embedded.ts";
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
