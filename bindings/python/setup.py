"""Wheel build hooks for kvulkan (metadata lives in pyproject.toml).

Without KV_WHEEL_LIBRARY this builds the plain, pure-Python package (``py3-none-any``): it finds
libkvulkan at run time (KV_LIBRARY, a build directory, the system loader).

With ``KV_WHEEL_LIBRARY`` set to a built libkvulkan (the file, or the build directory holding
``libkvulkan.so``), the library is copied into the package as ``kvulkan/libkvulkan.so`` (debug
sections stripped unless ``KV_WHEEL_STRIP=0``) and the wheel is tagged for the library's platform
(``py3-none-linux_x86_64``, ``py3-none-linux_aarch64``, ...): any Python 3 can load it through
ctypes, but only on that platform. The tag comes from the library's ELF header, so a library
cross-compiled for arm64 gives an arm64 wheel. ``bindings/python/build_wheel.sh`` wraps this.

Offline with Debian's packages: ``python3 -m build --wheel --no-isolation`` (python3-build,
python3-setuptools, python3-wheel). The library needs libvulkan.so.1 (the Vulkan loader) and a
Vulkan driver on the target machine; neither is bundled.
"""
import os
import shutil
import struct
import subprocess
import sys
import sysconfig

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
except ImportError:
    from wheel.bdist_wheel import bdist_wheel  # Debian 12: python3-wheel

BUNDLED = "libkvulkan.so"
# ELF e_machine -> the machine part of a wheel platform tag (PEP 425: linux_<uname -m>).
ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def _library():
    """The file named by KV_WHEEL_LIBRARY (a build directory means its libkvulkan.so), or None."""
    given = os.environ.get("KV_WHEEL_LIBRARY")
    if not given:
        return None
    path = os.path.join(given, BUNDLED) if os.path.isdir(given) else given
    if not os.path.isfile(path):
        sys.exit(f"KV_WHEEL_LIBRARY={given}: {path} is not a file (build the kvulkan target first)")
    return os.path.realpath(path)  # libkvulkan.so -> libkvulkan.so.0 -> libkvulkan.so.0.2.0


def _elf_machine(path):
    """The ELF machine name of ``path`` (``x86_64``, ``aarch64``...), or None for a non-ELF file."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    machine = struct.unpack(order + "H", head[18:20])[0]
    if machine not in ELF_MACHINES:
        sys.exit(f"{path}: ELF machine {machine} has no wheel platform tag here")
    return ELF_MACHINES[machine]


def _platform_tag(path):
    machine = _elf_machine(path)
    if machine is None:  # not ELF (a .dylib/.dll named by hand): the building machine's platform
        return sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "linux_" + machine


def _copy_library(src, dst):
    """Copies src to dst, without debug sections unless KV_WHEEL_STRIP=0 (about 6x smaller)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.environ.get("KV_WHEEL_STRIP", "1") != "0":
        machine = _elf_machine(src)
        host = os.uname().machine if hasattr(os, "uname") else None
        strip = os.environ.get("STRIP") or ("strip" if machine == host else f"{machine}-linux-gnu-strip")
        if machine and shutil.which(strip):
            subprocess.run([strip, "--strip-debug", "-o", dst, src], check=True)
            return
        print(f"kvulkan wheel: {strip} not found, bundling {src} with its debug sections", file=sys.stderr)
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)


class BuildPy(build_py):
    """Puts the library (or nothing: a stale copy from an earlier bundled build is removed) into
    the build tree; the source tree is never written."""

    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "kvulkan", BUNDLED)
        lib = _library()
        if lib:
            _copy_library(lib, dst)
        elif os.path.exists(dst) and not os.path.exists(os.path.join("kvulkan", BUNDLED)):
            os.remove(dst)


class BdistWheel(bdist_wheel):
    """A wheel carrying the library is platform-specific but not tied to a Python version or ABI
    (ctypes, no extension module): py3-none-<platform>."""

    def finalize_options(self):
        super().finalize_options()
        if _library():
            self.root_is_pure = False

    def get_tag(self):
        lib = _library()
        if not lib:
            return super().get_tag()
        return "py3", "none", _platform_tag(lib)


class BinaryDistribution(Distribution):
    """With the library, the package is installed as platform-specific (platlib, the wheel's root)."""

    def has_ext_modules(self):
        return bool(_library()) or super().has_ext_modules()


setup(cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel}, distclass=BinaryDistribution)
