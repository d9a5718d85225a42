"""Process-wide torch settings every training entry point needs."""
from __future__ import annotations

import os
import random
import sys
import time

import numpy as np
import torch


def setup_torch(seed: int) -> None:
    # A run stalled at full CPU without this (training-notes.md: denormals suspected).
    torch.set_flush_denormal(True)
    # Debian's torch starts with one thread here; use every core (MOSAIC_TRAIN_THREADS overrides).
    torch.set_num_threads(int(os.environ.get("MOSAIC_TRAIN_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
