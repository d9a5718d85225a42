/**
 * ONNX Runtime sessions on the configured execution provider, falling back to the CPU with one
 * logged line when the provider cannot start (onnxruntime-node throws "Failed to get a WebGPU
 * adapter" rather than falling back by itself, even with 'cpu' listed after it).
 */
import os from "node:os";
import ort from "onnxruntime-node";

export type ProviderName = "cpu" | "webgpu" | "cuda";
export const PROVIDERS: readonly ProviderName[] = ["cpu", "webgpu", "cuda"];

export interface SessionRequest {
  /** A graph's file, or its bytes (graphs built when a model loads: ops/layer-graphs.ts). */
  path: string | Uint8Array;
  provider: ProviderName;
  /** Outputs to leave in GPU memory (WebGPU) for the next run to read; ignored on the CPU. */
  deviceOutputs?: string[];
  /** ONNX Runtime's intra-op threads for this session (default: engineThreads()). */
  threads?: number;
}

/**
 * ONNX Runtime's intra-op threads for a session that does not ask for a number: MOSAIC_THREADS, else
 * one per CPU this process may run on (os.availableParallelism follows taskset and cpusets).
 * Always passed explicitly: left at 0, ONNX Runtime takes the number of physical cores and pins its
 * pool's threads to them ("affinitization", onnxruntime.ai's thread-management page), while
 * onnxruntime-node runs each session from a libuv thread that is not pinned. On the 2-core machine a
 * DALL·E-mini decoder step of one image took 45-50 ms with the default and 30-38 ms with the count
 * given, and 403 MB of 1024×16,384 products went by at 18 GB/s against 31. The shipped model's tiny
 * one-image steps were faster pinned (0.24 against 0.38 s an image), its 3×3 slower (1.44 against
 * 1.17 s): docs/performance.md. MOSAIC_THREADS=0 restores ONNX Runtime's own choice.
 */
export function engineThreads(): number {
  return threadsSetting("MOSAIC_THREADS", 0);
}

/** A thread count from the environment variable `name`: an integer of at least `min`, else one per core. */
export function threadsSetting(name: string, min: number): number {
  const raw = process.env[name];
  const v = Number(raw);
  if (raw !== undefined && raw.trim() !== "" && Number.isInteger(v) && v >= min) return v;
  return os.availableParallelism();
}

export interface OpenedSession {
  session: ort.InferenceSession;
  provider: ProviderName;
}

export type Logger = (line: string) => void;

export async function openSession(req: SessionRequest, log: Logger): Promise<OpenedSession> {
  // Three sessions take turns at every step; threads that spin waiting for work would steal the
  // cores from the session that has some.
  // The memory arena and weight pre-packing stay on: at DALL·E-mini size, turning pre-packing off
  // saved 0.4 GB and made one image 1.8× slower, and turning the arena off saved 0.7 GB at the peak and
  // made it 5× slower (docs/performance.md).
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: "all", extra: { session: { intra_op: { allow_spinning: "0" } } },
    intraOpNumThreads: req.threads ?? engineThreads(),
  };
  if (req.provider !== "cpu") {
    const options: ort.InferenceSession.SessionOptions = { ...base, executionProviders: [req.provider] };
    if (req.provider === "webgpu" && req.deviceOutputs?.length) {
      options.preferredOutputLocation = Object.fromEntries(req.deviceOutputs.map((n) => [n, "gpu-buffer" as const]));
    }
    try {
      return { session: await create(req.path, options), provider: req.provider };
    } catch (e) {
      log(`mosaic: the ${req.provider} execution provider is not available (${firstLine(e)}); using the CPU`);
    }
  }
  return { session: await create(req.path, { ...base, executionProviders: ["cpu"] }), provider: "cpu" };
}

function create(from: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return typeof from === "string" ? ort.InferenceSession.create(from, options) : ort.InferenceSession.create(from, options);
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split("\n")[0]!.trim();
}
