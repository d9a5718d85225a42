"""Train the BART-style transformer on precomputed code sequences (see train_vq.py encode).

Time-budgeted: the learning-rate schedule runs over --minutes, and a checkpoint is written every few
minutes, so a run can be stopped early and still exported.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import data, place_probe, plan
from .runtime import log, setup_torch
from .sampling import Settings
from .text import WordTokenizer
from .transformer import Config, DalleBart
from .vq import alike_flat_codes, load_trained


def tokenize_batch(tok: WordTokenizer, captions: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tok.encode(c, max_len) for c in captions]
    ids = torch.full((len(rows), max_len), tok.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), max_len), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def cpu_has_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AMX or AVX-512 BF16); elsewhere autocast to bf16
    is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def first_place_weights(target: torch.Tensor, alike: torch.Tensor, weight: float,
                        naming: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token loss weights: `weight` on every token up to and including the first one that is not
    background (the first token's flat colour, by alike_flat_codes), 1 on the rest.

    Why: where a shape goes is decided at the first token that shows it, one of 256 (after it, the
    tokens around show where it is), so an unweighted loss pays about 2.2 nats an image (log 9) for
    ignoring the place a caption names, under 5% of it. (Measured: with it, run C of
    training/eval/place-runs-2026-12-01 still read no places at 1,500 steps; kept as sound, not as shown
    to help.) The weight of a token depends only on the tokens before it, never on the
    token itself, so each token's best prediction stays the true conditional distribution: the weight
    moves where the model spends its effort, not what it should predict (weighting the tokens where
    the code changes would reward predicting a change)."""
    background = alike[target[:, :1], target]
    still_open = torch.ones_like(background)
    still_open[:, 1:] = torch.cumprod(background[:, :-1].int(), 1).bool()
    if naming is not None:
        # naming[b]: whether row b's caption says where every shape is. Where it leaves a place open,
        # where the shape starts cannot be predicted from the caption (about log 9 nats an image), so
        # weighting those tokens adds noise to exactly the logits that reading a place must set. This
        # still depends only on the caption, never on the token: each best prediction is unchanged.
        still_open &= naming[:, None]
    return 1 + (weight - 1) * still_open.float()


