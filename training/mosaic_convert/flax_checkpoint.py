"""dalle-mini's own checkpoints: Flax `flax_model.msgpack` files, as in the Hugging Face repositories
dalle-mini/dalle-mini, dalle-mini/dalle-mega and dalle-mini/vqgan_imagenet_f16_16384, read into the
published PyTorch layout (min-dalle's names, `published.py`) so the rest of the converter is shared.

The Flax layout, as min-dalle's own converter documented it (its `load_params.py`, before it moved
to a separate repository) and as dalle-mini's `src/dalle_mini/model/modeling.py` and vqgan-jax's
`modeling_flax_vqgan.py` name it (training/tests/test_convert.py spells those names out by hand):
- BART: `model/{encoder,decoder}/{embed_tokens,embed_positions}/embedding`, `layernorm_embedding`,
  `final_ln`, the layers under `layers/FlaxBart{Encoder,Decoder}Layers` stacked on a first axis (the
  scanned form) or as `layers/FlaxBart{Encoder,Decoder}Layer_<i>`; inside a layer, Flax's automatic
  names: `LayerNorm_0..3`, `FlaxBartAttention_0/1`, `GLU_0/{LayerNorm_0,1, Dense_0,1,2}`; dense
  kernels are [in, out]; `lm_head/kernel` at the top. Layer norms have `scale`/`bias`, some only `bias`.
- VQGAN: taming's names with `up_<i>/block_<j>/attn_<j>`, convolution kernels [kh, kw, in, out],
  `quantize/embedding/embedding`; the encoder half is not needed.
Arrays are flax.serialization's msgpack extension type 1 (shape, dtype name, bytes); leaves over
2**30 bytes are split into `__msgpack_chunked_array__` dictionaries.
"""
from __future__ import annotations

import re

import msgpack
import numpy as np
import torch

NDARRAY, NPSCALAR = 1, 3


def _ndarray(data: bytes) -> np.ndarray:
    shape, dtype, buffer = msgpack.unpackb(data, raw=True)
    name = dtype.decode()
    if name == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's upper half
        return (np.frombuffer(buffer, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(buffer, np.dtype(name)).reshape(shape)


def _ext(code: int, data: bytes):
    if code == NDARRAY:
        return _ndarray(data)
    if code == NPSCALAR:
        return _ndarray(data)[()]
    return msgpack.ExtType(code, data)


def _unchunk(tree):
    if isinstance(tree, dict):
        if "__msgpack_chunked_array__" in tree:
            shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        return {k: _unchunk(v) for k, v in tree.items()}
    return tree


def read_msgpack(path: str) -> dict:
    with open(path, "rb") as f:
        return _unchunk(msgpack.unpackb(f.read(), ext_hook=_ext, raw=False, max_bin_len=2**31 - 1))


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


LAYER_PARTS = {
    "LayerNorm_0": "pre_self_attn_layer_norm", "LayerNorm_1": "self_attn_layer_norm",
    "FlaxBartAttention_0": "self_attn",
}
DECODER_PARTS = {
    "LayerNorm_2": "pre_encoder_attn_layer_norm", "LayerNorm_3": "encoder_attn_layer_norm",
    "FlaxBartAttention_1": "encoder_attn",
}
GLU_PARTS = {"LayerNorm_0": "ln0", "LayerNorm_1": "ln1", "Dense_0": "fc0", "Dense_1": "fc1", "Dense_2": "fc2"}


def _tensor(value: np.ndarray) -> torch.Tensor:
    # no copy when the file already holds float32 (a mega checkpoint is gigabytes)
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def _torch_leaf(key: str, value: np.ndarray) -> tuple[str, torch.Tensor]:
    t = _tensor(value)
    base, leaf = key.rsplit(".", 1)
    if leaf == "kernel":
        return f"{base}.weight", t.transpose(-1, -2).contiguous()
    if leaf in ("scale", "embedding"):
        return f"{base}.weight", t
    return key, t


def _layer_key(inner: str, decoder: bool) -> str:
    head, _, rest = inner.partition(".")
    parts = {**LAYER_PARTS, **(DECODER_PARTS if decoder else {})}
    if head == "GLU_0":
        sub, _, leaf = rest.partition(".")
        if sub not in GLU_PARTS:
            raise ValueError(f"unexpected layer parameter '{inner}' (not dalle-mini's GLU)")
        return f"glu.{GLU_PARTS[sub]}.{leaf}"
    if head not in parts:
        raise ValueError(f"unexpected layer parameter '{inner}' (not dalle-mini's NormFormer layer)")
    return f"{parts[head]}.{rest}"


def bart_states(params: dict) -> tuple[dict, dict]:
    """flax_model.msgpack of DalleBart -> (encoder.pt, decoder.pt) state dicts in min-dalle's names."""
    states = []
    for codec in ("encoder", "decoder"):
        flat = flatten(params["model"][codec])
        stacked = f"layers.FlaxBart{codec.title()}Layers."
        single = re.compile(rf"layers\.FlaxBart{codec.title()}Layer_(\d+)\.(.+)")
        state = {}
        for key, value in flat.items():
            name, t = _torch_leaf(key, value)
            if name.startswith(stacked):
                inner = _layer_key(name[len(stacked):], codec == "decoder")
                for i in range(t.shape[0]):
                    state[f"layers.{i}.{inner}"] = t[i]
            elif m := single.fullmatch(name):
                state[f"layers.{m.group(1)}.{_layer_key(m.group(2), codec == 'decoder')}"] = t
            else:
                state[name] = t
        states.append(state)
    encoder, decoder = states
    decoder["lm_head.weight"] = _torch_leaf("lm_head.kernel", params["lm_head"]["kernel"])[1]
    return encoder, decoder


def vqgan_state(params: dict) -> dict:
    """flax_model.msgpack of the VQGAN -> detoker.pt's state dict."""
    state = {}
    for key, value in flatten(params).items():
        if key.startswith(("encoder.", "quant_conv.")):
            continue
        if key == "quantize.embedding.embedding":
            state["embedding.weight"] = _tensor(value)
            continue
        key = re.sub(r"\bup_(\d+)\.", r"up.\1.", key)
        key = re.sub(r"(up\.\d+\.)(block|attn)_(\d+)\.", r"\1\2.\3.", key)
        base, leaf = key.rsplit(".", 1)
        t = _tensor(value)
        if leaf in ("scale", "bias") and t.dim() > 1:
            t = t.reshape(-1)  # older Flax group norms kept (1, 1, 1, C)
        if leaf == "kernel":
            state[f"{base}.weight"] = t.permute(3, 2, 0, 1).contiguous()  # [kh, kw, in, out] -> [out, in, kh, kw]
        elif leaf == "scale":
            state[f"{base}.weight"] = t
        else:
            state[key] = t
    return state
