/**
 * The WebGPU path on every machine, GPU or not: Debian's `chromium` package ships SwiftShader, a
 * software Vulkan driver that onnxruntime-node's WebGPU execution provider accepts. On it the engine
 * keeps the batch state on the device (src/engine/batch-state.ts, DeviceState) exactly as on a real
 * GPU, so its joins, leaves, cancellations and previews must give the CPU's codes here.
 *
 * SwiftShader is slow (a few tenths of a second per decoder step on two cores) and its timings mean
 * nothing: the batch test stops 20 steps into the image codes (after the scene plan, where the model
 * writes one), and only the server generation runs all of an image's tokens (256 for mosaic-shapes
 * 1.0.0: about two minutes here).
 * Without SwiftShader (`apt-get install -y chromium libvulkan1`; scripts/test.sh does it as root)
 * the tests are skipped with that message, and fail in CI (CI=true).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { startApp, type App } from "../src/app.ts";
import { parseProvider } from "../src/engine/settings.ts";
import { DecodeBatch } from "../src/engine/batch.ts";
import type { Member } from "../src/engine/member.ts";
import { decodeGrids, type GenerateRequest, type GenerationEvent } from "../src/engine/generate.ts";
import { perLayerInputs } from "../src/engine/model-format.ts";
import { loadModel, type Model } from "../src/engine/model.ts";
import type { Frame } from "../src/engine/request.ts";
import { unpackCodes } from "../src/jobs/codes.ts";
import { collect, finalImages, MODEL_DIR, python, sharedModel, shippedShape, type Json } from "./helpers.ts";
import { create, createTestDatabase, eventsOverSse, gql, stopEmbedded, uuidOf, type TestDatabase } from "./server-helpers.ts";

const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

// The Vulkan loader reads these when the first WebGPU session opens, not when onnxruntime-node is
// imported, so setting them here is early enough. A Vulkan driver chosen by the caller is kept.
if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
}
// Without it every Vulkan start prints "XDG_RUNTIME_DIR is invalid or not set".
process.env.XDG_RUNTIME_DIR ||= mkdtempSync(path.join(tmpdir(), "mosaic-xdg-"));

const missing = process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES
  ? null
  : `no Vulkan driver for WebGPU: ${SWIFTSHADER_ICD} is missing (apt-get install -y chromium libvulkan1; scripts/test.sh installs them when run as root)`;
// In CI a missing driver is a failure, not a skip: the WebGPU path would silently go untested.
const inCi = !!process.env.CI && process.env.CI !== "false" && process.env.CI !== "0";
const skip = missing && !inCi ? missing : false;

let gpu: Model;
const gpuLog: string[] = [];

before(async () => {
  if (skip) return;
  if (missing) assert.fail(missing);
  gpu = await loadModel(MODEL_DIR, { provider: "webgpu", log: (l) => gpuLog.push(l) });
});

after(async () => {
  await gpu?.release();
});

/** The engine really runs on WebGPU with its batch state on the device: no silent CPU fallback. */
function assertOnDevice(engine: { provider: string; deviceState: boolean } | null, log: string[]): void {
  assert.ok(engine, "an engine was started");
  assert.equal(engine.provider, "webgpu", `the WebGPU provider is in use (log: ${log.join(" | ") || "empty"})`);
  assert.ok(engine.deviceState, "the batch state is kept on the device");
}

const sampling = { topK: 32, topP: 0.95, temperature: 1 };
/** The shipped model's scene plan (0 without one) and decoder steps per image (model.json). */
const shape = shippedShape();

interface Plan {
  request: GenerateRequest;
  /** The step at which it joins, and (optionally) the one at which it is cancelled. */
  join: number;
  cancel?: number;
}

/**
 * Runs the plans through one DecodeBatch on `model`; every member still running at `stop` is
 * cancelled. Previews run beside the decoder, so when one arrives depends on how fast the VQ decoder
 * is; here each step waits for the preview run it started, so a preview due at one step goes out
 * with the next on both providers alike. (The server test below lets them run freely.)
 */
