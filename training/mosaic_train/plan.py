"""Scene-plan tokens: the decoder first writes what it will draw, then the image codes.

A plan is nine tokens before the 256 image codes: for each shape (in the order the caption names them:
data.describe names a scene's shapes in the scene's order) its place, size, shape and colour, a scene
with one shape having four `none` in the second shape's slots, and the background colour, first
(2.0.0) or last (`ORDERS`). Why the caption's order: the plan's
first shape is then the first one the prompt names, a copy of its words, where an order by place (run
Q of training/eval/place-runs-2026-12-01) made the model first work out which named shape stands first
and bind the other's words to the other slot, and it mixed them: 1 in 12 two-shape prompts right at
1,500 steps against 10 of 12 one-shape prompts. The decoder is the same transformer: the plan's ids follow the
codebook and the start token in its vocabulary, and at each position only the ids of that slot can be
drawn (`allowed`, applied to the logits in the model). One rule is the sampler's: with the background
last, it may not take a shape's colour (`exclusions`, which the model folder carries to the engine).

Why: with the image codes alone, where a shape goes is decided at the one token, among 256, where it
begins, a weak signal that 16 runs (training/eval/place-runs-2026-12-01) did not get the model to learn
for prompts it had not seen. A plan slot is decided by one word of the prompt (the place slot by the
place word, or drawn at random where the prompt leaves it open, so what is not asked for varies between
images), and the codes after it read the plan from their own sequence. Training never names a held-out
(colour, shape, place, background) in a caption, but draws such scenes under captions that leave the
place open (data.training_scene), so their plans are seen: a held-out prompt asks the model to fill
the slots from its words, not to draw a scene it never drew.
"""
from __future__ import annotations

import numpy as np
import torch

from . import data

NONE = "none"
PLACES = list(data.POSITIONS)
SIZES = list(data.SIZES)
COLOURS = list(data.COLOURS)
SHAPES = list(data.SHAPES)
WORDS = COLOURS + PLACES + SIZES + SHAPES + [NONE]
# The two layouts. "background-first" (2.0.0): the background, then the shapes. "background-last": the
# shapes, then the background, so the background is drawn knowing the shapes' colours and the sampler can
# forbid it those colours (`exclusions`): with the background first, 7-13% of the plans for a prompt that
# names no background drew it in the shape's own colour, a flat image (training/eval/place-runs-2026-12-01,
# item 9), a scene training never shows; the model has to learn that exclusion, and had not.
ORDERS = ("background-first", "background-last")
_SHAPE_SLOTS: list[list[str]] = [PLACES, SIZES, SHAPES, COLOURS] + [s + [NONE] for s in (PLACES, SIZES, SHAPES, COLOURS)]
LENGTH = 1 + len(_SHAPE_SLOTS)


def _check(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"plan order must be one of {ORDERS}, not {order!r}")


def slots(order: str = "background-first") -> list[list[str]]:
    """What each plan position may hold; the second shape's slots may also be `none`."""
    _check(order)
    return [COLOURS] + _SHAPE_SLOTS if order == "background-first" else _SHAPE_SLOTS + [COLOURS]


def exclusions(order: str = "background-first") -> dict[int, list[int]]:
    """position -> earlier positions whose drawn tokens it may not draw again: with the background last, the
    background never takes a shape's colour (positions 3 and 7; a `none` there is no colour, and blocking
    it changes nothing). The model format carries them (`architecture.plan.exclude`) and the engine applies
    them as generate.py does."""
    _check(order)
    return {} if order == "background-first" else {LENGTH - 1: [3, 7]}


# The logit of an id a position may not draw. Not -inf: guidance subtracts logits (uncond + scale *
# (cond - uncond)), where -inf would give NaN; exp(-1e4) is 0 in float64, so it is never drawn.
BLOCKED = -1e4


def words(scene: data.SceneSpec, order: str = "background-first") -> list[str]:
    _check(order)
    if not 1 <= len(scene.shapes) <= 2:
        raise ValueError(f"a plan holds one or two shapes, not {len(scene.shapes)}")
    shapes: list[str] = []
    for s in scene.shapes:
        shapes += [s.position, s.size, s.shape, s.colour]
    shapes += [NONE] * (LENGTH - 1 - len(shapes))
    return [scene.background] + shapes if order == "background-first" else shapes + [scene.background]


def first_id(codebook: int) -> int:
    """Plan ids come after the codes and the start token."""
    return codebook + 1


def ids(scene: data.SceneSpec, codebook: int, order: str = "background-first") -> list[int]:
    return [first_id(codebook) + WORDS.index(w) for w in words(scene, order)]


def vocab_out(codebook: int) -> int:
    """The decoder's output size with a plan: codes, the start token (never drawn), plan words."""
    return first_id(codebook) + len(WORDS)


def allowed(codebook: int, image_len: int, order: str = "background-first") -> torch.Tensor:
    """bool [LENGTH + image_len, vocab_out]: which ids each decoder position may draw."""
    out = torch.zeros(LENGTH + image_len, vocab_out(codebook), dtype=torch.bool)
    for pos, slot in enumerate(slots(order)):
        for w in slot:
            out[pos, first_id(codebook) + WORDS.index(w)] = True
    out[LENGTH:, :codebook] = True
    return out


def block_drawn(logits: np.ndarray, tokens: np.ndarray, earlier: list[int]) -> np.ndarray:
    """A copy of one row's logits with the tokens drawn at the positions `earlier` (an `exclusions` entry)
    set to BLOCKED. Applied to the conditional and the unconditional row alike, before guidance, so the
    guided score is BLOCKED too, as in the engine (src/engine/plan-exclusions.ts, blockDrawn)."""
    out = logits.copy()
    out[[int(tokens[q]) for q in earlier]] = BLOCKED
    return out


def read(tokens: list[int], codebook: int) -> list[str]:
    """Plan ids back to words (for logs and the card's failure lists)."""
    return [WORDS[t - first_id(codebook)] if 0 <= t - first_id(codebook) < len(WORDS) else f"?{t}" for t in tokens]
