/**
 * Mosaic vs a PyTorch eager loop of the same architecture (not a test), side by side in one run on
 * random-weight DALL·E-mini or -mega-size models:
 *
 *   npm run bench:torch -- --size mini [--runs 3] [--provider cpu|webgpu] [--torch-device cpu|cuda]
 *                          [--torch-dtype fp32,fp16] [--warmup 1,9] [--scenarios 1,9] [--weights fp32|int8|int4 [--block 32]]
 *
 * The first run creates work/random-<size>/ (published-layout files plus the converted Mosaic model)
 * with training/mosaic_convert/random_weights.py. Both sides use the same weights, prompt and sampling
 * (guidance 16, top-k 256, temperature 1, as min-dalle's defaults), the PyTorch side in a child
 * process that runs first, then Mosaic. Prints a Markdown table of medians (min–max) and ratios.
 * `--weights int8` (or int4) runs Mosaic on an 8-bit (4-bit) copy of the model
 * (training/mosaic_convert/quantize.py, made once into work/random-<size>/model-int8-b32): the same
 * architecture, not the same numbers, so its tokens differ from PyTorch's fp32 ones. One weights
 * setting per run, so the peak memory is its own.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { PACKAGE_ROOT, parseProvider } from "../src/engine/settings.ts";
import { median, ThreadedRunner, type ThreadedTiming } from "./common.ts";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "mini" },
    runs: { type: "string", default: "3" },
    provider: { type: "string" },
    "torch-device": { type: "string" },
    "torch-dtype": { type: "string", default: "fp32" },
    warmup: { type: "string", default: "1,9" },
    work: { type: "string", default: path.join(PACKAGE_ROOT, "work") },
    python: { type: "string", default: process.env.MOSAIC_PYTHON ?? "/usr/bin/python3" },
    weights: { type: "string", default: "fp32" },
    block: { type: "string", default: "32" },
    // 1: one image, previews off; 9: a 3×3 with previews. "1" alone (with --warmup 1) is the quick run.
    scenarios: { type: "string", default: "1,9" },
  },
});
const runs = Number(values.runs);
const scenarios = values.scenarios!.split(",").map(Number);
if (!scenarios.length || scenarios.some((c) => c !== 1 && c !== 9)) throw new Error("--scenarios is 1, 9 or 1,9");
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

/**
 * Peak GPU memory used while `work` runs, from `nvidia-smi -lms` in the background (a child process,
 * so sampling never blocks the event loop onnxruntime-node runs on); null without an NVIDIA GPU.
 */
async function gpuPeak<T>(work: () => Promise<T>): Promise<{ result: T; peakMiB: number | null }> {
  const smi = spawn("nvidia-smi", ["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200"], { stdio: ["ignore", "pipe", "ignore"] });
  let base: number | null = null;
  let peak = 0;
  let available = true;
  smi.on("error", () => (available = false));
  smi.stdout.on("data", (d: Buffer) => {
    for (const line of d.toString().split("\n")) {
      const v = Number(line.trim());
      if (line.trim() === "" || !Number.isFinite(v)) continue;
      base ??= v;
      peak = Math.max(peak, v);
    }
  });
  await new Promise((r) => setTimeout(r, 500)); // a first reading before the work starts
  try {
    const result = await work();
    return { result, peakMiB: available && base !== null ? peak - base : null };
  } finally {
    smi.kill();
  }
}

function runTorch(dtype: string): Promise<TorchResult> {
  const args = ["-m", "mosaic_convert.bench_torch", "--published", path.join(root, "published"), "--runs", String(runs),
    "--dtype", dtype, "--preview-every", String(PREVIEW_EVERY), "--warmup", values.warmup!, "--scenarios", values.scenarios!];
  if (values["torch-device"]) args.push("--device", values["torch-device"]);
  return new Promise((resolve, reject) => {
    const child = spawn(values.python!, args, { env: pyEnv, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out) as TorchResult) : reject(new Error(`bench_torch exited with ${code}`))));
  });
}


const fmt = (xs: number[], digits = 2) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

if (!existsSync(path.join(root, "model", "model.json"))) {
  console.error(`creating ${root} (random ${values.size} weights, converted by the real converter)…`);
  execFileSync(values.python!, ["-m", "mosaic_convert.random_weights", "--size", values.size!, "--out", root], { env: pyEnv, stdio: "inherit" });
}

const bits = { fp32: 32, int8: 8, int4: 4 }[values.weights!];
if (!bits) throw new Error("--weights is fp32, int8 or int4");
const mosaicModel = path.join(root, bits === 32 ? "model" : `model-${values.weights}-b${values.block}`);
if (!existsSync(path.join(mosaicModel, "model.json"))) {
  console.error(`creating ${mosaicModel} (${bits}-bit weights)…`);
  execFileSync(values.python!, ["-m", "mosaic_convert.quantize", "--model", path.join(root, "model"), "--out", mosaicModel,
    "--bits", String(bits), "--block", values.block!, "--name", `random-${values.size}-${values.weights}-b${values.block}`], { env: pyEnv, stdio: "inherit" });
}

const torchSides: { result: TorchResult; peakMiB: number | null }[] = [];
for (const dtype of values["torch-dtype"]!.split(",")) {
  console.error(`PyTorch reference (${dtype})…`);
  torchSides.push(await gpuPeak(() => runTorch(dtype)));
}

