/**
 * The DALL·E mini / mega converter, checked structurally: training/mosaic_convert/parity.py builds a
 * parameter tree with the published names and layouts at small sizes, converts it with the real
 * converter and records what a straightforward PyTorch DALL·E mini computes. Mosaic's ONNX graphs
 * and engine must agree (the published files themselves are not available to us).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import ort from "onnxruntime-node";
import { grownLength, type CacheGrowth } from "../src/engine/cache-growth.ts";
import type { DeviceOps } from "../src/engine/batch-state.ts";
import { DecodeBatch } from "../src/engine/batch.ts";
import type { Member } from "../src/engine/member.ts";
import type { GenerationEvent } from "../src/engine/generate.ts";
import { perLayerInputs } from "../src/engine/model-format.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { mostFrequent } from "../src/engine/previews.ts";
import { collect, finalImages, int64, maxAbsDiff, python, referenceDecoder } from "./helpers.ts";

const TOL = 1e-3; // the bound, fp32; observed differences are ~1e-6

interface Parity {
  prompt: string;
  normalised: string;
  inputIds: number[][];
  crossK: number[];
  crossV: number[];
  stepTokens: number[];
  stepLogits: number[][][];
  vqCodes: number[][];
  pixels: number[];
  stripRows: number;
  stripPixels: number[];
  greedy: { guidanceScale: number; codes: number[] };
  long: { prompt: string; normalised: string; tokens: number; inputIds: number[]; greedyCodes: number[] };
}

let dir: string;
let ref: Parity;
let model: Model;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "mosaic-parity-"));
  python(["-m", "mosaic_convert.parity", "--out", dir]);
  ref = JSON.parse(readFileSync(path.join(dir, "reference.json"), "utf8")) as Parity;
  model = await loadModel(path.join(dir, "model"), { log: () => {} });
});

after(async () => {
  await model?.release();
  rmSync(dir, { recursive: true, force: true });
});

test("the converted model declares dalle-mini's text pipeline and the published sizes", () => {
  const m = model.manifest;
  assert.equal(m.text.normalization, "dalle-mini");
  assert.equal(m.text.padTokenId, 1);
  assert.equal(m.architecture.encoderLayers, 3);
  assert.equal(m.architecture.decoderLayers, 2);
  assert.equal(m.architecture.codebookSize, 64, "image rows beyond the codebook are cut, as min-dalle samples");
  assert.equal(m.architecture.startTokenId, 64);
  assert.deepEqual(m.architecture.imageSize, { height: 16, width: 16 });
});

test("BART's byte-level BPE from vocab.json + merges.txt gives the reference token ids", () => {
  const e = model.prompts.encode(ref.prompt);
  assert.equal(e.normalized, ref.normalised);
  const cond = ref.inputIds[1]!;
  assert.deepEqual(e.ids, cond);
  assert.deepEqual(e.mask, cond.map((id) => (id === 1 ? 0 : 1)));
  assert.deepEqual(model.prompts.encodeUnconditional().ids, ref.inputIds[0], "the empty prompt is <s></s>, not normalised");
});

test("ONNX text encoder, decoder step and VQGAN match the PyTorch DALL·E mini within 1e-3", async () => {
  const a = model.manifest.architecture;
  const mask = int64(ref.inputIds.map((row) => row.map((id) => (id === 1 ? 0 : 1))));
  const cross = await model.textEncoder.run({ input_ids: int64(ref.inputIds), attention_mask: mask });
  assert.ok(maxAbsDiff(cross.cross_k!.data as Float32Array, ref.crossK) < TOL, "cross-attention keys");
  assert.ok(maxAbsDiff(cross.cross_v!.data as Float32Array, ref.crossV) < TOL, "cross-attention values");

  const step = referenceDecoder(model, cross, mask, a.grid.height * a.grid.width);
  for (let pos = 0; pos < ref.stepTokens.length; pos++) {
    const diff = maxAbsDiff(await step([ref.stepTokens[pos]!, ref.stepTokens[pos]!], pos), ref.stepLogits[pos]!.flat());
    assert.ok(diff < TOL, `decoder step ${pos}: ${diff}`);
  }

  const out = await model.vqDecoder!.run({
    codes: new ort.Tensor("int64", BigInt64Array.from(ref.vqCodes.flat().map(BigInt)), [2, a.grid.height, a.grid.width]),
  });
  const diff = maxAbsDiff(out.pixels!.data as Float32Array, ref.pixels);
  assert.ok(diff < TOL, `VQGAN pixels: ${diff}`);
  assert.ok(ref.pixels.some((p) => p > 0 && p < 1), "the reference pixels are not all clipped");

  // The rows are free (model.json says "rows"): a preview decodes the first rows of a grid alone.
  assert.equal(model.manifest.graphs.vqDecoder.inputs[0]!.shape[1], "rows");
  const rows = ref.stripRows, w = a.grid.width;
  const strip = await model.vqDecoder!.run({
    codes: new ort.Tensor("int64", BigInt64Array.from(ref.vqCodes.flatMap((c) => c.slice(0, rows * w)).map(BigInt)), [2, rows, w]),
  });
  assert.deepEqual(strip.pixels!.dims, [2, rows * (a.imageSize.height / a.grid.height), a.imageSize.width, 3]);
  const stripDiff = maxAbsDiff(strip.pixels!.data as Float32Array, ref.stripPixels);
  assert.ok(stripDiff < TOL, `VQGAN strip pixels: ${stripDiff}`);
});

test("the engine's greedy generation with guidance equals the PyTorch reference loop", async () => {
  const events = await collect(model, {
    prompt: ref.prompt, seed: 1, previewInterval: 0,
    sampling: { guidanceScale: ref.greedy.guidanceScale, topK: 1, topP: 1, temperature: 1 },
  });
  const [img] = finalImages(events);
  assert.deepEqual(Array.from(img!.codes), ref.greedy.codes);
});

/** `m` with a decoder step that records the cache length (of layer 0) it is given at each run. */
function recordingLengths(m: Model): { spied: Model; lengths: number[] } {
  const lengths: number[] = [];
  const step = m.decoderStep;
  const spy = Object.create(step) as ort.InferenceSession;
  spy.run = ((feeds: Record<string, ort.Tensor>) => {
    lengths.push(feeds.past_k_0!.dims[2]!);
    return step.run(feeds);
  }) as ort.InferenceSession["run"];
  return { spied: { ...m, decoderStep: spy }, lengths };
}

