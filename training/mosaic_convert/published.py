"""DALL·E mini / mega as published, written out plainly in PyTorch: the reference the converter is
checked against, the source of random full-size weights, and the PyTorch loop Mosaic is benchmarked
against.

Parameter names and layouts are those of the published PyTorch files (kuprel/min-dalle's
`encoder.pt`, `decoder.pt`, `detoker.pt`, converted by min-dalle from dalle-mini's Flax checkpoints):
`nn.Linear` weights are [out, in], embeddings [rows, width], convolutions [out, in, kh, kw]. Sizes are
parameters so the tests can build the same tree at small dimensions.

Deliberately simple: attention scores over the whole static cache with a mask, the cross-attention
keys/values projected once per prompt, guidance and top-k as min-dalle samples.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_TOKENS = 256


@dataclass(frozen=True)
class BartDims:
    width: int
    layers: int
    heads: int
    glu: int
    text_vocab: int
    image_vocab: int  # decoder embedding / lm_head rows are image_vocab + 1
    text_tokens: int = 64
    image_tokens: int = IMAGE_TOKENS
    codebook: int = 16384  # the image codes actually sampled (min-dalle: logits[:, :2**14])


@dataclass(frozen=True)
class VQGANDims:
    codebook: int = 16384
    embed: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    res_blocks: int = 3  # per level in the decoder (taming's num_res_blocks + 1)
    groups: int = 32

    @property
    def factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


MINI = BartDims(width=1024, layers=12, heads=16, glu=2730, text_vocab=50264, image_vocab=16384)
MEGA = BartDims(width=2048, layers=24, heads=32, glu=4096, text_vocab=50272, image_vocab=16415)
VQGAN_F16_16384 = VQGANDims()
# Not a published size: the same shapes scaled down, for trying the benchmark scripts on a CPU.
SMALL = BartDims(width=256, layers=4, heads=4, glu=683, text_vocab=50264, image_vocab=16384)
SIZES = {"mini": MINI, "mega": MEGA, "small": SMALL}


# dalle-mini (force_ln_scale=False, as in the mega config) gives these layer norms a bias but no scale, so
# the published files may lack their `.weight`; min-dalle loads with strict=False and keeps the ones.
UNSCALED_NORMS = ("pre_self_attn_layer_norm", "pre_encoder_attn_layer_norm", "glu.ln0", "glu.ln1", "final_ln")


_UNSCALED = re.compile(r"(final_ln|layers\.\d+\.(" + "|".join(re.escape(n) for n in UNSCALED_NORMS) + r"))\.weight")


def is_unscaled_norm_weight(key: str) -> bool:
    return _UNSCALED.fullmatch(key) is not None


def with_unit_scales(state: dict) -> dict:
    """A published state with the left-out scales put back as ones (a layer norm with a bias and no weight)."""
    out = dict(state)
    for key, bias in state.items():
        weight = key[: -len("bias")] + "weight"
        if key.endswith(".bias") and weight not in state and is_unscaled_norm_weight(weight):
            out[weight] = torch.ones_like(bias)
    return out


def without_unscaled_norms(state: dict) -> dict:
    """The published layout of a dalle-mini checkpoint trained with force_ln_scale=False."""
    return {k: v for k, v in state.items() if not is_unscaled_norm_weight(k)}


def layer_norm(width: int) -> nn.LayerNorm:
    return nn.LayerNorm(width, eps=1e-5)


class GLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.ln0, self.ln1 = layer_norm(width), layer_norm(hidden)
        self.fc0 = nn.Linear(width, hidden, bias=False)
        self.fc1 = nn.Linear(width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, width, bias=False)

    def forward(self, x):
        x = self.ln0(x)
        return self.fc2(self.ln1(F.gelu(self.fc0(x)) * self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.q_proj = nn.Linear(width, width, bias=False)
        self.out_proj = nn.Linear(width, width, bias=False)

    def heads_of(self, x):
        """[b, n, width] -> [b, heads, n, head_dim]"""
        return x.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def attend(self, q, k, v, allowed):
        """q [b,h,n,d], k/v [b,h,m,d] already split into heads; allowed bool broadcastable to [b,h,n,m]."""
        scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-1, -2)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)  # fp16-safe, unlike -1e12
        out = scores.softmax(-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1))


class EncoderLayer(nn.Module):
    def __init__(self, d: BartDims):
        super().__init__()
        self.pre_self_attn_layer_norm = layer_norm(d.width)
        self.self_attn = Attention(d.width, d.heads)
        self.self_attn_layer_norm = layer_norm(d.width)
        self.glu = GLU(d.width, d.glu)

    def forward(self, x, allowed):
        a = self.self_attn
        h = self.pre_self_attn_layer_norm(x)
        h = a.attend(a.heads_of(a.q_proj(h)), a.heads_of(a.k_proj(h)), a.heads_of(a.v_proj(h)), allowed)
        x = x + self.self_attn_layer_norm(h)
        return x + self.glu(x)


class Encoder(nn.Module):
    def __init__(self, d: BartDims):
        super().__init__()
        self.embed_tokens = nn.Embedding(d.text_vocab, d.width)
        self.embed_positions = nn.Embedding(d.text_tokens, d.width)
        self.layers = nn.ModuleList(EncoderLayer(d) for _ in range(d.layers))
        self.layernorm_embedding = layer_norm(d.width)
        self.final_ln = layer_norm(d.width)

    def forward(self, tokens):
        """tokens [b, 64] padded with 1 (BART's <pad>), as min-dalle feeds them."""
        allowed = (tokens != 1)[:, None, None, :]
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.layernorm_embedding(self.embed_tokens(tokens) + self.embed_positions(pos)[None])
        for layer in self.layers:
            x = layer(x, allowed)
        return self.final_ln(x)


class DecoderLayer(nn.Module):
    def __init__(self, d: BartDims):
        super().__init__()
        self.pre_self_attn_layer_norm = layer_norm(d.width)
        self.self_attn = Attention(d.width, d.heads)
        self.self_attn_layer_norm = layer_norm(d.width)
        self.pre_encoder_attn_layer_norm = layer_norm(d.width)
        self.encoder_attn = Attention(d.width, d.heads)
        self.encoder_attn_layer_norm = layer_norm(d.width)
        self.glu = GLU(d.width, d.glu)


class Decoder(nn.Module):
    def __init__(self, d: BartDims):
        super().__init__()
        self.dims = d
        self.embed_tokens = nn.Embedding(d.image_vocab + 1, d.width)
        self.embed_positions = nn.Embedding(d.image_tokens, d.width)
        self.layers = nn.ModuleList(DecoderLayer(d) for _ in range(d.layers))
        self.layernorm_embedding = layer_norm(d.width)
        self.final_ln = layer_norm(d.width)
        self.lm_head = nn.Linear(d.width, d.image_vocab + 1, bias=False)

    def cross_kv(self, encoded):
        """Cross-attention keys/values of every layer, once per prompt: [layers] of ([b,h,t,d], [b,h,t,d])."""
        return [(l.encoder_attn.heads_of(l.encoder_attn.k_proj(encoded)),
                 l.encoder_attn.heads_of(l.encoder_attn.v_proj(encoded))) for l in self.layers]

    def empty_cache(self, batch: int, dtype=torch.float32, device="cpu"):
        """min-dalle's static cache: every layer's keys and values for all 256 positions."""
        d = self.dims
        shape = (d.layers, 2, batch, d.heads, d.image_tokens, d.width // d.heads)
        return torch.zeros(shape, dtype=dtype, device=device)

    def step(self, token, index: int, cache, cross, text_allowed):
        """token [b]; writes position `index` into the cache; returns logits [b, image_vocab + 1]."""
        d = self.dims
        pos = torch.full_like(token, index)
        x = self.layernorm_embedding(self.embed_tokens(token) + self.embed_positions(pos))[:, None]
        allowed = (torch.arange(d.image_tokens, device=token.device) <= index)[None, None, None, :]
        for i, layer in enumerate(self.layers):
            a = layer.self_attn
            h = layer.pre_self_attn_layer_norm(x)
            cache[i, 0, :, :, index] = a.heads_of(a.k_proj(h))[:, :, 0]
            cache[i, 1, :, :, index] = a.heads_of(a.v_proj(h))[:, :, 0]
            h = a.attend(a.heads_of(a.q_proj(h)), cache[i, 0], cache[i, 1], allowed)
            x = x + layer.self_attn_layer_norm(h)
            c = layer.encoder_attn
            h = layer.pre_encoder_attn_layer_norm(x)
            h = c.attend(c.heads_of(c.q_proj(h)), cross[i][0], cross[i][1], text_allowed)
            x = x + layer.encoder_attn_layer_norm(h)
            x = x + layer.glu(x)
        return self.lm_head(self.final_ln(x))[:, 0]


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, -1).transpose(1, 2)
        k = self.k(h).reshape(b, c, -1)
        w = (q @ k / math.sqrt(c)).softmax(-1)  # [b, pixels(q), pixels(k)]
        v = self.v(h).reshape(b, c, -1)
        out = (v @ w.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Mid(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(ch, ch, groups)
        self.attn_1 = AttnBlock(ch, groups)
        self.block_2 = ResnetBlock(ch, ch, groups)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)


class UpLevel(nn.Module):
    def __init__(self, cin: int, cout: int, v: VQGANDims, attention: bool, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout, v.groups) for j in range(v.res_blocks))
        if attention:
            self.attn = nn.ModuleList(AttnBlock(cout, v.groups) for _ in range(v.res_blocks))
        if upsample:
            self.upsample = Upsample(cout)


class VQGANDecoder(nn.Module):
    def __init__(self, v: VQGANDims):
        super().__init__()
        chans = [v.ch * m for m in v.ch_mult]
        top = chans[-1]
        self.conv_in = nn.Conv2d(v.embed, top, 3, padding=1)
        self.mid = Mid(top, v.groups)
        levels = []
        for i, cout in enumerate(chans):
            cin = chans[i + 1] if i + 1 < len(chans) else top
            # taming: attention only at the coarsest level (16x16 for f16), upsampling above level 0
            levels.append(UpLevel(cin, cout, v, attention=i == len(chans) - 1, upsample=i > 0))
        self.up = nn.ModuleList(levels)
        self.norm_out = nn.GroupNorm(v.groups, chans[0], eps=1e-6)
        self.conv_out = nn.Conv2d(chans[0], 3, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for level in reversed(self.up):
            for j, block in enumerate(level.block):
                h = block(h)
                if hasattr(level, "attn"):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class Detokenizer(nn.Module):
    """min-dalle's `detoker.pt`: codebook, post-quantisation conv, taming decoder."""

    def __init__(self, v: VQGANDims = VQGAN_F16_16384):
        super().__init__()
        self.dims = v
        self.embedding = nn.Embedding(v.codebook, v.embed)
        self.post_quant_conv = nn.Conv2d(v.embed, v.embed, 1)
        self.decoder = VQGANDecoder(v)

    def forward(self, codes):
        """codes [b, h, w] -> RGB [b, h*f, w*f, 3] in [0, 1] (dalle-mini's VQGAN decodes to [0, 1])."""
        z = self.embedding(codes).permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(z)).permute(0, 2, 3, 1).clamp(0, 1)


@dataclass
class Published:
    """The three published parts together."""
    dims: BartDims
    vq_dims: VQGANDims
    encoder_layers: int | None = None  # when the encoder's depth differs from the decoder's
    encoder: Encoder = field(init=False)
    decoder: Decoder = field(init=False)
    detokenizer: Detokenizer = field(init=False)

    def __post_init__(self):
        self.encoder = Encoder(replace(self.dims, layers=self.encoder_layers or self.dims.layers)).eval()
        self.decoder = Decoder(self.dims).eval()
        self.detokenizer = Detokenizer(self.vq_dims).eval()

    def load(self, encoder: dict, decoder: dict, detoker: dict) -> "Published":
        self.encoder.load_state_dict(with_unit_scales(encoder))
        self.decoder.load_state_dict(with_unit_scales(decoder))
        self.detokenizer.load_state_dict(detoker)
        return self

    def to(self, device=None, dtype=None) -> "Published":
        for m in (self.encoder, self.decoder):
            m.to(device=device, dtype=dtype)
        self.detokenizer.to(device=device)  # the VQGAN stays fp32: fp16 breaks it (min-dalle)
        return self


def text_rows(tokens: list[int], length: int) -> torch.Tensor:
    """min-dalle's two text rows: [<s>, </s>] (the unconditional prompt) and the prompt, padded with 1.

    A prompt longer than `length` keeps its closing </s>: dalle-mini's processor calls the tokenizer with
    truncation=True, max_length=64, which cuts the text and then adds <s> … </s>, so the model always
    sees </s> last (the engine, src/engine/text.ts, does the same)."""
    if len(tokens) > length:
        tokens = tokens[: length - 1] + tokens[-1:]
    rows = torch.ones((2, length), dtype=torch.long)
    rows[0, :2] = torch.tensor([tokens[0], tokens[-1]])
    rows[1, : len(tokens)] = torch.tensor(tokens)
    return rows


@torch.no_grad()
def generate(p: Published, tokens: list[int], images: int, guidance: float, top_k: int, temperature: float,
             preview_every: int = 0, generator: torch.Generator | None = None, on_preview=None):
    """The reference loop: returns codes [images, 256]. With `preview_every`, decodes the whole grid
    through the VQGAN every that many tokens (positions not generated yet hold code 0)."""
    d = p.dims
    device = next(p.decoder.parameters()).device
    dtype = next(p.decoder.parameters()).dtype
    rows = text_rows(tokens, d.text_tokens).to(device)
    encoded = p.encoder(rows)
    # rows [uncond × images, cond × images], as min-dalle orders them
    pick = torch.tensor([0] * images + [1] * images, device=device)
    cross = p.decoder.cross_kv(encoded[pick])
    text_allowed = (rows[pick] != 1)[:, None, None, :]
    cache = p.decoder.empty_cache(2 * images, dtype, device)
    codes = torch.zeros((images, d.image_tokens), dtype=torch.long, device=device)
    # dalle-mini's decoder_start_token_id (16384 for mini and mega; min-dalle feeds 16383 instead)
    token = torch.full((2 * images,), d.codebook, dtype=torch.long, device=device)
    side = int(math.isqrt(d.image_tokens))
    for i in range(d.image_tokens):
        logits = p.decoder.step(token, i, cache, cross, text_allowed)[:, : d.codebook].float()
        logits = logits[:images] * (1 - guidance) + logits[images:] * guidance
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        weights = ((logits - logits.max(-1, keepdim=True).values) / temperature).exp() * (logits >= kth)
        chosen = torch.multinomial(weights, 1, generator=generator)[:, 0] if top_k > 1 else logits.argmax(-1)
        codes[:, i] = chosen
        token = chosen.repeat(2)
        if preview_every and (i + 1) % preview_every == 0 and on_preview is not None:
            on_preview(p.detokenizer(codes.reshape(images, side, side)))
    return codes
