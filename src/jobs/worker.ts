/**
 * A worker: claims queued generations and decodes them together in one continuous batch (joining
 * at step boundaries, up to a limit of images), writing progress, previews and images to the
 * tables and telling subscribers through the event bus. A cancelled generation stops within one
 * decoder step; heartbeats let another worker pick up the jobs of one that died.
 */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import type { Prisma } from "../db/client.ts";
import type { Generation } from "../db/generated/client.ts";
import { DecodeBatch, type Member } from "../engine/batch.ts";
import { MosaicError } from "../engine/errors.ts";
import type { Frame, GenerationEvent } from "../engine/generate.ts";
import type { Model } from "../engine/model.ts";
import { encodeFrame } from "../images/encode.ts";
import { packCodes } from "./codes.ts";
import { publish, type EventBus } from "./events.ts";
import { claimNext, HEARTBEAT_MS, requeueStale } from "./queue.ts";

/** Progress is written at most this often per generation (plus at every preview). */
const PROGRESS_EVERY_MS = 100;
const POLL_MS = 2_000;
export const DEFAULT_BATCH_IMAGES = 16;

export interface WorkerOptions {
  log: (line: string) => void;
  id?: string;
  /** Most images decoded together (MOSAIC_WORKER_BATCH); a larger single generation still runs alone. */
  batchImages?: number;
  /** Touched at every heartbeat, for container health checks (MOSAIC_HEALTH_FILE). */
  healthFile?: string;
}

interface Job {
  row: Generation;
  member: Member;
  abort: AbortController;
  grids: Int32Array[];
  lastWrite: number;
}

class LostJob extends Error {}

export class Worker {
  readonly id: string;
  private readonly batchImages: number;
  private stopped = false;
  /** Set when the queue may have changed (a notification, or the poll interval): claiming costs a query. */
  private queueChanged = true;
  private lastClaim = 0;
  private wake: (() => void) | null = null;
  private readonly jobs = new Map<string, Job>();
  private loopDone: Promise<void> | null = null;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | null = null;
  private readonly batch: DecodeBatch;

  constructor(private readonly prisma: Prisma, private readonly bus: EventBus, model: Model, private readonly o: WorkerOptions) {
    this.id = o.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.batchImages = o.batchImages ?? DEFAULT_BATCH_IMAGES;
    this.batch = new DecodeBatch(model);
  }

  async start(): Promise<void> {
    this.unsubscribe = this.bus.subscribe((e) => {
      if (e.kind === "queue") {
        this.queueChanged = true;
        this.wake?.();
      }
      else if (e.kind === "generation" && this.jobs.has(e.id)) void this.checkCancel(e.id);
    });
    // Jobs left RUNNING by a process that died are picked up again.
    const requeued = await requeueStale(this.prisma);
    if (requeued.length) this.o.log(`mosaic: requeued ${requeued.length} interrupted generation(s)`);
    this.timers.push(setInterval(() => void this.heartbeat(), HEARTBEAT_MS));
    this.timers.push(setInterval(() => void requeueStale(this.prisma).catch(() => {}), HEARTBEAT_MS * 2));
    this.loopDone = this.loop();
  }

  /** Generations running in this worker now. */
  get running(): number {
    return this.jobs.size;
  }

  /** Stops claiming; running jobs are interrupted and returned to the queue for another worker. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    this.unsubscribe?.();
    const running = [...this.jobs.keys()];
    for (const j of this.jobs.values()) j.abort.abort();
    this.wake?.();
    await this.loopDone;
    for (const id of running) {
      await this.prisma.generation.updateMany({
        where: { id, workerId: this.id, status: "RUNNING" },
        data: { status: "QUEUED", workerId: null, tokensDone: 0, codes: null, startedAt: null },
      }).catch(() => {});
      await publish(this.prisma, { kind: "generation", id }).catch(() => {});
    }
    if (running.length) await publish(this.prisma, { kind: "queue" }).catch(() => {});
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      await this.admit();
      if (!this.batch.active) {
        await this.idle();
        continue;
      }
      await this.batch.step();
      for (const job of [...this.jobs.values()]) await this.handle(job);
    }
    // Let interrupted members emit their cancellation before the process lets go of them.
    if (this.batch.active) await this.batch.step();
  }

  /** Claims queued generations while they fit in the batch (always one when the batch is empty). */
  private async admit(): Promise<void> {
    // Between decoder steps, look at the queue only when told it changed (or now and then, in case
    // a notification was missed), not at every step.
    if (!this.queueChanged && performance.now() - this.lastClaim < POLL_MS) return;
    this.queueChanged = false;
    this.lastClaim = performance.now();
    while (!this.stopped) {
      const free = this.batch.active ? this.batchImages - this.batch.images : Number.MAX_SAFE_INTEGER;
      if (free <= 0) return;
      let row: Generation | null = null;
      try {
        row = await claimNext(this.prisma, this.id, free);
      } catch (e) {
        this.o.log(`mosaic: worker could not claim a job: ${(e as Error).message}`);
      }
      if (!row) return;
      const abort = new AbortController();
      if (row.cancelRequested) abort.abort();
      try {
        const member = this.batch.admit({
          prompt: row.prompt, count: row.count, seed: row.seed, previewInterval: row.previewInterval, signal: abort.signal,
          sampling: { guidanceScale: row.guidanceScale, topK: row.topK, topP: row.topP, temperature: row.temperature },
        });
        this.jobs.set(row.id, { row, member, abort, grids: Array.from({ length: row.count }, () => new Int32Array(row!.tokensTotal)), lastWrite: 0 });
      } catch (e) {
        await this.fail(row.id, e);
      }
    }
  }

