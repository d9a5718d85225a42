/**
 * Peak resident memory of the engine as the server runs it (engine thread + preview thread), in a
 * fresh process (not a test):
 *   npm run bench:memory -- [--model work/random-mini/model]   (created by `npm run bench:torch -- --size mini`)
 * The child loads the model, generates one image (previews off) and twice a 3×3 grid with a preview
 * every 32 tokens (the PyTorch comparison's settings), and reports its RSS after loading, its peak and
 * its timings. `npm run bench:torch` gives PyTorch's peak beside Mosaic's.
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { ThreadedRunner } from "./common.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: path.join(PACKAGE_ROOT, "work", "random-mini", "model") },
    child: { type: "boolean", default: false },
  },
});
const sampling = { guidanceScale: 16, topK: 256, topP: 1, temperature: 1 };
const PROMPT = "a red circle on a blue background";

if (values.child) {
  const t0 = performance.now();
  const runner = await ThreadedRunner.start({ modelFolder: values.model!, provider: "cpu" });
  const loadS = (performance.now() - t0) / 1000;
  const loadedMiB = process.memoryUsage().rss / 2 ** 20;
  const one = await runner.run({ prompt: PROMPT, count: 1, seed: 0, sampling, previewInterval: 0 });
  const nine = await runner.run({ prompt: PROMPT, count: 9, seed: 0, sampling, previewInterval: 32 });
  // The same shape again: what the first 3×3 after start paid for its new shape (the engine warms
  // the shapes of one image and of a 3×3 before it reports ready).
  const again = await runner.run({ prompt: PROMPT, count: 9, seed: 1, sampling, previewInterval: 32 });
  await runner.release();
  console.log(JSON.stringify({ loadS, loadedMiB, oneS: one.totalMs / 1000, nineS: nine.totalMs / 1000, againS: again.totalMs / 1000,
    firstS: (nine.firstPreviewMs ?? NaN) / 1000, againFirstS: (again.firstPreviewMs ?? NaN) / 1000,
    peakMiB: process.resourceUsage().maxRSS / 1024 }));
} else {
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", "--model", values.model!],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`the measuring process exited with ${r.status}`);
  const m = JSON.parse(r.stdout.trim().split("\n").pop()!);
  console.log(`Peak resident memory, ${values.model}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${new Date().toISOString().slice(0, 10)}\n`);
  console.log("| load (s) | RSS after load (MiB) | peak RSS (MiB) | 1 image (s) | 3×3 with previews, first / second run (s) | first preview, first / second run (s) |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  console.log(`| ${m.loadS.toFixed(1)} | ${m.loadedMiB.toFixed(0)} | ${m.peakMiB.toFixed(0)} | ${m.oneS.toFixed(1)} | ` +
    `${m.nineS.toFixed(1)} / ${m.againS.toFixed(1)} | ${m.firstS.toFixed(1)} / ${m.againFirstS.toFixed(1)} |`);
}
