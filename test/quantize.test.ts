/**
 * 8-bit weights (training/mosaic_convert/quantize.py): an int8 copy of the shipped model runs in the
 * engine on ONNX Runtime's MatMulNBits, and its outputs stay close to the fp32 model's. What it does
 * to speed and memory at DALL·E-mini size is docs/performance.md; what the rewrite stores is
 * training/tests/test_quantize.py.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import ort from "onnxruntime-node";
import { hostStepInputs } from "../src/engine/step-inputs.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { sequenceLength } from "../src/engine/model-format.ts";
import { collect, finalImages, int64, maxAbsDiff, MODEL_DIR, python, reference, sharedModel } from "./helpers.ts";

let dir: string;
let int8: Model;
let int4: Model;
let fp32: Model;

/** The shipped model quantized by the Python tool, as a user would run it. */
async function quantized(bits: number): Promise<Model> {
  const out = path.join(dir, `int${bits}`);
  python(["-m", "mosaic_convert.quantize", "--model", MODEL_DIR, "--out", out, "--bits", String(bits)]);
  return loadModel(out, { log: () => {} });
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "mosaic-int8-"));
  [int8, int4] = [await quantized(8), await quantized(4)];
  fp32 = await sharedModel();
});

after(async () => {
  await int8?.release();
  await int4?.release();
  rmSync(dir, { recursive: true, force: true });
});

/** The reference's first decoder step on a model: its logits, both rows. */
async function firstStep(model: Model): Promise<Float32Array> {
  const ref = reference();
  const a = model.manifest.architecture;
  const mask = int64(ref.attentionMask);
  const cross = await model.textEncoder.run({ input_ids: int64(ref.inputIds), attention_mask: mask });
  // The cache holds every token the decoder writes: the scene plan (where the model has one) and the grid.
  const dims = [a.decoderLayers, 2, a.heads, sequenceLength(a), a.headDim];
  const zeros = () => new ort.Tensor("float32", new Float32Array(dims.reduce((x, y) => x * y)), dims);
  const out = await model.decoderStep.run({
    token: new ort.Tensor("int64", BigInt64Array.from(ref.stepTokens[0]!.map(BigInt)), [2]),
    position: new ort.Tensor("int64", BigInt64Array.of(0n, 0n), [2]),
    ...hostStepInputs(model.manifest.graphs, { past_k: zeros(), past_v: zeros(), cross_k: cross.cross_k!, cross_v: cross.cross_v! }, model.manifest.architecture.decoderLayers),
    text_mask: mask,
  });
  return out.logits!.data as Float32Array;
}

/** The largest difference of two logit vectors, and the range of the first. */
function spread(a: Float32Array, b: Float32Array): { diff: number; range: number } {
  let lo = Infinity, hi = -Infinity;
  for (const x of a) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
  return { diff: maxAbsDiff(a, b), range: hi - lo };
}

test("the quantized copies are MatMulNBits under their own names; their logits stay close to fp32's", async () => {
  for (const bits of [8, 4]) {
    const manifest = JSON.parse(readFileSync(path.join(dir, `int${bits}`, "model.json"), "utf8"));
    assert.equal(manifest.name, `${fp32.manifest.name}-int${bits}`);
    assert.equal(manifest.training.quantized.weights, `int${bits}`);
  }
  const ref = await firstStep(fp32);
  const [q8, q4] = [spread(ref, await firstStep(int8)), spread(ref, await firstStep(int4))];
  console.log(`first-step logits, largest difference over their range: int8 ${q8.diff / q8.range}, int4 ${q4.diff / q4.range}`);
  // Not the fp32 graphs by other names: the weights really are rounded.
  assert.ok(q8.diff > 1e-5 && q4.diff > q8.diff, `int8 ${q8.diff}, int4 ${q4.diff}`);
  // Measured 0.56% and 5.0% of the range (int8 activations in both: accuracy level 4).
  assert.ok(q8.diff < 0.01 * q8.range, `int8 logits differ by ${q8.diff} over a range of ${q8.range}`);
  assert.ok(q4.diff < 0.08 * q4.range, `int4 logits differ by ${q4.diff} over a range of ${q4.range}`);
});

test("the quantized copies generate through the engine: greedy codes mostly the fp32 model's", async () => {
  const req = { prompt: "a big red circle in the middle on a blue background", count: 2, seed: 3, previewInterval: 64, sampling: { topK: 1 } };
  const f = finalImages(await collect(fp32, req));
  for (const [bits, model] of [[8, int8], [4, int4]] as const) {
    const q = finalImages(await collect(model, req));
    assert.equal(q.length, 2);
    let same = 0, total = 0;
    for (let i = 0; i < q.length; i++) {
      assert.equal(q[i]!.data.length, f[i]!.data.length);
      for (let t = 0; t < q[i]!.codes.length; t++, total++) if (q[i]!.codes[t] === f[i]!.codes[t]) same++;
    }
    console.log(`int${bits} vs fp32 greedy codes: ${same}/${total} equal`);
    assert.ok(same / total > 0.9, `int${bits}: ${same}/${total} greedy codes equal`);
  }
});
