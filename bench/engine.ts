/**
 * Engine benchmark (not a test): the shipped model on this machine, measured side by side in one run.
 *   npm run bench:engine [-- --runs 5] [--model <dir>] [--provider cpu|webgpu|cuda]
 * Prints a Markdown table: median and spread (min–max) over the runs.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { modelFolder, parseProvider } from "../src/engine/settings.ts";
import { decodeGrids } from "../src/engine/generate.ts";
import { loadModel } from "../src/engine/model.ts";
import { sequenceLength } from "../src/engine/model-format.ts";
import { stats, timed } from "./common.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, model: { type: "string" }, provider: { type: "string" } } });
const runs = Number(values.runs);

interface Row {
  name: string;
  samples: number[];
  unit: string;
}



const model = await loadModel(modelFolder(values.model), { provider: parseProvider(values.provider) });
const a = model.manifest.architecture;
const tokens = sequenceLength(a);
const prompt = "a big red circle in the centre, blue background";
// Warm-up: the first runs pay for ONNX Runtime's lazy initialisation.
await timed(model, { prompt, count: 1, seed: 0 });
await timed(model, { prompt, count: 9, seed: 0 });

const rows: Row[] = [];
const add = (name: string, unit: string) => {
  const row = { name, samples: [] as number[], unit };
  rows.push(row);
  return row;
};
const guided = model.manifest.sampling.guidanceScale !== 1;
const step1 = add(`decoder step, 1 image (batch ${guided ? "2: guidance" : "1: default guidance 1"})`, "ms");
const first = add("time to first preview (16 tokens), 1 image", "ms");
const img1 = add("1 image, previews off", "s");
const img1p = add("1 image, previews every 16 tokens", "s");
const img4 = add("4 images, previews off", "s");
const img9 = add("9 images (3×3), previews off", "s");
const img9p = add("9 images (3×3), previews every 16 tokens", "s");
const vq1 = add("VQ decode per preview, 1 image", "ms");
const vq9 = add("VQ decode per preview, 9 images", "ms");

for (let r = 0; r < runs; r++) {
  const seed = 100 + r;
  const off1 = await timed(model, { prompt, count: 1, seed, previewInterval: 0 });
  step1.samples.push(off1.decodeMs / tokens);
  img1.samples.push(off1.totalMs / 1000);
  const on1 = await timed(model, { prompt, count: 1, seed });
  img1p.samples.push(on1.totalMs / 1000);
  first.samples.push(on1.firstPreviewMs ?? Number.NaN);
  img4.samples.push((await timed(model, { prompt, count: 4, seed, previewInterval: 0 })).totalMs / 1000);
  img9.samples.push((await timed(model, { prompt, count: 9, seed, previewInterval: 0 })).totalMs / 1000);
  img9p.samples.push((await timed(model, { prompt, count: 9, seed })).totalMs / 1000);
  for (const [row, n] of [[vq1, 1], [vq9, 9]] as const) {
    const grids = Array.from({ length: n }, () => new Int32Array(a.grid.height * a.grid.width).fill(r));
    const t = performance.now();
    await decodeGrids(model, grids);
    row.samples.push(performance.now() - t);
  }
}

const fmt = (x: number, unit: string) => (unit === "s" ? x.toFixed(3) : x.toFixed(2));
console.log(`Mosaic engine benchmark: model ${model.manifest.name} ${model.manifest.version}, provider ${model.provider}, ` +
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, ${runs} runs each\n`);
console.log("| measurement | median | min – max |");
console.log("| --- | --- | --- |");
for (const row of rows) {
  const s = stats(row.samples);
  console.log(`| ${row.name} | ${fmt(s.median, row.unit)} ${row.unit} | ${fmt(s.min, row.unit)} – ${fmt(s.max, row.unit)} ${row.unit} |`);
}
const m1 = stats(img1.samples).median;
const m1p = stats(img1p.samples).median;
const m9 = stats(img9.samples).median;
console.log(`\nRatios (medians): previews on/off, 1 image ${(m1p / m1).toFixed(2)}×, 9 images ${(stats(img9p.samples).median / m9).toFixed(2)}×; ` +
  `9 images vs 1: ${(m9 / m1).toFixed(2)}× the time for 9× the images.`);
await model.release();
