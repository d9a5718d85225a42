import assert from "node:assert/strict";
import { test } from "node:test";
import { MosaicError } from "../src/engine/errors.ts";
import { imageSeed, Mulberry32 } from "../src/engine/random.ts";
import {
  argmax, Candidates, createSampler, guide, selectTopK, sortTopScores, temperature, topP, validateSampling,
  type SamplingSettings,
} from "../src/engine/sampling.ts";
import * as reference from "./reference-sampler.ts";


function randomLogits(rng: Mulberry32, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => (rng.uniform() - 0.5) * 10);
}

/** Rows as the decoder gives them (float32), in shapes that stress the order: ties, ±0, infinities, spread.
 * Guidance turns an infinite logit into NaN (−∞ + s·(c + ∞)), where the reference's order is undefined,
 * so the shapes with infinities are sampled unguided. */
const shapes: Record<string, (rng: Mulberry32, n: number) => Float32Array> = {
  uniform: (rng, n) => Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * 10),
  // Five levels: most scores tie with many others; rounding small negatives gives -0 beside +0.
  ties: (rng, n) => Float32Array.from({ length: n }, () => Math.round((rng.uniform() - 0.5) * 4)),
  // Spread over 200 nats: at low temperatures most weights underflow, and the sorted path drops them.
  wide: (rng, n) => Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * 200),
  minusInf: (rng, n) => Float32Array.from({ length: n }, () => (rng.uniform() < 0.4 ? -Infinity : (rng.uniform() - 0.5) * 10)),
  // One tied maximum and a few +Infinity: the weights are NaN and the reference draws its last candidate.
  plusInf: (rng, n) => Float32Array.from({ length: n }, () => (rng.uniform() < 0.01 ? Infinity : Math.round(rng.uniform() * 3))),
  allMinusInf: (_, n) => new Float32Array(n).fill(-Infinity),
};

/** Both samplers on the same rows with twin streams: the same tokens, and the streams end level. */
function assertSameTokens(settings: SamplingSettings, cond: Float32Array, uncond: Float32Array, draws: number, label: string): void {
  if (/Inf/.test(label)) settings = { ...settings, guidanceScale: 1 };
  const guided = settings.guidanceScale !== 1;
  const old = reference.createSampler(settings);
  const sample = createSampler(settings);
  const a = new Mulberry32(1234);
  const b = new Mulberry32(1234);
  const mixed = guided ? reference.guide(cond, uncond, settings.guidanceScale) : Float64Array.from(cond);
  for (let d = 0; d < draws; d++) {
    const want = old(mixed, a);
    assert.equal(sample(cond, b, guided ? uncond : null), want, `${label}, draw ${d} (guided row)`);
  }
  assert.equal(b.nextU32(), a.nextU32(), `${label}: the same number of draws`);
  // Logits already guided, as callers that guide themselves pass them.
  const c = new Mulberry32(1234);
  const again = createSampler(settings);
  const d0 = new Mulberry32(1234);
  assert.equal(again(mixed, c), old(mixed, d0), `${label} (float64 row)`);
}

test("token for token the previous sampler's choice, 256 codes, every setting", () => {
  const rng = new Mulberry32(7);
  const n = 256;
  let cases = 0;
  for (const [shape, make] of Object.entries(shapes)) {
    for (let trial = 0; trial < 2; trial++) {
      const cond = make(rng, n);
      const uncond = make(rng, n);
      // 128 and 129 straddle the sampler's switch from selection to sorting scores (k ≤ n/2).
      for (const topK of [0, 1, 2, 16, 100, 128, 129, 255, 256])
        for (const topP of [1, 0.95, 0.5, 0.01])
          for (const t of [0, 0.05, 0.7, 1, 3])
            for (const guidanceScale of [1, 3, 0, Math.E]) {
              const settings = { guidanceScale, topK, topP, temperature: t };
              assertSameTokens(settings, cond, uncond, 4, `${shape} #${trial} ${JSON.stringify(settings)}`);
              cases++;
            }
    }
  }
  assert.ok(cases > 5000);
});

