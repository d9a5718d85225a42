import assert from "node:assert/strict";
import { test } from "node:test";
import os from "node:os";
import ort from "onnxruntime-node";
import { MosaicError } from "../src/engine/errors.ts";
import { DecodeBatch } from "../src/engine/batch.ts";
import { decodeGrids, generate, type GenerationEvent, type ProgressEvent } from "../src/engine/generate.ts";
import { sequenceLength } from "../src/engine/model-format.ts";
import { mosaic, mostFrequent } from "../src/engine/previews.ts";
import { engineThreads } from "../src/engine/providers.ts";
import { collect, finalImages, int64, maxAbsDiff, previewPoints, reference, referenceDecoder, settingsOf, sharedModel, shippedShape } from "./helpers.ts";

// ONNX Runtime and PyTorch order float sums differently; 1e-4 absolute is far below anything that
// changes a token (the greedy test below checks whole sequences exactly).
const TOL = 1e-4;
/** The shipped model's decoder steps per image, its grid's codes and its preview points (model.json). */
const shape = shippedShape();

test("the ONNX graphs reproduce PyTorch's outputs on fixed inputs", async () => {
  const model = await sharedModel();
  const ref = reference();
  const a = model.manifest.architecture;
  const mask = int64(ref.attentionMask);
  const cross = await model.textEncoder.run({ input_ids: int64(ref.inputIds), attention_mask: mask });
  const ck = cross.cross_k!.data as Float32Array;
  const sample = ref.crossKSample.map((_, i) => ck[i * ref.crossKStride]!);
  assert.ok(maxAbsDiff(sample, ref.crossKSample) < TOL, "text encoder");

  const step = referenceDecoder(model, cross, mask, sequenceLength(a));
  for (let pos = 0; pos < ref.stepTokens.length; pos++) {
    const logits = await step(ref.stepTokens[pos] as [number, number], pos);
    assert.ok(maxAbsDiff(logits, ref.stepLogits[pos]!.flat()) < TOL, `decoder step ${pos}`);
    // The cache-based step equals the full no-cache forward pass over the same tokens.
    assert.ok(maxAbsDiff(logits, ref.fullForwardLogits[pos]!.flat()) < TOL, `cache vs no cache at ${pos}`);
  }

  const [frame] = await decodeGrids(model, [Int32Array.from(ref.vq.codes)]);
  const out = await model.vqDecoder!.run({ codes: new ort.Tensor("int64", BigInt64Array.from(ref.vq.codes.map(BigInt)), [1, a.grid.height, a.grid.width]) });
  const pixels = out.pixels!.data as Float32Array;
  const sampled = ref.vq.pixelSample.map((_, i) => pixels[i * ref.vq.pixelStride]!);
  assert.ok(maxAbsDiff(sampled, ref.vq.pixelSample) < TOL, "VQ decoder");
  // The engine's frame is those pixels as bytes: [0, 1] clamped, times 255, rounded.
  assert.equal(frame!.data.length, a.imageSize.height * a.imageSize.width * 3);
  // The graph's pixels are [1, H, W, 3], the frame's layout.
  const bytes = ref.vq.pixelSample.map((_, i) => frame!.data[i * ref.vq.pixelStride]!);
  const expected = ref.vq.pixelSample.map((p) => Math.round(Math.min(1, Math.max(0, p)) * 255));
  assert.ok(maxAbsDiff(bytes, expected) <= 1, `decoded bytes differ from the reference pixels: ${maxAbsDiff(bytes, expected)}`);
});

test("greedy and seeded sampling give exactly the PyTorch reference tokens", async () => {
  const model = await sharedModel();
  const ref = reference();
  for (const [name, r, prompts] of [["greedy", ref.greedy, ref.prompts], ["sampled", ref.sampled, [ref.prompts[0]!, ref.prompts[0]!]]] as const) {
    for (let i = 0; i < r.seeds.length; i++) {
      const [img] = finalImages(await collect(model, { prompt: prompts[i]!, seed: r.seeds[i]!, sampling: settingsOf(r.settings), previewInterval: 0 }));
      assert.deepEqual(Array.from(img!.codes), r.codes[i], `${name} ${i}`);
    }
  }
});

