/** What the benchmarks share: summary statistics and a timed generation. */
import { generate, type GenerateRequest, type Timings } from "../src/engine/generate.ts";
import type { Model } from "../src/engine/model.ts";

export function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return { median: s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

export const median = (xs: number[]): number => stats(xs).median;

/** One generation run to completion; its engine timings. */
export async function timed(model: Model, req: GenerateRequest): Promise<Timings> {
  for await (const ev of generate(model, req)) if (ev.type === "completed") return ev.timings;
  throw new Error("generation did not complete");
}
