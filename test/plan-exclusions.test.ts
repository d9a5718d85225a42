import assert from "node:assert/strict";
import { test } from "node:test";
import type { Model } from "../src/engine/model.ts";
import { validateManifest, type PlanExclusion } from "../src/engine/model-format.ts";
import { collect, finalImages, MODEL_DIR, reference, settingsOf, sharedModel, shippedShape, type Json } from "./helpers.ts";
import { readFileSync } from "node:fs";
import path from "node:path";

/** The shipped model with other plan exclusions (the sessions are shared; only the manifest differs). */
function withExclusions(model: Model, exclude: PlanExclusion[]): Model {
  const a = model.manifest.architecture;
  return { ...model, manifest: { ...model.manifest, architecture: { ...a, plan: { ...a.plan!, exclude } } } };
}

/** Whole token sequences (the plan first) of 3 × 9 images of a prompt that names no background. */
async function plans(model: Model): Promise<Int32Array[]> {
  const out: Int32Array[] = [];
  for (const seed of [11, 12, 13]) {
    const events = await collect(model, {
      prompt: "a pink heart", seed, count: 9, previewInterval: 0,
      sampling: { guidanceScale: 3, topK: 0, topP: 1, temperature: 1 },
    });
    out.push(...finalImages(events).map((img) => img.codes));
  }
  return out;
}

test("the PyTorch reference's tokens where the plan's exclusions change them", async (t) => {
  const model = await sharedModel();
  const ref = reference();
  if (!model.manifest.architecture.plan?.exclude?.length) {
    assert.equal(ref.excluded, undefined, "fixtures with exclusions for a model without them");
    t.skip(`${model.manifest.name} ${model.manifest.version} has no plan exclusions`);
    return;
  }
  // export.py writes the seeds whose tokens the exclusions changed, with and without them.
  const ex = ref.excluded;
  assert.ok(ex, "a model with plan exclusions ships the excluded fixture");
  for (let i = 0; i < ex.seeds.length; i++) {
    const [img] = finalImages(await collect(model, { prompt: ex.prompt, seed: ex.seeds[i]!, sampling: settingsOf(ex.settings), previewInterval: 0 }));
    assert.deepEqual(Array.from(img!.codes), ex.codes[i], `seed ${ex.seeds[i]}`);
    assert.notDeepEqual(ex.codes[i], ex.without[i], "the fixture's seeds are ones the exclusions change");
  }
});

test("an exclusion keeps a plan position off the tokens drawn at the earlier ones", async () => {
  const model = await sharedModel();
  const P = shippedShape().planLength;
  assert.ok(P > 1, "the shipped model writes a plan");
  const free = await plans(withExclusions(model, []));
  // A pair of plan positions that drew the same token in some images but not all (a background and a
  // shape in the same colour, where the model's own exclusions are lifted): the layout is the model's,
  // so the test finds the pair rather than naming it.
  let pair: [number, number] | null = null;
  for (let p = 1; p < P && !pair; p++) {
    for (let q = 0; q < p && !pair; q++) {
      const same = free.filter((s) => s[p] === s[q]).length;
      if (same > 0 && same < free.length) pair = [p, q];
    }
  }
  assert.ok(pair, "some pair of plan positions repeats a token in some of 27 images");
  const [p, q] = pair;
  const kept = await plans(withExclusions(model, [{ position: p, tokensAt: [q] }]));
  assert.equal(kept.filter((s) => s[p] === s[q]).length, 0, `position ${p} never draws position ${q}'s token`);
  assert.ok(kept.some((s, i) => s[p] !== free[i]![p]), "the excluded images drew another token");
});

test("model.json's plan exclusions are validated", () => {
  const file = path.join(MODEL_DIR, "model.json");
  const base: Json = JSON.parse(readFileSync(file, "utf8"));
  const P: number = base.architecture.plan.length;
  const withEx = (exclude: unknown) => ({ ...base, architecture: { ...base.architecture, plan: { ...base.architecture.plan, exclude } } });
  assert.deepEqual(validateManifest(withEx([{ position: P - 1, tokensAt: [0, 1] }])).architecture.plan!.exclude, [{ position: P - 1, tokensAt: [0, 1] }]);
  for (const [bad, says] of [
    [{ position: 1 }, "must be a list"],
    [[{ position: P, tokensAt: [0] }], "must be a plan position"],
    [[{ position: 2, tokensAt: [2] }], "positions before position"],
    [[{ position: 2, tokensAt: [-1] }], "positions before position"],
    [[{ position: 2, tokensAt: "0" }], "positions before position"],
    [["8"], "must be an object"],
  ] as const) {
    assert.throws(() => validateManifest(withEx(bad)), (e: Error & { code?: string }) => {
      assert.equal(e.code, "MODEL_INVALID");
      assert.ok(e.message.includes(says), e.message);
      return true;
    });
  }
});
