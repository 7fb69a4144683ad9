#!/usr/bin/env bash
# ASan + UBSan: builds the CPU-side test executables (test_kvcache, test_model, test_reference),
# the C-API tests (test_capi: lavapipe when there is no GPU, validation layers on) and the fuzz
# targets with clang into their own build directory, runs the tests through ctest with
# -fno-sanitize-recover=all (any UB report fails its test; leaks fail too), then each fuzz target
# for a bounded time: fuzz_gguf (GGUF reader + model checks) and fuzz_session (saved-session
# images), each seeded with valid inputs it writes at start-up.
#   scripts/sanitize.sh            env: KV_ASAN_BUILD_DIR (build-asan), KV_FUZZ_SECONDS (60)
# Exit 0 clean; otherwise the failing step's status. A fuzz finding is kept as
# <build>/fuzz/<target>/crash-* (or leak-*, timeout-*, oom-*): fix it, then add it to the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
./scripts/deps.sh
BUILD=${KV_ASAN_BUILD_DIR:-build-asan}
SECS=${KV_FUZZ_SECONDS:-60}

# -O1: the sanitizers' usual trade-off (Debug adds only -g). fuzzer-no-link instruments the
# library for fuzz_session's coverage; ASan's runtime supplies the hooks to the test executables.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
CFLAGS="-O1 -g -fno-omit-frame-pointer $SAN -fsanitize=fuzzer-no-link"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_CXX_FLAGS="$CFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$SAN" \
  -DCMAKE_SHARED_LINKER_FLAGS="$SAN" -DKV_BUILD_SAMPLES=OFF -DKV_BUILD_FUZZERS=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target test_kvcache test_model test_reference test_capi fuzz_gguf fuzz_session

export KV_VALIDATION=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
# Leaks inside Mesa/lavapipe and the Vulkan loader (not kvulkan's) are suppressed, each entry named.
if [ -f tests/sanitizers/lsan.supp ]; then
  export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
fi

# ASan/UBSan see host code only (shaders run in the driver). The float64-exact comparison of every
# fixture and weight type spends ~520 s in the (instrumented) CPU reference and repeats host paths
# the other cases cover, so it is left to the plain test run; so are the long GPU-bound runs whose
# host paths shorter cases cover too (16-session batches over three page types, endless windowed
# generation, 256 speculative tokens: 280, 190 and 70 s in the plain cold run).
# KV_SANITIZE_EXCLUDE overrides.
EXCLUDE=${KV_SANITIZE_EXCLUDE-'GPU logits vs float64-exact reference, every fixture|N sessions decoded in one pass equal|endless generation with a window|plain greedy tokens over 256 tokens'}
echo "== ctest (ASan+UBSan): kvcache, model, reference, capi${EXCLUDE:+ (excluding: $EXCLUDE)}"
(cd "$BUILD" && ctest -R '^(kvcache|model|reference|capi)/' ${EXCLUDE:+-E "$EXCLUDE"} --output-on-failure \
  -j"$(nproc)" --timeout 900)

status=0
for target in fuzz_gguf fuzz_session; do
  work="$BUILD/fuzz/$target"
  mkdir -p "$work/corpus" "$work/seeds"
  seeds=("$work/seeds")
  [ "$target" = fuzz_gguf ] && seeds+=("$ROOT/tests/data/gguf_malformed")
  echo "== $target for ${SECS}s (corpus $work/corpus)"
  rc=0
  KV_FUZZ_SEED_DIR="$work/seeds" "$BUILD/tests/fuzz/$target" -max_total_time="$SECS" -max_len=65536 \
    -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 -artifact_prefix="$work/" \
    "$work/corpus" "${seeds[@]}" >"$work/fuzz.log" 2>&1 || rc=$?
  grep -E '^(INFO: Seed|Done [0-9]+ runs|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$work/fuzz.log" || true
  echo "corpus: $(ls "$work/corpus" | wc -l) files"
  if [ "$rc" != 0 ]; then
    grep -v -E '^#[0-9]+' "$work/fuzz.log" | tail -60
    echo "FAILED: $target found a problem (exit $rc): $(ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null)"
    status=$rc
  fi
done
exit "$status"
