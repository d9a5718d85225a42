/**
 * Progress of all of a worker's jobs in one statement: each job's tokens and codes (what a resume
 * needs), and its progress notification, at most every PROGRESS_EVERY_MS for the whole batch rather
 * than per job. With one statement per job and per write, a worker decoding 14 one-image jobs of
 * the shipped model sent about 140 updates and 140 notifications a second, and on a 2-core machine
 * PostgreSQL and the round trips took the cores the decoder needed: the server delivered 39-57% of
 * its engine's throughput with previews off (docs/performance.md, "The server against its engine").
 *
 * Previews go in the same statement: each job's newest one not yet written (a newer one replaces
 * it, as the engine's newest grid replaces a stale one). Completions, cancellations and failures are
 * still written by the recorder in each job's own order. A flush only ever touches rows this worker
 * still runs (status RUNNING), and stores a preview only with its row's progress: one that meets a
 * row already finished changes nothing (so no preview outlives the final images, which delete them),
 * and one that meets a row taken from the worker reports the job lost.
 */
import { randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import { errorSummary, isDatabaseUnavailable } from "../db/errors.ts";
import type { Frame } from "../engine/request.ts";
import { encodeFrame } from "../images/encode.ts";
import type { LogFn } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { packCodes } from "./codes.ts";
import { CHANNEL } from "./events.ts";
import { LostJob, type Job } from "./job.ts";

/** Progress (with the codes a resume needs) is written at most this often, for all jobs at once. */
export const PROGRESS_EVERY_MS = 100;

export interface ProgressWriterOptions {
  log: LogFn;
  metrics?: Metrics;
  /** A job whose row is no longer this worker's, or whose write failed for good. */
  lost: (job: Job, e: unknown) => void;
}

/** A preview encoded and waiting for the next flush. */
interface PendingPreview {
  tokensDone: number;
  frames: { width: number; height: number; png: string }[];
}

export class ProgressWriter {
  private readonly due = new Set<Job>();
  private readonly previews = new Map<Job, PendingPreview>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private last = 0;
  private stopped = false;
  /** The database was unreachable at the last flush (logged once per outage). */
  private failing = false;

  constructor(private readonly prisma: Prisma, private readonly workerId: string, private readonly o: ProgressWriterOptions) {}

  /** The job has progress not yet written: it goes in the next flush. */
  mark(job: Job): void {
    if (this.stopped) return;
    this.due.add(job);
    this.schedule();
  }

  /**
   * A preview of the job at `tokensDone` (PNG-encoded now): written with the next flush, unless a
   * newer one replaces it first. The final one (`now`) is written at once, before the completion
   * that follows it: the last preview is always delivered.
   */
  async preview(job: Job, tokensDone: number, frames: Frame[], now = false): Promise<void> {
    const encoded = await Promise.all(frames.map(async (f) => ({ width: f.width, height: f.height, png: (await encodeFrame(f, { format: "png" })).toString("base64") })));
    const pending = { tokensDone, frames: encoded };
    if (now) {
      this.previews.delete(job);
      const written = await this.write([job], new Map([[job, pending]]));
      if (!written.has(job.row.id)) throw new LostJob();
      this.saved(job, job.tokensDone, pending, written.get(job.row.id)!);
      return;
    }
    if (this.stopped) return;
    this.previews.set(job, pending);
    this.mark(job);
  }

  private schedule(): void {
    if (this.timer || this.flushing || this.stopped || this.due.size === 0) return;
    const wait = Math.max(0, this.last + PROGRESS_EVERY_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        this.schedule();
      });
    }, wait);
  }

  /** Stops writing; resolves once a flush in flight has ended (the worker then saves what is left itself). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flushing;
    this.due.clear();
    this.previews.clear();
  }

  private async flush(): Promise<void> {
    this.last = performance.now();
    const jobs = [...this.due].filter((j) => !j.dropped && !j.finished && (j.tokensDone > j.tokensSaved || this.previews.has(j)));
    const shown = new Map(jobs.flatMap((j) => { const p = this.previews.get(j); return p ? [[j, p] as const] : []; }));
    this.due.clear();
    for (const j of this.previews.keys()) if (j.dropped || j.finished || shown.has(j)) this.previews.delete(j);
    if (jobs.length === 0) return;
    // What this flush writes: later progress marks the job again.
    const tokens = jobs.map((j) => j.tokensDone);
    let written: Map<string, boolean>;
    try {
      written = await this.write(jobs, shown);
      if (this.failing) this.o.log("mosaic: progress writes resumed", { event: "database_restored", operation: "saving progress" });
      this.failing = false;
    } catch (e) {
      if (isDatabaseUnavailable(e) && !this.stopped) {
        // Kept in memory and written at the next flush, once the database answers (a newer preview
        // that came meanwhile wins).
        if (!this.failing) {
          this.o.metrics?.databaseRetries.inc({ operation: "saving progress" });
          this.o.log(`mosaic: saving progress failed (${errorSummary(e)}); retrying until the database answers`, { event: "database_retry", operation: "saving progress", level: "warn" });
        }
        this.failing = true;
        for (const j of jobs) this.due.add(j);
        for (const [j, p] of shown) if (!this.previews.has(j)) this.previews.set(j, p);
        return;
      }
      for (const j of jobs) if (!j.dropped && !j.finished) this.o.lost(j, e);
      return;
    }
    jobs.forEach((j, i) => {
      const previewed = written.get(j.row.id);
      // A row that ended meanwhile (its completion was recorded first) is not lost.
      if (previewed === undefined) {
        if (!j.dropped && !j.finished) this.o.lost(j, new LostJob());
      } else this.saved(j, tokens[i]!, shown.get(j), previewed);
    });
  }

  /**
   * One statement: each job's tokens and codes, its preview's frames (only for rows this worker
   * still runs), and a progress notification per row written. Returns the ids written, each with
   * whether its preview was stored.
   */
  private async write(jobs: Job[], shown: Map<Job, PendingPreview>): Promise<Map<string, boolean>> {
    const frames = [...shown].flatMap(([j, p]) => p.frames.map((f, index) => ({ gen: j.row.id, tokensDone: p.tokensDone, index, ...f })));
    const rows = await this.prisma.$queryRaw<{ id: string; previewed: boolean }[]>`
      WITH input AS (
        SELECT * FROM unnest(${jobs.map((j) => j.row.id)}::uuid[], ${jobs.map((j) => j.tokensDone)}::int[],
                             ${jobs.map((j) => Buffer.from(packCodes(j.grids)).toString("base64"))}::text[]) AS t(id, tokens, codes)),
      saved AS (
        UPDATE "Generation" g SET "tokensDone" = input.tokens, codes = decode(input.codes, 'base64'), "heartbeatAt" = now()
        FROM input WHERE g.id = input.id AND g."workerId" = ${this.workerId} AND g.status = 'RUNNING'
        RETURNING g.id),
      stored AS (
        INSERT INTO "Preview" (id, "generationId", "tokensDone", index, width, height, bytes)
        SELECT p.id, p.gen, p.tokens, p.index, p.width, p.height, decode(p.png, 'base64')
        FROM unnest(${frames.map(() => randomUUID())}::uuid[], ${frames.map((f) => f.gen)}::uuid[], ${frames.map((f) => f.tokensDone)}::int[],
                    ${frames.map((f) => f.index)}::int[], ${frames.map((f) => f.width)}::int[], ${frames.map((f) => f.height)}::int[],
                    ${frames.map((f) => f.png)}::text[]) AS p(id, gen, tokens, index, width, height, png)
        JOIN saved ON saved.id = p.gen
        ON CONFLICT DO NOTHING
        RETURNING "generationId")
      SELECT id::text AS id, EXISTS (SELECT 1 FROM stored WHERE stored."generationId" = saved.id) AS previewed,
             pg_notify(${CHANNEL}, json_build_object('kind', 'generation', 'id', id, 'progress', true)::text)::text AS sent
      FROM saved`;
    return new Map(rows.map((r) => [r.id, r.previewed]));
  }

  /** A job's row was written up to `tokensDone`, with its preview if `previewed`. */
  private saved(job: Job, tokensDone: number, preview: PendingPreview | undefined, previewed: boolean): void {
    job.tokensSaved = Math.max(job.tokensSaved, tokensDone);
    if (preview && previewed && !job.previewed) this.firstPreview(job, preview.tokensDone);
  }

  /** Time to first preview: for a first attempt, its wait plus this worker's time to it. */
  private firstPreview(job: Job, tokensDone: number): void {
    job.previewed = true;
    if (job.queueWaitMs === null) return;
    const s = (job.queueWaitMs + performance.now() - job.claimedAt) / 1000;
    this.o.metrics?.firstPreview.observe(s);
    const id = job.row.id;
    this.o.log(`mosaic: generation ${id} first preview at token ${tokensDone}`, { event: "first_preview", generationId: id, tokensDone, seconds: Math.round(s * 1000) / 1000 });
  }
}
