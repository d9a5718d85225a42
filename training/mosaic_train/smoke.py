"""A few steps of every stage on a few images: proves the training code runs, in seconds.

Used by the test suite (training/tests/test_training.py, which then checks the exported folder and
loads it in the engine); the real model is built by `training/build-model.sh`.

    PYTHONPATH=training python3 -m mosaic_train.smoke [--work DIR]   # the model lands in DIR/model
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description="A few steps of every training stage, exported to <work>/model.")
    p.add_argument("--work", help="an empty or new folder (default: a new temporary one)")
    work = p.parse_args().work or tempfile.mkdtemp(prefix="mosaic-smoke-")
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "model")
    run("mosaic_train.train_vq", "train", "--out", work, "--steps", "3", "--batch", "4", "--codebook", "32",
        "--embed-dim", "16", "--channels", "8")
    run("mosaic_train.train_vq", "encode", "--out", work, "--samples", "600")
    dims = ("--batch", "4", "--d-model", "32", "--heads", "2", "--encoder-layers", "1", "--decoder-layers", "1",
            "--glu-dim", "48", "--warmup", "2", "--plan", "--plan-order", "background-last")
    run("mosaic_train.train_transformer", "--out", work, "--steps", "3", "--place-only-first", "0.5", "--plan-first", "2", *dims)
    # A second phase with the first-place weight on place-naming captions only (names-places.json).
    run("mosaic_train.train_transformer", "--out", work, "--resume", "--steps", "2", "--place-weight-rows", "naming", *dims)
    run("mosaic_train.select", "--work", work, "--count", "1")
    run("mosaic_train.export", "--work", work, "--out", out, "--fixtures", os.path.join(work, "fixtures.json"))
    for f in ("model.json", "tokenizer.json", "text_encoder.onnx", "decoder_step.onnx", "vq_decoder.onnx",
              "code-patches.bin"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    run("mosaic_train.card", "--work", work, "--model", out, "--count", "2")
    assert os.path.getsize(os.path.join(out, "README.md")) > 0
    print(f"smoke run ok: {out}")


if __name__ == "__main__":
    main()
