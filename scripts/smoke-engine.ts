/**
 * Loads a model folder with the engine (src/engine/model.ts) and checks it against the PyTorch
 * reference fixtures that training/mosaic_train/export.py writes with it: the prompts' token ids, the
 * text encoder, three decoder steps (cached and uncached), the VQ decoder, and whole greedy and seeded
 * generations token for token. training/tests/test_training.py runs it on the smoke run's export, so
 * `npm test` proves that what the training code exports is a model the engine can serve.
 *
 *   node --import tsx scripts/smoke-engine.ts <model folder> <fixtures.json>
 *
 * Prints one JSON line with what it checked; exits 1 with the first disagreement.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import ort from "onnxruntime-node";
import { generate, type GenerationEvent } from "../src/engine/generate.ts";
import { loadModel } from "../src/engine/model.ts";
import { outputVocabSize, sequenceLength } from "../src/engine/model-format.ts";
// The fixtures' shape and the comparison are the engine tests' own (one definition of each).
import { maxAbsDiff, referenceDecoder, type Reference } from "../test/helpers.ts";

const TOL = 1e-4; // as test/engine.test.ts: ONNX Runtime and PyTorch order float sums differently

function int64(rows: number[][]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]!.length]);
}

const [folder, fixtures] = process.argv.slice(2);
if (!folder || !fixtures) {
  console.error("usage: node --import tsx scripts/smoke-engine.ts <model folder> <fixtures.json>");
  process.exit(2);
}
const ref = JSON.parse(readFileSync(fixtures, "utf8")) as Reference;
const model = await loadModel(folder, { log: () => {} });
try {
  const a = model.manifest.architecture;
  const n = sequenceLength(a);
  ref.prompts.forEach((prompt, i) => {
    const e = model.prompts.encode(prompt);
    assert.equal(e.normalized, ref.normalised[i], `normalised prompt ${i}`);
    assert.deepEqual(e.ids, ref.inputIds[i], `token ids of prompt ${i}`);
    assert.deepEqual(e.mask, ref.attentionMask[i], `mask of prompt ${i}`);
  });

  const mask = int64(ref.attentionMask);
  const cross = await model.textEncoder.run({ input_ids: int64(ref.inputIds), attention_mask: mask });
  const ck = cross.cross_k!.data as Float32Array;
  const crossDiff = maxAbsDiff(ref.crossKSample.map((_, i) => ck[i * ref.crossKStride]!), ref.crossKSample);
  assert.ok(crossDiff < TOL, `text encoder: ${crossDiff}`);

  const step = referenceDecoder(model, cross, mask, n);
  let stepDiff = 0;
  for (let pos = 0; pos < ref.stepTokens.length; pos++) {
    const logits = await step(ref.stepTokens[pos] as [number, number], pos);
    assert.equal(logits.length, 2 * outputVocabSize(a), "logits are [batch, outputVocabSize]");
    stepDiff = Math.max(stepDiff, maxAbsDiff(logits, ref.stepLogits[pos]!.flat()), maxAbsDiff(logits, ref.fullForwardLogits[pos]!.flat()));
    assert.ok(stepDiff < TOL, `decoder step ${pos}: ${stepDiff}`);
  }

  const vq = await model.vqDecoder!.run({
    codes: new ort.Tensor("int64", BigInt64Array.from(ref.vq.codes.map(BigInt)), [1, a.grid.height, a.grid.width]),
  });
  const pixels = vq.pixels!.data as Float32Array;
  const vqDiff = maxAbsDiff(ref.vq.pixelSample.map((_, i) => pixels[i * ref.vq.pixelStride]!), ref.vq.pixelSample);
  assert.ok(vqDiff < TOL, `VQ decoder: ${vqDiff}`);

  let generated = 0;
  const runs: [string, { seeds: number[]; settings: Reference["greedy"]["settings"]; codes: number[][] }, string[]][] = [
    ["greedy", ref.greedy, ref.prompts], ["sampled", ref.sampled, [ref.prompts[0]!, ref.prompts[0]!]],
  ];
  // A model with plan exclusions: the seeds whose tokens they change (export.py).
  if (ref.excluded) runs.push(["excluded", ref.excluded, ref.excluded.seeds.map(() => ref.excluded!.prompt)]);
  for (const [name, r, prompts] of runs) {
    for (let i = 0; i < r.seeds.length; i++) {
      const s = r.settings;
      const events: GenerationEvent[] = [];
      for await (const ev of generate(model, {
        prompt: prompts[i]!, seed: r.seeds[i]!, previewInterval: 64,
        sampling: { guidanceScale: s.guidance_scale, topK: s.top_k, topP: s.top_p, temperature: s.temperature },
      })) events.push(ev);
      const done = events.find((e) => e.type === "completed");
      assert.ok(done && done.type === "completed", `${name} ${i}: no completed event`);
      const [img] = done.images;
      assert.deepEqual(Array.from(img!.codes), r.codes[i], `${name} ${i}: the engine's tokens differ from PyTorch's`);
      assert.equal(img!.data.length, a.imageSize.height * a.imageSize.width * 3, `${name} ${i}: image size`);
      assert.equal(events.filter((e) => e.type === "progress").length, n, `${name} ${i}: one progress event per token`);
      generated++;
    }
  }
  console.log(JSON.stringify({ ok: true, folder, crossDiff, stepDiff, vqDiff, generations: generated, excluded: ref.excluded?.seeds.length ?? 0, tokensEach: n }));
} catch (e) {
  console.error(`smoke-engine: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await model.release();
}
