#!/usr/bin/env bash
# Builds mosaic-shapes from nothing: the recipe of the shipped 2.0.0 (issue #13; 1.0.0 came from this script at
# commit 9510d59). The synthetic data is drawn on the fly from fixed seeds, then the VQ autoencoder, the code
# sequences, the transformer, the export, and the model card with its adherence measurement. About 1.4 hours on 2
# CPU cores: 2.0.0 (run S of training/eval/place-runs-2026-12-01, card in training/eval/candidate-2026-12-02-s) ran
# these stages one by one with these arguments (the transformer's time cap at 100 minutes, which it did not reach):
# VQ 19 min (with tests beside it; 15 alone), encode 2, transformer 57 (plan phase 2, then 4,000 steps at
# 0.86 s), select 1.4, export and card 1. Run T (eleventh session) ran this script as one command, with
# --plan-order background-last and MOSAIC_MODEL_OUT / MOSAIC_FIXTURES_OUT pointing at a candidate folder: 83 minutes
# (VQ 11, encode 2, transformer 65 with a test run beside its first minutes, select 2, export 2, card 1.4).
# The training code runs on the CPU only.
#   training/build-model.sh            (run from anywhere; needs Debian's python3-torch, -numpy, -onnx, -pil)
#   MOSAIC_MODEL_OUT=/tmp/candidate MOSAIC_FIXTURES_OUT=/tmp/candidate.json training/build-model.sh   (beside the shipped one)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
WORK=${MOSAIC_TRAIN_WORK:-training/work}
# Where the model folder and the engine's parity fixtures go: a candidate can be built beside the shipped one.
OUT=${MOSAIC_MODEL_OUT:-models/mosaic-shapes}
FIXTURES=${MOSAIC_FIXTURES_OUT:-test/fixtures/mosaic-shapes-reference.json}
# A candidate's own seed (data order and initial weights of the VQ and the transformer; 1234 built 2.0.0) and
# plan order: a second run of one recipe on another seed measures the run-to-run spread.
SEED=${MOSAIC_SEED:-1234}
PLAN_ORDER=${MOSAIC_PLAN_ORDER:-background-first}
export PYTHONPATH=training
# glibc's malloc asks for transparent huge pages on its heap and mapped chunks (glibc 2.35+; the kernel's
# transparent_hugepage must be "madvise" or "always"). The trainer frees and maps again its large
# activation buffers every step: with 4 KB pages that was half its CPU time in the kernel (75,000 page
# faults a second). Measured on our 2-core AMD EPYC, 100 transformer steps alone: 0.74 s a step against
# 1.14 s, the same losses to the last digit; jemalloc without decay was 1.27 s. An older glibc ignores it.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
# The VQ encoder without GroupNorm: its codes depend on their neighbourhood only, so a flat background is
# one code (0-9% otherwise, 3+ tokens from a shape and the border, against 25-43% with GroupNorm), and its round trip after the
# same 3,031 steps is 98% against 94% (training/eval/place-runs-2026-12-01).
"$PY" -m mosaic_train.train_vq train --out "$WORK" --seed "$SEED" --steps 631 --encoder-norm none
# The VQ's second phase runs 2,400 steps (10-16 min in all): its round trip, the card's ceiling, was 72% after 600
# and 84% after 2,400 (training/eval/candidate-2026-11-30/README.md); 94% once stars were drawn larger (data.py).
"$PY" -m mosaic_train.train_vq train --out "$WORK" --seed "$SEED" --resume --steps 2400 --lr 3e-4 --l1 0.5
"$PY" -m mosaic_train.train_vq encode --out "$WORK" --samples 40000 --captions 4
# The decoder writes a scene plan before the codes (--plan, mosaic_train/plan.py): with it, run Q of
# training/eval/place-runs-2026-12-01 put held-out shapes at the asked place in 24 of 24 sampled prompts (the
# last full run without it: 2%) and drew 20 of 24 right, after 2,862 steps in 50 minutes. 4,000 steps (run S)
# took two shapes from 20% to 75% right. The schedule anneals to whichever comes first, the steps or the
# minutes (the card gives the steps reached): 80 minutes leaves room for a slower machine or work beside it.
# Where the CPU multiplies bf16 natively (AMX or AVX-512 BF16) the matrix products run in bf16; on our 2-core
# AMD EPYC 0.86 s a step with the allocator setting above.
# --plan-first: 1,000 steps on the plan tokens alone first (about 2 minutes): beside the codes from the
# start, run Q never learnt the size slot (104 of 200 greedy plans right, chance); with this phase run S
# had it right in 200 of 200 after 250 full steps (train_transformer.plan_phase).
# The plan writes the background first (2.0.0; MOSAIC_PLAN_ORDER). --plan-order background-last, with which the sampler keeps the
# background off the shapes' colours, took flat images of prompts naming no background from 9% to 0% but two shapes
# from 75% to 54% right in its one run (run T of the runs page): not the recipe until a second run tells the order
# from the run-to-run spread.
"$PY" -m mosaic_train.train_transformer --out "$WORK" --seed "$SEED" --plan --plan-order "$PLAN_ORDER" --plan-first 1000 --steps 4000 --minutes 80
"$PY" -m mosaic_train.select --work "$WORK"
"$PY" -m mosaic_train.export --work "$WORK" --out "$OUT" --fixtures "$FIXTURES"
"$PY" -m mosaic_train.card --work "$WORK" --model "$OUT"
