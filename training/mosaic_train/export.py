"""Export the trained VQ autoencoder and transformer to a Mosaic model folder (docs/model-format.md),
with reference fixtures for the TypeScript engine's tests."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import torch

from . import data, plan
from .generate import generate_tokens
from .graphs import export_graphs
from .runtime import log, setup_torch
from .sampling import Settings
from .text import WordTokenizer, normalise
from .train_transformer import tokenize_batch
from .transformer import Config, DalleBart
from .vq import VQAutoencoder, code_centres, load_trained

# The model's default sampling when no selection was run (select.py chooses it on held-out prompts).
FALLBACK_SETTINGS = Settings(guidance_scale=1.0, top_k=8, top_p=1.0, temperature=0.7)


def default_settings(work: str) -> Settings:
    path = os.path.join(work, "selection.json")
    if not os.path.exists(path):
        return FALLBACK_SETTINGS
    with open(path) as f:
        return Settings(**json.load(f)["best"])
# The engine's parity fixtures: greedy with guidance, so both the guided path and argmax are pinned.
GREEDY_SETTINGS = Settings(guidance_scale=3.0, top_k=1, top_p=1.0, temperature=1.0)


def load(work: str) -> tuple[VQAutoencoder, DalleBart, dict, dict]:
    """The trained models (weights rounded to fp16, as the files hold them) and their checkpoints."""
    vq, vq_ckpt = load_trained(work)
    tr_ckpt = torch.load(os.path.join(work, "transformer.pt"))
    model = DalleBart(Config(**tr_ckpt["config"]))
    model.load_state_dict(tr_ckpt["model"])
    model.fold_positions()
    for m in (vq, model):
        m.eval()
        round_to_fp16(m)
    return vq, model, vq_ckpt, tr_ckpt


def load_for_generation(work: str) -> tuple[VQAutoencoder, DalleBart, dict, dict, WordTokenizer]:
    """What every post-training step (select, export, card) starts from."""
    setup_torch(0)
    return (*load(work), WordTokenizer(data.vocabulary()))


@torch.no_grad()
def round_to_fp16(module: torch.nn.Module) -> None:
    """The files store weights as fp16; rounding here makes PyTorch compute with exactly the weights
    the ONNX graphs will hold, so reference outputs compare like with like."""
    for t in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
        t.copy_(t.half().float())


class VQGraph(torch.nn.Module):
    def __init__(self, vq: VQAutoencoder):
        super().__init__()
        self.vq = vq

    def forward(self, codes):
        return self.vq.decode_codes(codes)


@torch.no_grad()
def code_patches(vq: VQAutoencoder, patch: int) -> np.ndarray:
    """uint8 [codebook, patch, patch, 3]: what each code looks like in the middle of a field of
    itself. Tiling these gives the zero-cost mosaic preview."""
    block = code_centres(vq)
    if vq.factor != patch:
        block = torch.nn.functional.interpolate(block.permute(0, 3, 1, 2), size=(patch, patch), mode="area").permute(0, 2, 3, 1)
    return (block.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def manifest(model: DalleBart, vq: VQAutoencoder, graphs: dict, tok: WordTokenizer, patch: int, card: dict,
             defaults: Settings) -> dict:
    c = model.config
    return {
        "format": "mosaic-model",
        "formatVersion": 1,
        "name": "mosaic-shapes",
        "version": "2.0.0",
        "description": "A small DALL·E-mini-style model trained by the Mosaic project on synthetic captioned "
                       "shapes (circles, squares, triangles, stars, hearts; 10 colours; 9 positions; 2 sizes; "
                       "one or two shapes), captioned as people phrase prompts.",
        "architecture": {
            "family": "dalle-bart",
            "encoderLayers": c.encoder_layers,
            "decoderLayers": c.decoder_layers,
            "heads": c.heads,
            "modelWidth": c.d_model,
            "headDim": c.head_dim,
            "feedForwardWidth": c.glu_dim,
            "textVocabSize": c.text_vocab,
            "maxTextLength": c.max_text_len,
            "grid": {"height": c.grid, "width": c.grid},
            "codebookSize": c.codebook_size,
            "startTokenId": c.start_token,
            "imageSize": {"height": data.IMAGE_SIZE, "width": data.IMAGE_SIZE},
            # The scene plan the decoder writes before the codes (plan.py; docs/model-format.md).
            **({"plan": {"length": c.plan_len, "outputVocabSize": c.vocab_out, "firstTokenId": plan.first_id(c.codebook_size),
                         "words": plan.WORDS, **plan_exclude(c)}} if c.plan_len else {}),
        },
        "text": {
            "tokenizer": "tokenizer.json",
            "normalization": "mosaic-basic",
            "padTokenId": tok.pad_id,
        },
        "sampling": {
            "guidanceScale": defaults.guidance_scale,
            "topK": defaults.top_k,
            "topP": defaults.top_p,
            "temperature": defaults.temperature,
        },
        "previews": {"fill": "most-frequent", "codePatches": {"file": "code-patches.bin", "patchSize": patch}},
        "graphs": graphs,
        "training": card,
    }


def plan_exclude(c: Config) -> dict:
    """model.json's `architecture.plan.exclude` for the model's plan order (none for background-first)."""
    ex = plan.exclusions(c.plan_order)
    return {"exclude": [{"position": p, "tokensAt": qs} for p, qs in ex.items()]} if ex else {}


@torch.no_grad()
def fixtures(vq: VQAutoencoder, model: DalleBart, tok: WordTokenizer) -> dict:
    """Small reference outputs the TypeScript tests compare against (no PyTorch needed there)."""
    c = model.config
    prompts = ["a big red circle in the centre, blue background", "yellow background with a small black square at the top left"]
    ids, mask = tokenize_batch(tok, prompts, c.max_text_len)
    cross_k, cross_v = model.encode(ids, mask)
    past_k, past_v = model.empty_cache(2)
    token = torch.full((2,), c.start_token, dtype=torch.long)
    step_logits = []
    for pos, nxt in enumerate([[5, 9], [17, 3], [200, 255]]):
        position = torch.full((2,), pos)
        logits, new_k, new_v = model.decode_step(token, position, past_k, past_v, cross_k, cross_v, mask)
        model.write_cache(past_k, past_v, new_k, new_v, position)
        step_logits.append(logits.numpy().round(6).tolist())
        token = torch.tensor(nxt)
    # The same three tokens teacher-forced through the full no-cache forward pass.
    full = model(ids, mask, torch.tensor([[c.start_token, 5, 17], [c.start_token, 9, 3]]))
    full_logits = full.permute(1, 0, 2).numpy().round(6).tolist()
    stride = max(1, cross_k.numel() // 97)
    # Whole token sequences: the plan, if the model writes one, then the codes.
    greedy = generate_tokens(model, tok, prompts, [7, 8], GREEDY_SETTINGS)
    sampled_settings = Settings(guidance_scale=3.0, top_k=32, top_p=0.95, temperature=1.0)
    sampled = generate_tokens(model, tok, prompts[:1] * 2, [42, 43], sampled_settings)
    grid = torch.from_numpy(greedy[:1, c.plan_len:].reshape(1, c.grid, c.grid))
    excluded = excluded_fixture(model, tok) if c.plan_len and plan.exclusions(c.plan_order) else None
    pixels = vq.decode_codes(grid)[0].numpy()
    return {
        "prompts": prompts,
        "normalised": [normalise(p) for p in prompts],
        "inputIds": ids.tolist(),
        "attentionMask": mask.tolist(),
        "crossKStride": stride,
        "crossKSample": cross_k.flatten()[::stride].numpy().round(6).tolist(),
        "stepTokens": [[c.start_token] * 2, [5, 9], [17, 3]],
        "stepLogits": step_logits,
        "fullForwardLogits": full_logits,
        "greedy": {"seeds": [7, 8], "settings": vars(GREEDY_SETTINGS), "codes": greedy.tolist()},
        "sampled": {"seeds": [42, 43], "settings": vars(sampled_settings), "codes": sampled.tolist()},
        "vq": {"codes": greedy[0, c.plan_len:].tolist(), "pixelStride": 37,
               "pixelSample": pixels.flatten()[::37].round(6).tolist()},
        **({"excluded": excluded} if excluded else {}),
    }


EXCLUDED_PROMPT = "a pink heart"


def excluded_fixture(model: DalleBart, tok: WordTokenizer, tries: int = 200, keep: int = 2) -> dict:
    """Seeds of a prompt naming no background whose tokens the plan's exclusions change (the background the
    sampler drew otherwise was a shape's colour, or that colour was among its candidates): the engine must
    give the `codes` drawn with them, not the `without` ones."""
    settings = Settings(guidance_scale=3.0, top_k=0, top_p=1.0, temperature=1.0)
    seeds = list(range(tries))
    on = generate_tokens(model, tok, [EXCLUDED_PROMPT] * tries, seeds, settings)
    off = generate_tokens(model, tok, [EXCLUDED_PROMPT] * tries, seeds, settings, exclusions=False)
    differ = [i for i in seeds if (on[i] != off[i]).any()][:keep]
    if not differ:
        raise SystemExit(f"the exclusions changed none of {tries} images of {EXCLUDED_PROMPT!r}")
    return {"prompt": EXCLUDED_PROMPT, "seeds": differ, "settings": vars(settings),
            "codes": on[differ].tolist(), "without": off[differ].tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="training/work")
    p.add_argument("--out", default="models/mosaic-shapes")
    p.add_argument("--fixtures", default="test/fixtures/mosaic-shapes-reference.json")
    p.add_argument("--patch", type=int, default=0, help="pixels per code in the mosaic preview (0: the VQ factor)")
    args = p.parse_args()
    vq, model, vq_ckpt, tr_ckpt, tok = load_for_generation(args.work)
    args.patch = args.patch or vq.factor
    tmp = tempfile.mkdtemp()
    graphs = export_graphs(model, tmp, VQGraph(vq), data.IMAGE_SIZE)
    os.makedirs(args.out, exist_ok=True)
    for g in graphs.values():
        shutil.move(os.path.join(tmp, g["file"]), os.path.join(args.out, g["file"]))
    tok.save(os.path.join(args.out, "tokenizer.json"))
    code_patches(vq, args.patch).tofile(os.path.join(args.out, "code-patches.bin"))
    usage_path = os.path.join(args.work, "codebook-usage.json")
    usage = json.load(open(usage_path)) if os.path.exists(usage_path) else {}
    card = {
        "vq": {"steps": vq_ckpt["steps"], "minutes": round(vq_ckpt["seconds"] / 60, 1),
               "finalValMse": vq_ckpt["history"][-1]["val_mse"] if vq_ckpt["history"] else None, **usage},
        "transformer": {"steps": tr_ckpt["steps"], "minutes": round(tr_ckpt["seconds"] / 60, 1),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "final": tr_ckpt["history"][-1] if tr_ckpt["history"] else None},
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(manifest(model, vq, graphs, tok, args.patch, card, default_settings(args.work)), f, indent=2)
        f.write("\n")
    if args.fixtures:
        os.makedirs(os.path.dirname(args.fixtures), exist_ok=True)
        with open(args.fixtures, "w") as f:
            json.dump(fixtures(vq, model, tok), f)
    log(f"exported to {args.out}")


if __name__ == "__main__":
    main()
