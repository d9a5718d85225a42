"""Prompt adherence: does an image show what its (held-out) caption asked for?

Geometric checks on pixels, no learned judge:
- background: the most common named colour over the whole image is the asked background;
- colour: within the asked position's window, the asked colour covers at least 20% of pixels;
- position: the centroid of the asked colour's pixels lies within 10 px of the asked centre;
- shape: fill ratio of those pixels to their bounding box (square ~1, circle ~0.79, triangle ~0.5);
- size: their area is nearer the asked size's expected area than the other size's.

"adherent" = background and colour both right: the headline rate in the model card. Shape,
position and size are reported beside it.

The check reads images from a folder (`prompts.json` + PNGs), so it scores any generator: the
PyTorch reference here, or the TypeScript engine (`mosaic generate`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict

import numpy as np
from PIL import Image

from . import data

PALETTE_NAMES = list(data.COLOURS)
PALETTE = np.array([data.COLOURS[c] for c in PALETTE_NAMES], dtype=np.float64)


def classify(img: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] -> index of the nearest named colour per pixel [h, w]."""
    d = ((img[:, :, None, :].astype(np.float64) - PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def shape_of(fill: float) -> str:
    if fill > 0.88:
        return "square"
    if fill > 0.64:
        return "circle"
    return "triangle"


def score(img: np.ndarray, scene: data.SceneSpec) -> dict:
    """img uint8 [h, w, 3] of any size (resized to 64 px); scene with exactly one shape."""
    if img.shape[0] != data.IMAGE_SIZE:
        img = np.asarray(Image.fromarray(img).resize((data.IMAGE_SIZE, data.IMAGE_SIZE), Image.BOX))
    s = scene.shapes[0]
    cls = classify(img)
    bg = PALETTE_NAMES[int(np.bincount(cls.ravel(), minlength=len(PALETTE_NAMES)).argmax())]
    want = PALETTE_NAMES.index(s.colour)
    fx, fy = data.POSITIONS[s.position]
    cx, cy = fx * data.IMAGE_SIZE, fy * data.IMAGE_SIZE
    r = data.SIZES[s.size]
    x0, x1 = int(max(0, cx - r)), int(min(data.IMAGE_SIZE, cx + r))
    y0, y1 = int(max(0, cy - r)), int(min(data.IMAGE_SIZE, cy + r))
    window = cls[y0:y1, x0:x1]
    colour_cover = float((window == want).mean())
    ys, xs = np.nonzero(cls == want)
    result = {"background_ok": bg == scene.background, "colour_ok": colour_cover >= 0.2,
              "position_ok": False, "shape_ok": False, "size_ok": False, "found_background": bg,
              "colour_cover": colour_cover}
    if len(xs) >= 4:
        mx, my = xs.mean() + 0.5, ys.mean() + 0.5
        result["position_ok"] = math.hypot(mx - cx, my - cy) <= 10
        area = len(xs)
        box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        result["found_shape"] = shape_of(area / box)
        result["shape_ok"] = result["found_shape"] == s.shape
        expected = {k: _expected_area(s.shape, v) for k, v in data.SIZES.items()}
        result["found_size"] = min(expected, key=lambda k: abs(math.log(area / expected[k])))
        result["size_ok"] = result["found_size"] == s.size
    result["adherent"] = result["background_ok"] and result["colour_ok"]
    return result


def _expected_area(shape: str, r: float) -> float:
    if shape == "circle":
        return math.pi * r * r
    if shape == "square":
        return (2 * r / math.sqrt(2) * 1.15) ** 2
    return 3 * math.sqrt(3) / 4 * r * r


def held_out_prompts(n: int, seed: int = 99) -> list[dict]:
    """n single-shape captions whose (colour, shape, position, background) never occur in training."""
    out = []
    for i in range(n):
        scene, caption, _ = data.sample(seed, i, held_out=True)
        out.append({"caption": caption, "scene": {"background": scene.background,
                                                   "shapes": [asdict(s) for s in scene.shapes]}})
    return out


def scene_from(d: dict) -> data.SceneSpec:
    return data.SceneSpec(d["background"], tuple(data.ShapeSpec(**s) for s in d["shapes"]))


def summarise(results: list[dict]) -> dict:
    n = len(results)
    keys = ["adherent", "background_ok", "colour_ok", "position_ok", "shape_ok", "size_ok"]
    return {"images": n, **{k.replace("_ok", ""): sum(r[k] for r in results) / n for k in keys}}


def score_folder(folder: str) -> dict:
    """folder/prompts.json: [{caption, scene, files: [png, ...]}] as written by `write_prompts` and
    filled by any generator."""
    with open(os.path.join(folder, "prompts.json")) as f:
        prompts = json.load(f)
    results = []
    for p in prompts:
        for name in p["files"]:
            img = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
            results.append({"caption": p["caption"], "file": name, **score(img, scene_from(p["scene"]))})
    return {"summary": summarise(results), "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("prompts", help="write the held-out prompts as JSON")
    w.add_argument("--count", type=int, default=48)
    w.add_argument("--out", required=True)
    s = sub.add_parser("score", help="score a folder of generated images")
    s.add_argument("folder")
    s.add_argument("--min-rate", type=float, default=0.0, help="exit 1 when the adherence rate is lower")
    args = p.parse_args()
    if args.command == "prompts":
        with open(args.out, "w") as f:
            json.dump(held_out_prompts(args.count), f, indent=1)
        return
    report = score_folder(args.folder)
    print(json.dumps(report["summary"], indent=1))
    if report["summary"]["adherent"] < args.min_rate:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
