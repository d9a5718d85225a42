/**
 * A worker: claims queued generations of its model and hands them to its engine thread, which
 * decodes them together in one continuous batch (joining at step boundaries, up to a limit of
 * images). The engine's events come back as messages and are recorded (recorder.ts) — progress,
 * previews, images, notifications — beside decoding, never between steps: the engine does not wait
 * for the database, and this thread never waits for the engine. A cancelled generation stops within
 * one decoder step. Leases: the worker's heartbeat (the database's clock) keeps its jobs; a job whose
 * worker died is requeued with its codes (housekeeping.ts) and resumed by the next worker.
 */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { Prisma } from "../db/client.ts";
import { errorSummary } from "../db/errors.ts";
import type { Generation } from "../db/generated/client.ts";
import type { MosaicError } from "../engine/errors.ts";
import type { GenerationEvent } from "../engine/generate.ts";
import type { ModelInfo } from "../engine/model.ts";
import type { RemoteEngine } from "../engine/thread/remote.ts";
import type { LogFn } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { unpackCodes } from "./codes.ts";
import { publish, type EventBus } from "./events.ts";
import { LostJob, type Job } from "./job.ts";
import { Recorder, seconds } from "./recorder.ts";
import { Housekeeping } from "./housekeeping.ts";
import { claimNext, DEFAULT_QUEUE, heartbeatMs, releaseJob, workerGone, workerHeartbeat, type QueueSettings } from "./queue.ts";
import { Throughput } from "./throughput.ts";

const POLL_MS = 2_000;
export const DEFAULT_BATCH_IMAGES = 16;

export interface WorkerOptions {
  /** Lifecycle lines carry `event` and `generationId` fields. */
  log: LogFn;
  /** Where generations, durations and decoder steps are counted (none in tests that do not look). */
  metrics?: Metrics;
  id?: string;
  /** Most images decoded together (MOSAIC_WORKER_BATCH); a larger single generation still runs alone. */
  batchImages?: number;
  /** Touched at every heartbeat, for container health checks (MOSAIC_HEALTH_FILE). */
  healthFile?: string;
  queue?: QueueSettings;
  /** Delete generations that ended this many days ago, checked at start and hourly (MOSAIC_RETENTION_DAYS); unset: keep all. */
  retentionDays?: number;
}


export class Worker {
  readonly id: string;
  private readonly batchImages: number;
  private readonly queue: QueueSettings;
  private readonly modelName: string;
  private stopped = false;
  private started = false;
  /** Tokens sampled since the last step message (the step's events arrive before it). */
  private stepTokens = 0;
  /** Set when the queue may have changed (a notification, or the poll interval): claiming costs a query. */
  private queueChanged = true;
  private lastClaim = 0;
  private claiming: Promise<void> | null = null;
  private readonly jobs = new Map<string, Job>();
  private readonly rate = new Throughput();
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | null = null;
  private readonly recorder: Recorder;
  private readonly housekeeping: Housekeeping;

  constructor(private readonly prisma: Prisma, private readonly bus: EventBus, private readonly engine: RemoteEngine, model: ModelInfo, private readonly o: WorkerOptions) {
    this.id = o.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.batchImages = o.batchImages ?? DEFAULT_BATCH_IMAGES;
    this.queue = o.queue ?? DEFAULT_QUEUE;
    this.modelName = model.manifest.name;
    this.recorder = new Recorder(prisma, this.id, { ...o, lost: (job, e) => void this.drop(job, e) }, () => this.stopped);
    this.housekeeping = new Housekeeping(prisma, { log: o.log, metrics: o.metrics, queue: this.queue, retentionDays: o.retentionDays });
  }