async function drive(model: Model, plans: Plan[], stop: number): Promise<{ events: GenerationEvent[][]; sizes: Set<number> }> {
  const started: Promise<unknown>[] = [];
  const batch = new DecodeBatch(model, {
    decodePreviews: (grids) => {
      const run = decodeGrids(model, grids);
      started.push(run);
      return run;
    },
  });
  const controllers = plans.map(() => new AbortController());
  const members: Member[] = [];
  const events: GenerationEvent[][] = plans.map(() => []);
  const sizes = new Set<number>();
  for (let step = 0; members.length < plans.length || batch.active; step++) {
    plans.forEach((p, i) => {
      if (p.join === step) members[i] = batch.admit({ ...p.request, signal: controllers[i]!.signal });
      if (p.cancel === step || step === stop) controllers[i]!.abort();
    });
    await batch.step();
    await Promise.all(started.splice(0));
    sizes.add(batch.images);
    members.forEach((m, i) => events[i]!.push(...m.drain()));
    assert.ok(step <= stop + 1, "the batch empties once everything is cancelled");
  }
  return { events, sizes };
}

/** What must agree between providers: each step's tokens, the preview steps and how it ended. */
function outline(events: GenerationEvent[]) {
  return events.map((e) => {
    switch (e.type) {
      case "started": return { type: e.type, seeds: e.seeds };
      case "progress": return { type: e.type, tokensDone: e.tokensDone, tokens: e.tokens, previews: e.previews?.length ?? 0, previewTokens: e.previewTokens };
      case "cancelled": return { type: e.type, tokensDone: e.tokensDone };
      default: return { type: e.type };
    }
  });
}

function previews(events: GenerationEvent[]): Frame[] {
  return events.flatMap((e) => (e.type === "progress" && e.previews ? e.previews : []));
}

/** The largest difference between two RGB frames, in 8-bit levels (the VQ decoder's floats differ a little). */
function pixelDiff(a: { data: ArrayLike<number> }, b: { data: ArrayLike<number> }): number {
  assert.equal(a.data.length, b.data.length);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

test("WebGPU with the batch state on the device: joins, leaves, cancellations and previews give the CPU's codes", { skip }, async () => {
  assertOnDevice(gpu && { provider: gpu.provider, deviceState: gpu.deviceOps !== null }, gpuLog);
  const plans: Plan[] = [
    // Two guided images (four rows) with previews, from the first step to the last.
    { request: { prompt: "a big red circle in the centre, blue background", count: 2, seed: 90, sampling: { ...sampling, guidanceScale: 3 }, previewInterval: 16 }, join: 0 },
    // One unguided row that leaves at step 8.
    { request: { prompt: "a small white square at the top left, black background", count: 1, seed: 91, sampling: { ...sampling, guidanceScale: 1 }, previewInterval: 0 }, join: 0, cancel: 8 },
    // Joins as the one above leaves (one regrouping drops and appends rows); its first preview is
    // due at the same step as the first member's, so both come from one VQ run.
    { request: { prompt: "green background with a big yellow triangle at the bottom", count: 1, seed: 92, sampling: { ...sampling, guidanceScale: 3 }, previewInterval: 8 }, join: 8 },
    // Joins the running batch at step 12.
    { request: { prompt: "a small orange circle on the right, purple background", count: 1, seed: 93, sampling: { ...sampling, guidanceScale: 1 }, previewInterval: 0 }, join: 12 },
  ];
  // 20 steps into the codes: preview intervals count codes, so a scene plan moves every preview point by its length.
  const stop = shape.planLength + 20;
  const cpu = await drive(await sharedModel(), plans, stop);
  const dev = await drive(gpu, plans, stop);
  assert.ok(dev.sizes.has(4), "three members (four images) shared the batch at once");
  plans.forEach((p, i) => {
    assert.deepEqual(outline(dev.events[i]!), outline(cpu.events[i]!), `member ${i}: WebGPU and CPU part ways`);
    const last = dev.events[i]![dev.events[i]!.length - 1]!;
    assert.deepEqual(last, { type: "cancelled", tokensDone: (p.cancel ?? stop) - p.join }, `member ${i} ends cancelled`);
  });
  assert.equal(previews(dev.events[0]!).length, 2, "the first member's previews after 16 codes, two images");
  assert.equal(previews(dev.events[2]!).length, 1, "the third member's preview after 8 codes, from the same VQ run");
  plans.forEach((_, i) => {
    const [a, b] = [previews(dev.events[i]!), previews(cpu.events[i]!)];
    a.forEach((f, k) => assert.ok(pixelDiff(f, b[k]!) <= 2, `member ${i} preview ${k}: pixels differ by ${pixelDiff(f, b[k]!)} levels`));
  });
});

test("a server with MOSAIC_PROVIDER=webgpu completes a generation with the CPU's codes and images", { skip }, async () => {
  const provider = process.env.MOSAIC_PROVIDER;
  process.env.MOSAIC_PROVIDER = "webgpu";
  let db: TestDatabase | null = null;
  let app: App | null = null;
  const log: string[] = [];
  try {
    db = await createTestDatabase();
    app = await startApp({
      role: "all", port: 0, databaseUrl: db.url, dataDir: "unused", embeddedPort: 0, modelFolder: MODEL_DIR,
      provider: parseProvider(undefined), log: (l) => log.push(l),
    });
    assertOnDevice(app.engine, log);
    // A preview half-way: its VQ run shares the device with the decoder steps going on.
    const request = { prompt: "a big blue triangle at the bottom, white background", count: 1, seed: 17, previewInterval: 128 };
    const g = await create(app, request);
    const events = await eventsOverSse(app, g.id);
    const last = events[events.length - 1];
    assert.equal(last.__typename, "Completed", JSON.stringify(last));
    const shown = events.filter((e: Json) => e.__typename === "Progress" && e.previews.length).map((e: Json) => e.previews[0].tokensDone);
    assert.equal(shown[shown.length - 1], shape.sequenceLength, `the last preview is the final grid (previews of ${shown.join(", ")})`);

    const expected = finalImages(await collect(await sharedModel(), request));
    const row = await app.db.prisma.generation.findUniqueOrThrow({ where: { id: uuidOf(g.id) }, select: { codes: true, count: true } });
    const codes = unpackCodes(row.codes!, row.count).map((c) => Array.from(c));
    assert.deepEqual(codes, expected.map((i) => Array.from(i.codes)), "the codes stored are the CPU's");

    const r = await gql(app, `query($id: ID!) { generation(id: $id) { images { url } } }`, { id: g.id });
    assert.equal(r.data.generation.images.length, 1);
    const res = await fetch(r.data.generation.images[0].url);
    assert.equal(res.status, 200);
    const { data, info } = await sharp(Buffer.from(await res.arrayBuffer())).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [expected[0]!.width, expected[0]!.height]);
    assert.ok(pixelDiff({ data }, expected[0]!) <= 2, `the image differs from the CPU's by ${pixelDiff({ data }, expected[0]!)} levels`);
  } finally {
    await app?.close();
    await db?.drop();
    await stopEmbedded();
    if (provider === undefined) delete process.env.MOSAIC_PROVIDER;
    else process.env.MOSAIC_PROVIDER = provider;
  }
});

