/**
 * What a decode batch keeps between steps: the self-attention cache and the cross-attention
 * keys/values, all laid out [layers, batch row, heads, positions, head dim].
 *
 * Two places to keep it:
 * - HostState (CPU provider): plain arrays; a step's new keys/values are copied in place at each
 *   row's position, which costs nothing next to the step itself. Where the model's decoder step takes
 *   any cache length, the step is given only the positions reached so far (cache-growth.ts): attention
 *   reads the whole cache it is given every step (453 MB at batch 18 at DALL·E-mini size), so early
 *   steps would otherwise read mostly zeros.
 * - DeviceState (GPU providers): ONNX Runtime tensors that stay on the GPU. Uploading the whole
 *   cache every step would move hundreds of megabytes per step at DALL·E-mini size, so the writes,
 *   regroupings and fresh zero caches are tiny graphs run on the device (src/engine/ops/) and only
 *   token ids, positions, masks and logits cross the bus.
 */
import ort from "onnxruntime-node";
import { grownLength, type CacheGrowth } from "./cache-growth.ts";
import { layerNames } from "./ops/layer-graphs.ts";
import { layerViews } from "./step-inputs.ts";

export interface StateDims {
  L: number;
  H: number;
  D: number;
  T: number;
  /** Image positions (the full cache length). */
  N: number;
  /** The decoder step takes each layer's cache and cross-attention as inputs of their own (model-format.ts perLayerInputs). */
  perLayer: boolean;
}

export interface Encoded {
  k: ort.Tensor;
  v: ort.Tensor;
}

export interface StepFeeds {
  past_k: ort.Tensor;
  past_v: ort.Tensor;
  cross_k: ort.Tensor;
  cross_v: ort.Tensor;
}

export interface BatchState {
  /** The stacked tensors ([L, batch, …]) the state keeps. */
  readonly feeds: StepFeeds;
  /** The decoder step's cache and cross-attention inputs: the stacked feeds, or each layer's slice of them. */
  stepInputs(): Promise<Record<string, ort.Tensor>>;
  /**
   * The new batch: `kept` rows of the current one (in that order), then the `joining` rows whose
   * cross-attention keys/values the text encoder just produced (null when none join).
   */
  regroup(kept: number[], joining: Encoded | null, joinRows: number): Promise<void>;
  /** Writes a step's keys/values ([L, B, H, 1, D]) at each row's position. */
  write(newK: ort.Tensor, newV: ort.Tensor, position: BigInt64Array): Promise<void>;
  /** The cache lengths a batch may pass to the decoder step, shortest first (just N unless it grows). */
  lengths(): number[];
  /** Grows the cache to `length` now (a warm-up runs each length once); no-op where it does not grow. */
  reach(length: number): void;
  dispose(): void;
}

/** The small graphs DeviceState runs, opened on the model's provider with outputs left on the device. */
export interface DeviceOps {
  /** The step's keys/values written at each row's position; for a per-layer step (ops/layer-graphs.ts) it also gives every layer's slice of the result. */
  cacheWrite: ort.InferenceSession;
  gatherRows: ort.InferenceSession;
  concatRows: ort.InferenceSession;
  /** Zeros of a given shape made on the device, so a fresh cache is never uploaded. */
  zeros: ort.InferenceSession;
  /** For a per-layer decoder step (null otherwise), built for the model's L: every layer's slice of a stacked tensor in one run. */
  splitLayers: ort.InferenceSession | null;
}

const size = (dims: number[]): number => dims.reduce((a, b) => a * b, 1);

/**
 * Regroups a stacked [L, B, …] array in place: row `kept[i]` of each layer becomes row i of a batch of
 * B' = kept.length + joinRows, and the joining rows are copied from `fresh` ([L, joinRows, …]) or, with
 * none, zeroed. `a` must have room for L × B' rows. The blocks keep their order, so moving those that go
 * right first (last to first), then those that go left (first to last), never overwrites a block before
 * it is read; the joining rows go in last.
 */
export function regroupRows(a: Float32Array, B: number, kept: readonly number[], fresh: Float32Array | null, joinRows: number, rowSize: number, L: number): void {
  const B2 = kept.length + joinRows;
  const n = L * kept.length;
  const src = (j: number) => (Math.floor(j / kept.length) * B + kept[j % kept.length]!) * rowSize;
  const dst = (j: number) => (Math.floor(j / kept.length) * B2 + (j % kept.length)) * rowSize;
  for (let j = n - 1; j >= 0; j--) if (dst(j) > src(j)) a.copyWithin(dst(j), src(j), src(j) + rowSize);
  for (let j = 0; j < n; j++) if (dst(j) < src(j)) a.copyWithin(dst(j), src(j), src(j) + rowSize);
  for (let l = 0; l < L; l++) {
    for (let j = 0; j < joinRows; j++) {
      const to = (l * B2 + kept.length + j) * rowSize;
      if (fresh) a.set(fresh.subarray((l * joinRows + j) * rowSize, (l * joinRows + j + 1) * rowSize), to);
      else a.fill(0, to, to + rowSize);
    }
  }
}

