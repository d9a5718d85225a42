/**
 * The main thread's handle on an engine thread: admit and cancel generations, receive their events,
 * and learn at every step boundary how much room the batch has. Everything runs asynchronously: the
 * caller records one step's events while the engine already computes the next.
 */
import { Worker } from "node:worker_threads";
import { MosaicError, type ErrorCode } from "../errors.ts";
import type { ProviderName } from "../providers.ts";
import type { GenerateRequest, GenerationEvent } from "../request.ts";
import type { FromEngine, ThreadOptions, ToEngine } from "./protocol.ts";

export interface EngineHandlers {
  events(id: string, events: GenerationEvent[]): void;
  failed(id: string, error: MosaicError): void;
  /** A decoder step ended; the batch holds `images` images now. */
  step(info: { images: number; active: boolean; ms: number; rows: number }): void;
  log(line: string): void;
}

export class RemoteEngine {
  provider: ProviderName = "cpu";
  /** Whether the batch state stays on the device (WebGPU). */
  deviceState = false;
  private pausedWaiter: (() => void) | null = null;
  private exited: Promise<void>;

  private constructor(private readonly thread: Worker, private handlers: EngineHandlers) {
    this.exited = new Promise((resolve) => thread.once("exit", () => resolve()));
  }

  /** Starts a thread and loads the model in it; rejects with the loader's error. */
  static async start(o: ThreadOptions, handlers: EngineHandlers): Promise<RemoteEngine> {
    const thread = new Worker(new URL("./entry.mjs", import.meta.url), { workerData: o });
    const engine = new RemoteEngine(thread, handlers);
    await new Promise<void>((resolve, reject) => {
      thread.on("message", (m: FromEngine) => {
        if (m.type === "ready") {
          engine.provider = m.provider;
          engine.deviceState = m.deviceState;
          resolve();
        } else if (m.type === "load-failed") {
          reject(m.code ? new MosaicError(m.code as ErrorCode, m.message) : new Error(m.message));
        } else engine.dispatch(m);
      });
      thread.once("error", reject);
      thread.once("exit", (code) => reject(new Error(`the engine thread exited (${code}) while loading the model`)));
    });
    return engine;
  }

  /** Who receives the engine's messages (the worker, once it starts). */
  setHandlers(h: EngineHandlers): void {
    this.handlers = h;
  }

  private dispatch(m: FromEngine): void {
    switch (m.type) {
      case "events": return this.handlers.events(m.id, m.events);
      case "failed": {
        const e = new MosaicError(m.code as ErrorCode, m.message);
        if (m.stack) e.stack = m.stack;
        return this.handlers.failed(m.id, e);
      }
      case "step": return this.handlers.step(m);
      case "log": return this.handlers.log(m.line);
      case "paused": this.pausedWaiter?.(); return;
    }
  }

  private post(m: ToEngine): void {
    this.thread.postMessage(m);
  }

  admit(id: string, request: Omit<GenerateRequest, "signal">): void {
    this.post({ type: "admit", id, request });
  }

  cancel(id: string): void {
    this.post({ type: "cancel", id });
  }

  /** Lets the step in progress finish (its events arrive before this resolves), then stops stepping. */
  pause(): Promise<void> {
    const paused = new Promise<void>((resolve) => { this.pausedWaiter = resolve; });
    this.post({ type: "pause" });
    return Promise.race([paused, this.exited]);
  }

  /** Asks the thread to finish its step, release its sessions and end; terminates it only if it does not within 30 s. */
  async release(): Promise<void> {
    this.post({ type: "close" });
    const timer = setTimeout(() => void this.thread.terminate(), 30_000);
    await this.exited;
    clearTimeout(timer);
  }
}
