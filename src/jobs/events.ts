/**
 * Cross-process events over PostgreSQL LISTEN/NOTIFY. Payloads carry ids only (NOTIFY is limited
 * to 8000 bytes); whoever is told reads the rows. One listening connection per process.
 */
import pg from "pg";
import type { Prisma } from "../db/client.ts";

export const CHANNEL = "mosaic_events";

export type BusEvent =
  /** A generation's row changed: status, progress or a cancel request. */
  | { kind: "generation"; id: string }
  /** The queue changed (a job was added, claimed or left): positions move, workers wake. */
  | { kind: "queue" };

export async function publish(prisma: Prisma, event: BusEvent): Promise<void> {
  await prisma.$executeRaw`SELECT pg_notify(${CHANNEL}, ${JSON.stringify(event)})`;
}

type Handler = (event: BusEvent) => void;

export class EventBus {
  private readonly handlers = new Set<Handler>();
  private client: pg.Client | null = null;
  private closed = false;

  constructor(private readonly url: string, private readonly log: (line: string) => void) {}

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on("notification", (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      let event: BusEvent;
      try {
        event = JSON.parse(msg.payload) as BusEvent;
      } catch {
        return;
      }
      for (const h of this.handlers) h(event);
    });
    client.on("error", (e) => {
      if (this.closed) return;
      this.log(`mosaic: event connection lost (${e.message}); reconnecting`);
      this.client = null;
      setTimeout(() => void this.reconnect(), 1000);
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.client = client;
  }

  private async reconnect(): Promise<void> {
    if (this.closed || this.client) return;
    try {
      await this.connect();
      // Anything may have happened while we were away: let every listener re-read its state.
      for (const h of this.handlers) h({ kind: "queue" });
    } catch {
      setTimeout(() => void this.reconnect(), 2000);
    }
  }

  subscribe(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}
