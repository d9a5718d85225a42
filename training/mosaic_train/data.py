"""Synthetic captioned shapes: the only data the shipped model ever sees.

Every sample is a pure function of (seed, index), so the set is unlimited, needs no storage and
any sample can be regenerated exactly for tests and for the adherence check.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64

# Named colours, chosen far apart in RGB so that a colour check on pixels is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
# Radius of the circle that encloses the shape, in pixels of the 64x64 image.
SIZES = {"small": 9, "big": 15}
SIZE_WORDS = {"small": ("small", "little"), "big": ("big", "large")}
# Centre of each named position, as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top": (0.5, 0.25),
    "top right": (0.75, 0.25),
    "left": (0.25, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75),
    "bottom": (0.5, 0.75),
    "bottom right": (0.75, 0.75),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left"),
    "top": ("at the top", "on top"),
    "top right": ("in the top right corner", "at the top right"),
    "left": ("on the left", "at the left"),
    "centre": ("in the centre", "in the middle", "in the center"),
    "right": ("on the right", "at the right"),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom": ("at the bottom", "on the bottom"),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
}


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class SceneSpec:
    background: str
    shapes: tuple[ShapeSpec, ...] = field(default_factory=tuple)


def combo_key(background: str, s: ShapeSpec) -> str:
    return f"{s.colour} {s.shape} {s.position} on {background}"


def is_held_out(background: str, s: ShapeSpec) -> bool:
    """About 1 in 12 (colour, shape, position, background) combinations never appear in training.

    The adherence check asks for exactly these, so it measures composition, not recall.
    """
    digest = hashlib.sha256(combo_key(background, s).encode()).digest()
    return digest[0] % 12 == 0


def _centre(position: str) -> tuple[float, float]:
    fx, fy = POSITIONS[position]
    return fx * IMAGE_SIZE, fy * IMAGE_SIZE


def _fits(a: ShapeSpec, b: ShapeSpec) -> bool:
    (ax, ay), (bx, by) = _centre(a.position), _centre(b.position)
    return math.hypot(ax - bx, ay - by) >= SIZES[a.size] + SIZES[b.size] + 2


def random_scene(rng: random.Random, held_out: bool = False) -> SceneSpec:
    """Draw a scene; with held_out=False no held-out combination is returned, with True only those
    (single-shape scenes, the form the adherence check uses)."""
    while True:
        background = rng.choice(list(COLOURS))
        n = 1 if held_out or rng.random() < 0.7 else 2
        shapes: list[ShapeSpec] = []
        for _ in range(n):
            colour = rng.choice([c for c in COLOURS if c != background])
            spec = ShapeSpec(rng.choice(SHAPES), colour, rng.choice(list(SIZES)), rng.choice(list(POSITIONS)))
            shapes.append(spec)
        if n == 2 and (shapes[0].position == shapes[1].position or not _fits(shapes[0], shapes[1])):
            continue
        flags = [is_held_out(background, s) for s in shapes]
        if held_out and all(flags):
            return SceneSpec(background, tuple(shapes))
        if not held_out and not any(flags):
            return SceneSpec(background, tuple(shapes))


def _shape_phrase(rng: random.Random, s: ShapeSpec) -> str:
    size = rng.choice(SIZE_WORDS[s.size])
    return f"a {size} {s.colour} {s.shape} {rng.choice(POSITION_PHRASES[s.position])}"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: SceneSpec, rng: random.Random) -> str:
    """Plain English with some variety of wording; every fact of the scene is stated."""
    things = " and ".join(_shape_phrase(rng, s) for s in scene.shapes)
    bg = scene.background
    template = rng.randrange(4)
    if template == 0:
        return f"{things}, {bg} background"
    if template == 1:
        return f"{bg} background with {things}"
    if template == 2:
        return f"{things} on {_article(bg)} {bg} background"
    return f"{things}. the background is {bg}"


def _draw_shape(draw: ImageDraw.ImageDraw, s: ShapeSpec, scale: int) -> None:
    cx, cy = _centre(s.position)
    r = SIZES[s.size]
    fill = COLOURS[s.colour]
    cx, cy, r = cx * scale, cy * scale, r * scale
    if s.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif s.shape == "square":
        h = r / math.sqrt(2) * 1.15  # a little larger than inscribed, so areas read alike
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif s.shape == "triangle":
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        # Shift down so the triangle's bounding box is centred on the position.
        dy = r * (1 - 0.5) / 2
        draw.polygon([(x, y + dy) for x, y in pts], fill=fill)
    else:
        raise ValueError(f"unknown shape {s.shape}")


def render(scene: SceneSpec) -> np.ndarray:
    """uint8 [64, 64, 3]; drawn at 4x and downsampled so edges are anti-aliased."""
    scale = 4
    img = Image.new("RGB", (IMAGE_SIZE * scale, IMAGE_SIZE * scale), COLOURS[scene.background])
    draw = ImageDraw.Draw(img)
    for s in scene.shapes:
        _draw_shape(draw, s, scale)
    img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def sample(seed: int, index: int, held_out: bool = False) -> tuple[SceneSpec, str, np.ndarray]:
    rng = random.Random(f"{seed}:{index}:{int(held_out)}")
    scene = random_scene(rng, held_out)
    return scene, caption(scene, rng), render(scene)


def vocabulary() -> list[str]:
    """Every word any caption can contain, in a stable order."""
    words: set[str] = {"a", "an", "and", "with", "on", "background", "the", "is", "in", "at", "corner", "middle", "center", ","}
    words |= set(COLOURS) | set(SHAPES)
    for ws in SIZE_WORDS.values():
        words |= set(ws)
    for phrases in POSITION_PHRASES.values():
        for p in phrases:
            words |= set(p.split())
    return sorted(words)
