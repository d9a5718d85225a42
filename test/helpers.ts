import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import ort from "onnxruntime-node";
import { DEFAULT_MODEL, PACKAGE_ROOT } from "../src/engine/settings.ts";
import { generate, type GenerateRequest, type GenerationEvent } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { imageCodes, planLength, sequenceLength, validateManifest } from "../src/engine/model-format.ts";
import { previewSchedule } from "../src/engine/previews.ts";
import { hostStepInputs } from "../src/engine/step-inputs.ts";

/** The shipped model and its PyTorch reference outputs (written by training/mosaic_train/export.py). */
export const MODEL_DIR = process.env.MOSAIC_TEST_MODEL ?? DEFAULT_MODEL;
export const FIXTURES = process.env.MOSAIC_TEST_FIXTURES ?? path.join(PACKAGE_ROOT, "test", "fixtures", "mosaic-shapes-reference.json");

/**
 * JSON read back in tests (GraphQL responses, model.json being edited). Its shape is what the
 * assertions check at run time, so the tests index into it freely rather than declaring every type.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export interface Reference {
  prompts: string[];
  normalised: string[];
  inputIds: number[][];
  attentionMask: number[][];
  crossKStride: number;
  crossKSample: number[];
  stepTokens: number[][];
  stepLogits: number[][][];
  fullForwardLogits: number[][][];
  greedy: { seeds: number[]; settings: PySettings; codes: number[][] };
  sampled: { seeds: number[]; settings: PySettings; codes: number[][] };
  vq: { codes: number[]; pixelStride: number; pixelSample: number[] };
  /** A model with plan exclusions: seeds whose tokens they change, drawn with them and `without`. */
  excluded?: { prompt: string; seeds: number[]; settings: PySettings; codes: number[][]; without: number[][] };
}

interface PySettings {
  guidance_scale: number;
  top_k: number;
  top_p: number;
  temperature: number;
}

/**
 * The shipped model's sequence, read from its model.json with the engine's own functions, so tests
 * check what the model in MODEL_DIR does rather than 1.0.0's numbers: a model that writes a scene plan
 * before its grid of codes (docs/model-format.md) takes more decoder steps than it has codes.
 */
export interface ShippedShape {
  name: string;
  version: string;
  /** Tokens the decoder writes before the codes (0 without a plan). */
  planLength: number;
  /** Text tokens the model reads (more are truncated). */
  maxTextLength: number;
  /** The model's default sampling (model.json's `sampling`): what a request without settings gets. */
  sampling: { guidanceScale: number; topK: number; topP: number; temperature: number };
  /** Decoder steps per image, the plan's included: tokensDone at the end, tokensTotal, tokensPerImage, "Steps:". */
  sequenceLength: number;
  /** Codes in an image's grid (height × width): what a preview interval counts and a mosaic draws. */
  imageCodes: number;
  /** Codes in a row of the grid: the preview interval a request without one gets. */
  gridWidth: number;
  /** The tokensDone of each VQ preview at this interval, in order: every `interval` codes after the plan, and the last token. */
  previewSteps(interval: number): number[];
  /** The grid of codes in a token sequence as the engine returns or stores it (the plan left out). */
  codesOf(tokens: Int32Array): Int32Array;
}

/** previewSchedule's points in order: the tokensDone of each preview of a sequence of `total` tokens. */
export function previewPoints(total: number, interval: number, plan = 0): number[] {
  return [...previewSchedule(total, interval, plan)].sort((x, y) => x - y);
}

let shape: ShippedShape | undefined;
export function shippedShape(): ShippedShape {
  if (shape) return shape;
  const file = path.join(MODEL_DIR, "model.json");
  const m = validateManifest(JSON.parse(readFileSync(file, "utf8")), file);
  const a = m.architecture;
  const total = sequenceLength(a), plan = planLength(a);
  shape = {
    name: m.name,
    version: m.version,
    planLength: plan,
    maxTextLength: a.maxTextLength,
    sampling: { ...m.sampling },
    sequenceLength: total,
    imageCodes: a.grid.height * a.grid.width,
    gridWidth: a.grid.width,
    previewSteps: (interval) => previewPoints(total, interval, plan),
    codesOf: (tokens) => imageCodes(a, tokens),
  };
  return shape;
}

