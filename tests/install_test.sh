#!/bin/sh
# `cmake --install` into a temporary prefix, then the installed nibble runs from
# a folder outside the source and build trees: --version, and a greedy story
# with stories260K. The binary must not name the source or build folder.
#   usage: install_test.sh <cmake> <build dir> <source dir> <data dir> <version>
set -eu
cmake=$1
build=$2
src=$3
data=$4
version=$5
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() {
    echo "FAIL: $*"
    exit 1
}
"$cmake" --install "$build" --prefix "$prefix" >/dev/null
bin="$prefix/bin/nibble"
[ -x "$bin" ] || fail "no $bin after cmake --install"
mkdir "$prefix/elsewhere"
cd "$prefix/elsewhere"

info=$("$bin" --version) || fail "nibble --version exited with $?"
echo "$info"
echo "$info" | head -n 1 | grep -Eq "^nibble $version \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)$" ||
    fail "first line of --version: $(echo "$info" | head -n 1)"
echo "$info" | grep -Eq "^matmul kernel: [a-z0-9_]+ " || fail "--version names no matmul kernel"

story=$("$bin" run -m "$data/stories260K.bin" --tokenizer "$data/tok512.model" \
    -p "Once upon a time" -n 12 --temp 0 2>/dev/null) || fail "nibble run exited with $?"
echo "$story"
case "$story" in
    "Once upon a time, there was a little girl"*) ;;
    *) fail "unexpected story" ;;
esac

src_real=$(cd "$src" && pwd -P)
for tree in "$src" "$src_real" "$build"; do
    if grep -aqF "$tree" "$bin"; then fail "the installed binary names $tree"; fi
done
echo "installed nibble runs on its own"
