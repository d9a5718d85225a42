"""Scene-plan tokens: the decoder first writes what it will draw, then the image codes.

A plan is nine tokens before the 256 image codes: the background colour, then for each shape (in the
order the caption names them: data.describe names a scene's shapes in the scene's order) its place,
size, shape and colour; a scene with one shape ends in four `none`. Why the caption's order: the plan's
first shape is then the first one the prompt names, a copy of its words, where an order by place (run
Q of training/eval/place-runs-2026-12-01) made the model first work out which named shape stands first
and bind the other's words to the other slot, and it mixed them: 1 in 12 two-shape prompts right at
1,500 steps against 10 of 12 one-shape prompts. The decoder is the same transformer: the plan's ids follow the
codebook and the start token in its vocabulary, and at each position only the ids of that slot can be
drawn (`allowed`, applied to the logits in the model), so sampling needs no new rule.

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

import torch

from . import data

NONE = "none"
PLACES = list(data.POSITIONS)
SIZES = list(data.SIZES)
COLOURS = list(data.COLOURS)
SHAPES = list(data.SHAPES)
WORDS = COLOURS + PLACES + SIZES + SHAPES + [NONE]
# What each plan position may hold; the second shape's slots may also be `none`.
SLOTS: list[list[str]] = [COLOURS] + [PLACES, SIZES, SHAPES, COLOURS] + [s + [NONE] for s in (PLACES, SIZES, SHAPES, COLOURS)]
LENGTH = len(SLOTS)
# The logit of an id a position may not draw. Not -inf: guidance subtracts logits (uncond + scale *
# (cond - uncond)), where -inf would give NaN; exp(-1e4) is 0 in float64, so it is never drawn.
BLOCKED = -1e4


def words(scene: data.SceneSpec) -> list[str]:
    if not 1 <= len(scene.shapes) <= 2:
        raise ValueError(f"a plan holds one or two shapes, not {len(scene.shapes)}")
    out = [scene.background]
    for s in scene.shapes:
        out += [s.position, s.size, s.shape, s.colour]
    return out + [NONE] * (LENGTH - len(out))


def first_id(codebook: int) -> int:
    """Plan ids come after the codes and the start token."""
    return codebook + 1


def ids(scene: data.SceneSpec, codebook: int) -> list[int]:
    return [first_id(codebook) + WORDS.index(w) for w in words(scene)]


def vocab_out(codebook: int) -> int:
    """The decoder's output size with a plan: codes, the start token (never drawn), plan words."""
    return first_id(codebook) + len(WORDS)


def allowed(codebook: int, image_len: int) -> torch.Tensor:
    """bool [LENGTH + image_len, vocab_out]: which ids each decoder position may draw."""
    out = torch.zeros(LENGTH + image_len, vocab_out(codebook), dtype=torch.bool)
    for pos, slot in enumerate(SLOTS):
        for w in slot:
            out[pos, first_id(codebook) + WORDS.index(w)] = True
    out[LENGTH:, :codebook] = True
    return out


def read(tokens: list[int], codebook: int) -> list[str]:
    """Plan ids back to words (for logs and the card's failure lists)."""
    return [WORDS[t - first_id(codebook)] if 0 <= t - first_id(codebook) < len(WORDS) else f"?{t}" for t in tokens]
