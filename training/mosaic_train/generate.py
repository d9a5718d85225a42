"""PyTorch reference generation: the behaviour the TypeScript engine is checked against."""
from __future__ import annotations

import numpy as np
import torch

from . import plan
from .sampling import Mulberry32, Settings, choose, guide
from .text import WordTokenizer
from .train_transformer import tokenize_batch
from .transformer import DalleBart


def generate_codes(model: DalleBart, tok: WordTokenizer, prompts: list[str], seeds: list[int],
                   settings: Settings) -> np.ndarray:
    """One image per (prompt, seed) pair -> codes int64 [n, grid*grid] (a plan, if any, left out)."""
    return generate_tokens(model, tok, prompts, seeds, settings)[:, model.config.plan_len:]


@torch.no_grad()
def generate_tokens(model: DalleBart, tok: WordTokenizer, prompts: list[str], seeds: list[int],
                    settings: Settings, exclusions: bool = True) -> np.ndarray:
    """One image per (prompt, seed) pair -> the decoder's tokens int64 [n, plan_len + grid*grid].

    Rows are [conditional..., unconditional...] in one batch, as the engine runs them. exclusions=False
    leaves the plan's exclusions out (the fixtures show what they change).
    """
    cfg = model.config
    n = len(prompts)
    ids, mask = tokenize_batch(tok, prompts + [""] * n, cfg.max_text_len)
    cross_k, cross_v = model.encode(ids, mask)
    past_k, past_v = model.empty_cache(2 * n)
    rngs = [Mulberry32(s) for s in seeds]
    token = torch.full((2 * n,), cfg.start_token, dtype=torch.long)
    out = np.zeros((n, cfg.seq_len), dtype=np.int64)
    # The plan's exclusions (plan.exclusions): with the background last, it never takes a shape's colour.
    excluded = plan.exclusions(cfg.plan_order) if cfg.plan_len and exclusions else {}
    for pos in range(cfg.seq_len):
        position = torch.full((2 * n,), pos, dtype=torch.long)
        logits, new_k, new_v = model.decode_step(token, position, past_k, past_v, cross_k, cross_v, mask)
        model.write_cache(past_k, past_v, new_k, new_v, position)
        lg = logits.numpy()
        earlier = excluded.get(pos)
        for i in range(n):
            cond, uncond = (plan.block_drawn(r, out[i], earlier) if earlier else r for r in (lg[i], lg[n + i]))
            out[i, pos] = choose(guide(cond, uncond, settings.guidance_scale), settings, rngs[i])
        token = torch.from_numpy(np.concatenate([out[:, pos], out[:, pos]]))
    return out
