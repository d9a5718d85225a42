import assert from "node:assert/strict";
import { test } from "node:test";
import { DecodeBatch } from "../src/engine/batch.ts";
import { regroupRows } from "../src/engine/batch-state.ts";
import type { Member } from "../src/engine/member.ts";
import type { GenerationEvent } from "../src/engine/generate.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import { distinctRows, encodeRows } from "../src/engine/encode-rows.ts";
import { decodeGrids, int64 } from "../src/engine/vq.ts";
import { collect, finalImages, maxAbsDiff, MODEL_DIR, sharedModel, shippedShape } from "./helpers.ts";

const sampling = { topK: 32, topP: 0.95, temperature: 1 };
/** The shipped model's preview points and grid size (model.json). */
const shape = shippedShape();

function codesOf(events: GenerationEvent[]): number[][] {
  const done = events.find((e) => e.type === "completed");
  assert.ok(done && done.type === "completed");
  return done.images.map((i) => Array.from(i.codes));
}

/** Runs the requests joined into one batch on `model` and alone on `reference`: codes must agree. */
async function joinedMatchesAlone(model: Model, reference: Model): Promise<void> {
  const requests = [
    { prompt: "a big red circle in the centre, blue background", count: 2, seed: 70, sampling, previewInterval: 64 },
    { prompt: "a small white square at the top left, black background", count: 1, seed: 71, sampling, previewInterval: 0 },
    { prompt: "green background with a big yellow triangle at the bottom", count: 3, seed: 72, sampling, previewInterval: 32 },
    // Without guidance: one row per image instead of two, in the same batch.
    { prompt: "a small orange circle on the right, purple background", count: 1, seed: 73, sampling: { guidanceScale: 1 } },
  ];
  const alone = await Promise.all(requests.map(async (r) => codesOf(await collect(reference, r))));

  const batch = new DecodeBatch(model);
  const members: Member[] = [];
  const events: GenerationEvent[][] = requests.map(() => []);
  // Join at steps 0, 0, 40 and 100: rows at different positions share every step.
  const joinAt = [0, 0, 40, 100];
  let step = 0;
  const sizes = new Set<number>();
  while (members.length < requests.length || batch.active) {
    requests.forEach((r, i) => {
      if (joinAt[i] === step && !members[i]) members[i] = batch.admit(r);
    });
    await batch.step();
    sizes.add(batch.images);
    members.forEach((m, i) => events[i]!.push(...m.drain()));
    step++;
  }
  assert.ok(sizes.has(7), "all four were in the batch together at some point");
  events.forEach((ev, i) => assert.deepEqual(codesOf(ev), alone[i], `request ${i} differs from its run alone`));
  // Previews still arrive on each member's own schedule.
  const previewSteps = events[2]!.filter((e) => e.type === "progress" && e.previews).map((e) => e.type === "progress" && (e.previewTokens ?? e.tokensDone));
  assert.deepEqual(previewSteps, shape.previewSteps(32));
}

test("generations that join a running batch at different steps come out as they do alone", async () => {
  const model = await sharedModel();
  await joinedMatchesAlone(model, model);
});

test("with the state kept by the device graphs (GPU path, run here on the CPU) results are the same", async () => {
  const model = await loadModel(MODEL_DIR, { state: "device" });
  try {
    assert.ok(model.deviceOps, "the device-state graphs are in use");
    // Compared with runs alone on the host-state model (the default on the CPU).
    await joinedMatchesAlone(model, await sharedModel());
  } finally {
    await model.release();
  }
});

test("a member cancelled mid-batch leaves; the others finish unchanged", async () => {
  const model = await sharedModel();
  const a = { prompt: "a big blue square on the left, white background", seed: 80, sampling };
  const b = { prompt: "a small red triangle at the top, yellow background", seed: 81, sampling };
  const aloneB = codesOf(await collect(model, b));
  const batch = new DecodeBatch(model);
  const controller = new AbortController();
  const ma = batch.admit({ ...a, signal: controller.signal });
  const mb = batch.admit(b);
  const evB: GenerationEvent[] = [];
  const evA: GenerationEvent[] = [];
  for (let step = 0; batch.active; step++) {
    if (step === 30) controller.abort();
    await batch.step();
    evA.push(...ma.drain());
    evB.push(...mb.drain());
  }
  const last = evA[evA.length - 1]!;
  assert.equal(last.type, "cancelled");
  assert.equal(last.type === "cancelled" && last.tokensDone, 30);
  assert.deepEqual(codesOf(evB), aloneB);
  assert.equal(finalImages(evB).length, 1);
});

