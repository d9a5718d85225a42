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
  /** A step ended: how many images (and rows) the batch holds now and how long the step took. */
  | { type: "step"; images: number; active: boolean; ms: number; rows: number }
  | { type: "paused" };
