/**
 * What a subscriber sees of one generation: the current state first (with the latest preview), then
 * every change, ending after the terminal event. One feed per generation per process reads the rows
 * when the bus says something changed (and every couple of seconds, in case a notification was
 * missed) and keeps the events in order; every subscriber of that generation follows the same feed,
 * so 500 subscribers cost one set of reads, a late subscriber starts from memory at once, and each
 * gets every preview set the generation produced. A database outage pauses the feed; it never
 * ends a stream.
 */
import type { Prisma } from "../db/client.ts";
import type { Generation, Preview as PreviewWithBytes } from "../db/generated/client.ts";

type Preview = Omit<PreviewWithBytes, "bytes">;
import type { EventBus } from "./events.ts";
import { estimateSeconds } from "./eta.ts";
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
/** While the database is unreachable, a feed waits this long between tries. */
const RETRY_MS = 1_000;

const isTerminalStatus = (g: Generation) => g.status === "COMPLETED" || g.status === "FAILED" || g.status === "CANCELLED";

/** The shared reader of one generation's rows, and the events it has seen so far. */
class Feed {
  /** Events since the feed began, in order; subscribers keep their own place in it. */
  readonly log: WatchEvent[] = [];
  row: Generation | null = null;
  /** What the newest state looks like, for a subscriber that arrives now. */
  private queued: { position: number; etaSeconds: number } | null = null;
  private latestPreviews: Preview[] = [];
  private progress = { tokensDone: 0, previewTokens: 0, started: false };
  private dirty = true;
  private wake: (() => void) | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribe: () => void;
  readonly ready: Promise<void>;
  subscribers = 0;
  closed = false;

  constructor(private readonly prisma: Prisma, bus: EventBus, readonly id: string, private readonly onIdle: () => void) {
    this.unsubscribe = bus.subscribe((e) => {
      if (e.kind === "queue" || e.id === id) this.poke();
    });
    let resolveReady!: () => void;
    this.ready = new Promise((r) => { resolveReady = r; });
    void this.run(resolveReady);
  }

  private poke(): void {
    this.dirty = true;
    this.wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    }).finally(() => { this.wake = null; });
  }

  private async run(ready: () => void): Promise<void> {
    let first = true;
    while (!this.closed) {
      if (!this.dirty) {
        await this.sleep(RECHECK_MS);
        // Re-read whether or not a notification came: a missed one must not hang the streams.
        this.dirty = true;
        continue;
      }
      this.dirty = false;
      try {
        const g = await this.prisma.generation.findUnique({ where: { id: this.id } });
        if (g) await this.advance(g, first);
        else this.row = null;
        if (first) {
          first = false;
          ready();
        }
        this.listeners.forEach((l) => l());
        if (!g || isTerminalStatus(g)) return this.finish();
      } catch {
        // The database is away (restart, failover): keep the streams open and catch up from the rows.
        this.dirty = true;
        await this.sleep(RETRY_MS);
      }
    }
  }

  /**
   * Appends the events that take the feed from what it has seen to the row's state. Everything a
   * snapshot reads is committed together with the log, after the reads, so a subscriber that arrives
   * while this runs starts from a state that the log continues exactly.
   */
  private async advance(g: Generation, first: boolean): Promise<void> {
    const out: WatchEvent[] = [];
    const progress = { ...this.progress };
    let queued = this.queued;
    let latest = this.latestPreviews;
    if (g.status === "QUEUED") {
      const position = (await queuePosition(this.prisma, g)) ?? 1;
      if (queued?.position !== position || progress.started) {
        // Requeued after its worker was lost: it resumes where its codes were saved, so progress
        // continues from there; Started comes again when it is claimed.
        progress.started = false;
        queued = { position, etaSeconds: await estimateSeconds(this.prisma, g) };
        out.push({ type: "Queued", generation: g, ...queued });
      }
    } else {
      if (!progress.started && g.startedAt) {
        progress.started = true;
        out.push({ type: "Started", generation: g });
      }
      if (g.tokensDone > progress.tokensDone && g.status !== "CANCELLED") {
        // Every preview set since the last read, in order (a fast worker may write several between
        // reads); on the first read only the newest matters.
        const sets = await this.prisma.preview.findMany({
          where: { generationId: g.id, tokensDone: { gt: progress.previewTokens, lte: g.tokensDone } },
          orderBy: [{ tokensDone: "asc" }, { index: "asc" }],
          // Events carry preview rows, not pictures: bytes are read only by a field that encodes them.
          omit: { bytes: true },
        });
        const groups = new Map<number, Preview[]>();
        for (const p of sets) groups.set(p.tokensDone, [...(groups.get(p.tokensDone) ?? []), p]);
        const entries = [...groups.entries()];
        for (const [tokensDone, previews] of first ? entries.slice(-1) : entries) {
          // Previews are decoded beside the decoder and may be written after progress past their point:
          // the event's tokensDone never goes back (each preview says which point it shows).
          const at = Math.max(tokensDone, progress.tokensDone);
          if (at < g.tokensDone) out.push({ type: "Progress", generation: g, tokensDone: at, tokensTotal: g.tokensTotal, previews });
          latest = previews;
          progress.previewTokens = tokensDone;
        }
        const withPreview = progress.previewTokens === g.tokensDone ? latest : [];
        out.push({ type: "Progress", generation: g, tokensDone: g.tokensDone, tokensTotal: g.tokensTotal, previews: withPreview });
        progress.tokensDone = g.tokensDone;
      }
      if (isTerminalStatus(g)) out.push(terminalEvent(g));
    }
    // No await from here on: the state and the log change together.
    this.progress = progress;
    this.queued = queued;
    this.latestPreviews = latest;
    this.row = g;
    this.log.push(...out);
  }

  /** What a subscriber arriving now is sent first: the outcome if it is over, else the current state. */
  snapshot(): WatchEvent[] {
    const g = this.row!;
    if (isTerminalStatus(g)) return [terminalEvent(g)];
    if (g.status === "QUEUED") return this.queued ? [{ type: "Queued", generation: g, ...this.queued }] : [];
    const out: WatchEvent[] = [];
    if (g.startedAt) out.push({ type: "Started", generation: g });
    if (this.progress.tokensDone > 0) {
      out.push({ type: "Progress", generation: g, tokensDone: this.progress.tokensDone, tokensTotal: g.tokensTotal, previews: this.latestPreviews });
    }
    return out;
  }

  /** Calls `l` after every read (until removed). */
  listen(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private finish(): void {
    this.closed = true;
    this.unsubscribe();
    this.listeners.forEach((l) => l());
    this.onIdle();
  }

  release(): void {
    if (--this.subscribers > 0) return;
    this.closed = true;
    this.unsubscribe();
    this.wake?.();
    this.onIdle();
  }
}

