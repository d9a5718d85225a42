/**
 * The model folder's manifest (`model.json`), as documented in docs/model-format.md, and its
 * validation. Every problem names the file and what is wrong, so a user with a broken or foreign
 * folder knows what to fix.
 */
import { MosaicError } from "./errors.ts";
import { validateSampling, type SamplingSettings } from "./sampling.ts";
import { NORMALIZATIONS, type NormalizationName } from "./text.ts";

export const FORMAT = "mosaic-model";
export const FORMAT_VERSION = 1;

export type Dim = number | string;
export type DType = "float32" | "float16" | "int64";

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: Dim[];
}

export interface GraphSpec {
  file: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface Architecture {
  family: "dalle-bart";
  encoderLayers: number;
  decoderLayers: number;
  heads: number;
  modelWidth: number;
  headDim: number;
  feedForwardWidth: number;
  textVocabSize: number;
  maxTextLength: number;
  grid: { height: number; width: number };
  codebookSize: number;
  startTokenId: number;
  imageSize: { height: number; width: number };
  /**
   * A scene plan the decoder writes before the image codes (docs/model-format.md): `length` tokens
   * whose ids come after the codebook; the decoder step's logits then have `outputVocabSize` entries,
   * and the graph itself blocks, at each position, the ids that position may not draw. Absent: the
   * decoder writes the image codes alone. `exclude`: at `position`, the tokens drawn at the positions
   * `tokensAt` may not be drawn again (plan-exclusions.ts).
   */
  plan?: { length: number; outputVocabSize: number; firstTokenId: number; words: string[]; exclude?: PlanExclusion[] };
}

/** At plan position `position`, the tokens already drawn at the positions `tokensAt` may not be drawn. */
export interface PlanExclusion {
  position: number;
  tokensAt: number[];
}

/** Tokens the decoder writes before the image codes (0 without a plan). */
export function planLength(a: Architecture): number {
  return a.plan?.length ?? 0;
}

/** Every token the decoder writes for one image: the plan, then the grid of codes. */
export function sequenceLength(a: Architecture): number {
  return planLength(a) + a.grid.height * a.grid.width;
}

/** The decoder step's logits per row. */
export function outputVocabSize(a: Architecture): number {
  return a.plan?.outputVocabSize ?? a.codebookSize;
}

/** The grid of codes in an image's token sequence (the plan left out). */
export function imageCodes(a: Architecture, tokens: Int32Array): Int32Array {
  return planLength(a) ? tokens.subarray(planLength(a)) : tokens;
}

export type PreviewFill = "most-frequent";

export interface ModelManifest {
  format: typeof FORMAT;
  formatVersion: number;
  name: string;
  version: string;
  description: string;
  architecture: Architecture;
  text: { tokenizer: string; normalization: NormalizationName; padTokenId: number };
  sampling: SamplingSettings;
  previews: { fill: PreviewFill; codePatches?: { file: string; patchSize: number } };
  graphs: { textEncoder: GraphSpec; decoderStep: GraphSpec; vqDecoder: GraphSpec };
  training?: unknown;
}

/** The decoder step's per-layer inputs, in graph order (a per-layer model, `perLayerInputs`). */
export function stepLayerInputs(layers: number): string[] {
  return ["past_k", "past_v", "cross_k", "cross_v"].flatMap((kind) => Array.from({ length: layers }, (_, i) => `${kind}_${i}`));
}

/**
 * Whether the decoder step takes each layer's cache and cross-attention keys/values as inputs of their
 * own (`past_k_0`, …; what the exporters write since 2026-12-01) rather than stacked `past_k`, … (older
 * folders, the shipped 1.0.0). Per-layer inputs are views of the engine's arrays; a stacked input is
 * sliced inside the graph, which ONNX Runtime does by copying all of it every step.
 */
export function perLayerInputs(graphs: { decoderStep: { inputs: { name: string }[] } }): boolean {
  return graphs.decoderStep.inputs.some((i) => i.name === "past_k_0");
}

/** The tensors each graph must have: what the engine feeds and reads (names and ranks). */
export function requiredGraphs(a: Architecture, perLayer = false): Record<keyof ModelManifest["graphs"], { inputs: TensorSpec[]; outputs: TensorSpec[] }> {
  // The cache length may be fixed (the grid's size, checked in validateManifest) or free
  // ("cache_length"): a free one lets a batch pass only the part written so far (cache-growth.ts).
  const cache: Dim[] = [a.decoderLayers, "batch", a.heads, "cache_length", a.headDim];
  const cross: Dim[] = [a.decoderLayers, "batch", a.heads, "text_length", a.headDim];
  const stepKv: TensorSpec[] = perLayer
    ? stepLayerInputs(a.decoderLayers).map((name) => ({ name, dtype: "float32", shape: (name.startsWith("past") ? cache : cross).slice(1) }))
    : [
      { name: "past_k", dtype: "float32", shape: cache },
      { name: "past_v", dtype: "float32", shape: cache },
      { name: "cross_k", dtype: "float32", shape: cross },
      { name: "cross_v", dtype: "float32", shape: cross },
    ];
  const fresh: Dim[] = [a.decoderLayers, "batch", a.heads, 1, a.headDim];
  const text: Dim[] = ["batch", "text_length"];
  return {
    textEncoder: {
      inputs: [{ name: "input_ids", dtype: "int64", shape: text }, { name: "attention_mask", dtype: "int64", shape: text }],
      outputs: [{ name: "cross_k", dtype: "float32", shape: cross }, { name: "cross_v", dtype: "float32", shape: cross }],
    },
    decoderStep: {
      inputs: [
        { name: "token", dtype: "int64", shape: ["batch"] },
        { name: "position", dtype: "int64", shape: ["batch"] },
        ...stepKv,
        { name: "text_mask", dtype: "int64", shape: text },
      ],
      outputs: [
        { name: "logits", dtype: "float32", shape: ["batch", outputVocabSize(a)] },
        { name: "new_k", dtype: "float32", shape: fresh },
        { name: "new_v", dtype: "float32", shape: fresh },
      ],
    },
    vqDecoder: {
      // Rows may be fixed (the grid's height) or free ("rows"): a graph with free rows lets a preview
      // decode only the rows generated so far (vq.ts). Which one a model has is read from model.json.
      inputs: [{ name: "codes", dtype: "int64", shape: ["batch", "rows", a.grid.width] }],
      outputs: [{ name: "pixels", dtype: "float32", shape: ["batch", "height", a.imageSize.width, 3] }],
    },
  };
}

type Json = Record<string, unknown>;

class Checker {
  constructor(private readonly file: string) {}

