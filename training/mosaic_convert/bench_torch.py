"""The PyTorch side of `npm run bench:torch`: the published DALL·E mini architecture run as an eager
PyTorch loop (static cache, guidance, top-k, VQGAN previews every 32 tokens, as min-dalle does),
timed on the same scenarios as Mosaic. Prints one JSON object on stdout.

    PYTHONPATH=training python3 -m mosaic_convert.bench_torch --published work/random-mini/published
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch

from . import bpe
from .convert import bart_dims, vqgan_dims
from .published import Published, generate

PROMPT = " a red circle on a blue background"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--published", required=True, help="folder with dalle_bart/ and vqgan/detoker.pt")
    a.add_argument("--runs", type=int, default=3)
    a.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32", help="BART's dtype (the VQGAN stays fp32)")
    a.add_argument("--guidance", type=float, default=16.0)
    a.add_argument("--top-k", type=int, default=256)
    a.add_argument("--preview-every", type=int, default=32)
    a.add_argument("--scenarios", default="1,9", help="image counts to time (1: no previews; >1: with previews)")
    a.add_argument("--warmup", default="1,9", help="image counts run once before timing (CUDA compiles per shape)")
    args = a.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(os.cpu_count() or 1)
    bart = os.path.join(args.published, "dalle_bart")
    enc = torch.load(os.path.join(bart, "encoder.pt"), map_location="cpu")
    dec = torch.load(os.path.join(bart, "decoder.pt"), map_location="cpu")
    detok = torch.load(os.path.join(args.published, "vqgan", "detoker.pt"), map_location="cpu")
    dims, enc_layers = bart_dims(enc, dec, None)
    p = Published(dims, vqgan_dims(detok), enc_layers).load(enc, dec, detok)
    del enc, dec, detok
    p.to(args.device, torch.float16 if args.dtype == "fp16" else torch.float32)
    with open(os.path.join(bart, "vocab.json")) as f:
        vocab = json.load(f)
    tokens = bpe.ByteLevelBPE(vocab, bpe.read_merges(os.path.join(bart, "merges.txt"))).encode(PROMPT)

    def run(images: int, previews: bool) -> dict:
        g = torch.Generator(device=args.device).manual_seed(0)
        marks: list[float] = []

        def on_preview(pixels):
            sync(args.device)
            marks.append(time.perf_counter())
        sync(args.device)
        t0 = time.perf_counter()
        codes = generate(p, tokens, images, args.guidance, args.top_k, 1.0, args.preview_every if previews else 0, g,
                         on_preview)
        if not previews:  # the final image still has to be decoded
            side = int(dims.image_tokens ** 0.5)
            p.detokenizer(codes.reshape(images, side, side))
        sync(args.device)
        total = time.perf_counter() - t0
        return {"seconds": total, "firstPreviewSeconds": marks[0] - t0 if previews else None,
                "previews": len(marks), "tokensPerSecond": images * dims.image_tokens / total}

    counts = [int(c) for c in args.scenarios.split(",")]
    for n in (int(c) for c in args.warmup.split(",")):  # CUDA context, kernels per shape, allocator
        run(n, n > 1)
    results = {f"{n}": [run(n, n > 1) for _ in range(args.runs)] for n in counts}
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    json.dump({"device": args.device, "dtype": args.dtype, "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
               "peakAllocatedBytes": peak, "maxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