  async start(): Promise<void> {
    this.engine.setHandlers({
      events: (id, events) => this.onEvents(id, events),
      failed: (id, e) => this.onFailed(id, e),
      // A step boundary: the batch may have room now.
      step: (info) => {
        this.o.metrics?.step(info.ms, this.stepTokens, info.images, this.batchImages);
        this.stepTokens = 0;
        if (this.rate.due()) {
          void workerHeartbeat(this.prisma, this.id, this.modelName, this.rate.imagesPerSecond(), this.batchImages).catch(() => {});
        }
        this.fill();
      },
      log: (line) => this.o.log(line),
    });
    this.unsubscribe = this.bus.subscribe((e) => {
      if (e.kind === "queue") {
        this.queueChanged = true;
        this.fill();
      }
      // A cancel, a delete or a requeue comes as a plain generation event. Progress events are this
      // worker's own writes: checking each would cost a query per job at every progress write.
      else if (e.kind === "generation" && !e.progress && e.by !== this.id && this.jobs.has(e.id)) void this.checkCancel(e.id);
    });
    await workerHeartbeat(this.prisma, this.id, this.modelName, null, this.batchImages);
    // Jobs left RUNNING by a process that died are put back (or failed, if lost too often) first.
    await this.housekeeping.start();
    this.timers.push(setInterval(() => void this.heartbeat(), heartbeatMs(this.queue)));
    // Now and then even without a notification, in case one was missed.
    this.timers.push(setInterval(() => this.fill(), POLL_MS));
    this.started = true;
    this.fill();
  }

  /** Started (its engine thread has the model) and not stopping: what a worker's readiness needs. */
  get running(): boolean {
    return this.started && !this.stopped;
  }

  /**
   * Stops cleanly: the current decoder step finishes, each job's codes are saved and the job goes
   * back to the queue (not counted as an attempt), for another worker to resume.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    this.housekeeping.stop();
    this.unsubscribe?.();
    // The step in progress finishes and its events arrive; then everything they say is recorded.
    const paused = this.engine.pause();
    await this.claiming;
    await paused;
    await Promise.all([...this.jobs.values()].map((j) => j.chain));
    // Batched progress writes end here: what they had not written yet is saved below, job by job.
    await this.recorder.stopProgress();
    for (const [id, job] of this.jobs) {
      if (job.dropped || job.finished) continue;
      try {
        if (job.tokensDone > job.tokensSaved) await this.recorder.saveProgress(job);
        if (await releaseJob(this.prisma, id, this.id)) {
          this.o.metrics?.requeued.inc({ reason: "handed_back" });
          this.o.log(`mosaic: generation ${id} handed back at token ${job.tokensDone} (worker stopping)`, { event: "handed_back", generationId: id, workerId: this.id, tokensDone: job.tokensDone });
          await publish(this.prisma, { kind: "generation", id });
        }
      } catch (e) {
        this.o.log(`mosaic: generation ${id} could not be handed back (${(e as Error).message}); it is requeued when its lease runs out`, { event: "hand_back_failed", generationId: id, level: "warn" });
      }
    }
    if (this.jobs.size) await publish(this.prisma, { kind: "queue" }).catch(() => {});
    this.jobs.clear();
    await workerGone(this.prisma, this.id).catch(() => {});
  }

  /** Images held by jobs still decoding: what the batch has no room for. */
  private get held(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (!j.finished && !j.dropped) n += j.row.count;
    return n;
  }

  /** A job's room in the batch is free (its terminal event came, or it was dropped): counted once. */
  private free(job: Job): void {
    if (job.finished || job.dropped) return;
    job.finished = true;
    this.rate.freed(job.row.count, performance.now() - job.claimedAt);
  }

  /** Claims waiting generations while they fit (one claim round at a time; calls meanwhile are folded in). */
  private fill(): void {
    if (this.stopped || this.claiming) return;
    this.claiming = this.claim().finally(() => { this.claiming = null; });
  }

