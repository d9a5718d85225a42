/**
 * A model folder, loaded once: manifest, tokenizer, the three ONNX sessions and the code patches.
 * Sessions are reused by every generation.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type ort from "onnxruntime-node";
import { MosaicError } from "./errors.ts";
import { perLayerInputs, requiredGraphs, shapesAgree, validateManifest, type GraphSpec, type ModelManifest } from "./model-format.ts";
import { openSession, type Logger, type ProviderName } from "./providers.ts";
import { PromptEncoder } from "./text.ts";
import type { DeviceOps } from "./batch-state.ts";
import { cacheWriteLayersGraph, layerNames, splitLayersGraph } from "./ops/layer-graphs.ts";

export interface LoadOptions {
  provider?: ProviderName;
  log?: Logger;
  /**
   * Where a batch keeps its cache: "auto" (default) keeps it on the GPU with WebGPU and in CPU
   * memory otherwise; "device" forces the device-state graphs (tests run them on the CPU).
   */
  state?: "auto" | "host" | "device";
  /**
   * Open the VQ decoder too (default). The engine thread on the CPU leaves it to its preview thread,
   * which decodes the final images as well: one copy of the VQGAN in memory, not two (at DALL·E-mini
   * size 47 M parameters, with ONNX Runtime's packed copy beside them).
   */
  vqDecoder?: boolean;
}

/** What an API process needs of a model: no ONNX sessions. */
export interface ModelInfo {
  folder: string;
  manifest: ModelManifest;
  prompts: PromptEncoder;
  /** uint8 [codebook, patch, patch, 3], or null when the folder has none. */
  codePatches: Uint8Array | null;
}

export interface Model extends ModelInfo {
  textEncoder: ort.InferenceSession;
  decoderStep: ort.InferenceSession;
  /** Null when loaded without it (`vqDecoder: false`): images are then decoded elsewhere. */
  vqDecoder: ort.InferenceSession | null;
  /** The provider actually in use (after any fallback). */
  provider: ProviderName;
  /** Set when batches keep their state on the device (see batch-state.ts). */
  deviceOps: DeviceOps | null;
  release(): Promise<void>;
}

async function mustExist(file: string, what: string): Promise<void> {
  try {
    await stat(file);
  } catch {
    throw new MosaicError("MODEL_INVALID", `${file}: missing (${what} named in model.json)`);
  }
}

export async function readManifest(folder: string): Promise<ModelManifest> {
  const file = path.join(folder, "model.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new MosaicError("MODEL_NOT_FOUND", `${file}: not found; --model / MOSAIC_MODEL must name a model folder`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MosaicError("MODEL_INVALID", `${file}: not valid JSON (${(e as Error).message})`);
  }
  return validateManifest(raw, file);
}

/** The session's real inputs and outputs must be what model.json (and so the engine) expects. */
function checkSession(session: ort.InferenceSession, spec: GraphSpec, required: { inputs: { name: string }[]; outputs: { name: string }[] }, file: string): void {
  const sides = [
    ["input", session.inputMetadata, spec.inputs, required.inputs],
    ["output", session.outputMetadata, spec.outputs, required.outputs],
  ] as const;
  for (const [kind, metas, declared, needed] of sides) {
    for (const want of needed) {
      const meta = metas.find((m) => m.name === want.name);
      if (!meta) throw new MosaicError("MODEL_INVALID", `${file}: has no ${kind} named "${want.name}" (it has ${metas.map((m) => m.name).join(", ")})`);
      const decl = declared.find((d) => d.name === want.name)!;
      if (!meta.isTensor) throw new MosaicError("MODEL_INVALID", `${file}: ${kind} "${want.name}" is not a tensor`);
      if (meta.type !== decl.dtype) {
        throw new MosaicError("MODEL_INVALID", `${file}: ${kind} "${want.name}" is ${meta.type}, model.json says ${decl.dtype}`);
      }
      // A fixed size where model.json names a free axis is a mismatch too: the engine would feed other sizes.
      const fixedWhereFree = meta.shape.some((d, i) => typeof d === "number" && typeof decl.shape[i] === "string");
      if (meta.shape.length > 0 && (!shapesAgree([...meta.shape], decl.shape) || fixedWhereFree)) {
        throw new MosaicError("MODEL_INVALID",
          `${file}: ${kind} "${want.name}" has shape ${JSON.stringify(meta.shape)}, model.json says ${JSON.stringify(decl.shape)}`);
      }
    }
  }
}

export async function loadModelInfo(folder: string): Promise<ModelInfo> {
  const manifest = await readManifest(folder);
  const a = manifest.architecture;
  const tokenizerPath = path.join(folder, manifest.text.tokenizer);
  await mustExist(tokenizerPath, "the tokenizer");
  let codePatches: Uint8Array | null = null;
  const cp = manifest.previews.codePatches;
  if (cp) {
    const file = path.join(folder, cp.file);
    await mustExist(file, "the code patches");
    const bytes = new Uint8Array(await readFile(file));
    const expected = a.codebookSize * cp.patchSize * cp.patchSize * 3;
    if (bytes.length !== expected) {
      throw new MosaicError("MODEL_INVALID", `${file}: ${bytes.length} bytes, expected ${expected} (codebook × patch² × RGB)`);
    }
    codePatches = bytes;
  }
  const prompts = await PromptEncoder.load(tokenizerPath, manifest.text.normalization, a.maxTextLength, manifest.text.padTokenId);
  return { folder, manifest, prompts, codePatches };
}

