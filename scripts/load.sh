#!/usr/bin/env bash
# Load test of a running OpenAI-compatible server: scripts/load.mjs with N
# clients for T seconds, and the server's resident memory before and after.
#   scripts/load.sh PID URL CLIENTS SECONDS [load.mjs options...]
# e.g. scripts/load.sh "$(pgrep -n nibble)" http://127.0.0.1:8080 16 60 --max-tokens 64
set -euo pipefail
pid=$1 url=$2 clients=$3 seconds=$4
shift 4
rss() { awk '/^VmRSS/ {print $2 / 1024 " MB"}' "/proc/$pid/status"; }
echo "server RSS at start: $(rss)"
node "$(dirname "$0")/load.mjs" --url "$url" --clients "$clients" --seconds "$seconds" "$@"
echo "server RSS at end: $(rss)"
