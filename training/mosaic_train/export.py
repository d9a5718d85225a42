"""Export the trained VQ autoencoder and transformer to a Mosaic model folder (docs/model-format.md),
with reference fixtures for the TypeScript engine's tests."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto

from . import data
from .adherence import held_out_prompts
from .generate import generate_codes
from .runtime import log, setup_torch
from .sampling import Settings
from .text import WordTokenizer, normalise
from .train_transformer import tokenize_batch
from .transformer import Config, DalleBart
from .vq import VQAutoencoder

OPSET = 17
# The model's default sampling when no selection was run (select.py chooses it on held-out prompts).
FALLBACK_SETTINGS = Settings(guidance_scale=1.0, top_k=8, top_p=1.0, temperature=0.7)


def default_settings(work: str) -> Settings:
    path = os.path.join(work, "selection.json")
    if not os.path.exists(path):
        return FALLBACK_SETTINGS
    with open(path) as f:
        return Settings(**json.load(f)["best"])
# The engine's parity fixtures: greedy with guidance, so both the guided path and argmax are pinned.
GREEDY_SETTINGS = Settings(guidance_scale=3.0, top_k=1, top_p=1.0, temperature=1.0)


def load(work: str) -> tuple[VQAutoencoder, DalleBart, dict, dict]:
    """The trained models (weights rounded to fp16, as the files hold them) and their checkpoints."""
    vq_ckpt = torch.load(os.path.join(work, "vq.pt"))
    a = vq_ckpt["args"]
    vq = VQAutoencoder(a["codebook"], a["embed_dim"], a["channels"])
    vq.load_state_dict(vq_ckpt["model"])
    tr_ckpt = torch.load(os.path.join(work, "transformer.pt"))
    model = DalleBart(Config(**tr_ckpt["config"]))
    model.load_state_dict(tr_ckpt["model"])
    for m in (vq, model):
        m.eval()
        round_to_fp16(m)
    return vq, model, vq_ckpt, tr_ckpt


def load_for_generation(work: str) -> tuple[VQAutoencoder, DalleBart, dict, dict, WordTokenizer]:
    """What every post-training step (select, export, card) starts from."""
    setup_torch(0)
    return (*load(work), WordTokenizer(data.vocabulary()))


@torch.no_grad()
def round_to_fp16(module: torch.nn.Module) -> None:
    """The files store weights as fp16; rounding here makes PyTorch compute with exactly the weights
    the ONNX graphs will hold, so reference outputs compare like with like."""
    for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
        t.copy_(t.half().float())


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
    import inspect
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


DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64", TensorProto.FLOAT16: "float16"}


def io_specs(c: Config, image_size: int = data.IMAGE_SIZE) -> dict[str, dict[str, list[tuple[str, str, list]]]]:
    """The documented inputs and outputs of each graph (name, dtype, shape with named dynamic axes)."""
    cache = [c.decoder_layers, "batch", c.heads, c.image_len, c.head_dim]
    cross = [c.decoder_layers, "batch", c.heads, "text_length", c.head_dim]
    new = [c.decoder_layers, "batch", c.heads, 1, c.head_dim]
    text = ["batch", "text_length"]
    return {
        "textEncoder": {
            "inputs": [("input_ids", "int64", text), ("attention_mask", "int64", text)],
            "outputs": [("cross_k", "float32", cross), ("cross_v", "float32", cross)],
        },
        "decoderStep": {
            "inputs": [("token", "int64", ["batch"]), ("position", "int64", ["batch"]), ("past_k", "float32", cache),
                       ("past_v", "float32", cache), ("cross_k", "float32", cross), ("cross_v", "float32", cross),
                       ("text_mask", "int64", text)],
            "outputs": [("logits", "float32", ["batch", c.codebook_size]), ("new_k", "float32", new),
                        ("new_v", "float32", new)],
        },
        "vqDecoder": {
            "inputs": [("codes", "int64", ["batch", c.grid, c.grid])],
            "outputs": [("pixels", "float32", ["batch", image_size, image_size, 3])],
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

    def forward(self, token, position, past_k, past_v, cross_k, cross_v, text_mask):
        return self.m.decode_step(token, position, past_k, past_v, cross_k, cross_v, text_mask)


class VQGraph(torch.nn.Module):
    def __init__(self, vq: VQAutoencoder):
        super().__init__()
        self.vq = vq

    def forward(self, codes):
        return self.vq.decode_codes(codes)


ALL_GRAPHS = ("textEncoder", "decoderStep", "vqDecoder")


def export_graphs(vq: VQAutoencoder, model: DalleBart, out: str, vq_graph: torch.nn.Module | None = None,
                  image_size: int = data.IMAGE_SIZE, fp16_weights: tuple[str, ...] = ALL_GRAPHS) -> dict:
    """Writes the three graphs into `out`. `vq_graph` (codes -> pixels) replaces the shipped VQ
    autoencoder for converted models; `fp16_weights` names the graphs whose weights are stored fp16."""
    c = model.config
    b, t = 2, c.max_text_len
    ids = torch.zeros((b, t), dtype=torch.long)
    mask = torch.ones((b, t), dtype=torch.long)
    cross_k, cross_v = model.encode(ids, mask)
    past_k, past_v = model.empty_cache(b)
    cache_axes = {1: "batch"}
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
                      (torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long), past_k, past_v, cross_k, cross_v, mask),
                      os.path.join(out, files["decoderStep"]),
                      input_names=["token", "position", "past_k", "past_v", "cross_k", "cross_v", "text_mask"],
                      output_names=["logits", "new_k", "new_v"],
                      dynamic_axes={"token": {0: "batch"}, "position": {0: "batch"}, "past_k": cache_axes, "past_v": cache_axes,
                                    "cross_k": cross_axes, "cross_v": cross_axes,
                                    "text_mask": {0: "batch", 1: "text_length"}, "logits": {0: "batch"},
                                    "new_k": cache_axes, "new_v": cache_axes})
    onnx_export(vq_graph if vq_graph is not None else VQGraph(vq), (torch.zeros((b, c.grid, c.grid), dtype=torch.long),),
                os.path.join(out, files["vqDecoder"]), input_names=["codes"], output_names=["pixels"],
                dynamic_axes={"codes": {0: "batch"}, "pixels": {0: "batch"}})
    graphs = {}
    specs = io_specs(c, image_size)
    for key, name in files.items():
        path = os.path.join(out, name)
        if key in fp16_weights:
            store_weights_fp16(path)
        graphs[key] = {"file": name, **apply_spec(path, specs[key])}
    return graphs


@torch.no_grad()
def code_patches(vq: VQAutoencoder, patch: int) -> np.ndarray:
    """uint8 [codebook, patch, patch, 3]: what each code looks like in the middle of a field of
    itself. Tiling these gives the zero-cost mosaic preview."""
    n = vq.codebook.size
    grid = 16
    pix = vq.decode_codes(torch.arange(n)[:, None, None].expand(n, grid, grid))  # [n, 64, 64, 3]
    f = pix.shape[1] // grid
    mid = grid // 2 * f
    block = pix[:, mid : mid + f, mid : mid + f]
    if f != patch:
        block = torch.nn.functional.interpolate(block.permute(0, 3, 1, 2), size=(patch, patch), mode="area").permute(0, 2, 3, 1)
    return (block.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def manifest(model: DalleBart, vq: VQAutoencoder, graphs: dict, tok: WordTokenizer, patch: int, card: dict,
             defaults: Settings) -> dict:
    c = model.config
    return {
        "format": "mosaic-model",
        "formatVersion": 1,
        "name": "mosaic-shapes",
        "version": "1.0.0",
        "description": "A small DALL·E-mini-style model trained by the Mosaic project on synthetic captioned "
                       "shapes (circles, squares, triangles; 8 colours; 9 positions; 2 sizes).",
        "architecture": {
            "family": "dalle-bart",
            "encoderLayers": c.encoder_layers,
            "decoderLayers": c.decoder_layers,
            "heads": c.heads,
            "modelWidth": c.d_model,
            "headDim": c.head_dim,
            "feedForwardWidth": c.glu_dim,
            "textVocabSize": c.text_vocab,
            "maxTextLength": c.max_text_len,
            "grid": {"height": c.grid, "width": c.grid},
            "codebookSize": c.codebook_size,
            "startTokenId": c.start_token,
            "imageSize": {"height": data.IMAGE_SIZE, "width": data.IMAGE_SIZE},
        },
        "text": {
            "tokenizer": "tokenizer.json",
            "normalization": "mosaic-basic",
            "padTokenId": tok.pad_id,
        },
        "sampling": {
            "guidanceScale": defaults.guidance_scale,
            "topK": defaults.top_k,
            "topP": defaults.top_p,
            "temperature": defaults.temperature,
        },
        "previews": {"fill": "most-frequent", "codePatches": {"file": "code-patches.bin", "patchSize": patch}},
        "graphs": graphs,
        "training": card,
    }


@torch.no_grad()
def fixtures(vq: VQAutoencoder, model: DalleBart, tok: WordTokenizer) -> dict:
    """Small reference outputs the TypeScript tests compare against (no PyTorch needed there)."""
    c = model.config
    prompts = ["a big red circle in the centre, blue background", "yellow background with a small black square at the top left"]
    ids, mask = tokenize_batch(tok, prompts, c.max_text_len)
    cross_k, cross_v = model.encode(ids, mask)
    past_k, past_v = model.empty_cache(2)
    token = torch.full((2,), c.start_token, dtype=torch.long)
    step_logits = []
    for pos, nxt in enumerate([[5, 9], [17, 3], [200, 255]]):
        position = torch.full((2,), pos)
        logits, new_k, new_v = model.decode_step(token, position, past_k, past_v, cross_k, cross_v, mask)
        model.write_cache(past_k, past_v, new_k, new_v, position)
        step_logits.append(logits.numpy().round(6).tolist())
        token = torch.tensor(nxt)
    # The same three tokens teacher-forced through the full no-cache forward pass.
    full = model(ids, mask, torch.tensor([[c.start_token, 5, 17], [c.start_token, 9, 3]]))
    full_logits = full.permute(1, 0, 2).numpy().round(6).tolist()
    stride = max(1, cross_k.numel() // 97)
    greedy = generate_codes(model, tok, prompts, [7, 8], GREEDY_SETTINGS)
    sampled_settings = Settings(guidance_scale=3.0, top_k=32, top_p=0.95, temperature=1.0)
    sampled = generate_codes(model, tok, prompts[:1] * 2, [42, 43], sampled_settings)
    grid = torch.from_numpy(greedy[:1].reshape(1, c.grid, c.grid))
    pixels = vq.decode_codes(grid)[0].numpy()
    return {
        "prompts": prompts,
        "normalised": [normalise(p) for p in prompts],
        "inputIds": ids.tolist(),
        "attentionMask": mask.tolist(),
        "crossKStride": stride,
        "crossKSample": cross_k.flatten()[::stride].numpy().round(6).tolist(),
        "stepTokens": [[c.start_token] * 2, [5, 9], [17, 3]],
        "stepLogits": step_logits,
        "fullForwardLogits": full_logits,
        "greedy": {"seeds": [7, 8], "settings": vars(GREEDY_SETTINGS), "codes": greedy.tolist()},
        "sampled": {"seeds": [42, 43], "settings": vars(sampled_settings), "codes": sampled.tolist()},
        "vq": {"codes": greedy[0].tolist(), "pixelStride": 37,
               "pixelSample": pixels.flatten()[::37].round(6).tolist()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="training/work")
    p.add_argument("--out", default="models/mosaic-shapes")
    p.add_argument("--fixtures", default="test/fixtures/mosaic-shapes-reference.json")
    p.add_argument("--held-out", default="test/fixtures/held-out-prompts.json")
    p.add_argument("--patch", type=int, default=4)
    args = p.parse_args()
    vq, model, vq_ckpt, tr_ckpt, tok = load_for_generation(args.work)
    tmp = tempfile.mkdtemp()
    graphs = export_graphs(vq, model, tmp)
    os.makedirs(args.out, exist_ok=True)
    for g in graphs.values():
        shutil.move(os.path.join(tmp, g["file"]), os.path.join(args.out, g["file"]))
    tok.save(os.path.join(args.out, "tokenizer.json"))
    code_patches(vq, args.patch).tofile(os.path.join(args.out, "code-patches.bin"))
    usage_path = os.path.join(args.work, "codebook-usage.json")
    usage = json.load(open(usage_path)) if os.path.exists(usage_path) else {}
    card = {
        "vq": {"steps": vq_ckpt["steps"], "minutes": round(vq_ckpt["seconds"] / 60, 1),
               "finalValMse": vq_ckpt["history"][-1]["val_mse"] if vq_ckpt["history"] else None, **usage},
        "transformer": {"steps": tr_ckpt["steps"], "minutes": round(tr_ckpt["seconds"] / 60, 1),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "final": tr_ckpt["history"][-1] if tr_ckpt["history"] else None},
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(manifest(model, vq, graphs, tok, args.patch, card, default_settings(args.work)), f, indent=2)
        f.write("\n")
    if args.fixtures:
        os.makedirs(os.path.dirname(args.fixtures), exist_ok=True)
        with open(args.fixtures, "w") as f:
            json.dump(fixtures(vq, model, tok), f)
    if args.held_out:
        with open(args.held_out, "w") as f:
            json.dump(held_out_prompts(48), f, indent=1)
    log(f"exported to {args.out}")


if __name__ == "__main__":
    main()
