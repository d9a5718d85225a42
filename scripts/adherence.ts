/**
 * The model card's prompt-adherence check, run through the TypeScript engine: take a prompt set from
 * the scorer (held-out combinations, the hand-written free-phrasing file, or two-shape scenes),
 * generate it with the model's default sampling, then score the images with the same geometric
 * check the model card used (training/mosaic_train/adherence.py).
 *   npm run adherence [-- --model <dir>] [--set held-out|free-phrasing|two-shapes|no-background | --prompts <file>] [--count 48]
 * (without --set or --prompts: the card's held-out combinations)
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { modelFolder, PACKAGE_ROOT } from "../src/engine/settings.ts";
import { generate } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { encodeFrame } from "../src/images/encode.ts";

export const PYTHON = process.env.MOSAIC_PYTHON ?? "/usr/bin/python3";
export const PROMPT_SETS = ["held-out", "free-phrasing", "two-shapes", "no-background"] as const;
export type PromptSet = (typeof PROMPT_SETS)[number];

interface Prompt {
  caption: string;
  files?: string[];
}

export interface AdherenceSummary {
  images: number;
  adherent: number;
  background: number | null;
  colour: number;
  position: number | null;
  shape: number;
  size: number | null;
  /** Two-shape sets: the share of shapes with colour, place and shape right. */
  shapes_right?: number;
  /** The share of images mostly in an asked shape's colour: the shape on its own colour, a flat image. */
  hidden: number;
}

const run = promisify(execFile);

function scorer(args: string[]) {
  return run(PYTHON, ["-m", "mosaic_train.adherence", ...args], {
    env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, "training") },
  });
}

/** Prompts from a set the scorer draws (`set`), or from a JSON file of them (`file`). */
export type PromptSource = { set: PromptSet; count?: number } | { file: string; count?: number };

export async function runAdherence(model: Model, source: PromptSource = { set: "held-out" }, folder?: string): Promise<AdherenceSummary> {
  const dir = folder ?? (await mkdtemp(path.join(tmpdir(), "mosaic-adherence-")));
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, "prompts.json");
  if ("set" in source) await scorer(["prompts", "--set", source.set, "--count", String(source.count ?? 48), "--out", file]);
  const all = JSON.parse(await readFile("set" in source ? file : source.file, "utf8")) as Prompt[];
  const prompts = "set" in source ? all : all.slice(0, source.count);
  for (const [i, p] of prompts.entries()) {
    for await (const ev of generate(model, { prompt: p.caption, seed: 1000 + i, previewInterval: 0 })) {
      if (ev.type !== "completed") continue;
      const name = `${String(i).padStart(3, "0")}.png`;
      await writeFile(path.join(dir, name), await encodeFrame(ev.images[0]!));
      p.files = [name];
    }
  }
  await writeFile(file, JSON.stringify(prompts));
  const { stdout } = await scorer(["score", dir]);
  return JSON.parse(stdout) as AdherenceSummary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { model: { type: "string" }, set: { type: "string" }, prompts: { type: "string" }, count: { type: "string" }, out: { type: "string" } },
  });
  if (values.set !== undefined && !(PROMPT_SETS as readonly string[]).includes(values.set)) throw new Error(`--set must be one of ${PROMPT_SETS.join(", ")}`);
  const count = values.count ? Number(values.count) : undefined;
  const source: PromptSource = values.set ? { set: values.set as PromptSet, count } : values.prompts ? { file: values.prompts, count } : { set: "held-out", count };
  const model = await loadModel(modelFolder(values.model));
  const summary = await runAdherence(model, source, values.out);
  console.log(JSON.stringify(summary, null, 1));
  await model.release();
}
