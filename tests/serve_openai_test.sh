#!/bin/sh
# The official `openai` npm package as a client of nibble serve: installed into
# a temporary folder with npm at each run (never vendored), then
# serve_openai_client.mjs runs against a server on a free loopback port.
# Exit 77 (skipped, with the reason) when node or npm is missing or the npm
# registry cannot be reached.
# Usage: serve_openai_test.sh NIBBLE SOURCE_DIR DATA_DIR
set -u
nibble=$1 src=$2 data=$3
command -v node >/dev/null && command -v npm >/dev/null || { echo "skipped: node/npm not installed"; exit 77; }
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
cp "$src/tests/serve_openai_client.mjs" "$dir/"
if ! (cd "$dir" && timeout 180 npm install --no-audit --no-fund --silent openai >npm.log 2>&1); then
    echo "skipped: npm could not install the openai package: $(tail -n 2 "$dir/npm.log" | tr '\n' ' ')"
    exit 77
fi
"$nibble" serve -m "$data/stories260K.bin" --tokenizer "$data/tok512.model" -t 1 --port 0 \
    --alias stories --api-key test-key >"$dir/serve.log" 2>&1 &
pid=$!
i=0
while ! grep -q ready "$dir/serve.log"; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then echo "FAIL: the server did not start"; cat "$dir/serve.log"; exit 1; fi
    sleep 0.05
done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/serve.log" | head -1)
timeout 60 node "$dir/serve_openai_client.mjs" "http://127.0.0.1:$port/v1"
