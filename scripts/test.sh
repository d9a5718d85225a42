#!/usr/bin/env bash
# The whole test suite: the Python training checks (with a tiny smoke run), then the TypeScript
# tests against the shipped model. Node's runner goes last so its summary closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MOSAIC_PYTHON:-/usr/bin/python3}
PY_PKGS="python3-torch python3-numpy python3-onnx python3-pil python3-msgpack libopenblas0-openmp"
GPU_PKGS="chromium libvulkan1"
SWIFTSHADER=/usr/lib/chromium/vk_swiftshader_icd.json
need=""
# The training code's smoke run, the adherence scorer and the converter need Debian's PyTorch stack
# (msgpack: dalle-mini's Flax checkpoints).
"$PY" -c "import torch, numpy, onnx, PIL, msgpack" 2>/dev/null || need="$PY_PKGS"
# test/webgpu.test.ts runs the WebGPU provider on SwiftShader, the software Vulkan driver that Debian's
# chromium package ships, through the Vulkan loader.
libs=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)
if [ ! -f "$SWIFTSHADER" ] || [[ "$libs" != *"libvulkan.so.1 "* ]]; then
  need="$need $GPU_PKGS"
fi
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing ${need# } (once)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  elif [[ " $need " == *" python3-torch "* ]]; then
    echo "test: the training checks need Debian's packages: sudo apt-get install -y $PY_PKGS" >&2
    exit 1
  else
    echo "test: the WebGPU tests need SwiftShader: sudo apt-get install -y $GPU_PKGS (skipped without it; they fail in CI)" >&2
  fi
fi
(cd training && "$PY" -m unittest discover -s tests -t . )
npx tsc -p tsconfig.json
node --import tsx --test test/*.test.ts
