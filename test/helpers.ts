import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import ort from "onnxruntime-node";
import { DEFAULT_MODEL, PACKAGE_ROOT } from "../src/config.ts";
import { generate, type GenerateRequest, type GenerationEvent } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";

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
}

interface PySettings {
  guidance_scale: number;
  top_k: number;
  top_p: number;
  temperature: number;
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
