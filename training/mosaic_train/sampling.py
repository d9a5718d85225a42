"""Reference sampling, defined so the TypeScript engine can reproduce it token for token.

Each image has its own random stream (mulberry32 seeded with the image's seed = generation seed +
index), so an image never depends on what else is in the batch. Probabilities are computed in
float64 in a fixed order, as JavaScript numbers are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

M32 = 0xFFFFFFFF


class Mulberry32:
    def __init__(self, seed: int):
        self.a = seed & M32

    def next_u32(self) -> int:
        self.a = (self.a + 0x6D2B79F5) & M32
        a = self.a
        t = ((a ^ (a >> 15)) * (1 | a)) & M32
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & M32)) & M32) ^ t
        return (t ^ (t >> 14)) & M32

    def uniform(self) -> float:
        return self.next_u32() / 4294967296.0


@dataclass
class Settings:
    guidance_scale: float = 3.0
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0
    temperature: float = 1.0


def guide(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    c, u = cond.astype(np.float64), uncond.astype(np.float64)
    return u + scale * (c - u)


def choose(logits: np.ndarray, s: Settings, rng: Mulberry32) -> int:
    """logits float64 [codebook] (already guided) -> one code."""
    if s.temperature <= 0 or s.top_k == 1:
        return int(np.argmax(logits))
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    if s.top_k > 0:
        order = order[: s.top_k]
    top = logits[order[0]]
    weights = [math.exp((logits[i] - top) / s.temperature) for i in order]
    total = sum(weights)
    if s.top_p < 1.0:
        kept, cum = 0, 0.0
        for w in weights:
            kept += 1
            cum += w
            if cum >= s.top_p * total:
                break
        order, weights = order[:kept], weights[:kept]
        total = sum(weights)
    u = rng.uniform() * total
    cum = 0.0
    for i, w in zip(order, weights):
        cum += w
        if u < cum:
            return i
    return order[-1]
