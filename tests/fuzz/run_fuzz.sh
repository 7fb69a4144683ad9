#!/usr/bin/env bash
# Builds tests/fuzz/fuzz_gguf.cpp with libFuzzer + ASan + UBSan and runs it for a bounded time,
# seeded with tests/data/gguf_malformed/ and the valid tiny models the target writes at start-up.
# Used by the ctest fuzz/gguf; also handy by hand:
#   tests/fuzz/run_fuzz.sh [clang++] [repo root] [work dir] [seconds]
# Exit: 0 clean, 77 skipped (no clang / no libFuzzer runtime), other = a finding (the crashing
# input is kept in <work dir>/ as crash-*; add it to tests/data/gguf_malformed/ once fixed).
set -uo pipefail
CXX=${1:-clang++}
ROOT=${2:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${3:-${TMPDIR:-/tmp}/kv-fuzz-gguf}
SECS=${4:-45}

if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "SKIPPED: $CXX not found (install clang and libclang-rt-14-dev: scripts/deps.sh)"
  exit 77
fi
mkdir -p "$WORK/corpus" || exit 1

# Is the libFuzzer/sanitizer runtime installed (Debian: libclang-rt-14-dev)?
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  >"$WORK/probe.cpp"
if ! "$CXX" -fsanitize=fuzzer,address,undefined "$WORK/probe.cpp" -o "$WORK/probe" >"$WORK/probe.log" 2>&1; then
  echo "SKIPPED: $CXX cannot link -fsanitize=fuzzer,address,undefined (install libclang-rt-14-dev):"
  head -5 "$WORK/probe.log"
  exit 77
fi

BIN="$WORK/fuzz_gguf"
SRCS=("$ROOT/tests/fuzz/fuzz_gguf.cpp" "$ROOT/src/model/gguf.cpp" "$ROOT/src/model/ggml_types.cpp"
      "$ROOT/src/model/arch.cpp" "$ROOT/src/common/error.cpp")
rebuild=0
[ -x "$BIN" ] || rebuild=1
for s in "${SRCS[@]}" "$ROOT/src/model/gguf.h" "$ROOT/src/model/ggml_types.h" "$ROOT/src/model/arch.h" \
         "$ROOT/src/common/error.h" "$ROOT/tests/reference/tiny_model.h"; do
  [ "$s" -nt "$BIN" ] && rebuild=1
done
if [ $rebuild = 1 ]; then
  echo "building $BIN"
  "$CXX" -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -Wall -Wextra -Werror -I"$ROOT/src" -I"$ROOT/include" -I"$ROOT/tests" \
    "${SRCS[@]}" -o "$BIN.tmp" || { echo "FAILED: fuzz target does not build"; exit 1; }
  mv "$BIN.tmp" "$BIN"
fi

echo "fuzzing for ${SECS}s (corpus: $WORK/corpus + $ROOT/tests/data/gguf_malformed + tiny models in $WORK/seeds)"
mkdir -p "$WORK/seeds" || exit 1
cd "$WORK" || exit 1
KV_FUZZ_SEED_DIR="$WORK/seeds" UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  "$BIN" -max_total_time="$SECS" -max_len=16384 -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
  -artifact_prefix="$WORK/" "$WORK/corpus" "$ROOT/tests/data/gguf_malformed" "$WORK/seeds" >"$WORK/fuzz.log" 2>&1
rc=$?
grep -E '^(INFO: Seed|Done [0-9]+ runs|stat::)' "$WORK/fuzz.log"
if [ "$rc" != 0 ]; then
  grep -v -E '^#[0-9]+' "$WORK/fuzz.log" | tail -80
  echo "FAILED: the fuzzer found a problem (exit $rc); inputs: $(ls "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* "$WORK"/oom-* 2>/dev/null)"
fi
exit "$rc"