test("token for token the previous sampler's choice, 16,384 codes", () => {
  const rng = new Mulberry32(8);
  const n = 16384;
  for (const [shape, make] of Object.entries(shapes)) {
    const cond = make(rng, n);
    const uncond = make(rng, n);
    for (const topK of [0, 16, 256, 8192, 8193, n]) {
      // A sample of the other settings (the full grid runs at 256 codes): each topK gets several.
      for (let i = 0; i < 3; i++) {
        const settings = {
          topK,
          topP: [1, 0.9, 0.3][(i + topK) % 3]!,
          temperature: [1, 0.1, 2.5][i]!,
          guidanceScale: [3, 1, Math.E][(i + shape.length) % 3]!,
        };
        assertSameTokens(settings, cond, uncond, 1, `${shape} ${JSON.stringify(settings)}`);
      }
    }
  }
});

/**
 * Tokens alone would not show a sum taken in another order: that moves the total by an ulp, which
 * changes the token only when the draw lands within an ulp of a boundary. So the sums themselves must
 * be the reference's, bit for bit, on both paths (selection, and the sorted scores that drop negligible
 * weights), and so must top-p's cut.
 */
test("top-p's total, its cut and the draw's total are bit for bit the reference's, on both paths", () => {
  const rng = new Mulberry32(11);
  const bits = (x: number) => (Object.is(x, -0) ? "-0" : String(x));
  for (const n of [256, 16384]) {
    for (const [shape, make] of Object.entries(shapes)) {
      const row = Float64Array.from(make(rng, n));
      const want = reference.sortCandidates(row);
      for (const topK of n === 256 ? [0, 2, 16, 100, 256] : [0, 50, 8193]) {
        for (const t of [0.05, 0.7, 1, 3]) {
          for (const p of [1, 0.9, 0.3]) {
            const ref = reference.temperature(t)(reference.topK(topK)(want));
            const refCut = reference.topP(p)(ref);
            const k = topK > 0 && topK < n ? topK : n;
            for (const path of ["select", "sorted"] as const) {
              const c = new Candidates(n);
              if (path === "select") selectTopK(row, k, c);
              else sortTopScores(row, k, t, c);
              temperature(t)(c);
              const label = `${n} ${shape} topK ${topK} T ${t} p ${p}, ${path}`;
              assert.equal(bits(reference.sum(Array.from(c.weights.subarray(0, c.length)))), bits(reference.sum(ref.scores)), `${label}: total`);
              if (p < 1) {
                topP(p)(c);
                assert.equal(c.length, refCut.ids.length, `${label}: top-p's cut`);
              } else {
                // No cut: the sorted path may have dropped only weights too small to change a sum.
                assert.ok(c.length <= ref.ids.length && ref.scores.slice(c.length).every((w) => w < 2 ** -53), `${label}: dropped`);
              }
              assert.equal(bits(reference.sum(Array.from(c.weights.subarray(0, c.length)))), bits(reference.sum(refCut.scores)), `${label}: the draw's total`);
            }
          }
        }
      }
    }
  }
});

/** A stream that yields chosen numbers, to aim draws at the boundaries between candidates. */
function aimed(values: number[]): Mulberry32 {
  let i = 0;
  return { uniform: () => values[i++]!, nextU32: () => { throw new Error("not used"); } } as unknown as Mulberry32;
}

