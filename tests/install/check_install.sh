#!/usr/bin/env bash
# Installs a built kvulkan into a temporary prefix and builds an out-of-tree C program against it
# both ways a user would: CMake (find_package(kvulkan CONFIG), kvulkan::kvulkan) and pkg-config.
# Runs both, and the installed kv-info sample.
#   check_install.sh <build dir> <repo root>
set -euo pipefail
BUILD=$1
ROOT=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$BUILD" --prefix "$prefix" >"$work/install.log"
echo "installed into $prefix:"
(cd "$prefix" && find . -type f -o -type l | sort | sed 's/^/  /')

lib=$(find "$prefix" -name 'libkvulkan.so.*.*.*' | head -1)
[ -n "$lib" ] || { echo "FAIL: no versioned libkvulkan.so.X.Y.Z installed"; exit 1; }
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
libdir=$(dirname "$lib")
[ "$soname" = libkvulkan.so.0 ] || { echo "FAIL: soname is '$soname', expected libkvulkan.so.0"; exit 1; }
[ -L "$libdir/libkvulkan.so.0" ] && [ -L "$libdir/libkvulkan.so" ] || { echo "FAIL: soname/dev symlinks missing"; exit 1; }
[ -f "$prefix/include/kvulkan/kvulkan.h" ] || { echo "FAIL: header not installed"; exit 1; }
cmp -s "$prefix/include/kvulkan/kvulkan.h" "$ROOT/include/kvulkan/kvulkan.h" || { echo "FAIL: installed header differs"; exit 1; }

echo "== CMake: find_package(kvulkan CONFIG)"
cmake -S "$ROOT/tests/install/consumer" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/cmake.log" ||
  { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/cmake-build" >"$work/cmake-build.log" || { cat "$work/cmake-build.log"; exit 1; }
"$work/cmake-build/consumer"

echo "== pkg-config kvulkan"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
echo "  version $(pkg-config --modversion kvulkan), cflags '$(pkg-config --cflags kvulkan)', libs '$(pkg-config --libs kvulkan)'"
cc -std=c99 -Wall -Werror "$ROOT/tests/install/consumer/main.c" -o "$work/pc-consumer" \
  $(pkg-config --cflags --libs kvulkan) -Wl,-rpath,"$(pkg-config --variable=libdir kvulkan)"
"$work/pc-consumer"

echo "== installed sample"
"$prefix/bin/kv-info" >"$work/kv-info.log" 2>&1 || { cat "$work/kv-info.log"; exit 1; }
head -3 "$work/kv-info.log" | sed 's/^/  /'
echo "install: ok"
