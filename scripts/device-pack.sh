#!/usr/bin/env bash
# Packs what a GPU machine needs to run kvulkan's tests and benchmarks into .dev/ (git-ignored):
# stripped binaries and library from build/, and a subset of ../shared small enough to travel.
# Used with scripts/device-run.sh on a lent GPU machine (see the issue notes for figures).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${KV_BUILD_DIR:-build}
SHARED=${KV_SHARED_DIR:-../shared}
rm -rf .dev && mkdir -p .dev/bin .dev/lib .dev/tests .dev/shared/models/stories260K .dev/shared/models/fixtures .dev/shared/reference
for b in kv-info kv-bench kv-generate kv-make-model kv-tokenize; do strip -o .dev/bin/$b "$BUILD/bin/$b"; done
strip -o .dev/lib/libkvulkan.so.0 "$BUILD/libkvulkan.so.0"
for t in test_vk test_engine test_capi; do strip -o .dev/tests/$t "$BUILD/tests/$t"; done
cp "$SHARED"/models/stories260K/stories260K.gguf .dev/shared/models/stories260K/
for m in llama-gqa.f32 llama-gqa.f16 llama-gqa.q8_0 llama-gqa.q4_0 llama-gqa.q4_k_m qwen2-bias.f16; do
  cp "$SHARED"/models/fixtures/$m.gguf .dev/shared/models/fixtures/
done
cp "$SHARED"/reference/* .dev/shared/reference/
du -sh .dev