test("draws aimed within an ulp of every boundary pick the reference's token", () => {
  const rng = new Mulberry32(12);
  for (const n of [256, 16384]) {
    for (const shape of ["uniform", "ties", "wide"]) {
      const cond = shapes[shape]!(rng, n);
      const uncond = shapes[shape]!(rng, n);
      for (const settings of [
        { guidanceScale: 1, topK: 16, topP: 1, temperature: 1 },
        { guidanceScale: 1, topK: 0, topP: 0.9, temperature: 0.7 },
        { guidanceScale: 1, topK: n, topP: 1, temperature: 2 },
        { guidanceScale: 1, topK: 100, topP: 0.5, temperature: 1 },
        // Guided: a row guided with other arithmetic would move the weights by ulps, and so the boundaries.
        { guidanceScale: Math.E, topK: 16, topP: 1, temperature: 1 },
        { guidanceScale: Math.E, topK: 0, topP: 0.9, temperature: 1 },
      ]) {
        // The reference's boundaries: u = uniform · total crosses a candidate where u = cum_j.
        const guided = settings.guidanceScale !== 1;
        const row = guided ? reference.guide(cond, uncond, settings.guidanceScale) : Float64Array.from(cond);
        let c = reference.temperature(settings.temperature)(reference.topK(settings.topK)(reference.sortCandidates(row)));
        c = reference.topP(settings.topP)(c);
        const total = reference.sum(c.scores);
        const us: number[] = [];
        let cum = 0;
        for (let j = 0; j < Math.min(c.scores.length, 40); j++) {
          cum += c.scores[j]!;
          const at = cum / total;
          for (const u of [at, at * (1 - 2 ** -53), at * (1 + 2 ** -52), at * (1 - 2 ** -52)]) if (u < 1) us.push(u);
        }
        // The reference sampler is draw(its filters(sortCandidates(row))): its candidates c, drawn from.
        const sample = createSampler(settings);
        const a = aimed(us);
        const b = aimed(us);
        for (let i = 0; i < us.length; i++) {
          assert.equal(sample(cond, b, guided ? uncond : null), reference.draw(c, a), `${n} ${shape} ${JSON.stringify(settings)} u ${us[i]}`);
        }
      }
    }
  }
});

test("guidance applied as selection reads the row is guide()'s, bit for bit", () => {
  const rng = new Mulberry32(13);
  const bits = (xs: ArrayLike<number>) => Array.from(xs, (x) => (Object.is(x, -0) ? "-0" : String(x)));
  for (const n of [256, 16384]) {
    const cond = shapes.uniform!(rng, n);
    const uncond = shapes.uniform!(rng, n);
    // With float32 rows and a scale of few bits (3, 7.25) guidance is exact in float64 whatever the
    // order of operations; 1/3 and e are not, so only they tell a different arithmetic apart.
    for (const scale of [0, 3, 7.25, 1 / 3, Math.E]) {
      const want = reference.guide(cond, uncond, scale);
      for (const k of [2, 16, 100]) {
        const row = new Float64Array(n);
        const c = new Candidates(4 * k);
        selectTopK(row, k, c, { cond, uncond, scale });
        assert.deepEqual(bits(row), bits(want), `${n} scale ${scale} k ${k}: the row, filled to the end`);
        assert.deepEqual(Array.from(c.ids.subarray(0, k)), reference.sortCandidates(want).ids.slice(0, k));
      }
    }
  }
});

test("a sampler reused over many rows and both row sizes stays exact", () => {
  const rng = new Mulberry32(9);
  for (const settings of [{ guidanceScale: 3, topK: 0, topP: 0.9, temperature: 1 }, { guidanceScale: 3, topK: 50, topP: 1, temperature: 0.7 }]) {
    const sample = createSampler(settings);
    const old = reference.createSampler(settings);
    const a = new Mulberry32(5);
    const b = new Mulberry32(5);
    for (const n of [256, 256, 1024, 256, 1024]) {
      const cond = shapes.uniform!(rng, n);
      const uncond = shapes.uniform!(rng, n);
      assert.equal(sample(cond, b, uncond), old(reference.guide(cond, uncond, 3), a), JSON.stringify({ n, settings }));
    }
  }
});

