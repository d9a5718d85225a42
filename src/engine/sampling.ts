/**
 * Choosing the next image token, as small composable pieces (in the manner of transformers.js's
 * logits processors). Everything is float64 in a fixed order so that the Python reference
 * (training/mosaic_train/sampling.py) picks the same token from the same logits and random draw.
 *
 * The reference is defined on the whole codebook sorted by score, but only its head matters, so a
 * sampler never sorts ids by score over the whole codebook: a top-k limit is met by selection in one
 * pass (`selectTopK`), and without one only the scores that can still change a floating-point sum are
 * sorted, as plain numbers (`sortTopScores`). Guidance, temperature, top-p and the draw then do the
 * reference's arithmetic on the same values in the same order, so the token is bit-for-bit the
 * reference's. A sampler reuses its typed arrays: nothing is allocated per step.
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

/**
 * The candidates still in play: the first `length` entries, best first (descending score, ties by
 * ascending token id, as the reference sorts). Made once per sampler and refilled at every step.
 * Scores are assumed free of NaN: the reference's order is undefined with NaN (guidance of an infinite
 * logit), and there the sampler merely promises some token.
 */
export class Candidates {
  /** Token ids, when `idsKnown` (`selectTopK`, which also uses it as its buffer); `sortTopScores`
   * leaves them unknown and `idAt` finds only the one drawn. */
  readonly ids: Int32Array;
  /** Scores (guided logits), descending. */
  readonly scores: Float64Array;
  /** Unnormalised probabilities exp((s − max) / T), filled by `temperature`. */
  readonly weights: Float64Array;
  length = 0;
  idsKnown = false;

  constructor(readonly capacity: number) {
    this.ids = new Int32Array(capacity);
    this.scores = new Float64Array(capacity);
    this.weights = new Float64Array(capacity);
  }
}

/** Works on the candidates in place. */
export type CandidateFilter = (c: Candidates) => void;

/** `uncond + scale · (cond − uncond)` on one row. (A sampler guides into a row of its own.) */
export function guide(cond: Float32Array, uncond: Float32Array, scale: number): Float64Array {
  const out = new Float64Array(cond.length);
  guideInto(out, cond, uncond, scale);
  return out;
}

/** `guide` into `out`, for ids [0, to). */
function guideInto(
  out: Float64Array, cond: ArrayLike<number>, uncond: ArrayLike<number>, scale: number, to = out.length,
): void {
  for (let i = 0; i < to; i++) {
    const u = uncond[i]!;
    out[i] = u + scale * (cond[i]! - u);
  }
}

