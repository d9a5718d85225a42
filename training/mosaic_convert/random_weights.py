"""Random-weight DALL·E mini / mega at full size, for benchmarks, by one command:

    PYTHONPATH=training python3 -m mosaic_convert.random_weights --size mini --out work/random-mini

Writes the published-layout files (`<out>/published/`, what the PyTorch reference loads) and converts
them with the real converter into a Mosaic model folder (`<out>/model/`). The weights are random, so
the images are noise: this measures speed, not quality. Sizes: docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mosaic_train.runtime import log

from .convert import convert_states
from .parity import tiny_vocab
from .published import SIZES, VQGAN_F16_16384, Published, without_unscaled_norms


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--size", choices=sorted(SIZES), required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--weights", choices=("fp32", "fp16"), default="fp32", help="how the ONNX files store BART weights")
    a.add_argument("--seed", type=int, default=0)
    args = a.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.time()
    dims = SIZES[args.size]
    with torch.no_grad():
        p = Published(dims, VQGAN_F16_16384)
    log(f"random {args.size}: {sum(t.numel() for m in (p.encoder, p.decoder) for t in m.parameters()) / 1e6:.0f} M BART "
        f"parameters, {sum(t.numel() for t in p.detokenizer.parameters()) / 1e6:.1f} M VQGAN ({time.time() - t0:.0f} s)")
    bart = os.path.join(args.out, "published", "dalle_bart")
    vq = os.path.join(args.out, "published", "vqgan")
    os.makedirs(bart, exist_ok=True)
    os.makedirs(vq, exist_ok=True)
    states = {"encoder": without_unscaled_norms(p.encoder.state_dict()),
              "decoder": without_unscaled_norms(p.decoder.state_dict()), "detoker": p.detokenizer.state_dict()}
    paths = {"encoder": os.path.join(bart, "encoder.pt"), "decoder": os.path.join(bart, "decoder.pt"),
             "detoker": os.path.join(vq, "detoker.pt"), "vocab": os.path.join(bart, "vocab.json"),
             "merges": os.path.join(bart, "merges.txt")}
    for key in ("encoder", "decoder", "detoker"):
        torch.save(states[key], paths[key])
    # A byte-level vocabulary is enough to tokenize any prompt; the real one has 50k entries.
    vocab, merges = tiny_vocab()
    with open(paths["vocab"], "w") as f:
        json.dump(vocab, f)
    with open(paths["merges"], "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    del p
    convert_states(states, paths, os.path.join(args.out, "model"), f"random-{args.size}", dims.heads, args.weights,
                   patch=None)
    log(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
