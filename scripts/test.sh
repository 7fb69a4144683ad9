#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors), and runs the whole test suite: ctest
# (C++ unit and GPU tests, on lavapipe when there is no GPU, validation layers on) and pytest
# (Python bindings).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh -DKV_WERROR=ON
BUILD=${KV_BUILD_DIR:-build}
export KV_VALIDATION=1
(cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 900)
if [ -d bindings/python/tests ]; then
  # Debian's python3-pytest belongs to /usr/bin/python3 (another python3 may come first on PATH).
  PY=python3
  if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import pytest" 2>/dev/null; then PY=/usr/bin/python3; fi
  KV_LIBRARY="$PWD/$BUILD/libkvulkan.so" KV_BUILD_DIR="$PWD/$BUILD" PYTHONPATH="$PWD/bindings/python" \
    "$PY" -m pytest -q bindings/python/tests
fi
