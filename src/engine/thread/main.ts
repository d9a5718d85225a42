/**
 * The engine thread: loads the model and runs one continuous batch, stepping while it has work, so
 * that decoder steps and VQ decodes never block the process's event loop (heartbeats, LISTEN/NOTIFY,
 * cancellation and, in `serve`, the API keep answering however long a step takes). It knows nothing
 * of the database: generations come in as requests, their events go out as messages.
 */
import { parentPort, workerData } from "node:worker_threads";
import { DecodeBatch } from "../batch.ts";
import type { Member } from "../member.ts";
import { MosaicError } from "../errors.ts";
import { loadModel, type Model } from "../model.ts";
import { threadsSetting } from "../providers.ts";
import { decodeGrids } from "../vq.ts";
import { PreviewClient } from "./preview-client.ts";
import type { FromEngine, ThreadOptions, ToEngine } from "./protocol.ts";

const port = parentPort!;
const send = (m: FromEngine) => port.postMessage(m);
const options = workerData as ThreadOptions;

const members = new Map<string, { member: Member; abort: AbortController }>();
let paused = false;
let closing = false;
let wake: (() => void) | null = null;

/**
 * Threads for the preview decoder: one per core, like the decoder's (MOSAIC_PREVIEW_THREADS
 * overrides). It also decodes the final images, often while the decoder has nothing left to do: with
 * half the cores the final image of a one-image generation at DALL·E-mini size took 2.4 s instead of
 * 1.3 s, a seventh of a 7-8 s run; beside the decoder steps the two share the cores either way
 * (ONNX Runtime's threads do not spin). Measured in docs/performance.md.
 */
function previewThreads(): number {
  return threadsSetting("MOSAIC_PREVIEW_THREADS", 1);
}

/**
 * The share of the time VQ previews may be decoding (DecodeBatch.pumpPreviews), MOSAIC_PREVIEW_SHARE
 * from 0.01 to 1. On 2 CPU cores previews take their time from the decoder steps: a 3×3 of the shipped
 * model with previews every 16 tokens decoded at 0.73× the tokens/s of previews off with a share of 1
 * (16 of 16 shown), 0.86× with 0.5 (10 shown) and 0.91× with 0.25 (4 shown), so the default is 0.25
 * (docs/performance.md). The first preview and the last are never held back.
 */
const DEFAULT_PREVIEW_SHARE = 0.25;
function previewShare(): number {
  const v = Number(process.env.MOSAIC_PREVIEW_SHARE);
  return Number.isFinite(v) && v >= 0.01 && v <= 1 ? v : DEFAULT_PREVIEW_SHARE;
}

/**
 * Runs the shapes the first requests will have once before the thread reports ready: the text
 * encoder and one decoder step for one image and for a 3×3 grid (the API's default and the web app's
 * grid), at each cache length a CPU batch passes (32 to 256 positions), and a one-image VQ decode.
 * ONNX Runtime plans memory and faults pages in on the first run of each input shape, which made the
 * first 3×3 after start 1.2× slower than PyTorch's at DALL·E-mini size (issue #14); a user's first
 * request should not pay it.
 */
async function warm(batch: DecodeBatch, model: Model, decode: (grids: Int32Array[]) => Promise<unknown>): Promise<void> {
  for (const count of [1, 9]) {
    const abort = new AbortController();
    const member = batch.admit({ prompt: "", count, seed: 0, previewInterval: 0, signal: abort.signal });
    await batch.step();
    await batch.warmCacheLengths();
    abort.abort();
    while (batch.active) await batch.step();
    member.drain();
  }
  const { grid } = model.manifest.architecture;
  await decode([new Int32Array(grid.height * grid.width)]);
}

async function run(): Promise<void> {
  let batch: DecodeBatch;
  let model: Model;
  let previews: PreviewClient | null;
  try {
    const log = (line: string) => send({ type: "log", line });
    // On the CPU, images (previews and final) decode in a thread of their own: ONNX Runtime's run
    // blocks the thread that calls it, so they would otherwise hold the decoder back, and this thread
    // then never opens the VQ decoder. A GPU provider keeps it here: ONNX Runtime's WebGPU provider in
    // a second thread of the same process corrupted the heap (measured with SwiftShader:
    // "malloc(): mismatching next->prev_size"), and the GPU decodes fast. (A GPU provider that falls
    // back to the CPU keeps it here too.)
    const separate = options.provider === "cpu";
    model = await loadModel(options.modelFolder, { provider: options.provider, log, vqDecoder: !separate });
    previews = separate ? await PreviewClient.start({ modelFolder: options.modelFolder, provider: "cpu", threads: previewThreads() }, log) : null;
    const thread = previews;
    const decode = thread ? (grids: Int32Array[]) => thread.decode(grids) : (grids: Int32Array[]) => decodeGrids(model, grids);
    batch = new DecodeBatch(model, { decodePreviews: decode, decodeImages: decode, previewShare: previewShare() });
    await warm(batch, model, decode);
    send({ type: "ready", provider: model.provider, deviceState: model.deviceOps !== null });
  } catch (e) {
    send({ type: "load-failed", message: (e as Error).message, code: e instanceof MosaicError ? e.code : undefined });
    return;
  }
  port.on("message", (m: ToEngine) => {
    if (m.type === "admit") {
      const abort = new AbortController();
      try {
        const member = batch.admit({ ...m.request, signal: abort.signal });
        members.set(m.id, { member, abort });
      } catch (e) {
        send({ type: "failed", id: m.id, code: e instanceof MosaicError ? e.code : "INFERENCE_FAILED", message: (e as Error).message, stack: (e as Error).stack });
      }
    } else if (m.type === "cancel") members.get(m.id)?.abort.abort();
    else if (m.type === "pause") paused = true;
    else if (m.type === "close") closing = true;
    wake?.();
  });
  let pauseReported = false;
  while (!closing) {
    if (paused && !pauseReported) {
      pauseReported = true;
      send({ type: "paused" });
    }
    if (paused || !batch.active) {
      await new Promise<void>((resolve) => { wake = resolve; });
      wake = null;
      continue;
    }
    const t0 = performance.now();
    await batch.step();
    const ms = performance.now() - t0;
    for (const [id, { member }] of members) {
      const events = member.drain();
      if (events.length) send({ type: "events", id, events });
      if (member.error) {
        const cause = member.error.cause instanceof Error ? `\n  caused by: ${member.error.cause.stack}` : "";
        send({ type: "failed", id, code: member.error.code, message: member.error.message, stack: `${member.error.stack}${cause}` });
      }
      if (member.done) members.delete(id);
    }
    send({ type: "step", images: batch.images, active: batch.active, ms, rows: batch.rows });
    // Let admissions and cancellations in between steps.
    await new Promise((r) => setImmediate(r));
  }
  // Closing: native sessions are released here, in their own thread, before it ends (terminating a
  // thread while ONNX Runtime runs in it aborts the whole process).
  await previews?.close();
  await model.release();
  port.close();
}

await run();
