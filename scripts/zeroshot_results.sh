#!/usr/bin/env bash
# Regenerates the zero-shot section of docs/RESULTS.md: SmolLM2-135M scored by `zqat eval-task`
# (lm-eval-harness prompts and metrics, see include/zqat/eval/scoring.h) on PIQA, ARC-Easy,
# ARC-Challenge, HellaSwag (first 1000) and WinoGrande, for the FP model and W4A4 by RTN,
# SmoothQuant and the ZeroQAT init. Each result is kept as JSON, with the command that made it,
# in the tracked folder docs/data/zeroshot/ (docs/data/zeroshot-limit<N>/ with LIMIT), so the
# table re-renders without rerunning (scripts/render_zeroshot_results.py), and a run cut short
# resumes where it stopped: a result whose JSON exists is skipped.
#
# The W4A4 models are quantized here when .cache/quant lacks them, with the arguments of
# scripts/quant_results.sh's full profile (32 calibration windows of 2048, alpha search on 16,
# seed 0), so both tables describe the same files.
#
# Usage: scripts/zeroshot_results.sh [threads]
# Environment: LIMIT (first N docs of each task; default all), TASKS, MODELS ("fp rtn smoothquant
# init").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
bash scripts/build.sh release zqat >/dev/null
model="$(bash scripts/fetch_model.sh)"
tasks="${TASKS:-piqa arc_easy arc_challenge hellaswag winogrande}"
models="${MODELS:-fp rtn smoothquant init}"
limit=()
out=docs/data/zeroshot
if [ -n "${LIMIT:-}" ]; then
    limit=(--limit "$LIMIT")
    out="docs/data/zeroshot-limit$LIMIT"
fi
qdir=.cache/quant
mkdir -p "$out" "$qdir"
zqat=./build/release/zqat

source scripts/lib.sh  # run NAME CMD...

for m in $models; do
    file="$model"
    if [ "$m" != fp ]; then
        file="$qdir/smollm2-135m-W4A4-$m.gguf"
        if [ ! -s "$file" ]; then
            echo "quantizing: W4A4 $m" >&2
            "$zqat" quantize --model "$model" --qspec W4A4 --method "$m" --calib wikitext2,c4 \
                --nsamples 32 --ctx 2048 --seed 0 --search-windows 16 --out "$file" \
                --threads "$threads" --quiet >/dev/null
        fi
    fi
    for t in $tasks; do
        run "${m}_$t" "$zqat" eval-task --model "$file" --task "$t" "${limit[@]}" \
            --threads "$threads" --json --quiet
    done
done
cpu="$(lscpu | sed -n 's/^Model name: *//p')"
printf '{"cpu": "%s", "threads": %s}\n' "$cpu" "$threads" >"$out/machine.json"
python3 scripts/render_zeroshot_results.py "$out"