def optimise(model, opt, loss: torch.Tensor, lr: float) -> None:
    """One optimiser step at learning rate lr, gradients clipped to norm 1 (the plan phase and the main loop)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def plan_phase(model, run, batch, args, plan_len: int, train_n: int, n_val: int, rng: random.Random, opt) -> None:
    """--plan-first steps on the plan alone: the decoder reads and writes the nine plan tokens, no codes.

    Why: beside the image codes the plan's size slot was never learnt (run Q of
    training/eval/place-runs-2026-12-01: size right in 104 of 200 greedy plans, 0.70 nats against log 2
    = 0.69, with or without a size word), where the same transformer on the plan alone reads size
    words within 500 steps. A step on 9 tokens instead of 265 costs a few percent of a full one, so
    the text-to-plan mapping is learnt first for a minute or two; the full steps that follow keep it
    (the plan's loss stays in them at --plan-weight). The main schedule starts afresh after it."""
    log(f"plan phase: {args.plan_first} steps on the plan tokens alone")
    t = time.time()
    for s in range(args.plan_first):
        model.train()
        ids, mask, inp, target, _ = batch([n_val + rng.randrange(train_n) for _ in range(args.batch)], True)
        logits = run(ids, mask, inp[:, :plan_len])
        per_slot = F.cross_entropy(logits.transpose(1, 2), target[:, :plan_len], reduction="none").mean(0)
        loss = per_slot.mean()
        optimise(model, opt, loss, args.lr * min(1.0, (s + 1) / args.warmup))
        if (s + 1) % 100 == 0:
            log(f"plan step {s + 1} loss {loss.item():.3f} slots " + " ".join(f"{v:.2f}" for v in per_slot.tolist())
                + f" {(time.time() - t) / (s + 1):.3f}s/step")


def checkpoint_path(out: str) -> str:
    return os.path.join(out, "transformer.pt")


def train(args: argparse.Namespace) -> None:
    setup_torch(args.seed)
    codes = torch.from_numpy(np.load(os.path.join(args.out, "codes.npy")).astype(np.int64))
    with open(os.path.join(args.out, "captions.json")) as f:
        captions: list[list[str]] = json.load(f)
    # Each caption with whether it says where every shape is (names-places.json, written by encode;
    # needed by --place-weight-rows naming; older work folders lack it).
    naming_path = os.path.join(args.out, "names-places.json")
    if args.place_weight_rows == "naming" and not os.path.exists(naming_path):
        raise SystemExit(f"--place-weight-rows naming needs {naming_path}: run train_vq encode again")
    names = json.load(open(naming_path)) if os.path.exists(naming_path) else [[True] * len(cs) for cs in captions]
    described = [list(zip(cs, ns)) for cs, ns in zip(captions, names)]
    with open(os.path.join(args.out, "placed.json")) as f:
        placed_captions = [[d for d, p in zip(ds, ps) if p] or ds for ds, ps in zip(described, json.load(f))]
    scenes_path = os.path.join(args.out, "scenes.json")
    if (args.place_only_first or args.plan) and not os.path.exists(scenes_path):
        raise SystemExit(f"--place-only-first and --plan need {scenes_path}: run train_vq encode again")
    scenes = ([data.scene_from_dict(d) for d in json.load(open(scenes_path))]
              if args.place_only_first or args.plan else [])
    codebook = int(json.load(open(os.path.join(args.out, "codebook-usage.json")))["codebook_size"])
    if args.plan:
        # Each image's plan before its codes: the decoder learns to write the plan, then the image.
        codes = torch.cat([torch.tensor([plan.ids(sc, codebook, args.plan_order) for sc in scenes]), codes], 1)
    tok = WordTokenizer(data.vocabulary())
    plan_len = plan.LENGTH if args.plan else 0
    grid = int(round((codes.shape[1] - plan_len) ** 0.5))
    cfg = Config(text_vocab=len(tok.vocab), codebook_size=codebook, grid=grid, d_model=args.d_model, heads=args.heads,
                 encoder_layers=args.encoder_layers, decoder_layers=args.decoder_layers, glu_dim=args.glu_dim,
                 image_positions=args.image_positions, plan_len=plan_len, plan_order=args.plan_order)
    model = DalleBart(cfg)
    start_step, history, earlier_seconds = 0, [], 0.0
    if args.resume or args.resume_from:
        # A second phase: the trained weights, a fresh optimiser and a new (lower) schedule over
        # --steps more steps or --minutes more minutes; --resume-from takes the weights from another
        # work folder with the same VQ, so a phase can train on other captions or scenes.
        ckpt = torch.load(checkpoint_path(args.resume_from or args.out))
        if ckpt["config"].get("plan_order", "background-first") != cfg.plan_order:
            raise SystemExit(f"the checkpoint's plan order is {ckpt['config'].get('plan_order', 'background-first')}: "
                             f"pass --plan-order with it")
        model.load_state_dict(ckpt["model"])
        start_step, history, earlier_seconds = ckpt["steps"], ckpt["history"], ckpt["seconds"]
        log(f"resuming at step {start_step} ({earlier_seconds / 60:.1f} min so far)")
    log(f"transformer parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")
    # Mixed precision: weights, optimiser state, layer norms, the residual stream and the loss stay
    # fp32; matrix products run in bf16 where the CPU has it (the card says which precision a model had).
    bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_has_bf16())
    log(f"precision: {'bf16 matrix products (autocast)' if bf16 else 'fp32'}")
    vq, _ = load_trained(args.out)
    alike = alike_flat_codes(vq)
    probes = {name: place_probe.build(vq, tok, cfg.max_text_len, args.probe_prompts, held_out,
                                      plan_codebook=codebook if args.plan else None,
                                      plan_order=args.plan_order)
              for name, held_out in (("held_out", True), ("training", False))}

    def read_places() -> dict[str, float]:
        """held_out / training: the caption alone; *_guided: as sampling at the default guidance draws."""
        model.eval()
        read = {}
        for k, p in probes.items():
            read[k], read[f"{k}_guided"] = place_probe.accuracies(run, p, cfg.start_token, (1.0, Settings().guidance_scale))
        return read

    def run(ids: torch.Tensor, mask: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(ids, mask, inp).float()

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    n_val = 512
    val_idx = list(range(n_val))
    train_n = codes.shape[0] - n_val
    rng = random.Random(args.seed)
    budget = args.minutes * 60
    t0, last_save, step = time.time(), time.time(), 0

    def batch(indices: list[int], drop_text: bool, placed: bool = False, place_only: bool = False):
        """ids, mask, decoder input, target, and for each row whether its caption names every shape's place.
        Training draws one of each image's captions (in the place-only phase a caption naming only where
        the shapes are, data.place_caption; in the next phase one that says where every shape is, where
        the image has one); validation always reads the first."""
        pool = placed_captions if placed else described

        def draw(i: int) -> tuple[str, bool]:
            if rng.random() < args.empty_caption_rate:
                return "", False
            return (data.place_caption(scenes[i], rng), True) if place_only else rng.choice(pool[i])

        chosen = [draw(i) if drop_text else described[i][0] for i in indices]
        ids, mask = tokenize_batch(tok, [c for c, _ in chosen], cfg.max_text_len)
        target = codes[indices]
        start = torch.full((len(indices), 1), cfg.start_token, dtype=torch.long)
        return ids, mask, torch.cat([start, target[:, :-1]], 1), target, torch.tensor([n for _, n in chosen])

    def save(final: bool, place_read: dict | None = None) -> None:
        torch.save({"place_read": place_read, "model": model.state_dict(), "config": cfg.to_dict(), "steps": start_step + step, "history": history,
                    "seconds": earlier_seconds + time.time() - t0, "args": vars(args), "final": final,
                    "precision": "bf16" if bf16 else "fp32"}, checkpoint_path(args.out))

    if args.plan_first and plan_len and not (args.resume or args.resume_from):
        plan_phase(model, run, batch, args, plan_len, train_n, n_val, rng, opt)

    while step < args.steps:
        elapsed = time.time() - t0
        if elapsed > budget:
            break
        # The schedule follows steps (reproducible); the time budget only cuts a slow run short,
        # still annealed to the end.
        frac = min(1.0, max(step / args.steps, elapsed / budget))
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        model.train()
        # Places first: 1.0.0, whose captions always named the place, read places after 1,399 steps;
        # about half of these captions name it. (Measured: alone it did not bring place reading by 2,000
        # steps, run B of training/eval/place-runs-2026-12-01; kept as sound, not as shown to help.)
        # Place words alone first (--place-only-first): a caption that names a (colour, shape,
        # background) lets the model learn where that combination is instead of what the place word says,
        # and a held-out combination is never at its held-out place, so that shortcut places it anywhere
        # else (run M of training/eval/place-runs-2026-12-01: held-out prompts 6 nats worse at the asked place).
        place_only = frac < args.place_only_first
        ids, mask, inp, target, naming = batch([n_val + rng.randrange(train_n) for _ in range(args.batch)], True,
                                               placed=frac < args.place_only_first + args.placed_first,
                                               place_only=place_only)
        logits = run(ids, mask, inp)
        w = first_place_weights(target[:, plan_len:], alike, args.first_place_weight,
                                naming if args.place_weight_rows == "naming" else None)
        if plan_len:
            w = torch.cat([torch.full((w.shape[0], plan_len), args.plan_weight), w], 1)
        loss = (F.cross_entropy(logits.transpose(1, 2), target, reduction="none") * w).sum() / w.sum()
        optimise(model, opt, loss, lr)
        step += 1
        if step % 50 == 0:
            model.eval()
            with torch.no_grad():
                vl = []
                for s in range(0, n_val, 128):
                    ids, mask, inp, target, _ = batch(val_idx[s : s + 128], False)
                    vl.append(F.cross_entropy(run(ids, mask, inp).reshape(-1, cfg.vocab_out), target.reshape(-1)).item())
            entry = {"step": start_step + step, "loss": loss.item(), "val_loss": float(np.mean(vl)), "lr": lr,
                     "seconds": earlier_seconds + time.time() - t0}
            places = ""
            if step % args.probe_every == 0:
                entry["place_read"] = read_places()
                places = " place read: " + ", ".join(f"{k} {v:.0%}" for k, v in entry["place_read"].items())
            history.append(entry)
            # The training loss is weighted (first_place_weights); the validation loss is not.
            log(f"step {start_step + step} loss {loss.item():.3f} val {np.mean(vl):.3f} lr {lr:.2e} "
                f"{(time.time() - t0) / step:.2f}s/step{places}")
        if time.time() - last_save > 300:
            save(False)
            last_save = time.time()
    places = read_places()
    log("place read (asked place scored best, chance 11%): " + ", ".join(f"{k} {v:.0%}" for k, v in places.items()))
    save(True, places)
    log(f"done: {start_step + step} steps in {(earlier_seconds + time.time() - t0) / 60:.1f} min")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="training/work")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--minutes", type=float, default=150, help="time cap; the schedule is set by --steps")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--empty-caption-rate", type=float, default=0.1)
    p.add_argument("--first-place-weight", type=float, default=8.0,
                   help="loss weight of the tokens up to where the first shape starts (see first_place_weights)")
    p.add_argument("--place-weight-rows", choices=["all", "naming"], default="all",
                   help="naming: --first-place-weight only on rows whose caption says where every shape is "
                        "(the rest weigh 1; needs names-places.json from train_vq encode)")
    p.add_argument("--place-only-first", type=float, default=0.0,
                   help="share of the schedule that trains on captions naming only where the shapes are (data.place_caption; "
                        "needs scenes.json from train_vq encode); --placed-first's phase follows it. Runs N and O of "
                        "training/eval/place-runs-2026-12-01: places read, but sampled models then miss background, colour and shape")
    p.add_argument("--placed-first", type=float, default=0.35,
                   help="share of the schedule that trains on captions saying where every shape is, where an image has one")
    p.add_argument("--plan", action="store_true",
                   help="the decoder writes a scene plan (plan.py) before the image codes; needs scenes.json from train_vq encode")
    p.add_argument("--plan-order", choices=list(plan.ORDERS), default="background-first",
                   help="where the plan puts the background (plan.ORDERS; background-last lets the sampler keep it off the shapes' colours)")
    p.add_argument("--plan-weight", type=float, default=8.0, help="loss weight of the plan tokens (with --plan)")
    p.add_argument("--plan-first", type=int, default=0,
                   help="steps on the plan tokens alone before the main schedule (with --plan; see plan_phase)")
    p.add_argument("--probe-every", type=int, default=500, help="steps between place probes (a multiple of 50)")
    p.add_argument("--probe-prompts", type=int, default=24, help="prompts per place probe set (each scored at 9 places)")
    p.add_argument("--resume", action="store_true", help="continue transformer.pt with a new schedule")
    p.add_argument("--resume-from", help="continue the transformer.pt of this work folder (same VQ) on --out's data")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 matrix products where the CPU multiplies bf16 natively, else fp32")
    p.add_argument("--image-positions", choices=["table", "rows+cols"], default="table",
                   help="rows+cols: learn a vector per grid row and column beside the position table (folded at export)")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--encoder-layers", type=int, default=3)
    p.add_argument("--decoder-layers", type=int, default=3)
    p.add_argument("--glu-dim", type=int, default=640)
    train(p.parse_args())


if __name__ == "__main__":
    main()
