/**
 * A worker's rounds that look after the whole queue rather than its own jobs: generations left RUNNING
 * by a worker that stopped answering go back to the queue (or fail, when lost too often), and, with a
 * retention period, generations that ended long ago are deleted. Any worker may run them; each round
 * is one conditional statement, so workers running them at once do not collide (queue.ts).
 */
import type { Prisma } from "../db/client.ts";
import type { LogFn } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { deleteExpired, heartbeatMs, requeueStale, type QueueSettings } from "./queue.ts";

export interface HousekeepingOptions {
  log: LogFn;
  metrics?: Metrics;
  queue: QueueSettings;
  /** Delete generations that ended this many days ago, at start and hourly; unset: keep all. */
  retentionDays?: number;
}

export class Housekeeping {
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly prisma: Prisma, private readonly o: HousekeepingOptions) {}

  /** The first requeue round runs before this returns: jobs of a process that died are back before claiming starts. */
  async start(): Promise<void> {
    await this.requeue();
    this.timers.push(setInterval(() => void this.requeue(), heartbeatMs(this.o.queue) * 2));
    if (this.o.retentionDays) {
      void this.expire();
      this.timers.push(setInterval(() => void this.expire(), 60 * 60_000));
    }
  }

  stop(): void {
    this.timers.forEach(clearInterval);
    this.timers = [];
  }

  private async requeue(): Promise<void> {
    const { log, metrics, queue } = this.o;
    try {
      for (const r of await requeueStale(this.prisma, queue)) {
        if (r.status === "FAILED") {
          metrics?.generations.inc({ outcome: "failed" });
          metrics?.failures.inc({ code: "WORKER_LOST" });
          log(`mosaic: generation ${r.id} failed: its worker was lost ${queue.maxAttempts} times [WORKER_LOST]`, { event: "failed", generationId: r.id, code: "WORKER_LOST", level: "warn" });
        } else {
          metrics?.requeued.inc({ reason: "lost" });
          log(`mosaic: generation ${r.id} requeued: its worker stopped answering`, { event: "requeued", generationId: r.id, level: "warn" });
        }
      }
    } catch {
      // The database is away; the next round tries again.
    }
  }

  private async expire(): Promise<void> {
    try {
      const n = await deleteExpired(this.prisma, this.o.retentionDays!);
      if (n) this.o.log(`mosaic: deleted ${n} generation(s) that ended over ${this.o.retentionDays} days ago`, { event: "retention", deleted: n });
    } catch {
      // The database is away; the next hour tries again.
    }
  }
}
