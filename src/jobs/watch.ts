/**
 * What a subscriber sees of one generation: the current state first (with the latest preview),
 * then every change, ending after the terminal event. Events are derived from the rows each time
 * the bus says something changed, so a late subscriber, a missed notification or a reconnect all
 * converge on the same sequence.
 */
import type { Prisma } from "../db/client.ts";
import type { Generation, Preview } from "../db/generated/client.ts";
import type { EventBus } from "./events.ts";
import { queuePosition } from "./queue.ts";

export type WatchEvent =
  | { type: "Queued"; generation: Generation; position: number; etaSeconds: number }
  | { type: "Started"; generation: Generation }
  | { type: "Progress"; generation: Generation; tokensDone: number; tokensTotal: number; previews: Preview[] }
  | { type: "Completed"; generation: Generation }
  | { type: "Failed"; generation: Generation; code: string; message: string }
  | { type: "Cancelled"; generation: Generation };

/** A safety net: re-read the row now and then even if no notification arrives (one may be missed). */
const RECHECK_MS = 2_000;
/** While the database is unreachable, a watcher waits this long between tries; it never ends the stream for it. */
const RETRY_MS = 1_000;

/**
 * Seconds until a queued generation starts, from measured throughput: the images ahead of it in its
 * model's queue (plus what remains of the running ones), divided by the images per second recent
 * generations of that model were done at. Before any history, a second per image.
 */
export async function estimateSeconds(prisma: Prisma, g: Pick<Generation, "id" | "createdAt" | "model">): Promise<number> {
  const [load] = await prisma.$queryRaw<{ ahead: number; running: number }[]>`
    SELECT
      COALESCE(SUM(count) FILTER (WHERE status = 'QUEUED' AND ("createdAt", id) < (${g.createdAt}::timestamptz, ${g.id}::uuid)), 0)::float AS ahead,
      COALESCE(SUM(count * ("tokensTotal" - "tokensDone")::float / "tokensTotal") FILTER (WHERE status = 'RUNNING'), 0)::float AS running
    FROM "Generation" WHERE model = ${g.model} AND status IN ('QUEUED', 'RUNNING')`;
  const recent = await prisma.generation.findMany({
    where: { model: g.model, status: "COMPLETED", startedAt: { not: null }, finishedAt: { gt: new Date(Date.now() - 10 * 60_000) } },
    orderBy: { finishedAt: "desc" }, take: 50, select: { count: true, startedAt: true, finishedAt: true },
  });
  const perSecond = imagesPerBusySecond(recent.map((r) => ({ images: r.count, start: r.startedAt!.getTime(), end: r.finishedAt!.getTime() })));
  const work = (load?.ahead ?? 0) + (load?.running ?? 0);
  return Math.round((work / Math.max(perSecond ?? 1, 1e-3)) * 10) / 10;
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

export async function* watchGeneration(prisma: Prisma, bus: EventBus, id: string, signal?: AbortSignal): AsyncGenerator<WatchEvent> {
  let dirty = true;
  let wake: (() => void) | null = null;
  const poke = () => {
    dirty = true;
    wake?.();
  };
  const unsubscribe = bus.subscribe((e) => {
    if (e.kind === "queue" || e.id === id) poke();
  });
  signal?.addEventListener("abort", poke);
  const sent = { queuedAt: null as number | null, started: false, tokensDone: 0, previewTokens: 0, first: true };
  const sleep = (ms: number) => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(t);
      resolve();
    };
  }).finally(() => { wake = null; });
  try {
    while (!signal?.aborted) {
      if (!dirty) {
        await sleep(RECHECK_MS);
        // Re-read whether or not a notification came: a missed one must not hang the stream.
        dirty = true;
        continue;
      }
      dirty = false;
      let g: Generation | null;
      try {
        g = await prisma.generation.findUnique({ where: { id } });
      } catch {
        // The database is away (restart, failover): keep the stream open and catch up from the row.
        dirty = true;
        await sleep(RETRY_MS);
        continue;
      }
      if (!g) return;
      let events: WatchEvent[];
      try {
        events = await eventsFor(prisma, g, sent);
      } catch {
        dirty = true;
        await sleep(RETRY_MS);
        continue;
      }
      for (const e of events) yield e;
      if (events.length && isTerminal(events[events.length - 1]!)) return;
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener("abort", poke);
  }
}

interface Sent {
  queuedAt: number | null;
  started: boolean;
  tokensDone: number;
  previewTokens: number;
  first: boolean;
}

const isTerminal = (e: WatchEvent) => e.type === "Completed" || e.type === "Failed" || e.type === "Cancelled";

/**
 * The events that take a subscriber from what it was sent to the row's state. Reads only: `sent`
 * is updated only when the reads succeeded, so a failed read is simply tried again.
 */
async function eventsFor(prisma: Prisma, g: Generation, sent: Sent): Promise<WatchEvent[]> {
  const out: WatchEvent[] = [];
  const next = { ...sent };
  const terminal = g.status === "COMPLETED" || g.status === "FAILED" || g.status === "CANCELLED";
  if (terminal && sent.first) {
    // Arriving after the end: the outcome is the current state.
    Object.assign(sent, next, { first: false });
    return [terminalEvent(g)];
  }
  next.first = false;
  if (g.status === "QUEUED") {
    const position = (await queuePosition(prisma, g)) ?? 1;
    if (next.queuedAt !== position || next.started) {
      next.queuedAt = position;
      // Requeued after its worker was lost: it resumes where its codes were saved, so progress
      // continues from there rather than from zero; Started comes again when it is claimed.
      next.started = false;
      out.push({ type: "Queued", generation: g, position, etaSeconds: await estimateSeconds(prisma, g) });
    }
    Object.assign(sent, next);
    return out;
  }
  if (!next.started && g.startedAt) {
    next.started = true;
    out.push({ type: "Started", generation: g });
  }
  if (g.tokensDone > next.tokensDone && g.status !== "CANCELLED") {
    const latest = await prisma.preview.findFirst({
      where: { generationId: g.id, tokensDone: { gt: next.previewTokens, lte: g.tokensDone } },
      orderBy: { tokensDone: "desc" }, select: { tokensDone: true },
    });
    const previews = latest
      ? await prisma.preview.findMany({ where: { generationId: g.id, tokensDone: latest.tokensDone }, orderBy: { index: "asc" } })
      : [];
    if (latest) next.previewTokens = latest.tokensDone;
    next.tokensDone = g.tokensDone;
    out.push({ type: "Progress", generation: g, tokensDone: g.tokensDone, tokensTotal: g.tokensTotal, previews });
  }
  if (terminal) out.push(terminalEvent(g));
  Object.assign(sent, next);
  return out;
}

function terminalEvent(g: Generation): WatchEvent {
  if (g.status === "COMPLETED") return { type: "Completed", generation: g };
  if (g.status === "CANCELLED") return { type: "Cancelled", generation: g };
  return { type: "Failed", generation: g, code: g.errorCode ?? "INFERENCE_FAILED", message: g.errorMessage ?? "generation failed" };
}
