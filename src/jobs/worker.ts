/**
 * A worker: claims queued generations, runs the engine, and writes progress, previews and images
 * to the tables, telling subscribers through the event bus. Stops a job within one decoder step
 * when it is cancelled; heartbeats so a dead worker's job is picked up by another.
 */
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import type { Generation } from "../db/generated/client.ts";
import { MosaicError } from "../engine/errors.ts";
import { generate, type Frame } from "../engine/generate.ts";
import type { Model } from "../engine/model.ts";
import { encodeFrame } from "../images/encode.ts";
import { packCodes } from "./codes.ts";
import { publish, type EventBus } from "./events.ts";
import { claimNext, HEARTBEAT_MS, requeueStale } from "./queue.ts";

/** Progress is written at most this often (plus at every preview): enough for a live mosaic. */
const PROGRESS_EVERY_MS = 100;
const POLL_MS = 2_000;

export interface WorkerOptions {
  log: (line: string) => void;
  id?: string;
  /** Touched at every heartbeat, for container health checks (MOSAIC_HEALTH_FILE). */
  healthFile?: string;
}

export class Worker {
  readonly id: string;
  private stopped = false;
  private wake: (() => void) | null = null;
  private current: { id: string; abort: AbortController } | null = null;
  private loopDone: Promise<void> | null = null;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly prisma: Prisma, private readonly bus: EventBus, private readonly model: Model, private readonly o: WorkerOptions) {
    this.id = o.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  async start(): Promise<void> {
    this.unsubscribe = this.bus.subscribe((e) => {
      if (e.kind === "queue") this.wake?.();
      else if (e.kind === "generation" && e.id === this.current?.id) void this.checkCancel(e.id);
    });
    // Jobs left RUNNING by a process that died are picked up again.
    const requeued = await requeueStale(this.prisma);
    if (requeued.length) this.o.log(`mosaic: requeued ${requeued.length} interrupted generation(s)`);
    this.timers.push(setInterval(() => void this.heartbeat(), HEARTBEAT_MS));
    this.timers.push(setInterval(() => void requeueStale(this.prisma).catch(() => {}), HEARTBEAT_MS * 2));
    this.loopDone = this.loop();
  }

  /** Stops claiming; a running job is interrupted and returned to the queue for another worker. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timers.forEach(clearInterval);
    this.unsubscribe?.();
    const running = this.current;
    running?.abort.abort();
    this.wake?.();
    await this.loopDone;
    if (running) {
      await this.prisma.generation.updateMany({
        where: { id: running.id, workerId: this.id, status: "RUNNING" },
        data: { status: "QUEUED", workerId: null, tokensDone: 0, codes: null, startedAt: null },
      }).catch(() => {});
      await publish(this.prisma, { kind: "queue" }).catch(() => {});
      await publish(this.prisma, { kind: "generation", id: running.id }).catch(() => {});
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let job: Generation | null = null;
      try {
        job = await claimNext(this.prisma, this.id);
      } catch (e) {
        this.o.log(`mosaic: worker could not claim a job: ${(e as Error).message}`);
      }
      if (!job) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, POLL_MS);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = null;
        continue;
      }
      await this.run(job);
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.o.healthFile) await writeFile(this.o.healthFile, String(Date.now())).catch(() => {});
    const cur = this.current;
    if (!cur) return;
    await this.prisma.generation.updateMany({ where: { id: cur.id, workerId: this.id }, data: { heartbeatAt: new Date() } }).catch(() => {});
    await this.checkCancel(cur.id);
  }

  private async checkCancel(id: string): Promise<void> {
    const row = await this.prisma.generation.findUnique({ where: { id }, select: { cancelRequested: true, workerId: true, status: true } }).catch(() => null);
    // Cancelled, or no longer ours (requeued after we were presumed dead): stop either way.
    if (row && (row.cancelRequested || row.workerId !== this.id || row.status !== "RUNNING")) this.current?.abort.abort();
  }

  /** Writes only while the job is still ours and running. */
  private async write(id: string, data: Parameters<Prisma["generation"]["updateMany"]>[0]["data"]): Promise<boolean> {
    const r = await this.prisma.generation.updateMany({ where: { id, workerId: this.id, status: "RUNNING" }, data });
    return r.count === 1;
  }

  private async run(job: Generation): Promise<void> {
    const abort = new AbortController();
    this.current = { id: job.id, abort };
    if (job.cancelRequested) abort.abort();
    const id = job.id;
    let lastWrite = 0;
    const grids: Int32Array[] = Array.from({ length: job.count }, () => new Int32Array(job.tokensTotal));
    try {
      for await (const ev of generate(this.model, {
        prompt: job.prompt, count: job.count, seed: job.seed, previewInterval: job.previewInterval, signal: abort.signal,
        sampling: { guidanceScale: job.guidanceScale, topK: job.topK, topP: job.topP, temperature: job.temperature },
      })) {
        if (ev.type === "progress") {
          ev.tokens.forEach((t, i) => { grids[i]![ev.tokensDone - 1] = t; });
          const now = performance.now();
          if (!ev.previews && now - lastWrite < PROGRESS_EVERY_MS && ev.tokensDone < ev.tokensTotal) continue;
          lastWrite = now;
          if (ev.previews) await this.savePreviews(id, ev.tokensDone, ev.previews);
          if (!(await this.write(id, { tokensDone: ev.tokensDone, codes: packCodes(grids), heartbeatAt: new Date() }))) abort.abort();
          await publish(this.prisma, { kind: "generation", id });
        } else if (ev.type === "completed") {
          const images = await Promise.all(ev.images.map(async (img) => ({
            id: randomUUID(), generationId: id, index: img.index, seed: img.seed, format: "png",
            width: img.width, height: img.height, bytes: toBytes(await encodeFrame(img, { format: "png" })),
          })));
          await this.prisma.$transaction(async (tx) => {
            const r = await tx.generation.updateMany({
              where: { id, workerId: this.id, status: "RUNNING" },
              data: { status: "COMPLETED", tokensDone: job.tokensTotal, finishedAt: new Date(), codes: packCodes(ev.images.map((i) => i.codes)) },
            });
            if (r.count !== 1) throw new LostJob();
            await tx.image.createMany({ data: images });
          });
          await publish(this.prisma, { kind: "generation", id });
        } else if (ev.type === "cancelled") {
          const row = await this.prisma.generation.findUnique({ where: { id }, select: { cancelRequested: true } });
          if (row?.cancelRequested && (await this.write(id, { status: "CANCELLED", finishedAt: new Date() }))) {
            await publish(this.prisma, { kind: "generation", id });
          }
        }
      }
    } catch (e) {
      if (e instanceof LostJob) {
        this.o.log(`mosaic: generation ${id} was taken from this worker; dropping its result`);
      } else {
        const code = e instanceof MosaicError ? e.code : "INFERENCE_FAILED";
        const message = e instanceof Error ? e.message : String(e);
        this.o.log(`mosaic: generation ${id} failed: ${message}`);
        if (await this.write(id, { status: "FAILED", errorCode: code, errorMessage: message, finishedAt: new Date() }).catch(() => false)) {
          await publish(this.prisma, { kind: "generation", id }).catch(() => {});
        }
      }
    } finally {
      this.current = null;
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

class LostJob extends Error {}

/** Prisma's Bytes wants a Uint8Array over a plain ArrayBuffer. */
function toBytes(b: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}
