#!/usr/bin/env bash
# Quick start: install what is missing, build, and write a greedy story with stories260K.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh nibble
build/nibble run -m ../shared/data/stories260K.bin --tokenizer ../shared/data/tok512.model \
    -p "Once upon a time" -n 200 --temp 0
