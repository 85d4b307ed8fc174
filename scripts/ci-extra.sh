#!/usr/bin/env bash
# The CI checks beyond scripts/test.sh, on ONE clang build (build-san/): the
# whole project compiled with AddressSanitizer + UBSan (-O1) and libFuzzer's
# coverage instrumentation (fuzzer-no-link; not in kernels/ and tests/, see
# fuzz/coverage-ignorelist.txt), the harnesses in fuzz/ linked with libFuzzer.
#   asan  builds nibble, the tests it runs and the harnesses in build-san/
#         and runs the whole test suite through ctest; any sanitizer report
#         (written to build-san/sanitizer-logs/, also from the nibble
#         processes the CLI tests start) fails the step. Left out:
#         test_kernels_neon_qemu (it cross-compiles its own unsanitized
#         aarch64 build and runs it under qemu), check_isa_symbols (it only
#         compiles kernel files and reads their symbol tables) and
#         test_install (it checks that the installed binary does not name the
#         build tree, which sanitizer builds always do: their reports carry
#         source paths). For CI's time budget also test_quant_calibrated and
#         test_fast_path, the two longest under the sanitizers (nearly half of
#         the suite's test time; both ran clean in the full run recorded in
#         docs/RELIABILITY.md), and test_loader_robustness (the next longest:
#         truncated and corrupted copies of the real model and tokenizer
#         files, loaded and run, which is what the fuzz step below does under
#         the same sanitizers, seeded with the same files, by the hundred
#         thousand); SAN_ALL=1 runs them too. The normal suite runs them all.
#   fuzz  every libFuzzer harness in fuzz/ (fuzz/fuzz_*.cpp) run for
#         FUZZ_SECONDS (default 45) each, as many at once as there are cores,
#         seeded from ../shared/data (small files and truncated copies made
#         here), fuzz/seeds/ and the seeds the HF harnesses generate; the
#         corpus grows in build-san/corpus/ from run to run.
# usage: scripts/ci-extra.sh [asan] [fuzz]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data="$root/../shared/data"
"$root/scripts/install-deps.sh"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan fuzz)
jobs=$(nproc)
out=build-san
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan-suppressions.txt"

# build TARGET...: configures build-san/ (once) and builds the targets (all
# when none); the build's output goes to build-san/build.log, shown on failure.
build() {
    local flags="-O1 -g1 -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined"
    flags+=" -fno-omit-frame-pointer -fsanitize-coverage-ignorelist=$root/fuzz/coverage-ignorelist.txt"
    # Warnings are not errors here: the normal gcc build keeps -Werror.
    mkdir -p "$out"
    CC=clang-14 CXX=clang++-14 cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=None -DNIBBLE_WERROR=OFF \
        -DNIBBLE_FUZZ=ON -DCMAKE_CXX_FLAGS="$flags" \
        -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >"$out/configure.log" 2>&1 ||
        { cat "$out/configure.log"; return 1; }
    local targets=() t
    for t in "$@"; do targets+=(--target "$t"); done
    if ! cmake --build "$out" -j"$jobs" "${targets[@]}" >"$out/build.log" 2>&1; then
        grep -E -A4 'error:' "$out/build.log" | head -80
        echo "FAILED: sanitizer build (log $out/build.log)"
        return 1
    fi
}

