#!/usr/bin/env bash
# The whole test suite: the Python training checks (with a tiny smoke run), then the TypeScript
# tests against the shipped model. Node's runner goes last so its summary closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MOSAIC_PYTHON:-/usr/bin/python3}
PKGS="python3-torch python3-numpy python3-onnx python3-pil python3-msgpack libopenblas0-openmp"
if ! "$PY" -c "import torch, numpy, onnx, PIL, msgpack" 2>/dev/null; then
  # The training code's smoke run, the adherence scorer and the converter need Debian's PyTorch stack
  # (msgpack: dalle-mini's Flax checkpoints).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing $PKGS (once)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PKGS >/dev/null
  else
    echo "test: the training checks need Debian's packages: sudo apt-get install -y $PKGS" >&2
    exit 1
  fi
fi
(cd training && "$PY" -m unittest discover -s tests -t . )
npx tsc -p tsconfig.json
node --import tsx --test test/*.test.ts