console.error("Mosaic…");
// As the server runs it: an engine thread, and on the CPU its preview thread beside the decoder.
const mosaicSide = await gpuPeak(async () => {
  const runner = await ThreadedRunner.start({ modelFolder: mosaicModel, provider: parseProvider(values.provider) });
  for (const count of values.warmup!.split(",").map(Number)) {
    await runner.run({ prompt: PROMPT, count, seed: 0, sampling, previewInterval: count > 1 ? PREVIEW_EVERY : 0 });
  }
  const one: ThreadedTiming[] = [];
  const nine: ThreadedTiming[] = [];
  for (let r = 0; r < runs; r++) {
    if (scenarios.includes(1)) one.push(await runner.run({ prompt: PROMPT, count: 1, seed: r, sampling, previewInterval: 0 }));
    if (scenarios.includes(9)) nine.push(await runner.run({ prompt: PROMPT, count: 9, seed: r, sampling, previewInterval: PREVIEW_EVERY }));
  }
  const provider = runner.engine.provider;
  const device = runner.engine.deviceState ? "state on the device" : "state in CPU memory";
  const previews = nine.map((t) => t.previews);
  await runner.release();
  return { one, nine, provider, device, previews };
});
const m = mosaicSide.result;
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const m1 = m.one.map((t) => t.totalMs / 1000);
const m9 = m.nine.map((t) => t.totalMs / 1000);
const mFirst = m.nine.map((t) => t.firstPreviewMs! / 1000);
const ratio = (a: number[], b: number[]) => (median(a) / median(b)).toFixed(2);
const tokens = 256;
const torch0 = torchSides[0]!.result;

const cols = torchSides.map((t) => {
  const r = t.result.results;
  return {
    name: `PyTorch eager ${t.result.dtype}`,
    one: (r["1"] ?? []).map((x) => x.seconds),
    nine: (r["9"] ?? []).map((x) => x.seconds),
    first: (r["9"] ?? []).map((x) => x.firstPreviewSeconds!),
    gpu: t.peakMiB === null ? null : `${t.peakMiB} (allocator ${mib(t.result.peakAllocatedBytes ?? 0)})`,
    rss: mib(t.result.maxRssKiB * 1024),
  };
});
const row = (label: string, pick: (c: (typeof cols)[number]) => string, mosaic: string, ratios: string[] = []) =>
  console.log(`| ${label} | ${cols.map(pick).join(" | ")} | ${mosaic} | ${ratios.join(" | ")}${ratios.length ? "" : cols.map(() => "").join(" | ")} |`);

console.log(`\n## Mosaic vs PyTorch eager, random ${values.size}-size weights — ${new Date().toISOString().slice(0, 10)}\n`);
console.log(`Machine: ${os.cpus()[0]?.model ?? "?"} × ${os.cpus().length}${torch0.gpu ? `, ${torch0.gpu}` : ""}. ` +
  `PyTorch ${torch0.torch} (${torch0.device}); Mosaic: onnxruntime-node, ${m.provider} provider, ${m.device}, ${bits === 32 ? "fp32" : `${values.weights} (blocks of ${values.block})`} weights. ` +
  `${runs} runs each after warm-up (${values.warmup} images); median (min–max). Sampling: guidance 16, top-k 256, temperature 1; ` +
  `previews every ${PREVIEW_EVERY} tokens (8 VQGAN decodes on PyTorch's side, the last is the final image; Mosaic decodes ` +
  `them beside the decoder, as the server does, and skips a stale one when its preview decoder is still busy: ` +
  `${m.previews.join(", ") || "none"} of 8 shown).\n`);
console.log(`| | ${cols.map((c) => c.name).join(" | ")} | Mosaic | ${cols.map((c) => `Mosaic / ${c.name.replace("PyTorch eager ", "PyTorch ")}`).join(" | ")} |`);
console.log(`| --- | ${cols.map(() => "---").join(" | ")} | --- | ${cols.map(() => "---").join(" | ")} |`);
if (scenarios.includes(1)) row("1 image, previews off (s)", (c) => fmt(c.one), fmt(m1), cols.map((c) => ratio(m1, c.one)));
if (scenarios.includes(9)) {
  row("3×3 grid with previews (s)", (c) => fmt(c.nine), fmt(m9), cols.map((c) => ratio(m9, c.nine)));
  row("time to first preview, 3×3 (s)", (c) => fmt(c.first), fmt(mFirst), cols.map((c) => ratio(mFirst, c.first)));
}
if (scenarios.includes(1)) row("tokens/s, 1 image", (c) => (tokens / median(c.one)).toFixed(0), (tokens / median(m1)).toFixed(0));
if (scenarios.includes(9)) row("tokens/s, 3×3", (c) => (9 * tokens / median(c.nine)).toFixed(0), (9 * tokens / median(m9)).toFixed(0));
if (mosaicSide.peakMiB !== null) row("peak GPU memory, nvidia-smi (MiB)", (c) => c.gpu ?? "", String(mosaicSide.peakMiB));
row("peak resident memory (MiB)", (c) => c.rss, mib(process.resourceUsage().maxRSS * 1024));
