/**
 * One generation inside a batch (batch.ts): its images' codes and random streams, its position, the
 * events waiting for its owner, and the choice of each image's next token.
 */
import type { MosaicError } from "./errors.ts";
import type { Frame, GenerationEvent, ResolvedRequest } from "./request.ts";
import { blockDrawn } from "./plan-exclusions.ts";
import { previewSchedule } from "./previews.ts";
import { imageSeed, Mulberry32 } from "./random.ts";
import { createSampler, isGreedy, type Sampler } from "./sampling.ts";

/** One generation inside a batch. Its events queue up until its owner drains them. */
export class Member {
  readonly n: number;
  /** Rows in the batch: [conditional × n, unconditional × n] with guidance, else n. */
  readonly rows: number;
  readonly seeds: number[];
  readonly codes: Int32Array[];
  pos = 0;
  done = false;
  private readonly events: GenerationEvent[] = [];
  readonly rngs: Mulberry32[];
  readonly sample: Sampler;
  readonly due: Set<number>;
  readonly t = { start: performance.now(), text: 0, decodeStart: 0, previewMs: 0, previews: 0, firstPreview: null as number | null };
  lastFrames: Frame[] | null = null;
  /** A finished preview waiting for this member's next progress event. */
  readyPreview: { tokensDone: number; frames: Frame[] } | null = null;
  /** Whether a preview run has taken this member's grids: its first one is never held back. */
  previewed = false;
  /** This step only replayed saved codes: nothing to report yet. */
  silent = false;
  /** Token ids and attention mask of each row. */
  ids: number[][] = [];
  mask: number[][] = [];
  /** The newest token of each image, after a step. */
  newest: number[] = [];
  /** Positions below this are replayed from saved codes (a resumed generation), not sampled. */
  readonly replayTo: number;
  /** Whether sampling a token takes one draw from the image's stream (everything but greedy). */
  private readonly draws: boolean;

  /**
   * `plan`: the model's plan length; `exclusions`: its plan positions that may not draw again what earlier
   * ones drew (plan-exclusions.ts).
   */
  constructor(readonly r: ResolvedRequest, readonly signal: AbortSignal | undefined, total: number, plan = 0,
    private readonly exclusions: ReadonlyMap<number, readonly number[]> = new Map()) {
    this.n = r.count;
    this.rows = r.settings.guidanceScale !== 1 ? 2 * r.count : r.count;
    this.seeds = Array.from({ length: this.n }, (_, i) => imageSeed(r.seed, i));
    this.codes = this.seeds.map(() => new Int32Array(total));
    this.rngs = this.seeds.map((s) => new Mulberry32(s));
    this.sample = createSampler(r.settings);
    this.due = previewSchedule(total, r.previewInterval, plan);
    this.replayTo = r.resume?.tokensDone ?? 0;
    if (r.resume) r.resume.codes.forEach((c, i) => this.codes[i]!.set(c.subarray(0, this.replayTo)));
    this.draws = !isGreedy(r.settings);
  }

  /** The code of image i at the current position: replayed from the saved prefix, or sampled from its
   * logits (guided by its unconditional row, when it has one: the sampler guides as it reads). */
  next(i: number, cond: Float32Array, uncond: Float32Array | null): number {
    if (this.pos < this.replayTo) {
      // The stream moves past the draw the original run made here, so later draws line up.
      if (this.draws) this.rngs[i]!.uniform();
      return this.codes[i]![this.pos]!;
    }
    const earlier = this.exclusions.get(this.pos);
    if (earlier) {
      blockDrawn(cond, this.codes[i]!, earlier);
      if (uncond) blockDrawn(uncond, this.codes[i]!, earlier);
    }
    return this.sample(cond, this.rngs[i]!, uncond);
  }

  get guided(): boolean {
    return this.rows !== this.n;
  }

  push(e: GenerationEvent): void {
    this.events.push(e);
    if (e.type === "completed" || e.type === "cancelled") this.done = true;
  }

  /** Events so far, removed from the queue. */
  drain(): GenerationEvent[] {
    return this.events.splice(0);
  }

  fail(e: MosaicError): void {
    this.error = e;
    this.done = true;
  }

  error: MosaicError | null = null;
}
