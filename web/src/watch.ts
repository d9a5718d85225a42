/**
 * Follows one generation through generationEvents: its phase, queue place and ETA, tokens, and the
 * grid's pictures through a Board (never coarser). The server replays the current state to a late
 * subscriber, so opening a permalink, or the socket coming back after the server restarted, starts
 * from where the generation is; a finished generation's replay is its end (no job is started here).
 */
import type { Client } from "@urql/core";
import { useEffect, useState } from "preact/hooks";
import { describeError } from "./client.ts";
import { Board, type Picture } from "./board.ts";
import { GenerationEventsSubscription } from "./operations.ts";

export type Phase = "waiting" | "queued" | "running" | "completed" | "failed" | "cancelled" | "error";

export interface WatchState {
  /** The generation this state is of. */
  id: string | null;
  phase: Phase;
  position: number | null;
  /** When the queued generation should start (ms since the epoch), from the last Queued event. */
  etaEnd: number | null;
  tokensDone: number;
  tokensTotal: number;
  cells: (Picture | null)[];
  /** Failed's message, or why the stream broke. */
  message: string | null;
  code: string | null;
}

const initial = (id: string | null, count: number, tokensTotal: number): WatchState => ({
  id, phase: "waiting", position: null, etaEnd: null, tokensDone: 0, tokensTotal, message: null, code: null,
  cells: Array.from({ length: count }, () => null),
});

export const isActive = (p: Phase) => p === "waiting" || p === "queued" || p === "running";

/** Resolves true once the picture is decoded (false if it cannot be), so a swap never shows a blank. */
function preload(url: string): Promise<boolean> {
  const img = new Image();
  img.src = url;
  return img.decode().then(() => true, () => false);
}

export function useWatch(client: Client, id: string | null, count: number, tokensTotal: number): WatchState {
  const [state, setState] = useState<WatchState>(() => initial(id, count, tokensTotal));
  useEffect(() => {
    if (!id || !count) return;
    const board = new Board(count);
    let alive = true;
    setState(initial(id, count, tokensTotal));
    const patch = (p: Partial<WatchState>) => alive && setState((s) => ({ ...s, ...p }));
    const offer = (i: number, p: Picture) => {
      if (!board.offer(i, p)) return;
      void preload(p.url).then((ok) => {
        if (board.settle(i, p, ok)) patch({ cells: board.cells() });
      });
    };
    const flags = Object.fromEntries(Array.from({ length: 8 }, (_, k) => [`i${k + 1}`, k + 1 < count])) as Record<`i${1 | 2 | 3 | 4 | 5 | 6 | 7 | 8}`, boolean>;
    // urql hands each event over merged with the ones before: the last data stays when an event has
    // none, and errors stay once seen. So an event counts once (by identity), and only an error of
    // the stream itself (no nested path: not found, refused, network) ends the watch. A nested one,
    // such as a preview deleted by the worker between the event and its resolution ("the preview is
    // gone"), costs that one event; the next ones carry on.
    let last: unknown = null;
    const sub = client.subscription(GenerationEventsSubscription, { id, ...flags }).subscribe((result) => {
      if (!alive) return;
      const error = result.error;
      if (error && (error.networkError || error.graphQLErrors.some((g) => !g.path || g.path.length <= 1))) {
        patch({ phase: "error", message: describeError(error) });
        return;
      }
      const e = result.data?.generationEvents;
      if (!e || result.data === last) return;
      last = result.data;
      switch (e.__typename) {
        case "Queued":
          patch({ phase: "queued", position: e.position, etaEnd: Date.now() + e.etaSeconds * 1000, tokensTotal: e.generation.tokensTotal });
          break;
        case "Started":
          patch({ phase: "running", position: null, etaEnd: null, tokensTotal: e.generation.tokensTotal });
          break;
        case "Progress": {
          setState((s) => (alive ? { ...s, phase: "running", position: null, etaEnd: null, tokensDone: Math.max(s.tokensDone, e.tokensDone), tokensTotal: e.tokensTotal } : s));
          const mosaics = [e.m0, e.m1, e.m2, e.m3, e.m4, e.m5, e.m6, e.m7, e.m8];
          mosaics.forEach((url, i) => {
            if (url) offer(i, { stage: "mosaic", tokens: e.tokensDone, url });
          });
          for (const p of e.previews) offer(p.index, { stage: "preview", tokens: p.tokensDone, url: p.dataUrl });
          break;
        }
        case "Completed": {
          const g = e.generation;
          patch({ phase: "completed", position: null, etaEnd: null, tokensDone: g.tokensTotal, tokensTotal: g.tokensTotal });
          for (const im of g.images) offer(im.index, { stage: "final", tokens: g.tokensTotal, url: im.url, seed: im.seed, id: im.id });
          break;
        }
        case "Failed":
          patch({ phase: "failed", position: null, etaEnd: null, message: e.message, code: e.code });
          break;
        case "Cancelled":
          patch({ phase: "cancelled", position: null, etaEnd: null });
          break;
      }
    });
    return () => {
      alive = false;
      sub.unsubscribe();
    };
  }, [client, id, count, tokensTotal]);
  // Until the effect above has run for a new generation, the state is still the last one's.
  return state.id === id ? state : initial(id, count, tokensTotal);
}
