#!/usr/bin/env bash
# Cross-compiles kvulkan for aarch64 Linux (cmake/toolchains/aarch64-linux-gnu.cmake) and runs,
# under user-mode QEMU, what needs no Vulkan device:
#   - the CPU-side test executables: test_kvcache (page pool, block tables, prefix index, the
#     randomized model-based test) and test_model (GGUF reader/writer and malformed files, weight
#     formats and quantization, architectures, the tokenizers with the shared vocab cases);
#   - the shared library itself: it exports only kv_* symbols, and kv-tokenize (the C API, a
#     vocab-only model, no GPU) gives the known ids of stories260K.
# The shaders are compiled by the host's glslangValidator (SPIR-V does not depend on the CPU).
#
#   scripts/cross-arm64.sh [build dir, default build-arm64]
#
# Installs what is missing when run as root (Debian 12): g++-aarch64-linux-gnu, qemu-user-static
# and, through multiarch (dpkg --add-architecture arm64), libvulkan-dev:arm64, the arm64 Vulkan
# loader to link against. Each step prints its time. Not part of .ci/run: it does not fit the
# 120 s CI allowance. Measured cold (CCACHE_DISABLE=1, 2 shared cores): 325 s of CPU in all
# (user 298 + sys 27), of which the two test executables under QEMU 72 s wall; plus about 45 s
# for dpkg --add-architecture arm64, apt-get update and the arm64 packages on a fresh machine.
#
# lavapipe for arm64 (mesa-vulkan-drivers:arm64, unpacked into a directory given to QEMU's -L,
# VK_ICD_FILENAMES at its lvp_icd.aarch64.json) runs a model under QEMU: kv-generate on
# stories260K with --kv-type f32 gives the 128 greedy reference tokens (decode 1.2 tok/s); with
# the default F16 KV, Mesa 22.3.6's LLVM 15 aborts compiling a shader ("Cannot select: v4f32 =
# AArch64ISD::VLSHR"), an LLVM aarch64 back-end failure, not a kvulkan error.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-arm64}
SHARED=$(realpath -m ../shared)
step_t0=$(date +%s)
step() {  # step <name>: prints the time of the previous step, names the next
  local now; now=$(date +%s)
  [ -n "${step_name:-}" ] && echo "cross-arm64: ${step_name} took $((now - step_t0)) s"
  step_name=$1; step_t0=$now
}

step "dependencies"
./scripts/deps.sh  # the host tools: cmake, glslang, python3, unicode-data, doctest
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in g++-aarch64-linux-gnu qemu-user-static libvulkan-dev:arm64; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "cross-arm64: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)

step "configure"
args=(-DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
      -DCMAKE_BUILD_TYPE=${KV_BUILD_TYPE:-RelWithDebInfo} -DKV_WERROR=ON)
command -v ninja >/dev/null && args+=(-G Ninja)
command -v ccache >/dev/null && args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD" "${args[@]}" >/dev/null

step "cross-compile (library, kv-tokenize, test_kvcache, test_model)"
cmake --build "$BUILD" -j"$(nproc)" --target kvulkan kv-tokenize test_kvcache test_model

step "checks of the arm64 library"
file -L "$BUILD/libkvulkan.so" | grep -q "ARM aarch64" || { file -L "$BUILD/libkvulkan.so"; exit 1; }
cmake -DLIB="$BUILD/libkvulkan.so" -P tests/check_exports.cmake
STORIES=$SHARED/models/stories260K/stories260K.gguf
if [ -f "$STORIES" ]; then
  ids=$(printf 'Once upon a time' | "${QEMU[@]}" "$BUILD/bin/kv-tokenize" -m "$STORIES" --bos)
  echo "kv-tokenize (aarch64, under QEMU): $ids"
  [ "$(echo $ids)" = "1 403 407 261 378" ] || { echo "cross-arm64: expected 1 403 407 261 378"; exit 1; }
else
  echo "cross-arm64: $STORIES absent: kv-tokenize not run (the shared models are needed)"
fi

for t in test_kvcache test_model; do
  step "$t under QEMU"
  KV_SHARED_DIR=$SHARED "${QEMU[@]}" "$BUILD/tests/$t" | tee "$BUILD/$t.log"
  # A case that cannot run (no ../shared) says so and counts as passed for doctest: report it.
  n=$(grep -c "SKIPPED: " "$BUILD/$t.log" || true)
  [ "$n" = 0 ] || echo "cross-arm64: $t: $n case(s) SKIPPED (see above)"
done
step "done"
