import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { MosaicError } from "../src/engine/errors.ts";
import { loadModel, readManifest } from "../src/engine/model.ts";
import { validateManifest } from "../src/engine/model-format.ts";
import { MODEL_DIR, shippedShape, type Json } from "./helpers.ts";

const scratch: string[] = [];
after(() => Promise.all(scratch.map((d) => rm(d, { recursive: true, force: true }))));

/** A copy of the shipped model with model.json edited by `edit`. */
async function variant(edit: (m: Json) => void): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "mosaic-model-"));
  scratch.push(dir);
  await cp(MODEL_DIR, dir, { recursive: true });
  const file = path.join(dir, "model.json");
  const m = JSON.parse(await readFile(file, "utf8"));
  edit(m);
  await writeFile(file, JSON.stringify(m));
  return dir;
}

async function rejects(dir: string, code: string, ...fragments: string[]): Promise<void> {
  await assert.rejects(loadModel(dir, { log: () => {} }), (e: unknown) => {
    assert.ok(e instanceof MosaicError, String(e));
    assert.equal(e.code, code);
    for (const f of fragments) assert.ok(e.message.includes(f), `"${e.message}" should mention "${f}"`);
    return true;
  });
}

test("the shipped model.json validates and loads", async () => {
  const m = validateManifest(JSON.parse(await readFile(path.join(MODEL_DIR, "model.json"), "utf8")));
  assert.equal(m.format, "mosaic-model");
  const model = await loadModel(MODEL_DIR);
  assert.equal(model.provider, "cpu");
  await model.release();
});

test("a folder without model.json is MODEL_NOT_FOUND, naming the file", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "mosaic-empty-"));
  scratch.push(dir);
  await rejects(dir, "MODEL_NOT_FOUND", path.join(dir, "model.json"));
});

test("an unsupported format version is refused", async () => {
  await rejects(await variant((m) => { m.formatVersion = 7; }), "MODEL_INVALID", "model.json", "formatVersion", "7 is not supported");
});

test("a missing graph file is named", async () => {
  await rejects(await variant((m) => { m.graphs.vqDecoder.file = "gone.onnx"; }), "MODEL_INVALID", "gone.onnx", "missing");
});

test("a wrong input name is named", async () => {
  await rejects(await variant((m) => { m.graphs.decoderStep.inputs[2].name = "pastk"; }), "MODEL_INVALID", "decoderStep", "past_k", "missing");
});

/** The decoder step's cache inputs, stacked (past_k) or per layer (past_k_0, ...); the cache axis is the second to last in both. */
const pasts = (m: Json): Json[] => m.graphs.decoderStep.inputs.filter((t: Json) => /^past_[kv]/.test(t.name));
const cacheAxis = (t: Json): number => t.shape.length - 2;

test("a cache length is the sequence's (the plan and the grid) or a name; model.json and the graph must agree on it", async () => {
  const { sequenceLength } = shippedShape();
  await rejects(await variant((m) => { const t = pasts(m)[0]; t.shape[cacheAxis(t)] = 100; }), "MODEL_INVALID", "past_k", "cache length 100", `expected ${sequenceLength}`);
  // The other side of what the shipped graph does: a graph that fixes its cache length (1.0.0) may not be
  // called free in model.json, and one that takes any length (2.0.0) may not be called fixed.
  const shipped = JSON.parse(await readFile(path.join(MODEL_DIR, "model.json"), "utf8"));
  const free = typeof pasts(shipped)[0].shape[cacheAxis(pasts(shipped)[0])] === "string";
  await rejects(await variant((m) => {
    for (const t of pasts(m)) t.shape[cacheAxis(t)] = free ? sequenceLength : "cache_length";
  }), "MODEL_INVALID", "decoder_step.onnx", "past_k");
});

test("an architecture that disagrees with the ONNX file is refused, naming the file", async () => {
  const dir = await variant((m) => {
    const layers = (m.architecture.decoderLayers += 1);
    // A per-layer graph (2.0.0) names each layer's inputs: model.json declares the extra layer's too.
    const step: Json[] = m.graphs.decoderStep.inputs;
    for (const kind of ["past_k", "past_v", "cross_k", "cross_v"]) {
      const last = step.find((t) => t.name === `${kind}_${layers - 2}`);
      if (last) step.splice(step.indexOf(last) + 1, 0, { ...last, name: `${kind}_${layers - 1}` });
    }
    for (const g of Object.values<Json>(m.graphs)) {
      for (const t of [...g.inputs, ...g.outputs]) if (/^(past|new|cross)_[kv]$/.test(t.name)) t.shape[0] += 1;
    }
  });
  await rejects(dir, "MODEL_INVALID", "decoder_step.onnx");
});

test("malformed JSON and wrong types are reported with their path", async () => {
  const dir = await variant(() => {});
  await writeFile(path.join(dir, "model.json"), "{ not json");
  await rejects(dir, "MODEL_INVALID", "not valid JSON");
  await rejects(await variant((m) => { m.architecture.heads = "four"; }), "MODEL_INVALID", "architecture.heads");
  await rejects(await variant((m) => { m.text.normalization = "klingon"; }), "MODEL_INVALID", "text.normalization", "klingon");
  await assert.rejects(readManifest(await variant((m) => { delete m.sampling; })), /sampling must be an object/);
  await assert.rejects(readManifest(await variant((m) => { m.sampling.topK = 100000; })), /model\.json: sampling defaults are not valid: topK must be a whole number/);
});

test("a code-patch file of the wrong size is refused", async () => {
  const dir = await variant(() => {});
  await writeFile(path.join(dir, "code-patches.bin"), new Uint8Array(10));
  await rejects(dir, "MODEL_INVALID", "code-patches.bin", "10 bytes");
});

test("an unavailable execution provider falls back to the CPU with one logged line saying why", async () => {
  // Made unavailable on every machine, so the fallback itself is what runs: CUDA's provider is not
  // in onnxruntime-node's offline install, and WebGPU gets a Vulkan driver list that names no driver
  // (this file runs in its own process; test/webgpu.test.ts covers a working WebGPU adapter).
  process.env.VK_ICD_FILENAMES = "/nonexistent/mosaic-no-vulkan-driver.json";
  for (const provider of ["webgpu", "cuda"] as const) {
    const lines: string[] = [];
    const model = await loadModel(MODEL_DIR, { provider, log: (l) => lines.push(l) });
    try {
      assert.equal(model.provider, "cpu", `${provider} is unavailable here, so the CPU runs`);
      assert.equal(model.deviceOps, null, "no device-resident state on the CPU");
      assert.equal(lines.length, 1, lines.join("\n"));
      assert.match(lines[0]!, new RegExp(`${provider} execution provider is not available .*using the CPU`));
    } finally {
      await model.release();
    }
  }
});
