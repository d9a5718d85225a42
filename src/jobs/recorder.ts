/**
 * What a worker writes for its jobs: progress with the codes a resume needs, previews, the final
 * images, a cancellation or a failure. Every write is conditional on the job still being this
 * worker's and running (a job requeued meanwhile throws LostJob), and a write that fails because the
 * database is away is retried with backoff, the job's state staying in memory meanwhile.
 * Progress and previews of all the worker's jobs go out together, batched (progress-writer.ts).
 * Split from the worker, which decides what runs; this module only records what happened.
 */
import { randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import { errorSummary, isDatabaseUnavailable } from "../db/errors.ts";
import { MosaicError } from "../engine/errors.ts";
import type { GenerationEvent } from "../engine/generate.ts";
import { encodeFrame } from "../images/encode.ts";
import type { LogFn } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { packCodes } from "./codes.ts";
import { CHANNEL, publish } from "./events.ts";
import { LostJob, type Job } from "./job.ts";
import { ProgressWriter } from "./progress-writer.ts";
import { dropOldPreviews } from "./queue.ts";

/** How long a write is retried while the database is unreachable before the job is given up. */
const RETRY_FOR_MS = 10 * 60_000;

export interface RecorderOptions {
  log: LogFn;
  metrics?: Metrics;
  /** A job whose batched progress write found its row taken from this worker, or failed for good. */
  lost: (job: Job, e: unknown) => void;
}

export class Recorder {
  private readonly progress: ProgressWriter;

  /** `stopping`: the worker is stopping, so a write is not retried any longer. */
  constructor(private readonly prisma: Prisma, private readonly workerId: string, private readonly o: RecorderOptions, private readonly stopping: () => boolean) {
    this.progress = new ProgressWriter(prisma, workerId, o);
  }

  /** No more batched progress writes; resolves when one in flight has ended (the worker saves the rest itself). */
  stopProgress(): Promise<void> {
    return this.progress.stop();
  }

  /** Runs a database write, retrying with backoff while the database is unreachable (other errors are not retried). */
  private async retrying<T>(what: string, id: string, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    let wait = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!isDatabaseUnavailable(e) || this.stopping() || performance.now() - start > RETRY_FOR_MS) throw e;
        if (attempt === 1) {
          this.o.metrics?.databaseRetries.inc({ operation: what });
          this.o.log(`mosaic: generation ${id}: ${what} failed (${errorSummary(e)}); retrying until the database answers`, { event: "database_retry", generationId: id, operation: what, level: "warn" });
        }
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 2_000);
      }
    }
  }

  /** The job's codes and progress, written only while it is still ours and running. */
  async saveProgress(job: Job): Promise<void> {
    const id = job.row.id;
    const codes = packCodes(job.grids);
    const n = await this.retrying("saving progress", id, () => this.prisma.$executeRaw`
      UPDATE "Generation" SET "tokensDone" = ${job.tokensDone}, codes = ${codes}, "heartbeatAt" = now()
      WHERE id = ${id}::uuid AND "workerId" = ${this.workerId} AND status = 'RUNNING'`);
    if (n !== 1) throw new LostJob();
    job.tokensSaved = job.tokensDone;
  }

  async record(job: Job, ev: GenerationEvent): Promise<void> {
    const id = job.row.id;
    if (ev.type === "progress") {
      ev.tokens.forEach((t, i) => { job.grids[i]![ev.tokensDone - 1] = t; });
      job.tokensDone = ev.tokensDone;
      // Progress and previews go out with the other jobs' in one write (progress-writer.ts). A
      // preview may show an earlier point than this step (previews run beside the decoder).
      if (!ev.previews) this.progress.mark(job);
      else if (ev.tokensDone < ev.tokensTotal) await this.progress.preview(job, ev.previewTokens ?? ev.tokensDone, ev.previews);
      // The last one, which the completion follows: written now, retried while the database is away.
      else await this.retrying("saving previews", id, () => this.progress.preview(job, ev.previewTokens ?? ev.tokensDone, ev.previews!, true));
    } else if (ev.type === "completed") {
      const images = await Promise.all(ev.images.map(async (img) => ({
        id: randomUUID(), generationId: id, index: img.index, seed: img.seed, format: "png",
        width: img.width, height: img.height, bytes: toBytes(await encodeFrame(img, { format: "png" })),
      })));
      const codes = packCodes(ev.images.map((i) => i.codes));
      // Creation to finish, both stamped by the database (now()), whichever worker started it.
      // The notification is sent in the same transaction: PostgreSQL delivers it at the commit, so a
      // listener never reads the row before it is COMPLETED, and there is no round trip of its own.
      // Marked 'by' this worker, which has nothing to check on it (no re-read, no cancel of a finished job).
      const totalMs = await this.retrying("storing the images", id, () => this.prisma.$transaction(async (tx) => {
        const done = await tx.$queryRaw<{ totalMs: number }[]>`
          WITH done AS (
            UPDATE "Generation" SET status = 'COMPLETED', "tokensDone" = ${job.row.tokensTotal}, "finishedAt" = now(), codes = ${codes}
            WHERE id = ${id}::uuid AND "workerId" = ${this.workerId} AND status = 'RUNNING'
            RETURNING id, (EXTRACT(EPOCH FROM "finishedAt" - "createdAt") * 1000)::float AS "totalMs")
          SELECT "totalMs", pg_notify(${CHANNEL}, json_build_object('kind', 'generation', 'id', id, 'by', ${this.workerId}::text)::text)::text AS sent FROM done`;
        if (done.length !== 1) return null;
        await tx.image.createMany({ data: images });
        // The final images supersede every preview.
        await tx.preview.deleteMany({ where: { generationId: id } });
        return done[0]!.totalMs;
      }));
      if (totalMs === null) throw new LostJob();
      const runMs = performance.now() - job.claimedAt;
      const m = this.o.metrics;
      m?.generations.inc({ outcome: "completed" });
      m?.images.inc(images.length);
      m?.runTime.observe(runMs / 1000);
      m?.endToEnd.observe(totalMs / 1000);
      this.o.log(`mosaic: generation ${id} completed in ${(ev.timings.totalMs / 1000).toFixed(2)} s (this attempt)`, {
        event: "completed", generationId: id, images: images.length, engineSeconds: round(ev.timings.totalMs / 1000), runSeconds: round(runMs / 1000),
        queueWaitSeconds: seconds(job.queueWaitMs), totalSeconds: round(totalMs / 1000), resumed: job.queueWaitMs === null,
      });
    } else if (ev.type === "cancelled") {
      const n = await this.retrying("recording the cancellation", id, () => this.endShort(id, (tx) => tx.$executeRaw`
        UPDATE "Generation" SET status = 'CANCELLED', "finishedAt" = now()
        WHERE id = ${id}::uuid AND "workerId" = ${this.workerId} AND status = 'RUNNING' AND "cancelRequested"`));
      if (n === 1) {
        this.o.metrics?.generations.inc({ outcome: "cancelled" });
        this.o.log(`mosaic: generation ${id} cancelled at token ${ev.tokensDone}`, { event: "cancelled", generationId: id, tokensDone: ev.tokensDone });
        await this.retrying("notifying", id, () => publish(this.prisma, { kind: "generation", id }));
      }
    }
  }

  /**
   * A job that ends short of its images: its status update (`update`, the rows it changed) and the
   * dropping of its older previews in one transaction, so that a client that reads the new status
   * never sees the previews it supersedes.
   */
  private endShort(id: string, update: (tx: Pick<Prisma, "$executeRaw">) => Promise<number>): Promise<number> {
    return this.prisma.$transaction(async (tx) => {
      const n = await update(tx);
      if (n === 1) await dropOldPreviews(tx, id);
      return n;
    });
  }

  /**
   * Ends a job FAILED with a code and a plain message; the detail (driver text, stack) goes to the
   * log with the generation id, never to clients.
   */
  async fail(id: string, e: unknown): Promise<void> {
    const known = e instanceof MosaicError && e.code !== "INFERENCE_FAILED";
    const code = e instanceof MosaicError ? e.code : "INTERNAL";
    const message = known ? (e as MosaicError).message
      : code === "INFERENCE_FAILED" ? "inference failed; the server log has the details under this generation's id"
        : "internal error; the server log has the details under this generation's id";
    // Once, with the stack and the cause (pino serializes both from `err`).
    this.o.log(`mosaic: generation ${id} failed [${code}]: ${e instanceof Error ? e.message : String(e)}`, { event: "failed", generationId: id, code, err: e });
    const n = await this.retrying("recording the failure", id, () => this.endShort(id, (tx) => tx.$executeRaw`
      UPDATE "Generation" SET status = 'FAILED', "errorCode" = ${code}, "errorMessage" = ${message}, "finishedAt" = now()
      WHERE id = ${id}::uuid AND "workerId" = ${this.workerId} AND status = 'RUNNING'`)).catch(() => 0);
    if (n === 1) {
      this.o.metrics?.generations.inc({ outcome: "failed" });
      this.o.metrics?.failures.inc({ code });
      await publish(this.prisma, { kind: "generation", id }).catch(() => {});
    }
  }
}

const round = (s: number) => Math.round(s * 1000) / 1000;
export const seconds = (ms: number | null) => (ms === null ? null : round(ms / 1000));

/** Prisma's Bytes wants a Uint8Array over a plain ArrayBuffer. */
function toBytes(b: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}