abstract class Base {
  protected cur: StepFeeds | null = null;
  protected rows = 0;
  /** The cache length the feeds have now (N unless the state grows its cache). */
  protected length: number;

  constructor(protected readonly dims: StateDims) {
    this.length = dims.N;
  }

  /** The cache length a fresh batch starts with. */
  protected startLength(): number {
    return this.dims.N;
  }

  lengths(): number[] {
    return [this.dims.N];
  }

  reach(_length: number): void {}

  get feeds(): StepFeeds {
    if (!this.cur) throw new Error("the batch has no state yet");
    return this.cur;
  }

  async stepInputs(): Promise<Record<string, ort.Tensor>> {
    const f = this.feeds;
    return this.dims.perLayer ? this.layerInputs(f) : { ...f };
  }

  protected abstract layerInputs(feeds: StepFeeds): Promise<Record<string, ort.Tensor>>;

  protected cacheDims(B: number): number[] {
    return [this.dims.L, B, this.dims.H, this.length, this.dims.D];
  }

  /** Zeros of a cache shape, where this state keeps its tensors. */
  protected abstract zeros(dims: number[]): Promise<ort.Tensor>;

  /** A batch of only new rows: the encoder's outputs as they are and a zero cache. */
  protected async startFresh(joining: Encoded, B: number): Promise<void> {
    this.length = this.startLength();
    const pastK = await this.zeros(this.cacheDims(B));
    const pastV = await this.zeros(this.cacheDims(B));
    this.dispose();
    this.cur = { cross_k: joining.k, cross_v: joining.v, past_k: pastK, past_v: pastV };
    this.rows = B;
  }

  dispose(): void {
    if (this.cur) for (const t of Object.values(this.cur)) t.dispose();
    this.cur = null;
    this.rows = 0;
  }
}

export class HostState extends Base implements BatchState {
  /** `growth`: the decoder step takes any cache length, so the cache holds only the positions reached. */
  constructor(dims: StateDims, private readonly growth: CacheGrowth | null = null) {
    super(dims);
  }

  protected override startLength(): number {
    return this.growth ? grownLength(0, 1, this.dims.N, this.growth) : this.dims.N;
  }

  override lengths(): number[] {
    if (!this.growth) return [this.dims.N];
    const out = [this.startLength()];
    while (out.at(-1)! < this.dims.N) out.push(grownLength(out.at(-1)!, out.at(-1)! + 1, this.dims.N, this.growth));
    return out;
  }

  override reach(length: number): void {
    if (this.growth && length > this.length) this.grow(length);
  }

  protected async zeros(dims: number[]): Promise<ort.Tensor> {
    return this.cacheArray(dims[1]!);
  }

  /**
   * The arrays behind the feeds, each from its first element to the end of its room: regrouping
   * reuses them while the new batch fits (`regroupRows`). A fresh array per regroup cost the engine
   * thread more than its decoder steps in a busy server with the shipped model (7.1 s against
   * 20.4 s of step runs for 100 one-image jobs): the zero-filled allocation of every row at all N
   * positions, each time a generation joined or left (docs/performance.md).
   */
  private store: Partial<Record<keyof StepFeeds, Float32Array>> = {};

  /**
   * A zero cache of B rows at the current length, in an array with room for all N positions: growing
   * then moves what is written within the same memory (`grow`), and pages beyond it are never touched
   * until the cache reaches them. (Without growth the length is N and the array is exactly the cache.)
   */
  private cacheArray(B: number): ort.Tensor {
    const { L, H, D, N } = this.dims;
    const dims = [L, B, H, this.length, D];
    return new ort.Tensor("float32", new Float32Array(L * B * H * N * D).subarray(0, size(dims)), dims);
  }

  protected override async startFresh(joining: Encoded, B: number): Promise<void> {
    await super.startFresh(joining, B);
    const f = this.feeds;
    const whole = (t: ort.Tensor) => {
      const a = t.data as Float32Array;
      return new Float32Array(a.buffer, a.byteOffset, (a.buffer.byteLength - a.byteOffset) / 4);
    };
    this.store = { past_k: whole(f.past_k), past_v: whole(f.past_v), cross_k: f.cross_k.data as Float32Array, cross_v: f.cross_v.data as Float32Array };
  }

