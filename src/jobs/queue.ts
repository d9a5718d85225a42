/**
 * The job queue is the Generation table itself: QUEUED rows are claimed by workers with
 * `FOR UPDATE SKIP LOCKED` (no extra library: a claim is one statement, and the row a worker holds
 * is the same row clients read progress from). Every time here is the database's `now()` in a
 * timestamptz column, so leases hold whatever the time zones of the hosts, the server or the session.
 * A RUNNING row whose heartbeat is older than the lease is put back in the queue with its codes, and
 * the next worker resumes it; one lost too often ends FAILED.
 */
import { randomUUID } from "node:crypto";
import type { Prisma } from "../db/client.ts";
import type { Generation } from "../db/generated/client.ts";
import { CHANNEL, publish } from "./events.ts";

export interface QueueSettings {
  /** A RUNNING job whose worker has not written for this long is presumed lost (MOSAIC_LEASE_SECONDS). */
  leaseMs: number;
  /** Claims a job may have; lost that many times it ends FAILED (MOSAIC_MAX_ATTEMPTS). */
  maxAttempts: number;
}

export const DEFAULT_QUEUE: QueueSettings = { leaseMs: 15_000, maxAttempts: 3 };

/** Heartbeats come five times per lease: a job survives four missed ones. */
export const heartbeatMs = (q: QueueSettings) => Math.max(100, Math.floor(q.leaseMs / 5));

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

/** 1-based place in its model's queue, or null when the generation is not queued. */
export async function queuePosition(prisma: Prisma, g: Pick<Generation, "id" | "status" | "createdAt" | "model">): Promise<number | null> {
  if (g.status !== "QUEUED") return null;
  const ahead = await prisma.generation.count({
    where: { status: "QUEUED", model: g.model, OR: [{ createdAt: { lt: g.createdAt } }, { createdAt: g.createdAt, id: { lt: g.id } }] },
  });
  return ahead + 1;
}

/**
 * Claims the oldest queued generation of `model` for this worker if it has at most `maxImages`
 * images, or returns null. Only the oldest is considered, so a large generation is never overtaken
 * for ever by smaller ones arriving after it.
 */
export async function claimNext(prisma: Prisma, workerId: string, model: string, maxImages = Number.MAX_SAFE_INTEGER): Promise<Generation | null> {
  // The claim and its two notifications in one statement: the queue moved, and this row is RUNNING
  // (marked as this worker's own change). A worker claims once per job, so each round trip saved
  // here is one per image on a busy server of one-image jobs.
  const rows = await prisma.$queryRaw<{ id: string }[]>`
    WITH claimed AS (
      UPDATE "Generation" SET status = 'RUNNING', "startedAt" = COALESCE("startedAt", now()), "heartbeatAt" = now(),
             "workerId" = ${workerId}, attempts = attempts + 1
      WHERE id = (SELECT id FROM "Generation" WHERE status = 'QUEUED' AND model = ${model}
                  ORDER BY "createdAt", id LIMIT 1 FOR UPDATE SKIP LOCKED)
        AND count <= ${Math.min(maxImages, 2 ** 31 - 1)}
      RETURNING id)
    SELECT id::text AS id,
           pg_notify(${CHANNEL}, json_build_object('kind', 'queue')::text)::text AS queue,
           pg_notify(${CHANNEL}, json_build_object('kind', 'generation', 'id', id, 'by', ${workerId}::text)::text)::text AS generation
    FROM claimed`;
  const id = rows[0]?.id;
  if (!id) return null;
  return prisma.generation.findUnique({ where: { id } });
}

/**
 * Puts RUNNING generations whose worker stopped writing back in the queue, keeping their codes so
 * the next worker resumes them; one that has had `maxAttempts` claims ends FAILED instead, so a job
 * that kills its workers cannot block the queue. Returns the ids and what became of each.
 */
export async function requeueStale(prisma: Prisma, q: QueueSettings = DEFAULT_QUEUE): Promise<{ id: string; status: string }[]> {
  const rows = await prisma.$queryRaw<{ id: string; status: string }[]>`
    UPDATE "Generation" SET
      status = (CASE WHEN attempts >= ${q.maxAttempts} THEN 'FAILED' ELSE 'QUEUED' END)::"GenerationStatus",
      "workerId" = NULL,
      "finishedAt" = CASE WHEN attempts >= ${q.maxAttempts} THEN now() END,
      "errorCode" = CASE WHEN attempts >= ${q.maxAttempts} THEN 'WORKER_LOST' END,
      "errorMessage" = CASE WHEN attempts >= ${q.maxAttempts}
        THEN 'its worker stopped ' || attempts || ' times while running it; it was not retried again' END
    WHERE status = 'RUNNING' AND "heartbeatAt" < now() - make_interval(secs => ${q.leaseMs / 1000})
    RETURNING id, status::text AS status`;
  if (rows.length) {
    await publish(prisma, { kind: "queue" });
    for (const r of rows) await publish(prisma, { kind: "generation", id: r.id });
  }
  return rows;
}

