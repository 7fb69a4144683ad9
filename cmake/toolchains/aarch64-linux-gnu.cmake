# Cross-compiling kvulkan for aarch64 Linux on a Debian/Ubuntu x86-64 host (scripts/cross-arm64.sh):
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Needs g++-aarch64-linux-gnu, the arm64 Vulkan loader through multiarch
# (dpkg --add-architecture arm64; apt-get install libvulkan-dev:arm64: the library to link,
# headers identical to the host's) and, to run what was built, qemu-user-static.
#
# Programs run at build time are the host's (glslangValidator compiles the shaders, python3
# generates the Unicode tables); the SPIR-V they make is the same for every target. Libraries are
# found in the multiarch directory /usr/lib/aarch64-linux-gnu (CMAKE_LIBRARY_ARCHITECTURE), never
# in the host's /usr/lib/x86_64-linux-gnu.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Test executables (and doctest's test discovery at build time) run under user-mode QEMU: the
# cross toolchain's glibc and libstdc++ from /usr/aarch64-linux-gnu, the rest (libvulkan.so.1)
# from the multiarch directories, which QEMU reaches when a path is absent under -L.
find_program(KV_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(KV_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${KV_QEMU_AARCH64} -L /usr/aarch64-linux-gnu
      -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
endif()
