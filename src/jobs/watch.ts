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

/** A safety net: re-read now and then even if no notification arrives. */
const RECHECK_MS = 5_000;

export async function estimateSeconds(prisma: Prisma, position: number): Promise<number> {
  const recent = await prisma.generation.findMany({
    where: { status: "COMPLETED", startedAt: { not: null }, finishedAt: { not: null } },
    orderBy: { finishedAt: "desc" }, take: 20, select: { startedAt: true, finishedAt: true },
  });
  // Before any history: about a second per generation on our 2-core reference machine.
  const each = recent.length === 0 ? 1 : recent.reduce((s, r) => s + (r.finishedAt!.getTime() - r.startedAt!.getTime()), 0) / recent.length / 1000;
  return Math.round(position * each * 10) / 10;
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
  try {
    while (!signal?.aborted) {
      if (!dirty) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, RECHECK_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
        continue;
      }
      dirty = false;
      const g = await prisma.generation.findUnique({ where: { id } });
      if (!g) return;
      const terminal = g.status === "COMPLETED" || g.status === "FAILED" || g.status === "CANCELLED";
      if (terminal && sent.first) {
        // Arriving after the end: the outcome is the current state.
        yield terminalEvent(g);
        return;
      }
      sent.first = false;
      if (g.status === "QUEUED") {
        const position = (await queuePosition(prisma, g)) ?? 1;
        if (sent.queuedAt !== position || sent.started) {
          sent.queuedAt = position;
          // Requeued after its worker died: it starts over.
          sent.started = false;
          sent.tokensDone = 0;
          sent.previewTokens = 0;
          yield { type: "Queued", generation: g, position, etaSeconds: await estimateSeconds(prisma, position) };
        }
        continue;
      }
      if (!sent.started && g.startedAt) {
        sent.started = true;
        yield { type: "Started", generation: g };
      }
      if (g.tokensDone > sent.tokensDone && g.status !== "CANCELLED") {
        const latest = await prisma.preview.findFirst({
          where: { generationId: id, tokensDone: { gt: sent.previewTokens, lte: g.tokensDone } },
          orderBy: { tokensDone: "desc" }, select: { tokensDone: true },
        });
        const previews = latest
          ? await prisma.preview.findMany({ where: { generationId: id, tokensDone: latest.tokensDone }, orderBy: { index: "asc" } })
          : [];
        if (latest) sent.previewTokens = latest.tokensDone;
        sent.tokensDone = g.tokensDone;
        yield { type: "Progress", generation: g, tokensDone: g.tokensDone, tokensTotal: g.tokensTotal, previews };
      }
      if (terminal) {
        yield terminalEvent(g);
        return;
      }
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener("abort", poke);
  }
}

function terminalEvent(g: Generation): WatchEvent {
  if (g.status === "COMPLETED") return { type: "Completed", generation: g };
  if (g.status === "CANCELLED") return { type: "Cancelled", generation: g };
  return { type: "Failed", generation: g, code: g.errorCode ?? "INFERENCE_FAILED", message: g.errorMessage ?? "generation failed" };
}
