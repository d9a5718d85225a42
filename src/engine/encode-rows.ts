/**
 * The text encoder over a batch's joining rows. A generation of n images repeats its two rows (the
 * prompt, the empty prompt for guidance) n times: on the CPU the encoder runs each distinct row once
 * and the outputs are copied out to every row that repeats it (a 3×3 at DALL·E-mini size encoded 18
 * rows in 1.80 s, most of the time to its first preview, and 2 rows in 0.2–0.3 s; docs/performance.md).
 * A GPU provider leaves the outputs in GPU memory, where no such copy is built: it encodes every row.
 */
import ort from "onnxruntime-node";
import type { Encoded } from "./batch-state.ts";
import type { Model } from "./model.ts";
import { int64 } from "./vq.ts";

export async function encodeRows(model: Pick<Model, "textEncoder" | "deviceOps" | "manifest">, ids: number[][], masks: number[][]): Promise<Encoded> {
  const T = model.manifest.architecture.maxTextLength;
  const rows = model.deviceOps ? { distinct: ids.map((_, i) => i), of: ids.map((_, i) => i) } : distinctRows(ids, masks);
  const out = await model.textEncoder.run({
    input_ids: int64(rows.distinct.flatMap((i) => ids[i]!), [rows.distinct.length, T]),
    attention_mask: int64(rows.distinct.flatMap((i) => masks[i]!), [rows.distinct.length, T]),
  });
  if (rows.distinct.length === ids.length) return { k: out.cross_k!, v: out.cross_v! };
  return { k: spreadRows(out.cross_k!, rows.of), v: spreadRows(out.cross_v!, rows.of) };
}

/** The first row of each distinct (ids, mask) row, and for every row the index of its distinct row. */
export function distinctRows(ids: number[][], masks: number[][]): { distinct: number[]; of: number[] } {
  const seen = new Map<string, number>();
  const distinct: number[] = [];
  const of = ids.map((row, i) => {
    const key = `${row.join(",")}|${masks[i]!.join(",")}`;
    let d = seen.get(key);
    if (d === undefined) {
      d = distinct.length;
      seen.set(key, d);
      distinct.push(i);
    }
    return d;
  });
  return { distinct, of };
}

/** Encoder output [L, distinct, H, T, D] -> [L, rows, H, T, D], row r taken from distinct row of[r]. */
function spreadRows(t: ort.Tensor, of: number[]): ort.Tensor {
  const [L, U, ...rest] = t.dims as number[];
  const size = rest.reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const out = new Float32Array(L! * of.length * size);
  for (let l = 0; l < L!; l++) {
    of.forEach((d, r) => out.set(src.subarray((l * U! + d) * size, (l * U! + d + 1) * size), (l * of.length + r) * size));
  }
  return new ort.Tensor("float32", out, [L!, of.length, ...rest]);
}
