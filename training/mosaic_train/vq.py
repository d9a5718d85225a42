"""A small VQGAN-style autoencoder: 64x64 RGB -> 16x16 discrete codes -> 64x64 RGB.

`factor` is how many pixels one code covers (4: a 16x16 grid). 8 would make an image 64 tokens instead
of 256, four times the captioned images per CPU-minute for the transformer, but measured on 2026-11-30
(codebook 512, 1,231 steps) its round trip blurred shapes past recognition: the card's scorer found the
right shape in 24% of reconstructions of training images, against 72% at 4 with the same steps.

No adversarial loss: the images are flat colours with sharp edges, and plain reconstruction loss
with an EMA codebook already gives crisp large shapes (training-notes.md).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def norm(kind: str, ch: int) -> nn.Module:
    """GroupNorm normalises over the whole image, so an encoder with it writes the same flat field with
    different codes depending on what else the image holds ("none": codes depend on the neighbourhood only)."""
    if kind == "group":
        return nn.GroupNorm(8, ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ResBlock(nn.Module):
    def __init__(self, ch: int, kind: str = "group"):
        super().__init__()
        self.norm1 = norm(kind, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = norm(kind, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Encoder(nn.Module):
    def __init__(self, ch: int, embed_dim: int, factor: int = 4, kind: str = "group"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ch, 3, padding=1), nn.SiLU(),
                                   nn.Conv2d(ch, ch * 2, 4, stride=2, padding=1), ResBlock(ch * 2, kind)]
        for _ in range(stages(factor) - 1):
            layers += [nn.Conv2d(ch * 2, ch * 2, 4, stride=2, padding=1), ResBlock(ch * 2, kind)]
        layers += [norm(kind, ch * 2), nn.SiLU(), nn.Conv2d(ch * 2, embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, ch: int, embed_dim: int, factor: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(embed_dim, ch * 2, 3, padding=1), ResBlock(ch * 2), ResBlock(ch * 2)]
        for _ in range(stages(factor) - 1):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch * 2, ch * 2, 3, padding=1), ResBlock(ch * 2)]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch * 2, ch, 3, padding=1),
                   nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def stages(factor: int) -> int:
    """Halvings for a downsampling factor (4 -> 2, 8 -> 3)."""
    n = factor.bit_length() - 1
    if factor < 2 or 1 << n != factor:
        raise ValueError(f"factor must be a power of two >= 2, got {factor}")
    return n


class Codebook(nn.Module):
    """EMA vector quantiser with dead-code restarts (the fix for the collapse seen in the prototype)."""

    def __init__(self, size: int, dim: int, decay: float = 0.99):
        super().__init__()
        self.size, self.dim, self.decay = size, dim, decay
        self.register_buffer("embed", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def codes(self, flat: torch.Tensor) -> torch.Tensor:
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embed.t() + self.embed.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        if self.training and not bool(self.initialised):
            idx = torch.randperm(flat.shape[0])[: self.size]
            self.embed.copy_(flat[idx].detach())
            self.embed_sum.copy_(self.embed)
            self.initialised.fill_(True)
        codes = self.codes(flat)
        quant = self.embed[codes]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.size).type(flat.dtype)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n
                self.embed.copy_(self.embed_sum / size[:, None])
                dead = self.cluster_size < 0.2
                if dead.any():
                    k = int(dead.sum())
                    pick = flat[torch.randint(0, flat.shape[0], (k,))]
                    self.embed[dead] = pick
                    self.embed_sum[dead] = pick
                    self.cluster_size[dead] = 1.0
        commit = F.mse_loss(flat, quant.detach())
        quant = flat + (quant - flat).detach()
        return quant.reshape(b, h, w, c).permute(0, 3, 1, 2), codes.reshape(b, h, w), commit


class VQAutoencoder(nn.Module):
    def __init__(self, codebook_size: int = 256, embed_dim: int = 64, ch: int = 64, factor: int = 4,
                 encoder_norm: str = "group"):
        super().__init__()
        self.factor = factor
        self.encoder = Encoder(ch, embed_dim, factor, encoder_norm)
        self.codebook = Codebook(codebook_size, embed_dim)
        self.decoder = Decoder(ch, embed_dim, factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quant, codes, commit = self.codebook(self.encoder(x))
        return self.decoder(quant), codes, commit

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        b, c, h, w = z.shape
        return self.codebook.codes(z.permute(0, 2, 3, 1).reshape(-1, c)).reshape(b, h, w)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes int64 [b, grid, grid] -> pixels float [b, 64, 64, 3] in [0, 1] (the exported layout)."""
        z = self.codebook.embed[codes].permute(0, 3, 1, 2)
        x = self.decoder(z)
        return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)


def load_trained(work: str) -> tuple[VQAutoencoder, dict]:
    """The VQ autoencoder that train_vq wrote to <work>/vq.pt (in eval mode) and its checkpoint."""
    ckpt = torch.load(os.path.join(work, "vq.pt"))
    a = ckpt["args"]
    model = VQAutoencoder(a["codebook"], a["embed_dim"], a["channels"], a.get("factor", 4), a.get("encoder_norm", "group"))
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


@torch.no_grad()
def code_centres(model: VQAutoencoder) -> torch.Tensor:
    """float [codebook, factor, factor, 3] in [0, 1]: what each code looks like in the middle of a field of
    itself (the mosaic preview's patches, export.code_patches; the background test, alike_flat_codes)."""
    n = model.codebook.size
    grid = 64 // model.factor
    pix = model.decode_codes(torch.arange(n)[:, None, None].expand(n, grid, grid))  # [n, 64, 64, 3]
    mid = grid // 2 * model.factor
    return pix[:, mid : mid + model.factor, mid : mid + model.factor]


@torch.no_grad()
def alike_flat_codes(model: VQAutoencoder, colour_tolerance: float = 40, flatness: float = 25) -> torch.Tensor:
    """bool [codebook, codebook]: both codes decode to a flat patch (channel spread under `flatness`,
    of 255) of the same colour (within `colour_tolerance`). A flat background is written with several
    codes (corners, edges and the field near a shape differ), so code equality cannot tell background."""
    block = (code_centres(model) * 255).reshape(model.codebook.size, -1, 3)
    mean, flat = block.mean(1), block.std(1).amax(1) < flatness
    close = (mean[:, None, :] - mean[None, :, :]).abs().amax(-1) < colour_tolerance
    return close & flat[:, None] & flat[None, :]


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [b, 64, 64, 3] -> float [b, 3, 64, 64] in [-1, 1]."""
    return images_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1