test("same prompt, settings and seed give the same image whatever else is in the batch", async () => {
  const model = await sharedModel();
  const sampling = { topK: 32, topP: 0.95, temperature: 1 };
  const prompt = "a small green triangle on the right, white background";
  const batch = finalImages(await collect(model, { prompt, count: 3, seed: 500, sampling, previewInterval: 0 }));
  const again = finalImages(await collect(model, { prompt, count: 3, seed: 500, sampling, previewInterval: 0 }));
  const alone = finalImages(await collect(model, { prompt, count: 1, seed: 501, sampling, previewInterval: 0 }));
  assert.deepEqual(batch.map((i) => i.seed), [500, 501, 502]);
  assert.deepEqual(Array.from(batch[1]!.codes), Array.from(alone[0]!.codes), "image 2 of 3 equals the same seed alone");
  assert.deepEqual(Buffer.from(batch[1]!.data), Buffer.from(alone[0]!.data));
  batch.forEach((img, i) => assert.deepEqual(Array.from(img.codes), Array.from(again[i]!.codes), "deterministic per seed"));
  assert.notDeepEqual(Array.from(batch[0]!.codes), Array.from(batch[1]!.codes), "different seeds differ");
});

test("preview points are counted in codes after the plan, and the last token always has one", () => {
  // The schedule the tests below take from the shipped model: written out here for a 16×16 grid
  // without a plan (1.0.0) and with a 9-token scene plan.
  assert.deepEqual(previewPoints(256, 64), [64, 128, 192, 256]);
  assert.deepEqual(previewPoints(256, 50), [50, 100, 150, 200, 250, 256]);
  assert.deepEqual(previewPoints(256, 256), [256]);
  assert.deepEqual(previewPoints(256, 0), []);
  assert.deepEqual(previewPoints(265, 64, 9), [73, 137, 201, 265]);
  assert.deepEqual(previewPoints(265, 256, 9), [265]);
  assert.equal(previewPoints(265, 16, 9).length, 16);
});

test("previews arrive in order, every K tokens, and the last equals the final image", async () => {
  const model = await sharedModel();
  // Every 16 codes, every 50 (the last one short), only the final grid (an interval of the whole grid), none.
  for (const interval of [16, 50, shape.imageCodes, 0]) {
    const due = shape.previewSteps(interval);
    const events = await collect(model, { prompt: "a big blue square in the centre, yellow background", count: 2, seed: 3, previewInterval: interval });
    const withPreviews = events.filter((e): e is ProgressEvent => e.type === "progress" && e.previews !== undefined);
    assert.equal(withPreviews.length, due.length, `interval ${interval}`);
    const done = withPreviews.map((e) => e.previewTokens ?? e.tokensDone);
    assert.deepEqual(done, [...done].sort((x, y) => x - y));
    if (due.length > 0) {
      assert.equal(done[0], due[0], "the first preview is at the first due point (the whole sequence if the interval is the grid)");
      const last = withPreviews[withPreviews.length - 1]!;
      assert.equal(last.tokensDone, shape.sequenceLength);
      finalImages(events).forEach((img, i) => assert.deepEqual(Buffer.from(last.previews![i]!.data), Buffer.from(img.data)));
    }
    const kinds = events.map((e) => e.type);
    assert.equal(kinds[0], "started");
    assert.equal(kinds[kinds.length - 1], "completed");
    assert.equal(kinds.filter((k) => k === "progress").length, shape.sequenceLength, "one progress event per decoder step");
  }
});