/**
 * Hands a job back from a worker that is stopping cleanly: queued again with its codes, and the
 * claim not counted as an attempt (nothing went wrong with the job).
 */
export async function releaseJob(prisma: Prisma, id: string, workerId: string): Promise<boolean> {
  const n = await prisma.$executeRaw`
    UPDATE "Generation" SET status = 'QUEUED', "workerId" = NULL, attempts = GREATEST(attempts - 1, 0)
    WHERE id = ${id}::uuid AND "workerId" = ${workerId} AND status = 'RUNNING'`;
  return n === 1;
}

/**
 * Cancels a generation: a queued one at once, a running one by asking its worker (which stops
 * within one decoder step). Returns the row, or null when there is no such generation.
 */
export async function requestCancel(prisma: Prisma, id: string): Promise<Generation | null> {
  const queued = await prisma.$executeRaw`
    UPDATE "Generation" SET status = 'CANCELLED', "cancelRequested" = true, "finishedAt" = now()
    WHERE id = ${id}::uuid AND status = 'QUEUED'`;
  if (queued === 0) await prisma.generation.updateMany({ where: { id, status: "RUNNING" }, data: { cancelRequested: true } });
  const row = await prisma.generation.findUnique({ where: { id } });
  if (row) {
    await publish(prisma, { kind: "generation", id });
    if (queued) await publish(prisma, { kind: "queue" });
  }
  return row;
}

/** Marks this worker process alive for its model (the `models` query reads it). */
export async function workerHeartbeat(prisma: Prisma, workerId: string, model: string, imagesPerSecond: number | null = null, rooms: number | null = null): Promise<void> {
  await prisma.$executeRaw`
    INSERT INTO "WorkerProcess" (id, model, "imagesPerSecond", rooms) VALUES (${workerId}, ${model}, ${imagesPerSecond}, ${rooms})
    ON CONFLICT (id) DO UPDATE SET "heartbeatAt" = now(), model = EXCLUDED.model,
      "imagesPerSecond" = COALESCE(EXCLUDED."imagesPerSecond", "WorkerProcess"."imagesPerSecond"),
      rooms = COALESCE(EXCLUDED.rooms, "WorkerProcess".rooms)`;
}

/**
 * What the live workers of a model complete together, in images per second, and how many images their
 * batches hold at most (`rooms`, of the workers with a rate): null before any has measured.
 */
export async function workerThroughput(prisma: Prisma, model: string, q: QueueSettings = DEFAULT_QUEUE): Promise<{ perSecond: number; rooms: number | null } | null> {
  const rows = await prisma.$queryRaw<{ rate: number | null; rooms: number | null }[]>`
    SELECT SUM("imagesPerSecond")::float AS rate, SUM(rooms) FILTER (WHERE "imagesPerSecond" IS NOT NULL)::int AS rooms
    FROM "WorkerProcess" WHERE model = ${model} AND "heartbeatAt" > now() - make_interval(secs => ${q.leaseMs / 1000})`;
  const rate = rows[0]?.rate ?? null;
  return rate && rate > 0 ? { perSecond: rate, rooms: rows[0]?.rooms ?? null } : null;
}

export async function workerGone(prisma: Prisma, workerId: string): Promise<void> {
  await prisma.$executeRaw`DELETE FROM "WorkerProcess" WHERE id = ${workerId}`;
}

/** Workers whose heartbeat is within the lease, by model. */
export async function liveWorkers(prisma: Prisma, model: string, q: QueueSettings = DEFAULT_QUEUE): Promise<number> {
  const rows = await prisma.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM "WorkerProcess"
    WHERE model = ${model} AND "heartbeatAt" > now() - make_interval(secs => ${q.leaseMs / 1000})`;
  return rows[0]?.n ?? 0;
}

/**
 * Retention (MOSAIC_RETENTION_DAYS): deletes generations that ended more than `days` ago, with their
 * images and previews (the foreign keys cascade). Returns how many went. Safe to run from every
 * worker at once: each row is deleted once.
 */
export async function deleteExpired(prisma: Prisma, days: number): Promise<number> {
  return prisma.$executeRaw`
    DELETE FROM "Generation"
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED') AND "finishedAt" < now() - make_interval(days => ${days})`;
}

/** A generation that stopped short keeps only its newest previews (what it got to); the rest go. */
export async function dropOldPreviews(prisma: Pick<Prisma, "$executeRaw">, id: string): Promise<number> {
  return prisma.$executeRaw`
    DELETE FROM "Preview" WHERE "generationId" = ${id}::uuid
      AND "tokensDone" < (SELECT max("tokensDone") FROM "Preview" WHERE "generationId" = ${id}::uuid)`;
}