test("a per-layer model (the converter's layout) on WebGPU: each layer sliced on the device, the CPU's codes through joins and leaves", { skip }, async () => {
  // The converter's small parity model: its decoder step takes each layer's cache as an input of its own,
  // which the shipped model (stacked inputs) does not exercise.
  const dir = mkdtempSync(path.join(tmpdir(), "mosaic-webgpu-parity-"));
  const log: string[] = [];
  let cpu: Model | null = null, dev: Model | null = null;
  try {
    python(["-m", "mosaic_convert.parity", "--out", dir]);
    cpu = await loadModel(path.join(dir, "model"), { log: () => {} });
    dev = await loadModel(path.join(dir, "model"), { provider: "webgpu", log: (l) => log.push(l) });
    assert.ok(perLayerInputs(dev.manifest.graphs), "the parity model's decoder step is per-layer");
    assertOnDevice({ provider: dev.provider, deviceState: dev.deviceOps !== null }, log);
    assert.ok(dev.deviceOps!.splitLayers, "the layer graphs opened on the device");
    // Two members, the second joining at step 3 (a regroup with fresh rows) and outliving the first (one
    // with rows dropped); previews on one. Few shapes: SwiftShader compiles shaders for each new one.
    const plans: Plan[] = [
      { request: { prompt: "a red circle", count: 1, seed: 5, sampling: { ...sampling, guidanceScale: 3 }, previewInterval: 8 }, join: 0 },
      { request: { prompt: "green triangle", count: 2, seed: 7, sampling: { ...sampling, guidanceScale: 1 }, previewInterval: 0 }, join: 3 },
    ];
    const [a, b] = [await drive(cpu, plans, 1000), await drive(dev, plans, 1000)];
    plans.forEach((_, i) => {
      assert.deepEqual(outline(b.events[i]!), outline(a.events[i]!), `member ${i}: WebGPU and CPU part ways`);
      assert.deepEqual(finalImages(b.events[i]!).map((img) => Array.from(img.codes)), finalImages(a.events[i]!).map((img) => Array.from(img.codes)));
    });
  } finally {
    await cpu?.release();
    await dev?.release();
    rmSync(dir, { recursive: true, force: true });
  }
});
