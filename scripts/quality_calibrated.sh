#!/usr/bin/env bash
# Regenerates the calibrated-quantization table of docs/QUALITY.md: FP32, RTN,
# GPTQ and AWQ (and the act-order / combined variants at group 32, without
# double quantization) for q4, q4a
# and nf4 at groups 32 and 64, with and without double quantization, on
# stories260K and aidreams260K. Calibration uses the first half of the
# TinyStories excerpt's documents and every score the second half (never the
# same text): perplexity (documents protocol), KL divergence and top-1
# agreement against the FP32 model, and the file size. Prints Markdown.
#
# usage: scripts/quality_calibrated.sh [NIBBLE_BINARY] [DATA_DIR] [WORK_DIR]
# MODELS="stories260K aidreams260K", FORMATS="q4 q4a nf4", GROUP_SIZES="32 64",
# DOUBLE_QUANT="off on" and METHODS (comma-separated, e.g. "rtn,gptq --act-order";
# the ratio column needs rtn) select rows (to run parts side by side; every row
# is deterministic).
set -euo pipefail
models="${MODELS:-stories260K aidreams260K}"
formats="${FORMATS:-q4 q4a nf4}"
groups="${GROUP_SIZES:-32 64}"
dqs="${DOUBLE_QUANT:-off on}"
only_methods="${METHODS:-}"

here="$(cd "$(dirname "$0")/.." && pwd)"
nibble="${1:-$here/build/nibble}"
data="${2:-$here/../shared/data}"
work="${3:-$(mktemp -d)}"
mkdir -p "$work"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# The excerpt's documents as nibble splits them (a lone line break ends a story,
# a blank line separates paragraphs): the first half (57 of 115) to calibrate,
# the rest to evaluate.
calib="$work/calib.txt"
eval_text="$work/eval.txt"
tr -d '\r' <"$data/corpus/tinystories_excerpt.txt" | awk -v calib="$calib" -v ev="$eval_text" '
    { lines[NR] = $0 }
    END {
        docs = 0
        for (i = 1; i <= NR; i++) {
            if (lines[i] != "" && (i == 1 || lines[i - 1] != "")) docs++
            doc[i] = docs
        }
        half = int(docs / 2)
        for (i = 1; i <= NR; i++) print lines[i] > (doc[i] <= half ? calib : ev)
    }'

# score MODEL BASE [nibble perplexity options]: "perplexity KL top1"
score() {
    local model=$1 base=$2
    shift 2
    local out
    out=$("$nibble" perplexity -t 1 -q -f "$eval_text" -m "$model" --kl-base "$base" "$@")
    local ppl kl top1
    ppl=$(sed -n 's/.*perplexity \([0-9.]*\)$/\1/p' <<<"$out")
    kl=$(sed -n 's/^KL divergence mean \([0-9.]*\),.*/\1/p' <<<"$out")
    top1=$(sed -n 's/.*top-1 agreement \([0-9.]*\)%.*/\1/p' <<<"$out")
    echo "$ppl $kl $top1"
}

[ -n "${NO_HEADER:-}" ] || {
    echo "| model | method | format | group | dq | file bytes | perplexity | vs FP32 | increase / RTN's | KL divergence | top-1 agreement |"
    echo "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"
}
for spec in "stories260K:$data/stories260K.bin:$data/tok512.model" \
            "aidreams260K:$data/extra/aidreams260K.bin:$data/extra/aidreams260K_tok512.bin"; do
    IFS=: read -r name src tok <<<"$spec"
    [[ " $models " == *" $name "* ]] || continue
    base="$work/$name.nbkl"
    fp32=$("$nibble" perplexity -t 1 -q -f "$eval_text" -m "$src" --tokenizer "$tok" \
        --save-logits "$base" | sed -n 's/.*perplexity \([0-9.]*\)$/\1/p')
    echo "| $name | FP32 | f32 | - | - | $(stat -c %s "$src") | $fp32 | 0 | | 0 | 100% |"
    for fmt in $formats; do
        for group in $groups; do
            for dq in $dqs; do
                methods=(rtn gptq awq)
                [ "$group" = 32 ] && [ "$dq" = off ] &&
                    methods+=("gptq --act-order --static-groups" "gptq --act-order" "awq+gptq")
                rtn_increase=""
                for method in "${methods[@]}"; do
                    [ -z "$only_methods" ] || [[ ",$only_methods," == *",$method,"* ]] || continue
                    flags=(--format "$fmt" --group-size "$group" --method $method)
                    [ "$dq" = on ] && flags+=(--double-quant)
                    [ "${method%% *}" != rtn ] && flags+=(--calib "$calib")
                    out="$work/$name-$fmt-g$group-$dq-${method// /}.nbl"
                    "$nibble" quantize "$src" "$out" --tokenizer "$tok" -q "${flags[@]}" >/dev/null
                    read -r ppl kl top1 <<<"$(score "$out" "$base")"
                    increase=$(awk -v p="$ppl" -v b="$fp32" 'BEGIN { printf "%.6f", p - b }')
                    [ "$method" = rtn ] && rtn_increase=$increase
                    ratio=$(awk -v i="$increase" -v r="$rtn_increase" \
                        'BEGIN { if (r > 0) printf "%.2fx", i / r; else printf "-" }')
                    change=$(awk -v p="$ppl" -v b="$fp32" 'BEGIN { printf "%+.2f%%", 100 * (p / b - 1) }')
                    echo "| $name | $method | $fmt | $group | $dq | $(stat -c %s "$out") | $ppl | $change | $ratio | $kl | $top1% |"
                done
            done
        done
    done
done
