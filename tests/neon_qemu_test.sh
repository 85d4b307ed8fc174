#!/bin/sh
# The NEON kernels under emulation: configures a second build tree with
# cmake/aarch64-toolchain.cmake (kernels and their tests only), builds it, and
# runs its ctest, which starts each test under qemu-aarch64 with and without
# the dotprod extension.
#   usage: neon_qemu_test.sh <cmake> <source dir> <build dir> <werror 0|1>
# Exit code 77 (skipped) when the cross compiler or qemu is missing.
set -eu
cmake=$1
src=$2
out=$3
werror=$4
if ! command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    echo "aarch64 cross compiler or qemu-aarch64 not installed: skipping"
    exit 77
fi
"$cmake" -S "$src" -B "$out" --toolchain "$src/cmake/aarch64-toolchain.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DNIBBLE_WERROR="$werror" >/dev/null
"$cmake" --build "$out" -j2
ctest_bin="$(dirname "$cmake")/ctest"
[ -x "$ctest_bin" ] || ctest_bin=ctest
"$ctest_bin" --test-dir "$out" --output-on-failure
