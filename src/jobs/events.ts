/**
 * Cross-process events over PostgreSQL LISTEN/NOTIFY. Payloads carry ids only (NOTIFY is limited
 * to 8000 bytes); whoever is told reads the rows. One listening connection per process.
 */
import pg from "pg";
import type { Prisma } from "../db/client.ts";
import type { LogFn } from "../ops/log.ts";

export const CHANNEL = "mosaic_events";

export type BusEvent =
  /**
   * A generation's row changed: status, progress or a cancel request. `progress`: only its progress
   * (tokens, codes, previews), written by the worker that runs it, which has nothing to check then.
   * `by`: the worker that wrote the change (its claim or completion), which need not re-read the row for it.
   */
  | { kind: "generation"; id: string; progress?: true; by?: string }
  /** The queue changed (a job was added, claimed or left): positions move, workers wake. */
  | { kind: "queue" };

export async function publish(prisma: Prisma, event: BusEvent): Promise<void> {
  await prisma.$executeRaw`SELECT pg_notify(${CHANNEL}, ${JSON.stringify(event)})`;
}

type Handler = (event: BusEvent) => void;

/**
 * One LISTEN connection per process. When it is lost (an `error` or an `end`, e.g. the database
 * restarting or `pg_terminate_backend`), exactly one reconnect loop runs, with backoff, and every
 * listener is then told to re-read its state, since notifications sent meanwhile are gone.
 */
export class EventBus {
  private readonly handlers = new Set<Handler>();
  private client: pg.Client | null = null;
  private closed = false;
  private reconnecting = false;
  /** Connections made after the first (for tests and metrics). */
  reconnects = 0;

  constructor(private readonly url: string, private readonly log: LogFn) {}

  async start(): Promise<void> {
    this.client = await this.connect();
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: this.url });
    client.on("notification", (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      let event: BusEvent;
      try {
        event = JSON.parse(msg.payload) as BusEvent;
      } catch {
        return;
      }
      this.emit(event);
    });
    let lost = false;
    const onLost = (why: string) => {
      // `error` and `end` both come for one loss: handle it once, and only for the current client.
      if (lost) return;
      lost = true;
      client.removeAllListeners("notification");
      void client.end().catch(() => {});
      if (this.closed || this.client !== client) return;
      this.client = null;
      this.log(`mosaic: event connection lost (${why}); reconnecting`, { event: "bus_lost", level: "warn" });
      void this.reconnect();
    };
    client.on("error", (e) => onLost(e.message));
    client.on("end", () => onLost("connection ended"));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (e) {
      lost = true;
      await client.end().catch(() => {});
      throw e;
    }
    return client;
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    let wait = 250;
    try {
      while (!this.closed && !this.client) {
        await new Promise((r) => setTimeout(r, wait));
        if (this.closed) return;
        try {
          const client = await this.connect();
          if (this.closed) {
            await client.end().catch(() => {});
            return;
          }
          this.client = client;
          this.reconnects++;
          this.log("mosaic: event connection restored", { event: "bus_restored", reconnects: this.reconnects });
          // Anything may have happened while we were away: let every listener re-read its state.
          this.emit({ kind: "queue" });
        } catch {
          wait = Math.min(wait * 2, 4_000);
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private emit(event: BusEvent): void {
    for (const h of this.handlers) h(event);
  }

  /** Whether the LISTEN connection is up now. */
  get connected(): boolean {
    return this.client !== null;
  }

  subscribe(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => {});
  }
}
