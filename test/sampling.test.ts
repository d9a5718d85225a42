import assert from "node:assert/strict";
import { test } from "node:test";
import { MosaicError } from "../src/engine/errors.ts";
import { imageSeed, Mulberry32 } from "../src/engine/random.ts";
import { argmax, createSampler, guide, sortCandidates, temperature, topK, topP, validateSampling } from "../src/engine/sampling.ts";

function randomLogits(rng: Mulberry32, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => (rng.uniform() - 0.5) * 10);
}

test("mulberry32 gives the same numbers as the Python reference", () => {
  const r = new Mulberry32(42);
  assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32()], [2581720956, 1925393290, 3661312704]);
  assert.equal(imageSeed(2 ** 31 - 1, 1), 0, "image seeds wrap at 2^31");
});

test("top-k never picks outside the k most likely tokens", () => {
  const rng = new Mulberry32(1);
  for (let trial = 0; trial < 50; trial++) {
    const logits = randomLogits(rng, 64);
    const k = 1 + (trial % 10);
    const allowed = new Set(sortCandidates(logits).ids.slice(0, k));
    const sample = createSampler({ guidanceScale: 1, topK: k, topP: 1, temperature: 1.5 });
    for (let i = 0; i < 40; i++) assert.ok(allowed.has(sample(logits, rng)));
  }
});

test("top-p keeps the smallest prefix whose probability reaches p", () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const logits = probs.map(Math.log);
  const c = temperature(1)(sortCandidates(logits));
  assert.deepEqual(topP(0.79)(c).ids, [0, 1]);
  assert.deepEqual(topP(0.81)(c).ids, [0, 1, 2]);
  assert.deepEqual(topP(0.49)(c).ids, [0]);
  assert.deepEqual(topP(1)(c).ids, [0, 1, 2, 3]);
});

test("sampling frequencies follow the probabilities", () => {
  const logits = [Math.log(0.7), Math.log(0.2), Math.log(0.1)];
  const sample = createSampler({ guidanceScale: 1, topK: 0, topP: 1, temperature: 1 });
  const rng = new Mulberry32(9);
  const counts = [0, 0, 0];
  for (let i = 0; i < 20000; i++) counts[sample(Float64Array.from(logits), rng)]!++;
  assert.ok(Math.abs(counts[0]! / 20000 - 0.7) < 0.02, String(counts));
  assert.ok(Math.abs(counts[2]! / 20000 - 0.1) < 0.02, String(counts));
});

test("temperature towards 0 equals greedy", () => {
  const rng = new Mulberry32(3);
  for (let trial = 0; trial < 30; trial++) {
    const logits = randomLogits(rng, 128);
    const cold = createSampler({ guidanceScale: 1, topK: 0, topP: 1, temperature: 1e-4 });
    const zero = createSampler({ guidanceScale: 1, topK: 0, topP: 1, temperature: 0 });
    assert.equal(cold(logits, rng), argmax(logits));
    assert.equal(zero(logits, rng), argmax(logits));
  }
});

test("guidance is uncond + scale * (cond - uncond)", () => {
  const cond = Float32Array.of(1, 2, 3);
  const uncond = Float32Array.of(0.5, 2, 4);
  assert.deepEqual(Array.from(guide(cond, uncond, 3)), [0.5 + 3 * 0.5, 2, 4 + 3 * -1]);
  assert.deepEqual(Array.from(guide(cond, uncond, 1)), [1, 2, 3], "scale 1 is the conditional row");
  assert.deepEqual(Array.from(guide(cond, uncond, 0)), [0.5, 2, 4], "scale 0 is the unconditional row");
});

test("topK(0) keeps everything; bad settings are refused with a coded error", () => {
  assert.equal(topK(0)(sortCandidates([1, 2, 3])).ids.length, 3);
  for (const bad of [{ topK: -1 }, { topK: 1.5 }, { topP: 0 }, { topP: 1.2 }, { temperature: -1 }, { guidanceScale: Number.NaN }]) {
    assert.throws(() => validateSampling({ guidanceScale: 3, topK: 0, topP: 1, temperature: 1, ...bad }, 256),
      (e: unknown) => e instanceof MosaicError && e.code === "BAD_INPUT");
  }
});
