#!/usr/bin/env bash
# Configures and builds nibble (Release, -O3) into build/; arguments are build
# targets (default: everything, tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/install-deps.sh"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNIBBLE_WERROR=ON >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