test("a partial preview shows the generated rows and fills the rest, not noise", async () => {
  const model = await sharedModel();
  const events = await collect(model, { prompt: "a big red circle at the bottom, green background", seed: 1, previewInterval: 64 });
  const first = events.find((e): e is ProgressEvent => e.type === "progress" && e.previews !== undefined)!;
  const [final] = finalImages(events);
  const frame = first.previews![0]!;
  // The first three token rows (of the four generated) already look like the final image; the
  // fourth may still change a little, as the decoder looks one or two rows below.
  const rows = frame.width * ((frame.height / model.manifest.architecture.grid.height) * 3) * 3;
  let diff = 0;
  for (let i = 0; i < rows; i++) diff += Math.abs(frame.data[i]! - final!.data[i]!);
  assert.ok(diff / rows <= 8, `top rows differ by ${diff / rows} per channel on average`);
});

test("the per-token mosaic draws each code's patch and looks like the final image", async () => {
  const model = await sharedModel();
  const a = model.manifest.architecture;
  const p = model.manifest.previews.codePatches!.patchSize;
  const g = { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p };
  const [img] = finalImages(await collect(model, { prompt: "a big red circle in the centre, blue background", seed: 1, previewInterval: 0 }));
  // The image's grid of codes (a scene plan, where the model writes one, comes before it).
  const codes = shape.codesOf(img!.codes);
  const cells = shape.imageCodes;
  const full = mosaic(codes, cells, model.codePatches!, g, a.codebookSize);
  const width = a.grid.width * p;
  const px = (data: Uint8Array, x: number, y: number) => Array.from(data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3));
  // Each cell is exactly its code's patch.
  for (const cell of [0, 17, 136, cells - 1]) {
    const code = codes[cell]!, gy = Math.floor(cell / a.grid.width), gx = cell % a.grid.width;
    assert.deepEqual(px(full, gx * p, gy * p), Array.from(model.codePatches!.subarray(code * p * p * 3, code * p * p * 3 + 3)), `cell ${cell}`);
  }
  // What a user sees: a red centre on a blue background, close to the decoded image.
  const [cr, cg, cb] = px(full, width / 2, width / 2) as [number, number, number];
  const [br, , bb] = px(full, 1, 1) as [number, number, number];
  assert.ok(cr > 150 && cr > cg + 60 && cr > cb + 60, `centre is red: ${[cr, cg, cb]}`);
  assert.ok(bb > 150 && bb > br + 60, `corner is blue: ${px(full, 1, 1)}`);
  let diff = 0;
  for (let i = 0; i < full.length; i++) diff += Math.abs(full[i]! - img!.data[i]!);
  assert.ok(diff / full.length < 20, `mosaic vs final image: ${diff / full.length} per channel`);
  // Half way: the generated half is drawn, the rest filled with the most frequent code so far.
  const half = mosaic(codes, cells / 2, model.codePatches!, g, a.codebookSize);
  assert.deepEqual(half.subarray(0, half.length / 2), full.subarray(0, full.length / 2));
  const fill = mostFrequent(codes, cells / 2, a.codebookSize);
  assert.deepEqual(px(half, width - 1, width - 1), Array.from(model.codePatches!.subarray((fill + 1) * p * p * 3 - 3, (fill + 1) * p * p * 3)));
  assert.ok(mosaic(codes, 0, model.codePatches!, g, a.codebookSize).every((v) => v === 128), "grey before any token");
});

