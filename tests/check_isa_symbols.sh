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
base="-std=c++20 -O0 -fopenmp -I$src -w"
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
# Every x86_64 instruction set folder, with the flags its isa_flags.txt gives
# (kernels/CMakeLists.txt); its functions belong in nibble::kernels::<isa> (or
# nibble::vec_<isa>).
for flag_file in "$src"/kernels/*/isa_flags.txt; do
    # shellcheck disable=SC2046
    set -- $(grep -v '^#' "$flag_file")
    [ "$1" = x86_64 ] || continue
    shift
    dir=$(dirname "$flag_file")
    isa=$(basename "$dir")
    for f in "$dir"/*.cpp; do
        check "kernels/$isa/$(basename "$f")" "$*" "nibble::(kernels::$isa|vec_$isa)::"
    done
done
exit $status
