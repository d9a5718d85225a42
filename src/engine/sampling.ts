/**
 * Choosing the next image token, as small composable pieces (in the manner of transformers.js's
 * logits processors). Everything is float64 in a fixed order so that the Python reference
 * (training/mosaic_train/sampling.py) picks the same token from the same logits and random draw.
 */
import { badInput } from "./errors.ts";
import type { Mulberry32 } from "./random.ts";

export interface SamplingSettings {
  /** Classifier-free guidance ("super-conditioning"): 1 = off. */
  guidanceScale: number;
  /** Keep only the k most likely tokens; 0 = no limit, 1 = greedy. */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p; 1 = no limit. */
  topP: number;
  /** Softmax temperature; 0 = greedy. */
  temperature: number;
}

/** Candidates in descending score order (ties by ascending token id), with their scores. */
export interface Candidates {
  ids: number[];
  scores: number[];
}

export type CandidateFilter = (c: Candidates) => Candidates;

/** `uncond + scale · (cond − uncond)` on one row. */
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

/** Turns scores into unnormalised probabilities exp((s − max) / T). */
export function temperature(t: number): CandidateFilter {
  return (c) => {
    const top = c.scores[0]!;
    return { ids: c.ids, scores: c.scores.map((s) => Math.exp((s - top) / t)) };
  };
}

/** Needs probabilities (after `temperature`). */
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

/** Draws one id in proportion to the (unnormalised) probabilities. */
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

function sum(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** A sampler for one set of settings: guided logits and the image's own stream -> a token. */
export function createSampler(s: SamplingSettings): (logits: Float64Array, rng: Mulberry32) => number {
  if (s.temperature <= 0 || s.topK === 1) return (logits) => argmax(logits);
  const filters = [topK(s.topK), temperature(s.temperature), topP(s.topP)];
  return (logits, rng) => draw(filters.reduce((c, f) => f(c), sortCandidates(logits)), rng);
}

export function validateSampling(s: SamplingSettings, codebookSize: number): void {
  const check = (ok: boolean, msg: string) => {
    if (!ok) throw badInput(msg);
  };
  check(Number.isFinite(s.guidanceScale) && s.guidanceScale >= 0 && s.guidanceScale <= 100,
    `guidanceScale must be between 0 and 100 (got ${s.guidanceScale})`);
  check(Number.isInteger(s.topK) && s.topK >= 0 && s.topK <= codebookSize,
    `topK must be a whole number from 0 (no limit) to ${codebookSize} (got ${s.topK})`);
  check(Number.isFinite(s.topP) && s.topP > 0 && s.topP <= 1, `topP must be in (0, 1] (got ${s.topP})`);
  check(Number.isFinite(s.temperature) && s.temperature >= 0 && s.temperature <= 100,
    `temperature must be between 0 and 100 (got ${s.temperature})`);
}
