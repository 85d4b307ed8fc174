#!/usr/bin/env bash
# The CI checks beyond scripts/test.sh:
#   asan  the whole test suite built with AddressSanitizer + UBSan (gcc) in
#         build-asan/ and run through ctest (the NEON-under-qemu test, which
#         cross-compiles its own unsanitized binary, is left out);
#   fuzz  every libFuzzer harness in fuzz/ (fuzz/fuzz_*.cpp) built with clang
#         (ASan + UBSan) in build-fuzz/ and run for FUZZ_SECONDS (default 45)
#         each, seeded from ../shared/data (small files and truncated copies
#         made here), fuzz/seeds/ and the seeds the HF harnesses generate; the
#         corpus grows in build-fuzz/corpus/ from run to run.
# usage: scripts/ci-extra.sh [asan] [fuzz]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data="$root/../shared/data"
"$root/scripts/install-deps.sh"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan fuzz)
jobs=$(nproc)

asan_suite() {
    echo "== ASan+UBSan test suite (build-asan/)"
    local start=$SECONDS
    # -O1 (ASan's advice: a much shorter build than -O3 and still quick tests),
    # assertions on, line tables for the reports. Warnings are not errors here:
    # gcc 12 gives false maybe-uninitialized warnings in <regex> under ASan
    # (the normal build keeps -Werror).
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=None -DNIBBLE_WERROR=OFF \
        -DCMAKE_CXX_FLAGS="-O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
    cmake --build build-asan -j"$jobs" >/dev/null
    echo "ASan+UBSan build: $((SECONDS - start)) s"
    start=$SECONDS
    # detect_leaks: libgomp's thread pool is freed at exit; leaks of our own show up too.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan --output-on-failure -j"$jobs" -E neon_qemu
    echo "ASan+UBSan suite: passed in $((SECONDS - start)) s"
}

# seeds NAME FILE...: copies (or truncates, for FILE:BYTES) into build-fuzz/seeds/NAME.
seeds() {
    local dir="build-fuzz/seeds/$1"
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    local spec
    for spec in "$@"; do
        local file=${spec%%:*} bytes=""
        [ "$file" != "$spec" ] && bytes=${spec##*:}
        local name
        name="$(basename "$file")${bytes:+.$bytes}"
        if [ -n "$bytes" ]; then head -c "$bytes" "$file" >"$dir/$name"; else cp "$file" "$dir/$name"; fi
    done
}

fuzz_all() {
    echo "== libFuzzer harnesses (build-fuzz/, ${FUZZ_SECONDS:-45} s each)"
    local flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -gline-tables-only"
    CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release \
        -DNIBBLE_FUZZ=ON -DNIBBLE_WERROR=OFF -DCMAKE_CXX_FLAGS="$flags" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
    local harnesses=() h src
    for src in fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$src" .cpp)"); done
    local targets=()
    for h in "${harnesses[@]}"; do targets+=(--target "$h"); done
    cmake --build build-fuzz -j"$jobs" "${targets[@]}" >/dev/null

    # A nibble file for the nibble-header seeds, written by this checkout's CLI.
    [ -x build/nibble ] || scripts/build.sh nibble >/dev/null
    local nbl="build-fuzz/stories260K-q4.nbl"
    build/nibble quantize "$data/stories260K.bin" "$nbl" -q --tokenizer "$data/tok512.model" >/dev/null
    seeds fuzz_gguf "$data/stories260K.gguf" "$data/stories260K.gguf:4096" \
        "$data/stories260K.gguf:32768" "$data/ggml-vocab-llama-spm.gguf:65536" \
        "$data/gguf-quant/tiny256-F32.gguf:16384"
    seeds fuzz_llama2c "$data/stories260K.bin" "$data/stories260K_q80.bin" \
        "$data/stories260K_q80.bin:4096" "$data/stories260K.bin:28"
    seeds fuzz_nibble_file "$nbl" "$nbl:16384"
    seeds fuzz_llama2c_vocab "$data/tok512.bin" "$data/tokenizer.bin:16384"
    seeds fuzz_sentencepiece "$data/tok512.model" "$data/tokenizer.model:16384"
    seeds fuzz_tokenizer_text "$data/ggml-vocab-llama-spm.gguf.inp" \
        "$data/corpus/tinystories_excerpt.txt:2048" "$data/corpus/wikitext2-test.txt:2048"
    seeds fuzz_request_json fuzz/seeds/request_json/* "$data/reference/stories260K_greedy.jsonl"
    # The Hugging Face harnesses write their own seeds (the tiny checkpoint).
    for h in fuzz_safetensors fuzz_hf_config; do
        rm -rf "build-fuzz/seeds/$h"
        NIBBLE_FUZZ_WRITE_SEEDS="build-fuzz/seeds/$h" "build-fuzz/fuzz/$h" >/dev/null 2>&1
    done

    local total=0
    for h in "${harnesses[@]}"; do
        mkdir -p "build-fuzz/corpus/$h" "build-fuzz/artifacts"
        local log="build-fuzz/$h.log"
        local max_len=()
        [ "$h" = fuzz_tokenizer_text ] && max_len=(-max_len=1024)
        if ! "build-fuzz/fuzz/$h" "${max_len[@]}" -max_total_time="${FUZZ_SECONDS:-45}" -timeout=20 \
            -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$h-" \
            "build-fuzz/corpus/$h" "build-fuzz/seeds/$h" >"$log" 2>&1; then
            tail -60 "$log"
            echo "FAILED: $h (log $log; crashing input in build-fuzz/artifacts/)"
            return 1
        fi
        local runs
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "$h: ${runs:-?} executions, corpus $(ls "build-fuzz/corpus/$h" | wc -l) inputs"
        total=$((total + ${runs:-0}))
    done
    echo "fuzzing: $total executions in total"
}

for step in "${steps[@]}"; do
    case "$step" in
        asan) asan_suite ;;
        fuzz) fuzz_all ;;
        *) echo "unknown step '$step' (asan, fuzz)" >&2; exit 2 ;;
    esac
done
