/**
 * Decoder steps by weight storage (not a test): the same model as fp32 and as quantized copies
 * (training/mosaic_convert/quantize.py), loaded together and stepped in turn, round after round, so
 * every ratio is measured side by side in one run on one machine state:
 *   npm run bench:weights -- --models work/random-mini/model,work/random-mini/model-int8,work/random-mini/model-int4
 *                            [--rounds 3] [--steps 24] [--counts 1,9]
 * A step of `count` images is 2 × count decoder rows (guidance). Sampling is min-dalle's (top-k 256):
 * the sampler's share is in the time, as in a generation. Prints a Markdown table: median ms per step
 * (min–max over rounds) and each model's time over the first one's.
 */
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { DecodeBatch } from "../src/engine/batch.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { stats } from "./common.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "24" },
    counts: { type: "string", default: "1,9" },
  },
});
if (!values.models) throw new Error("--models: the model folders to compare, the reference first, comma-separated");
const folders = values.models.split(",");
const rounds = Number(values.rounds), steps = Number(values.steps);
const counts = values.counts!.split(",").map(Number);
const sampling = { guidanceScale: 16, topK: 256, topP: 1, temperature: 1 };

const models: Model[] = [];
for (const f of folders) models.push(await loadModel(f, { log: () => {}, vqDecoder: false }));

/** ms per decoder step over `steps` steps of one batch, after two untimed steps (a new batch shape's first runs). */
async function perStep(model: Model, count: number, seed: number): Promise<number> {
  const batch = new DecodeBatch(model);
  const member = batch.admit({ prompt: "a red circle on a blue background", count, seed, sampling, previewInterval: 0 });
  await batch.step();
  await batch.step();
  member.drain();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await batch.step();
  // The batch is dropped unfinished: its state is plain memory (CPU provider), collected with it.
  return (performance.now() - t0) / steps;
}

const samples = new Map<string, number[]>();
for (let r = 0; r < rounds; r++) {
  for (const count of counts) {
    for (const [i, m] of models.entries()) {
      const key = `${i}:${count}`;
      samples.set(key, [...(samples.get(key) ?? []), await perStep(m, count, r)]);
    }
  }
}

const name = (i: number) => `${path.basename(folders[i]!)} (${models[i]!.manifest.name})`;
console.log(`\n## Decoder step by weight storage — ${new Date().toISOString().slice(0, 10)}\n`);
console.log(`Machine: ${os.cpus()[0]?.model ?? "?"} × ${os.cpus().length}. ${rounds} rounds of ${steps} steps after two untimed ones, ` +
  `models in turn; median ms per step (min–max).\n`);
console.log(`| model | ${counts.map((c) => `${c} image${c > 1 ? "s" : ""} (${2 * c} rows)`).join(" | ")} | ${counts.map((c) => `time / first, ${c}`).join(" | ")} |`);
console.log(`| --- | ${counts.map(() => "---").join(" | ")} | ${counts.map(() => "---").join(" | ")} |`);
for (let i = 0; i < models.length; i++) {
  const cells = counts.map((c) => {
    const s = stats(samples.get(`${i}:${c}`)!);
    return `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
  });
  const ratios = counts.map((c) => (stats(samples.get(`${i}:${c}`)!).median / stats(samples.get(`0:${c}`)!).median).toFixed(2));
  console.log(`| ${name(i)} | ${cells.join(" | ")} | ${ratios.join(" | ")} |`);
}
for (const m of models) await m.release();
