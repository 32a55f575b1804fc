#!/usr/bin/env bash
# Builds bench_ops (release preset, ZQAT_BENCH=ON) and compares zqat::ops::gemm_nt against
# OpenBLAS cblas_sgemm at the SmolLM2-135M shapes with 1 and 2 threads. Prints a markdown table:
#   | M | N | K | threads | ours GFLOP/s | OpenBLAS GFLOP/s | ratio |
# Usage: scripts/bench_gemm.sh [extra benchmark flags]
# Env: BUILD_DIR (default build/release, the release preset's dir), MIN_TIME (seconds per case,
# default 0.5), JOBS (build parallelism, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build/release}"
jobs="${JOBS:-2}"
if [[ "$build_dir" == "build/release" ]]; then
    cmake --preset release -DZQAT_BENCH=ON >/dev/null
else
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DZQAT_BENCH=ON >/dev/null
fi
cmake --build "$build_dir" --target bench_ops -j"$jobs" >/dev/null
bin="$build_dir/bench/bench_ops"
[[ -x "$bin" ]] || { echo "bench_gemm: $bin was not built (Google Benchmark or OpenBLAS missing?)" >&2; exit 1; }

json="$(mktemp)"
trap 'rm -f "$json"' EXIT
"$bin" --benchmark_filter='^gemm/' --benchmark_min_time="${MIN_TIME:-0.5}" \
    --benchmark_out="$json" --benchmark_out_format=json "$@" >&2

python3 - "$json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
ctx = data["context"]
rate = {}
for b in data["benchmarks"]:
    _, who, m, n, k, t = b["name"].split("/")[:6]
    rate[(int(t), int(m), int(n), int(k), who)] = b["GFLOP"]  # a rate counter: GFLOP/s
print(f"CPU: {ctx.get('num_cpus')} x {ctx.get('mhz_per_cpu')} MHz, zqat ISA: {ctx.get('zqat_isa', '?')}, "
      f"date {ctx.get('date')}\n")
print("| M | N | K | threads | ours GFLOP/s | OpenBLAS GFLOP/s | ours / OpenBLAS |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for key in sorted({k[:4] for k in rate}):
    t, m, n, k = key
    ours, blas = rate.get(key + ("ours",)), rate.get(key + ("openblas",))
    if ours is None or blas is None:
        continue
    print(f"| {m} | {n} | {k} | {t} | {ours:.1f} | {blas:.1f} | {ours / blas:.2f} |")
PY
