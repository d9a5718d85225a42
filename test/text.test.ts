import assert from "node:assert/strict";
import { test } from "node:test";
import { normalizeBasic } from "../src/engine/text.ts";
import { reference, sharedModel } from "./helpers.ts";

test("mosaic-basic normalisation matches the Python training code", () => {
  // The same cases as training/tests/test_training.py.
  assert.equal(normalizeBasic("  A Big RED circle!!  On the LEFT... "), "a big red circle , on the left");
  assert.equal(normalizeBasic("Crème brûlée, naïve"), "creme brulee , naive");
  assert.equal(normalizeBasic(",,hello,,"), "hello");
  assert.equal(normalizeBasic(""), "");
  const ref = reference();
  ref.prompts.forEach((p, i) => assert.equal(normalizeBasic(p), ref.normalised[i]));
});

test("token ids equal the ones the model was trained with", async () => {
  const model = await sharedModel();
  const ref = reference();
  ref.prompts.forEach((p, i) => {
    const e = model.prompts.encode(p);
    assert.deepEqual(e.ids, ref.inputIds[i]);
    assert.deepEqual(e.mask, ref.attentionMask[i]);
  });
});

test("unknown words map to the unknown token and are reported", async () => {
  const model = await sharedModel();
  const e = model.prompts.encode("a red zebra on a purple unicorn");
  assert.deepEqual(e.unknownWords, ["zebra", "unicorn"]);
  const unk = e.ids[3];
  assert.equal(e.ids[7], unk);
  assert.ok(e.ids.every((id) => id !== undefined && Number.isInteger(id)));
});

test("over-long prompts are truncated to the model's length, keeping the end token, and say so", async () => {
  const model = await sharedModel();
  const max = model.manifest.architecture.maxTextLength;
  const e = model.prompts.encode("red ".repeat(100));
  assert.equal(e.ids.length, max);
  assert.equal(e.truncatedTokens, 102 - max);
  const short = model.prompts.encode("red");
  assert.equal(e.ids[max - 1], short.ids[2], "the closing token survives truncation");
  assert.equal(short.truncatedTokens, 0);
});