/**
 * Generations joining one batch at different steps on `m`, each image's codes, while recording the
 * cache length of every decoder step. `growth` as DecodeBatch takes it (null: the full cache).
 */
async function joinedRun(m: Model, growth: CacheGrowth | null): Promise<{ codes: number[][][]; lengths: number[] }> {
  const { spied, lengths } = recordingLengths(m);
  const batch = new DecodeBatch(spied, { cacheGrowth: growth });
  const sampling = { topK: 8, topP: 0.95, temperature: 1 };
  const requests = [
    { prompt: ref.prompt, count: 2, seed: 5, sampling, previewInterval: 4 },
    { prompt: "a small white square", count: 1, seed: 6, sampling: { ...sampling, guidanceScale: 1 }, previewInterval: 0 },
    { prompt: "green triangle", count: 3, seed: 7, sampling, previewInterval: 8 },
  ];
  const joinAt = [0, 3, 9];
  const members: Member[] = [];
  const events: GenerationEvent[][] = requests.map(() => []);
  for (let i = 0; members.length < requests.length || batch.active; i++) {
    requests.forEach((r, j) => {
      if (joinAt[j] === i) members[j] = batch.admit(r);
    });
    await batch.step();
    members.forEach((mem, j) => events[j]!.push(...mem.drain()));
  }
  return { codes: events.map((ev) => finalImages(ev).map((img) => Array.from(img.codes))), lengths };
}

