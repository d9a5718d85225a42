"""Convert published DALL·E mini / mega weights into a Mosaic model folder (docs/model-format.md).

Input, either form for either half:
- the PyTorch files kuprel/min-dalle publishes (converted by min-dalle from dalle-mini's Flax
  checkpoints): a BART folder with `encoder.pt`, `decoder.pt`, `vocab.json`, `merges.txt`, and the
  VQGAN's `detoker.pt` (min-dalle keeps them as `pretrained/dalle_bart_mini/`,
  `pretrained/dalle_bart_mega/` and `pretrained/vqgan/detoker.pt`);
- dalle-mini's own Flax checkpoints: a folder with `flax_model.msgpack`, `config.json`, `vocab.json`,
  `merges.txt` (the Hugging Face repositories dalle-mini/dalle-mega, dalle-mini/dalle-mini) and the
  VQGAN's folder (dalle-mini/vqgan_imagenet_f16_16384). See flax_checkpoint.py.

    PYTHONPATH=training python3 -m mosaic_convert.convert \\
        --bart pretrained/dalle_bart_mega --vqgan pretrained/vqgan/detoker.pt --out models/dalle-mega

Sizes are read from the weights (layers, width, feed-forward, vocabularies, VQGAN channels), so the
same command serves mini, mega and the small trees the tests build. The BART half is loaded into
Mosaic's own cached decoder (training/mosaic_train/transformer.py) under its names; the VQGAN runs
as published, in fp32.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import tempfile
import time

import numpy as np
import torch

from mosaic_train.graphs import ALL_GRAPHS, export_graphs
from mosaic_train.runtime import log
from mosaic_train.transformer import Config, DalleBart

from . import bpe
from .published import BartDims, Detokenizer, VQGANDims, with_unit_scales

# The VQGAN's codes: min-dalle samples from the first 2**14 logits and the converter keeps only those rows of
# lm_head (dalle-mini's own sampler masks only its EOS, 16385, and can draw mega's spare rows; docs/converting.md).
MAX_CODES = 16384

# published (min-dalle) name -> Mosaic's DalleBart name, per layer part
ENCODER_LAYER = {
    "pre_self_attn_layer_norm": "pre_attn_ln", "self_attn_layer_norm": "post_attn_ln",
    "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v",
    "self_attn.out_proj": "attn.o", "glu": "glu",
}
DECODER_LAYER = {
    "pre_self_attn_layer_norm": "pre_self_ln", "self_attn_layer_norm": "post_self_ln",
    "pre_encoder_attn_layer_norm": "pre_cross_ln", "encoder_attn_layer_norm": "post_cross_ln",
    "self_attn.q_proj": "self_attn.q", "self_attn.k_proj": "self_attn.k", "self_attn.v_proj": "self_attn.v",
    "self_attn.out_proj": "self_attn.o", "encoder_attn.q_proj": "cross_attn.q", "encoder_attn.k_proj": "cross_attn.k",
    "encoder_attn.v_proj": "cross_attn.v", "encoder_attn.out_proj": "cross_attn.o", "glu": "glu",
}
TOP = {
    "encoder": {"embed_tokens": "text_embed", "embed_positions": "text_pos", "layernorm_embedding": "text_ln",
                "final_ln": "encoder_final_ln"},
    "decoder": {"embed_tokens": "image_embed", "embed_positions": "image_pos", "layernorm_embedding": "image_ln",
                "final_ln": "decoder_final_ln", "lm_head": "lm_head"},
}


class ConvertError(ValueError):
    pass


def layer_count(state: dict, prefix: str = "layers.") -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    if not found:
        raise ConvertError(f"no '{prefix}N.' parameters")
    return max(found) + 1


def need(state: dict, key: str, file: str) -> torch.Tensor:
    if key not in state:
        raise ConvertError(f"{file}: missing parameter '{key}' — is this min-dalle's {file}?")
    return state[key]


def bart_dims(encoder: dict, decoder: dict, heads: int | None) -> tuple[BartDims, int]:
    text_vocab, width = need(encoder, "embed_tokens.weight", "encoder.pt").shape
    enc_layers, dec_layers = layer_count(encoder), layer_count(decoder)
    if heads is None:
        heads = {1024: 16, 2048: 32}.get(width, max(1, width // 64))  # mini, mega; 64-wide heads otherwise
    if width % heads:
        raise ConvertError(f"width {width} is not divisible by {heads} heads (pass --heads)")
    d = BartDims(width=width, layers=dec_layers, heads=heads,
                 glu=need(decoder, "layers.0.glu.fc0.weight", "decoder.pt").shape[0], text_vocab=text_vocab,
                 image_vocab=need(decoder, "embed_tokens.weight", "decoder.pt").shape[0] - 1,
                 text_tokens=need(encoder, "embed_positions.weight", "encoder.pt").shape[0],
                 image_tokens=need(decoder, "embed_positions.weight", "decoder.pt").shape[0])
    return d, enc_layers


def vqgan_dims(detoker: dict) -> VQGANDims:
    codebook, embed = need(detoker, "embedding.weight", "detoker.pt").shape
    ch = need(detoker, "decoder.conv_out.weight", "detoker.pt").shape[1]
    levels = layer_count(detoker, "decoder.up.")
    mult = tuple(detoker[f"decoder.up.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
    return VQGANDims(codebook=codebook, embed=embed, ch=ch, ch_mult=mult,
                     res_blocks=layer_count(detoker, "decoder.up.0.block."))


def mosaic_state(encoder: dict, decoder: dict, config: Config) -> dict:
    """Published names -> Mosaic's DalleBart names; the decoder's rows cut to the codes sampled."""
    out = {}
    for part, state, per_layer, mosaic_layers in (("encoder", with_unit_scales(encoder), ENCODER_LAYER, "encoder_layers"),
                                                  ("decoder", with_unit_scales(decoder), DECODER_LAYER, "decoder_layers")):
        for key, value in state.items():
            m = re.match(r"layers\.(\d+)\.(.+)\.(weight|bias)$", key)
            if m:
                i, inner, kind = m.groups()
                if inner.startswith("glu."):
                    target = f"{mosaic_layers}.{i}.{inner}.{kind}"
                elif inner in per_layer:
                    target = f"{mosaic_layers}.{i}.{per_layer[inner]}.{kind}"
                else:
                    raise ConvertError(f"{part}.pt: unexpected parameter '{key}'")
            else:
                name, _, kind = key.rpartition(".")
                if name not in TOP[part]:
                    raise ConvertError(f"{part}.pt: unexpected parameter '{key}'")
                target = f"{TOP[part][name]}.{kind}"
            out[target] = value.float()
    # Rows 0..codes-1 are the codes and row `codes` (16384) the start token: dalle-mini's
    # decoder_start_token_id for mini and mega (min-dalle feeds 16383, a code, instead).
    out["image_embed.weight"] = out["image_embed.weight"][: config.codebook_size + 1]
    out["lm_head.weight"] = out["lm_head.weight"][: config.codebook_size]
    return out


class PixelsGraph(torch.nn.Module):
    def __init__(self, detok: Detokenizer):
        super().__init__()
        self.detok = detok

    def forward(self, codes):
        return self.detok(codes)


@torch.no_grad()
def code_patches(detok: Detokenizer, patch: int, batch: int = 256) -> np.ndarray:
    """Each code decoded alone (a 1×1 grid) and area-averaged to patch×patch: the mosaic preview."""
    n = detok.dims.codebook
    out = np.zeros((n, patch, patch, 3), dtype=np.uint8)
    started = time.time()
    for lo in range(0, n, batch):
        codes = torch.arange(lo, min(n, lo + batch))[:, None, None]
        pix = detok(codes).permute(0, 3, 1, 2)
        pix = torch.nn.functional.adaptive_avg_pool2d(pix, patch).permute(0, 2, 3, 1)
        out[lo: lo + len(codes)] = (pix.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        if time.time() - started > 10 and lo % (batch * 8) == 0:
            log(f"code patches {lo}/{n}")
    return out


def manifest(name: str, d: BartDims, enc_layers: int, v: VQGANDims, c: Config, graphs: dict, pad_id: int,
             patch: int | None, source: dict) -> dict:
    grid = int(math.isqrt(d.image_tokens))
    side = grid * v.factor
    m = {
        "format": "mosaic-model",
        "formatVersion": 1,
        "name": name,
        "version": "1.0.0",
        "description": f"DALL·E {'mega' if d.width >= 2048 else 'mini'}-shaped BART ({enc_layers}+{d.layers} layers, "
                       f"width {d.width}) with the VQGAN f{v.factor} decoder, converted by Mosaic.",
        "architecture": {
            "family": "dalle-bart",
            "encoderLayers": enc_layers, "decoderLayers": d.layers, "heads": d.heads, "modelWidth": d.width,
            "headDim": d.width // d.heads, "feedForwardWidth": d.glu, "textVocabSize": d.text_vocab,
            "maxTextLength": d.text_tokens, "grid": {"height": grid, "width": grid},
            "codebookSize": c.codebook_size, "startTokenId": c.codebook_size,
            "imageSize": {"height": side, "width": side},
        },
        "text": {"tokenizer": "tokenizer.json", "normalization": "dalle-mini", "padTokenId": pad_id},
        # dalle-mini's notebook: condition scale 10; min-dalle: top-k 256, temperature 1.
        "sampling": {"guidanceScale": 10.0, "topK": min(256, c.codebook_size), "topP": 1.0, "temperature": 1.0},
        "previews": {"fill": "most-frequent"},
        "graphs": graphs,
        "training": {"convertedFrom": source},
    }
    if patch:
        m["previews"]["codePatches"] = {"file": "code-patches.bin", "patchSize": patch}
    return m


CARD = """# {name}