test("a resumed generation replays its saved codes and ends byte-identical to an uninterrupted run", async () => {
  const model = await sharedModel();
  for (const sampling of [{ topK: 16, temperature: 0.7 }, { topK: 1 }, { guidanceScale: 3, topK: 32, topP: 0.9, temperature: 1 }]) {
    const req = { prompt: "a small yellow triangle on the left, purple background", count: 3, seed: 41, sampling, previewInterval: 64 };
    const whole = await collect(model, req);
    const ref = finalImages(whole);
    for (const at of [1, 100, 200]) {
      const saved = ref.map((img) => { const c = img.codes.slice(); c.fill(0, at); return c; });
      const events = await collect(model, { ...req, resume: { codes: saved, tokensDone: at } });
      const images = finalImages(events);
      images.forEach((img, i) => {
        assert.deepEqual(Array.from(img.codes), Array.from(ref[i]!.codes), `${JSON.stringify(sampling)} resumed at ${at}, image ${i}`);
        assert.deepEqual(Buffer.from(img.data), Buffer.from(ref[i]!.data));
      });
      const progress = events.filter((e): e is ProgressEvent => e.type === "progress");
      assert.equal(progress[0]!.tokensDone, at, "progress continues from the saved point, not from zero");
      const previewsAt = progress.filter((e) => e.previews).map((e) => e.previewTokens ?? e.tokensDone);
      assert.deepEqual(previewsAt, shape.previewSteps(64).filter((t) => t > at), "previews already made are not made again");
    }
  }
});

test("a slow preview decode does not hold the decoder back; the newest grid wins; the last preview and final images arrive", async () => {
  const model = await sharedModel();
  const req = { prompt: "a big blue square in the centre, yellow background", count: 2, seed: 3 };
  const run = async (previewInterval: number, delayMs: number) => {
    const batch = new DecodeBatch(model, {
      decodePreviews: async (grids) => {
        await new Promise((r) => setTimeout(r, delayMs));
        return decodeGrids(model, grids);
      },
    });
    const member = batch.admit({ ...req, previewInterval });
    const events: GenerationEvent[] = [];
    const t0 = performance.now();
    while (!member.done) {
      await batch.step();
      events.push(...member.drain());
    }
    return { events, ms: performance.now() - t0 };
  };
  await run(0, 0); // warm-up
  const off = await run(0, 0);
  // A preview every 16 codes (16 of them for a 16×16 grid) at 150 ms each: 2.4 s if decoding waited for them.
  const due = shape.previewSteps(16);
  const slow = await run(16, 150);
  assert.ok(slow.ms < off.ms + 600, `decoding with slow previews took ${slow.ms.toFixed(0)} ms against ${off.ms.toFixed(0)} ms without previews`);
  const progress = slow.events.filter((e): e is ProgressEvent => e.type === "progress");
  assert.deepEqual(progress.map((e) => e.tokensDone), Array.from({ length: shape.sequenceLength }, (_, i) => i + 1), "one progress event per token, in order");
  const shown = progress.filter((e) => e.previews).map((e) => e.previewTokens!);
  assert.ok(shown.length < due.length, `stale previews were skipped (${shown.length} of ${due.length} shown)`);
  assert.deepEqual(shown, [...shown].sort((a, b) => a - b), "previews in order");
  assert.ok(shown.every((t) => due.includes(t)), "each shows a due point");
  assert.equal(shown[shown.length - 1], shape.sequenceLength, "the last preview always arrives");
  const last = progress[progress.length - 1]!;
  const final = finalImages(slow.events);
  final.forEach((img, i) => assert.deepEqual(Buffer.from(last.previews![i]!.data), Buffer.from(img.data)));
  assert.deepEqual(final.map((i) => Array.from(i.codes)), finalImages(off.events).map((i) => Array.from(i.codes)), "the same images");
});

