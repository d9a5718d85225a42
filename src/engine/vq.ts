/** The VQ decoder: token grids -> RGB frames. */
import ort from "onnxruntime-node";
import type { Model } from "./model.ts";
import { mostFrequent } from "./previews.ts";
import type { Frame } from "./request.ts";

export function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/**
 * Pixels one VQ run decodes at most. The VQGAN's activations grow with the images decoded together:
 * at DALL·E-mini size (256×256) a 3×3 grid decoded in one run held about 2.4 GB more than the weights
 * at its peak (docs/performance.md), and batching images gains a CPU little (one at a time was within run-to-run noise of two at a time),
 * so 256×256 images go one at a time. The shipped 64×64 model still decodes a 3×3 grid in one run.
 */
const PIXELS_PER_RUN = 256 * 256;

/** Whether the model's VQ graph takes fewer rows than the grid's (model.json names the axis). */
export function hasFreeRows(manifest: Model["manifest"]): boolean {
  const codes = manifest.graphs.vqDecoder.inputs.find((i) => i.name === "codes");
  return typeof codes?.shape[1] === "string";
}

/**
 * Decode grids of n images with the VQ decoder -> RGB frames of the full image size. A grid may hold
 * fewer rows than the model's (a preview's strip, `previewGrid`, on a graph with free rows): the
 * frame is then the strip's pixels, and below them one colour, the mean of the strip's cells that
 * hold its most frequent code (the fill code: usually the background).
 */
export async function decodeGrids(model: Pick<Model, "manifest" | "vqDecoder">, grids: Int32Array[]): Promise<Frame[]> {
  const vq = model.vqDecoder;
  if (!vq) throw new Error("this model was loaded without its VQ decoder (its images decode in the preview thread)");
  const a = model.manifest.architecture;
  const frames: Frame[] = [];
  for (let i = 0; i < grids.length;) {
    const rows = rowsOf(grids[i]!, a);
    const pixels = rows * (a.imageSize.height / a.grid.height) * a.imageSize.width;
    const per = Math.max(1, Math.floor(PIXELS_PER_RUN / pixels));
    let end = i + 1;
    while (end < grids.length && end - i < per && grids[end]!.length === grids[i]!.length) end++;
    frames.push(...(await decodeRun(vq, a, grids.slice(i, end), rows)));
    i = end;
  }
  return frames;
}

function rowsOf(grid: Int32Array, a: Model["manifest"]["architecture"]): number {
  const rows = grid.length / a.grid.width;
  if (!Number.isInteger(rows) || rows < 1 || rows > a.grid.height) {
    throw new Error(`a grid of ${grid.length} codes is not whole rows of ${a.grid.width} (at most ${a.grid.height})`);
  }
  return rows;
}

async function decodeRun(vq: ort.InferenceSession, a: Model["manifest"]["architecture"], grids: Int32Array[], rows: number): Promise<Frame[]> {
  const cells = rows * a.grid.width;
  const flat = new Int32Array(grids.length * cells);
  grids.forEach((g, i) => flat.set(g, i * cells));
  const out = await vq.run({ codes: int64(flat, [grids.length, rows, a.grid.width]) });
  const pixels = out.pixels!.data as Float32Array;
  const rowBytes = a.imageSize.width * 3;
  const decoded = (pixels.length / grids.length / rowBytes) | 0;
  return grids.map((grid, i) => {
    const data = new Uint8Array(a.imageSize.height * rowBytes);
    const src = pixels.subarray(i * decoded * rowBytes, (i + 1) * decoded * rowBytes);
    for (let j = 0; j < src.length; j++) data[j] = Math.round(Math.min(1, Math.max(0, src[j]!)) * 255);
    if (decoded < a.imageSize.height) {
      const colour = fillColour(data, grid, a);
      for (let p = decoded * rowBytes; p < data.length; p += 3) data.set(colour, p);
    }
    return { width: a.imageSize.width, height: a.imageSize.height, data };
  });
}

/** The colour of the rest of a strip's frame: the mean of its fill-code cells. */
function fillColour(data: Uint8Array, grid: Int32Array, a: Model["manifest"]["architecture"]): number[] {
  const fill = mostFrequent(grid, grid.length, a.codebookSize);
  const cellH = a.imageSize.height / a.grid.height, cellW = a.imageSize.width / a.grid.width;
  let r = 0, g = 0, b = 0, n = 0;
  grid.forEach((code, cell) => {
    if (code !== fill) return;
    const y0 = Math.floor(cell / a.grid.width) * cellH, x0 = (cell % a.grid.width) * cellW;
    for (let y = y0; y < y0 + cellH; y++) {
      for (let x = x0; x < x0 + cellW; x++) {
        const p = (y * a.imageSize.width + x) * 3;
        r += data[p]!;
        g += data[p + 1]!;
        b += data[p + 2]!;
        n++;
      }
    }
  });
  return [r, g, b].map((s) => Math.round(s / n));
}
