"""Checks a Mosaic model folder against docs/model-format.md from the Python side: model.json's
fields, the files it names, and its numbers against what the ONNX graphs really hold (inputs,
outputs and the embedding tables). The exporters' tests run it on what they write; the engine makes
its own checks when it loads a folder (src/engine/model-format.ts, model.ts).

    PYTHONPATH=training python3 -m mosaic_train.model_check models/mosaic-shapes
"""
from __future__ import annotations

import json
import os
import sys

import onnx
from onnx import TensorProto

ARCHITECTURE_INTS = ("encoderLayers", "decoderLayers", "heads", "modelWidth", "headDim", "feedForwardWidth",
                     "textVocabSize", "maxTextLength", "codebookSize")
DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64}


class ModelFolderError(ValueError):
    pass


def layered(decoder_step: dict) -> bool:
    """Whether the decoder step takes each layer's cache as inputs of its own (past_k_0, ...) rather than
    one stacked past_k (models exported before 2026-12-01)."""
    return any(i.get("name") == "past_k_0" for i in decoder_step.get("inputs", []))


def required_graphs(a: dict, per_layer: bool) -> dict:
    """The tensors each graph must have (docs/model-format.md; src/engine/model-format.ts requiredGraphs)."""
    plan = a.get("plan") or {}
    n = plan.get("length", 0) + a["grid"]["height"] * a["grid"]["width"]
    # The cache length fixed (the grid's size) or free (a name): a free one lets the engine pass only the
    # part of the cache written so far (src/engine/cache-growth.ts).
    cache = [a["decoderLayers"], "batch", a["heads"], ("cache_length", n), a["headDim"]]
    cross = [a["decoderLayers"], "batch", a["heads"], "text_length", a["headDim"]]
    if per_layer:
        step_kv = {f"{kind}_{i}": ("float32", (cache if kind.startswith("past") else cross)[1:])
                   for kind in ("past_k", "past_v", "cross_k", "cross_v") for i in range(a["decoderLayers"])}
    else:
        step_kv = {"past_k": ("float32", cache), "past_v": ("float32", cache),
                   "cross_k": ("float32", cross), "cross_v": ("float32", cross)}
    fresh = [a["decoderLayers"], "batch", a["heads"], 1, a["headDim"]]
    text = ["batch", "text_length"]
    return {
        "textEncoder": {"inputs": {"input_ids": ("int64", text), "attention_mask": ("int64", text)},
                        "outputs": {"cross_k": ("float32", cross), "cross_v": ("float32", cross)}},
        "decoderStep": {"inputs": {"token": ("int64", ["batch"]), "position": ("int64", ["batch"]), **step_kv,
                                   "text_mask": ("int64", text)},
                        "outputs": {"logits": ("float32", ["batch", plan.get("outputVocabSize", a["codebookSize"])]),
                                    "new_k": ("float32", fresh), "new_v": ("float32", fresh)}},
        # Rows fixed (the grid's height) or free (a name): free rows let a preview decode only the rows
        # generated so far (src/engine/vq.ts, docs/model-format.md).
        "vqDecoder": {"inputs": {"codes": ("int64", ["batch", ("rows", a["grid"]["height"]), a["grid"]["width"]])},
                      "outputs": {"pixels": ("float32", ["batch", ("height", a["imageSize"]["height"]),
                                                         a["imageSize"]["width"], 3])}},
    }


def _agree(got: list, want: list) -> bool:
    """Named (dynamic) axes match any name; fixed sizes must be equal; a (name, size) pair takes either."""
    def one(g, w) -> bool:
        if isinstance(w, tuple):
            return isinstance(g, str) or g == w[1]
        return isinstance(w, str) and isinstance(g, str) or g == w
    return len(got) == len(want) and all(one(g, w) for g, w in zip(got, want))


