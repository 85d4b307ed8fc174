#!/bin/sh
# Compiles every x86 ISA kernel file without optimisation (where nothing is
# inlined) and fails if it emits a weak function symbol outside its own ISA
# namespace: such a copy (an inline helper, a std:: function) would be merged
# by the linker with the portable code's copy, and portable callers could end
# up running AVX2/AVX-512 instructions on a CPU without them.
#   usage: check_isa_symbols.sh <source dir> <c++ compiler> <work dir>
set -eu
src=$1
cxx=$2
out=$3
mkdir -p "$out"
base="-std=c++20 -O0 -fopenmp -I$src -mavx2 -mfma -mf16c -w"
status=0
check() {  # file, extra flags, allowed namespace pattern (matched at the start of the
           # name, or after a function template's return type)
    o="$out/$(basename "$1").o"
    # shellcheck disable=SC2086
    $cxx $base $2 -c "$src/$1" -o "$o"
    bad=$(nm -C "$o" | awk '$2 == "W"' | cut -d' ' -f3- | grep -Ev "(^|[ *&])($3)" || true)
    if [ -n "$bad" ]; then
        echo "$1: symbols that another translation unit could share:"
        echo "$bad" | sed 's/^/    /'
        status=1
    else
        echo "$1: ok"
    fi
}
for f in "$src"/kernels/avx2/*.cpp; do
    check "kernels/avx2/$(basename "$f")" "" 'nibble::(kernels::avx2|vec_avx2)::'
done
for f in "$src"/kernels/avxvnni/*.cpp; do
    check "kernels/avxvnni/$(basename "$f")" "-mavxvnni" 'nibble::kernels::avxvnni::'
done
for f in "$src"/kernels/avx512/*.cpp; do
    check "kernels/avx512/$(basename "$f")" "-mavx512f -mavx512bw -mavx512vl -mavx512vnni" \
        'nibble::kernels::avx512::'
done
for f in "$src"/kernels/amx/*.cpp; do
    check "kernels/amx/$(basename "$f")" \
        "-mavx512f -mavx512bw -mavx512vl -mavx512vnni -mamx-tile -mamx-int8" 'nibble::kernels::amx::'
done
exit $status
