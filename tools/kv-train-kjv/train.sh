#!/usr/bin/env bash
# Reproduces models/kjv-demo/ (the model of ./scripts/demo.sh) from scratch:
#
#   ./tools/kv-train-kjv/train.sh [WORKDIR]      # default WORKDIR: build/kjv-train
#
# The recipe, the time it took and the loss it reached: models/kjv-demo/README.md.
# Trains with tools/kv-train-kjv/train_kjv.py (one CPU thread, niced), writes the GGUF with
# kvulkan's own writer (kv-make-model --import, F16 weights) and copies it with torch's reference
# logits into models/kjv-demo/. Needs (Debian 12): python3-torch, bible-kjv (the `bible` reader of
# bible-kjv-text), and a real BLAS for torch: with Debian's default reference BLAS one step is
# ~10x slower (libopenblas0-serial fixes that; it need not be the system default, see
# KV_TRAIN_BLAS_DIR below). CI never runs this: the GGUF is committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-build/kjv-train}
BUILD=${KV_BUILD_DIR:-build}
for p in python3-torch bible-kjv; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "train.sh: install $p (apt-get install -y --no-install-recommends $p)" >&2; exit 1; }
done
# OpenBLAS for torch without making it the system's libblas: its folder first on the library path.
BLAS_DIR=${KV_TRAIN_BLAS_DIR:-/usr/lib/x86_64-linux-gnu/openblas-serial}
[ -e "$BLAS_DIR/libblas.so.3" ] && export LD_LIBRARY_PATH="$BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cmake --build "$BUILD" --target kv-make-model >/dev/null
mkdir -p "$WORK"
bible -l9999 gen1:1-rev22:21 >"$WORK/kjv.txt"
nice -n 10 /usr/bin/python3 tools/kv-train-kjv/train_kjv.py --out "$WORK" --corpus "$WORK/kjv.txt"
"$BUILD/bin/kv-make-model" -o models/kjv-demo/kjv-demo.gguf --import "$WORK/import" --type f16
cp "$WORK/reference.bin" models/kjv-demo/reference-logits.bin
echo "train.sh: wrote models/kjv-demo/kjv-demo.gguf and reference-logits.bin (log: $WORK/train.log)"
