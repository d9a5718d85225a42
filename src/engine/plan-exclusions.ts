/**
 * The scene plan's exclusions (`architecture.plan.exclude`, docs/model-format.md): at some plan positions
 * the tokens already drawn at earlier positions may not be drawn again. mosaic-shapes writes the
 * background last and never gives it a shape's colour: a scene training never shows, which the model
 * drew for 7-13% of the prompts naming no background while it wrote the background first
 * (training/mosaic_train/plan.py). A rule of the model's data, so the model folder carries it; the graph
 * cannot apply it, since a decoder step sees its own token, not the earlier ones.
 *
 * Applied like the graph's own slot mask (training/mosaic_train/generate.py does the same): the logit
 * is set to BLOCKED in the conditional and the unconditional row before guidance, so the guided score
 * is BLOCKED too (u + s·(c − u) with c = u), and exp(BLOCKED − best) is 0 in float64: never drawn, by
 * any sampling setting, and the other ids' scores are untouched, so tokens stay the reference's.
 */
import type { Architecture } from "./model-format.ts";

/** The graph's and the reference's logit for an id a position may not draw (plan.BLOCKED). */
export const BLOCKED = -1e4;

/** position -> the earlier positions whose drawn tokens it may not draw; empty without exclusions. */
export function planExclusions(a: Architecture): Map<number, number[]> {
  return new Map((a.plan?.exclude ?? []).map((e) => [e.position, e.tokensAt]));
}

/** Blocks, in a row of logits, the tokens an image drew at `earlier` positions. */
export function blockDrawn(row: Float32Array, tokens: Int32Array, earlier: readonly number[]): void {
  for (const q of earlier) row[tokens[q]!] = BLOCKED;
}
