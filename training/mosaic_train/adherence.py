"""Prompt adherence: does an image show what its prompt asked for?

Geometric checks on pixels, no learned judge. Every pixel is classified to its nearest named colour;
each asked shape is found as the largest connected region of its colour (two shapes in one prompt
always have different colours), then:
- background: the most common named colour over the whole image is the asked background;
- colour: the asked colour's region is at least half the area of a small shape (and, where a place
  is asked, covers at least 20% of that place's window);
- shape: the region, cropped to its box and scaled to 24×24, overlaps best (IoU) with the asked
  shape's template among all the shapes the model knows: fill and mass distribution together;
- position: the region's box centre lies within 10 px of the asked place; for a relation between
  two shapes ("a red circle above a blue square"), their centres are in that order by at least 8 px;
- size: the region's box is nearer the asked size's box than the other size's.

"adherent" = background, colour and shape all right (per shape for two-shape prompts). Position and
size are reported beside it, over the prompts that ask for them.

The check reads images from a folder (`prompts.json` + PNGs), so it scores any generator: the
PyTorch reference here, or the TypeScript engine (`mosaic generate`).

Prompt sets:
- held-out: single shapes whose (colour, shape, position, background) never occur in training, with
  every fact stated (seeded; `held_out_prompts`);
- two shapes: held-out two-shape scenes, by place or by relation (`two_shape_prompts`);
- open: prompts that leave place or size open, for the diversity measurement (`open_prompts`);
- free phrasing: written by hand in `training/eval/free-phrasing.json`, read only by the card and
  the tests (`free_phrasing_prompts`), never by training or by sampling selection.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
from dataclasses import asdict
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from . import data

PALETTE_NAMES = list(data.COLOURS)
PALETTE = np.array([data.COLOURS[c] for c in PALETTE_NAMES], dtype=np.float64)
TEMPLATE = 24
FREE_PHRASING = os.path.join(os.path.dirname(__file__), "..", "eval", "free-phrasing.json")


def classify(img: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] -> index of the nearest named colour per pixel [h, w]."""
    d = ((img[:, :, None, :].astype(np.float64) - PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (stray specks do not move a box)."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    best, best_size, current = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        current += 1
        labels[y0, x0] = current
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else np.zeros_like(mask)


def _crop(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    box = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    img = Image.fromarray((box * 255).astype(np.uint8)).resize((TEMPLATE, TEMPLATE), Image.BILINEAR)
    return np.asarray(img) >= 128


@lru_cache(maxsize=None)
def _template(shape: str, size: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The shape as the data draws it: its cropped mask and its box (w, h) in pixels."""
    img = Image.new("RGB", (data.IMAGE_SIZE * 4, data.IMAGE_SIZE * 4), (0, 0, 0))
    data._draw_shape(ImageDraw.Draw(img), data.ShapeSpec(shape, "white", size, "centre"), 4)
    mask = np.asarray(img.convert("L").resize((data.IMAGE_SIZE, data.IMAGE_SIZE), Image.BOX)) >= 128
    ys, xs = np.nonzero(mask)
    return _crop(mask), (int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def shape_of(region: np.ndarray) -> str:
    crop = _crop(region)
    ious = {s: (crop & _template(s, "big")[0]).sum() / max(1, (crop | _template(s, "big")[0]).sum()) for s in data.SHAPES}
    return max(ious, key=ious.get)


def nearest_position(x: float, y: float) -> str:
    return min(data.POSITIONS, key=lambda p: math.hypot(data.centre_of(p)[0] - x, data.centre_of(p)[1] - y))


def find(cls: np.ndarray, colour: str) -> dict:
    """The asked colour's largest region: its box centre, size and shape, or None when too small."""
    region = largest_region(cls == PALETTE_NAMES.index(colour))
    area = int(region.sum())
    min_area = 0.5 * _expected_area("small")
    if area < min_area:
        return {"area": area}
    ys, xs = np.nonzero(region)
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    shape = shape_of(region)
    ext = max(w, h)
    size = min(data.SIZES, key=lambda s: abs(math.log(ext / max(_template(shape, s)[1]))))
    return {"area": area, "x": float(cx), "y": float(cy), "shape": shape, "size": size,
            "position": nearest_position(cx, cy)}


def _expected_area(size: str) -> float:
    r = data.SIZES[size]
    return math.pi * r * r * 0.6  # the thinnest shapes (star, triangle) fill about 60% of a circle


def score(img: np.ndarray, scene: data.SceneSpec, stated: data.Stated | None = None) -> dict:
    """img uint8 [h, w, 3] of any size (resized to 64 px); scene with one or two shapes; stated says
    which facts the prompt asked for (default: all of them)."""
    if img.shape[0] != data.IMAGE_SIZE:
        img = np.asarray(Image.fromarray(img).resize((data.IMAGE_SIZE, data.IMAGE_SIZE), Image.BOX))
    n = len(scene.shapes)
    stated = stated or data.Stated(True, (True,) * n, (True,) * n)
    cls = classify(img)
    bg = PALETTE_NAMES[int(np.bincount(cls.ravel(), minlength=len(PALETTE_NAMES)).argmax())]
    shapes = []
    for i, s in enumerate(scene.shapes):
        found = find(cls, s.colour)
        ok = {"colour_ok": "shape" in found, "shape_ok": found.get("shape") == s.shape,
              "position_ok": None, "size_ok": None}
        if stated.positions[i]:
            cx, cy = data.centre_of(s.position)
            r = data.radius(s.shape, s.size)
            window = cls[int(max(0, cy - r)): int(cy + r), int(max(0, cx - r)): int(cx + r)]
            ok["colour_ok"] = ok["colour_ok"] and float((window == PALETTE_NAMES.index(s.colour)).mean()) >= 0.2
            ok["position_ok"] = "x" in found and math.hypot(found["x"] - cx, found["y"] - cy) <= 10
        if stated.sizes[i]:
            ok["size_ok"] = found.get("size") == s.size
        shapes.append({**ok, "found": found})
    if stated.relation:
        a, b = shapes[0]["found"], shapes[1]["found"]
        holds = "x" in a and "x" in b and {
            "above": b.get("y", 0) - a.get("y", 0) >= 8,
            "below": a.get("y", 0) - b.get("y", 0) >= 8,
            "left of": b.get("x", 0) - a.get("x", 0) >= 8,
            "right of": a.get("x", 0) - b.get("x", 0) >= 8,
            "next to": abs(a.get("x", 0) - b.get("x", 0)) >= 8 and abs(a.get("y", 0) - b.get("y", 0)) < 8,
        }[stated.relation]
        for s in shapes:
            s["position_ok"] = holds
    result = {
        "background_ok": (bg == scene.background) if stated.background else None,
        "found_background": bg,
        # The image is mostly an asked shape's colour: the shape drawn on a background of its own colour (a
        # flat image), a scene training never shows.
        "hidden": bg in {s.colour for s in scene.shapes},
        "shapes": shapes,
        "colour_ok": all(s["colour_ok"] for s in shapes),
        "shape_ok": all(s["shape_ok"] for s in shapes),
        "position_ok": _all_stated(s["position_ok"] for s in shapes),
        "size_ok": _all_stated(s["size_ok"] for s in shapes),
    }
    result["adherent"] = result["background_ok"] is not False and result["colour_ok"] and result["shape_ok"]
    # Per shape, for two-shape prompts: colour, place and shape of that one shape all right.
    result["shapes_right"] = [s["colour_ok"] and s["shape_ok"] and s["position_ok"] is not False for s in shapes]
    return result


def _all_stated(values) -> bool | None:
    asked = [v for v in values if v is not None]
    return all(asked) if asked else None


def _rate(results: list[dict], key: str) -> float | None:
    asked = [r[key] for r in results if r[key] is not None]
    return sum(asked) / len(asked) if asked else None


def summarise(results: list[dict]) -> dict:
    keys = ["adherent", "background_ok", "colour_ok", "shape_ok", "position_ok", "size_ok"]
    out: dict = {"images": len(results), **{k.replace("_ok", ""): _rate(results, k) for k in keys}}
    per_shape = [ok for r in results for ok in r["shapes_right"]]
    if any(len(r["shapes_right"]) > 1 for r in results):
        out["shapes_right"] = sum(per_shape) / len(per_shape)
    out["hidden"] = sum(bool(r.get("hidden")) for r in results) / max(1, len(results))
    return out


def diversity(results: list[list[dict]]) -> dict:
    """results: per prompt, the scores of its images. A prompt passes when its images show at least
    3 distinct (position, size) pairs among those where the shape was found."""
    spreads = []
    for images in results:
        seen = {(r["shapes"][0]["found"]["position"], r["shapes"][0]["found"]["size"])
                for r in images if "position" in r["shapes"][0]["found"]}
        spreads.append(len(seen))
    return {"prompts": len(results), "passing": sum(s >= 3 for s in spreads) / max(1, len(spreads)),
            "distinct": spreads}


def _entry(caption: str, scene: data.SceneSpec, stated: data.Stated) -> dict:
    return {"caption": caption, "scene": {"background": scene.background, "shapes": [asdict(s) for s in scene.shapes]},
            "stated": stated.to_dict()}


def _described(scene: data.SceneSpec, rng: random.Random, accept) -> dict:
    """The scene's first caption (drawn from rng) whose stated facts `accept` takes, as a prompt entry."""
    while True:
        text, stated = data.describe(scene, rng)
        if accept(stated):
            return _entry(text, scene, stated)


def held_out_prompts(n: int, seed: int = 99) -> list[dict]:
    """n single-shape prompts whose (colour, shape, position, background) never occur in training,
    every fact stated, phrased as training phrases them."""
    out = []
    for i in range(n):
        rng = random.Random(f"held-out:{seed}:{i}")
        scene = data.random_scene(rng, held_out=True, shapes=1)
        text, stated = data.describe(scene, rng, full=True)
        out.append(_entry(text, scene, stated))
    return out


def two_shape_prompts(n: int, seed: int = 99) -> list[dict]:
    """n two-shape prompts whose shapes are both held-out combinations: half by place, half by relation."""
    out = []
    for i in range(n):
        rng = random.Random(f"two-shapes:{seed}:{i}")
        relation = list(data.RELATIONS)[i // 2 % len(data.RELATIONS)] if i % 2 else None
        scene = data.random_scene(rng, held_out=True, shapes=2, relation=relation)
        out.append(_described(scene, rng, lambda s: s.background and (s.relation == relation if relation else all(s.positions))))
    return out


def open_prompts(n: int, seed: int = 99) -> list[dict]:
    """n single-shape prompts that leave place and size open (for the diversity measurement)."""
    out = []
    for i in range(n):
        rng = random.Random(f"open:{seed}:{i}")
        scene = data.random_scene(rng, shapes=1)
        out.append(_described(scene, rng, lambda s: not s.positions[0] and not s.sizes[0]))
    return out


def no_background_prompts(n: int, seed: int = 99) -> list[dict]:
    """n single-shape prompts that name no background (it is then drawn at random): where a plan drew it
    in the shape's colour, the image was one flat colour (`hidden` in the scores)."""
    out = []
    for i in range(n):
        rng = random.Random(f"no-background:{seed}:{i}")
        scene = data.random_scene(rng, shapes=1)
        out.append(_described(scene, rng, lambda s: not s.background))
    return out


def free_phrasing_prompts(path: str = FREE_PHRASING) -> list[dict]:
    """The hand-written set: each entry gives the prompt and what it asks (unasked facts are absent)."""
    with open(path) as f:
        items = json.load(f)["prompts"]
    out = []
    for it in items:
        shapes = []
        for s in it["shapes"]:
            # Unasked size or place: the scene holds a placeholder that the check never scores.
            shapes.append(data.ShapeSpec(s["shape"], s["colour"], s.get("size", "big"), s.get("position", "centre")))
        stated = data.Stated("background" in it, tuple("size" in s for s in it["shapes"]),
                             tuple("position" in s for s in it["shapes"]), it.get("relation"))
        out.append(_entry(it["prompt"], data.SceneSpec(it.get("background", "white"), tuple(shapes)), stated))
    return out


def scene_from(d: dict) -> data.SceneSpec:
    return data.SceneSpec(d["background"], tuple(data.ShapeSpec(**s) for s in d["shapes"]))


def score_entry(img: np.ndarray, p: dict) -> dict:
    stated = data.Stated.from_dict(p["stated"]) if "stated" in p else None
    return score(img, scene_from(p["scene"]), stated)


def score_folder(folder: str) -> dict:
    """folder/prompts.json: [{caption, scene, stated, files: [png, ...]}] as written by `prompts` and
    filled by any generator."""
    with open(os.path.join(folder, "prompts.json")) as f:
        prompts = json.load(f)
    results = []
    for p in prompts:
        for name in p["files"]:
            img = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"))
            results.append({"caption": p["caption"], "file": name, **score_entry(img, p)})
    return {"summary": summarise(results), "results": results}


SETS = {"held-out": held_out_prompts, "two-shapes": two_shape_prompts, "open": open_prompts,
        "no-background": no_background_prompts,
        "free-phrasing": lambda n: free_phrasing_prompts()[:n]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("prompts", help="write a prompt set as JSON")
    w.add_argument("--set", choices=list(SETS), default="held-out")
    w.add_argument("--count", type=int, default=48)
    w.add_argument("--out", required=True)
    s = sub.add_parser("score", help="score a folder of generated images")
    s.add_argument("folder")
    s.add_argument("--min-rate", type=float, default=0.0, help="exit 1 when the adherence rate is lower")
    args = p.parse_args()
    if args.command == "prompts":
        with open(args.out, "w") as f:
            json.dump(SETS[args.set](args.count), f, indent=1)
        return
    report = score_folder(args.folder)
    print(json.dumps(report["summary"], indent=1))
    if report["summary"]["adherent"] < args.min_rate:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
