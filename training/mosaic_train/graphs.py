"""The three ONNX graphs of a Mosaic model folder (docs/model-format.md) from a DalleBart and any
codes -> pixels module: used by the shipped model's export and by the DALL·E mini / mega converter."""
from __future__ import annotations

import inspect
import os

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from .transformer import Config, DalleBart

OPSET = 17

# Protobuf cannot hold 2 GB; above this the weights go to one `<file>.data` beside the graph.
EXTERNAL_DATA_BYTES = 1_500_000_000


def save_onnx(model: onnx.ModelProto, path: str) -> None:
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        data_file = os.path.basename(path) + ".data"
        if os.path.exists(path + ".data"):
            os.remove(path + ".data")
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data_file)
    else:
        onnx.save(model, path)


def onnx_export(module: torch.nn.Module, args: tuple, path: str, **kwargs) -> None:
    """torch.onnx.export with the TorchScript exporter on every PyTorch we meet (Debian's 1.13 here,
    2.x on the GPU machine, where the default became the dynamo exporter)."""
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    torch.onnx.export(module, args, path, opset_version=OPSET, **kwargs)


def store_weights_fp16(path: str, min_elements: int = 1024) -> None:
    """Rewrite large fp32 initializers as fp16 followed by a Cast back to fp32. Files halve; the
    runtime folds the casts once at load, so compute stays fp32."""
    model = onnx.load(path)
    g = model.graph
    casts = []
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name + "_fp16")
        g.initializer.remove(init)
        g.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=name + "_cast"))
    for c in reversed(casts):
        g.node.insert(0, c)
    save_onnx(model, path)


def quantize_blocks(w: np.ndarray, block: int, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] weight as ONNX Runtime's MatMulNBits holds it: per output column, blocks of `block`
    inputs share one fp32 scale (largest magnitude / (2^(bits-1) - 1)), values stored as
    round(w / scale) + 2^(bits-1), so the zero point is the op's default and is not stored; 4-bit values
    go two to a byte, the first in the low nibble. Returns (uint8 [N, K / block, block * bits / 8],
    scales [N * K / block])."""
    k, n = w.shape
    zero = 1 << (bits - 1)
    blocks = w.T.reshape(n, k // block, block).astype(np.float32)
    scale = np.abs(blocks).max(axis=-1) / (zero - 1)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(blocks / scale[..., None]) + zero, 0, (1 << bits) - 1).astype(np.uint8)
    if bits == 4:
        q = q[..., 0::2] | (q[..., 1::2] << 4)
    return q, scale.reshape(-1).astype(np.float32)


def store_weights_nbits(path: str, bits: int = 8, block: int = 32, accuracy_level: int = 4, min_elements: int = 4096) -> int:
    """Rewrite each MatMul whose right side is a constant weight (fp32, or fp16 with a Cast) as
    ONNX Runtime's MatMulNBits with 8- or 4-bit weights (com.microsoft; CPU, CUDA and WebGPU providers):
    a quarter or an eighth of the bytes a decoder step reads. `accuracy_level` 4 quantises the
    activations to int8 too and runs ONNX Runtime's integer kernels; 0 dequantises to fp32 and, for 8
    bits, ran 10x slower than the fp32 MatMul on our CPU (docs/performance.md). Outputs change
    slightly, so this is an option, never the default. Returns how many MatMuls were rewritten."""
    model = onnx.load(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    cast_of = {n.output[0]: n for n in g.node if n.op_type == "Cast" and n.input[0] in inits}
    users: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    nodes, done, dropped = [], 0, set()
    for n in g.node:
        b = n.input[1] if n.op_type == "MatMul" else None
        src = inits.get(b) or (inits.get(cast_of[b].input[0]) if b in cast_of else None)
        w = numpy_helper.to_array(src) if src is not None else None
        if w is None or w.ndim != 2 or w.size < min_elements or w.shape[0] % block:
            nodes.append(n)
            continue
        k, nn = w.shape
        q, scales = quantize_blocks(w.astype(np.float32), block, bits)
        qname, sname = f"{n.name or b}_q{bits}", f"{n.name or b}_q{bits}_scales"
        g.initializer.extend([numpy_helper.from_array(q, qname), numpy_helper.from_array(scales, sname)])
        nodes.append(helper.make_node("MatMulNBits", [n.input[0], qname, sname], list(n.output), name=f"{n.name or b}_q{bits}",
                                      domain="com.microsoft", K=k, N=nn, bits=bits, block_size=block, accuracy_level=accuracy_level))
        done += 1
        # The fp32 (or fp16 + Cast) original goes when nothing else reads it.
        users[b] -= 1
        if users[b] == 0:
            if b in cast_of:
                dropped.add(b)
                users[src.name] -= 1
                if users[src.name] == 0:
                    dropped.add(src.name)
            else:
                dropped.add(b)
    nodes = [n for n in nodes if not (n.op_type == "Cast" and n.output[0] in dropped)]
    del g.node[:]
    g.node.extend(nodes)
    kept = [i for i in g.initializer if i.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    save_onnx(model, path)
    return done


DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64", TensorProto.FLOAT16: "float16"}


def step_cache_inputs(layers: int) -> list[str]:
    """The decoder step's per-layer cache and cross-attention inputs, in graph order."""
    return [f"{kind}_{i}" for kind in ("past_k", "past_v", "cross_k", "cross_v") for i in range(layers)]


