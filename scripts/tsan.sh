#!/usr/bin/env bash
# ThreadSanitizer: builds the C-API tests with clang -fsanitize=thread into their own build
# directory and runs the threading tests (sessions of one model decoding on several threads, two
# threads hammering one session, the worker thread of kv_submit_* with its tickets, callbacks and
# cancellation, timeline-semaphore ordering, the thread-local last error) on lavapipe with validation layers on. A data race fails the run.
# tests/sanitizers/tsan.supp may silence races inside Mesa/lavapipe or the Vulkan loader, never in
# kvulkan's own frames.
#   scripts/tsan.sh               env: KV_TSAN_BUILD_DIR (build-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
./scripts/deps.sh
BUILD=${KV_TSAN_BUILD_DIR:-build-tsan}

FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread -DKV_BUILD_SAMPLES=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target test_capi

export KV_VALIDATION=1
TSAN="halt_on_error=1:second_deadlock_stack=1:history_size=4"
[ -f tests/sanitizers/tsan.supp ] && TSAN="$TSAN:suppressions=$ROOT/tests/sanitizers/tsan.supp"
export TSAN_OPTIONS="$TSAN"
(cd "$BUILD" && ctest -R '^capi/(threads|async|scheduling|abi: the last error is thread-local)' --output-on-failure --timeout 900)