test("a preview share bounds the time previews spend decoding; a generation's first and last are not held back", async () => {
  const model = await sharedModel();
  const batchWith = (previewShare: number) => {
    const o = { delayMs: 30, calls: [] as { start: number; end: number }[], batch: null as unknown as DecodeBatch };
    o.batch = new DecodeBatch(model, {
      previewShare,
      decodePreviews: async (grids) => {
        const call = { start: performance.now(), end: 0 };
        o.calls.push(call);
        await new Promise((r) => setTimeout(r, o.delayMs));
        const frames = await decodeGrids(model, grids);
        call.end = performance.now();
        return frames;
      },
    });
    return o;
  };
  const run = async (o: ReturnType<typeof batchWith>) => {
    const before = o.calls.length;
    const member = o.batch.admit({ prompt: "a small red circle at the top left, white background", count: 1, seed: 5, previewInterval: 1 });
    const events: GenerationEvent[] = [];
    const t0 = performance.now();
    while (!member.done) {
      await o.batch.step();
      events.push(...member.drain());
      // Steps slower than a preview, as at DALL·E size on a CPU, so that a preview is always due.
      await new Promise((r) => setTimeout(r, 2));
    }
    return { calls: o.calls.slice(before), events, t0 };
  };
  const full = await run(batchWith(1));
  const shared = batchWith(0.25);
  shared.delayMs = 800; // a generation before on the same batch, whose preview runs were long: a gap of 2.4 s
  await run(shared);
  shared.delayMs = 30;
  const quarter = await run(shared);
  const gated = quarter.calls.slice(1, -1); // the first waits for nothing; the last is the final image
  for (let i = 1; i < gated.length; i++) {
    const prev = gated[i - 1]!;
    const wait = gated[i]!.start - prev.end;
    assert.ok(wait >= 3 * (prev.end - prev.start) - 5, `run ${i} started ${wait.toFixed(0)} ms after a run of ${(prev.end - prev.start).toFixed(0)} ms`);
  }
  assert.ok(quarter.calls.length < full.calls.length / 2, `previews decoded: ${quarter.calls.length} with a quarter share, ${full.calls.length} with all`);
  const firstDue = (r: typeof full) => r.calls[0]!.start - r.t0;
  assert.ok(firstDue(quarter) < firstDue(full) + 300, `the first preview starts when it is due: ${firstDue(quarter).toFixed(0)} ms against ${firstDue(full).toFixed(0)} ms`);
  const shown = quarter.events.filter((e): e is ProgressEvent => e.type === "progress" && !!e.previews).map((e) => e.previewTokens!);
  assert.equal(shown.at(-1), shape.sequenceLength, "the last preview arrives");
  assert.deepEqual(finalImages(quarter.events).map((i) => Array.from(i.codes)), finalImages(full.events).map((i) => Array.from(i.codes)));
});

test("cancellation stops within one decoder step", async () => {
  const model = await sharedModel();
  const controller = new AbortController();
  const events = [];
  for await (const ev of generate(model, { prompt: "a red square", signal: controller.signal, previewInterval: 0 })) {
    events.push(ev);
    if (ev.type === "progress" && ev.tokensDone === 10) controller.abort();
  }
  const last = events[events.length - 1]!;
  assert.equal(last.type, "cancelled");
  assert.equal(last.type === "cancelled" && last.tokensDone, 10);
  assert.ok(!events.some((e) => e.type === "completed"));
});

test("bad requests are refused with BAD_INPUT before any work", async () => {
  const model = await sharedModel();
  for (const bad of [{ count: 0 }, { count: 10 }, { seed: -1 }, { seed: 2 ** 31 }, { previewInterval: -1 }, { sampling: { topK: 9999 } }, { prompt: "x".repeat(5000) }]) {
    await assert.rejects(collect(model, { prompt: "a red circle", ...bad }), (e: unknown) => e instanceof MosaicError && e.code === "BAD_INPUT");
  }
});

test("ONNX Runtime's thread count is always given: one per core, MOSAIC_THREADS overrides, 0 is ONNX Runtime's own", () => {
  const saved = process.env.MOSAIC_THREADS;
  try {
    delete process.env.MOSAIC_THREADS;
    assert.equal(engineThreads(), os.availableParallelism());
    for (const [raw, want] of [["3", 3], ["0", 0], [" ", os.availableParallelism()], ["-1", os.availableParallelism()], ["1.5", os.availableParallelism()], ["two", os.availableParallelism()]] as const) {
      process.env.MOSAIC_THREADS = raw;
      assert.equal(engineThreads(), want, `MOSAIC_THREADS=${JSON.stringify(raw)}`);
    }
  } finally {
    if (saved === undefined) delete process.env.MOSAIC_THREADS;
    else process.env.MOSAIC_THREADS = saved;
  }
});
