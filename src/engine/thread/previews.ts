/**
 * The preview thread: the VQ decoder alone, decoding preview grids for an engine thread. ONNX
 * Runtime's `run` in Node blocks the thread that calls it (it runs the graph inside a setImmediate),
 * so previews decoded on the engine's own thread would hold the decoder steps back for as long as
 * they take; here they run truly beside them.
 */
import { parentPort, workerData } from "node:worker_threads";
import { loadVqDecoder } from "../model.ts";
import type { ProviderName } from "../providers.ts";
import { decodeGrids } from "../vq.ts";

export interface PreviewThreadOptions {
  modelFolder: string;
  provider: ProviderName;
  /** ONNX Runtime threads for the VQ decoder (it runs at the same time as the decoder steps). */
  threads?: number;
}

export type ToPreviews = { id: number; grids: Int32Array[] } | { close: true };
export type FromPreviews =
  | { type: "ready" }
  | { type: "load-failed"; message: string }
  | { type: "log"; line: string }
  | { type: "frames"; id: number; frames: { width: number; height: number; data: Uint8Array }[] }
  | { type: "failed"; id: number; message: string };

const port = parentPort!;
const send = (m: FromPreviews, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const o = workerData as PreviewThreadOptions;

try {
  const vq = await loadVqDecoder(o.modelFolder, { provider: o.provider, threads: o.threads, log: (line) => send({ type: "log", line }) });
  // One message at a time, each to its end: a close never meets a decode still in flight.
  let chain = Promise.resolve();
  const handle = async (m: ToPreviews): Promise<void> => {
    if ("close" in m) {
      await vq.release();
      port.close();
      return;
    }
    try {
      const frames = await decodeGrids(vq, m.grids);
      send({ type: "frames", id: m.id, frames }, frames.map((f) => f.data.buffer as ArrayBuffer));
    } catch (e) {
      send({ type: "failed", id: m.id, message: (e as Error).message });
    }
  };
  port.on("message", (m: ToPreviews) => {
    chain = chain.then(() => handle(m));
  });
  send({ type: "ready" });
} catch (e) {
  send({ type: "load-failed", message: (e as Error).message });
}
