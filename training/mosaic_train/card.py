"""Measure the exported model and write its card (models/<name>/README.md) with a sample grid.

Everything reported is measured here, from the fp16-rounded weights the ONNX files hold.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from PIL import Image

from . import adherence, data
from .export import load_for_generation
from .sampling import Settings
from .generate import generate_codes
from .runtime import log

# Typed as people type them (none is a training template): the sample grid of the card and README.
SAMPLE_PROMPTS = [
    "a red circle on a blue background",
    "a pink heart",
    "on a black background, a large red triangle",
    "A small yellow star in the top left corner, purple background.",
    "green square, black background",
    "the background is white and there is a brown heart in the middle",
    "a big blue circle above a small orange square on a yellow background",
    "a white star to the left of a red heart, green background",
    "a black triangle next to a pink circle on a white background",
]
TARGETS = {"held-out": 0.90, "free-phrasing": 0.85, "two-shapes": 0.70, "diversity": 1.0}
OPEN_SEEDS = 9


def decode(vq, codes: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        grid = int(round(codes.shape[-1] ** 0.5))
        pix = vq.decode_codes(torch.from_numpy(codes.reshape(-1, grid, grid)))
    return (pix.numpy() * 255).round().astype(np.uint8)


def sample_grid(images: np.ndarray, scale: int = 2, gutter: int = 4) -> Image.Image:
    n, h, w, _ = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    sheet = Image.new("RGB", (cols * w * scale + (cols - 1) * gutter, rows * h * scale + (rows - 1) * gutter), "white")
    for i, img in enumerate(images):
        tile = Image.fromarray(img).resize((w * scale, h * scale), Image.NEAREST)
        sheet.paste(tile, ((i % cols) * (w * scale + gutter), (i // cols) * (h * scale + gutter)))
    return sheet


def guidance_note(selection: dict | None, pct) -> str:
    """What the selection says about classifier-free guidance at this model size, in numbers."""
    if not selection:
        return ""
    res = selection["results"]
    off = [r["summary"]["adherent"] for r in res if r["settings"]["guidance_scale"] == 1]
    on = [r["summary"]["adherent"] for r in res if r["settings"]["guidance_scale"] > 1]
    if not off or not on:
        return ""
    return (f"Best adherence without guidance (scale 1): {pct(max(off))}; with guidance (scale > 1): {pct(max(on))}. "
            "The engine supports any scale; the unconditional rows it needs are skipped at scale 1, halving the work.")


def precision_note(tr_ckpt: dict) -> str:
    return "matrix products in bf16 (the CPU multiplies bf16 natively), the rest fp32; " if tr_ckpt.get("precision") == "bf16" else ""


def placed_note(tr_ckpt: dict) -> str:
    share = tr_ckpt["args"].get("placed_first", 0)
    return f"the first {share:.0%} of the schedule on captions that say where every shape is; " if share else ""


def place_read_note(tr_ckpt: dict, pct) -> str:
    """The training run's place probe (place_probe.py), final and along the way."""
    final = tr_ckpt.get("place_read")
    if not final:
        return ""
    curve = [(h["step"], h["place_read"]) for h in tr_ckpt["history"] if "place_read" in h]
    shown = curve[:: max(1, len(curve) // 6)]
    along = "; ".join(f"step {s}: {pct(r['held_out'])} / {pct(r['training'])}" for s, r in shown)
    return (f"\nPlace read (`place_probe.py`, teacher-forced: the asked place's image scores best of the nine, chance 11%), "
            f"held-out / training prompts: {pct(final['held_out'])} / {pct(final['training'])} at the end"
            + (f" ({pct(final['held_out_guided'])} / {pct(final['training_guided'])} scored as sampling at the "
               f"default guidance draws)" if "held_out_guided" in final else "")
            + (f"; along the way {along}." if along else "."))


def plan_note(a: dict) -> str:
    if not a.get("plan"):
        return ""
    order = ("each shape's place, size, shape and colour in reading order (`none` for a missing second shape), then "
             "the background colour, which the sampler keeps off the shapes' colours (`plan.exclude` in model.json: a "
             "shape in its background's colour is a flat image, a scene training never shows)"
             if a["plan"].get("exclude") else
             "the background colour, then each shape's place, size, shape and colour in reading order (`none` for a missing "
             "second shape)")
    return (f"\n\nThe decoder first writes a **scene plan** of {a['plan']['length']} tokens, then the image codes: "
            f"{order}. Each plan slot is decided by a word of the prompt, or drawn at random where the prompt leaves "
            "it open, and the codes after it follow the plan (`training/mosaic_train/plan.py` says why; "
            "docs/model-format.md how the engine runs it). The plan is learnt from the training scenes, like the codes.")


def measure(model, vq, tok, prompts: list[dict], settings: Settings, seeds: list[int]) -> tuple[np.ndarray, list[dict]]:
    codes = generate_codes(model, tok, [p["caption"] for p in prompts], seeds, settings)
    images = decode(vq, codes)
    return images, [adherence.score_entry(img, p) for img, p in zip(images, prompts)]


def round_trip(vq, n: int = 300, seed: int = 777) -> dict:
    """The scorer on the VQ autoencoder's reconstructions of n training-distribution images (every fact
    asked): what a transformer that chose every code right would score, so the ceiling of the tables.
    A blurred small star reads as a circle here as much as in a generated image."""
    import torch

    from .vq import to_input

    scenes, results = [data.sample(seed, i) for i in range(n)], []
    for start in range(0, n, 64):
        chunk = scenes[start:start + 64]
        with torch.no_grad():
            codes = vq.encode(to_input(torch.from_numpy(np.stack([img for _, _, img in chunk]))))
        for (scene, _, _), img in zip(chunk, decode(vq, codes.reshape(len(chunk), -1).numpy())):
            results.append(adherence.score(img, scene))
    return adherence.summarise(results)


def failure_lines(prompts: list[dict], results: list[dict], limit: int = 12) -> str:
    lines = []
    for p, r in zip(prompts, results):
        wrong = [k.replace("_ok", "") for k in ("background_ok", "colour_ok", "shape_ok", "position_ok", "size_ok")
                 if r[k] is False]
        if wrong:
            found = "; ".join(f"{s['found'].get('shape', 'nothing')} {s['found'].get('size', '')} at "
                              f"{s['found'].get('position', '-')}" for s in r["shapes"])
            lines.append(f"- \"{p['caption']}\": {', '.join(wrong)} wrong (found {r['found_background']} background; {found})")
    more = f"\n- … and {len(lines) - limit} more" if len(lines) > limit else ""
    return ("\n".join(lines[:limit]) + more) if lines else "- none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="training/work")
    p.add_argument("--model", default="models/mosaic-shapes")
    p.add_argument("--count", type=int, default=48, help="prompts per generated set")
    args = p.parse_args()
    vq, model, vq_ckpt, tr_ckpt, tok = load_for_generation(args.work)
    manifest = json.load(open(os.path.join(args.model, "model.json")))
    ms = manifest["sampling"]
    defaults = Settings(ms["guidanceScale"], ms["topK"], ms["topP"], ms["temperature"])
    selection_path = os.path.join(args.work, "selection.json")
    selection = json.load(open(selection_path)) if os.path.exists(selection_path) else None

    sets = {
        "held-out": adherence.held_out_prompts(args.count),
        # The whole hand-written file at the card's full size; a smoke run takes a few.
        "free-phrasing": adherence.free_phrasing_prompts()[: None if args.count >= 48 else args.count],
        "two-shapes": adherence.two_shape_prompts(args.count),
    }
    t0 = time.time()
    measured: dict = {}
    images: dict = {}
    for name, prompts in sets.items():
        images[name], results = measure(model, vq, tok, prompts, defaults, [1000 + i for i in range(len(prompts))])
        measured[name] = {"summary": adherence.summarise(results), "results": results}
        log(f"{name}: {measured[name]['summary']}")
    gen_images = sum(len(v) for v in sets.values())
    open_prompts = adherence.open_prompts(max(2, args.count // 4))
    per_image = [q for q in open_prompts for _ in range(OPEN_SEEDS)]
    _, open_results = measure(model, vq, tok, per_image, defaults, [2000 + i for i in range(len(per_image))])
    grouped = [open_results[i * OPEN_SEEDS:(i + 1) * OPEN_SEEDS] for i in range(len(open_prompts))]
    spread = adherence.diversity(grouped)
    log(f"diversity: {spread}")
    # Prompts naming no background: the share of images in one flat colour (the shape on its own colour).
    bare = adherence.no_background_prompts(2 * args.count)
    _, bare_results = measure(model, vq, tok, bare, defaults, [3000 + i for i in range(len(bare))])
    flat = adherence.summarise(bare_results)
    log(f"no background: {flat}")
    gen_seconds = (time.time() - t0) / (gen_images + len(per_image) + len(bare))
    ceiling = round_trip(vq)
    log(f"VQ round trip: {ceiling}")

    sample_codes = generate_codes(model, tok, SAMPLE_PROMPTS, list(range(len(SAMPLE_PROMPTS))), defaults)
    sample_grid(decode(vq, sample_codes)).save(os.path.join(args.model, "samples.png"))
    sample_grid(images["free-phrasing"][:16], scale=1, gutter=2).save(os.path.join(args.model, "held-out.png"))

    usage = json.load(open(os.path.join(args.work, "codebook-usage.json")))
    # A short (smoke) run logs no history: report what exists.
    nan = {"loss": float("nan"), "val_loss": float("nan"), "val_mse": float("nan")}
    tr_hist = tr_ckpt["history"] or [nan]
    vq_hist = vq_ckpt["history"] or [nan]
    a = manifest["architecture"]
    headline = {
        "held-out": measured["held-out"]["summary"]["adherent"],
        "free-phrasing": measured["free-phrasing"]["summary"]["adherent"],
        "two-shapes": measured["two-shapes"]["summary"].get("shapes_right", 0.0),
        "diversity": spread["passing"],
    }
    with open(os.path.join(args.work, "card.json"), "w") as f:
        json.dump({"headline": headline, "targets": TARGETS, "diversity": spread, "pytorchSecondsPerImage": gen_seconds,
                   "vqRoundTrip": ceiling, "noBackground": flat,
                   **{k: v["summary"] for k, v in measured.items()}}, f, indent=1)
    pct = lambda x: "–" if x is None else f"{100 * x:.0f}%"  # noqa: E731
    verdict = lambda k: "met" if headline[k] >= TARGETS[k] else "**not met**"  # noqa: E731
    rows = "\n".join(
        f"| {name} | {len(sets[name])} | {pct(m['summary']['adherent'])} | {pct(m['summary']['background'])} | "
        f"{pct(m['summary']['colour'])} | {pct(m['summary']['shape'])} | {pct(m['summary']['position'])} | "
        f"{pct(m['summary']['size'])} |" for name, m in measured.items())
    card = f"""# mosaic-shapes {manifest['version']}

{manifest['description']}

Trained from scratch by `training/build-model.sh` on synthetic data only (drawn on the fly from fixed seeds by
`training/mosaic_train/data.py`): one or two shapes (circle, square, triangle, star, heart) in 10 colours (red,
green, blue, yellow, purple, orange, white, black, pink, brown), 2 sizes, 9 places, on a background of another
colour. Captions say what people say: any of size, place and background may be left out (and is then drawn at
random, so it varies between images), in many orders and phrasings ("on a black background, a large red triangle",
"green square, black background", "the background is yellow and there is a black triangle in the middle"),
with synonyms, capitals and punctuation, and two shapes by place or by relation ("… above …", "… next to …").
About 1 in 12 (colour, shape, position, background) combinations is **held out**: no training caption ever names
one with its place. Its images are drawn only under captions that leave the place open, about as often as such a
caption is (so a prompt without a place gets all nine places alike, where leaving them out of training entirely
taught the model to avoid them: see `training/eval/candidate-2026-12-01`).

![Samples](samples.png)

Prompts (left to right, top to bottom; seeds 0-8, default sampling):
{chr(10).join(f'{i + 1}. "{p}"' for i, p in enumerate(SAMPLE_PROMPTS))}

## Prompt adherence (measured)
Default sampling (guidance {defaults.guidance_scale}, top-k {defaults.top_k}, top-p {defaults.top_p}, temperature
{defaults.temperature}), seeds 1000+i, scored by `training/mosaic_train/adherence.py`: geometric checks on pixels, no
learned judge (each asked shape is the largest region of its colour; its shape is the template it overlaps best;
on the real training images every check scores 100%). **Adherent** = background, colour and shape all right.
The ceiling: the VQ autoencoder's own round trip of {ceiling['images']} training-distribution images (every
fact asked, the codes exactly right) scores {pct(ceiling['adherent'])} adherent (shape {pct(ceiling['shape'])},
colour {pct(ceiling['colour'])}, position {pct(ceiling['position'])}, size {pct(ceiling['size'])}): no transformer
over these codes can score more.

| measurement | result | target | |
| --- | --- | --- | --- |
| 1. held-out combinations, adherent | {pct(headline['held-out'])} | ≥ 90% | {verdict('held-out')} |
| 2. free phrasing (hand-written, `training/eval/free-phrasing.json`), adherent | {pct(headline['free-phrasing'])} | ≥ 85% | {verdict('free-phrasing')} |
| 3. two shapes (held-out), shapes right (colour, place, shape; per shape) | {pct(headline['two-shapes'])} | ≥ 70% | {verdict('two-shapes')} |
| 4. diversity: prompts leaving place and size open whose {OPEN_SEEDS} images show ≥ 3 distinct places or sizes | {pct(headline['diversity'])} ({spread['prompts']} prompts; distinct per prompt: {spread['distinct']}) | 100% | {verdict('diversity')} |
| 5. prompts naming no background ({len(bare)}, `adherence.no_background_prompts`), images in one flat colour (the shape drawn on its own colour) | {pct(flat['hidden'])} | – | |

Each check separately (position and size over the prompts that ask for them):

| set | prompts | adherent | background | colour | shape | position | size |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

The free-phrasing file is read only by this card and the tests, never by training or by the choice of sampling
defaults (`training/tests/test_training.py` watches every file the training stages open). The same scorer runs
through the TypeScript engine in the test suite (`test/adherence.test.ts`) and by hand with `npm run adherence`.
First 16 free-phrasing results:

![Free-phrasing prompts](held-out.png)

Failures, free phrasing:
{failure_lines(sets['free-phrasing'], measured['free-phrasing']['results'])}

Failures, held-out combinations:
{failure_lines(sets['held-out'], measured['held-out']['results'])}

Failures, two shapes:
{failure_lines(sets['two-shapes'], measured['two-shapes']['results'])}

## Architecture
DALL·E mini's shape at a small size: a VQ autoencoder (64×64 RGB ↔ {a['grid']['height']}×{a['grid']['width']} codes,
codebook {a['codebookSize']}) and a BART-style encoder-decoder ({a['encoderLayers']}+{a['decoderLayers']} layers,
width {a['modelWidth']}, {a['heads']} heads, GLU {a['feedForwardWidth']}, NormFormer-style layer norms, no biases,
{manifest['training']['transformer']['parameters'] / 1e6:.2f} M parameters) over a word-level vocabulary of
{a['textVocabSize']} tokens. Weights are stored as fp16 in the ONNX files and computed in fp32.{plan_note(a)}

## Training (measured, 2 CPU cores)
| | steps | batch | time | result |
| --- | --- | --- | --- | --- |
| VQ autoencoder | {vq_ckpt['steps']} | {vq_ckpt['args']['batch']} | {vq_ckpt['seconds'] / 60:.1f} min | validation MSE {vq_hist[-1]['val_mse']:.4f} (pixels in [-1, 1]); codebook usage {usage['codes_used']}/{usage['codebook_size']} codes on {usage['samples']} training images |
| transformer | {tr_ckpt['steps']} | {tr_ckpt['args']['batch']} | {tr_ckpt['seconds'] / 60:.1f} min | {precision_note(tr_ckpt)}{placed_note(tr_ckpt)}loss {tr_hist[0]['loss']:.2f} → {tr_hist[-1]['loss']:.3f} (validation {tr_hist[-1]['val_loss']:.3f} nats/token), {usage.get('captions', 1)} captions per image, 10% empty captions for guidance |

PyTorch generation here: {gen_seconds:.2f} s per image (batched).
{place_read_note(tr_ckpt, pct)}

## Sampling defaults
Guidance {defaults.guidance_scale}, top-k {defaults.top_k}, top-p {defaults.top_p}, temperature {defaults.temperature}: the best of
the candidates below by the same adherence check, measured by `training/mosaic_train/select.py` on
{selection["prompts"] if selection else "?"} *other* held-out one- and two-shape prompts (another seed than the tables above). Top-k 1
(greedy) is never chosen: every image of a generation would be the same. {guidance_note(selection, pct)}

| guidance | top-k | temperature | adherent | position |
| --- | --- | --- | --- | --- |
{chr(10).join(f"| {r['settings']['guidance_scale']} | {r['settings']['top_k']} | {r['settings']['temperature']} | {pct(r['summary']['adherent'])} | {pct(r['summary']['position'])} |" for r in (selection["results"] if selection else []))}

## Limits
- It knows only its vocabulary: {len(tok.vocab) - 4} words. Other words become `<unk>` and the engine reports them.
- 64×64 pixels; small shapes are about 18 px across (stars 26 px: thinner points did not survive the VQ's 4-px codes) and their corners come back soft.
- Trained on synthetic flat-colour images only: it draws nothing else.
"""
    with open(os.path.join(args.model, "README.md"), "w") as f:
        f.write(card)
    log(f"wrote {args.model}/README.md")


if __name__ == "__main__":
    main()