test("both paths order candidates as the reference does, ties and infinities included", () => {
  const rng = new Mulberry32(10);
  for (const [shape, make] of Object.entries(shapes)) {
    for (const n of [3, 17, 256, 5000]) {
      const logits = Float64Array.from(make(rng, n));
      const want = reference.sortCandidates(logits);
      const c = new Candidates(n);
      // A temperature so high that only −∞ (weight 0) is dropped, unless the best score is not finite.
      sortTopScores(logits, n, 1e9, c);
      const m = Number.isFinite(want.scores[0]) ? want.scores.filter((x) => x > -Infinity).length : n;
      assert.equal(c.length, m, shape);
      // ±0 tie, so their signs may come in either order (the weights are the same).
      const plusZero = (xs: ArrayLike<number>) => Array.from(xs, (x) => x + 0);
      assert.deepEqual(plusZero(c.scores.subarray(0, m)), plusZero(want.scores.slice(0, m)), `${shape} ${n}`);
      const all = new Candidates(n);
      selectTopK(logits, n, all);
      assert.deepEqual(Array.from(all.ids.subarray(0, n)), want.ids, `${shape} ${n}: selecting all`);
      if (n > 4) assert.throws(() => selectTopK(logits, 4, new Candidates(4)), RangeError, "a buffer of k has no room");
      // The smallest buffer selection can work in (k + 1) trims it at nearly every entrant.
      for (const k of [1, 2, 16, 100]) {
        if (k >= n) continue;
        for (const capacity of [k + 1, 4 * k]) {
          const c = new Candidates(Math.min(n, capacity));
          selectTopK(logits, k, c);
          assert.equal(c.length, k);
          assert.deepEqual(Array.from(c.ids.subarray(0, k)), want.ids.slice(0, k), `${shape} ${n}: top ${k}, buffer ${capacity}`);
          assert.deepEqual(Array.from(c.scores.subarray(0, k)), want.scores.slice(0, k));
        }
      }
    }
  }
});

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
    const allowed = new Set(reference.sortCandidates(logits).ids.slice(0, k));
    const sample = createSampler({ guidanceScale: 1, topK: k, topP: 1, temperature: 1.5 });
    for (let i = 0; i < 40; i++) assert.ok(allowed.has(sample(logits, rng)));
  }
});

test("top-p keeps the smallest prefix whose probability reaches p", () => {
  const probs = [0.5, 0.3, 0.15, 0.05];
  const logits = Float64Array.from(probs, Math.log);
  const kept = (p: number) => {
    const c = new Candidates(4);
    selectTopK(logits, 4, c);
    temperature(1)(c);
    topP(p)(c);
    return Array.from(c.ids.subarray(0, c.length));
  };
  assert.deepEqual(kept(0.79), [0, 1]);
  assert.deepEqual(kept(0.81), [0, 1, 2]);
  assert.deepEqual(kept(0.49), [0]);
  assert.deepEqual(kept(1), [0, 1, 2, 3]);
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
  const greedy = createSampler({ guidanceScale: 3, topK: 1, topP: 1, temperature: 1 });
  assert.equal(greedy(cond, new Mulberry32(1), uncond), 0, "the sampler guides at the settings' scale");
});

test("top-k 0 can pick any token; bad settings are refused with a coded error", () => {
  const sample = createSampler({ guidanceScale: 1, topK: 0, topP: 1, temperature: 1 });
  const rng = new Mulberry32(2);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(sample(Float64Array.of(1, 2, 3), rng));
  assert.equal(seen.size, 3);
  for (const bad of [{ topK: -1 }, { topK: 1.5 }, { topP: 0 }, { topP: 1.2 }, { temperature: -1 }, { guidanceScale: Number.NaN }]) {
    assert.throws(() => validateSampling({ guidanceScale: 3, topK: 0, topP: 1, temperature: 1, ...bad }, 256),
      (e: unknown) => e instanceof MosaicError && e.code === "BAD_INPUT");
  }
});