def io_specs(c: Config, image_size: int) -> dict[str, dict[str, list[tuple[str, str, list]]]]:
    """The documented inputs and outputs of each graph (name, dtype, shape with named dynamic axes)."""
    cross = [c.decoder_layers, "batch", c.heads, "text_length", c.head_dim]
    # The decoder step takes each layer's cache and cross-attention keys/values as inputs of their own:
    # slicing one stacked input per layer made ONNX Runtime copy all of them every step (a Split, half
    # of a step's time at batch 18), where a caller can pass views of one array for nothing. The cache
    # length is free: the engine passes only the part written so far (transformer.decode_step).
    layer_inputs = [(name, "float32", ["batch", c.heads, "cache_length" if name.startswith("past") else "text_length",
                                       c.head_dim]) for name in step_cache_inputs(c.decoder_layers)]
    new = [c.decoder_layers, "batch", c.heads, 1, c.head_dim]
    text = ["batch", "text_length"]
    return {
        "textEncoder": {
            "inputs": [("input_ids", "int64", text), ("attention_mask", "int64", text)],
            "outputs": [("cross_k", "float32", cross), ("cross_v", "float32", cross)],
        },
        "decoderStep": {
            "inputs": [("token", "int64", ["batch"]), ("position", "int64", ["batch"]), *layer_inputs,
                       ("text_mask", "int64", text)],
            "outputs": [("logits", "float32", ["batch", c.vocab_out]), ("new_k", "float32", new),
                        ("new_v", "float32", new)],
        },
        "vqDecoder": {
            # Rows are free so that a preview can decode only the rows generated so far (src/engine/vq.ts).
            "inputs": [("codes", "int64", ["batch", "rows", c.grid])],
            "outputs": [("pixels", "float32", ["batch", "height", image_size, 3])],
        },
    }


def apply_spec(path: str, spec: dict) -> dict:
    """Stamp the documented shapes onto the graph's inputs/outputs (the exporter invents names for
    inferred axes) after checking names, dtypes and ranks agree; returns the model.json entry."""
    m = onnx.load(path)
    for kind, values in (("inputs", m.graph.input), ("outputs", m.graph.output)):
        if [v.name for v in values] != [n for n, _, _ in spec[kind]]:
            raise ValueError(f"{path}: {kind} {[v.name for v in values]} differ from the spec")
        for v, (name, dtype, shape) in zip(values, spec[kind]):
            t = v.type.tensor_type
            if DTYPES[t.elem_type] != dtype or len(t.shape.dim) != len(shape):
                raise ValueError(f"{path}: {name} is {DTYPES[t.elem_type]} rank {len(t.shape.dim)}, spec {dtype} {shape}")
            for d, want in zip(t.shape.dim, shape):
                if isinstance(want, str):
                    d.dim_param = want
                else:
                    d.dim_value = want
    save_onnx(m, path)
    return {kind: [{"name": n, "dtype": dt, "shape": sh} for n, dt, sh in spec[kind]] for kind in ("inputs", "outputs")}


