#!/usr/bin/env bash
# Runs on a lent GPU machine from the repository root, after scripts/device-pack.sh here:
# the Vulkan loader from .gl/ (see the device notes), the device report and bandwidth probe, the
# GPU tests that need no validation layer, then the ~1B-parameter benchmark (TinyLlama's shape,
# random weights made by kv-make-model) in F16, Q8_0 and Q4_0.
#   scripts/device-run.sh [tests|bench|all|tune|batch|gameloop]
# gameloop: issue 10's figures - kv-game-loop's frame-time p50/p99/max and tok/s with 0, 4 and 16
# NPC sessions (the 1.1B shape, Q4_0 weights), with the GPU budget off and at 2,000 us.
# batch: issue 9's matrix - Q8_0 and Q4_0 weights, F16 pages, 1/4/16/64 sessions batched into one
# pass per step (and 16 sequential, the old way) at 512 and 4,096 cached tokens, as JSON lines.
# tune: kernel sweeps for the 1.1B shapes (matvec workgroup x rows, attention split policies)
# and a profiled decode, to pick defaults.
set -uo pipefail
what=${1:-all}
for f in .gl/*.deb; do dpkg -x "$f" / >/dev/null 2>&1; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export LD_LIBRARY_PATH=$PWD/.dev/lib
D=$PWD/.dev
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$D/bin/kv-info" --bench --iters 20 2>&1 | tee "$OUT/kv-info.txt"
if [ "$what" = tests ] || [ "$what" = all ]; then
  # In groups of test cases: on the NVIDIA driver (580), one process that creates and destroys
  # a few dozen instances and devices (one per test case) later fails vkCreateInstance with
  # VK_ERROR_INCOMPATIBLE_DRIVER; ctest runs every case in its own process.
  export KV_SHARED_DIR=$D/shared
  "$D/tests/test_vk" 2>&1 | tail -2
  for g in "rope*,kv_write*,attention:*,attention rejects*,argmax*" "rms*,add*,silu*,softmax*,matvec F32*,matvec with*,matvec over*,matvec on*,kernels*" \
           "kv_write Q*,attention over*,attention with*,kv_page*,small*" "get_rows*,matvec (*,matvec reads*,matmul*,matvec with other*,weight kernels reject*,weight kernels on*,weights split*"; do
    "$D/tests/test_engine" -tc="$g" 2>&1 | grep -E "ERROR|test cases|logged" | head -12
  done
  for g in "engine: stories*,engine: cached*,engine: context*,engine: kv_session_eval*,engine: sampling*" \
           "runtime*,abi*,engine: KV bytes*" "paged*,stories260K with*,saved*,window*,quantized*,threads*"; do
    "$D/tests/test_capi" -tc="$g" 2>&1 | grep -E "ERROR|test cases|logged" | head -12
  done
fi
make_models() {
  for ty in "$@"; do
    "$D/bin/kv-make-model" -o /tmp/tl-$ty.gguf --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 \
      --vocab 32000 --ctx 32768 --type $ty >/dev/null &
  done
  wait
}
if [ "$what" = tune ]; then
  make_models q8_0 f16
  KV_BENCH_SWEEP=1 KV_BENCH_SHAPES=tiny "$D/tests/test_engine" -tc="weight kernels throughput*" 2>&1 | grep -E "GB/s"
  KV_ATTN_BENCH=tiny "$D/tests/test_engine" -tc="attention benchmark" 2>&1 | grep -E " us"
  for ty in q8_0 f16; do
    echo "== 1.1B ($ty weights), 512-token prompt, 128 decoded"
    "$D/bin/kv-bench" -m /tmp/tl-$ty.gguf --prompt 512 --gen 128 --reps 2 2>&1 | grep -E '^(prefill|decode)'
  done
  KV_PROFILE=1 "$D/bin/kv-bench" -m /tmp/tl-q8_0.gguf --prompt 512 --gen 32 --reps 1 2>&1 | grep -A14 "single-token"
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  make_models f16 q8_0 q4_0
  for ty in f16 q8_0 q4_0; do
    echo "== 1.1B ($ty weights), 512-token prompt, 128 decoded"
    "$D/bin/kv-bench" -m /tmp/tl-$ty.gguf --prompt 512 --gen 128 --reps 2 2>&1 | tail -4
  done
  # The paged KV cache (issue 5): F16 and Q8_0 pages, 1 and 16 sessions, 512 / 4096 / 16384 tokens.
  for kv in f16 q8_0; do
    for n in 512 4096 16384; do
      for s in 1 16; do
        echo "== 1.1B (q8_0 weights), $kv pages, $n cached tokens, $s session(s)"
        "$D/bin/kv-bench" -m /tmp/tl-q8_0.gguf --prompt $n --gen 32 --reps 1 --batch 512 --kv-type $kv \
          --sessions $s 2>&1 | grep -E '^(prefill|decode)'
      done
    done
  done
fi
if [ "$what" = batch ]; then
  make_models q8_0 q4_0
  for ty in q8_0 q4_0; do
    for n in 512 4096; do
      for s in 1 4 16 64; do
        "$D/bin/kv-bench" -m /tmp/tl-$ty.gguf --prompt $n --gen 32 --reps 1 --batch 512 --kv-type f16 \
          --sessions $s --json 2>&1 | tee -a "$OUT/batch.jsonl"
      done
      "$D/bin/kv-bench" -m /tmp/tl-$ty.gguf --prompt $n --gen 32 --reps 1 --batch 512 --kv-type f16 \
        --sessions 16 --sequential --json 2>&1 | tee -a "$OUT/batch.jsonl"
    done
  done
fi
if [ "$what" = gameloop ]; then
  make_models q4_0
  for budget in 0 2000; do
    for n in 4 16; do  # each run also prints its frames without generation (0 NPCs) first
      echo "== kv-game-loop: $n NPCs, GPU budget ${budget} us"
      "$D/bin/kv-game-loop" -m /tmp/tl-q4_0.gguf --npcs $n --frames 600 --kernel-ms 4 \
        --gpu-budget-us $budget 2>&1 | tail -8 | tee -a "$OUT/gameloop.txt"
    done
  done
fi
