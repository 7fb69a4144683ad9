#!/usr/bin/env bash
# Installs the Debian 12 packages kvulkan needs to build and test, if any is missing. Idempotent.
set -euo pipefail
PKGS=(build-essential cmake pkg-config binutils python3 python3-pytest
      libvulkan-dev glslang-tools mesa-vulkan-drivers vulkan-validationlayers vulkan-tools
      doctest-dev unicode-data clang libclang-rt-14-dev abigail-tools
      openjdk-17-jdk junit5 mono-devel nunit-console
      python3-build python3-setuptools python3-wheel python3-pip python3-venv python3-numpy)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