def _onnx_shape(value_info) -> list:
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_model_folder(folder: str) -> dict:
    """Returns model.json's contents; raises ModelFolderError listing every problem found."""
    problems: list[str] = []
    path = os.path.join(folder, "model.json")
    with open(path) as f:
        m = json.load(f)

    def need(obj, key: str, where: str, kind=None):
        if not isinstance(obj, dict) or key not in obj:
            problems.append(f"{where}.{key} is missing")
            return None
        value = obj[key]
        if kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
            problems.append(f"{where}.{key} must be a whole number (got {value!r})")
        elif kind is str and not (isinstance(value, str) and value):
            problems.append(f"{where}.{key} must be a non-empty string (got {value!r})")
        elif kind is float and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            problems.append(f"{where}.{key} must be a number (got {value!r})")
        elif kind is dict and not isinstance(value, dict):
            problems.append(f"{where}.{key} must be an object")
        return value

    def fail():
        raise ModelFolderError(f"{path}: " + "; ".join(problems))

    if m.get("format") != "mosaic-model" or m.get("formatVersion") != 1:
        problems.append("format/formatVersion must be \"mosaic-model\"/1")
    for key in ("name", "version"):
        need(m, key, "", str)
    need(m, "description", "")
    a = need(m, "architecture", "", dict) or {}
    if a.get("family") != "dalle-bart":
        problems.append("architecture.family must be \"dalle-bart\"")
    for key in ARCHITECTURE_INTS:
        if (v := need(a, key, "architecture", int)) is not None and isinstance(v, int) and v < 1:
            problems.append(f"architecture.{key} must be ≥ 1")
    need(a, "startTokenId", "architecture", int)
    if "plan" in a:
        pl = need(a, "plan", "architecture", dict) or {}
        for key in ("length", "outputVocabSize", "firstTokenId"):
            need(pl, key, "architecture.plan", int)
        words = need(pl, "words", "architecture.plan", list) or []
        if isinstance(pl.get("firstTokenId"), int) and isinstance(pl.get("outputVocabSize"), int) and (
                pl["firstTokenId"] <= a.get("codebookSize", 0) or pl["firstTokenId"] + len(words) != pl["outputVocabSize"]):
            problems.append("architecture.plan: firstTokenId must be above codebookSize and firstTokenId + words must equal outputVocabSize")
        exclude = pl.get("exclude", [])
        length = pl.get("length") if isinstance(pl.get("length"), int) else 0
        if not isinstance(exclude, list) or not all(
                isinstance(e, dict) and isinstance(e.get("position"), int) and 0 <= e["position"] < length
                and isinstance(e.get("tokensAt"), list)
                and all(isinstance(q, int) and 0 <= q < e["position"] for q in e["tokensAt"]) for e in exclude):
            problems.append("architecture.plan.exclude must be a list of { position, tokensAt } with each tokensAt before its plan position")
    for key in ("grid", "imageSize"):
        for side in ("height", "width"):
            need(need(a, key, "architecture", dict) or {}, side, f"architecture.{key}", int)
    t = need(m, "text", "", dict) or {}
    need(t, "tokenizer", "text", str)
    if need(t, "normalization", "text", str) not in ("mosaic-basic", "dalle-mini", "none"):
        problems.append(f"text.normalization {t.get('normalization')!r} is not one the engine implements")
    need(t, "padTokenId", "text", int)
    s = need(m, "sampling", "", dict) or {}
    for key in ("guidanceScale", "topP", "temperature"):
        need(s, key, "sampling", float)
    need(s, "topK", "sampling", int)
    p = need(m, "previews", "", dict) or {}
    if p.get("fill") != "most-frequent":
        problems.append("previews.fill must be \"most-frequent\"")
    graphs = need(m, "graphs", "", dict) or {}
    for key in ("textEncoder", "decoderStep", "vqDecoder"):
        g = need(graphs, key, "graphs", dict) or {}
        need(g, "file", f"graphs.{key}", str)
        for side in ("inputs", "outputs"):
            if not isinstance(g.get(side), list):
                problems.append(f"graphs.{key}.{side} must be a list")
    if problems:
        fail()

    # the numbers agree with each other
    if a["heads"] * a["headDim"] != a["modelWidth"]:
        problems.append(f"heads × headDim = {a['heads'] * a['headDim']}, not modelWidth {a['modelWidth']}")
    for side in ("height", "width"):
        if a["imageSize"][side] % a["grid"][side]:
            problems.append(f"imageSize.{side} {a['imageSize'][side]} is not a multiple of grid.{side}")
    if not 0 <= t["padTokenId"] < a["textVocabSize"]:
        problems.append(f"text.padTokenId {t['padTokenId']} is outside the text vocabulary ({a['textVocabSize']})")
    if not 0 <= s["topK"] <= a["codebookSize"]:
        problems.append(f"sampling.topK {s['topK']} is outside 0..codebookSize")
    if not (0 < s["topP"] <= 1 and s["temperature"] > 0 and s["guidanceScale"] >= 0):
        problems.append("sampling defaults out of range")

    # the files it names exist, and their sizes fit
    def existing(name: str, what: str) -> str | None:
        full = os.path.join(folder, name)
        if not os.path.isfile(full) or os.path.getsize(full) == 0:
            problems.append(f"{what} {name} is missing or empty")
            return None
        return full

    if tok_path := existing(t["tokenizer"], "text.tokenizer"):
        with open(tok_path) as f:
            tok = json.load(f)
        ids = set((tok.get("model") or {}).get("vocab", {}).values()) | {x["id"] for x in tok.get("added_tokens", [])}
        if not ids or max(ids) >= a["textVocabSize"]:
            problems.append(f"{t['tokenizer']}: token ids up to {max(ids, default=None)}, but textVocabSize is {a['textVocabSize']}")
        if t["padTokenId"] not in ids:
            problems.append(f"{t['tokenizer']} has no token with padTokenId {t['padTokenId']}")
    if "codePatches" in p:
        cp = p["codePatches"]
        if cp_path := existing(cp["file"], "previews.codePatches.file"):
            expected = a["codebookSize"] * cp["patchSize"] ** 2 * 3
            if os.path.getsize(cp_path) != expected:
                problems.append(f"{cp['file']}: {os.path.getsize(cp_path)} bytes, expected codebook × patch² × 3 = {expected}")

    # the graphs are what model.json says, and hold tables of the sizes it gives
    required = required_graphs(a, layered(graphs["decoderStep"]))
    tables = {}
    for key, spec in graphs.items():
        if key not in required or not (full := existing(spec["file"], f"graphs.{key}.file")):
            continue
        model = onnx.load(full, load_external_data=False)
        for init in model.graph.initializer:
            for entry in init.external_data:
                if entry.key == "location" and not os.path.isfile(os.path.join(folder, entry.value)):
                    problems.append(f"{spec['file']}: its weights file {entry.value} is missing")
        tables[key] = [tuple(init.dims) for init in model.graph.initializer]
        for side in ("inputs", "outputs"):
            real = {v.name: v for v in (model.graph.input if side == "inputs" else model.graph.output)}
            real = {name: v for name, v in real.items() if name not in {i.name for i in model.graph.initializer}}
            declared = {d.get("name"): d for d in spec[side]}
            if set(real) != set(declared):
                problems.append(f"{spec['file']}: {side} {sorted(real)}, model.json declares {sorted(declared)}")
            for name, (dtype, shape) in required[key][side].items():
                d, v = declared.get(name), real.get(name)
                if d is None or v is None:
                    problems.append(f"graphs.{key}: {side[:-1]} {name} is missing")
                    continue
                if d.get("dtype") != dtype or DTYPES[dtype] != v.type.tensor_type.elem_type:
                    problems.append(f"graphs.{key}: {name} is {d.get('dtype')} in model.json, "
                                    f"ONNX type {v.type.tensor_type.elem_type}, expected {dtype}")
                if not _agree(d.get("shape", []), shape):
                    problems.append(f"graphs.{key}: {name} has shape {d.get('shape')} in model.json, expected {shape}")
                if not _agree(_onnx_shape(v), shape):
                    problems.append(f"{spec['file']}: {name} has shape {_onnx_shape(v)}, expected {shape} from model.json")
                elif not _agree(_onnx_shape(v), d.get("shape", [])):
                    problems.append(f"{spec['file']}: {name} has shape {_onnx_shape(v)}, model.json says {d.get('shape')}")

    width, grid = a["modelWidth"], a["grid"]["height"] * a["grid"]["width"]
    plan = a.get("plan") or {}
    expect = {
        "textEncoder": [((a["textVocabSize"], width), "text embedding [textVocabSize, modelWidth]"),
                        ((a["maxTextLength"], width), "text positions [maxTextLength, modelWidth]")],
        "decoderStep": [((plan["outputVocabSize"], width), "image embedding [outputVocabSize (codes, start, plan words), modelWidth]")
                        if plan else ((a["codebookSize"] + 1, width), "image embedding [codebookSize + 1 (start token), modelWidth]"),
                        ((plan.get("length", 0) + grid, width), "image positions [plan + grid cells, modelWidth]")],
    }
    for key, wants in expect.items():
        for shape, what in wants:
            if key in tables and shape not in tables[key]:
                problems.append(f"{graphs[key]['file']} has no {what} {list(shape)}")
    if "decoderStep" in tables and a["startTokenId"] > a["codebookSize"]:
        problems.append(f"startTokenId {a['startTokenId']} is beyond the image embedding's {a['codebookSize'] + 1} rows")
    if "vqDecoder" in tables and not any(len(d) == 2 and d[0] == a["codebookSize"] for d in tables["vqDecoder"]):
        problems.append(f"{graphs['vqDecoder']['file']} has no codebook with codebookSize {a['codebookSize']} rows")
    if width != a["feedForwardWidth"]:
        for key, layers in (("textEncoder", "encoderLayers"), ("decoderStep", "decoderLayers")):
            found = tables.get(key, []).count((width, a["feedForwardWidth"]))
            if key in tables and found != 2 * a[layers]:
                problems.append(f"{graphs[key]['file']}: {found} feed-forward input weights "
                                f"[modelWidth, feedForwardWidth], expected 2 × {layers} = {2 * a[layers]}")
    if problems:
        fail()
    return m


def main() -> None:
    for folder in sys.argv[1:] or ["models/mosaic-shapes"]:
        check_model_folder(folder)
        print(f"{folder}: ok")


if __name__ == "__main__":
    main()
