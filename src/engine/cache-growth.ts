/**
 * How long a cache the decoder step is given on the CPU when its graph takes any length
 * (docs/model-format.md): only the positions reached so far, rounded up by doubling.
 */

/**
 * How a HostState's cache length grows when the graph's is free: it starts at `first` positions and
 * doubles when a row reaches its end, up to N. Doubling keeps the moves to under one full cache in
 * all and the number of shapes ONNX Runtime sees small (4 at N = 256: 32, 64, 128, 256), while the
 * cache read by step p is under twice what p needs.
 */
export interface CacheGrowth {
  first: number;
}

export const DEFAULT_GROWTH: CacheGrowth = { first: 32 };

/** Whether the model's decoder step takes any cache length (model.json names the axis). */
export function hasFreeCacheLength(graphs: { decoderStep: { inputs: { name: string; shape: (string | number)[] }[] } }): boolean {
  const past = graphs.decoderStep.inputs.filter((i) => i.name.startsWith("past_"));
  return past.length > 0 && past.every((i) => typeof i.shape[i.shape.length - 2] === "string");
}

/** The cache length that holds `needed` positions: doubled from `current` (at least `first`), at most N. */
export function grownLength(current: number, needed: number, N: number, growth: CacheGrowth): number {
  let length = Math.max(current, Math.min(N, growth.first));
  while (length < needed && length < N) length = Math.min(N, length * 2);
  return length;
}
