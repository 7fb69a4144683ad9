#!/usr/bin/env bash
# kvulkan's main job: generate text on the GPU (or lavapipe) with the KV cache, and show what the
# cache buys.
#
#   ./scripts/demo.sh           # the demo model, models/kjv-demo/kjv-demo.gguf: a small llama that
#                               # kvulkan's own tools trained on the King James Bible (it writes
#                               # KJV-like English; see models/kjv-demo/README.md)
#   ./scripts/demo.sh --random  # a model with RANDOM weights from kvulkan's GGUF writer, larger
#                               # (for timings: any shape; its text is gibberish by construction)
#   ./scripts/demo.sh model.gguf ["prompt"] [tokens]   # a real GGUF (Llama, Qwen2, Mistral, ...)
#
# The first two print the text, then generate the same tokens again without the cache
# (--no-cache) and compare: same tokens, the time per token of each, and the KV memory.
# Installs what is missing (Debian 12), builds, prints the device report, then generates.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh >/dev/null
BUILD=${KV_BUILD_DIR:-build}
BIN="$BUILD/bin"

"$BIN/kv-info"
echo

if [ $# -ge 1 ] && [ "$1" != "--random" ]; then
  MODEL=$1
  PROMPT=${2:-"Once upon a time"}
  N=${3:-128}
  "$BIN/kv-info" -m "$MODEL"
  echo
  "$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n "$N"
  exit 0
fi

if [ "${1:-}" = "--random" ]; then
  MODEL="$BUILD/demo-random.gguf"
  "$BIN/kv-make-model" -o "$MODEL" --dim 256 --layers 6 --heads 8 --kv-heads 2 --ffn 768 --vocab 1000 --type f16 >/dev/null
  cat <<MSG
== --random: using $MODEL
   A llama-architecture model with RANDOM weights (seeded, so the run is deterministic), written by
   kvulkan's own GGUF writer. Its text is gibberish by construction; what matters is the machinery.
MSG
  PROMPT="Once upon a time the little cat saw a big red ball in the park"
  N=32
  OPTS=()
else
  MODEL=models/kjv-demo/kjv-demo.gguf
  cat <<MSG
== No model given: using $MODEL
   A 2M-parameter llama trained by kvulkan's own tools (tools/kv-train-kjv) on the King James
   Bible (public domain) and written by kvulkan's GGUF writer: small, so expect KJV-flavoured
   English rather than scripture. Greedy decoding with a repetition penalty of 1.3 (plain greedy
   loops on "of the LORD"), so the run is deterministic.
   Other runs:  ./scripts/demo.sh --random   (random weights, for timings)
                ./scripts/demo.sh path/to/model.gguf "prompt" [tokens]
MSG
  PROMPT="In the beginning"
  N=48
  OPTS=(--repeat-penalty 1.3)
fi
"$BIN/kv-info" -m "$MODEL"
echo
echo "== With the KV cache: each step computes K/V for the new token only and reads the cached ones"
"$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n $N "${OPTS[@]}" --ids 2>"$BUILD/demo-cached.log" >"$BUILD/demo-cached.ids"
# The text: the prompt's ids and the generated ones, detokenized together.
{ printf '%s' "$PROMPT" | "$BIN/kv-tokenize" -m "$MODEL" --bos; cat "$BUILD/demo-cached.ids"; } |
  tr ',' ' ' | "$BIN/kv-tokenize" -m "$MODEL" --decode | sed 's/^/   | /'
echo
grep '^\[kv-generate\]' "$BUILD/demo-cached.log"
echo
echo "== Without the cache (--no-cache): every step recomputes the whole sequence from its first token"
"$BIN/kv-generate" -m "$MODEL" -p "$PROMPT" -n $N "${OPTS[@]}" --ids --no-cache 2>"$BUILD/demo-nocache.log" >"$BUILD/demo-nocache.ids"
grep '^\[kv-generate\]' "$BUILD/demo-nocache.log"
echo
if cmp -s "$BUILD/demo-cached.ids" "$BUILD/demo-nocache.ids"; then
  echo "== Same $N tokens with and without the cache (the invariant the cache rests on)."
else
  echo "== WARNING: the cached and uncached runs produced different tokens"
  exit 1
fi
c=$(sed -n 's/.*decode: .*tok\/s, \([0-9.]*\) ms\/token.*/\1/p' "$BUILD/demo-cached.log")
u=$(sed -n 's/.*decode: .*tok\/s, \([0-9.]*\) ms\/token.*/\1/p' "$BUILD/demo-nocache.log")
awk -v c="$c" -v u="$u" 'BEGIN { printf "== Per generated token: %.2f ms with the cache, %.2f ms without (%.1fx)\n", c, u, u / c }'
echo "== KV memory: see the 'KV cache' line above: 2 x layers x kv_heads x head_dim x tokens x bytes."
