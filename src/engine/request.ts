/**
 * What a caller asks of the engine, the events it gets back, and the validation that turns a request
 * into settled values (model defaults filled in, every bad value refused with a message naming it).
 */
import { badInput } from "./errors.ts";
import type { ModelInfo } from "./model.ts";
import { sequenceLength, type Architecture } from "./model-format.ts";
import { randomSeed } from "./random.ts";
import { validateSampling, type SamplingSettings } from "./sampling.ts";

/** Codes between previews when a request names none: one row of the grid. */
export function defaultPreviewInterval(a: Architecture): number {
  return a.grid.width;
}

export const MAX_IMAGES = 9;
export const MAX_PROMPT_CHARS = 2000;
export const MAX_SEED = 2 ** 31 - 1;

export interface GenerateRequest {
  prompt: string;
  /** Images generated together, 1–9. */
  count?: number;
  /** Generation seed; image i uses seed + i. Random when absent (and reported). */
  seed?: number;
  sampling?: Partial<SamplingSettings>;
  /** A VQ preview every this many tokens; 0 = none. Default: one per token row. */
  previewInterval?: number;
  /**
   * Resume an interrupted generation: the codes already drawn for each image (as saved with its
   * progress) and how many of them count. The engine re-feeds them to rebuild its cache and moves each
   * image's random stream past the draws they took, so the result is the uninterrupted run's.
   */
  resume?: { codes: Int32Array[]; tokensDone: number };
  signal?: AbortSignal;
}

/** RGB bytes, row-major, 3 channels. */
export interface Frame {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface FinalImage extends Frame {
  index: number;
  seed: number;
  codes: Int32Array;
}

export interface StartedEvent {
  type: "started";
  prompt: string;
  normalizedPrompt: string;
  truncatedTokens: number;
  unknownWords: string[];
  seed: number;
  seeds: number[];
  count: number;
  settings: SamplingSettings;
  previewInterval: number;
  tokensTotal: number;
}

export interface ProgressEvent {
  type: "progress";
  tokensDone: number;
  tokensTotal: number;
  tokensPerSecond: number;
  /** The newest token of each image. */
  tokens: number[];
  /** VQ-decoded partial images, one per image, when a preview is due. */
  previews?: Frame[];
  /**
   * The token count the previews show. VQ previews run beside the decoder, so they may arrive a few
   * steps after the point they were taken at (always in order, and the last one with the last step).
   */
  previewTokens?: number;
}

export interface Timings {
  textMs: number;
  decodeMs: number;
  previewMs: number;
  previews: number;
  finalMs: number;
  totalMs: number;
  firstPreviewMs: number | null;
}

export interface CompletedEvent {
  type: "completed";
  images: FinalImage[];
  timings: Timings;
}

export interface CancelledEvent {
  type: "cancelled";
  tokensDone: number;
}

export type GenerationEvent = StartedEvent | ProgressEvent | CompletedEvent | CancelledEvent;

export interface ResolvedRequest {
  prompt: string;
  count: number;
  seed: number;
  settings: SamplingSettings;
  previewInterval: number;
  resume: { codes: Int32Array[]; tokensDone: number } | null;
}

/** A prompt the server will take: a string of at most MAX_PROMPT_CHARS without control characters. */
export function validatePrompt(prompt: unknown): asserts prompt is string {
  if (typeof prompt !== "string") throw badInput("prompt must be a string");
  // Characters as people count them (code points): an emoji is one, not its two UTF-16 units. A string
  // of UTF-16 units longer than twice the limit has more code points than the limit anyway.
  if (prompt.length > 2 * MAX_PROMPT_CHARS || [...prompt].length > MAX_PROMPT_CHARS) throw badInput(`prompt is longer than ${MAX_PROMPT_CHARS} characters`);
  // Control characters (NUL included, which PostgreSQL cannot store in text) are refused, not cleaned:
  // a prompt is stored and shown as typed. Tabs and newlines are ordinary whitespace.
  if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/.test(prompt)) throw badInput("prompt contains control characters");
  // Half of a UTF-16 pair alone ("\ud800" in JSON) is no character: stored, it became U+FFFD, so the
  // prompt kept was not the one sent.
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(prompt)) throw badInput("prompt is not valid Unicode text (half of a surrogate pair)");
}

/** Defaults from the model, and every bad value refused with a message that names it. */
export function resolveRequest(model: ModelInfo, req: GenerateRequest): ResolvedRequest {
  const m = model.manifest;
  validatePrompt(req.prompt);
  const count = req.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > MAX_IMAGES) throw badInput(`count must be a whole number from 1 to ${MAX_IMAGES} (got ${count})`);
  const seed = req.seed ?? randomSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) throw badInput(`seed must be a whole number from 0 to ${MAX_SEED} (got ${seed})`);
  const settings: SamplingSettings = { ...m.sampling, ...stripUndefined(req.sampling ?? {}) };
  validateSampling(settings, m.architecture.codebookSize);
  const cells = m.architecture.grid.height * m.architecture.grid.width;
  // A resumed generation's saved tokens hold the plan, if the model writes one, before the codes.
  const total = sequenceLength(m.architecture);
  const previewInterval = req.previewInterval ?? defaultPreviewInterval(m.architecture);
  if (!Number.isInteger(previewInterval) || previewInterval < 0 || previewInterval > cells) {
    throw badInput(`previewInterval must be a whole number from 0 (off) to ${cells} (got ${previewInterval})`);
  }
  const resume = req.resume ?? null;
  if (resume) {
    const ok = Number.isInteger(resume.tokensDone) && resume.tokensDone >= 0 && resume.tokensDone <= total &&
      resume.codes.length === count && resume.codes.every((c) => c.length === total);
    if (!ok) throw badInput(`resume needs ${count} sequences of ${total} tokens and tokensDone from 0 to ${total}`);
  }
  return { prompt: req.prompt, count, seed, settings, previewInterval, resume };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

