#!/usr/bin/env bash
# Side-by-side speed against llama.cpp on this machine, in one run: nibble and
# llama-bench alternate (../shared/anchors/compare.py), medians and ratios.
# Run before and after every kernel change; record the output, the commit and
# the CPU (printed first) in docs/BENCHMARKS.md.
#
#   scripts/bench_vs_llamacpp.sh NIBBLE_MODEL GGUF [THREADS...]
#
# NIBBLE_MODEL: a nibble file of the same shape (nibble quantize of the
# anchor's F16 GGUF, or nibble synth); GGUF: llama.cpp's file, e.g.
# ../anchors/models/tinyllama-1.1b-synth-Q4_0.gguf from ../shared/anchors/build.sh.
# Environment: P (prompt length, default 256), N (decoded tokens, 32), ROUNDS
# (3), REPS (repetitions per round, 2), LLAMA_BENCH (default: the native
# build in ../anchors), NIBBLE (default build/nibble), NIBBLE_KERNEL (passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench_vs_llamacpp.sh NIBBLE_MODEL GGUF [THREADS...]}
gguf=${2:?usage: bench_vs_llamacpp.sh NIBBLE_MODEL GGUF [THREADS...]}
shift 2
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
llama_bench=${LLAMA_BENCH:-../anchors/llama.cpp/build/bin/llama-bench}
nibble=${NIBBLE:-build/nibble}
for f in "$model" "$gguf" "$llama_bench" "$nibble"; do
    [ -e "$f" ] || { echo "bench_vs_llamacpp: $f: not found" >&2; exit 1; }
done

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), nibble $(git rev-parse --short HEAD)"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "cpu flags: $(grep -o -w 'avx2\|avx_vnni\|avx512f\|avx512bw\|avx512vl\|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "kernel: $("$nibble" --version 2>/dev/null | grep -i kernel | head -1)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${threads[@]}"; do
    echo "== $t thread(s): $model vs $gguf"
    python3 ../shared/anchors/compare.py --nibble "$nibble" --nibble-model "$model" \
        --llama-bench "$llama_bench" --gguf "$gguf" -t "$t" -p "${P:-256}" -n "${N:-32}" \
        -r "${REPS:-2}" --rounds "${ROUNDS:-3}"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
