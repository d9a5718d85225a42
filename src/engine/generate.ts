/**
 * One generation: prompt -> text encoder -> 256 decoder steps with guidance and per-image sampling
 * -> VQ decodes (previews along the way, final images at the end), as a stream of events.
 */
import ort from "onnxruntime-node";
import { badInput, MosaicError } from "./errors.ts";
import type { Model, ModelInfo } from "./model.ts";
import { filledGrid, mosaic, previewSchedule } from "./previews.ts";
import { imageSeed, Mulberry32, randomSeed } from "./random.ts";
import { createSampler, guide, validateSampling, type SamplingSettings } from "./sampling.ts";

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
  /** Include the zero-cost per-token mosaic in every progress event. */
  mosaic?: boolean;
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
  normalisedPrompt: string;
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
  /** Per-token mosaics, one per image, when asked for. */
  mosaics?: Frame[];
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
  mosaic: boolean;
}

/** Defaults from the model, and every bad value refused with a message that names it. */
export function resolveRequest(model: ModelInfo, req: GenerateRequest): ResolvedRequest {
  const m = model.manifest;
  if (typeof req.prompt !== "string") throw badInput("prompt must be a string");
  if (req.prompt.length > MAX_PROMPT_CHARS) throw badInput(`prompt is longer than ${MAX_PROMPT_CHARS} characters`);
  const count = req.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > MAX_IMAGES) throw badInput(`count must be a whole number from 1 to ${MAX_IMAGES} (got ${count})`);
  const seed = req.seed ?? randomSeed();
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) throw badInput(`seed must be a whole number from 0 to ${MAX_SEED} (got ${seed})`);
  const settings: SamplingSettings = { ...m.sampling, ...stripUndefined(req.sampling ?? {}) };
  validateSampling(settings, m.architecture.codebookSize);
  const total = m.architecture.grid.height * m.architecture.grid.width;
  const previewInterval = req.previewInterval ?? m.architecture.grid.width;
  if (!Number.isInteger(previewInterval) || previewInterval < 0 || previewInterval > total) {
    throw badInput(`previewInterval must be a whole number from 0 (off) to ${total} (got ${previewInterval})`);
  }
  return { prompt: req.prompt, count, seed, settings, previewInterval, mosaic: req.mosaic ?? false };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/** Decode full or partial grids of n images with the VQ decoder -> RGB frames. */
export async function decodeGrids(model: Model, grids: Int32Array[]): Promise<Frame[]> {
  const a = model.manifest.architecture;
  const cells = a.grid.height * a.grid.width;
  const flat = new Int32Array(grids.length * cells);
  grids.forEach((g, i) => flat.set(g, i * cells));
  const out = await model.vqDecoder.run({ codes: int64(flat, [grids.length, a.grid.height, a.grid.width]) });
  const pixels = out.pixels!.data as Float32Array;
  const size = a.imageSize.height * a.imageSize.width * 3;
  return grids.map((_, i) => {
    const data = new Uint8Array(size);
    for (let j = 0; j < size; j++) data[j] = Math.round(Math.min(1, Math.max(0, pixels[i * size + j]!)) * 255);
    return { width: a.imageSize.width, height: a.imageSize.height, data };
  });
}

