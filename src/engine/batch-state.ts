/**
 * What a decode batch keeps between steps: the self-attention cache and the cross-attention
 * keys/values, all laid out [layers, batch row, heads, positions, head dim].
 *
 * Two places to keep it:
 * - HostState (CPU provider): plain arrays; a step's new keys/values are copied in place at each
 *   row's position, which costs nothing next to the step itself.
 * - DeviceState (GPU providers): ONNX Runtime tensors that stay on the GPU. Uploading the whole
 *   cache every step would move hundreds of megabytes per step at DALL·E-mini size, so the writes,
 *   regroupings and fresh zero caches are tiny graphs run on the device (src/engine/ops/) and only
 *   token ids, positions, masks and logits cross the bus.
 */
import ort from "onnxruntime-node";

export interface StateDims {
  L: number;
  H: number;
  D: number;
  T: number;
  /** Image positions (the cache length). */
  N: number;
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
  readonly feeds: StepFeeds;
  /**
   * The new batch: `kept` rows of the current one (in that order), then the `joining` rows whose
   * cross-attention keys/values the text encoder just produced (null when none join).
   */
  regroup(kept: number[], joining: Encoded | null, joinRows: number): Promise<void>;
  /** Writes a step's keys/values ([L, B, H, 1, D]) at each row's position. */
  write(newK: ort.Tensor, newV: ort.Tensor, position: BigInt64Array): Promise<void>;
  dispose(): void;
}

/** The small graphs DeviceState runs, opened on the model's provider with outputs left on the device. */
export interface DeviceOps {
  cacheWrite: ort.InferenceSession;
  gatherRows: ort.InferenceSession;
  concatRows: ort.InferenceSession;
  /** Zeros of a given shape made on the device, so a fresh cache is never uploaded. */
  zeros: ort.InferenceSession;
}

const size = (dims: number[]): number => dims.reduce((a, b) => a * b, 1);

function zeros(dims: number[]): ort.Tensor {
  return new ort.Tensor("float32", new Float32Array(size(dims)), dims);
}

/** Rows [l, row, ...] of `from` (batch `fromRows`) copied to row `to` of `out` (batch `outRows`). */
function copyRow(from: Float32Array, fromRows: number, row: number, out: Float32Array, outRows: number, to: number, rowSize: number, L: number): void {
  for (let l = 0; l < L; l++) {
    const src = (l * fromRows + row) * rowSize;
    out.set(from.subarray(src, src + rowSize), (l * outRows + to) * rowSize);
  }
}

abstract class Base {
  protected cur: StepFeeds | null = null;
  protected rows = 0;

  constructor(protected readonly dims: StateDims) {}

  get feeds(): StepFeeds {
    if (!this.cur) throw new Error("the batch has no state yet");
    return this.cur;
  }

  protected cacheDims(B: number): number[] {
    return [this.dims.L, B, this.dims.H, this.dims.N, this.dims.D];
  }

  /** Zeros of a cache shape, where this state keeps its tensors. */
  protected abstract zeros(dims: number[]): Promise<ort.Tensor>;

  /** A batch of only new rows: the encoder's outputs as they are and a zero cache. */
  protected async startFresh(joining: Encoded, B: number): Promise<void> {
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
  protected async zeros(dims: number[]): Promise<ort.Tensor> {
    return zeros(dims);
  }

  async regroup(kept: number[], joining: Encoded | null, joinRows: number): Promise<void> {
    const { L, H, D, T, N } = this.dims;
    const B = kept.length + joinRows;
    if (kept.length === 0) return this.startFresh(joining!, B);
    const old = this.feeds;
    const gather = (from: ort.Tensor, fresh: ort.Tensor | null, rowSize: number, dims: number[]): ort.Tensor => {
      const out = new Float32Array(size(dims));
      kept.forEach((row, i) => copyRow(from.data as Float32Array, this.rows, row, out, B, i, rowSize, L));
      if (fresh) for (let j = 0; j < joinRows; j++) copyRow(fresh.data as Float32Array, joinRows, j, out, B, kept.length + j, rowSize, L);
      return new ort.Tensor("float32", out, dims);
    };
    const crossDims = [L, B, H, T, D];
    const next: StepFeeds = {
      cross_k: gather(old.cross_k, joining?.k ?? null, H * T * D, crossDims),
      cross_v: gather(old.cross_v, joining?.v ?? null, H * T * D, crossDims),
      past_k: gather(old.past_k, null, H * N * D, this.cacheDims(B)),
      past_v: gather(old.past_v, null, H * N * D, this.cacheDims(B)),
    };
    this.dispose();
    joining?.k.dispose();
    joining?.v.dispose();
    this.cur = next;
    this.rows = B;
  }

  async write(newK: ort.Tensor, newV: ort.Tensor, position: BigInt64Array): Promise<void> {
    const { L, H, D, N } = this.dims;
    const B = position.length;
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
    const out = await this.ops.cacheWrite.run({
      past_k: cur.past_k, past_v: cur.past_v, new_k: newK, new_v: newV,
      slot: new ort.Tensor("bool", slot, [1, B, 1, N, 1]),
    });
    cur.past_k.dispose();
    cur.past_v.dispose();
    newK.dispose();
    newV.dispose();
    this.cur = { ...cur, past_k: out.present_k!, past_v: out.present_v! };
  }
}