/** Guidance applied while a row is read (`selectTopK`): the same arithmetic as `guide`. */
export interface Guidance {
  cond: ArrayLike<number>;
  uncond: ArrayLike<number>;
  scale: number;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** a ranks above b in the reference's order: a higher score, or the same score and a lower id. `===`
 * ties ±0 and equal infinities, as the reference's `logits[b] − logits[a] || a − b` comparator does. */
function better(s: Float64Array, a: number, b: number): boolean {
  const x = s[a]!;
  const y = s[b]!;
  return x > y || (x === y && a < b);
}

/**
 * The k best candidates in order, without sorting the codebook. One pass compares each score with the
 * k-th best so far (a number held in a local), so nearly every id costs one comparison; the few that
 * beat it are buffered in `c.ids`, and when the buffer fills, a quickselect keeps its k best and
 * raises the bar. Finally the k are sorted. O(n) plus about O(k log(n/k)) for the survivors.
 * `c.capacity` is the buffer: more than k (unless the codebook is smaller), best a few times k.
 *
 * The loops sit in small functions of their own, each returning straight after its loop: V8 compiles
 * a long loop on the fly (on-stack replacement) during the first call, and code after the loop that
 * had never run by then sent that compiled code back to the interpreter on every later call (a "soft"
 * deoptimisation, which keeps the code), making sampling several times slower. Kept apart, the scan
 * (`nextAbove`) also compiles to a tighter loop than when inlined with the rest.
 */
export function selectTopK(logits: Float64Array, k: number, c: Candidates, guidance: Guidance | null = null): void {
  const buf = c.ids;
  let m = Math.min(k, logits.length);
  if (buf.length <= m && m < logits.length) throw new RangeError(`selectTopK: a buffer of ${buf.length} cannot select ${k}`);
  if (guidance) guideInto(logits, guidance.cond, guidance.uncond, guidance.scale, m);
  firstIds(buf, m);
  let bar = lowest(logits, buf, m);
  // Ids come in ascending order, so a later score equal to the bar ranks below the k ahead of it:
  // only a strictly higher one can enter.
  for (let i = scan(logits, m, bar, guidance); i >= 0; i = scan(logits, i + 1, bar, guidance)) {
    buf[m++] = i;
    if (m === buf.length) {
      selectBest(logits, buf, m, k);
      m = k;
      bar = logits[buf[k - 1]!]!;
    }
  }
  if (m > k) selectBest(logits, buf, m, k);
  m = Math.min(m, k);
  sortIds(logits, buf, 0, m);
  gather(logits, buf, c.scores, m);
  c.length = m;
  c.idsKnown = true;
}

function firstIds(buf: Int32Array, m: number): void {
  for (let i = 0; i < m; i++) buf[i] = i;
}

/** The lowest score among ids[0, m): with m = k, the k-th best so far. */
function lowest(s: Float64Array, ids: Int32Array, m: number): number {
  let low = Infinity;
  for (let j = 0; j < m; j++) if (s[ids[j]!]! < low) low = s[ids[j]!]!;
  return low;
}

/**
 * The first id from `from` on whose score beats `bar`, or -1. With guidance, `s` is filled as it is
 * read (up to the id returned, or to the end): the row is then read once, rather than written by one
 * pass and read back by the next (at 16,384 codes, 12% of the sampler's time at top-k 256 and 30% at
 * top-k 16 in bench/sampling.ts).
 */
function scan(s: Float64Array, from: number, bar: number, g: Guidance | null): number {
  return g ? guideUntilAbove(s, g.cond, g.uncond, g.scale, from, bar) : nextAbove(s, from, bar);
}

function nextAbove(s: Float64Array, from: number, bar: number): number {
  for (let i = from; i < s.length; i++) if (s[i]! > bar) return i;
  return -1;
}

function guideUntilAbove(
  s: Float64Array, cond: ArrayLike<number>, uncond: ArrayLike<number>, scale: number, from: number, bar: number,
): number {
  for (let i = from; i < s.length; i++) {
    const u = uncond[i]!;
    const x = u + scale * (cond[i]! - u);
    s[i] = x;
    if (x > bar) return i;
  }
  return -1;
}

/** Median of three ids, by `better`. */
function pivotOf(s: Float64Array, a: number, b: number, c: number): number {
  if (better(s, a, b)) return better(s, b, c) ? b : better(s, a, c) ? c : a;
  return better(s, a, c) ? a : better(s, b, c) ? c : b;
}

/**
 * Hoare partition of ids[lo, hi) around the id p, which is in the range (so the scans stop). Returns j:
 * ids[lo, j] rank at or above p, the rest at or below it; where p itself ends at j + 1, that is its
 * place in the final order. (A number, not a pair, so that nothing is allocated.)
 */
function partition(s: Float64Array, ids: Int32Array, lo: number, hi: number, p: number): number {
  let i = lo;
  let j = hi - 1;
  while (i <= j) {
    while (better(s, ids[i]!, p)) i++;
    while (better(s, p, ids[j]!)) j--;
    if (i <= j) {
      const x = ids[i]!;
      ids[i++] = ids[j]!;
      ids[j--] = x;
    }
  }
  return j;
}

/** Quickselect: ids[0, k) become the k best of ids[0, m), ids[k − 1] the k-th best. */
function selectBest(s: Float64Array, ids: Int32Array, m: number, k: number): void {
  let lo = 0;
  let hi = m;
  const target = k - 1;
  while (hi - lo > 1) {
    const p = pivotOf(s, ids[lo]!, ids[(lo + hi) >>> 1]!, ids[hi - 1]!);
    const j = partition(s, ids, lo, hi, p);
    const right = ids[j + 1] === p ? j + 2 : j + 1;
    if (target <= j) hi = j + 1;
    else if (target >= right) lo = right;
    else return; // the target is p's place
  }
}

/** Sorts ids[lo, hi) best first: quicksort, insertion sort for short ranges. */
function sortIds(s: Float64Array, ids: Int32Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const p = pivotOf(s, ids[lo]!, ids[(lo + hi) >>> 1]!, ids[hi - 1]!);
    const j = partition(s, ids, lo, hi, p);
    const right = ids[j + 1] === p ? j + 2 : j + 1;
    if (j + 1 - lo < hi - right) {
      sortIds(s, ids, lo, j + 1);
      lo = right;
    } else {
      sortIds(s, ids, right, hi);
      hi = j + 1;
    }
  }
  for (let i = lo + 1; i < hi; i++) {
    const x = ids[i]!;
    let j = i - 1;
    while (j >= lo && better(s, x, ids[j]!)) {
      ids[j + 1] = ids[j]!;
      j--;
    }
    ids[j + 1] = x;
  }
}

