/**
 * The device-state graphs whose outputs depend on the model's layer count L, written as ONNX bytes when
 * a model loads (the fixed-shape ones are files beside this one, from training/mosaic_convert/engine_ops.py).
 *
 * Why built here: a per-layer decoder step (docs/model-format.md) takes each layer's cache as an input
 * of its own, and ONNX fixes a graph's output count, so "every layer's slice in one run" needs one graph
 * per L. Slicing one layer per run instead cost 2·L extra runs after every step (24 at DALL·E-mini size,
 * 48 at mega), each with its own dispatch. The encoding below is the few protobuf fields these graphs use
 * (onnx.proto3's field numbers); a protobuf library plus the ONNX schema would be a dependency for ~60 lines.
 */

/** onnx.proto TensorProto.DataType */
const FLOAT = 1, INT64 = 7, BOOL = 9;
/** onnx.proto AttributeProto.AttributeType */
const ATTR_INT = 2;

type Field = Uint8Array;

function varint(n: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

const concat = (parts: Field[]): Field => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const int = (field: number, n: number | bigint): Field => Uint8Array.from([...varint(field << 3), ...varint(n)]);
const bytes = (field: number, b: Field): Field => concat([Uint8Array.from([...varint((field << 3) | 2), ...varint(b.length)]), b]);
const str = (field: number, s: string): Field => bytes(field, new TextEncoder().encode(s));
const msg = (field: number, ...parts: Field[]): Field => bytes(field, concat(parts));

/** ValueInfoProto: a tensor input or output; a string dimension is symbolic. */
function value(field: number, name: string, elemType: number, dims: (number | string)[]): Field {
  const shape = dims.map((d) => msg(1, typeof d === "number" ? int(1, d) : str(2, d)));
  return msg(field, str(1, name), msg(2, msg(1, int(1, elemType), msg(2, ...shape))));
}

function node(op: string, inputs: string[], outputs: string[], attrs: Record<string, number> = {}): Field {
  return msg(1, ...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(4, op),
    ...Object.entries(attrs).map(([k, v]) => msg(5, str(1, k), int(3, v), int(20, ATTR_INT))));
}

/** A scalar int64 initializer. */
function scalar(name: string, v: number): Field {
  const raw = new Uint8Array(8);
  new DataView(raw.buffer).setBigInt64(0, BigInt(v), true);
  return msg(5, int(2, INT64), str(8, name), bytes(9, raw));
}

function model(name: string, body: Field[]): Uint8Array {
  // IR version 8 and opset 17, as the files from engine_ops.py.
  return concat([int(1, 8), str(2, "mosaic"), msg(8, str(1, ""), int(2, 17)), msg(7, str(2, name), ...body)]);
}

/** `${prefix}0` … `${prefix}{L-1}`: the names of a graph's per-layer inputs or outputs. */
export function layerNames(prefix: string, L: number): string[] {
  return Array.from({ length: L }, (_, l) => `${prefix}${l}`);
}

const STACKED = ["l", "b", "h", "n", "d"];
const LAYER = ["b", "h", "n", "d"];

/** Each layer's slice of `layer_l`'s index, shared by both graphs. */
function slices(L: number, from: string, to: (l: number) => string): Field[] {
  return Array.from({ length: L }, (_, l) => node("Gather", [from, `layer_${l}`], [to(l)], { axis: 0 }));
}
const indices = (L: number) => Array.from({ length: L }, (_, l) => scalar(`layer_${l}`, l));

/** `x` [L, …] → `y_0` … `y_{L-1}`: every layer's slice in one run (the cross-attention, after a regroup). */
export function splitLayersGraph(L: number): Uint8Array {
  return model(`split-layers-${L}`, [
    ...slices(L, "x", (l) => `y_${l}`),
    ...indices(L),
    value(11, "x", FLOAT, STACKED),
    ...layerNames("y_", L).map((n) => value(12, n, FLOAT, LAYER)),
  ]);
}

/**
 * cache-write.onnx's write (present = where(slot, new, past)) and every layer's slice of the result in
 * the same run: the stacked `present_*` stay the state, the `present_*_l` are the next step's inputs.
 */
export function cacheWriteLayersGraph(L: number): Uint8Array {
  const kv = ["k", "v"];
  return model(`cache-write-layers-${L}`, [
    ...kv.map((x) => node("Where", ["slot", `new_${x}`, `past_${x}`], [`present_${x}`])),
    ...kv.flatMap((x) => slices(L, `present_${x}`, (l) => `present_${x}_${l}`)),
    ...indices(L),
    ...kv.map((x) => value(11, `past_${x}`, FLOAT, STACKED)),
    ...kv.map((x) => value(11, `new_${x}`, FLOAT, ["l", "b", "h", 1, "d"])),
    value(11, "slot", BOOL, [1, "b", 1, "n", 1]),
    ...kv.map((x) => value(12, `present_${x}`, FLOAT, STACKED)),
    ...kv.flatMap((x) => layerNames(`present_${x}_`, L).map((n) => value(12, n, FLOAT, LAYER))),
  ]);
}
