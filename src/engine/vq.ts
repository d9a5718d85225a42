/** The VQ decoder: token grids -> RGB frames. */
import ort from "onnxruntime-node";
import type { Model } from "./model.ts";
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

/** Decode full or partial grids of n images with the VQ decoder -> RGB frames. */
export async function decodeGrids(model: Pick<Model, "manifest" | "vqDecoder">, grids: Int32Array[]): Promise<Frame[]> {
  const vq = model.vqDecoder;
  if (!vq) throw new Error("this model was loaded without its VQ decoder (its images decode in the preview thread)");
  const a = model.manifest.architecture;
  const per = Math.max(1, Math.floor(PIXELS_PER_RUN / (a.imageSize.height * a.imageSize.width)));
  const frames: Frame[] = [];
  for (let i = 0; i < grids.length; i += per) frames.push(...(await decodeRun(vq, a, grids.slice(i, i + per))));
  return frames;
}

async function decodeRun(vq: ort.InferenceSession, a: Model["manifest"]["architecture"], grids: Int32Array[]): Promise<Frame[]> {
  const cells = a.grid.height * a.grid.width;
  const flat = new Int32Array(grids.length * cells);
  grids.forEach((g, i) => flat.set(g, i * cells));
  const out = await vq.run({ codes: int64(flat, [grids.length, a.grid.height, a.grid.width]) });
  const pixels = out.pixels!.data as Float32Array;
  const size = a.imageSize.height * a.imageSize.width * 3;
  return grids.map((_, i) => {
    const data = new Uint8Array(size);
    for (let j = 0; j < size; j++) data[j] = Math.round(Math.min(1, Math.max(0, pixels[i * size + j]!)) * 255);
    return { width: a.imageSize.width, height: a.imageSize.height, data };
  });
}
