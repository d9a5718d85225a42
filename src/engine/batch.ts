/**
 * Continuous batching: the rows of several generations decoded together, one decoder step at a
 * time. Generations join at step boundaries and leave when done or cancelled; every row carries its
 * own position, and every image its own random stream, so an image comes out the same whatever else
 * shares its batch. A single generation is simply a batch of one (see generate.ts).
 */
import ort from "onnxruntime-node";
import { MosaicError } from "./errors.ts";
import { resolveRequest, type CompletedEvent, type Frame, type GenerateRequest, type ProgressEvent } from "./request.ts";
import { DeviceState, HostState, type BatchState, type Encoded } from "./batch-state.ts";
import { DEFAULT_GROWTH, hasFreeCacheLength, type CacheGrowth } from "./cache-growth.ts";
import { encodeRows } from "./encode-rows.ts";
import { decodeGrids, hasFreeRows, int64 } from "./vq.ts";
import { outputVocabSize, perLayerInputs, planLength, sequenceLength } from "./model-format.ts";
import type { Model } from "./model.ts";
import { Member } from "./member.ts";
import { planExclusions } from "./plan-exclusions.ts";
import { previewGrid } from "./previews.ts";

export class DecodeBatch {
  private members: Member[] = [];
  private pending: Member[] = [];
  private readonly state: BatchState;
  private textMask: ort.Tensor | null = null;
  /** Tokens per image: the plan (if the model writes one), then the grid of codes. */
  private readonly total: number;
  private readonly plan: number;
  private readonly exclusions: ReadonlyMap<number, readonly number[]>;
  private readonly grid: { height: number; width: number };
  /** Previews decode only the rows generated so far (the model's VQ graph takes any number of rows). */
  private readonly freeRows: boolean;
  /** C: the codebook; V: logits per row (the codebook, or with a plan the codebook, start and plan ids). */
  private readonly dims: { L: number; H: number; D: number; T: number; C: number; V: number };

  /** The VQ decode in flight for previews (one at a time), and the newest grids waiting for it. */
  private previewRun: Promise<void> | null = null;
  private readonly wanted = new Map<Member, { tokensDone: number; grids: Int32Array[] }>();
  private readonly decodePreviews: (grids: Int32Array[]) => Promise<Frame[]>;
  private readonly decodeImages: (grids: Int32Array[]) => Promise<Frame[]>;
  /** Share of the time previews may be decoding (1: whenever one is due); see `pumpPreviews`. */
  private readonly previewShare: number;
  /** When the last preview run ended and how long it took: the next waits share-weighted after it. */
  private lastPreview = { end: 0, ms: 0 };

  /**
   * `decodePreviews` decodes preview grids and `decodeImages` the final ones when previews are off
   * (both the model's VQ decoder by default; tests slow the first down to show that decoding does not
   * wait for it; the engine thread sends both to its preview thread).
   */
  constructor(private readonly model: Model, o: {
    decodePreviews?: (grids: Int32Array[]) => Promise<Frame[]>;
    decodeImages?: (grids: Int32Array[]) => Promise<Frame[]>;
    previewShare?: number;
    /** How the CPU cache grows where the decoder step takes any length (null: always full; benchmarks compare). */
    cacheGrowth?: CacheGrowth | null;
  } = {}) {
    const own = (grids: Int32Array[]) => decodeGrids(model, grids);
    this.decodePreviews = o.decodePreviews ?? own;
    this.decodeImages = o.decodeImages ?? own;
    this.previewShare = Math.min(1, Math.max(0.01, o.previewShare ?? 1));
    const a = model.manifest.architecture;
    this.total = sequenceLength(a);
    this.plan = planLength(a);
    this.exclusions = planExclusions(a);
    this.grid = a.grid;
    this.freeRows = hasFreeRows(model.manifest);
    this.dims = { L: a.decoderLayers, H: a.heads, D: a.headDim, T: a.maxTextLength, C: a.codebookSize, V: outputVocabSize(a) };
    const dims = { ...this.dims, N: this.total, perLayer: perLayerInputs(model.manifest.graphs) };
    const growth = hasFreeCacheLength(model.manifest.graphs) ? (o.cacheGrowth === undefined ? DEFAULT_GROWTH : o.cacheGrowth) : null;
    this.state = model.deviceOps ? new DeviceState(dims, model.deviceOps) : new HostState(dims, growth);
  }