const feeds = new WeakMap<EventBus, Map<string, Feed>>();
/** Subscriptions being followed now, per process (its bus), for the mosaic_active_subscriptions metric. */
const following = new WeakMap<EventBus, { n: number }>();

export function activeSubscriptions(bus: EventBus): number {
  return following.get(bus)?.n ?? 0;
}

function feedFor(prisma: Prisma, bus: EventBus, id: string): Feed {
  let byId = feeds.get(bus);
  if (!byId) feeds.set(bus, (byId = new Map()));
  let feed = byId.get(id);
  if (!feed || feed.closed) {
    const f: Feed = new Feed(prisma, bus, id, () => {
      if (byId!.get(id) === f) byId!.delete(id);
    });
    byId.set(id, f);
    feed = f;
  }
  feed.subscribers++;
  return feed;
}

/**
 * Opens a watch on a generation: null when there is no such generation, else its events (the
 * current state, then every change, up to the terminal event).
 */
export async function watchGeneration(prisma: Prisma, bus: EventBus, id: string, signal?: AbortSignal): Promise<AsyncGenerator<WatchEvent> | null> {
  const feed = feedFor(prisma, bus, id);
  await feed.ready;
  if (!feed.row) {
    feed.release();
    return null;
  }
  let open = following.get(bus);
  if (!open) following.set(bus, (open = { n: 0 }));
  return stoppable(feed, open, signal);
}

/**
 * The events as an iterator whose return() stops it at once. An async generator waiting for the next
 * event queues a return() until that event comes, so a graphql-ws client that left a quiet (queued)
 * generation kept its feed polling for ever; here return() aborts the wait first.
 */
function stoppable(feed: Feed, open: { n: number }, signal?: AbortSignal): AsyncGenerator<WatchEvent> {
  const stop = new AbortController();
  const inner = follow(feed, open, signal ? AbortSignal.any([signal, stop.signal]) : stop.signal);
  const it: AsyncGenerator<WatchEvent> = {
    next: () => inner.next(),
    return: (value) => {
      stop.abort();
      return inner.return(value);
    },
    throw: (e) => {
      stop.abort();
      return inner.throw(e);
    },
    [Symbol.asyncIterator]: () => it,
  };
  return it;
}

async function* follow(feed: Feed, open: { n: number }, signal?: AbortSignal): AsyncGenerator<WatchEvent> {
  open.n++;
  let wake: (() => void) | null = null;
  const stop = feed.listen(() => wake?.());
  const onAbort = () => wake?.();
  signal?.addEventListener("abort", onAbort);
  try {
    const first = feed.snapshot();
    let next = feed.log.length;
    for (const e of first) yield e;
    if (first.some(isTerminal)) return;
    while (!signal?.aborted) {
      while (next < feed.log.length) {
        const e = feed.log[next++]!;
        yield e;
        if (isTerminal(e)) return;
      }
      if (feed.closed) return;
      await new Promise<void>((resolve) => { wake = resolve; });
      wake = null;
    }
  } finally {
    open.n--;
    stop();
    signal?.removeEventListener("abort", onAbort);
    feed.release();
  }
}

const isTerminal = (e: WatchEvent) => e.type === "Completed" || e.type === "Failed" || e.type === "Cancelled";

function terminalEvent(g: Generation): WatchEvent {
  if (g.status === "COMPLETED") return { type: "Completed", generation: g };
  if (g.status === "CANCELLED") return { type: "Cancelled", generation: g };
  return { type: "Failed", generation: g, code: g.errorCode ?? "INFERENCE_FAILED", message: g.errorMessage ?? "generation failed" };
}