function gather(s: Float64Array, ids: Int32Array, out: Float64Array, size: number): void {
  for (let j = 0; j < size; j++) out[j] = s[ids[j]!]!;
}

/**
 * Weights below 2^-53 cannot change a running sum that is already ≥ 1: they are under half an ulp of
 * it, so the sum rounds back to itself. In descending order the first weight is exp(0) = 1 (when the
 * best score is finite), so such weights, which come last, leave every sum unchanged: the reference's
 * totals are the totals without them, bit for bit. Nor can they be kept or drawn: the running sum
 * reaches its total before them, and top-p stops once it reaches p·total ≤ total, the draw once it
 * passes u = uniform·total < total. exp(x) < 2^-53 ≈ 1.1e-16 for any x < −36.8; −40 leaves room for
 * exp's rounding.
 */
const NEGLIGIBLE = -40;

/**
 * The best min(k, n) scores in order, without their ids (`idAt` finds the one drawn): for a top-k
 * limit too large for selection to pay, or none. Sorting plain numbers beats sorting ids by score, and
 * scores whose weight exp((s − max) / T) is negligible (see NEGLIGIBLE) are dropped first, since they
 * come after all others and change no sum; that keeps everything within 40·T of the best. When the
 * best is not finite the weights are NaN, the reference draws its last candidate, and nothing may be
 * dropped.
 */
export function sortTopScores(logits: Float64Array, k: number, t: number, c: Candidates): void {
  const top = logits[argmax(logits)]!;
  let m = logits.length;
  if (Number.isFinite(top)) m = notNegligible(logits, top, t, c.scores);
  else c.scores.set(logits);
  sortDescending(c.scores, 0, m);
  c.length = Math.min(k, m);
  c.idsKnown = false;
}

/** Copies the scores within 40·T of the best into `out`; returns how many. */
function notNegligible(logits: Float64Array, top: number, t: number, out: Float64Array): number {
  let m = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i]!;
    if (!((x - top) / t < NEGLIGIBLE)) out[m++] = x;
  }
  return m;
}

/**
 * Sorts xs[lo, hi) into descending order in place: quicksort (median of three, Hoare partition, which
 * splits runs of equal scores evenly), insertion sort for short ranges, recursing only into the smaller
 * part. Ours rather than Float64Array#sort so that a prefix sorts without allocating a subarray view;
 * it runs within 10% of the native sort. (Its quadratic worst case needs input crafted against the
 * median of three; a model's logits are not.)
 */
function sortDescending(xs: Float64Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const a = xs[lo]!;
    const b = xs[(lo + hi) >>> 1]!;
    const c = xs[hi - 1]!;
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    let i = lo;
    let j = hi - 1;
    while (i <= j) {
      while (xs[i]! > pivot) i++;
      while (xs[j]! < pivot) j--;
      if (i <= j) {
        const x = xs[i]!;
        xs[i++] = xs[j]!;
        xs[j--] = x;
      }
    }
    if (j + 1 - lo < hi - i) {
      sortDescending(xs, lo, j + 1);
      lo = i;
    } else {
      sortDescending(xs, i, hi);
      hi = j + 1;
    }
  }
  for (let i = lo + 1; i < hi; i++) {
    const x = xs[i]!;
    let j = i - 1;
    while (j >= lo && xs[j]! < x) {
      xs[j + 1] = xs[j]!;
      j--;
    }
    xs[j + 1] = x;
  }
}

/** The token id of candidate `rank`: known after `selectTopK`, else the (rank − first of its score)-th
 * id with that score, counting up, as the reference breaks ties. */
export function idAt(c: Candidates, logits: Float64Array, rank: number): number {
  if (c.idsKnown) return c.ids[rank]!;
  const v = c.scores[rank]!;
  let first = rank;
  while (first > 0 && same(c.scores[first - 1]!, v)) first--;
  const id = nthWith(logits, v, rank - first);
  if (id < 0) throw new Error("idAt: score not in the logits"); // every sorted score is a copy of one
  return id;
}

/** The id of the (skip + 1)-th score equal to v, counting up; -1 if none. */
function nthWith(logits: Float64Array, v: number, skip: number): number {
  for (let i = 0; i < logits.length; i++) if (same(logits[i]!, v) && skip-- === 0) return i;
  return -1;
}

