#!/usr/bin/env bash
# Builds the kvulkan wheel that carries a built libkvulkan, offline (Debian: python3-build,
# python3-setuptools, python3-wheel; no package index is asked for anything):
#
#   bindings/python/build_wheel.sh <build dir or libkvulkan.so> [out dir (default: dist)]
#
# gives <out dir>/kvulkan-<version>-py3-none-linux_<machine>.whl, the machine read from the
# library (a library cross-compiled for arm64 gives linux_aarch64). The sources are copied to a
# temporary directory first, so the checkout gets no build/ or egg-info. Equivalent by hand:
#   KV_WHEEL_LIBRARY=<build dir> python3 -m build --wheel --no-isolation bindings/python
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 <build dir or libkvulkan.so> [out dir]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
LIB=$(realpath "$1")
OUT=$(realpath -m "${2:-dist}")
PY=${KV_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/src"
cp -r "$HERE/pyproject.toml" "$HERE/setup.py" "$HERE/README.md" "$HERE/kvulkan" "$TMP/src/"
find "$TMP/src" -name __pycache__ -prune -exec rm -rf {} +
cd "$TMP"  # python -m puts the working directory on sys.path: a ./build directory is not `build`
KV_WHEEL_LIBRARY=$LIB "$PY" -m build --wheel --no-isolation --outdir "$OUT" "$TMP/src"