export async function* generate(model: Model, request: GenerateRequest): AsyncGenerator<GenerationEvent> {
  const r = resolveRequest(model, request);
  const a = model.manifest.architecture;
  const n = r.count;
  const total = a.grid.height * a.grid.width;
  const guided = r.settings.guidanceScale !== 1;
  // Guidance doubles the batch: rows [conditional × n, unconditional × n].
  const rows = guided ? 2 * n : n;
  const seeds = Array.from({ length: n }, (_, i) => imageSeed(r.seed, i));
  const encoded = model.prompts.encode(r.prompt);
  const empty = model.prompts.encode("");
  const t0 = performance.now();

  yield {
    type: "started", prompt: r.prompt, normalisedPrompt: encoded.normalised, truncatedTokens: encoded.truncatedTokens,
    unknownWords: encoded.unknownWords, seed: r.seed, seeds, count: n, settings: r.settings,
    previewInterval: r.previewInterval, tokensTotal: total,
  };

  const textRows = Array.from({ length: rows }, (_, i) => (i < n ? encoded : empty));
  const T = a.maxTextLength;
  const textMask = int64(textRows.flatMap((e) => e.mask), [rows, T]);
  const disposables: ort.Tensor[] = [];
  try {
    const cross = await model.textEncoder.run({ input_ids: int64(textRows.flatMap((e) => e.ids), [rows, T]), attention_mask: textMask });
    const crossK = cross.cross_k!;
    const crossV = cross.cross_v!;
    disposables.push(crossK, crossV);
    const tText = performance.now();

    const cacheDims = [a.decoderLayers, rows, a.heads, total, a.headDim];
    let pastK: ort.Tensor = new ort.Tensor("float32", new Float32Array(cacheDims.reduce((x, y) => x * y)), cacheDims);
    let pastV: ort.Tensor = new ort.Tensor("float32", new Float32Array(cacheDims.reduce((x, y) => x * y)), cacheDims);
    const rngs = seeds.map((s) => new Mulberry32(s));
    const sample = createSampler(r.settings);
    const codes = seeds.map(() => new Int32Array(total));
    const due = previewSchedule(total, r.previewInterval);
    const token = new BigInt64Array(rows).fill(BigInt(a.startTokenId));
    const C = a.codebookSize;
    let previewMs = 0;
    let previewCount = 0;
    let firstPreviewMs: number | null = null;
    let lastFrames: Frame[] | null = null;
    const tStart = performance.now();

    for (let pos = 0; pos < total; pos++) {
      if (request.signal?.aborted) {
        yield { type: "cancelled", tokensDone: pos };
        return;
      }
      const out = await model.decoderStep.run({
        token: new ort.Tensor("int64", token, [rows]),
        position: new ort.Tensor("int64", BigInt64Array.of(BigInt(pos)), [1]),
        past_k: pastK, past_v: pastV, cross_k: crossK, cross_v: crossV, text_mask: textMask,
      });
      pastK.dispose();
      pastV.dispose();
      pastK = out.present_k!;
      pastV = out.present_v!;
      const logits = out.logits!.data as Float32Array;
      const newest: number[] = [];
      for (let i = 0; i < n; i++) {
        const cond = logits.subarray(i * C, (i + 1) * C);
        const mixed = guided ? guide(cond, logits.subarray((n + i) * C, (n + i + 1) * C), r.settings.guidanceScale) : Float64Array.from(cond);
        const code = sample(mixed, rngs[i]!);
        codes[i]![pos] = code;
        newest.push(code);
      }
      for (let i = 0; i < rows; i++) token[i] = BigInt(newest[i % n]!);

      const done = pos + 1;
      const event: ProgressEvent = {
        type: "progress", tokensDone: done, tokensTotal: total,
        tokensPerSecond: (done * n) / ((performance.now() - tStart) / 1000), tokens: newest,
      };
      if (due.has(done)) {
        const tp = performance.now();
        lastFrames = await decodeGrids(model, codes.map((c) => filledGrid(c, done, C)));
        previewMs += performance.now() - tp;
        previewCount++;
        firstPreviewMs ??= performance.now() - t0;
        event.previews = lastFrames;
      }
      if (r.mosaic && model.codePatches) {
        const p = model.manifest.previews.codePatches!.patchSize;
        const g = { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p };
        event.mosaics = codes.map((c) => ({ width: a.grid.width * p, height: a.grid.height * p, data: mosaic(c, done, model.codePatches!, g, C) }));
      }
      yield event;
    }
    pastK.dispose();
    pastV.dispose();
    const tDecode = performance.now();
    // With previews on, the last preview is the whole grid: reuse it rather than decode again.
    const frames = lastFrames ?? (await decodeGrids(model, codes));
    const tEnd = performance.now();
    yield {
      type: "completed",
      images: frames.map((f, i) => ({ ...f, index: i, seed: seeds[i]!, codes: codes[i]! })),
      timings: {
        textMs: tText - t0, decodeMs: tDecode - tStart - previewMs, previewMs, previews: previewCount,
        finalMs: tEnd - tDecode, totalMs: tEnd - t0, firstPreviewMs,
      },
    };
  } catch (e) {
    if (e instanceof MosaicError) throw e;
    throw new MosaicError("INFERENCE_FAILED", `inference failed: ${(e as Error).message}`, { cause: e });
  } finally {
    for (const t of disposables) t.dispose();
  }
}
