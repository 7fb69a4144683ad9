#!/usr/bin/env bash
# Builds the C# binding with Mono's mcs and runs its NUnit tests against a built libkvulkan.
#
#   run_tests.sh <build dir with libkvulkan.so> <shared dir> [output dir]
#
# Steps: compile unity/Runtime/*.cs (the binding's only copy of its sources) as C# 7.2, the newest
# mcs accepts and older than what Unity's compilers take, warnings as errors; check that every
# framework type the assembly references exists in .NET Standard 2.0 (a subset of 2.1, Unity's
# profile; type level only, not members); compile the Unity sample against a stub of the few
# UnityEngine types it uses; compile and run the tests with nunit-console.
# KV_ABI_LAYOUT may name the kv-abi-layout program (default: <build>/bin/kv-abi-layout).
# Exits 77 (ctest: skipped) when mcs, mono or the NUnit runner is missing, or the test model is
# absent; any other failure is non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../unity/Runtime
build=${1:?usage: run_tests.sh <build dir> <shared dir> [out dir]}
shared=${2:?usage: run_tests.sh <build dir> <shared dir> [out dir]}
out=${3:-$build/csharp}

skip() { echo "SKIPPED: $*"; exit 77; }
for tool in mcs mono nunit-console ikdasm; do
  command -v "$tool" >/dev/null || skip "$tool not found (apt-get install mono-devel nunit-console)"
done
nunit=$(ls /usr/lib/cli/nunit.framework-2.6*/nunit.framework.dll 2>/dev/null | head -1 || true)
[ -n "$nunit" ] || skip "nunit.framework 2.6 not found (apt-get install nunit-console)"
facade=/usr/lib/mono/4.5/Facades/netstandard.dll
[ -f "$facade" ] || skip "$facade not found (mono-devel)"
[ -f "$shared/models/stories260K/stories260K.gguf" ] || skip "no test model under $shared/models (set KV_SHARED_DIR)"
[ -f "$build/libkvulkan.so" ] || { echo "FAILED: $build/libkvulkan.so not built"; exit 1; }

mkdir -p "$out"
mcs -nologo -langversion:7.2 -target:library -warnaserror+ -warn:4 \
    -out:"$out/Kvulkan.dll" "$src"/*.cs

# Framework types the binding uses, each of which .NET Standard 2.0 must have (type level only).
ikdasm "$facade" | sed -n 's/^\.class extern forwarder \(.*\)$/\1/p' | sort -u >"$out/netstandard-types.txt"
ikdasm "$out/Kvulkan.dll" | grep -o '\[\(mscorlib\|System\|System\.Core\)\][A-Za-z0-9_.`]*' | sed 's/^\[[^]]*\]//' |
  sort -u >"$out/used-types.txt"
missing=$(comm -23 "$out/used-types.txt" "$out/netstandard-types.txt")
if [ -n "$missing" ]; then
  echo "FAILED: the binding uses types that .NET Standard 2.0 lacks:"; echo "$missing"; exit 1
fi
[ "$(wc -l <"$out/used-types.txt")" -gt 30 ] || { echo "FAILED: type scan found too little"; exit 1; }
echo "netstandard: all $(wc -l <"$out/used-types.txt") framework types used are in .NET Standard 2.0"

# The Unity package's sample compiles against this API (UnityEngine is a declarations-only stub).
mcs -nologo -langversion:7.2 -target:library -warnaserror+ -r:"$out/Kvulkan.dll" -out:"$out/UnitySample.dll" \
    "$here/unity_stub/UnityEngine.cs" "$here/../unity/Samples~/StreamText/"*.cs

mcs -nologo -target:library -warnaserror+ -r:"$out/Kvulkan.dll" -r:"$nunit" -r:System.Core.dll \
    -out:"$out/Kvulkan.Tests.dll" "$here"/*.cs
cp "$nunit" "$out/"

export LD_LIBRARY_PATH="$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KV_SHARED_DIR="$shared"
export KV_ABI_LAYOUT="${KV_ABI_LAYOUT:-$build/bin/kv-abi-layout}"
# -nothread/-noshadow: the tests run on the console's own thread, from $out, no copying.
cd "$out"
nunit-console -nologo -nothread -noshadow -labels -xml="$out/TestResult.xml" "$out/Kvulkan.Tests.dll"