  /**
   * Images being generated, admitted ones included. Members that finished at the last step still sit
   * in the batch until the next one regroups it, but their room is free: counting them made a worker
   * with a full batch wait a whole poll interval before claiming the next job.
   */
  get images(): number {
    return [...this.members, ...this.pending].reduce((s, m) => s + (m.done ? 0 : m.n), 0);
  }

  /** Rows decoded at each step (images, twice with guidance). */
  get rows(): number {
    return this.members.reduce((s, m) => s + (m.done ? 0 : m.rows), 0);
  }

  get active(): boolean {
    return this.members.length + this.pending.length > 0;
  }

  /** Validates the request (throws BAD_INPUT) and queues it to join at the next step. */
  admit(request: GenerateRequest): Member {
    const r = resolveRequest(this.model, request);
    const m = new Member(r, request.signal, this.total, this.plan, this.exclusions);
    const encoded = this.model.prompts.encode(r.prompt);
    const empty = this.model.prompts.encodeUnconditional();
    const rows = Array.from({ length: m.rows }, (_, i) => (i < m.n ? encoded : empty));
    m.mask = rows.map((e) => e.mask);
    m.ids = rows.map((e) => e.ids);
    m.push({
      type: "started", prompt: r.prompt, normalizedPrompt: encoded.normalized, truncatedTokens: encoded.truncatedTokens,
      unknownWords: encoded.unknownWords, seed: r.seed, seeds: m.seeds, count: m.n, settings: r.settings,
      previewInterval: r.previewInterval, tokensTotal: this.total,
    });
    this.pending.push(m);
    return m;
  }

  /** One decoder step for every member; admits the pending ones first and retires finished ones. */
  async step(): Promise<void> {
    try {
      await this.reshape();
      if (this.members.length === 0) return;
      await this.decode();
    } catch (e) {
      const err = e instanceof MosaicError ? e : new MosaicError("INFERENCE_FAILED", `inference failed: ${(e as Error).message}`, { cause: e });
      for (const m of [...this.members, ...this.pending]) m.fail(err);
      this.pending = [];
      this.clear();
    }
  }

  /** Joins pending members, drops cancelled and finished ones, regrouping the rows. */
  private async reshape(): Promise<void> {
    for (const m of [...this.members, ...this.pending]) {
      if (!m.done && m.signal?.aborted) m.push({ type: "cancelled", tokensDone: m.pos });
    }
    const keep = this.members.filter((m) => !m.done);
    const join = this.pending.filter((m) => !m.done);
    if (join.length === 0 && keep.length === this.members.length) return;
    this.pending = [];
    if (keep.length === 0 && join.length === 0) {
      this.clear();
      return;
    }
    const { T } = this.dims;
    // All joining prompts in one text-encoder run, already in batch order.
    const joinRows = join.reduce((sum, m) => sum + m.rows, 0);
    let enc: Encoded | null = null;
    if (join.length) {
      enc = await encodeRows(this.model, join.flatMap((m) => m.ids), join.flatMap((m) => m.mask));
      for (const m of join) {
        m.t.text = performance.now() - m.t.start;
        m.t.decodeStart = performance.now();
      }
    }
    const kept: number[] = [];
    let offset = 0;
    for (const m of this.members) {
      if (!m.done) for (let i = 0; i < m.rows; i++) kept.push(offset + i);
      offset += m.rows;
    }
    await this.state.regroup(kept, enc, joinRows);
    const masks = [...keep, ...join].flatMap((m) => m.mask);
    const B = masks.length;
    this.textMask = int64(masks.flat(), [B, T]);
    this.members = [...keep, ...join];
  }

  private clear(): void {
    this.state.dispose();
    this.members = [];
    this.textMask = null;
  }

