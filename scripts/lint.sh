#!/usr/bin/env bash
# Static checks: clang-format-14 --dry-run --Werror (.clang-format) over every
# C++ file, then clang-tidy-14 (.clang-tidy) over the project's .cpp files in
# build/compile_commands.json (headers through them), one process per core.
# Configures build/ first if it has no compile database.
#   usage: scripts/lint.sh [--format-only] [FILE.cpp ...]   (default: every .cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
format_only=0
if [ "${1:-}" = "--format-only" ]; then
    format_only=1
    shift
fi

status=0
echo "== clang-format-14"
mapfile -t cxx_files < <(git ls-files '*.cpp' '*.h')
if clang-format-14 --dry-run --Werror "${cxx_files[@]}"; then
    echo "clang-format: ${#cxx_files[@]} files, clean"
else
    status=1
fi
[ "$format_only" = 1 ] && exit $status

echo "== clang-tidy-14"
if [ ! -f build/compile_commands.json ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNIBBLE_WERROR=ON >/dev/null
fi
# build_info.cpp is generated at build time; nibble's compile database names it.
cmake --build build --target nibble_build_info >/dev/null
if [ $# -gt 0 ]; then
    sources=("$@")
else
    mapfile -t sources < <(git ls-files '*.cpp')
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --quiet and 2>/dev/null keep only the findings (clang-tidy's own counts of
# suppressed warnings in system headers go to stderr).
printf '%s\n' "${sources[@]}" |
    xargs -P "$(nproc)" -I{} sh -c \
        'clang-tidy-14 -p build --quiet "$1" 2>/dev/null || echo "$1: clang-tidy failed"' _ "$root/{}" \
        >"$log" || true
if grep -Eq "(warning|error):|clang-tidy failed" "$log"; then
    cat "$log"
    echo "clang-tidy: $(grep -Ec '(warning|error):' "$log") findings"
    status=1
else
    echo "clang-tidy: ${#sources[@]} files, no findings"
fi
exit $status
