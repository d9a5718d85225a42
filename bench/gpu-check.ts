/**
 * A GPU-machine check (not a test: CI has no GPU): the same generations on the CPU and on a GPU
 * provider with the batch state on the device must give the same codes.
 *   node --import tsx bench/gpu-check.ts [--provider webgpu] [--model <dir>]
 * Greedy decoding compares whole sequences; seeded sampling may part ways where two logits are
 * within float noise of each other, so it reports how many tokens agree rather than failing.
 */
import { parseArgs } from "node:util";
import { modelFolder, parseProvider } from "../src/engine/settings.ts";
import { generate, type GenerateRequest } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";

const { values } = parseArgs({ options: { provider: { type: "string", default: "webgpu" }, model: { type: "string" } } });

async function codes(model: Model, req: GenerateRequest): Promise<number[][]> {
  for await (const ev of generate(model, req)) {
    if (ev.type === "completed") return ev.images.map((i) => Array.from(i.codes));
  }
  throw new Error("generation did not complete");
}

const folder = modelFolder(values.model);
const cpu = await loadModel(folder, { provider: "cpu" });
const gpu = await loadModel(folder, { provider: parseProvider(values.provider) });
console.log(`provider in use: ${gpu.provider}; batch state on the device: ${gpu.deviceOps !== null}`);
const prompt = "a big red circle in the centre, blue background";
let failed = false;
for (const [name, req] of [
  ["greedy, guidance 3, 3 images", { prompt, count: 3, seed: 1, sampling: { guidanceScale: 3, topK: 1 }, previewInterval: 32 }],
  ["sampled, default settings, 4 images", { prompt, count: 4, seed: 7, previewInterval: 0 }],
] as const) {
  const a = await codes(cpu, req);
  const b = await codes(gpu, req);
  const total = a.flat().length;
  const same = a.flat().filter((c, i) => c === b.flat()[i]).length;
  console.log(`${name}: ${same}/${total} tokens equal`);
  if (name.startsWith("greedy") && same !== total) failed = true;
}
await cpu.release();
await gpu.release();
if (failed) {
  console.log("FAIL: greedy codes differ between the CPU and the GPU provider");
  process.exit(1);
}
