/** The engine thread's handle on its preview thread: grids in, frames out, in order. */
import { Worker } from "node:worker_threads";
import type { Frame } from "../request.ts";
import type { FromPreviews, PreviewThreadOptions, ToPreviews } from "./previews.ts";

export class PreviewClient {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (f: Frame[]) => void; reject: (e: Error) => void }>();

  private constructor(private readonly thread: Worker) {
    thread.on("message", (m: FromPreviews) => {
      if (m.type !== "frames" && m.type !== "failed") return;
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.type === "frames") w?.resolve(m.frames);
      else w?.reject(new Error(m.message));
    });
    thread.on("exit", () => {
      for (const w of this.waiting.values()) w.reject(new Error("the preview thread stopped"));
      this.waiting.clear();
    });
  }

  static async start(o: PreviewThreadOptions, log: (line: string) => void): Promise<PreviewClient> {
    const thread = new Worker(new URL("./previews-entry.mjs", import.meta.url), { workerData: o });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (m: FromPreviews) => {
        if (m.type === "ready") {
          thread.off("message", onMessage);
          resolve();
        } else if (m.type === "load-failed") reject(new Error(m.message));
        else if (m.type === "log") log(m.line);
      };
      thread.on("message", onMessage);
      thread.once("error", reject);
    });
    return new PreviewClient(thread);
  }

  decode(grids: Int32Array[]): Promise<Frame[]> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.thread.postMessage({ id, grids } satisfies ToPreviews);
    });
  }

  /** Lets a decode in progress finish, releases the session in its thread, and waits for the thread to end. */
  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.thread.once("exit", () => resolve()));
    this.thread.postMessage({ close: true } satisfies ToPreviews);
    const timer = setTimeout(() => void this.thread.terminate(), 30_000);
    await exited;
    clearTimeout(timer);
  }
}