class EncoderGraph(torch.nn.Module):
    def __init__(self, m: DalleBart):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m.encode(input_ids, attention_mask)


class StepGraph(torch.nn.Module):
    def __init__(self, m: DalleBart):
        super().__init__()
        self.m = m

    def forward(self, token, position, *rest):
        """rest: each layer's past_k, then past_v, cross_k, cross_v (step_cache_inputs), then text_mask."""
        n = self.m.config.decoder_layers
        kv = [list(rest[i * n:(i + 1) * n]) for i in range(4)]
        return self.m.decode_step(token, position, *kv, rest[-1])


ALL_GRAPHS = ("textEncoder", "decoderStep", "vqDecoder")


def export_graphs(model: DalleBart, out: str, vq_graph: torch.nn.Module, image_size: int,
                  fp16_weights: tuple[str, ...] = ALL_GRAPHS) -> dict:
    """Writes the three graphs into `out`. `vq_graph` maps codes [b, h, w] to pixels [b, H, W, 3];
    `fp16_weights` names the graphs whose weights are stored fp16."""
    c = model.config
    b, t = 2, c.max_text_len
    ids = torch.zeros((b, t), dtype=torch.long)
    mask = torch.ones((b, t), dtype=torch.long)
    cross_k, cross_v = model.encode(ids, mask)
    past_k, past_v = model.empty_cache(b)
    new_axes = {1: "batch"}
    layer_axes = {name: {0: "batch", 2: "cache_length" if name.startswith("past") else "text_length"}
                  for name in step_cache_inputs(c.decoder_layers)}
    cross_axes = {1: "batch", 3: "text_length"}
    files = {
        "textEncoder": "text_encoder.onnx",
        "decoderStep": "decoder_step.onnx",
        "vqDecoder": "vq_decoder.onnx",
    }
    onnx_export(EncoderGraph(model), (ids, mask), os.path.join(out, files["textEncoder"]),
                      input_names=["input_ids", "attention_mask"], output_names=["cross_k", "cross_v"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "text_length"},
                                    "attention_mask": {0: "batch", 1: "text_length"},
                                    "cross_k": cross_axes, "cross_v": cross_axes})
    onnx_export(StepGraph(model),
                      (torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long),
                       *past_k, *past_v, *cross_k, *cross_v, mask),
                      os.path.join(out, files["decoderStep"]),
                      input_names=["token", "position", *step_cache_inputs(c.decoder_layers), "text_mask"],
                      output_names=["logits", "new_k", "new_v"],
                      dynamic_axes={"token": {0: "batch"}, "position": {0: "batch"}, **layer_axes,
                                    "text_mask": {0: "batch", 1: "text_length"}, "logits": {0: "batch"},
                                    "new_k": new_axes, "new_v": new_axes})
    onnx_export(vq_graph, (torch.zeros((b, c.grid, c.grid), dtype=torch.long),),
                os.path.join(out, files["vqDecoder"]), input_names=["codes"], output_names=["pixels"],
                dynamic_axes={"codes": {0: "batch", 1: "rows"}, "pixels": {0: "batch", 1: "height"}})
    graphs = {}
    specs = io_specs(c, image_size)
    for key, name in files.items():
        path = os.path.join(out, name)
        if key in fp16_weights:
            store_weights_fp16(path)
        graphs[key] = {"file": name, **apply_spec(path, specs[key])}
    return graphs


