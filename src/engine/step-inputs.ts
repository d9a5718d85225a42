/**
 * The decoder step's cache and cross-attention inputs from the stacked tensors a batch keeps: as they
 * are for a stacked graph (the shipped 1.0.0), or each layer's view of them for a per-layer graph
 * (docs/model-format.md, "Per-layer inputs").
 */
import ort from "onnxruntime-node";
import type { StepFeeds } from "./batch-state.ts";
import { perLayerInputs } from "./model-format.ts";

const size = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** The decoder step's cache and cross-attention inputs from stacked host tensors, for either kind of graph. */
export function hostStepInputs(graphs: { decoderStep: { inputs: { name: string }[] } }, feeds: StepFeeds, L: number): Record<string, ort.Tensor> {
  return perLayerInputs(graphs) ? layerViews(feeds, L) : { ...feeds };
}

/**
 * Each layer's slice of the stacked feeds as the per-layer decoder step names them (`past_k_0`, …):
 * views of the same arrays, so nothing is copied (host tensors only).
 */
export function layerViews(feeds: StepFeeds, L: number): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const [kind, t] of Object.entries(feeds)) {
    const data = t.data as Float32Array;
    const [, ...dims] = t.dims;
    const n = size(dims);
    for (let l = 0; l < L; l++) out[`${kind}_${l}`] = new ort.Tensor("float32", data.subarray(l * n, (l + 1) * n), dims);
  }
  return out;
}
