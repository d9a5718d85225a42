/**
 * Queued generations' ETAs: when a generation will start, from the queue ahead of it, the running
 * generations' progress and the throughput the workers measure.
 */
import type { Prisma } from "../db/client.ts";
import type { Generation } from "../db/generated/client.ts";
import { workerThroughput } from "./queue.ts";

/**
 * Seconds until a queued generation starts. Its model's workers have room for so many images at once
 * (their `rooms`); each running image frees its room when it ends, and the queue takes rooms in order.
 * So the generation starts once `ahead + count` rooms have come free (the images queued before it, then
 * its own), counting those free now, and the rate the workers measure says how fast: `slotsToStart`
 * below. Before the workers have a rate, the rate at which recent generations completed; before any
 * history, a second per image.
 */
export async function estimateSeconds(prisma: Prisma, g: Pick<Generation, "id" | "createdAt" | "model" | "count">): Promise<number> {
  // One read: the images queued before it, and each running generation's images and share left. A
  // row whose tokens are all drawn is being stored: its worker has freed its room already.
  const [load] = await prisma.$queryRaw<{ ahead: number; counts: number[]; remaining: number[] }[]>`
    SELECT
      COALESCE(SUM(count) FILTER (WHERE status = 'QUEUED' AND ("createdAt", id) < (${g.createdAt}::timestamptz, ${g.id}::uuid)), 0)::float AS ahead,
      COALESCE(array_agg(count ORDER BY id) FILTER (WHERE status = 'RUNNING' AND "tokensDone" < "tokensTotal"), '{}') AS counts,
      COALESCE(array_agg(("tokensTotal" - "tokensDone")::float / NULLIF("tokensTotal", 0) ORDER BY id) FILTER (WHERE status = 'RUNNING' AND "tokensDone" < "tokensTotal"), '{}') AS remaining
    FROM "Generation" WHERE model = ${g.model} AND status IN ('QUEUED', 'RUNNING')`;
  const running = (load?.counts ?? []).map((count, i) => ({ count, remaining: load!.remaining[i] ?? 1 }));
  // The workers' own measured rate first; before they have one, the recent completions'.
  const workers = await workerThroughput(prisma, g.model);
  const perSecond = workers?.perSecond ?? (await recentRate(prisma, g.model)) ?? 1;
  return Math.round(slotsToStart(running, load?.ahead ?? 0, g.count, perSecond, workers?.rooms ?? null) * 10) / 10;
}

/**
 * Images a second from the most recent few completions within the last 10 minutes of the database's
 * clock (throughput moves with how full the batch is, and the newest runs say it best).
 */
async function recentRate(prisma: Prisma, model: string): Promise<number | null> {
  const runs = await prisma.$queryRaw<{ images: number; start: number; end: number }[]>`
    SELECT count AS images, (EXTRACT(EPOCH FROM "startedAt") * 1000)::float AS start, (EXTRACT(EPOCH FROM "finishedAt") * 1000)::float AS "end"
    FROM "Generation"
    WHERE model = ${model} AND status = 'COMPLETED' AND "startedAt" IS NOT NULL AND "finishedAt" > now() - interval '10 minutes'
    ORDER BY "finishedAt" DESC LIMIT 20`;
  return completionRate(runs) ?? imagesPerBusySecond(runs);
}

/**
 * When the `ahead + count`-th room comes free, in seconds. The workers have `capacity` rooms (null:
 * as many as there are running images); the free ones are free now. With `m` images running and
 * `perSecond` images completed a second, an image holds its room `m / perSecond`; a running image with
 * a share `remaining` of its tokens left frees its room after `remaining` of that, and each room then
 * frees again every `m / perSecond` (the next image in line took it). Counting rooms that way is right
 * both when a batch's images started together and end together (a batch of one-image jobs filled at
 * once: rooms come free in waves, and a generation just past a wave waits for the next) and when they
 * are spread out (rooms come free one by one). Images queued, over the rate, was right in the second
 * case only: in the first it said 0.7-0.8 of the wait (test/durable.test.ts's backlog). The queue is
 * taken image by image: a generation of several images waits for room for all of them (an empty batch
 * takes one larger than itself), so a room or two may stay unused for a moment, which this ignores.
 * `remaining` comes from the rows, whose progress is saved every few tokens: it errs towards a longer
 * wait, by that much.
 */
export function slotsToStart(running: { count: number; remaining: number }[], ahead: number, count: number, perSecond: number, capacity: number | null = null): number {
  const rate = Math.max(perSecond, 1e-3);
  const busy = running
    .flatMap((r) => Array.from({ length: r.count }, () => (Number.isFinite(r.remaining) ? Math.min(1, Math.max(0, r.remaining)) : 1)))
    .sort((a, b) => a - b);
  const m = busy.length;
  // Nothing running: the workers are idle or gone, and the queue ahead is the wait.
  if (m === 0) return ahead / rate;
  const size = Math.max(m, capacity ?? m);
  const rooms = [...Array.from({ length: size - m }, () => 0), ...busy];
  const perImage = m / rate;
  const k = ahead + Math.min(Math.max(1, count), size) - 1;
  return (rooms[k % size]! + Math.floor(k / size)) * perImage;
}

/**
 * Images completed per second between the oldest and the newest of recent completions (the oldest's
 * own images are before the span). Null when they are too few or too close together to say.
 */
export function completionRate(runs: { images: number; end: number }[]): number | null {
  if (runs.length < 4) return null;
  const ends = runs.map((r) => r.end);
  const span = (Math.max(...ends) - Math.min(...ends)) / 1000;
  if (span < 0.5) return null;
  const oldest = runs.reduce((a, b) => (b.end < a.end ? b : a));
  return (runs.reduce((s, r) => s + r.images, 0) - oldest.images) / span;
}

/**
 * Throughput while the workers were busy: images completed over the time covered by their runs
 * (overlapping runs merged). Completion times alone mislead under continuous batching, where a whole
 * batch finishes at once, and wall-clock spans count idle time between jobs.
 */
export function imagesPerBusySecond(runs: { images: number; start: number; end: number }[]): number | null {
  if (runs.length === 0) return null;
  const sorted = [...runs].sort((a, b) => a.start - b.start);
  let busy = 0;
  let [from, to] = [sorted[0]!.start, sorted[0]!.end];
  for (const r of sorted.slice(1)) {
    if (r.start > to) {
      busy += to - from;
      [from, to] = [r.start, r.end];
    } else to = Math.max(to, r.end);
  }
  busy += to - from;
  const images = runs.reduce((s, r) => s + r.images, 0);
  return busy > 0 ? images / (busy / 1000) : null;
}