  private async idle(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, POLL_MS);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.wake = null;
  }

  private async heartbeat(): Promise<void> {
    if (this.o.healthFile) await writeFile(this.o.healthFile, String(Date.now())).catch(() => {});
    const ids = [...this.jobs.keys()];
    if (!ids.length) return;
    await this.prisma.generation.updateMany({ where: { id: { in: ids }, workerId: this.id }, data: { heartbeatAt: new Date() } }).catch(() => {});
    for (const id of ids) await this.checkCancel(id);
  }

  private async checkCancel(id: string): Promise<void> {
    const row = await this.prisma.generation.findUnique({ where: { id }, select: { cancelRequested: true, workerId: true, status: true } }).catch(() => null);
    // Cancelled, or no longer ours (requeued after we were presumed dead): stop either way.
    if (row && (row.cancelRequested || row.workerId !== this.id || row.status !== "RUNNING")) this.jobs.get(id)?.abort.abort();
  }

  /** Writes only while the job is still ours and running. */
  private async write(id: string, data: Parameters<Prisma["generation"]["updateMany"]>[0]["data"]): Promise<boolean> {
    const r = await this.prisma.generation.updateMany({ where: { id, workerId: this.id, status: "RUNNING" }, data });
    return r.count === 1;
  }

  /** Turns the events of one job since the last step into rows and notifications. */
  private async handle(job: Job): Promise<void> {
    const id = job.row.id;
    try {
      for (const ev of job.member.drain()) await this.record(job, ev);
      if (job.member.error) throw job.member.error;
    } catch (e) {
      if (e instanceof LostJob) this.o.log(`mosaic: generation ${id} was taken from this worker; dropping its result`);
      else await this.fail(id, e);
      job.abort.abort();
      this.jobs.delete(id);
      this.queueChanged = true;
      return;
    }
    if (job.member.done) {
      this.jobs.delete(id);
      // Room in the batch: a waiting generation that did not fit may fit now.
      this.queueChanged = true;
    }
  }

  private async record(job: Job, ev: GenerationEvent): Promise<void> {
    const id = job.row.id;
    if (ev.type === "progress") {
      ev.tokens.forEach((t, i) => { job.grids[i]![ev.tokensDone - 1] = t; });
      const now = performance.now();
      if (!ev.previews && now - job.lastWrite < PROGRESS_EVERY_MS && ev.tokensDone < ev.tokensTotal) return;
      job.lastWrite = now;
      if (ev.previews) await this.savePreviews(id, ev.tokensDone, ev.previews);
      if (!(await this.write(id, { tokensDone: ev.tokensDone, codes: packCodes(job.grids), heartbeatAt: new Date() }))) throw new LostJob();
      await publish(this.prisma, { kind: "generation", id });
    } else if (ev.type === "completed") {
      const images = await Promise.all(ev.images.map(async (img) => ({
        id: randomUUID(), generationId: id, index: img.index, seed: img.seed, format: "png",
        width: img.width, height: img.height, bytes: toBytes(await encodeFrame(img, { format: "png" })),
      })));
      await this.prisma.$transaction(async (tx) => {
        const r = await tx.generation.updateMany({
          where: { id, workerId: this.id, status: "RUNNING" },
          data: { status: "COMPLETED", tokensDone: job.row.tokensTotal, finishedAt: new Date(), codes: packCodes(ev.images.map((i) => i.codes)) },
        });
        if (r.count !== 1) throw new LostJob();
        await tx.image.createMany({ data: images });
      });
      await publish(this.prisma, { kind: "generation", id });
    } else if (ev.type === "cancelled") {
      // Cancelled by a user, or interrupted because this worker is stopping (then stop() requeues it).
      const row = await this.prisma.generation.findUnique({ where: { id }, select: { cancelRequested: true } });
      if (row?.cancelRequested && (await this.write(id, { status: "CANCELLED", finishedAt: new Date() }))) {
        await publish(this.prisma, { kind: "generation", id });
      }
    }
  }

  private async fail(id: string, e: unknown): Promise<void> {
    const code = e instanceof MosaicError ? e.code : "INFERENCE_FAILED";
    const message = e instanceof Error ? e.message : String(e);
    this.o.log(`mosaic: generation ${id} failed: ${message}`);
    if (await this.write(id, { status: "FAILED", errorCode: code, errorMessage: message, finishedAt: new Date() }).catch(() => false)) {
      await publish(this.prisma, { kind: "generation", id }).catch(() => {});
    }
  }

  private async savePreviews(id: string, tokensDone: number, frames: Frame[]): Promise<void> {
    const data = await Promise.all(frames.map(async (f, index) => ({
      id: randomUUID(), generationId: id, tokensDone, index, width: f.width, height: f.height,
      bytes: toBytes(await encodeFrame(f, { format: "png" })),
    })));
    await this.prisma.preview.createMany({ data, skipDuplicates: true });
  }
}

/** Prisma's Bytes wants a Uint8Array over a plain ArrayBuffer. */
function toBytes(b: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}