asan_suite() {
    echo "== ASan+UBSan test suite ($out/)"
    # test_quantize_stream measures glibc malloc's resident memory (mallopt),
    # which ASan's allocator replaces.
    local start=$SECONDS skip="test_kernels_neon_qemu|check_isa_symbols|test_install|test_quantize_stream"
    [ "${SAN_ALL:-0}" = 1 ] || skip+="|test_quant_calibrated|test_fast_path|test_loader_robustness"
    # Only what ctest runs (and the harnesses): not the benchmarks, not the skipped tests.
    local targets=(nibble) src name
    for src in tests/test_*.cpp fuzz/fuzz_*.cpp; do
        name=$(basename "$src" .cpp)
        [[ $name =~ ^($skip|test_main)$ ]] || targets+=("$name")
    done
    build "${targets[@]}"
    echo "ASan+UBSan build: $((SECONDS - start)) s"
    start=$SECONDS
    local logs="$root/$out/sanitizer-logs"
    rm -rf "$logs"
    mkdir -p "$logs"
    # Reports go to files (one per process) so that none is lost in a test that
    # checks a child's stderr; detect_leaks: leaks of our own fail too.
    local status=0
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$logs/asan" \
        UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan" \
        ctest --test-dir "$out" --output-on-failure -j"$jobs" \
        -E "^($skip)\$" || status=1
    # A log that holds only LSan's "Suppressions used" statistics (the libomp
    # leak of fuzz/lsan-suppressions.txt) is not a report.
    local f
    for f in "$logs"/*; do
        [ -e "$f" ] || continue
        grep -qE 'ERROR|runtime error|WARNING' "$f" || rm -f "$f"
    done
    if [ -n "$(ls -A "$logs")" ]; then
        for f in "$logs"/*; do
            echo "--- $f"
            head -60 "$f"
        done
        echo "FAILED: sanitizer reports in $logs"
        return 1
    fi
    [ $status -eq 0 ] || { echo "FAILED: tests under ASan+UBSan"; return 1; }
    echo "ASan+UBSan suite: passed in $((SECONDS - start)) s, no sanitizer report"
}

# seeds NAME FILE...: copies (or truncates, for FILE:BYTES) into $out/seeds/NAME.
seeds() {
    local dir="$out/seeds/$1"
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

# fuzz_one NAME: runs harness NAME for FUZZ_SECONDS on its corpus and seeds.
fuzz_one() {
    local h=$1 max_len=()
    mkdir -p "$out/corpus/$h"
    [ "$h" = fuzz_tokenizer_text ] && max_len=(-max_len=1024)
    "$out/fuzz/$h" "${max_len[@]}" -max_total_time="${FUZZ_SECONDS:-45}" -timeout=20 \
        -rss_limit_mb=2560 -print_final_stats=1 -artifact_prefix="$out/artifacts/$h-" \
        "$out/corpus/$h" "$out/seeds/$h" >"$out/$h.log" 2>&1
}

fuzz_all() {
    echo "== libFuzzer harnesses ($out/, ${FUZZ_SECONDS:-45} s each)"
    local harnesses=() h src
    for src in fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$src" .cpp)"); done
    local start=$SECONDS
    build nibble "${harnesses[@]}"
    echo "harness build: $((SECONDS - start)) s"

    # A nibble file for the nibble-header seeds, written by this checkout's CLI.
    local nbl="$out/stories260K-q4.nbl"
    "$out/nibble" quantize "$data/stories260K.bin" "$nbl" -q --tokenizer "$data/tok512.model" >/dev/null
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
    seeds fuzz_previous_output fuzz/seeds/previous_output/*
    # The Hugging Face harnesses write their own seeds (the tiny checkpoint).
    for h in fuzz_safetensors fuzz_hf_config fuzz_hf_tokenizer; do
        rm -rf "$out/seeds/$h"
        NIBBLE_FUZZ_WRITE_SEEDS="$out/seeds/$h" "$out/fuzz/$h" >/dev/null 2>&1
    done

    # The harnesses run side by side, one per core (each is one process).
    local pids=() failed=() running=0
    mkdir -p "$out/artifacts"
    for h in "${harnesses[@]}"; do
        if [ $running -ge "$jobs" ]; then
            wait -n || true
            running=$((running - 1))
        fi
        fuzz_one "$h" &
        pids+=($!)
        running=$((running + 1))
    done
    local i total=0
    for i in "${!harnesses[@]}"; do
        h=${harnesses[$i]}
        if ! wait "${pids[$i]}"; then
            failed+=("$h")
            continue
        fi
        local runs
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$h.log" | tail -1)
        echo "$h: ${runs:-?} executions, corpus $(find "$out/corpus/$h" -type f | wc -l) inputs"
        total=$((total + ${runs:-0}))
    done
    for h in "${failed[@]}"; do
        tail -60 "$out/$h.log"
        echo "FAILED: $h (log $out/$h.log; crashing input in $out/artifacts/)"
    done
    [ ${#failed[@]} -eq 0 ] || return 1
    echo "fuzzing: $total executions in total"
}

for step in "${steps[@]}"; do
    case "$step" in
        asan) asan_suite ;;
        fuzz) fuzz_all ;;
        *) echo "unknown step '$step' (asan, fuzz)" >&2; exit 2 ;;
    esac
done