test("per-layer inputs with a free cache length: the cache grows as rows advance, and the codes are a full cache's", async () => {
  const a = model.manifest.architecture;
  const n = a.grid.height * a.grid.width;
  assert.ok(perLayerInputs(model.manifest.graphs), "the converter writes each layer's cache as an input of its own");
  assert.ok(model.manifest.graphs.decoderStep.inputs.every((i) => !i.name.startsWith("past_") || i.shape[2] === "cache_length"));
  const full = await joinedRun(model, null);
  assert.deepEqual([...new Set(full.lengths)], [n]);
  const grown = await joinedRun(model, { first: 2 });
  assert.deepEqual(grown.codes, full.codes, "the same codes whatever cache length the steps were given");
  // Rows joining at 3 and 9 start at position 0 beside rows further on: the length follows the furthest.
  assert.deepEqual([...new Set(grown.lengths)], [2, 4, 8, 16].filter((l) => l <= n));
  assert.ok(grown.lengths.filter((l) => l < n).length >= 8, `steps with a short cache: ${grown.lengths.join(",")}`);
  // The GPU path: the state on the device graphs, each layer sliced there (run here on the CPU).
  const onDevice = await loadModel(path.join(dir, "model"), { state: "device", log: () => {} });
  try {
    assert.ok(onDevice.deviceOps);
    // Every run of the device graphs (by name) and of the decoder step.
    const runs: Record<string, number> = {};
    const counted = (s: ort.InferenceSession, name: string): ort.InferenceSession => {
      const spy = Object.create(s) as ort.InferenceSession;
      spy.run = ((feeds: Record<string, ort.Tensor>) => ((runs[name] = (runs[name] ?? 0) + 1), s.run(feeds))) as ort.InferenceSession["run"];
      return spy;
    };
    const ops = Object.fromEntries(Object.entries(onDevice.deviceOps).map(([k, s]) => [k, s && counted(s, k)])) as unknown as DeviceOps;
    const device = await joinedRun({ ...onDevice, deviceOps: ops, decoderStep: counted(onDevice.decoderStep, "step") }, null);
    assert.deepEqual(device.codes, full.codes, "device state gives the host's codes");
    // One device run per step besides the step itself (the write, which also slices every layer), whatever
    // L is; the others only when the rows change: 3 joins and 3 leaves, at most 14 runs each.
    const { step, cacheWrite, ...rest } = runs;
    assert.equal(cacheWrite, step, JSON.stringify(runs));
    assert.ok(Object.values(rest).reduce((a, b) => a + b, 0) <= 6 * 14, JSON.stringify(runs));
    // The cache's slices come with the write: a split runs only for the 4 stacked tensors when the rows change.
    assert.ok((rest.splitLayers ?? 0) <= 6 * 4, JSON.stringify(runs));
  } finally {
    await onDevice.release();
  }
});

test("a warm-up runs the decoder step once at each cache length, and the batch then generates as a fresh one", async () => {
  const { spied, lengths } = recordingLengths(model);
  const batch = new DecodeBatch(spied, { cacheGrowth: { first: 2 } });
  const abort = new AbortController();
  const warm = batch.admit({ prompt: "", count: 2, seed: 0, previewInterval: 0, signal: abort.signal });
  await batch.step();
  await batch.warmCacheLengths();
  assert.deepEqual(lengths, [2, 2, 4, 8, 16], "one step, then one at each length");
  abort.abort();
  while (batch.active) await batch.step();
  warm.drain();
  const request = { prompt: ref.prompt, count: 2, seed: 5, sampling: { topK: 8, topP: 0.95, temperature: 1 }, previewInterval: 0 };
  const after = batch.admit(request);
  const events: GenerationEvent[] = [];
  while (batch.active) {
    await batch.step();
    events.push(...after.drain());
  }
  assert.deepEqual(finalImages(events).map((i) => Array.from(i.codes)), finalImages(await collect(model, request)).map((i) => Array.from(i.codes)));
});

test("the cache length doubles from its first size to what the furthest row needs, never past the grid", () => {
  const g = { first: 32 };
  assert.equal(grownLength(0, 1, 256, g), 32);
  assert.equal(grownLength(32, 32, 256, g), 32);
  assert.equal(grownLength(32, 33, 256, g), 64);
  assert.equal(grownLength(32, 129, 256, g), 256);
  assert.equal(grownLength(0, 1, 16, g), 16, "a grid smaller than the first size starts full");
  assert.equal(grownLength(64, 200, 200, g), 200);
});

