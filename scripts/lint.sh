#!/usr/bin/env bash
# Static checks: clang-format-14 --dry-run --Werror (.clang-format) over every
# C++ file, then clang-tidy-14 (.clang-tidy) over every tracked .cpp file, one
# process per core, at low priority. The compile commands come from
# build/compile_commands.json (configured here if missing); the files build/
# does not compile on this machine (fuzz/, kernels/neon/) get the commands of
# files like them (scripts/lint_database.py). A header's findings show once.
# First, README.md and docs/*.md are checked for absolute paths of one
# machine: only system paths (/usr, /dev, /proc, /etc, /sys, /tmp in
# examples), the server's HTTP routes (/v1/...) and URLs may appear, as a
# reader elsewhere has nothing else.
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
echo "== absolute paths in docs"
# A path starts with "/" after a space, quote, bracket or "=" (not after a
# word, a digit, ":" as in URLs, "~" or "$VAR") and has at least two parts,
# so "/reset" or "KiB/s" do not count.
path_pattern="(^|[^[:alnum:]_.:/~}\$-])/[[:alnum:]_.+-]+/[^[:space:]\`'\")*,;]*"
system_paths='^[^:]+:[0-9]+:[^/]?/(usr|dev|proc|etc|sys|tmp|v1)/'
mapfile -t doc_files < <(find README.md docs -name '*.md' | sort)
doc_hits=$(grep -noE "$path_pattern" "${doc_files[@]}" | grep -vE "$system_paths" || true)
if [ -n "$doc_hits" ]; then
    # file:line:match -> one line per path found.
    printf '%s\n' "$doc_hits" |
        sed -E 's|^([^:]+:[0-9]+):[^/]?(/.*)$|\1: absolute path \2 (docs may name only /usr /dev /proc /etc /sys /tmp, /v1/ routes and URLs)|'
    status=1
else
    echo "docs: ${#doc_files[@]} files, no absolute paths"
fi

echo "== clang-format-14"
mapfile -t cxx_files < <(git ls-files '*.cpp' '*.h')
if clang-format-14 --dry-run --Werror "${cxx_files[@]}"; then
    echo "clang-format: ${#cxx_files[@]} files, clean"
else
    status=1
fi
[ "$format_only" = 1 ] && exit $status

echo "== clang-tidy-14"
start=$SECONDS
if [ ! -f build/compile_commands.json ]; then
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNIBBLE_WERROR=ON >/dev/null
fi
mapfile -t all_sources < <(python3 scripts/lint_database.py "$root" build/compile_commands.json build/lint)
if [ $# -gt 0 ]; then
    sources=()
    for f in "$@"; do sources+=("$(realpath "$f")"); done
else
    sources=("${all_sources[@]}")
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --quiet and 2>/dev/null keep only the findings (clang-tidy's own counts of
# suppressed warnings in system headers go to stderr).
printf '%s\n' "${sources[@]}" |
    nice -n 10 xargs -P "$(nproc)" -I{} sh -c \
        'clang-tidy-14 -p build/lint --quiet "$1" 2>/dev/null || echo "$1: clang-tidy failed"' _ {} \
        >"$log" || true
# One line per finding: a header included by many files reports it once each.
findings=$(grep -E "(warning|error):|clang-tidy failed" "$log" | sort -u || true)
if [ -n "$findings" ]; then
    printf '%s\n' "$findings"
    echo "clang-tidy: $(printf '%s\n' "$findings" | grep -c .) findings in ${#sources[@]} files ($((SECONDS - start)) s)"
    status=1
else
    echo "clang-tidy: ${#sources[@]} files, no findings ($((SECONDS - start)) s)"
fi
exit $status
