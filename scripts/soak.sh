#!/usr/bin/env bash
# Soak: a scripted chat of SOAK_TURNS turns (default 2,000) and a `nibble
# generate` run over SOAK_PROMPTS prompts (default 20,000) on stories260K, with
# the resident memory (VmRSS) sampled twice a second. For each run it prints the
# RSS after the first minute, at the end and the peak, and fails when the end is
# more than 5% above the first-minute figure (memory that grows with use).
# Not a test (it takes minutes); figures go to docs/RELIABILITY.md.
# usage: scripts/soak.sh [chat] [generate]   (default: both; build/nibble or $NIBBLE)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
data="$root/../shared/data"
nibble="${NIBBLE:-$root/build/nibble}"  # NIBBLE=path: another binary
[ -x "$nibble" ] || scripts/build.sh nibble >/dev/null
turns=${SOAK_TURNS:-2000}
prompts=${SOAK_PROMPTS:-20000}
threads=${SOAK_THREADS:-1}
first_after=${SOAK_FIRST_SECONDS:-60}
work=$(mktemp -d /tmp/nibble_soak.XXXXXX)
trap 'rm -rf "$work"' EXIT
model=(-m "$data/stories260K.bin" --tokenizer "$data/tok512.model")

# N lines of 3-7 words cut from the TinyStories excerpt, cycled.
text_lines() {
    grep -o '[A-Z][a-z]*[^.!?]*' "$data/corpus/tinystories_excerpt.txt" |
        awk 'NF >= 3 { n = 3 + NR % 5; if (n > NF) n = NF; s = $1;
                       for (i = 2; i <= n; ++i) s = s " " $i; print s }' >"$work/lines"
    awk -v n="$1" '{ l[NR] = $0 } END { for (i = 0; i < n; ++i) print l[i % NR + 1] }' "$work/lines"
}

# watch LABEL PID: samples PID's VmRSS until it exits, then prints the figures
# and returns its exit status (1 when the RSS grew more than 5%).
watch() {
    local label=$1 pid=$2 start=$SECONDS first="" last="" peak="" sample
    while kill -0 "$pid" 2>/dev/null; do
        sample=$(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { if (r) print r, h }' \
            "/proc/$pid/status" 2>/dev/null || true)
        if [ -n "$sample" ]; then
            last=${sample% *}
            peak=${sample#* }
            [ -z "$first" ] && [ $((SECONDS - start)) -ge "$first_after" ] && first=$last
        fi
        sleep 0.5
    done
    local status=0
    wait "$pid" || status=$?
    local seconds=$((SECONDS - start))
    if [ "$status" -ne 0 ]; then
        echo "$label: FAILED (exit $status) after $seconds s"
        return 1
    fi
    if [ -z "$first" ]; then
        echo "$label: finished in $seconds s, before the first ${first_after} s: no figure"
        return 1
    fi
    echo "$label: $seconds s; RSS after ${first_after} s $first KiB, at the end $last KiB," \
        "peak $peak KiB ($(awk -v a="$first" -v b="$last" 'BEGIN { printf "%+.2f%%", 100 * (b - a) / a }'))"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b <= a * 1.05) }' ||
        { echo "$label: resident memory grew more than 5%"; return 1; }
}

soak_chat() {
    text_lines "$turns" >"$work/turns"
    # stdin is not a terminal: one turn per line; the context (512) fills and
    # the oldest turns are dropped again and again.
    "$nibble" chat "${model[@]}" -n 48 -s 7 -t "$threads" <"$work/turns" >"$work/chat.out" \
        2>"$work/chat.err" &
    watch "chat ($turns turns, -n 48)" $!
    echo "chat: $(cat "$work/chat.out" "$work/chat.err" | grep -c "context full" || true) context-full notices"
}

soak_generate() {
    text_lines "$prompts" >"$work/prompts"
    "$nibble" generate "${model[@]}" -f "$work/prompts" --out "$work/out.jsonl" -n 32 \
        --parallel 8 -s 7 -t "$threads" 2>"$work/generate.err" &
    watch "generate ($prompts prompts, -n 32, --parallel 8)" $!
    local lines
    lines=$(wc -l <"$work/out.jsonl")
    echo "generate: $lines output lines"
    [ "$lines" -eq "$prompts" ] || { echo "generate: expected $prompts lines"; return 1; }
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(chat generate)
for step in "${steps[@]}"; do
    case "$step" in
        chat) soak_chat ;;
        generate) soak_generate ;;
        *) echo "unknown step '$step' (chat, generate)" >&2; exit 2 ;;
    esac
done
