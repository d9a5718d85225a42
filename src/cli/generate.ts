/** `mosaic generate`: one prompt -> N image files (and a grid), with a progress bar. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { modelFolder, parseProvider } from "../engine/settings.ts";
import { badInput } from "../engine/errors.ts";
import { generate, type Frame } from "../engine/generate.ts";
import { loadModel } from "../engine/model.ts";
import { encodeFrame, parseFormat, validateSize, type Upscale } from "../images/encode.ts";
import { contactSheet } from "../images/grid.ts";
import { progressView } from "./progress.ts";

export const GENERATE_HELP = `Usage: mosaic generate "<prompt>" [options]

Generates images for a prompt and writes them as files.

Options:
  --count <n>             images, 1-9 (default 1)
  --seed <n>              seed, 0-2147483647; image i uses seed+i (default: random, printed)
  --guidance <x>          classifier-free guidance scale, 1 = off (default: the model's)
  --top-k <n>             sample among the k most likely tokens, 0 = all, 1 = greedy (default: the model's)
  --top-p <x>             nucleus sampling mass in (0, 1] (default: the model's)
  --temperature <x>       softmax temperature, 0 = greedy (default: the model's)
  --out <dir>             where the images go (default: out)
  --format <f>            png, webp or jpeg (default: png)
  --size <px>             output size in pixels (default: the model's image size)
  --upscale <k>           nearest or smooth, when --size enlarges (default: nearest)
  --previews <dir>        also write the progressive preview frames there
  --preview-interval <n>  a preview every n tokens (default: one per token row; 0 = off)
  --model <dir>           model folder (default: $MOSAIC_MODEL or models/mosaic-shapes)
  --provider <p>          cpu, webgpu or cuda (default: $MOSAIC_PROVIDER or cpu; falls back to cpu)
  -h, --help              this help
`;

function num(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw badInput(`--${name} must be a number (got "${value}")`);
  return n;
}

export async function runGenerate(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      count: { type: "string" }, seed: { type: "string" }, guidance: { type: "string" }, "top-k": { type: "string" },
      "top-p": { type: "string" }, temperature: { type: "string" }, out: { type: "string", default: "out" },
      format: { type: "string", default: "png" }, size: { type: "string" }, upscale: { type: "string", default: "nearest" },
      previews: { type: "string" }, "preview-interval": { type: "string" }, model: { type: "string" },
      provider: { type: "string" }, help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(GENERATE_HELP);
    return;
  }
  if (positionals.length !== 1) throw badInput('give exactly one prompt, in quotes: mosaic generate "a red circle on a blue background"');
  const prompt = positionals[0]!;
  const format = parseFormat(values.format!);
  if (values.upscale !== "nearest" && values.upscale !== "smooth") throw badInput(`--upscale must be nearest or smooth (got "${values.upscale}")`);
  const upscale: Upscale = values.upscale;
  const sizeFlag = num(values.size, "size");
  const size = sizeFlag === undefined ? undefined : validateSize(sizeFlag);

  const model = await loadModel(modelFolder(values.model), { provider: parseProvider(values.provider) });
  // --size is one image's size; grids are scaled by the same factor.
  const factor = size === undefined ? 1 : size / model.manifest.architecture.imageSize.width;
  const encode = (f: Frame) => encodeFrame(f, { format, width: Math.round(f.width * factor), upscale });
  const previewInterval = num(values["preview-interval"], "preview-interval") ?? (values.previews ? undefined : 0);
  const events = generate(model, {
    prompt,
    count: num(values.count, "count"),
    seed: num(values.seed, "seed"),
    sampling: {
      guidanceScale: num(values.guidance, "guidance"), topK: num(values["top-k"], "top-k"),
      topP: num(values["top-p"], "top-p"), temperature: num(values.temperature, "temperature"),
    },
    previewInterval,
  });
  const out = path.resolve(values.out!);
  await mkdir(out, { recursive: true });
  if (values.previews) await mkdir(values.previews, { recursive: true });
  const bar = progressView(process.stderr, "generating");
  try {
    for await (const ev of events) {
      if (ev.type === "started") {
        process.stderr.write(`prompt: "${ev.normalizedPrompt}"  seed: ${ev.seed}  images: ${ev.count}\n`);
        if (ev.truncatedTokens > 0) process.stderr.write(`warning: the prompt is too long for this model; its last ${ev.truncatedTokens} tokens were dropped\n`);
        if (ev.unknownWords.length > 0) process.stderr.write(`warning: words this model does not know: ${ev.unknownWords.join(", ")}\n`);
      } else if (ev.type === "progress") {
        bar.update(ev.tokensDone, ev.tokensTotal, ev.tokensPerSecond);
        if (ev.previews && values.previews) {
          // Named by the point the preview shows (it may arrive a few tokens later).
          const file = path.join(values.previews, `preview-${String(ev.previewTokens ?? ev.tokensDone).padStart(3, "0")}.${format}`);
          await writeFile(file, await encode(contactSheet(ev.previews)));
        }
      } else if (ev.type === "completed") {
        bar.finish();
        const files: string[] = [];
        for (const img of ev.images) {
          const file = path.join(out, `${img.index + 1}.${format}`);
          await writeFile(file, await encode(img));
          files.push(file);
        }
        const grid = path.join(out, `grid.${format}`);
        await writeFile(grid, await encode(contactSheet(ev.images)));
        process.stdout.write(`${files.join("\n")}\n${grid}\n`);
        process.stderr.write(`seeds: ${ev.images.map((i) => i.seed).join(", ")}; ${(ev.timings.totalMs / 1000).toFixed(2)} s\n`);
      }
    }
  } finally {
    await model.release();
  }
}