  fail(path: string, problem: string): never {
    throw new MosaicError("MODEL_INVALID", `${this.file}: ${path} ${problem}`);
  }

  object(v: unknown, path: string): Json {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(path, "must be an object");
    return v as Json;
  }

  string(o: Json, key: string, path: string): string {
    const v = o[key];
    if (typeof v !== "string" || v === "") this.fail(`${path}.${key}`, "must be a non-empty string");
    return v;
  }

  int(o: Json, key: string, path: string, min = 1): number {
    const v = o[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) this.fail(`${path}.${key}`, `must be a whole number ≥ ${min}`);
    return v;
  }

  number(o: Json, key: string, path: string): number {
    const v = o[key];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(`${path}.${key}`, "must be a number");
    return v;
  }
}

export function validateManifest(raw: unknown, file = "model.json"): ModelManifest {
  const c: Checker = new Checker(file);
  const m = c.object(raw, "the manifest");
  if (m.format !== FORMAT) c.fail("format", `must be "${FORMAT}" (got ${JSON.stringify(m.format)})`);
  const version = c.int(m, "formatVersion", "");
  if (version !== FORMAT_VERSION) {
    c.fail("formatVersion", `${version} is not supported: this Mosaic reads format version ${FORMAT_VERSION}`);
  }
  c.string(m, "name", "");
  c.string(m, "version", "");
  if (typeof m.description !== "string") c.fail("description", "must be a string");

  const a = c.object(m.architecture, "architecture");
  if (a.family !== "dalle-bart") c.fail("architecture.family", `must be "dalle-bart" (got ${JSON.stringify(a.family)})`);
  for (const k of ["encoderLayers", "decoderLayers", "heads", "modelWidth", "headDim", "feedForwardWidth", "textVocabSize", "maxTextLength", "codebookSize"]) {
    c.int(a, k, "architecture");
  }
  c.int(a, "startTokenId", "architecture", 0);
  for (const k of ["grid", "imageSize"]) {
    const g = c.object(a[k], `architecture.${k}`);
    c.int(g, "height", `architecture.${k}`);
    c.int(g, "width", `architecture.${k}`);
  }
  if (a.plan !== undefined) {
    const pl = c.object(a.plan, "architecture.plan");
    c.int(pl, "length", "architecture.plan");
    const first = c.int(pl, "firstTokenId", "architecture.plan", 0);
    const out = c.int(pl, "outputVocabSize", "architecture.plan");
    if (!Array.isArray(pl.words) || !pl.words.every((w) => typeof w === "string")) c.fail("architecture.plan.words", "must be a list of strings");
    if (first <= (a.codebookSize as number) || first + (pl.words as string[]).length !== out) {
      c.fail("architecture.plan", "firstTokenId must be above codebookSize and firstTokenId + words must equal outputVocabSize");
    }
    if (pl.exclude !== undefined) {
      const length = pl.length as number;
      const where = "architecture.plan.exclude";
      if (!Array.isArray(pl.exclude)) c.fail(where, "must be a list of { position, tokensAt }");
      (pl.exclude as unknown[]).forEach((e, i) => {
        const x = c.object(e, `${where}[${i}]`);
        const position = c.int(x, "position", `${where}[${i}]`, 0);
        if (position >= length) c.fail(`${where}[${i}].position`, `must be a plan position, below ${length}`);
        const earlier = x.tokensAt;
        if (!Array.isArray(earlier) || !earlier.every((q) => Number.isInteger(q) && q >= 0 && q < position)) {
          c.fail(`${where}[${i}].tokensAt`, "must be a list of plan positions before position");
        }
      });
    }
  }
  const arch = a as unknown as Architecture;
  if (arch.heads * arch.headDim !== arch.modelWidth) c.fail("architecture", "heads × headDim must equal modelWidth");
  if (arch.imageSize.height % arch.grid.height !== 0 || arch.imageSize.width % arch.grid.width !== 0) {
    c.fail("architecture", "imageSize must be a whole multiple of grid");
  }

  const t = c.object(m.text, "text");
  c.string(t, "tokenizer", "text");
  const norm = c.string(t, "normalization", "text");
  if (!(NORMALIZATIONS as readonly string[]).includes(norm)) {
    c.fail("text.normalization", `"${norm}" is not one this Mosaic implements (${NORMALIZATIONS.join(", ")})`);
  }
  c.int(t, "padTokenId", "text", 0);

  const s = c.object(m.sampling, "sampling");
  for (const k of ["guidanceScale", "topP", "temperature"]) c.number(s, k, "sampling");
  c.int(s, "topK", "sampling", 0);
  // The defaults must be settings a request may use, or every request that omits them would fail.
  try {
    validateSampling(s as unknown as SamplingSettings, a.codebookSize as number);
  } catch (e) {
    c.fail("sampling", `defaults are not valid: ${(e as Error).message}`);
  }

  const p = c.object(m.previews, "previews");
  if (p.fill !== "most-frequent") c.fail("previews.fill", `must be "most-frequent" (got ${JSON.stringify(p.fill)})`);
  if (p.codePatches !== undefined) {
    const cp = c.object(p.codePatches, "previews.codePatches");
    c.string(cp, "file", "previews.codePatches");
    c.int(cp, "patchSize", "previews.codePatches");
  }

  const graphs = c.object(m.graphs, "graphs");
  const step = c.object(graphs.decoderStep, "graphs.decoderStep");
  const perLayer = Array.isArray(step.inputs) && perLayerInputs({ decoderStep: { inputs: step.inputs as { name: string }[] } });
  const required = requiredGraphs(arch, perLayer);
  for (const key of Object.keys(required) as (keyof typeof required)[]) {
    const g = c.object(graphs[key], `graphs.${key}`);
    c.string(g, "file", `graphs.${key}`);
    for (const kind of ["inputs", "outputs"] as const) {
      const list = g[kind];
      if (!Array.isArray(list)) c.fail(`graphs.${key}.${kind}`, "must be a list");
      for (const want of required[key][kind]) {
        const got = (list as Json[]).find((x) => x?.name === want.name);
        const path = `graphs.${key}.${kind}[${want.name}]`;
        if (!got) c.fail(path, "is missing");
        if (got.dtype !== want.dtype) c.fail(path, `has dtype ${JSON.stringify(got.dtype)}, expected ${want.dtype}`);
        if (!Array.isArray(got.shape) || !shapesAgree(got.shape as Dim[], want.shape)) {
          c.fail(path, `has shape ${JSON.stringify(got.shape)}, expected ${JSON.stringify(want.shape)} (from the architecture)`);
        }
      }
    }
  }
  const n = sequenceLength(arch);
  for (const want of required.decoderStep.inputs.filter((i) => i.name.startsWith("past_"))) {
    const shape = (step.inputs as Json[]).find((x) => x?.name === want.name)!.shape as Dim[];
    const length = shape[shape.length - 2];
    if (typeof length === "number" && length !== n) {
      c.fail(`graphs.decoderStep.inputs[${want.name}]`, `has cache length ${length}, expected ${n} (the plan and the grid) or a name`);
    }
  }
  return m as unknown as ModelManifest;
}

/** Named (dynamic) axes match any name; fixed sizes must be equal. */
export function shapesAgree(got: Dim[], want: Dim[]): boolean {
  return got.length === want.length && got.every((d, i) => {
    const w = want[i]!;
    return typeof w === "string" ? true : d === w;
  });
}