export function reference(): Reference {
  return JSON.parse(readFileSync(FIXTURES, "utf8")) as Reference;
}

export function settingsOf(s: PySettings) {
  return { guidanceScale: s.guidance_scale, topK: s.top_k, topP: s.top_p, temperature: s.temperature };
}

let shared: Promise<Model> | undefined;
/** One loaded model for a whole test file (loading is the slow part). */
export function sharedModel(): Promise<Model> {
  shared ??= loadModel(MODEL_DIR);
  return shared;
}

export async function collect(model: Model, req: GenerateRequest): Promise<GenerationEvent[]> {
  const events: GenerationEvent[] = [];
  for await (const ev of generate(model, req)) events.push(ev);
  return events;
}

export function finalImages(events: GenerationEvent[]) {
  const done = events.find((e) => e.type === "completed");
  if (!done || done.type !== "completed") throw new Error("no completed event");
  return done.images;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** An int64 tensor [rows, columns] from rows of numbers. */
export function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]!.length]);
}

/** The Python tooling, run as the README does (from training/, on Debian's PyTorch; MOSAIC_PYTHON as scripts/test.sh). */
export function python(args: string[]): Buffer {
  return execFileSync(process.env.MOSAIC_PYTHON ?? "/usr/bin/python3", args, {
    cwd: path.join(PACKAGE_ROOT, "training"), env: { ...process.env, PYTHONPATH: "." }, stdio: ["ignore", "ignore", "pipe"],
  });
}

/**
 * The reference checks' decoder loop for one prompt (two rows: unconditioned and conditioned) on a plain
 * host cache of n positions: each step runs the decoder graph, then writes the step's keys and values
 * at its position, as the engine does. Shared by the engine and converter tests and
 * scripts/smoke-engine.ts, which compare the logits with PyTorch's.
 */
export function referenceDecoder(model: Model, cross: ort.InferenceSession.OnnxValueMapType, mask: ort.Tensor, n: number) {
  const a = model.manifest.architecture;
  const dims = [a.decoderLayers, 2, a.heads, n, a.headDim];
  const pastK = new ort.Tensor("float32", new Float32Array(dims.reduce((x, y) => x * y)), dims);
  const pastV = new ort.Tensor("float32", new Float32Array(dims.reduce((x, y) => x * y)), dims);
  const feeds = hostStepInputs(model.manifest.graphs, { past_k: pastK, past_v: pastV, cross_k: cross.cross_k!, cross_v: cross.cross_v! }, a.decoderLayers);
  return async function step(tokens: readonly [number, number], pos: number): Promise<Float32Array> {
    const out = await model.decoderStep.run({
      token: new ort.Tensor("int64", BigInt64Array.from(tokens.map(BigInt)), [2]),
      position: new ort.Tensor("int64", BigInt64Array.of(BigInt(pos), BigInt(pos)), [2]),
      ...feeds,
      text_mask: mask,
    });
    const k = pastK.data as Float32Array, v = pastV.data as Float32Array;
    const nk = out.new_k!.data as Float32Array, nv = out.new_v!.data as Float32Array;
    // new_k is [L, 2, heads, headDim]; each (layer, row, head) goes to its row of the cache at pos.
    for (let row = 0; row < a.decoderLayers * 2 * a.heads; row++) {
      k.set(nk.subarray(row * a.headDim, (row + 1) * a.headDim), (row * n + pos) * a.headDim);
      v.set(nv.subarray(row * a.headDim, (row + 1) * a.headDim), (row * n + pos) * a.headDim);
    }
    return out.logits!.data as Float32Array;
  };
}
