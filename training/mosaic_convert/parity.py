"""Structural parity data for the converter (the published files are not available to us).

Builds a parameter tree with exactly the published names and layouts (min-dalle's `encoder.pt`,
`decoder.pt`, `detoker.pt`, `vocab.json`, `merges.txt`) at small sizes with random weights, converts
it with the real converter, and writes what the straightforward PyTorch implementation
(`published.py`) computes on fixed inputs. `test/convert.test.ts` runs Mosaic's ONNX graphs and
engine on the converted folder and compares (max |difference| ≤ 1e-3, fp32).

    PYTHONPATH=training python3 -m mosaic_convert.parity --out /tmp/parity
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import torch

from . import bpe
from .convert import convert
from .published import (BartDims, Published, VQGANDims, generate, is_unscaled_norm_weight, text_rows,
                        without_unscaled_norms)

# Small, but every structural choice of the real thing: separate encoder/decoder depths, more image
# rows than codes (as in mega), a VQGAN with attention, channel changes and two upsamplings.
DIMS = BartDims(width=32, layers=2, heads=4, glu=48, text_vocab=0, image_vocab=70, text_tokens=16,
                image_tokens=16, codebook=64)
ENCODER_LAYERS = 3
VQ_DIMS = VQGANDims(codebook=64, embed=8, ch=32, ch_mult=(1, 1, 2), res_blocks=3, groups=32)
WORDS = ["a", "red", "circle", "on", "blue", "background", "square", "green"]
PROMPT = "A red circle on a blue background"
NORMALISED = " a red circle on a blue background"  # dalle-mini's normalisation of PROMPT
# Longer than the 16 text tokens DIMS reads: <s>, 17 words, </s> are cut to 16, keeping </s>.
LONG_PROMPT = "A red circle on a blue background a green square on a red background a blue circle"
LONG_NORMALISED = " a red circle on a blue background a green square on a red background a blue circle"


def tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """BART's special tokens, the 256 byte symbols, and merges that build 'Ġ' + each word."""
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    for ch in bpe.bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges = []
    for w in WORDS:
        parts = ["Ġ"] + list(w)
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            if merge not in merges:
                merges.append(merge)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab["<mask>"] = len(vocab)
    return vocab, merges


@torch.no_grad()
def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Random values everywhere, layer norm scales and biases included, so that a parameter mapped to
    the wrong place cannot go unnoticed."""
    for name, t in module.named_parameters():
        if name.endswith("bias"):
            t.copy_(torch.randn(t.shape, generator=generator) * 0.1)
        elif t.dim() == 1:
            t.copy_(1 + torch.randn(t.shape, generator=generator) * 0.2)
        else:
            fan_in = t.shape[1] if t.dim() == 2 and "embed" not in name else max(1, t[0].numel())
            t.copy_(torch.randn(t.shape, generator=generator) / (fan_in ** 0.5 if "embed" not in name else 1))


def build(folder: str) -> tuple[Published, bpe.ByteLevelBPE]:
    vocab, merges = tiny_vocab()
    p = Published(replace(DIMS, text_vocab=len(vocab)), VQ_DIMS, ENCODER_LAYERS)
    g = torch.Generator().manual_seed(1234)
    for m in (p.encoder, p.decoder, p.detokenizer):
        randomise(m, g)
    # As dalle-mini saves them (force_ln_scale=False): some layer norms have a bias and no scale.
    with torch.no_grad():
        for m in (p.encoder, p.decoder):
            for k, t in m.state_dict(keep_vars=True).items():
                if is_unscaled_norm_weight(k):
                    t.fill_(1.0)
    bart = os.path.join(folder, "dalle_bart_tiny")
    os.makedirs(bart, exist_ok=True)
    os.makedirs(os.path.join(folder, "vqgan"), exist_ok=True)
    torch.save(without_unscaled_norms(p.encoder.state_dict()), os.path.join(bart, "encoder.pt"))
    torch.save(without_unscaled_norms(p.decoder.state_dict()), os.path.join(bart, "decoder.pt"))
    torch.save(p.detokenizer.state_dict(), os.path.join(folder, "vqgan", "detoker.pt"))
    with open(os.path.join(bart, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(bart, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return p, bpe.ByteLevelBPE(vocab, merges)


STRIP_ROWS = 3


@torch.no_grad()
def reference(p: Published, tok: bpe.ByteLevelBPE) -> dict:
    d = p.dims
    ids = tok.encode(NORMALISED)
    rows = text_rows(ids, d.text_tokens)
    cross = p.decoder.cross_kv(p.encoder(rows))
    allowed = (rows != 1)[:, None, None, :]
    cache = p.decoder.empty_cache(2)
    steps = []
    for i, token in enumerate([d.codebook, 5, 17]):
        logits = p.decoder.step(torch.tensor([token, token]), i, cache, cross, allowed)
        steps.append(logits[:, : d.codebook].tolist())
    codes = torch.tensor([[(7 * i + 3) % d.codebook for i in range(d.image_tokens)], list(range(d.image_tokens))])
    side = int(d.image_tokens ** 0.5)
    pixels = p.detokenizer(codes.reshape(2, side, side))
    # A preview decodes only the rows generated so far: the graph must take fewer rows than the grid's.
    strip = p.detokenizer(codes.reshape(2, side, side)[:, :STRIP_ROWS])
    greedy = generate(p, ids, images=1, guidance=3.0, top_k=1, temperature=1.0)
    long_ids = tok.encode(LONG_NORMALISED)
    long_greedy = generate(p, long_ids, images=1, guidance=3.0, top_k=1, temperature=1.0)
    return {
        "prompt": PROMPT,
        "normalised": NORMALISED,
        "inputIds": rows.tolist(),
        "crossK": torch.stack([k for k, _ in cross]).flatten().tolist(),
        "crossV": torch.stack([v for _, v in cross]).flatten().tolist(),
        "stepTokens": [d.codebook, 5, 17],
        "stepLogits": steps,
        "vqCodes": codes.tolist(),
        "pixels": pixels.flatten().tolist(),
        "stripRows": STRIP_ROWS,
        "stripPixels": strip.flatten().tolist(),
        "greedy": {"guidanceScale": 3.0, "codes": greedy[0].tolist()},
        "long": {"prompt": LONG_PROMPT, "normalised": LONG_NORMALISED, "tokens": len(long_ids),
                 "inputIds": text_rows(long_ids, d.text_tokens)[1].tolist(), "greedyCodes": long_greedy[0].tolist()},
    }


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--out", required=True)
    args = a.parse_args()
    torch.manual_seed(0)
    src = os.path.join(args.out, "published")
    p, tok = build(src)
    convert(os.path.join(src, "dalle_bart_tiny"), os.path.join(src, "vqgan", "detoker.pt"),
            os.path.join(args.out, "model"), "parity-tiny", heads=DIMS.heads)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(reference(p, tok), f)


if __name__ == "__main__":
    main()
