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
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  return {
    prisma, url, embedded,
    async close() {
      await prisma.$disconnect();
      await embedded?.stop();
    },
  };
}
