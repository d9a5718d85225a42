import assert from "node:assert/strict";
import { test } from "node:test";
import { runAdherence } from "../scripts/adherence.ts";
import { sharedModel } from "./helpers.ts";

test("the TypeScript engine follows held-out prompts at least 80% of the time (model card check)", async () => {
  const summary = await runAdherence(await sharedModel());
  assert.equal(summary.images, 48);
  assert.ok(summary.adherent >= 0.8, `adherence ${JSON.stringify(summary)}`);
});
