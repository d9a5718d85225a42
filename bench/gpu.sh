#!/usr/bin/env bash
# The GPU-machine run (see docs/performance.md, GPU), prepared and tried on the CPU first. Here, after
# `npm ci`:
#
#   bash bench/gpu.sh pack          # packs Node, the engine's npm packages and Vulkan into .gpu/ (bench/gpu/)
#   bash bench/gpu.sh closure       # only lists the package folders it would pack
#
# Then one device call with carry [".gpu"] and a timeout that leaves room for a rerun:
#
#   bash bench/gpu.sh run [mini|mega|all]     # default: mini
#
# On a CPU, to try it: MOSAIC_BENCH_PROVIDER=cpu MOSAIC_BENCH_TORCH_DEVICE=cpu MOSAIC_BENCH_RUNS=1 \
#   MOSAIC_BENCH_TORCH_DTYPES=fp32 MOSAIC_BENCH_WARMUP=1 MOSAIC_PYTHON=/usr/bin/python3 bash bench/gpu.sh run small
#
# It checks that the WebGPU path (batch state on the GPU) gives the CPU's codes, exports random-weight
# DALL·E-mini (and -mega) models with that machine's PyTorch, prints the side-by-side table against a
# PyTorch eager loop on CUDA (fp32 and fp16), and the batching table on the mini model. Everything
# it prints also goes to $OUT (the device tool brings that folder back).
set -uo pipefail
cd "$(dirname "$0")/.."

# The packages the bench scripts import are found from the scripts themselves; named here are tsx
# (the loader), those loaded through createRequire (unidecode, unicode-emoji-json) and the rest of
# the engine's run-time packages.
packed=(tsx onnxruntime-node sharp @huggingface/tokenizers unidecode unicode-emoji-json entities
  bench/gpu-check.ts bench/torch.ts bench/batching.ts)
if [ "${1:-}" = pack ]; then exec bash bench/gpu/pack.sh "${packed[@]}"; fi
# The package folders pack would take, without packing (test/gpu-pack.test.ts checks them).
if [ "${1:-}" = closure ]; then exec node bench/gpu/closure.mjs "${packed[@]}"; fi
[ "${1:-}" = run ] || { echo "usage: bench/gpu.sh pack | closure | run [mini|mega|all]" >&2; exit 2; }
sizes=${2:-mini}
[ "$sizes" = all ] && sizes="mini mega"

out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
if [ -f .gpu/unpack.sh ]; then source .gpu/unpack.sh; fi
provider=${MOSAIC_BENCH_PROVIDER:-webgpu}
torch_device=${MOSAIC_BENCH_TORCH_DEVICE:-cuda}
runs=${MOSAIC_BENCH_RUNS:-3}
work=${MOSAIC_BENCH_WORK:-/tmp/mosaic-work}
python=${MOSAIC_PYTHON:-python3}
export MOSAIC_PYTHON=$python
step() { echo; echo "== $* ($(date +%T))"; }

{
  step "machine"
  nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU"
  node --version
  "$python" -c "import torch, onnx; print('torch', torch.__version__, 'onnx', onnx.__version__, 'cuda', torch.cuda.is_available())"

  step "WebGPU path gives the CPU's codes (shipped model)"
  node --import tsx bench/gpu-check.ts --provider "$provider"

  for size in $sizes; do
    step "random $size: export with this machine's PyTorch"
    [ -f "$work/random-$size/model/model.json" ] ||
      PYTHONPATH=training "$python" -m mosaic_convert.random_weights --size "$size" --out "$work/random-$size" --weights fp16
    dtypes=${MOSAIC_BENCH_TORCH_DTYPES:-fp32,fp16}
    step "$size: Mosaic ($provider) vs PyTorch eager ($torch_device $dtypes)"
    node --import tsx bench/torch.ts --size "$size" --work "$work" --runs "$runs" --provider "$provider" \
      --torch-device "$torch_device" --torch-dtype "$dtypes" --warmup "${MOSAIC_BENCH_WARMUP:-1,9}"
  done

  first=${sizes%% *}
  step "continuous batching, random $first, $provider"
  node --import tsx bench/batching.ts --model "$work/random-$first/model" --provider "$provider" --runs 1 --concurrency 1,4,16
  step "done"
} 2>&1 | tee "$out/gpu-bench.txt"
