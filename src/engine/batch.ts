/**
 * Continuous batching: the rows of several generations decoded together, one decoder step at a
 * time. Generations join at step boundaries and leave when done or cancelled; every row carries its
 * own position, and every image its own random stream, so an image comes out the same whatever else
 * shares its batch. A single generation is simply a batch of one (see generate.ts).
 */
import ort from "onnxruntime-node";
import { MosaicError } from "./errors.ts";
import { resolveRequest, type CompletedEvent, type Frame, type GenerateRequest, type GenerationEvent, type ProgressEvent, type ResolvedRequest } from "./request.ts";
import { decodeGrids, int64 } from "./vq.ts";
import type { Model } from "./model.ts";
import { filledGrid, mosaic, previewSchedule } from "./previews.ts";
import { imageSeed, Mulberry32 } from "./random.ts";
import { createSampler, guide } from "./sampling.ts";

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
  readonly sample: (logits: Float64Array, rng: Mulberry32) => number;
  readonly due: Set<number>;
  readonly t = { start: performance.now(), text: 0, decodeStart: 0, previewMs: 0, previews: 0, firstPreview: null as number | null };
  lastFrames: Frame[] | null = null;
  /** Token ids and attention mask of each row. */
  ids: number[][] = [];
  mask: number[][] = [];
  /** The newest token of each image, after a step. */
  newest: number[] = [];

  constructor(readonly r: ResolvedRequest, readonly signal: AbortSignal | undefined, total: number) {
    this.n = r.count;
    this.rows = r.settings.guidanceScale !== 1 ? 2 * r.count : r.count;
    this.seeds = Array.from({ length: this.n }, (_, i) => imageSeed(r.seed, i));
    this.codes = this.seeds.map(() => new Int32Array(total));
    this.rngs = this.seeds.map((s) => new Mulberry32(s));
    this.sample = createSampler(r.settings);
    this.due = previewSchedule(total, r.previewInterval);
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

/** Rows of tensors laid out [layers, batch, ...rest], gathered into a new batch. */
interface RowSource {
  data: Float32Array | null; // null: zeros (a fresh cache row)
  batch: number;
  row: number;
}

function gatherRows(layers: number, rowSize: number, sources: RowSource[]): Float32Array {
  const B = sources.length;
  const out = new Float32Array(layers * B * rowSize);
  for (let l = 0; l < layers; l++) {
    sources.forEach((s, b) => {
      if (!s.data) return;
      const from = (l * s.batch + s.row) * rowSize;
      out.set(s.data.subarray(from, from + rowSize), (l * B + b) * rowSize);
    });
  }
  return out;
}

export class DecodeBatch {
  private members: Member[] = [];
  private pending: Member[] = [];
  private crossK: ort.Tensor | null = null;
  private crossV: ort.Tensor | null = null;
  private pastK: ort.Tensor | null = null;
  private pastV: ort.Tensor | null = null;
  private textMask: ort.Tensor | null = null;
  private readonly total: number;
  private readonly dims: { L: number; H: number; D: number; T: number; C: number };

  constructor(private readonly model: Model) {
    const a = model.manifest.architecture;
    this.total = a.grid.height * a.grid.width;
    this.dims = { L: a.decoderLayers, H: a.heads, D: a.headDim, T: a.maxTextLength, C: a.codebookSize };
  }

  /** Images being generated, admitted ones included. */
  get images(): number {
    return [...this.members, ...this.pending].reduce((s, m) => s + m.n, 0);
  }

  get active(): boolean {
    return this.members.length + this.pending.length > 0;
  }

  /** Validates the request (throws BAD_INPUT) and queues it to join at the next step. */
  admit(request: GenerateRequest): Member {
    const r = resolveRequest(this.model, request);
    const m = new Member(r, request.signal, this.total);
    const encoded = this.model.prompts.encode(r.prompt);
    const empty = this.model.prompts.encode("");
    const rows = Array.from({ length: m.rows }, (_, i) => (i < m.n ? encoded : empty));
    m.mask = rows.map((e) => e.mask);
    m.ids = rows.map((e) => e.ids);
    m.push({
      type: "started", prompt: r.prompt, normalisedPrompt: encoded.normalised, truncatedTokens: encoded.truncatedTokens,
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
    const { L, H, D, T } = this.dims;
    // All joining prompts in one text-encoder run, already in batch order.
    const joinRows = join.reduce((s, m) => s + m.rows, 0);
    let enc: { k: ort.Tensor; v: ort.Tensor } | null = null;
    if (join.length) {
      const out = await this.model.textEncoder.run({
        input_ids: int64(join.flatMap((m) => m.ids).flat(), [joinRows, T]),
        attention_mask: int64(join.flatMap((m) => m.mask).flat(), [joinRows, T]),
      });
      enc = { k: out.cross_k!, v: out.cross_v! };
      for (const m of join) {
        m.t.text = performance.now() - m.t.start;
        m.t.decodeStart = performance.now();
      }
    }
    const masks = [...keep, ...join].flatMap((m) => m.mask);
    const B = masks.length;
    const cacheDims = [L, B, H, this.total, D];
    const cacheSize = L * B * H * this.total * D;
    if (keep.length === 0) {
      // A fresh batch: the encoder's outputs are the cross inputs as they are.
      this.disposeState();
      this.crossK = enc!.k;
      this.crossV = enc!.v;
      this.pastK = new ort.Tensor("float32", new Float32Array(cacheSize), cacheDims);
      this.pastV = new ort.Tensor("float32", new Float32Array(cacheSize), cacheDims);
    } else {
      // Regroup in CPU memory: kept rows from the current tensors, joining rows after them.
      const oldRows = this.members.reduce((s, m) => s + m.rows, 0);
      const keptRows: number[] = [];
      let offset = 0;
      for (const m of this.members) {
        if (!m.done) for (let i = 0; i < m.rows; i++) keptRows.push(offset + i);
        offset += m.rows;
      }
      const rows = (old: ort.Tensor, fresh: ort.Tensor | undefined): RowSource[] => [
        ...keptRows.map((row) => ({ data: old.data as Float32Array, batch: oldRows, row })),
        ...Array.from({ length: joinRows }, (_, row) => ({ data: (fresh?.data as Float32Array) ?? null, batch: joinRows, row })),
      ];
      const crossK = gatherRows(L, H * T * D, rows(this.crossK!, enc?.k));
      const crossV = gatherRows(L, H * T * D, rows(this.crossV!, enc?.v));
      const pastK = gatherRows(L, H * this.total * D, rows(this.pastK!, undefined));
      const pastV = gatherRows(L, H * this.total * D, rows(this.pastV!, undefined));
      this.disposeState();
      enc?.k.dispose();
      enc?.v.dispose();
      const crossDims = [L, B, H, T, D];
      this.crossK = new ort.Tensor("float32", crossK, crossDims);
      this.crossV = new ort.Tensor("float32", crossV, crossDims);
      this.pastK = new ort.Tensor("float32", pastK, cacheDims);
      this.pastV = new ort.Tensor("float32", pastV, cacheDims);
    }
    this.textMask = int64(masks.flat(), [B, T]);
    this.members = [...keep, ...join];
  }

  private writeCache(newK: Float32Array, newV: Float32Array, position: BigInt64Array): void {
    const { L, H, D } = this.dims;
    const B = position.length;
    const N = this.total;
    const k = this.pastK!.data as Float32Array;
    const v = this.pastV!.data as Float32Array;
    for (let l = 0; l < L; l++) {
      for (let b = 0; b < B; b++) {
        const pos = Number(position[b]);
        for (let h = 0; h < H; h++) {
          const src = ((l * B + b) * H + h) * D;
          const dst = (((l * B + b) * H + h) * N + pos) * D;
          k.set(newK.subarray(src, src + D), dst);
          v.set(newV.subarray(src, src + D), dst);
        }
      }
    }
  }

  private disposeState(): void {
    for (const t of [this.crossK, this.crossV, this.pastK, this.pastV]) t?.dispose();
    this.crossK = this.crossV = this.pastK = this.pastV = null;
  }

  private clear(): void {
    this.disposeState();
    this.members = [];
    this.textMask = null;
  }

  private async decode(): Promise<void> {
    const { C } = this.dims;
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
    const out = await this.model.decoderStep.run({
      token: new ort.Tensor("int64", token, [B]),
      position: new ort.Tensor("int64", position, [B]),
      past_k: this.pastK!, past_v: this.pastV!, cross_k: this.crossK!, cross_v: this.crossV!, text_mask: this.textMask!,
    });
    // The cache is ours: write this step's keys and values at each row's position, in place.
    this.writeCache(out.new_k!.data as Float32Array, out.new_v!.data as Float32Array, position);
    const logits = out.logits!.data as Float32Array;

    const previewing: Member[] = [];
    offset = 0;
    for (const m of this.members) {
      const base = offset;
      offset += m.rows;
      if (m.done) continue;
      const pos = m.pos;
      const newest: number[] = [];
      for (let i = 0; i < m.n; i++) {
        const cond = logits.subarray((base + i) * C, (base + i + 1) * C);
        const mixed = m.guided
          ? guide(cond, logits.subarray((base + m.n + i) * C, (base + m.n + i + 1) * C), m.r.settings.guidanceScale)
          : Float64Array.from(cond);
        const code = m.sample(mixed, m.rngs[i]!);
        m.codes[i]![pos] = code;
        newest.push(code);
      }
      m.pos = pos + 1;
      if (m.due.has(m.pos)) previewing.push(m);
      m.newest = newest;
    }

    // Every preview due at this step, for every member, in one VQ run.
    if (previewing.length) {
      const tp = performance.now();
      const frames = await decodeGrids(this.model, previewing.flatMap((m) => m.codes.map((c) => filledGrid(c, m.pos, C))));
      const spent = performance.now() - tp;
      let k = 0;
      for (const m of previewing) {
        m.lastFrames = frames.slice(k, k + m.n);
        k += m.n;
        m.t.previewMs += spent / previewing.length;
        m.t.previews++;
        m.t.firstPreview ??= performance.now() - m.t.start;
      }
    }

    for (const m of this.members) {
      if (m.done) continue;
      const newest = m.newest;
      const event: ProgressEvent = {
        type: "progress", tokensDone: m.pos, tokensTotal: this.total,
        tokensPerSecond: (m.pos * m.n) / ((performance.now() - m.t.decodeStart) / 1000), tokens: newest,
      };
      if (previewing.includes(m)) event.previews = m.lastFrames!;
      if (m.r.mosaic && this.model.codePatches) {
        const a = this.model.manifest.architecture;
        const p = this.model.manifest.previews.codePatches!.patchSize;
        const g = { gridHeight: a.grid.height, gridWidth: a.grid.width, patchSize: p };
        event.mosaics = m.codes.map((c) => ({ width: a.grid.width * p, height: a.grid.height * p, data: mosaic(c, m.pos, this.model.codePatches!, g, C) }));
      }
      m.push(event);
      if (m.pos === this.total) m.push(await this.complete(m));
    }
  }

  private async complete(m: Member): Promise<CompletedEvent> {
    const tDecode = performance.now();
    // With previews on, the last preview is the whole grid: reuse it rather than decode again.
    const frames = m.lastFrames ?? (await decodeGrids(this.model, m.codes));
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