Converted by Mosaic's converter (`training/mosaic_convert/convert.py`) from {source}.

- BART: {enc}+{dec} layers, width {width}, {heads} heads, GLU {glu}, text vocabulary {tv}, image
  vocabulary {iv} (codes sampled: {codes}).
- VQGAN: codebook {vq_codes} × {vq_embed}, ch {ch}, ch_mult {mult}, run in fp32.
- Weights stored as {weights}.
- Text: dalle-mini's normalisation (see `src/engine/normalize-dalle-mini.ts` for the documented
  differences) and BART's byte-level BPE (`tokenizer.json`, written from `vocab.json` + `merges.txt`).

Source files: {files}
"""


FLAX_FILE = "flax_model.msgpack"


def convert(bart: str, vqgan: str, out: str, name: str, heads: int | None = None, weights: str = "fp32",
            patch: int | None = 4) -> dict:
    """Converts published files into the model folder `out`: min-dalle's PyTorch files, or dalle-mini's
    Flax checkpoints (a folder holding flax_model.msgpack), for either half."""
    flax_bart = os.path.isfile(os.path.join(bart, FLAX_FILE))
    if os.path.isdir(vqgan):  # dalle-mini's VQGAN folder, or a folder holding min-dalle's detoker.pt
        flax = os.path.join(vqgan, FLAX_FILE)
        vqgan = flax if os.path.isfile(flax) else os.path.join(vqgan, "detoker.pt")
    flax_vqgan = vqgan.endswith(".msgpack")
    # the weights first: a wrong --bart folder is reported by the file a user would look for
    paths = ({"bart": os.path.join(bart, FLAX_FILE)} if flax_bart else
             {"encoder": os.path.join(bart, "encoder.pt"), "decoder": os.path.join(bart, "decoder.pt")})
    paths.update(vocab=os.path.join(bart, "vocab.json"), merges=os.path.join(bart, "merges.txt"), detoker=vqgan)
    for key, path in paths.items():
        if not os.path.isfile(path):
            raise ConvertError(f"{path}: not found ({key})")
    if flax_bart or flax_vqgan:
        from . import flax_checkpoint  # needs msgpack (Debian: python3-msgpack), only for Flax files

    def read_flax(path: str, convert_tree):
        try:
            return convert_tree(flax_checkpoint.read_msgpack(path))
        except (ValueError, KeyError) as e:
            raise ConvertError(f"{path}: not a dalle-mini checkpoint this converter knows ({e})") from e
    # settings first too: refused before gigabytes of weights are read
    bart_config = read_bart_config(bart)
    if bart_config is not None:
        config_file = os.path.join(bart, "config.json")
        heads = heads or check_bart_config(bart_config, config_file)
        paths["config"] = config_file
    if flax_bart:
        encoder, decoder = read_flax(paths["bart"], flax_checkpoint.bart_states)
    else:
        encoder, decoder = (torch.load(paths[k], map_location="cpu") for k in ("encoder", "decoder"))
    detoker = read_flax(vqgan, flax_checkpoint.vqgan_state) if flax_vqgan else torch.load(vqgan, map_location="cpu")
    return convert_states({"encoder": encoder, "decoder": decoder, "detoker": detoker}, paths, out, name, heads,
                          weights, patch, bart_config)


# dalle-mini's DalleBartConfig settings that change what the model computes without changing its
# parameter names, and the value Mosaic's graphs compute (mini's and mega's, and DalleBartConfig's default
# when config.json leaves the key out). A checkpoint trained with any other value would convert without a
# complaint and draw wrong images, so the converter refuses it, naming the setting.
COMPUTATION = {
    "scale_embedding": (False, "token embeddings multiplied by sqrt(d_model)"),
    "use_deepnet_scaling": (False, "DeepNet's residual gain"),
    "use_cosine_attention": (False, "cosine attention with temperature tau"),
    "sinkhorn_iters": (1, "Sinkhorn-normalised encoder attention"),
    "activation_function": ("gelu", "another feed-forward activation than exact GELU"),
    "ln_positions": ("normformer", "another placement of the layer norms"),
    "ln_type": ("layernorm", "RMS norm"),
    "use_head_scale": (False, "NormFormer's per-head scale"),
    "use_glu": (True, "a plain feed-forward instead of the GLU"),
    "use_bias": (False, "biases in the attention and feed-forward layers"),
    "use_absolute_position_embeddings": (True, "no absolute position embeddings"),
    "use_swin_position_embeddings": (False, "Swin relative position biases"),
    "use_final_ln_encoder": (True, "no final layer norm in the encoder"),
    "use_final_ln_decoder": (True, "no final layer norm in the decoder"),
    "tie_word_embeddings": (False, "an lm_head tied to the embeddings"),
}


def read_bart_config(folder: str) -> dict | None:
    """dalle-mini's folders carry a config.json (DalleBartConfig); None when there is none."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_bart_config(config: dict, file: str = "config.json") -> int | None:
    """Refuses settings Mosaic does not compute, naming them; returns the head count it names."""
    for key, (supported, what) in COMPUTATION.items():
        value = config.get(key, supported)
        if key == "ln_positions" and value == "deepnet":
            value = "postln"  # DalleBartConfig's alias
        if value != supported:
            raise ConvertError(f"{file}: {key} = {json.dumps(value)} is not supported ({what}); Mosaic computes "
                               f"DALL·E mini/mega's {key} = {json.dumps(supported)}")
    heads = config.get("encoder_attention_heads")
    decoder_heads = config.get("decoder_attention_heads", heads)
    if decoder_heads != heads:
        raise ConvertError(f"{file}: decoder_attention_heads = {decoder_heads} differs from encoder_attention_heads = "
                           f"{heads}; Mosaic's graphs use one head count")
    return heads


