#!/usr/bin/env bash
# kvulkan's main job: generate text on the GPU (or lavapipe) with the KV cache, and show what the
# cache buys.
#
#   ./scripts/demo.sh                    # a small model with RANDOM weights made by kvulkan's own
#                                        # GGUF writer: the text is gibberish by construction
#   ./scripts/demo.sh model.gguf ["prompt"] [tokens]   # a real GGUF (Llama, Qwen2, Mistral, ...)
#
# Installs what is missing (Debian 12), builds, prints the device report, then generates.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh >/dev/null
BUILD=${KV_BUILD_DIR:-build}
BIN="$BUILD/bin"

"$BIN/kv-info"
echo

if [ $# -ge 1 ]; then
  MODEL=$1
  PROMPT=${2:-"Once upon a time"}
  N=${3:-128}
  "$BIN/kv-info" -m "$MODEL"
  echo
  "$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n "$N"
  exit 0
fi

MODEL="$BUILD/demo-random.gguf"
"$BIN/kv-make-model" -o "$MODEL" --dim 256 --layers 6 --heads 8 --kv-heads 2 --ffn 768 --vocab 1000 --type f16 >/dev/null
cat <<MSG
== No model given: using $MODEL
   A llama-architecture model with RANDOM weights (seeded, so the run is deterministic), written by
   kvulkan's own GGUF writer. Its text is gibberish by construction; what matters is the machinery.
   Pass a real GGUF to generate real text:  ./scripts/demo.sh path/to/model.gguf "prompt"
MSG
"$BIN/kv-info" -m "$MODEL"
PROMPT="Once upon a time the little cat saw a big red ball in the park"
N=32
echo
echo "== With the KV cache: each step computes K/V for the new token only and reads the cached ones"
"$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n $N --ids 2>"$BUILD/demo-cached.log" | tee "$BUILD/demo-cached.ids"
grep '^\[kv-generate\]' "$BUILD/demo-cached.log"
echo
echo "== Without the cache (--no-cache): every step recomputes the whole sequence from its first token"
"$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n $N --ids --no-cache 2>"$BUILD/demo-nocache.log" | tee "$BUILD/demo-nocache.ids"
grep '^\[kv-generate\]' "$BUILD/demo-nocache.log"
echo
if cmp -s "$BUILD/demo-cached.ids" "$BUILD/demo-nocache.ids"; then
  echo "== Same tokens with and without the cache (the invariant the cache rests on)."
else
  echo "== WARNING: the cached and uncached runs produced different tokens"
  exit 1
fi
c=$(sed -n 's/.*decode: .*tok\/s, \([0-9.]*\) ms\/token.*/\1/p' "$BUILD/demo-cached.log")
u=$(sed -n 's/.*decode: .*tok\/s, \([0-9.]*\) ms\/token.*/\1/p' "$BUILD/demo-nocache.log")
awk -v c="$c" -v u="$u" 'BEGIN { printf "== Per generated token: %.2f ms with the cache, %.2f ms without (%.1fx)\n", c, u, u / c }'
echo "== KV memory: see the 'KV cache' line above: 2 x layers x kv_heads x head_dim x tokens x bytes."
