#!/usr/bin/env bash
# Configures and builds nibble (Release, -O3) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/install-deps.sh"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DNIBBLE_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