  override dispose(): void {
    super.dispose();
    this.store = {};
  }

  /** Views made once per set of arrays: writes go into the arrays, which the views share. */
  private views: { of: StepFeeds; inputs: Record<string, ort.Tensor> } | null = null;

  protected async layerInputs(feeds: StepFeeds): Promise<Record<string, ort.Tensor>> {
    if (this.views?.of !== feeds) this.views = { of: feeds, inputs: layerViews(feeds, this.dims.L) };
    return this.views.inputs;
  }

  async regroup(kept: number[], joining: Encoded | null, joinRows: number): Promise<void> {
    const { L, H, D, T, N: full } = this.dims;
    const N = this.length;
    const B = kept.length + joinRows;
    if (kept.length === 0) return this.startFresh(joining!, B);
    const old = this.feeds;
    const next = {} as StepFeeds;
    for (const key of ["cross_k", "cross_v", "past_k", "past_v"] as const) {
      const cross = key.startsWith("cross");
      // A row's size now, and at the full cache length (what an array's room is counted in).
      const rowSize = H * (cross ? T : N) * D, roomRow = H * (cross ? T : full) * D;
      const joined = key === "cross_k" ? joining?.k : key === "cross_v" ? joining?.v : undefined;
      let store = this.store[key]!;
      if (store.length < L * B * roomRow) {
        // No room: a new array, as large as this batch needs, holding the old rows to regroup.
        const from = store.subarray(0, L * this.rows * rowSize);
        store = new Float32Array(L * B * roomRow);
        store.set(from);
      }
      regroupRows(store, this.rows, kept, (joined?.data as Float32Array | undefined) ?? null, joinRows, rowSize, L);
      this.store[key] = store;
      const dims = [L, B, H, cross ? T : N, D];
      next[key] = new ort.Tensor("float32", store.subarray(0, size(dims)), dims);
    }
    for (const t of Object.values(old)) t.dispose();
    joining?.k.dispose();
    joining?.v.dispose();
    this.cur = next;
    this.rows = B;
  }

  /**
   * Lays the cache out for `length` positions in the same memory (`cacheArray` made room for N): each
   * [layer, row, head] block moves to its new place, the last first, so no block overwrites one not yet
   * moved. Positions between the old length and the new one keep stale values; the graph ignores
   * everything at or after a row's position (docs/model-format.md), and those are written before read.
   */
  private grow(length: number): void {
    const { L, H, D } = this.dims;
    const cur = this.feeds;
    const from = this.length * D, to = length * D;
    const dims = [L, this.rows, H, length, D];
    const move = (t: ort.Tensor): ort.Tensor => {
      const view = t.data as Float32Array;
      const all = new Float32Array(view.buffer, view.byteOffset, size(dims));
      for (let block = L * this.rows * H - 1; block > 0; block--) all.copyWithin(block * to, block * from, (block + 1) * from);
      return new ort.Tensor("float32", all, dims);
    };
    this.cur = { ...cur, past_k: move(cur.past_k), past_v: move(cur.past_v) };
    this.length = length;
  }

  async write(newK: ort.Tensor, newV: ort.Tensor, position: BigInt64Array): Promise<void> {
    const { L, H, D } = this.dims;
    const B = position.length;
    // This step's keys/values go in at each row's position, which the next step reads.
    let needed = 0;
    for (const p of position) needed = Math.max(needed, Number(p) + 1);
    if (this.growth && needed > this.length) this.grow(grownLength(this.length, needed, this.dims.N, this.growth));
    const N = this.length;
    const k = this.feeds.past_k.data as Float32Array, v = this.feeds.past_v.data as Float32Array;
    const nk = newK.data as Float32Array, nv = newV.data as Float32Array;
    for (let l = 0; l < L; l++) {
      for (let b = 0; b < B; b++) {
        const pos = Number(position[b]);
        for (let h = 0; h < H; h++) {
          const src = ((l * B + b) * H + h) * D;
          const dst = (((l * B + b) * H + h) * N + pos) * D;
          k.set(nk.subarray(src, src + D), dst);
          v.set(nv.subarray(src, src + D), dst);
        }
      }
    }
  }
}

export class DeviceState extends Base implements BatchState {
  constructor(dims: StateDims, private readonly ops: DeviceOps) {
    super(dims);
  }