def check_start_token(config: dict, codes: int, file: str = "config.json") -> None:
    """The engine feeds `codes` (16384 for mini and mega) as the first decoder token (model.json's
    startTokenId); DalleBartConfig defaults decoder_start_token_id to image_vocab_size."""
    start = config.get("decoder_start_token_id", config.get("image_vocab_size", 16384))
    if start != codes:
        raise ConvertError(f"{file}: decoder_start_token_id = {start} is not supported; Mosaic starts every image "
                           f"with token {codes}, the decoder row after the {codes} codes it samples")


def convert_states(states: dict, paths: dict, out: str, name: str, heads: int | None, weights: str,
                   patch: int | None, bart_config: dict | None = None) -> dict:
    t0 = time.time()
    encoder, decoder, detoker = states.pop("encoder"), states.pop("decoder"), states.pop("detoker")
    d, enc_layers = bart_dims(encoder, decoder, heads)
    v = vqgan_dims(detoker)
    codes = min(d.image_vocab, MAX_CODES, v.codebook)
    if bart_config is not None:
        check_start_token(bart_config, codes, paths.get("config", "config.json"))
    config = Config(text_vocab=d.text_vocab, max_text_len=d.text_tokens, codebook_size=codes,
                    grid=int(math.isqrt(d.image_tokens)), d_model=d.width, heads=d.heads, encoder_layers=enc_layers,
                    decoder_layers=d.layers, glu_dim=d.glu)
    log(f"BART {enc_layers}+{d.layers} layers, width {d.width}, {d.heads} heads; VQGAN ch {v.ch} x {v.ch_mult}")
    model = DalleBart(config).eval()
    mapped = mosaic_state(encoder, decoder, config)
    missing = sorted(set(model.state_dict()) - set(mapped))
    if missing:
        raise ConvertError(f"the published files lack parameters for {', '.join(missing[:5])}"
                           f"{' …' if len(missing) > 5 else ''} (Mosaic's names; see ENCODER_LAYER/DECODER_LAYER)")
    model.load_state_dict(mapped)
    del encoder, decoder
    detok = Detokenizer(v).eval()
    detok.load_state_dict({k: t.float() for k, t in detoker.items()})
    del detoker
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=out)
    try:
        fp16 = tuple(g for g in ALL_GRAPHS if g != "vqDecoder") if weights == "fp16" else ()
        with torch.no_grad():
            graphs = export_graphs(model, tmp, PixelsGraph(detok), config.grid * v.factor, fp16_weights=fp16)
        for g in graphs.values():
            for f in (g["file"], g["file"] + ".data"):
                if os.path.exists(os.path.join(tmp, f)):
                    shutil.move(os.path.join(tmp, f), os.path.join(out, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    vocab = bpe.write_tokenizer(paths["vocab"], paths["merges"], os.path.join(out, "tokenizer.json"))
    if patch:
        code_patches(detok, patch).tofile(os.path.join(out, "code-patches.bin"))
    form = lambda flax: "dalle-mini Flax checkpoint" if flax else "min-dalle PyTorch file"  # noqa: E731
    source = {"format": f"BART: {form('bart' in paths)}; VQGAN: {form(paths['detoker'].endswith('.msgpack'))}",
              "files": {k: os.path.basename(p) for k, p in paths.items()}}
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest(name, d, enc_layers, v, config, graphs, vocab["<pad>"], patch, source), f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(CARD.format(name=name, source=source["format"], enc=enc_layers, dec=d.layers, width=d.width, heads=d.heads, glu=d.glu,
                            tv=d.text_vocab, iv=d.image_vocab, codes=codes, vq_codes=v.codebook, vq_embed=v.embed,
                            ch=v.ch, mult=",".join(map(str, v.ch_mult)),
                            weights="fp16 with a cast to fp32 (BART); fp32 (VQGAN)" if weights == "fp16" else "fp32",
                            files=", ".join(f"`{os.path.basename(p)}`" for p in paths.values())))
    log(f"converted into {out} in {time.time() - t0:.0f} s")
    return {"dims": d, "vq": v, "config": config}


def main() -> None:
    p = argparse.ArgumentParser(description="Convert min-dalle's DALL·E mini/mega files into a Mosaic model folder.")
    p.add_argument("--bart", required=True,
                   help="folder with encoder.pt, decoder.pt (min-dalle) or flax_model.msgpack (dalle-mini), and vocab.json, merges.txt")
    p.add_argument("--vqgan", required=True, help="the VQGAN's detoker.pt (min-dalle) or its folder with flax_model.msgpack")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--name", help="model name (default: the output folder's name)")
    p.add_argument("--heads", type=int, help="attention heads (default: 16 for width 1024, 32 for 2048)")
    p.add_argument("--weights", choices=("fp32", "fp16"), default="fp32",
                   help="how BART weights are stored (fp16 halves the files; compute stays fp32)")
    p.add_argument("--patch", type=int, default=4, help="mosaic preview patch size (0: none)")
    a = p.parse_args()
    try:
        convert(a.bart, a.vqgan, a.out, a.name or os.path.basename(os.path.normpath(a.out)), a.heads, a.weights,
                a.patch or None)
    except ConvertError as e:
        raise SystemExit(f"mosaic convert: {e}")


if __name__ == "__main__":
    main()