test("a model opened without its VQ decoder decodes nothing itself: its images come from the decoder it is given, unchanged", async () => {
  const full = await sharedModel();
  const bare = await loadModel(MODEL_DIR, { vqDecoder: false });
  try {
    assert.equal(bare.vqDecoder, null);
    const req = { prompt: "a big red circle in the centre, blue background", count: 2, seed: 5, sampling, previewInterval: 0 };
    const reference = finalImages(await collect(full, req));
    // As the engine thread does on the CPU: every image decoded by a VQ decoder that lives elsewhere.
    let calls = 0;
    const batch = new DecodeBatch(bare, { decodeImages: (grids) => { calls++; return decodeGrids(full, grids); } });
    const member = batch.admit(req);
    const events: GenerationEvent[] = [];
    while (batch.active) {
      await batch.step();
      events.push(...member.drain());
    }
    assert.equal(calls, 1);
    assert.deepEqual(finalImages(events), reference);
    await assert.rejects(decodeGrids(bare, [new Int32Array(shape.imageCodes)]), /without its VQ decoder/);
  } finally {
    await bare.release();
  }
});

test("the text encoder runs each distinct row once; every row gets what encoding it alone gives", async () => {
  const model = await sharedModel();
  const rows = ["a big red circle in the centre, blue background", "a small white square at the top left, black background"]
    .map((p) => model.prompts.encode(p));
  const empty = model.prompts.encodeUnconditional();
  const order = [rows[0]!, empty, rows[0]!, empty, rows[1]!, empty, rows[0]!];
  const ids = order.map((e) => e.ids), masks = order.map((e) => e.mask);
  assert.deepEqual(distinctRows(ids, masks), { distinct: [0, 1, 4], of: [0, 1, 0, 1, 2, 1, 0] });
  const got = await encodeRows(model, ids, masks);
  assert.deepEqual(got.k.dims.slice(0, 2), [model.manifest.architecture.decoderLayers, order.length]);
  const T = model.manifest.architecture.maxTextLength;
  const all = await model.textEncoder.run({
    input_ids: int64(ids.flat(), [ids.length, T]),
    attention_mask: int64(masks.flat(), [masks.length, T]),
  });
  for (const [name, a, b] of [["cross_k", got.k, all.cross_k!], ["cross_v", got.v, all.cross_v!]] as const) {
    const diff = maxAbsDiff(a.data as Float32Array, b.data as Float32Array);
    assert.ok(diff < 1e-5, `${name}: ${diff} from encoding all ${order.length} rows`);
  }
});

test("regrouping a stacked array in place gives what copying the kept and joining rows into a new one gives", () => {
  // Every mix of rows leaving and joining, batches growing and shrinking, with and without fresh rows.
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  for (let trial = 0; trial < 400; trial++) {
    const L = 1 + rand(4), B = 1 + rand(9), rowSize = 1 + rand(5), joinRows = rand(6);
    const kept = Array.from({ length: B }, (_, r) => r).filter(() => rand(3) > 0);
    if (kept.length === 0) kept.push(rand(B));
    const B2 = kept.length + joinRows;
    const fresh = rand(2) ? Float32Array.from({ length: L * joinRows * rowSize }, () => -1 - rand(1000)) : null;
    const room = L * Math.max(B, B2) * rowSize + rand(3) * rowSize;
    const a = new Float32Array(room).map((_, i) => (i < L * B * rowSize ? 1 + i : 9999));
    const expected = new Float32Array(L * B2 * rowSize);
    for (let l = 0; l < L; l++) {
      kept.forEach((row, i) => expected.set(a.subarray((l * B + row) * rowSize, (l * B + row + 1) * rowSize), (l * B2 + i) * rowSize));
      for (let j = 0; j < joinRows; j++) {
        if (fresh) expected.set(fresh.subarray((l * joinRows + j) * rowSize, (l * joinRows + j + 1) * rowSize), (l * B2 + kept.length + j) * rowSize);
      }
    }
    regroupRows(a, B, kept, fresh, joinRows, rowSize, L);
    assert.deepEqual(a.subarray(0, L * B2 * rowSize), expected, `trial ${trial}: L ${L}, B ${B}, kept ${kept}, joining ${joinRows}`);
  }
});
