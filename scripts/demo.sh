#!/usr/bin/env bash
# Installs what is missing, builds, and runs kvulkan's main job. For now: the device report
# (every Vulkan device, its features and limits, the one kvulkan picks) and the bandwidth probe.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh >/dev/null
BUILD=${KV_BUILD_DIR:-build}
"$BUILD/bin/kv-info"
"$BUILD/bin/kv-info" --bench
