import assert from "node:assert/strict";
import { test } from "node:test";
import { runAdherence, SHIPPED_HELD_OUT } from "../scripts/adherence.ts";
import { sharedModel } from "./helpers.ts";

// The shipped model (mosaic-shapes 1.0.0) on its own held-out prompts, through the TypeScript engine,
// scored by training/mosaic_train/adherence.py (adherent = background, colour and shape all right).
// Measured 2026-11-30: background 100%, colour 81%, shape 73%, adherent 69%; the floors sit a little
// under. When a model trained on the new captions ships (issue #13), this runs its card's sets
// (`{ set: "held-out" }` and `{ set: "free-phrasing" }`) instead.
test("the TypeScript engine follows the shipped model's held-out prompts (model card check)", async () => {
  const summary = await runAdherence(await sharedModel(), { file: SHIPPED_HELD_OUT });
  assert.equal(summary.images, 48);
  assert.ok(summary.background! >= 0.95, `background ${JSON.stringify(summary)}`);
  assert.ok(summary.colour >= 0.75, `colour ${JSON.stringify(summary)}`);
  assert.ok(summary.adherent >= 0.6, `adherence ${JSON.stringify(summary)}`);
});
