"""Does the transformer read the place a caption names? A teacher-forced check cheap enough to run
during training (about two seconds), so a run that does not learn places shows it in minutes, not
after the card.

For each prompt (one shape, every fact stated) the scene is drawn at each of the nine places and
VQ-encoded; the model scores the nine code sequences under the caption, and the probe counts how often
the asked place has the lowest loss. Chance is 1 in 9. With a guidance scale, each token's
probability is the one sampling draws from (softmax of uncond + scale * (cond - uncond), as
sampling.guide), so the probe also says where guided sampling puts the shape: a model whose caption
shifts the place only a little against its unconditional prior reads it under guidance, and this
tells such a model from one that ignores the place word. Held-out prompts (combinations training never
names) and training prompts are counted apart: a model that reads place words for combinations it has
seen but not for held-out ones has memorised combinations instead of learning what the words mean
(candidate-2026-12-01 drew held-out shapes at the asked place 2% of the time).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from . import data, plan
from .text import WordTokenizer
from .vq import VQAutoencoder, to_input

PLACES = list(data.POSITIONS)


@dataclass
class PlaceProbe:
    ids: torch.Tensor  # [prompts * 9, text] each caption nine times
    mask: torch.Tensor
    codes: torch.Tensor  # [prompts * 9, image] the scene at each place
    asked: torch.Tensor  # [prompts] index of the asked place
    empty_ids: torch.Tensor  # [1, text] the empty caption (the unconditioned row of guidance)
    empty_mask: torch.Tensor


def build(vq: VQAutoencoder, tok: WordTokenizer, max_text_len: int, count: int, held_out: bool,
          seed: int = 3, plan_codebook: int | None = None,
          plan_order: str = "background-first") -> PlaceProbe:
    """plan_codebook: for a model that writes a plan (plan.py), each sequence starts with its scene's plan."""
    from .train_transformer import tokenize_batch

    captions, images, asked, plans = [], [], [], []
    for i in range(count):
        rng = random.Random(f"place-probe:{seed}:{held_out}:{i}")
        scene = data.random_scene(rng, held_out=held_out, shapes=1)
        text, _ = data.describe(scene, rng, full=True)
        shape = scene.shapes[0]
        captions += [text] * len(PLACES)
        placed = [data.SceneSpec(scene.background, (replace(shape, position=p),)) for p in PLACES]
        images += [data.render(sc) for sc in placed]
        if plan_codebook is not None:
            plans += [plan.ids(sc, plan_codebook, plan_order) for sc in placed]
        asked.append(PLACES.index(shape.position))
    ids, mask = tokenize_batch(tok, captions, max_text_len)
    codes = vq.encode(to_input(torch.from_numpy(np.stack(images)))).reshape(len(images), -1)
    if plans:
        codes = torch.cat([torch.tensor(plans), codes], 1)
    empty_ids, empty_mask = tokenize_batch(tok, [""], max_text_len)
    return PlaceProbe(ids, mask, codes, torch.tensor(asked), empty_ids, empty_mask)


@torch.no_grad()
def accuracies(forward, probe: PlaceProbe, start_token: int, guidances: tuple[float, ...] = (1.0,),
               batch: int = 144) -> list[float]:
    """forward(ids, mask, decoder_input) -> logits; for each guidance scale, the share of prompts whose
    asked place scores best, each token scored as guided sampling at that scale draws it (1: the caption
    alone). The conditioned and the unconditioned logits are computed once for every scale."""
    losses: list[list[torch.Tensor]] = [[] for _ in guidances]
    for s in range(0, probe.codes.shape[0], batch):
        target = probe.codes[s : s + batch]
        n = target.shape[0]
        inp = torch.cat([torch.full((n, 1), start_token, dtype=torch.long), target[:, :-1]], 1)
        cond = forward(probe.ids[s : s + batch], probe.mask[s : s + batch], inp).float()
        uncond = (forward(probe.empty_ids.expand(n, -1), probe.empty_mask.expand(n, -1), inp).float()
                  if any(g != 1.0 for g in guidances) else None)
        for out, g in zip(losses, guidances):
            logits = cond if g == 1.0 else uncond + g * (cond - uncond)
            out.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(1))
    return [(torch.cat(out).reshape(-1, len(PLACES)).argmin(1) == probe.asked).float().mean().item() for out in losses]


def accuracy(forward, probe: PlaceProbe, start_token: int, batch: int = 144, guidance: float = 1.0) -> float:
    """accuracies at one guidance scale."""
    return accuracies(forward, probe, start_token, (guidance,), batch)[0]