/** Equal scores as the reference's order ties them (±0, equal infinities); NaN matches NaN, so that
 * even a NaN (guidance of an infinite logit, where the reference's order is undefined) finds an id. */
function same(a: number, b: number): boolean {
  return a === b || (a !== a && b !== b);
}

/** Turns scores into unnormalised probabilities exp((s − max) / T). */
export function temperature(t: number): CandidateFilter {
  return (c) => exponentiate(c.scores, c.weights, c.length, t);
}

function exponentiate(scores: Float64Array, weights: Float64Array, length: number, t: number): void {
  const top = scores[0]!;
  for (let j = 0; j < length; j++) weights[j] = Math.exp((scores[j]! - top) / t);
}

/** Keeps the smallest prefix whose probability reaches p. Needs weights (after `temperature`). */
export function topP(p: number): CandidateFilter {
  return (c) => {
    if (p < 1) c.length = reaching(c.weights, c.length, p * sum(c.weights, c.length));
  };
}

/** How many weights, from the first, it takes for their running sum to reach `target`. */
function reaching(weights: Float64Array, length: number, target: number): number {
  let cum = 0;
  for (let j = 0; j < length; j++) {
    cum += weights[j]!;
    if (cum >= target) return j + 1;
  }
  return length;
}

/** Draws one candidate in proportion to its weight; returns its rank (see `idAt`). */
export function draw(c: Candidates, rng: Mulberry32): number {
  const total = sum(c.weights, c.length);
  return firstPast(c.weights, c.length, rng.uniform() * total);
}

/** The first rank whose running sum passes u; the last if none does (NaN weights). */
function firstPast(weights: Float64Array, length: number, u: number): number {
  let cum = 0;
  for (let j = 0; j < length; j++) {
    cum += weights[j]!;
    if (u < cum) return j;
  }
  return length - 1;
}

/** In index order, as the reference sums. */
function sum(xs: Float64Array, length: number): number {
  let s = 0;
  for (let j = 0; j < length; j++) s += xs[j]!;
  return s;
}

/**
 * One image's logits and its own stream -> a token. With `uncond`, the logits are guided at the
 * settings' scale (as `guide` does) into the sampler's reused row; without, `cond` is the row.
 */
export type Sampler = (cond: Float32Array | Float64Array, rng: Mulberry32, uncond?: Float32Array | null) => number;

/**
 * Up to this many candidates (relative to the codebook) selecting them is cheaper than sorting the
 * scores, measured in bench/sampling.ts; either path gives the same token. Selection buffers this
 * many times k ids (fewer, more frequent trims cost more; the bench measured 2–8).
 */
const SELECT_FRACTION = 1 / 2;
const SELECT_BUFFER = 4;

/** Greedy settings take the most likely token and no draw from the image's random stream. */
export function isGreedy(s: SamplingSettings): boolean {
  return s.temperature <= 0 || s.topK === 1;
}

/** A sampler for one set of settings. Its buffers are sized by the first row it sees. */
export function createSampler(s: SamplingSettings): Sampler {
  const greedy = isGreedy(s);
  const applyTemperature = temperature(s.temperature);
  const applyTopP = topP(s.topP);
  let row = new Float64Array(0);
  let c = new Candidates(0);
  const guidance: Guidance = { cond: row, uncond: row, scale: s.guidanceScale };
  return (cond, rng, uncond) => {
    const n = cond.length;
    if (row.length !== n) row = new Float64Array(n);
    const k = s.topK > 0 && s.topK < n ? s.topK : n;
    const select = !greedy && k <= n * SELECT_FRACTION;
    if (select && uncond) {
      // Guided as the selection reads the row (see `scan`).
      guidance.cond = cond;
      guidance.uncond = uncond;
      selectTopK(row, k, (c = candidates(c, Math.min(n, SELECT_BUFFER * k))), guidance);
      guidance.cond = guidance.uncond = row; // not to hold the batch's logits until the next step
    } else {
      if (uncond) guideInto(row, cond, uncond, s.guidanceScale);
      else row.set(cond);
      if (greedy) return argmax(row);
      if (select) selectTopK(row, k, (c = candidates(c, Math.min(n, SELECT_BUFFER * k))));
      else sortTopScores(row, k, s.temperature, (c = candidates(c, n)));
    }
    applyTemperature(c);
    applyTopP(c);
    return idAt(c, row, draw(c, rng));
  };
}

/** `c` if it has this capacity, else new candidates that do (only when the codebook size changes). */
function candidates(c: Candidates, capacity: number): Candidates {
  return c.capacity === capacity ? c : new Candidates(capacity);
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
