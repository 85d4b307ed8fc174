#!/bin/sh
# Cross-compiles the kernels and tests/test_kernels_matmul.cpp for aarch64 and runs
# them under qemu-aarch64, once on a CPU with the dotprod extension (-cpu max) and
# once without it (-cpu cortex-a53).
#   usage: run_neon_tests.sh <source dir> <output dir>
# Exit code 77 (skipped) when the cross compiler or qemu is missing.
set -eu
src=$1
out=$2
cxx=aarch64-linux-gnu-g++
if ! command -v "$cxx" >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    echo "aarch64 cross compiler or qemu-aarch64 not installed: skipping"
    exit 77
fi
mkdir -p "$out/obj"
# Plain ARMv8-A everywhere: only kernels/neon/*_dotprod.cpp enables SDOT (by pragma),
# so the binary must also run on a CPU without it.
flags="-std=c++20 -O2 -march=armv8-a -fopenmp -ffp-contract=off -Wall -Wextra \
-Wno-unused-parameter -Werror -I$src"
sources="$(ls "$src"/kernels/*.cpp "$src"/kernels/neon/*.cpp) $src/tests/test_main.cpp \
$src/tests/test_kernels_matmul.cpp $src/tests/test_kernels_vec_ops.cpp"
objects=""
for s in $sources; do
    o="$out/obj/$(echo "$s" | sed "s|^$src/||; s|/|_|g").o"
    objects="$objects $o"
    # Recompile when the source or any kernel header is newer than the object.
    if [ ! -f "$o" ] || [ -n "$(find "$s" "$src/kernels" "$src/tests" -newer "$o" \
        \( -name '*.h' -o -name "$(basename "$s")" \) 2>/dev/null | head -1)" ]; then
        echo "$s"
    fi
done | xargs -r -P 2 -I{} sh -c \
    'o="'"$out"'/obj/$(echo "{}" | sed "s|^'"$src"'/||; s|/|_|g").o"; '"$cxx $flags"' -c "{}" -o "$o"'
objects=""
for s in $sources; do
    objects="$objects $out/obj/$(echo "$s" | sed "s|^$src/||; s|/|_|g").o"
done
# shellcheck disable=SC2086
$cxx -static -fopenmp -o "$out/test_kernels_matmul" $objects
for cpu in max cortex-a53; do
    echo "== qemu-aarch64 -cpu $cpu"
    OMP_NUM_THREADS=2 qemu-aarch64 -cpu "$cpu" "$out/test_kernels_matmul"
done
