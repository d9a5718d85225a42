/**
 * Mosaic vs a PyTorch eager loop of the same architecture (not a test), side by side in one run on
 * random-weight DALL·E-mini or -mega-size models:
 *
 *   npm run bench:torch -- --size mini [--runs 3] [--provider cpu|webgpu] [--torch-device cpu|cuda]
 *
 * The first run creates work/random-<size>/ (published-layout files plus the converted Mosaic model)
 * with training/mosaic_convert/random_weights.py. Both sides use the same weights, prompt and sampling
 * (guidance 16, top-k 256, temperature 1, as min-dalle's defaults), the PyTorch side in a child
 * process that runs first, then Mosaic. Prints a Markdown table of medians (min–max) and ratios.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { PACKAGE_ROOT, parseProvider } from "../src/config.ts";
import { generate, type GenerateRequest, type Timings } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "mini" },
    runs: { type: "string", default: "3" },
    provider: { type: "string" },
    "torch-device": { type: "string" },
    "torch-dtype": { type: "string", default: "fp32" },
    work: { type: "string", default: path.join(PACKAGE_ROOT, "work") },
    python: { type: "string", default: process.env.MOSAIC_PYTHON ?? "/usr/bin/python3" },
  },
});
const runs = Number(values.runs);
const root = path.join(values.work, `random-${values.size}`);
const training = path.join(PACKAGE_ROOT, "training");
const pyEnv = { ...process.env, PYTHONPATH: training };
const PROMPT = "a red circle on a blue background";
const sampling = { guidanceScale: 16, topK: 256, topP: 1, temperature: 1 };
const PREVIEW_EVERY = 32;

interface TorchRun {
  seconds: number;
  firstPreviewSeconds: number | null;
  tokensPerSecond: number;
}
interface TorchResult {
  device: string;
  dtype: string;
  torch: string;
  gpu: string | null;
  peakAllocatedBytes: number | null;
  maxRssKiB: number;
  results: Record<string, TorchRun[]>;
}

/** Samples the GPU's used memory (nvidia-smi) while `work` runs; null where there is no NVIDIA GPU. */
async function gpuPeak<T>(work: () => Promise<T>): Promise<{ result: T; peakMiB: number | null }> {
  const read = (): number | null => {
    try {
      return Number(execFileSync("nvidia-smi", ["--query-gpu=memory.used", "--format=csv,noheader,nounits"], { encoding: "utf8" }).split("\n")[0]);
    } catch {
      return null;
    }
  };
  const base = read();
  if (base === null) return { result: await work(), peakMiB: null };
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, read() ?? 0)), 200);
  try {
    const result = await work();
    return { result, peakMiB: peak - base };
  } finally {
    clearInterval(timer);
  }
}

function runTorch(): Promise<TorchResult> {
  const args = ["-m", "mosaic_convert.bench_torch", "--published", path.join(root, "published"), "--runs", String(runs),
    "--dtype", values["torch-dtype"]!, "--preview-every", String(PREVIEW_EVERY)];
  if (values["torch-device"]) args.push("--device", values["torch-device"]);
  return new Promise((resolve, reject) => {
    const child = spawn(values.python!, args, { env: pyEnv, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as TorchResult) : reject(new Error(`bench_torch exited with ${code}`))));
  });
}

async function timed(model: Model, req: GenerateRequest): Promise<Timings> {
  for await (const ev of generate(model, req)) if (ev.type === "completed") return ev.timings;
  throw new Error("generation did not complete");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (xs: number[], digits = 2) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

if (!existsSync(path.join(root, "model", "model.json"))) {
  console.error(`creating ${root} (random ${values.size} weights, converted by the real converter)…`);
  execFileSync(values.python!, ["-m", "mosaic_convert.random_weights", "--size", values.size!, "--out", root], { env: pyEnv, stdio: "inherit" });
}

console.error("PyTorch reference…");
const torchSide = await gpuPeak(runTorch);
const torch = torchSide.result;

console.error("Mosaic…");
const mosaicSide = await gpuPeak(async () => {
  const model = await loadModel(path.join(root, "model"), { provider: parseProvider(values.provider) });
  await timed(model, { prompt: PROMPT, count: 1, seed: 0, sampling, previewInterval: 0 }); // warm-up
  const one: Timings[] = [];
  const nine: Timings[] = [];
  for (let r = 0; r < runs; r++) {
    one.push(await timed(model, { prompt: PROMPT, count: 1, seed: r, sampling, previewInterval: 0 }));
    nine.push(await timed(model, { prompt: PROMPT, count: 9, seed: r, sampling, previewInterval: PREVIEW_EVERY }));
  }
  const provider = model.provider;
  const device = model.deviceOps ? "state on the device" : "state in CPU memory";
  await model.release();
  return { one, nine, provider, device };
});
const m = mosaicSide.result;
const rssMiB = (kib: number) => (kib / 1024).toFixed(0);

const t1 = torch.results["1"]!.map((r) => r.seconds);
const t9 = torch.results["9"]!.map((r) => r.seconds);
const tFirst = torch.results["9"]!.map((r) => r.firstPreviewSeconds!);
const m1 = m.one.map((t) => t.totalMs / 1000);
const m9 = m.nine.map((t) => t.totalMs / 1000);
const mFirst = m.nine.map((t) => t.firstPreviewMs! / 1000);
const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
const tokens = 256;

console.log(`\n## Mosaic vs PyTorch eager, random ${values.size}-size weights — ${new Date().toISOString().slice(0, 10)}\n`);
console.log(`Machine: ${os.cpus()[0]?.model ?? "?"} × ${os.cpus().length}${torch.gpu ? `, ${torch.gpu}` : ""}. ` +
  `PyTorch ${torch.torch} (${torch.device}, ${torch.dtype}); Mosaic: onnxruntime-node, ${m.provider} provider, ${m.device}. ` +
  `${runs} runs each after one warm-up; median (min–max). Sampling: guidance 16, top-k 256, temperature 1; previews every ${PREVIEW_EVERY} tokens (8 VQGAN decodes, the last is the final image).\n`);
console.log("| | PyTorch eager | Mosaic | Mosaic / PyTorch (time) |");
console.log("| --- | --- | --- | --- |");
console.log(`| 1 image, previews off (s) | ${fmt(t1)} | ${fmt(m1)} | ${ratio(m1, t1)} |`);
console.log(`| 3×3 grid with 8 previews (s) | ${fmt(t9)} | ${fmt(m9)} | ${ratio(m9, t9)} |`);
console.log(`| time to first preview, 3×3 (s) | ${fmt(tFirst)} | ${fmt(mFirst)} | ${ratio(mFirst, tFirst)} |`);
console.log(`| tokens/s, 1 image | ${(tokens / median(t1)).toFixed(0)} | ${(tokens / median(m1)).toFixed(0)} | |`);
console.log(`| tokens/s, 3×3 | ${(9 * tokens / median(t9)).toFixed(0)} | ${(9 * tokens / median(m9)).toFixed(0)} | |`);
if (torchSide.peakMiB !== null) {
  console.log(`| peak GPU memory, nvidia-smi (MiB) | ${torchSide.peakMiB} (allocator: ${((torch.peakAllocatedBytes ?? 0) / 2 ** 20).toFixed(0)}) | ${mosaicSide.peakMiB} | |`);
}
console.log(`| peak resident memory (MiB) | ${rssMiB(torch.maxRssKiB)} | ${rssMiB(process.resourceUsage().maxRSS)} | |`);
