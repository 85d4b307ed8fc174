#!/usr/bin/env bash
# Regenerates the quality table of docs/QUALITY.md: every format x group size x
# double quantization, quantized with `nibble quantize`, scored with
# `nibble perplexity` on the TinyStories excerpt. Prints Markdown on stdout.
#
# usage: scripts/quality_table.sh [NIBBLE_BINARY] [DATA_DIR] [WORK_DIR]
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
nibble="${1:-$here/build/nibble}"
data="${2:-$here/../shared/data}"
work="${3:-$(mktemp -d)}"
text="$data/corpus/tinystories_excerpt.txt"
mkdir -p "$work"

# perplexity MODEL [--tokenizer T]: the perplexity printed by nibble (one thread:
# results do not depend on the thread count, and the 2-core machine is shared).
perplexity() {
    "$nibble" perplexity -t 1 -f "$text" -m "$@" | sed -n 's/.*perplexity \([0-9.]*\)$/\1/p'
}

# row MODEL_NAME SOURCE TOKENIZER BASE_PPL RECIPE_NAME FORMAT GROUP DQ RULE [--keep ...]
row() {
    local name=$1 src=$2 tok=$3 base=$4 recipe=$5 fmt=$6 group=$7 dq=$8 rule=$9
    shift 9
    local out="$work/$name-$recipe-$fmt-g$group-$dq-$rule.nbl"
    local dq_flag=()
    [ "$dq" = on ] && dq_flag=(--double-quant)
    local report
    report=$("$nibble" quantize "$src" "$out" --tokenizer "$tok" --format "$fmt" \
        --group-size "$group" --rule "$rule" "${dq_flag[@]}" "$@" 2>/dev/null)
    # "total: N weights in B bytes, X bits per weight (linear layers Y bpw)"
    local bpw linear
    bpw=$(sed -n 's/^total:.* \([0-9.]*\) bits per weight.*/\1/p' <<<"$report")
    linear=$(sed -n 's/.*(linear layers \([0-9.]*\) bpw).*/\1/p' <<<"$report")
    local ppl
    ppl=$(perplexity "$out")
    local size
    size=$(stat -c %s "$out")
    local change
    change=$(awk -v p="$ppl" -v b="$base" 'BEGIN { printf "%+.1f%%", 100 * (p / b - 1) }')
    echo "| $name | $recipe | $fmt | $group | $dq | $rule | $size | $bpw | $linear | $ppl | $change |"
}

echo "| model | recipe | format | group | dq | rule | file bytes | bpw (weights) | bpw (linear) | perplexity | vs FP32 |"
echo "|---|---|---|---|---|---|---:|---:|---:|---:|---:|"
for spec in "stories260K:$data/stories260K.bin:$data/tok512.model" \
            "aidreams260K:$data/extra/aidreams260K.bin:$data/extra/aidreams260K_tok512.bin"; do
    IFS=: read -r name src tok <<<"$spec"
    base=$(perplexity "$src" --tokenizer "$tok")
    fp32_size=$(stat -c %s "$src")
    echo "| $name | FP32 source | f32 | - | - | - | $fp32_size | 32 | 32 | $base | 0 |"
    for recipe in linear default; do
        keep=()
        [ "$recipe" = linear ] && keep=(--keep token_embd.weight=f32 --keep output.weight=f32)
        for fmt in q4 q4a nf4 q8; do
            for group in 32 64 128; do
                for dq in off on; do
                    [ "$fmt" = q8 ] && [ "$dq" = on ] && continue
                    row "$name" "$src" "$tok" "$base" "$recipe" "$fmt" "$group" "$dq" search "${keep[@]}"
                done
            done
        done
    done
    # The simple scale rules, for comparison with the reference RTN numbers.
    for rule in minus8 simple; do
        for group in 32 64; do
            row "$name" "$src" "$tok" "$base" linear q4 "$group" off "$rule" \
                --keep token_embd.weight=f32 --keep output.weight=f32
        done
    done
    # Everything 4-bit, embedding included (no q8 exception).
    for fmt in q4 q4a nf4; do
        row "$name" "$src" "$tok" "$base" all-4bit "$fmt" 32 off search --no-default-keep
    done
done
