/**
 * The sampler as it was before sampling avoided the full sort (commit 650dc5f), kept verbatim as the
 * reference: it sorts every id by score at every step. The new sampler must give exactly its tokens
 * (test/sampling.test.ts), and bench/sampling.ts times it against the new one. Not a test file itself.
 */
import type { Mulberry32 } from "../src/engine/random.ts";
import type { SamplingSettings } from "../src/engine/sampling.ts";

interface Candidates {
  ids: number[];
  scores: number[];
}
type CandidateFilter = (c: Candidates) => Candidates;

export function guide(cond: Float32Array, uncond: Float32Array, scale: number): Float64Array {
  const out = new Float64Array(cond.length);
  for (let i = 0; i < cond.length; i++) {
    const u = uncond[i]!;
    out[i] = u + scale * (cond[i]! - u);
  }
  return out;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export function sortCandidates(logits: ArrayLike<number>): Candidates {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return { ids, scores: ids.map((i) => logits[i]!) };
}

export function topK(k: number): CandidateFilter {
  return (c) => (k > 0 && k < c.ids.length ? { ids: c.ids.slice(0, k), scores: c.scores.slice(0, k) } : c);
}

export function temperature(t: number): CandidateFilter {
  return (c) => {
    const top = c.scores[0]!;
    return { ids: c.ids, scores: c.scores.map((s) => Math.exp((s - top) / t)) };
  };
}

export function topP(p: number): CandidateFilter {
  return (c) => {
    if (p >= 1) return c;
    const total = sum(c.scores);
    let kept = 0;
    let cum = 0;
    for (const w of c.scores) {
      kept++;
      cum += w;
      if (cum >= p * total) break;
    }
    return { ids: c.ids.slice(0, kept), scores: c.scores.slice(0, kept) };
  };
}

export function draw(c: Candidates, rng: Mulberry32): number {
  const total = sum(c.scores);
  const u = rng.uniform() * total;
  let cum = 0;
  for (let i = 0; i < c.ids.length; i++) {
    cum += c.scores[i]!;
    if (u < cum) return c.ids[i]!;
  }
  return c.ids[c.ids.length - 1]!;
}

export function sum(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

export function createSampler(s: SamplingSettings): (logits: Float64Array, rng: Mulberry32) => number {
  if (s.temperature <= 0 || s.topK === 1) return (logits) => argmax(logits);
  const filters = [topK(s.topK), temperature(s.temperature), topP(s.topP)];
  return (logits, rng) => draw(filters.reduce((c, f) => f(c), sortCandidates(logits)), rng);
}