test("a preview decodes only the rows generated so far; the rest of the frame is the fill code's colour", async () => {
  const a = model.manifest.architecture;
  const w = a.grid.width, cell = a.imageSize.height / a.grid.height, rowBytes = a.imageSize.width * 3;
  const events = await collect(model, {
    prompt: ref.prompt, seed: 1, previewInterval: w,
    sampling: { guidanceScale: ref.greedy.guidanceScale, topK: 1, topP: 1, temperature: 1 },
  });
  const codes = finalImages(events)[0]!.codes;
  const bytes = (pixels: Float32Array) => Uint8Array.from(pixels, (p) => Math.round(Math.min(1, Math.max(0, p)) * 255));
  const seen: number[] = [];
  for (const e of events) {
    if (e.type !== "progress" || !e.previews) continue;
    const done = e.previewTokens!, frame = e.previews[0]!;
    seen.push(done);
    assert.deepEqual([frame.width, frame.height], [a.imageSize.width, a.imageSize.height]);
    const rows = Math.ceil(done / w);
    const fill = mostFrequent(codes, done, a.codebookSize);
    const grid = Array.from(codes.slice(0, rows * w), (c, i) => (i < done ? c : fill));
    const out = await model.vqDecoder!.run({ codes: new ort.Tensor("int64", BigInt64Array.from(grid.map(BigInt)), [1, rows, w]) });
    const want = bytes(out.pixels!.data as Float32Array);
    assert.deepEqual(frame.data.subarray(0, want.length), want, `preview after ${done} tokens: the decoded rows`);
    if (rows === a.grid.height) continue;
    const sum = [0, 0, 0];
    let n = 0;
    grid.forEach((c, k) => {
      if (c !== fill) return;
      for (let y = Math.floor(k / w) * cell; y < (Math.floor(k / w) + 1) * cell; y++) {
        for (let x = (k % w) * cell; x < (k % w + 1) * cell; x++) {
          for (let ch = 0; ch < 3; ch++) sum[ch] = sum[ch]! + want[(y * a.imageSize.width + x) * 3 + ch]!;
          n++;
        }
      }
    });
    const colour = sum.map((v) => Math.round(v / n));
    const rest = frame.data.subarray(want.length);
    assert.equal(rest.length, (a.imageSize.height - rows * cell) * rowBytes);
    for (let p = 0; p < rest.length; p += 3) {
      assert.deepEqual([rest[p], rest[p + 1], rest[p + 2]], colour, `preview after ${done} tokens: the fill below`);
    }
  }
  assert.ok(seen.includes(w), `the first preview (${w} tokens: 1 of ${a.grid.height} rows) arrived: ${seen}`);
  assert.equal(seen.at(-1), a.grid.height * w, "the last preview is the whole grid");
});

test("a prompt longer than the text encoder reads is cut as the reference cuts it, keeping </s>", async () => {
  const e = model.prompts.encode(ref.long.prompt);
  assert.equal(e.normalized, ref.long.normalised);
  assert.equal(e.truncatedTokens, ref.long.tokens - model.manifest.architecture.maxTextLength);
  assert.ok(e.truncatedTokens > 0);
  assert.deepEqual(e.ids, ref.long.inputIds);
  assert.equal(e.ids[e.ids.length - 1], 2, "</s> last");
  const events = await collect(model, {
    prompt: ref.long.prompt, seed: 1, previewInterval: 0,
    sampling: { guidanceScale: ref.greedy.guidanceScale, topK: 1, topP: 1, temperature: 1 },
  });
  assert.deepEqual(Array.from(finalImages(events)[0]!.codes), ref.long.greedyCodes);
});

test("the converter refuses files that are not min-dalle's, naming the file", () => {
  const bad = path.join(dir, "bad");
  assert.throws(
    () => python(["-m", "mosaic_convert.convert", "--bart", bad, "--vqgan", path.join(bad, "detoker.pt"), "--out", path.join(dir, "x")]),
    (e: Error & { stderr?: Buffer }) => /encoder\.pt: not found/.test(String(e.stderr)),
  );
});
