#!/usr/bin/env python3
"""nibble against llama.cpp and ik_llama.cpp on this machine, in one run.

  scripts/bench_peers.py --gguf FILE [--nibble-model FILE] [-t 1,2] [-p 64]
                         [-n 32] [--rounds 3] [--kernel avx2]

Engines, alternating round by round so that all see the same machine state:
nibble on the nibble file (--nibble-model, if given), nibble on the GGUF
repacked at load and row-major (--repack / --no-repack), llama.cpp's
llama-bench, and ik_llama.cpp's llama-bench with -rtr 0 and -rtr 1 (skipped
when its binary is missing). Prints every round, then per thread count the
medians, each nibble mode over the best peer for decoding (tgN) and prompts
(ppN), and the `--roofline` fraction of nibble's decoding. Record the output
with the CPU line it starts with (docs/BENCHMARKS.md).

Defaults: build/nibble, ../anchors/llama.cpp/build/bin/llama-bench and
../anchors/ik_llama.cpp/build/bin/llama-bench (../shared/anchors/build.sh).
--kernel sets NIBBLE_KERNEL for nibble (e.g. avx2 on a CPU that has more).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", required=True)
ap.add_argument("--nibble-model")
ap.add_argument("--nibble", default=os.path.join(ROOT, "build/nibble"))
ap.add_argument("--llama-bench",
                default=os.path.join(ROOT, "../anchors/llama.cpp/build/bin/llama-bench"))
ap.add_argument("--ik-bench",
                default=os.path.join(ROOT, "../anchors/ik_llama.cpp/build/bin/llama-bench"))
ap.add_argument("-t", default="1,2")
ap.add_argument("-p", default="64")
ap.add_argument("-n", default="32")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--kernel")
a = ap.parse_args()

for path in [a.gguf, a.nibble, a.llama_bench] + ([a.nibble_model] if a.nibble_model else []):
    if not os.path.exists(path):
        sys.exit(f"bench_peers: {path}: not found")

nibble_env = dict(os.environ)
if a.kernel:
    nibble_env["NIBBLE_KERNEL"] = a.kernel


def engines(threads):
    common = ["-t", threads, "-p", a.p, "-n", a.n, "-r", "1", "-o", "json"]
    out = []
    if a.nibble_model:
        out.append(("nibble file", [a.nibble, "bench", "-m", a.nibble_model] + common, True))
    for flag in ("--repack", "--no-repack"):
        out.append((f"nibble gguf {flag}", [a.nibble, "bench", "-m", a.gguf, flag] + common, True))
    out.append(("llama.cpp", [a.llama_bench, "-m", a.gguf] + common, False))
    if os.path.exists(a.ik_bench):
        for rtr in ("0", "1"):
            out.append((f"ik_llama.cpp -rtr {rtr}",
                        [a.ik_bench, "-m", a.gguf, "-rtr", rtr] + common, False))
    return out


def run(cmd, is_nibble):
    r = subprocess.run(cmd, capture_output=True, text=True, env=nibble_env if is_nibble else None)
    if r.returncode != 0:
        sys.exit(f"bench_peers: failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    out = {}
    for row in json.loads(r.stdout):
        kind = "pp" if row.get("n_prompt") and not row.get("n_gen") else "tg"
        out[kind] = float(row["avg_ts"])
    return out


def roofline(threads):
    model = a.nibble_model or a.gguf
    r = subprocess.run([a.nibble, "bench", "-m", model, "-t", threads, "-p", "1", "-n", a.n,
                        "-r", "2", "--roofline"], capture_output=True, text=True, env=nibble_env)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if f"tg{a.n}" in l]
    return lines[-1].strip() if lines else "(no roofline line)"


cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
model_name = next((l.split(":", 1)[1].strip() for l in cpu.splitlines()
                   if l.startswith("Model name")), "?")
flags = open("/proc/cpuinfo").read().split()
isa = [f for f in ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "amx_tile", "asimddp")
       if f in flags]
commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
print(f"cpu: {model_name}, {os.cpu_count()} cores, {' '.join(isa)}")
print(f"nibble {commit}, kernel {a.kernel or 'default'}, load {os.getloadavg()}")

for threads in a.t.split(","):
    es = engines(threads)
    results = {name: {"pp": [], "tg": []} for name, _, _ in es}
    for i in range(a.rounds):
        for name, cmd, is_nibble in es:
            o = run(cmd, is_nibble)
            for k in o:
                results[name][k].append(o[k])
            print(f"t={threads} round {i + 1} {name}: pp{a.p} {o.get('pp', 0):.2f} "
                  f"tg{a.n} {o.get('tg', 0):.2f}", flush=True)
    med = {name: {k: statistics.median(v) for k, v in r.items() if v}
           for name, r in results.items()}
    print(f"== {threads} thread(s), medians of {a.rounds}")
    for name, m in med.items():
        print(f"  {name:24s} pp{a.p} {m['pp']:8.2f}  tg{a.n} {m['tg']:7.2f}")
    peers = {k: max(m[k] for n, m in med.items() if not n.startswith("nibble"))
             for k in ("pp", "tg")}
    for name, m in med.items():
        if name.startswith("nibble"):
            print(f"  {name} / best peer: pp{a.p} {m['pp'] / peers['pp']:.2f}x, "
                  f"tg{a.n} {m['tg'] / peers['tg']:.2f}x")
    print(f"  roofline: {roofline(threads)}")
print(f"load after {os.getloadavg()}")
