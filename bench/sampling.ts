/**
 * Sampling micro-benchmark (not a test): milliseconds per image per step to choose a token from one
 * guided row of 16,384 codes, the previous sampler (a sort of the whole codebook, kept in
 * test/reference-sampler.ts as the tests' reference) against the current one, side by side in one run.
 * Both are given what the batch has after a decoder step: a conditional and an unconditional float32
 * row. Every token is checked to be the same.
 *   npm run bench:sampling [-- --runs 7] [--codes 16384] [--guidance 3] [--temperature 1] [--clock cpu|wall]
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { Mulberry32 } from "../src/engine/random.ts";
import { Candidates, createSampler, selectTopK, sortTopScores } from "../src/engine/sampling.ts";
import * as previous from "../test/reference-sampler.ts";
import { stats } from "./common.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "7" },
    codes: { type: "string", default: "16384" },
    guidance: { type: "string", default: "3" },
    temperature: { type: "string", default: "1" },
    clock: { type: "string", default: "cpu" },
  },
});
const runs = Number(values.runs);
const n = Number(values.codes);
const guidanceScale = Number(values.guidance);
const temperature = Number(values.temperature);


/** Logit-like rows: conditional N(0, 3²), unconditional the same plus N(0, 1²) (the two are close). */
function rows(count: number): { cond: Float32Array; uncond: Float32Array }[] {
  const rng = new Mulberry32(2024);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng.uniform())) * Math.cos(2 * Math.PI * rng.uniform());
  return Array.from({ length: count }, () => {
    const cond = Float32Array.from({ length: n }, () => 3 * normal());
    const uncond = Float32Array.from(cond, (c) => c + normal());
    return { cond, uncond };
  });
}

const ROWS = rows(16);
const guided = guidanceScale !== 1;

/** Milliseconds now, by the chosen clock. The process's CPU time by default: the reference machine is
 * shared, and wall time there counts the turns other processes take on its two cores. */
const clock = values.clock === "wall" ? () => performance.now() : () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** ms per call of `f` over the rows, `calls` calls per run; median and range over the runs. */
function time(calls: number, f: (r: (typeof ROWS)[number], i: number) => number): ReturnType<typeof stats> {
  for (let i = 0; i < Math.min(calls, 20); i++) f(ROWS[i % ROWS.length]!, i); // warm-up (and JIT)
  const per: number[] = [];
  for (let run = 0; run < runs; run++) {
    const t0 = clock();
    for (let i = 0; i < calls; i++) f(ROWS[i % ROWS.length]!, i);
    per.push((clock() - t0) / calls);
  }
  return stats(per);
}

const fmt = (ms: number) => (ms >= 1 ? ms.toFixed(2) : ms >= 0.1 ? ms.toFixed(3) : ms.toFixed(4));
const cell = (s: ReturnType<typeof stats>) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

const unit = `${values.clock === "wall" ? "wall" : "CPU"} ms`;
console.log(`Sampling, ${n} codes, guidance ${guidanceScale}: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ` +
  `Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; ${unit} per image per step, median (min–max) of ${runs} runs\n`);
console.log("| top-k | top-p | temperature | previous (sort all) | now | previous / now |");
console.log("| --- | --- | --- | --- | --- | --- |");
let mismatches = 0;
let compared = 0;
// The requested temperature for every top-k; then no limit at a low temperature, where sorting the
// scores drops those whose weight is too small to change a sum (within 40·T of the best are kept).
const configs = [16, 50, 256, n, 0].flatMap((topK) => [1, 0.9].map((topP) => ({ topK, topP, temperature })));
configs.push({ topK: 0, topP: 1, temperature: 0.3 }, { topK: 0, topP: 0.9, temperature: 0.3 });
for (const { topK, topP, temperature: t } of configs) {
  const settings = { guidanceScale, topK, topP, temperature: t };
  const old = previous.createSampler(settings);
  const sample = createSampler(settings);
  // Same tokens, from twin streams over the same rows.
  const a = new Mulberry32(1);
  const b = new Mulberry32(1);
  for (const r of ROWS) {
    const want = old(guided ? previous.guide(r.cond, r.uncond, guidanceScale) : Float64Array.from(r.cond), a);
    if (sample(r.cond, b, guided ? r.uncond : null) !== want) mismatches++;
    compared++;
  }
  const rng = new Mulberry32(3);
  const before = time(20, (r) => old(guided ? previous.guide(r.cond, r.uncond, guidanceScale) : Float64Array.from(r.cond), rng));
  const now = time(500, (r) => sample(r.cond, rng, guided ? r.uncond : null));
  const k = topK === n ? `${n} (codebook)` : topK === 0 ? "0 (no limit)" : String(topK);
  console.log(`| ${k} | ${topP} | ${t} | ${cell(before)} | ${cell(now)} | ${(before.median / now.median).toFixed(1)}× |`);
}

// Where the sampler switches from selection to sorting scores (SELECT_FRACTION in sampling.ts): both
// paths at the same k, with the guided row already made.
console.log(`\nThe two paths at the same top-k (temperature ${temperature}; the guided row given), ${unit} per call:\n`);
console.log("| top-k | selection | sorted scores |");
console.log("| --- | --- | --- |");
const guidedRows = ROWS.map((r) => previous.guide(r.cond, r.uncond, guidanceScale));
const c = new Candidates(n);
for (const k of [256, 1024, 2048, 4096, 8192]) {
  const s = new Candidates(Math.min(n, 4 * k)); // as the sampler sizes it
  const selected = time(100, (_, i) => (selectTopK(guidedRows[i % guidedRows.length]!, k, s), s.length));
  const sorted = time(100, (_, i) => (sortTopScores(guidedRows[i % guidedRows.length]!, k, temperature, c), c.length));
  console.log(`| ${k} | ${cell(selected)} | ${cell(sorted)} |`);
}

console.log(`\nTokens different from the previous sampler's: ${mismatches} of ${compared}`);
if (mismatches) process.exitCode = 1;