  protected async zeros(dims: number[]): Promise<ort.Tensor> {
    return (await this.ops.zeros.run({ shape: new ort.Tensor("int64", BigInt64Array.from(dims, BigInt), [dims.length]) })).y!;
  }

  /**
   * Each stacked tensor's layer slices (copies on the device), kept while the tensor is: the cache's come
   * with every write, the cross-attention's are made once after the rows change.
   */
  private slices = new Map<ort.Tensor, ort.Tensor[]>();

  private async slicesOf(t: ort.Tensor): Promise<ort.Tensor[]> {
    let got = this.slices.get(t);
    if (!got) {
      if (!this.ops.splitLayers) throw new Error("a per-layer decoder step needs the layer graphs (loadModel opens them)");
      const out = await this.ops.splitLayers.run({ x: t });
      got = layerNames("y_", this.dims.L).map((n) => out[n]!);
      this.slices.set(t, got);
    }
    return got;
  }

  protected async layerInputs(feeds: StepFeeds): Promise<Record<string, ort.Tensor>> {
    // Slices of tensors the state no longer holds go first.
    const live = new Set<ort.Tensor>(Object.values(feeds));
    for (const [t, list] of this.slices) {
      if (!live.has(t)) {
        for (const x of list) x.dispose();
        this.slices.delete(t);
      }
    }
    const out: Record<string, ort.Tensor> = {};
    for (const [kind, t] of Object.entries(feeds)) (await this.slicesOf(t)).forEach((x, l) => (out[`${kind}_${l}`] = x));
    return out;
  }

  override dispose(): void {
    for (const list of this.slices.values()) for (const x of list) x.dispose();
    this.slices.clear();
    super.dispose();
  }

  private async gather(x: ort.Tensor, kept: number[]): Promise<ort.Tensor> {
    const rows = new ort.Tensor("int64", BigInt64Array.from(kept, BigInt), [kept.length]);
    return (await this.ops.gatherRows.run({ x, rows })).y!;
  }

  private async concat(a: ort.Tensor, b: ort.Tensor): Promise<ort.Tensor> {
    return (await this.ops.concatRows.run({ a, b })).y!;
  }

  /** kept rows of `old`, then `fresh`; every intermediate is released. */
  private async combine(old: ort.Tensor, kept: number[], fresh: ort.Tensor | null): Promise<ort.Tensor> {
    const unchanged = kept.length === this.rows && kept.every((r, i) => r === i);
    const head = unchanged ? old : await this.gather(old, kept);
    if (!fresh) return head;
    const out = await this.concat(head, fresh);
    if (head !== old) head.dispose();
    fresh.dispose();
    return out;
  }

  async regroup(kept: number[], joining: Encoded | null, joinRows: number): Promise<void> {
    const B = kept.length + joinRows;
    if (kept.length === 0) return this.startFresh(joining!, B);
    const old = this.feeds;
    const fresh = async () => (joinRows ? this.zeros(this.cacheDims(joinRows)) : null);
    const next: StepFeeds = {
      cross_k: await this.combine(old.cross_k, kept, joining?.k ?? null),
      cross_v: await this.combine(old.cross_v, kept, joining?.v ?? null),
      past_k: await this.combine(old.past_k, kept, await fresh()),
      past_v: await this.combine(old.past_v, kept, await fresh()),
    };
    for (const key of Object.keys(next) as (keyof StepFeeds)[]) if (next[key] !== old[key]) old[key].dispose();
    this.cur = next;
    this.rows = B;
  }

  async write(newK: ort.Tensor, newV: ort.Tensor, position: BigInt64Array): Promise<void> {
    const { N } = this.dims;
    const B = position.length;
    const slot = new Uint8Array(B * N);
    position.forEach((p, b) => (slot[b * N + Number(p)] = 1));
    const cur = this.feeds;
    const feeds = { past_k: cur.past_k, past_v: cur.past_v, new_k: newK, new_v: newV, slot: new ort.Tensor("bool", slot, [1, B, 1, N, 1]) };
    // Per layer, one run writes and slices (2 runs a step with the decoder step, not 2 + 2·L).
    const out = await this.ops.cacheWrite.run(feeds);
    if (this.dims.perLayer) {
      this.slices.set(out.present_k!, layerNames("present_k_", this.dims.L).map((n) => out[n]!));
      this.slices.set(out.present_v!, layerNames("present_v_", this.dims.L).map((n) => out[n]!));
    }
    cur.past_k.dispose();
    cur.past_v.dispose();
    newK.dispose();
    newV.dispose();
    this.cur = { ...cur, past_k: out.present_k!, past_v: out.present_v! };
  }
}
