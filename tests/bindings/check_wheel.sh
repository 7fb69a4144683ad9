#!/usr/bin/env bash
# The Python wheel as a user gets it: built offline from the just-built library
# (bindings/python/build_wheel.sh: python3 -m build --wheel --no-isolation), installed with pip
# into a fresh virtual environment, and the binding tests run there against the installed package
# and its bundled library - not the source tree, not KV_LIBRARY, not the build directory.
#
#   check_wheel.sh <libkvulkan.so> <source dir> [pytest selection...]
#
# The venv uses --system-site-packages only to reach Debian's pytest (no package index here);
# the kvulkan it imports and the library it loads are checked, in the pytest process itself, to
# be the venv's. Exit 77 (skip) only when python3-build is not installed.
set -euo pipefail
LIB=$1 SRC=$2
shift 2
PY=${KV_PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
if ! "$PY" -I -c "import build.__main__" 2>/dev/null; then
  echo "SKIPPED: $PY has no 'build' module: install python3-build (scripts/deps.sh) to build the wheel"
  exit 77
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s.%N)
KV_PYTHON=$PY bash "$SRC/bindings/python/build_wheel.sh" "$LIB" "$WORK/dist" >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log"; echo "FAILED: the wheel did not build"; exit 1; }
shopt -s nullglob
wheels=("$WORK"/dist/*.whl)
[ ${#wheels[@]} -eq 1 ] || { ls -l "$WORK/dist"; echo "FAILED: expected one wheel"; exit 1; }
WHEEL=${wheels[0]}
machine=$("$PY" -c "import platform; print(platform.machine())")
case "$(basename "$WHEEL")" in
  kvulkan-*-py3-none-linux_"$machine".whl) ;;
  *) echo "FAILED: $(basename "$WHEEL") is not tagged py3-none-linux_$machine"; exit 1 ;;
esac
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "kvulkan/libkvulkan.so" in names and "kvulkan/_native.py" in names, names
EOF
t1=$(date +%s.%N)

"$PY" -m venv --without-pip --system-site-packages "$WORK/venv"
VPY=$WORK/venv/bin/python
# pip from Debian's python3-pip (reached through the system site), installing into the venv.
"$VPY" -m pip install --no-index --no-deps --no-cache-dir --disable-pip-version-check -q "$WHEEL"
t2=$(date +%s.%N)

# A pytest plugin (imported before the tests) that fails the run unless kvulkan comes from the
# venv and the library loaded is the one bundled in it.
mkdir "$WORK/plugin"
cat >"$WORK/plugin/kv_wheel_check.py" <<'EOF'
import os
import sys

import pytest

VENV = os.path.realpath(sys.prefix)


def _under_venv(path):
    return os.path.realpath(path).startswith(VENV + os.sep)


def pytest_configure(config):
    import kvulkan
    if not _under_venv(kvulkan.__file__):
        raise pytest.UsageError(f"kvulkan imported from {kvulkan.__file__}, not from the venv {VENV}")


def pytest_sessionfinish(session, exitstatus):
    from kvulkan import _native
    bundled = os.path.join(os.path.dirname(_native.__file__), "libkvulkan.so")
    loaded = _native._lib._name if _native._lib is not None else None
    if loaded is None or os.path.realpath(loaded) != os.path.realpath(bundled) or not _under_venv(loaded):
        print(f"\nFAILED: the tests ran on {loaded}, not on the wheel's library {bundled}")
        session.exitstatus = 1
    else:
        print(f"\nkvulkan from the wheel: {os.path.dirname(_native.__file__)}, library {loaded}")
EOF

# Run from an empty directory (python -m puts the working directory first on sys.path), with no
# variable that names another library; KV_BUILD_DIR stays for the struct layout tool only.
mkdir "$WORK/run"
cd "$WORK/run"
env -u KV_LIBRARY PYTHONPATH="$WORK/plugin" PYTHONDONTWRITEBYTECODE=1 KV_VALIDATION=1 \
  "$VPY" -m pytest -q -p kv_wheel_check -p no:cacheprovider "${@:-$SRC/bindings/python/tests}"
t3=$(date +%s.%N)
"$PY" -c "import sys; t=[float(x) for x in sys.argv[1:]]; print(f'wheel built in {t[1]-t[0]:.1f} s, venv + pip install {t[2]-t[1]:.1f} s, tests {t[3]-t[2]:.1f} s')" \
  "$t0" "$t1" "$t2" "$t3"
