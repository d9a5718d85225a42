/** The VQ decoder: token grids -> RGB frames. */
import ort from "onnxruntime-node";
import type { Model } from "./model.ts";
import type { Frame } from "./request.ts";

export function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor("int64", BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/** Decode full or partial grids of n images with the VQ decoder -> RGB frames. */
export async function decodeGrids(model: Pick<Model, "manifest" | "vqDecoder">, grids: Int32Array[]): Promise<Frame[]> {
  const a = model.manifest.architecture;
  const cells = a.grid.height * a.grid.width;
  const flat = new Int32Array(grids.length * cells);
  grids.forEach((g, i) => flat.set(g, i * cells));
  const out = await model.vqDecoder.run({ codes: int64(flat, [grids.length, a.grid.height, a.grid.width]) });
  const pixels = out.pixels!.data as Float32Array;
  const size = a.imageSize.height * a.imageSize.width * 3;
  return grids.map((_, i) => {
    const data = new Uint8Array(size);
    for (let j = 0; j < size; j++) data[j] = Math.round(Math.min(1, Math.max(0, pixels[i * size + j]!)) * 255);
    return { width: a.imageSize.width, height: a.imageSize.height, data };
  });
}

