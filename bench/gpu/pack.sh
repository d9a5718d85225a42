#!/usr/bin/env bash
# Packs what a run on the GPU machine needs into .gpu/ at the project root (git-ignored). That machine
# has CUDA, PyTorch and a Vulkan-capable NVIDIA driver but no Node.js, no npm and no network, and the
# device tool carries only the tracked tree plus the paths named in `carry`. So .gpu/ holds:
#   node.xz               this machine's Node.js binary
#   node_modules.tar.xz   the named npm packages and those the named entry files import, with their
#                         run-time dependencies (closure.mjs), other platforms' prebuilt binaries left
#                         out (the GPU machine is linux x64)
#   debs/                 Debian's libvulkan1, the Vulkan loader onnxruntime-node's WebGPU provider needs
#   unpack.sh             sourced there first:  source .gpu/unpack.sh
# Usage (bench/gpu.sh pack calls it with the bench scripts):  bash bench/gpu/pack.sh [PACKAGE | ENTRY.ts]...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
[ $# -gt 0 ] || { echo "usage: bench/gpu/pack.sh [PACKAGE | ENTRY.ts]..." >&2; exit 2; }
[ -d node_modules ] || { echo "pack: no node_modules here; run npm ci first" >&2; exit 1; }
git check-ignore -q .gpu/ 2>/dev/null || echo "pack: warning: .gpu/ is not git-ignored; it would travel twice" >&2

rm -rf .gpu && mkdir -p .gpu/debs
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .gpu/node.xz
node "$here/closure.mjs" "$@" > .gpu/packages.txt
tar cf - --exclude='*/darwin*' --exclude='*/win32*' --exclude='*/linux/arm*' --exclude='*/linuxmusl*' -T .gpu/packages.txt \
  | xz -T2 -6 > .gpu/node_modules.tar.xz

# The Vulkan loader: the one apt has cached if this machine installed it, else downloaded (amd64,
# whatever this machine's architecture) through a private package list.
cached=$(ls /var/cache/apt/archives/libvulkan1_*_amd64.deb 2>/dev/null | tail -1 || true)
if [ -n "$cached" ]; then
  cp "$cached" .gpu/debs/
else
  lists=$(mktemp -d); mkdir -p "$lists/partial"
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update >/dev/null 2>&1 || true
  (cd .gpu/debs && apt-get $o download libvulkan1 >/dev/null 2>&1) || true
  rm -rf "$lists"
fi
ls .gpu/debs/libvulkan1_*.deb >/dev/null 2>&1 || echo "pack: warning: no libvulkan1 package; WebGPU will not find Vulkan on the GPU machine" >&2

cp "$here/unpack.sh" .gpu/unpack.sh
# The device tool carries the working tree and .gpu/ together, 64 MiB at most.
total=$(( $(du -sb .gpu | cut -f1) + $(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1) ))
if [ "$total" -gt $(( 64 * 1024 * 1024 )) ]; then
  echo "pack: .gpu/ and the tracked tree are $(( total / 1024 / 1024 )) MiB, over the device tool's 64 MiB: the run would not be carried" >&2
  exit 1
fi
echo "pack: $(du -sh .gpu | cut -f1) in .gpu/, $(( total / 1024 / 1024 )) MiB with the tracked tree ($(wc -l < .gpu/packages.txt) package folders, $(ls .gpu/debs)); carry [\".gpu\"]"
