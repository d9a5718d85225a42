/**
 * The model card's prompt-adherence check, run through the TypeScript engine: generate the
 * held-out prompts with the model's default sampling, then score the images with the same
 * geometric check the model card used (training/mosaic_train/adherence.py).
 *   npm run adherence [-- --model <dir>] [--count 48]
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { modelFolder, PACKAGE_ROOT } from "../src/config.ts";
import { generate } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { encodeFrame } from "../src/images/encode.ts";

export const HELD_OUT_PROMPTS = path.join(PACKAGE_ROOT, "test", "fixtures", "held-out-prompts.json");
export const PYTHON = process.env.MOSAIC_PYTHON ?? "/usr/bin/python3";

interface HeldOut {
  caption: string;
  scene: unknown;
  files?: string[];
}

export interface AdherenceSummary {
  images: number;
  adherent: number;
  background: number;
  colour: number;
  position: number;
  shape: number;
  size: number;
}

export async function runAdherence(model: Model, count?: number, folder?: string): Promise<AdherenceSummary> {
  const prompts = (JSON.parse(await readFile(HELD_OUT_PROMPTS, "utf8")) as HeldOut[]).slice(0, count);
  const dir = folder ?? (await mkdtemp(path.join(tmpdir(), "mosaic-adherence-")));
  await mkdir(dir, { recursive: true });
  for (const [i, p] of prompts.entries()) {
    for await (const ev of generate(model, { prompt: p.caption, seed: 1000 + i, previewInterval: 0 })) {
      if (ev.type !== "completed") continue;
      const name = `${String(i).padStart(3, "0")}.png`;
      await writeFile(path.join(dir, name), await encodeFrame(ev.images[0]!));
      p.files = [name];
    }
  }
  await writeFile(path.join(dir, "prompts.json"), JSON.stringify(prompts));
  const { stdout } = await promisify(execFile)(PYTHON, ["-m", "mosaic_train.adherence", "score", dir], {
    env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, "training") },
  });
  return JSON.parse(stdout) as AdherenceSummary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { model: { type: "string" }, count: { type: "string" }, out: { type: "string" } } });
  const model = await loadModel(modelFolder(values.model));
  const summary = await runAdherence(model, values.count ? Number(values.count) : undefined, values.out);
  console.log(JSON.stringify(summary, null, 1));
  await model.release();
}
