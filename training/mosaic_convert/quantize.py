"""A Mosaic model folder with 8- or 4-bit weights in its text encoder and decoder step:

    PYTHONPATH=training python3 -m mosaic_convert.quantize --model work/random-mini/model --out work/random-mini/model-int8
        [--bits 8|4] [--block 32]

Every MatMul with a constant weight becomes ONNX Runtime's MatMulNBits (a scale per block of inputs,
int8 activations: accuracy level 4); embeddings, norms and the VQGAN stay as they are. At DALL·E-mini size a decoder step reads
0.84 GB of fp32 weights for a batch of 2 rows, so its time is mostly memory traffic; a quarter of
the bytes is what moves it (docs/performance.md). The tokens are no longer exactly the fp32 model's,
so this writes a separate model (its own name), never the default: docs/performance.md measures what
it changes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from mosaic_train.graphs import store_weights_nbits
from mosaic_train.runtime import log

GRAPHS = ("textEncoder", "decoderStep")


def quantize_folder(src: str, out: str, name: str | None = None, bits: int = 8, block: int = 32, accuracy_level: int = 4) -> dict:
    with open(os.path.join(src, "model.json")) as f:
        manifest = json.load(f)
    if os.path.abspath(src) == os.path.abspath(out):
        raise SystemExit("mosaic quantize: --out must be a new folder, not the model itself")
    shutil.copytree(src, out, dirs_exist_ok=True)
    counts = {}
    for key in GRAPHS:
        counts[key] = store_weights_nbits(os.path.join(out, manifest["graphs"][key]["file"]), bits, block, accuracy_level)
    original = f"{manifest['name']}@{manifest.get('version', '?')}"
    manifest["name"] = name or f"{manifest['name']}-int{bits}"
    manifest["description"] = f"{manifest.get('description', '')} Text encoder and decoder step with {bits}-bit weights (from {original})."
    manifest.setdefault("training", {})["quantized"] = {
        "from": original, "weights": f"int{bits}", "blockSize": block, "accuracyLevel": accuracy_level,
        "matmuls": counts, "tool": "training/mosaic_convert/quantize.py",
    }
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    log(f"quantized {sum(counts.values())} MatMuls ({counts}) into {out} as {manifest['name']}")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the model folder to read")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--name", help="the new model's name (default: <name>-int8 or -int4)")
    p.add_argument("--bits", type=int, choices=(8, 4), default=8)
    p.add_argument("--block", type=int, default=32, help="inputs sharing one scale (a power of 2, at least 16)")
    p.add_argument("--accuracy-level", type=int, choices=(0, 4), default=4,
                   help="4: int8 activations and integer kernels; 0: dequantise and multiply in fp32 (slow for 8 bits)")
    a = p.parse_args()
    if a.block < 16 or a.block & (a.block - 1):
        raise SystemExit("mosaic quantize: --block must be a power of 2, at least 16")
    quantize_folder(a.model, a.out, a.name, a.bits, a.block, a.accuracy_level)


if __name__ == "__main__":
    main()
