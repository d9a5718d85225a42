/** What the benchmarks share: summary statistics and a timed generation. */
import { generate, type GenerateRequest, type GenerationEvent, type Timings } from "../src/engine/generate.ts";
import type { Model } from "../src/engine/model.ts";
import type { ThreadOptions } from "../src/engine/thread/protocol.ts";
import { RemoteEngine } from "../src/engine/thread/remote.ts";

export function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

export const median = (xs: number[]): number => stats(xs).median;

/** One generation run to completion; its engine timings. */
export async function timed(model: Model, req: GenerateRequest): Promise<Timings> {
  for await (const ev of generate(model, req)) if (ev.type === "completed") return ev.timings;
  throw new Error("generation did not complete");
}

/** A generation through an engine thread, as the server runs it: wall time to the final images and to the first preview. */
export interface ThreadedTiming {
  totalMs: number;
  firstPreviewMs: number | null;
  previews: number;
}

/**
 * The server's engine path for benchmarks: an engine thread (and on the CPU its preview thread) that
 * runs one generation at a time, timed from admission to the completed event.
 */
export class ThreadedRunner {
  private waiting: { t0: number; first: number | null; previews: number; resolve: (t: ThreadedTiming) => void; reject: (e: Error) => void } | null = null;
  private n = 0;

  private constructor(readonly engine: RemoteEngine) {}

  static async start(o: ThreadOptions): Promise<ThreadedRunner> {
    let runner: ThreadedRunner | null = null;
    const engine = await RemoteEngine.start(o, {
      events: (_id, events: GenerationEvent[]) => runner?.onEvents(events),
      failed: (_id, e) => runner?.fail(e),
      step: () => {},
      log: (line) => console.error(line),
    });
    runner = new ThreadedRunner(engine);
    return runner;
  }

  private fail(e: Error): void {
    const w = this.waiting;
    this.waiting = null;
    w?.reject(e);
  }

  private onEvents(events: GenerationEvent[]): void {
    const w = this.waiting;
    if (!w) return;
    for (const e of events) {
      if (e.type === "progress" && e.previews) {
        w.previews++;
        w.first ??= performance.now() - w.t0;
      }
      if (e.type === "completed") {
        this.waiting = null;
        w.resolve({ totalMs: performance.now() - w.t0, firstPreviewMs: w.first, previews: w.previews });
      }
    }
  }

  run(request: Omit<GenerateRequest, "signal">): Promise<ThreadedTiming> {
    return new Promise((resolve, reject) => {
      this.waiting = { t0: performance.now(), first: null, previews: 0, resolve, reject };
      this.engine.admit(`run-${this.n++}`, request);
    });
  }

  release(): Promise<void> {
    return this.engine.release();
  }
}