  private async claim(): Promise<void> {
    // Look at the queue only when told it changed (or now and then, in case a notification was
    // missed), not at every step.
    if (!this.queueChanged && performance.now() - this.lastClaim < POLL_MS) return;
    this.queueChanged = false;
    this.lastClaim = performance.now();
    while (!this.stopped) {
      // An empty batch takes any generation, even one larger than the batch (it then runs alone).
      const free = this.held === 0 ? Number.MAX_SAFE_INTEGER : this.batchImages - this.held;
      if (free <= 0) return;
      let row: Generation | null = null;
      try {
        row = await claimNext(this.prisma, this.id, this.modelName, free);
      } catch (e) {
        this.o.log(`mosaic: worker could not claim a job: ${errorSummary(e)}`, { level: "warn" });
      }
      if (!row) return;
      // A generation that was interrupted resumes from its saved codes.
      const resume = row.codes && row.tokensDone > 0 ? { codes: unpackCodes(row.codes, row.count), tokensDone: row.tokensDone } : undefined;
      const grids = resume ? resume.codes.map((c) => c.slice()) : Array.from({ length: row.count }, () => new Int32Array(row!.tokensTotal));
      // The first claim sets startedAt; a resumed job's wait was counted on its first claim.
      const queueWaitMs = row.attempts === 1 && row.startedAt ? row.startedAt.getTime() - row.createdAt.getTime() : null;
      if (queueWaitMs !== null) this.o.metrics?.queueWait.observe(queueWaitMs / 1000);
      this.jobs.set(row.id, {
        row, grids, finished: false, dropped: false, chain: Promise.resolve(), tokensDone: row.tokensDone, tokensSaved: row.tokensDone,
        claimedAt: performance.now(), queueWaitMs: resume ? null : queueWaitMs, previewed: false,
      });
      this.rate.claimed(row.count);
      this.engine.admit(row.id, {
        prompt: row.prompt, count: row.count, seed: row.seed, previewInterval: row.previewInterval, resume,
        sampling: { guidanceScale: row.guidanceScale, topK: row.topK, topP: row.topP, temperature: row.temperature },
      });
      if (row.cancelRequested) this.engine.cancel(row.id);
      const fields = { generationId: row.id, workerId: this.id, attempt: row.attempts, images: row.count };
      this.o.log(resume
        ? `mosaic: generation ${row.id} claimed by ${this.id}, resuming at token ${row.tokensDone} (attempt ${row.attempts})`
        : `mosaic: generation ${row.id} claimed by ${this.id}`,
      resume ? { event: "resumed", ...fields, tokensDone: row.tokensDone } : { event: "claimed", ...fields, queueWaitSeconds: seconds(queueWaitMs) });
    }
  }

  /** Events of one job from the engine: recorded in order, beside decoding. */
  private onEvents(id: string, events: GenerationEvent[]): void {
    const job = this.jobs.get(id);
    if (!job || job.dropped) return;
    // One token per image per progress event (replayed tokens of a resumed job send none).
    const sampled = events.filter((e) => e.type === "progress").length * job.row.count;
    this.stepTokens += sampled;
    if (sampled) this.o.metrics?.tokens.inc(sampled);
    if (events.some((e) => e.type === "completed" || e.type === "cancelled")) {
      this.free(job);
      // Its room is free: a waiting generation that did not fit may fit now.
      this.queueChanged = true;
    }
    job.chain = job.chain.then(async () => {
      for (const ev of events) if (!job.dropped) await this.recorder.record(job, ev);
      // This job's entry only: the generation may have been claimed again since it was dropped.
      if (job.finished && this.jobs.get(id) === job) this.jobs.delete(id);
    }).catch((e: unknown) => this.drop(job, e));
  }

  private onFailed(id: string, e: MosaicError): void {
    const job = this.jobs.get(id);
    if (!job || job.dropped) return;
    this.free(job);
    this.queueChanged = true;
    job.chain = job.chain.then(() => this.drop(job, e));
  }

  /** Ends this worker's part in a job: a lost one is left to its new owner, a broken one fails. */
  private async drop(job: Job, e: unknown): Promise<void> {
    const id = job.row.id;
    this.free(job);
    job.dropped = true;
    if (e instanceof LostJob) this.o.log(`mosaic: generation ${id} was taken from this worker; dropping its result`, { event: "dropped", generationId: id, workerId: this.id, level: "warn" });
    else await this.recorder.fail(id, e);
    this.engine.cancel(id);
    this.jobs.delete(id);
    this.queueChanged = true;
    this.fill();
  }

  private async heartbeat(): Promise<void> {
    if (this.o.healthFile) await writeFile(this.o.healthFile, String(Date.now())).catch(() => {});
    await workerHeartbeat(this.prisma, this.id, this.modelName, this.rate.imagesPerSecond(), this.batchImages).catch(() => {});
    const ids = [...this.jobs.keys()];
    if (!ids.length) return;
    await this.prisma.$executeRaw`UPDATE "Generation" SET "heartbeatAt" = now() WHERE id = ANY(${ids}::uuid[]) AND "workerId" = ${this.id}`.catch(() => {});
    for (const id of ids) await this.checkCancel(id);
  }

  private async checkCancel(id: string): Promise<void> {
    const row = await this.prisma.generation.findUnique({ where: { id }, select: { cancelRequested: true, workerId: true, status: true } }).catch(() => null);
    // Cancelled, or no longer ours (requeued after we were presumed dead): stop either way.
    if (row && this.jobs.has(id) && (row.cancelRequested || row.workerId !== this.id || row.status !== "RUNNING")) this.engine.cancel(id);
  }
}
