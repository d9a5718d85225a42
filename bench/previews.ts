/**
 * Previews beside the decoder (not a test): a 3×3 grid through the engine thread, whose VQ previews
 * decode in their own thread, with previews off and every 16 tokens, side by side in one run:
 * decoder tokens per second and the time to the final images.
 *   npm run bench:previews [-- --runs 3] [--count 9] [--model <dir>] [--provider cpu|webgpu]
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { modelFolder, parseProvider } from "../src/engine/settings.ts";
import { median, ThreadedRunner } from "./common.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" }, count: { type: "string", default: "9" }, model: { type: "string" }, provider: { type: "string" } } });
const runs = Number(values.runs);
const count = Number(values.count);
const runner = await ThreadedRunner.start({ modelFolder: modelFolder(values.model), provider: parseProvider(values.provider) });
let n = 0;
const once = async (previewInterval: number) => {
  const t = await runner.run({ prompt: "a big red circle in the centre, blue background", count, seed: ++n, previewInterval });
  return { ms: t.totalMs, previews: t.previews };
};
await once(0);
await once(16); // warm-up, both shapes
const off: number[] = [];
const on: number[] = [];
let shown = 0;
for (let r = 0; r < runs; r++) {
  off.push((await once(0)).ms);
  const p = await once(16);
  on.push(p.ms);
  shown = p.previews;
}
const tps = (ms: number) => (256 * count) / (ms / 1000);
console.log(`Previews beside the decoder: ${count} images, engine thread + preview thread, provider ${runner.engine.provider}, ` +
  `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}, median of ${runs} runs\n`);
console.log("| previews | time to final images | decoder tokens/s | previews shown |");
console.log("| --- | --- | --- | --- |");
console.log(`| off | ${(median(off) / 1000).toFixed(2)} s | ${tps(median(off)).toFixed(0)} | 0 |`);
console.log(`| every 16 tokens | ${(median(on) / 1000).toFixed(2)} s | ${tps(median(on)).toFixed(0)} | ${shown} of 16 |`);
console.log(`\ntokens/s with previews on / off: ${(tps(median(on)) / tps(median(off))).toFixed(2)}`);
await runner.release();
