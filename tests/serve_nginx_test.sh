#!/bin/sh
# Two `nibble serve` replicas behind nginx (deploy/nginx.conf, run unprivileged
# in the foreground from a temporary prefix), all on loopback: requests spread
# over both; one replica killed mid-run loses no request that had not started
# streaming (nginx retries it on the other). Exit 77 (skipped) without nginx.
# Usage: serve_nginx_test.sh NIBBLE SOURCE_DIR DATA_DIR
set -u
nibble=$1 src=$2 data=$3
nginx_bin=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
if [ -z "$nginx_bin" ]; then echo "skipped: nginx is not installed"; exit 77; fi
command -v node >/dev/null || { echo "skipped: node (used to find a free port) is not installed"; exit 77; }
dir=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; sleep 0.2; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$dir"/*.log; do echo "== $f"; tail -5 "$f"; done; exit 1; }

free_port() { /usr/bin/env node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

start_replica() {  # name -> sets port_<name>
    "$nibble" serve -m "$data/stories260K.bin" --tokenizer "$data/tok512.model" -t 1 \
        --port 0 --parallel 1 --queue 8 -c 32768 >"$dir/$1.log" 2>&1 &
    pids="$pids $!"
    eval "pid_$1=$!"
    i=0
    while ! grep -q ready "$dir/$1.log"; do
        i=$((i + 1)); [ $i -gt 200 ] && fail "replica $1 did not start"; sleep 0.05
    done
    eval "port_$1=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/$1.log" | head -1)"
}
start_replica a
start_replica b
lb=$(free_port)
sed -e "s/127.0.0.1:8081/127.0.0.1:$port_a/" -e "s/127.0.0.1:8082/127.0.0.1:$port_b/" \
    -e "s/listen 127.0.0.1:8080/listen 127.0.0.1:$lb/" "$src/deploy/nginx.conf" >"$dir/nginx.conf"
"$nginx_bin" -p "$dir" -c nginx.conf -g 'daemon off;' >"$dir/nginx.log" 2>&1 &
pids="$pids $!"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$lb/health"; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "nginx did not start"; sleep 0.05
done

completions() {  # port -> /v1/completions answered 200 by that replica
    curl -s "http://127.0.0.1:$1/metrics" |
        sed -n 's/^nibble_requests_total{endpoint="\/v1\/completions",status="200"} //p'
}

# 1. Eight short requests at once are spread over both replicas.
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o "$dir/short$i.json" -w '%{http_code}\n' "http://127.0.0.1:$lb/v1/completions" \
        -d '{"prompt":"Once upon a time","max_tokens":200,"ignore_eos":true}' >"$dir/short$i.code" &
done
wait_all() { for f in "$@"; do i=0; while [ ! -s "$f" ]; do i=$((i + 1)); [ $i -gt 1200 ] && fail "no answer in $f"; sleep 0.05; done; done; }
wait_all $(for i in 1 2 3 4 5 6 7 8; do echo "$dir/short$i.code"; done)
sleep 0.2
[ "$(cat "$dir"/short*.code | sort -u)" = "200" ] || fail "short requests: $(cat "$dir"/short*.code | tr '\n' ' ')"
na=$(completions "$port_a"); nb=$(completions "$port_b")
echo "spread: replica a ${na:-0}, replica b ${nb:-0}"
[ "${na:-0}" -gt 0 ] && [ "${nb:-0}" -gt 0 ] || fail "requests not spread over both replicas"

# 2. Six long streams (each replica runs one, queues two); replica a is killed
# while its first stream runs.
body='{"prompt":"Once upon a time","max_tokens":1500,"ignore_eos":true,"stream":true,"temperature":0}'
for i in 1 2 3 4 5 6; do
    (curl -sN "http://127.0.0.1:$lb/v1/completions" -d "$body" >"$dir/long$i.out"; echo $? >"$dir/long$i.rc") &
done
i=0
until [ "$(curl -s "http://127.0.0.1:$port_a/metrics" | sed -n 's/^nibble_queue_length //p')" = "2" ]; do
    i=$((i + 1)); [ $i -gt 200 ] && fail "replica a never had two requests queued"; sleep 0.05
done
kill -9 "$pid_a"
wait_all $(for i in 1 2 3 4 5 6; do echo "$dir/long$i.rc"; done)
lost=0 cut=0 done_ok=0
for i in 1 2 3 4 5 6; do
    if grep -q 'data: \[DONE\]' "$dir/long$i.out"; then
        done_ok=$((done_ok + 1))
    elif grep -q '"text"' "$dir/long$i.out"; then
        cut=$((cut + 1))   # had started streaming on the killed replica
    else
        lost=$((lost + 1)); echo "lost: $(head -c 300 "$dir/long$i.out")"
    fi
done
echo "after killing replica a: $done_ok complete, $cut cut mid-stream, $lost lost"
[ $lost -eq 0 ] || fail "$lost requests that had not started streaming were lost"
[ $cut -le 1 ] || fail "$cut streams cut, only replica a's running one could be"
[ $done_ok -ge 5 ] || fail "only $done_ok streams completed"
# 3. The rest keeps being served.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$lb/v1/completions" -d '{"prompt":"Tom","max_tokens":5}')
[ "$code" = 200 ] || fail "after the kill: $code"
echo "PASS"
