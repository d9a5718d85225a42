"""A BART-style encoder-decoder shaped like DALL·E mini, at a size our CPU can train.

Same pieces as the published model: learned absolute positions, NormFormer-style layer norms
(before and after each attention, before the GLU and on its inner product), GLU with GELU, no
biases, a final layer norm on each side. Only the numbers are smaller.

Three entry points mirror the three exported graphs:
- `encode(ids, mask)` -> cross-attention keys/values for every decoder layer (once per prompt);
- `decode_step(...)` -> one token with a fixed-size key/value cache (the engine's hot loop);
- `forward(ids, mask, tokens)` -> teacher-forced logits for training and for the no-cache check.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import plan


@dataclass
class Config:
    text_vocab: int
    max_text_len: int = 40
    codebook_size: int = 256
    grid: int = 16
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    glu_dim: int = 640
    # "table": one learned vector per image position (DALL·E mini's). "rows+cols": that table plus a
    # learned vector per grid row and per grid column, so "top" or "left" is one direction to learn
    # rather than 16 or 48 separate ones; folded into the table for export (fold_positions), so the
    # graphs and the model format are the same either way.
    image_positions: str = "table"
    # Scene-plan tokens before the image codes (plan.py); 0: the codes alone, as 1.0.0.
    plan_len: int = 0
    # Where the plan puts the background: plan.ORDERS (2.0.0 and older checkpoints: first).
    plan_order: str = "background-first"

    @property
    def image_len(self) -> int:
        return self.grid * self.grid

    @property
    def seq_len(self) -> int:
        """Decoder positions: the plan, then the image codes."""
        return self.plan_len + self.image_len

    @property
    def vocab_out(self) -> int:
        return plan.vocab_out(self.codebook_size) if self.plan_len else self.codebook_size

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def start_token(self) -> int:
        return self.codebook_size

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.LayerNorm):
    """Always computed in fp32. Training may run under CPU autocast to bf16 (train_transformer
    --precision); this torch's autocast leaves layer norm alone, and a bf16 input against fp32
    weights fails. The check is Python-level, so the exported fp32 graphs gain no Cast node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if x.dtype == torch.float32 else x.float())


class GLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.ln0 = LayerNorm(d)
        self.ln1 = LayerNorm(hidden)
        self.fc0 = nn.Linear(d, hidden, bias=False)
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln0(x)
        return self.fc2(self.ln1(F.gelu(self.fc0(x)) * self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """q [b,h,n,hd], k/v [b,h,m,hd], allowed broadcastable to [b,h,n,m] (bool)."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~allowed, -1e9)
        out = scores.softmax(-1) @ v
        b, h, n, hd = out.shape
        return self.o(out.transpose(1, 2).reshape(b, n, h * hd))


class EncoderLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.pre_attn_ln = LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.heads)
        self.post_attn_ln = LayerNorm(c.d_model)
        self.glu = GLU(c.d_model, c.glu_dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        h = self.pre_attn_ln(x)
        h = self.attn.attend(self.attn.split(self.attn.q(h)), self.attn.split(self.attn.k(h)),
                             self.attn.split(self.attn.v(h)), allowed)
        x = x + self.post_attn_ln(h)
        return x + self.glu(x)


class DecoderLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.pre_self_ln = LayerNorm(c.d_model)
        self.self_attn = Attention(c.d_model, c.heads)
        self.post_self_ln = LayerNorm(c.d_model)
        self.pre_cross_ln = LayerNorm(c.d_model)
        self.cross_attn = Attention(c.d_model, c.heads)
        self.post_cross_ln = LayerNorm(c.d_model)
        self.glu = GLU(c.d_model, c.glu_dim)

    def forward(self, x, self_k, self_v, self_allowed, cross_k, cross_v, cross_allowed):
        """x [b,n,d]; self_k/v [b,h,m,hd] (already including x's own keys); cross_k/v [b,h,t,hd]."""
        a = self.self_attn
        h = self.pre_self_ln(x)
        x = x + self.post_self_ln(a.attend(a.split(a.q(h)), self_k, self_v, self_allowed))
        c = self.cross_attn
        h = self.pre_cross_ln(x)
        x = x + self.post_cross_ln(c.attend(c.split(c.q(h)), cross_k, cross_v, cross_allowed))
        return x + self.glu(x)

    def self_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.pre_self_ln(x)
        return self.self_attn.split(self.self_attn.k(h)), self.self_attn.split(self.self_attn.v(h))


class DalleBart(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.config = c
        d = c.d_model
        self.text_embed = nn.Embedding(c.text_vocab, d)
        self.text_pos = nn.Embedding(c.max_text_len, d)
        self.text_ln = LayerNorm(d)
        self.encoder_layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.encoder_final_ln = LayerNorm(d)
        # + start token (+ plan words)
        self.image_embed = nn.Embedding(c.vocab_out if c.plan_len else c.codebook_size + 1, d)
        self.image_pos = nn.Embedding(c.seq_len, d)
        if c.plan_len and (c.plan_len != plan.LENGTH or c.image_positions != "table"):
            raise ValueError("a plan needs plan_len plan.LENGTH and image_positions 'table'")
        if c.image_positions == "rows+cols":
            self.image_row = nn.Embedding(c.grid, d)
            self.image_col = nn.Embedding(c.grid, d)
        elif c.image_positions != "table":
            raise ValueError(f"unknown image_positions {c.image_positions!r}")
        self.image_ln = LayerNorm(d)
        self.decoder_layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.decoder_layers))
        self.decoder_final_ln = LayerNorm(d)
        self.lm_head = nn.Linear(d, c.vocab_out, bias=False)
        # With a plan, each position may draw only its slot's ids (plan.allowed): the others' logits are
        # set to plan.BLOCKED in the model, so training, the reference sampler and an exported graph all
        # see the same distribution. Not in the state dict: it follows from the config.
        allowed = plan.allowed(c.codebook_size, c.image_len, c.plan_order) if c.plan_len else torch.zeros(0, c.vocab_out, dtype=torch.bool)
        self.register_buffer("slot_allowed", allowed, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids/mask int64 [b, t] -> cross_k, cross_v float [layers, b, heads, t, head_dim]."""
        t = ids.shape[1]
        pos = torch.arange(t, device=ids.device)
        x = self.text_ln(self.text_embed(ids) + self.text_pos(pos)[None])
        allowed = (mask > 0)[:, None, None, :]
        for layer in self.encoder_layers:
            x = layer(x, allowed)
        x = self.encoder_final_ln(x)
        ks = [l.cross_attn.split(l.cross_attn.k(x)) for l in self.decoder_layers]
        vs = [l.cross_attn.split(l.cross_attn.v(x)) for l in self.decoder_layers]
        return torch.stack(ks), torch.stack(vs)

    def _embed_image(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        pos = self.image_pos(positions)
        if self.config.image_positions == "rows+cols":
            pos = pos + self._rows_cols(positions)
        return self.image_ln(self.image_embed(tokens) + pos)

    def _rows_cols(self, positions: torch.Tensor) -> torch.Tensor:
        g = self.config.grid
        return self.image_row(torch.div(positions, g, rounding_mode="floor")) + self.image_col(positions % g)

    @torch.no_grad()
    def fold_positions(self) -> None:
        """Rows and columns added into the position table: the same outputs from a plain "table" model."""
        c = self.config
        if c.image_positions == "table":
            return
        self.image_pos.weight += self._rows_cols(torch.arange(c.image_len))
        del self.image_row, self.image_col
        self.config = Config(**{**c.to_dict(), "image_positions": "table"})

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tokens int64 [b, n] (start token first) -> logits [b, n, codebook]."""
        cross_k, cross_v = self.encode(ids, mask)
        n = tokens.shape[1]
        pos = torch.arange(n, device=tokens.device)
        x = self._embed_image(tokens, pos[None])
        causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()[None, None]
        cross_allowed = (mask > 0)[:, None, None, :]
        for i, layer in enumerate(self.decoder_layers):
            k, v = layer.self_kv(x)
            x = layer(x, k, v, causal, cross_k[i], cross_v[i], cross_allowed)
        logits = self.lm_head(self.decoder_final_ln(x))
        return logits.masked_fill(~self.slot_allowed[:n], plan.BLOCKED) if self.config.plan_len else logits

    def decode_step(self, token, position, past_k, past_v, cross_k, cross_v, text_mask):
        """One step against a cache that the caller owns; every row has its own position,
        so rows of different generations at different points can share a batch.

        token, position int64 [b]; past_k/v float [layers, b, heads, length, head_dim] (or a list of
        each layer's [b, heads, length, head_dim], as the exported graph takes them; cross_k/v alike) holding the
        keys/values of positions < position -> logits [b, codebook] and this step's new_k/new_v
        [layers, b, heads, 1, head_dim], which the caller writes into its cache at `position`.
        The graph never copies the cache: attention reads the past and the new key side by side.
        `length` is any size from the largest row position up to image_len: a caller may pass only the
        part of the cache written so far, and early steps then read a fraction of it (the exported graph
        keeps the axis free, docs/model-format.md).
        """
        x = self._embed_image(token[:, None], position[:, None])
        slots = torch.arange(past_k[0].shape[-2], device=token.device)
        past_allowed = (slots[None, :] < position[:, None])[:, None, None, :]  # [b, 1, 1, n]
        cross_allowed = (text_mask > 0)[:, None, None, :]
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoder_layers):
            k_new, v_new = layer.self_kv(x)
            new_k.append(k_new)
            new_v.append(v_new)
            a = layer.self_attn
            q = a.split(a.q(layer.pre_self_ln(x)))
            scale = math.sqrt(q.shape[-1])
            past_scores = (q @ past_k[i].transpose(-1, -2) / scale).masked_fill(~past_allowed, -1e9)
            own_score = q @ k_new.transpose(-1, -2) / scale
            probs = torch.cat([past_scores, own_score], -1).softmax(-1)
            out = probs[..., :-1] @ past_v[i] + probs[..., -1:] @ v_new
            b, h, n, hd = out.shape
            x = x + layer.post_self_ln(a.o(out.transpose(1, 2).reshape(b, n, h * hd)))
            cr = layer.cross_attn
            h2 = layer.pre_cross_ln(x)
            x = x + layer.post_cross_ln(cr.attend(cr.split(cr.q(h2)), cross_k[i], cross_v[i], cross_allowed))
            x = x + layer.glu(x)
        logits = self.lm_head(self.decoder_final_ln(x))[:, 0]
        if self.config.plan_len:
            logits = logits.masked_fill(~self.slot_allowed[position], plan.BLOCKED)
        return logits, torch.stack(new_k), torch.stack(new_v)

    @staticmethod
    def write_cache(past_k, past_v, new_k, new_v, position) -> None:
        """Writes a step's new keys/values into the cache at each row's position (in place)."""
        for row, pos in enumerate(position.tolist()):
            past_k[:, row, :, pos] = new_k[:, row, :, 0]
            past_v[:, row, :, pos] = new_v[:, row, :, 0]

    def empty_cache(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        shape = (c.decoder_layers, batch, c.heads, c.seq_len, c.head_dim)
        return torch.zeros(shape), torch.zeros(shape)
