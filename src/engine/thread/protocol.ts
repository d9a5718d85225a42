/** Messages between a worker's main thread and its engine thread (structured-cloned). */
import type { ProviderName } from "../providers.ts";
import type { GenerateRequest, GenerationEvent } from "../request.ts";

export interface ThreadOptions {
  modelFolder: string;
  provider: ProviderName;
}

/** Main → engine. */
export type ToEngine =
  /** Join the batch at the next step boundary. */
  | { type: "admit"; id: string; request: Omit<GenerateRequest, "signal"> }
  /** Stop this generation within one step (a user cancel, or a job this worker lost). */
  | { type: "cancel"; id: string }
  /** Finish the current step, report it, then idle: the worker is handing its jobs back. */
  | { type: "pause" }
  | { type: "close" };

/** Engine → main. */
export type FromEngine =
  | { type: "ready"; provider: ProviderName; deviceState: boolean }
  | { type: "load-failed"; message: string; code?: string }
  | { type: "log"; line: string }
  | { type: "events"; id: string; events: GenerationEvent[] }
  | { type: "failed"; id: string; code: string; message: string; stack?: string }
  /**
   * A step ended: how many images the batch holds now, how long the step took, and the wall time
   * since the previous step ended (everything the engine did meanwhile), measured here: the receiving
   * thread may read several of these at once.
   */
  | { type: "step"; images: number; active: boolean; ms: number; rows: number; wallMs: number }
  | { type: "paused" };
