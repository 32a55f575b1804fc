#!/usr/bin/env bash
# Reruns the diagnostic behind the GPTQ-vs-RTN paragraph of docs/RESULTS.md (bench/gptq_heldout.cpp):
# per decoder linear of SmolLM2-135M, GPTQ's and RTN's output error on the calibration windows and
# on held-out WikiText-2 test / C4 windows, with and without each window's first position.
# Writes docs/data/quant-full/gptq_heldout_<spec>[_noact].json (skipped when it exists), which
# scripts/render_quant_results.py reads. About 15 minutes on 2 cores.
# Usage: scripts/gptq_heldout.sh [threads]   env: BITS [4], GROUP [64], NSAMPLES [32], NOACT [0]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
bash scripts/build.sh release gptq_heldout >/dev/null
model="$(bash scripts/fetch_model.sh)"
out=docs/data/quant-full
mkdir -p "$out"
source scripts/lib.sh  # run NAME CMD...
bits="${BITS:-4}" group="${GROUP:-64}" ns="${NSAMPLES:-32}"
name="gptq_heldout_W${bits}A16g${group}" extra=()
if [ "${NOACT:-0}" = 1 ]; then name+=_noact extra=(--no-act-order); fi
run "$name" ./build/release/bench/gptq_heldout --model "$model" --data ../shared/data \
    --bits "$bits" --group "$group" --nsamples "$ns" --ctx 2048 --heldout-windows 8 \
    --threads "$threads" "${extra[@]}"
