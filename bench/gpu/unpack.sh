# Sourced (bash) at the start of a command on the GPU machine, from the project root:
#   source .gpu/unpack.sh
# (bench/gpu/pack.sh copies it into .gpu/.) Puts the carried Node.js on PATH, unpacks the carried
# node_modules over the project root and installs the Vulkan loader, so that onnxruntime-node's
# WebGPU provider finds the NVIDIA driver. On a machine without one it falls back to SwiftShader
# (Debian's chromium package) when present, so the same commands can be tried on a CPU.
_gpu=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p /tmp/gpu-bin && xz -dc "$_gpu/node.xz" > /tmp/gpu-bin/node && chmod +x /tmp/gpu-bin/node
export PATH=/tmp/gpu-bin:$PATH
tar xJf "$_gpu/node_modules.tar.xz" -C "$_gpu/.."
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  for _deb in "$_gpu"/debs/*.deb; do [ -e "$_deb" ] && dpkg -x "$_deb" /; done
  ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for _icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
              /etc/vulkan/icd.d/nvidia_icd.json /usr/lib/chromium/vk_swiftshader_icd.json; do
    if [ -f "$_icd" ]; then export VK_DRIVER_FILES=$_icd; break; fi
  done
fi
# Without it every Vulkan start prints "XDG_RUNTIME_DIR is invalid or not set".
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
echo "gpu: $(nvidia-smi -L 2>/dev/null | head -1 || true); node $(node --version); Vulkan driver: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-none found}}"
unset _gpu _deb _icd
