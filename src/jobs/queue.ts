/**
 * The job queue is the Generation table itself: QUEUED rows are claimed by workers with
 * `FOR UPDATE SKIP LOCKED` (no extra library: a claim is one statement, and the row a worker holds
 * is the same row clients read progress from). Stale RUNNING rows are put back in the queue.
 */
import { randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import type { Generation } from "../db/generated/client.ts";
import { publish } from "./events.ts";

/** A RUNNING job whose worker has not written for this long is presumed dead and requeued. */
export const STALE_AFTER_MS = 15_000;
export const HEARTBEAT_MS = 3_000;

export interface NewGeneration {
  prompt: string;
  normalizedPrompt: string;
  model: string;
  count: number;
  seed: number;
  guidanceScale: number;
  topK: number;
  topP: number;
  temperature: number;
  previewInterval: number;
  tokensTotal: number;
}

export async function enqueue(prisma: Prisma, g: NewGeneration): Promise<Generation> {
  const row = await prisma.generation.create({ data: { id: randomUUID(), ...g } });
  await publish(prisma, { kind: "queue" });
  return row;
}

/** 1-based place in the queue, or null when the generation is not queued. */
export async function queuePosition(prisma: Prisma, g: Pick<Generation, "id" | "status" | "createdAt">): Promise<number | null> {
  if (g.status !== "QUEUED") return null;
  const ahead = await prisma.generation.count({
    where: { status: "QUEUED", OR: [{ createdAt: { lt: g.createdAt } }, { createdAt: g.createdAt, id: { lt: g.id } }] },
  });
  return ahead + 1;
}

/**
 * Claims the oldest queued generation for this worker if it has at most `maxImages` images, or
 * returns null. Only the oldest is considered, so a large generation is never overtaken for ever
 * by smaller ones arriving after it.
 */
export async function claimNext(prisma: Prisma, workerId: string, maxImages = Number.MAX_SAFE_INTEGER): Promise<Generation | null> {
  const rows = await prisma.$queryRaw<{ id: string }[]>`
    UPDATE "Generation" SET status = 'RUNNING', "startedAt" = now(), "heartbeatAt" = now(),
           "workerId" = ${workerId}, attempts = attempts + 1
    WHERE id = (SELECT id FROM "Generation" WHERE status = 'QUEUED'
                ORDER BY "createdAt", id LIMIT 1 FOR UPDATE SKIP LOCKED)
      AND count <= ${Math.min(maxImages, 2 ** 31 - 1)}
    RETURNING id`;
  const id = rows[0]?.id;
  if (!id) return null;
  await publish(prisma, { kind: "queue" });
  await publish(prisma, { kind: "generation", id });
  return prisma.generation.findUnique({ where: { id } });
}

/** Puts RUNNING generations whose worker stopped writing back in the queue; returns their ids. */
export async function requeueStale(prisma: Prisma, staleAfterMs = STALE_AFTER_MS): Promise<string[]> {
  const rows = await prisma.$queryRaw<{ id: string }[]>`
    UPDATE "Generation" SET status = 'QUEUED', "workerId" = NULL, "tokensDone" = 0, codes = NULL, "startedAt" = NULL
    WHERE status = 'RUNNING' AND "heartbeatAt" < now() - make_interval(secs => ${staleAfterMs / 1000})
    RETURNING id`;
  if (rows.length) {
    await prisma.preview.deleteMany({ where: { generationId: { in: rows.map((r) => r.id) } } });
    await publish(prisma, { kind: "queue" });
    for (const r of rows) await publish(prisma, { kind: "generation", id: r.id });
  }
  return rows.map((r) => r.id);
}

/**
 * Cancels a generation: a queued one at once, a running one by asking its worker (which stops
 * within one decoder step). Returns the row, or null when there is no such generation.
 */
export async function requestCancel(prisma: Prisma, id: string): Promise<Generation | null> {
  const queued = await prisma.generation.updateMany({
    where: { id, status: "QUEUED" },
    data: { status: "CANCELLED", cancelRequested: true, finishedAt: new Date() },
  });
  if (queued.count === 0) await prisma.generation.updateMany({ where: { id, status: "RUNNING" }, data: { cancelRequested: true } });
  const row = await prisma.generation.findUnique({ where: { id } });
  if (row) {
    await publish(prisma, { kind: "generation", id });
    if (queued.count) await publish(prisma, { kind: "queue" });
  }
  return row;
}
