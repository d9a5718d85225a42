/** A generation a worker has claimed, as the worker, its recorder and its progress writer hold it. */
import type { Generation } from "../db/generated/client.ts";

/** A claimed generation, as its worker holds it. */
export interface Job {
  row: Generation;
  grids: Int32Array[];
  /** Its terminal event has arrived from the engine: its room in the batch is free. */
  finished: boolean;
  /** Dropped (lost, failed): events still in flight for it are ignored. */
  dropped: boolean;
  /** Its events are recorded in order, one after another, beside decoding. */
  chain: Promise<void>;
  /** Tokens per image drawn so far, and how many of them are saved in the row. */
  tokensDone: number;
  tokensSaved: number;
  /** When this worker claimed it (performance.now()). */
  claimedAt: number;
  /** Its wait in the queue (startedAt - createdAt, the database's clock) on its first claim; null when resumed. */
  queueWaitMs: number | null;
  /** A preview was stored in this attempt. */
  previewed: boolean;
}

/** The job is no longer this worker's (it was requeued and claimed again, or ended meanwhile). */
export class LostJob extends Error {}