  /** Each row's previous token and position, for the next decoder step. */
  private stepRows(): { token: BigInt64Array; position: BigInt64Array } {
    const B = this.members.reduce((s, m) => s + m.rows, 0);
    const token = new BigInt64Array(B);
    const position = new BigInt64Array(B);
    let offset = 0;
    for (const m of this.members) {
      const pos = Math.min(m.pos, this.total - 1);
      for (let i = 0; i < m.rows; i++) {
        token[offset + i] = BigInt(m.pos === 0 ? this.model.manifest.architecture.startTokenId : m.codes[i % m.n]![m.pos - 1]!);
        position[offset + i] = BigInt(pos);
      }
      offset += m.rows;
    }
    return { token, position };
  }

  private async runStep(token: BigInt64Array, position: BigInt64Array): Promise<ort.InferenceSession.OnnxValueMapType> {
    return this.model.decoderStep.run({
      token: new ort.Tensor("int64", token, [token.length]),
      position: new ort.Tensor("int64", position, [position.length]),
      ...(await this.state.stepInputs()), text_mask: this.textMask!,
    });
  }

  /**
   * Runs the decoder step once at each cache length the batch's rows can reach (`CacheGrowth`), keeping
   * nothing: ONNX Runtime's first run of a shape plans and allocates, and a server should pay that at
   * start (thread/main.ts warm), not in its first generation of this batch size. Call it on a batch
   * that is about to be dropped: the cache is left at its full length.
   */
  async warmCacheLengths(): Promise<void> {
    await this.reshape();
    if (this.members.length === 0) return;
    const { token, position } = this.stepRows();
    for (const length of this.state.lengths()) {
      this.state.reach(length);
      await this.runStep(token, position);
    }
  }

  /** One step for the whole batch: the decoder step, the cache write, each row's next code, previews, events. */
  private async decode(): Promise<void> {
    const { token, position } = this.stepRows();
    const out = await this.runStep(token, position);
    // The cache is ours: this step's keys and values go in at each row's position.
    await this.state.write(out.new_k!, out.new_v!, position);
    const previewing = this.sample(out.logits!.data as Float32Array);
    this.queuePreviews(previewing);
    await this.report(previewing);
  }

  /** Each running member's next code for each of its images; returns the members due a preview now. */
  private sample(logits: Float32Array): Member[] {
    const { V } = this.dims;
    const previewing: Member[] = [];
    let offset = 0;
    for (const m of this.members) {
      const base = offset;
      offset += m.rows;
      if (m.done) continue;
      const pos = m.pos;
      const newest: number[] = [];
      for (let i = 0; i < m.n; i++) {
        const cond = logits.subarray((base + i) * V, (base + i + 1) * V);
        const uncond = m.guided ? logits.subarray((base + m.n + i) * V, (base + m.n + i + 1) * V) : null;
        const code = m.next(i, cond, uncond);
        m.codes[i]![pos] = code;
        newest.push(code);
      }
      m.pos = pos + 1;
      m.silent = m.pos < m.replayTo;
      // Previews up to the saved point were made by the run that saved it; the last one is the final
      // image, always made.
      if (m.due.has(m.pos) && (m.pos > m.replayTo || m.pos === this.total)) previewing.push(m);
      m.newest = newest;
    }
    return previewing;
  }

  /**
   * Previews run beside the decoder: a due grid is handed to the preview run and decoding goes on.
   * The last one is different: it is the final image, so the member waits for it (`report`).
   */
  private queuePreviews(previewing: Member[]): void {
    const { C } = this.dims;
    for (const m of previewing) {
      // A preview point inside the plan has no codes to show yet.
      if (m.pos < this.total && m.pos > this.plan) {
        this.wanted.set(m, { tokensDone: m.pos, grids: m.codes.map((c) => previewGrid(c.subarray(this.plan), m.pos - this.plan, C, this.grid, this.freeRows)) });
      }
    }
    this.pumpPreviews();
  }

