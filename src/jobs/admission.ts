/**
 * Admission: whether a new generation may join the queue. Per owner (the API key, or the client
 * address when no key is used): at most `active` generations queued or running, and at most
 * `imagesPerHour` images created in the last hour; for everyone: at most `queueLimit` queued. Over
 * a limit the request is refused with RATE_LIMITED or QUEUE_FULL and `retryAfterSeconds`, and
 * nothing is stored.
 *
 * The check and the insert run in one transaction holding an advisory lock on the owner, so
 * concurrent requests of one owner cannot slip past the limit together. Admin keys skip the
 * per-owner limits (not the queue limit).
 */
import { randomUUID } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Prisma } from "../db/client.ts";
import { Prisma as Sql, type Generation } from "../db/generated/client.ts";
import { publish } from "./events.ts";
import type { NewGeneration } from "./queue.ts";

export interface Quotas {
  /** Generations an owner may have queued or running at once (MOSAIC_QUOTA_ACTIVE). */
  active: number;
  /** Images an owner may create per rolling hour (MOSAIC_QUOTA_IMAGES_PER_HOUR). */
  imagesPerHour: number;
  /** Queued generations the whole server accepts (MOSAIC_QUEUE_LIMIT). */
  queueLimit: number;
}

export const DEFAULT_QUOTAS: Quotas = { active: 4, imagesPerHour: 360, queueLimit: 1000 };

export interface Owner {
  keyId: string | null;
  admin: boolean;
  address: string;
}

export function limited(code: "RATE_LIMITED" | "QUEUE_FULL", message: string, retryAfterSeconds: number): GraphQLError {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return new GraphQLError(message, {
    extensions: { code, retryAfterSeconds: seconds, http: { status: code === "QUEUE_FULL" ? 503 : 429, headers: { "retry-after": String(seconds) } } },
  });
}

export type Visibility = "PRIVATE" | "PUBLIC";

/** Checks the limits and inserts the generation, or throws RATE_LIMITED / QUEUE_FULL. */
export async function admit(prisma: Prisma, g: NewGeneration, owner: Owner, visibility: Visibility, q: Quotas): Promise<Generation> {
  const ownerKey = owner.keyId ? `key:${owner.keyId}` : `address:${owner.address}`;
  const row = await prisma.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${ownerKey}))`;
    const [queued] = await tx.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM "Generation" WHERE status = 'QUEUED'`;
    if (queued!.n >= q.queueLimit) throw limited("QUEUE_FULL", `the queue is full (${q.queueLimit} generations waiting); try again later`, 30);
    if (!owner.admin) {
      // The owner's generations: by key, or (made without one) by address.
      const mine = owner.keyId ? Sql.sql`"ownerKeyId" = ${owner.keyId}::uuid` : Sql.sql`"ownerKeyId" IS NULL AND "ownerAddress" = ${owner.address}`;
      const counted = await tx.$queryRaw<{ active: number }[]>`
        SELECT count(*)::int AS active FROM "Generation" WHERE ${mine} AND status IN ('QUEUED', 'RUNNING')`;
      const active = counted[0]!.active;
      if (active >= q.active) {
        throw limited("RATE_LIMITED", `you have ${active} generations queued or running, the most allowed at once; wait for one to finish`, 10);
      }
      // The last hour's generations, newest first, aged by the database's clock.
      const recent = await tx.$queryRaw<{ count: number; age: number }[]>`
        SELECT count, EXTRACT(EPOCH FROM now() - "createdAt")::float AS age FROM "Generation"
        WHERE ${mine} AND "createdAt" > now() - interval '1 hour' ORDER BY "createdAt" DESC`;
      const used = recent.reduce((n, r) => n + r.count, 0);
      if (used + g.count > q.imagesPerHour) {
        // Free enough room by letting the oldest of the hour age out.
        let excess = used + g.count - q.imagesPerHour;
        let wait = 3600;
        for (const r of [...recent].reverse()) {
          excess -= r.count;
          wait = 3600 - r.age;
          if (excess <= 0) break;
        }
        throw limited("RATE_LIMITED", `${used} of your ${q.imagesPerHour} images per hour are used; ${g.count} more do not fit yet`, wait);
      }
    }
    return tx.generation.create({ data: { id: randomUUID(), ...g, ownerKeyId: owner.keyId, ownerAddress: owner.address, visibility } });
  });
  await publish(prisma, { kind: "queue" });
  return row;
}
