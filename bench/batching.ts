/**
 * Continuous batching benchmark (not a test): c prompts submitted at once, decoded one at a time
 * versus together in one batch, measured side by side in one run.
 *   npm run bench:batching [-- --runs 3] [--model <dir>] [--provider cpu|webgpu|cuda]
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { modelFolder, parseProvider } from "../src/engine/settings.ts";
import { DecodeBatch } from "../src/engine/batch.ts";
import { generate, type GenerateRequest } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" }, model: { type: "string" }, provider: { type: "string" }, concurrency: { type: "string", default: "1,4,16" } } });
const runs = Number(values.runs);
const levels = values.concurrency!.split(",").map(Number);

const PROMPTS = [
  "a big red circle in the centre, blue background", "a small yellow triangle on the left, purple background",
  "green background with a large white square at the bottom", "a big orange triangle on the right, black background",
];
const requests = (c: number, run: number): GenerateRequest[] =>
  Array.from({ length: c }, (_, i) => ({ prompt: PROMPTS[i % PROMPTS.length]!, seed: run * 100 + i, previewInterval: 0 }));

/** Latency of each request from the common submission time, one after another. */
async function sequential(model: Model, reqs: GenerateRequest[]): Promise<number[]> {
  const t0 = performance.now();
  const latencies: number[] = [];
  for (const r of reqs) {
    for await (const e of generate(model, r)) if (e.type === "completed") latencies.push(performance.now() - t0);
  }
  return latencies;
}

async function batched(model: Model, reqs: GenerateRequest[]): Promise<number[]> {
  const t0 = performance.now();
  const batch = new DecodeBatch(model);
  const members = reqs.map((r) => batch.admit(r));
  const latencies = new Array<number>(reqs.length);
  while (batch.active) {
    await batch.step();
    members.forEach((m, i) => {
      if (m.drain().some((e) => e.type === "completed")) latencies[i] = performance.now() - t0;
    });
  }
  return latencies;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

const model = await loadModel(modelFolder(values.model), { provider: parseProvider(values.provider) });
await sequential(model, requests(1, 0)); // warm-up
console.log(`Continuous batching: model ${model.manifest.name}, provider ${model.provider}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ` +
  `${new Date().toISOString().slice(0, 10)}, median of ${runs} runs, 1 image per prompt, previews off\n`);
console.log("| concurrent prompts | one at a time: images/s | batched: images/s | throughput ratio | one at a time: mean latency | batched: mean latency |");
console.log("| --- | --- | --- | --- | --- | --- |");
for (const c of levels) {
  const seq: { tput: number; lat: number }[] = [];
  const bat: { tput: number; lat: number }[] = [];
  for (let run = 1; run <= runs; run++) {
    const s = await sequential(model, requests(c, run));
    seq.push({ tput: c / (Math.max(...s) / 1000), lat: mean(s) });
    const b = await batched(model, requests(c, run));
    bat.push({ tput: c / (Math.max(...b) / 1000), lat: mean(b) });
  }
  const st = median(seq.map((x) => x.tput));
  const bt = median(bat.map((x) => x.tput));
  console.log(`| ${c} | ${st.toFixed(2)} | ${bt.toFixed(2)} | ${(bt / st).toFixed(2)}× | ${(median(seq.map((x) => x.lat)) / 1000).toFixed(2)} s | ${(median(bat.map((x) => x.lat)) / 1000).toFixed(2)} s |`);
}
await model.release();
