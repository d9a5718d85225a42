"""Train the VQ autoencoder on freshly drawn synthetic images, then encode a fixed training set of
code sequences once (so the transformer never runs the VQ encoder)."""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .runtime import setup_torch, log
from .vq import VQAutoencoder, load_trained, to_input


def batch_images(seed: int, start: int, n: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([data.sample(seed, i)[2] for i in range(start, start + n)]))


def train(args: argparse.Namespace) -> None:
    setup_torch(args.seed)
    start, history = 0, []
    path = os.path.join(args.out, "vq.pt")
    shape = {"codebook": args.codebook, "embed_dim": args.embed_dim, "channels": args.channels, "factor": args.factor,
             "encoder_norm": args.encoder_norm}
    if args.resume:
        # A second phase at a lower learning rate (and an L1 term for sharper edges) continues the
        # first, in the first's shape; the data stream continues where it stopped.
        ckpt = torch.load(path)
        shape = {**shape, "factor": 4, "encoder_norm": "group", **{k: ckpt["args"][k] for k in shape if k in ckpt["args"]}}
    model = VQAutoencoder(shape["codebook"], shape["embed_dim"], shape["channels"], shape["factor"], shape["encoder_norm"])
    if args.resume:
        model.load_state_dict(ckpt["model"])
        start, history = ckpt["steps"], ckpt["history"]
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    val = to_input(batch_images(args.seed + 1, 0, 64))
    t0 = time.time()
    step = start
    end = start + args.steps
    while step < end and (time.time() - t0) < args.minutes * 60:
        model.train()
        x = to_input(batch_images(args.seed, step * args.batch, args.batch))
        recon, _, commit = model(x)
        loss = F.mse_loss(recon, x) + args.l1 * F.l1_loss(recon, x) + 0.25 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0 or step == end:
            model.eval()
            with torch.no_grad():
                vrecon, vcodes, _ = model(val)
                vmse = F.mse_loss(vrecon, val).item()
            used = int((model.codebook.cluster_size > 0.2).sum())
            history.append({"step": step, "loss": loss.item(), "val_mse": vmse, "codes_alive": used})
            log(f"vq step {step} loss {loss.item():.4f} val_mse {vmse:.4f} codes_alive {used} "
                f"{(time.time() - t0) / (step - start):.2f}s/step")
    os.makedirs(args.out, exist_ok=True)
    seconds = time.time() - t0 + (ckpt["seconds"] if args.resume else 0)
    saved_args = ckpt["args"] if args.resume else vars(args)
    torch.save({"model": model.state_dict(), "args": saved_args, "history": history, "steps": step,
                "seconds": seconds}, path)


def encode(args: argparse.Namespace) -> None:
    """Writes codes.npy (int16 [n, grid²]), captions.json (--captions captions of each image) and
    scenes.json (each image's scene: train_transformer --place-only-first), names-places.json (for each caption, whether it says where every shape is: train_transformer
    --place-weight-rows naming), placed.json (the same, or with --scenes single-curriculum
    or curriculum whether it states every fact: the transformer's first phase
    trains on those, see train_transformer --placed-first) for the transformer."""
    setup_torch(args.seed)
    model, ckpt = load_trained(args.out)
    a = ckpt["args"]
    codes, captions, placed, naming, scenes = [], [], [], [], []
    t0 = time.time()
    for start in range(0, args.samples, 256):
        n = min(256, args.samples - start)
        # described_captions + render is sample_captions, keeping what each caption states.
        samples = [data.described_captions(args.seed + 2, i, args.captions, args.scenes, args.two_shapes) for i in range(start, start + n)]
        x = to_input(torch.from_numpy(np.stack([data.render(scene) for scene, _ in samples])))
        codes.append(model.encode(x).reshape(n, -1).numpy().astype(np.int16))
        captions += [[text for text, _ in described] for _, described in samples]
        first = data.states_all if args.scenes.endswith("curriculum") else data.places_all
        placed += [[first(stated) for _, stated in described] for _, described in samples]
        naming += [[data.places_all(stated) for _, stated in described] for _, described in samples]
        scenes += [data.scene_to_dict(scene) for scene, _ in samples]
        if start % 4096 == 0:
            log(f"encoded {start + n}/{args.samples} ({time.time() - t0:.0f}s)")
    all_codes = np.concatenate(codes)
    usage = len(np.unique(all_codes))
    np.save(os.path.join(args.out, "codes.npy"), all_codes)
    with open(os.path.join(args.out, "captions.json"), "w") as f:
        json.dump(captions, f)
    with open(os.path.join(args.out, "placed.json"), "w") as f:
        json.dump(placed, f)
    with open(os.path.join(args.out, "names-places.json"), "w") as f:
        json.dump(naming, f)
    with open(os.path.join(args.out, "scenes.json"), "w") as f:
        json.dump(scenes, f)
    with open(os.path.join(args.out, "codebook-usage.json"), "w") as f:
        json.dump({"codes_used": usage, "codebook_size": a["codebook"], "samples": args.samples,
                   "captions": args.captions, "scenes": args.scenes, "two_shapes": args.two_shapes}, f)
    log(f"codebook usage on the training set: {usage}/{a['codebook']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("command", choices=["train", "encode"])
    p.add_argument("--out", default="training/work")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--minutes", type=float, default=60, help="time cap")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--codebook", type=int, default=256)
    p.add_argument("--factor", type=int, default=4, help="pixels per code along each side (4: a 16x16 grid)")
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--encoder-norm", choices=["group", "none"], default="group",
                   help="none: codes depend on their neighbourhood only (training/eval/place-runs-2026-12-01)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--samples", type=int, default=40000)
    p.add_argument("--captions", type=int, default=4, help="captions stored per encoded image")
    p.add_argument("--scenes", choices=["all", "single", "single-full", "single-curriculum", "curriculum"], default="all",
                   help="single: one shape per scene; single-full: and every caption stating every fact "
                        "single-curriculum: single plus one full caption, and placed.json marks the full ones; "
                        "curriculum: the same with one or two shapes "
                        "(experiments bisecting why places are not read, training/eval/place-runs-2026-12-01)")
    p.add_argument("--two-shapes", type=float, default=data.TWO_SHAPES,
                   help="share of scenes with two shapes where a scene may have either (the recipe's: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue training vq.pt for --steps more")
    p.add_argument("--l1", type=float, default=0.0, help="weight of an L1 reconstruction term")
    args = p.parse_args()
    train(args) if args.command == "train" else encode(args)


if __name__ == "__main__":
    main()
