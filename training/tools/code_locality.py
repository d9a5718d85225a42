"""How local are a VQ autoencoder's codes? For each background-coloured token of training images, whether it
is the background's usual code, by its distance (in tokens) to the nearest shape token and to the border.

A flat background far from everything should be one code; training/eval/place-runs-2026-12-01 measured a third
of it written otherwise with GroupNorm in the encoder, and almost none without.

    PYTHONPATH=training python3 training/tools/code_locality.py training/work [--images 1500]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from mosaic_train import data
from mosaic_train.vq import alike_flat_codes, load_trained, to_input


def distances(background: np.ndarray) -> np.ndarray:
    """Chebyshev distance of every token to the nearest non-background token (99 where there is none)."""
    rows, cols = np.mgrid[0 : background.shape[0], 0 : background.shape[1]]
    shape = np.argwhere(~background)
    if len(shape) == 0:
        return np.full(background.shape, 99)
    return np.min(np.maximum(np.abs(rows[..., None] - shape[:, 0]), np.abs(cols[..., None] - shape[:, 1])), -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("work")
    p.add_argument("--images", type=int, default=1500)
    p.add_argument("--seed", type=int, default=1236, help="the data seed train_vq encode uses")
    args = p.parse_args()
    torch.set_num_threads(1)
    vq, ckpt = load_trained(args.work)
    images = np.stack([data.sample_captions(args.seed, i, 1)[2] for i in range(args.images)])
    with torch.no_grad():
        codes = np.concatenate([vq.encode(to_input(torch.from_numpy(images[s : s + 500]))).numpy()
                                for s in range(0, args.images, 500)]).astype(int)
    g = codes.shape[1]
    alike = alike_flat_codes(vq).numpy()
    background = alike[codes[:, :1, :1], codes]  # the first token's colour
    rows, cols = np.mgrid[0:g, 0:g]
    border = np.minimum(np.minimum(rows, cols), np.minimum(g - 1 - rows, g - 1 - cols))
    dist = [distances(b) for b in background]
    # The usual code of a background: the most common one far from shapes and from the border.
    far: dict[int, list[int]] = {}
    for c, b, d in zip(codes, background, dist):
        far.setdefault(c[0, 0], []).extend(c[b & (d >= 6) & (border >= 4)].tolist())
    usual = {k: np.bincount(v).argmax() for k, v in far.items() if v}
    other: dict[tuple[int, int], list[bool]] = {}
    for c, b, d in zip(codes, background, dist):
        if c[0, 0] not in usual:
            continue
        for t in zip(*np.nonzero(b)):
            other.setdefault((min(d[t], 6), min(border[t], 4)), []).append(c[t] != usual[c[0, 0]])
    print(f"{args.work}: {ckpt['steps']} steps, encoder norm {ckpt['args'].get('encoder_norm', 'group')}")
    print("share of background tokens not the usual code; rows: distance to a shape, columns: to the border 0..4+")
    for d in range(1, 7):
        cells = [other.get((d, b)) for b in range(5)]
        print(f"{d if d < 6 else '6+':>3} " + " ".join(f"{100 * np.mean(c):5.0f}%" if c else "    –" for c in cells))


if __name__ == "__main__":
    main()