  /** Each member's progress event (with the newest finished preview, if any), and its completion after the last step. */
  private async report(previewing: Member[]): Promise<void> {
    for (const m of this.members) {
      if (m.done || m.silent) continue;
      const last = m.pos === this.total;
      if (last) {
        // The final grid supersedes a preview still waiting; one in flight finishes first.
        this.wanted.delete(m);
        if (this.previewRun) await this.previewRun;
      }
      const event: ProgressEvent = {
        type: "progress", tokensDone: m.pos, tokensTotal: this.total,
        tokensPerSecond: (m.pos * m.n) / ((performance.now() - m.t.decodeStart) / 1000), tokens: m.newest,
      };
      const ready = m.readyPreview;
      m.readyPreview = null;
      if (last && previewing.includes(m)) {
        // A preview finished too late to go out before the last step is stale: the final grid wins.
        const tp = performance.now();
        m.lastFrames = await this.decodePreviews(m.codes.map((c) => c.slice(this.plan)));
        this.notePreview(m, performance.now() - tp);
        event.previews = m.lastFrames;
        event.previewTokens = m.pos;
      } else if (ready) {
        event.previews = ready.frames;
        event.previewTokens = ready.tokensDone;
      }
      m.push(event);
      if (last) m.push(await this.complete(m));
    }
  }

  /**
   * Starts the next preview run if none is in flight: every waiting grid, for every member, in one VQ
   * run. With a preview share s < 1, a run starts only once the time since the last one ended is at
   * least (1/s − 1) times what that one took, so previews are decoding at most a share s of the time:
   * on a CPU they take their cores from the decoder steps, and this bounds what they cost them (the
   * waiting grids are replaced by newer ones meanwhile, the newest wins). A member's first preview is
   * never held back (a run then takes every waiting grid), nor its last (the final image, `step`).
   */
  private pumpPreviews(): void {
    if (this.previewRun || this.wanted.size === 0) return;
    const gap = this.lastPreview.ms * (1 / this.previewShare - 1);
    const first = [...this.wanted.keys()].some((m) => !m.previewed);
    if (!first && performance.now() < this.lastPreview.end + gap) return;
    const batch = [...this.wanted.entries()];
    this.wanted.clear();
    for (const [m] of batch) m.previewed = true;
    const t0 = performance.now();
    this.previewRun = this.decodePreviews(batch.flatMap(([, w]) => w.grids)).then((frames) => {
      const spent = performance.now() - t0;
      this.lastPreview = { end: performance.now(), ms: spent };
      let k = 0;
      for (const [m, w] of batch) {
        const mine = frames.slice(k, k + m.n);
        k += m.n;
        if (m.done) continue;
        m.readyPreview = { tokensDone: w.tokensDone, frames: mine };
        this.notePreview(m, spent / batch.length);
      }
    }, (e: unknown) => {
      const err = e instanceof MosaicError ? e : new MosaicError("INFERENCE_FAILED", `preview decode failed: ${(e as Error).message}`, { cause: e });
      for (const [m] of batch) if (!m.done) m.fail(err);
    }).finally(() => {
      this.previewRun = null;
      this.pumpPreviews();
    });
  }

  private notePreview(m: Member, ms: number): void {
    m.t.previewMs += ms;
    m.t.previews++;
    m.t.firstPreview ??= performance.now() - m.t.start;
  }

  private async complete(m: Member): Promise<CompletedEvent> {
    const tDecode = performance.now();
    // With previews on, the last preview is the whole grid: reuse it rather than decode again.
    const frames = m.lastFrames ?? (await this.decodeImages(m.codes.map((c) => c.slice(this.plan))));
    const tEnd = performance.now();
    return {
      type: "completed",
      images: frames.map((f, i) => ({ ...f, index: i, seed: m.seeds[i]!, codes: m.codes[i]! })),
      timings: {
        textMs: m.t.text, decodeMs: tDecode - m.t.decodeStart - m.t.previewMs, previewMs: m.t.previewMs, previews: m.t.previews,
        finalMs: tEnd - tDecode, totalMs: tEnd - m.t.start, firstPreviewMs: m.t.firstPreview,
      },
    };
  }
}