const OPS_DIR = fileURLToPath(new URL("./ops/", import.meta.url));

/** The VQ decoder alone, for a thread that only decodes previews (the rest of the model stays out of its memory). */
export interface VqDecoderOnly {
  manifest: ModelManifest;
  vqDecoder: ort.InferenceSession;
  provider: ProviderName;
  release(): Promise<void>;
}

export async function loadVqDecoder(folder: string, options: LoadOptions & { threads?: number } = {}): Promise<VqDecoderOnly> {
  const info = await loadModelInfo(folder);
  const spec = info.manifest.graphs.vqDecoder;
  const file = path.join(folder, spec.file);
  await mustExist(file, "a graph");
  const o = await openSession({ path: file, provider: options.provider ?? "cpu", threads: options.threads }, options.log ?? ((line: string) => console.error(line)));
  checkSession(o.session, spec, requiredGraphs(info.manifest.architecture).vqDecoder, file);
  return { manifest: info.manifest, vqDecoder: o.session, provider: o.provider, release: () => o.session.release() };
}

export async function loadModel(folder: string, options: LoadOptions = {}): Promise<Model> {
  const log = options.log ?? ((line: string) => console.error(line));
  const info = await loadModelInfo(folder);
  const g = info.manifest.graphs;
  for (const spec of [g.textEncoder, g.decoderStep, g.vqDecoder]) await mustExist(path.join(folder, spec.file), "a graph");
  const requested = options.provider ?? "cpu";
  const withVq = options.vqDecoder ?? true;
  const first = await openSessions(info, requested, options.state ?? "auto", withVq, log);
  if (first.consistent) return first.model;
  // A session fell back after others had opened on the provider: device tensors from one would meet
  // a CPU session, so everything goes to the CPU.
  await first.model.release();
  log(`mosaic: not every graph could run on ${requested}; running the whole model on the CPU`);
  return (await openSessions(info, "cpu", options.state === "device" ? "device" : "host", withVq, () => {})).model;
}

async function openSessions(info: ModelInfo, requested: ProviderName, state: NonNullable<LoadOptions["state"]>, withVq: boolean, log: Logger): Promise<{ model: Model; consistent: boolean }> {
  const required = requiredGraphs(info.manifest.architecture, perLayerInputs(info.manifest.graphs));
  const g = info.manifest.graphs;
  let provider = requested;
  const used: ProviderName[] = [];
  const opened: ort.InferenceSession[] = [];
  /** `file`: a graph's path, or the bytes of one built here (named for errors by `name`). */
  const open = async (file: string | Uint8Array, deviceOutputs: string[], name = String(file)) => {
    let o;
    try {
      o = await openSession({ path: file, provider, deviceOutputs }, log);
    } catch (e) {
      await Promise.all(opened.map((s) => s.release()));
      throw new MosaicError("MODEL_INVALID", `${name}: ONNX Runtime cannot load it: ${(e as Error).message}`, { cause: e });
    }
    // One fallback line is enough: later sessions go straight to the provider that worked.
    provider = o.provider;
    used.push(o.provider);
    opened.push(o.session);
    return o.session;
  };
  const graph = async (spec: GraphSpec, key: keyof typeof required, deviceOutputs: string[] = []) => {
    const file = path.join(info.folder, spec.file);
    const session = await open(file, deviceOutputs);
    checkSession(session, spec, required[key], file);
    return session;
  };
  // Decided again after each session: a provider that fell back to the CPU keeps state on the host.
  const onDevice = () => state === "device" || (state === "auto" && provider === "webgpu");
  const decoderStep = await graph(g.decoderStep, "decoderStep", onDevice() ? ["new_k", "new_v"] : []);
  const textEncoder = await graph(g.textEncoder, "textEncoder", onDevice() ? ["cross_k", "cross_v"] : []);
  const vqDecoder = withVq ? await graph(g.vqDecoder, "vqDecoder") : null;
  const op = (name: string, outputs: string[]) => open(path.join(OPS_DIR, `${name}.onnx`), outputs);
  const L = info.manifest.architecture.decoderLayers;
  const perLayer = perLayerInputs(g);
  const deviceOps: DeviceOps | null = onDevice()
    ? {
      // A per-layer step's write also slices every layer of the result, in the same run.
      cacheWrite: perLayer
        ? await open(cacheWriteLayersGraph(L), ["present_k", "present_v", ...layerNames("present_k_", L), ...layerNames("present_v_", L)], `cache-write-layers-${L}`)
        : await op("cache-write", ["present_k", "present_v"]),
      gatherRows: await op("gather-rows", ["y"]),
      concatRows: await op("concat-rows", ["y"]),
      zeros: await op("zeros", ["y"]),
      splitLayers: perLayer ? await open(splitLayersGraph(L), layerNames("y_", L), `split-layers-${L}`) : null,
    }
    : null;
  const model: Model = {
    ...info, textEncoder, decoderStep, vqDecoder, provider, deviceOps,
    async release() {
      await Promise.all(opened.map((s) => s.release()));
    },
  };
  return { model, consistent: used.every((p) => p === used[0]) };
}
