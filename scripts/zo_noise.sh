#!/usr/bin/env bash
# How rough is the quantized loss that ZeroQAT differentiates by finite differences? For each
# spec, parameter group and eps: the mean |l+ - l-| over 6 steps of `zqat train` with every
# learning rate 0 (so theta never moves) from the RTN model, bsz 1 x ctx 256. On a smooth loss
# |l+ - l-| shrinks in proportion to eps; where it does not, rounding flips (weights, and with
# A4 the per-token activation grid) dominate the difference. Also the rotated W4A4 model at
# 1 x 256 and 4 x 512. Writes docs/data/train/zo-noise.json.
# Usage: scripts/zo_noise.sh [threads]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
bash scripts/build.sh release zqat >/dev/null
model="$(bash scripts/fetch_model.sh)"
zqat=./build/release/zqat
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rows=()
# probe SPEC ROTATE BSZ CTX GROUP EPS: one row, 6 steps at learning rate 0.
probe() {
    local spec=$1 rot=$2 bsz=$3 ctx=$4 group=$5 eps=$6 flags=()
    case $group in
    weights) flags=(--no-clip --no-smooth) ;;
    clip) flags=(--no-weights --no-smooth) ;;
    smooth) flags=(--no-weights --no-clip) ;;
    esac
    if [ "$rot" = true ]; then flags+=(--rotate); fi
    rm -rf "$tmp/r"
    "$zqat" train --model "$model" --qspec "$spec" --init rtn --steps 6 --bsz "$bsz" --ctx "$ctx" \
        --lr 0 --lr-clip 0 --lr-smooth 0 --eps "$eps" --eps-clip "$eps" --eps-smooth "$eps" \
        "${flags[@]}" --eval-every 0 --eval-windows 1 --eval-ctx 64 --final-eval none \
        --run-dir "$tmp/r" --threads "$threads" --quiet >/dev/null
    local d
    d=$(python3 -c "
import json
v = [abs(j['loss_plus'] - j['loss_minus']) for j in map(json.loads, open('$tmp/r/metrics.jsonl')) if 'loss_plus' in j]
print(sum(v) / len(v))")
    rows+=("{\"qspec\": \"$spec\", \"rotate\": $rot, \"bsz\": $bsz, \"ctx\": $ctx, \"group\": \"$group\", \"eps\": $eps, \"mean_abs_dl\": $d}")
    echo "zo_noise: $spec rotate=$rot ${bsz}x$ctx $group eps $eps: mean |l+ - l-| = $d" >&2
}
for spec in W4A4 W4A16 W8A8; do
    for group in weights clip smooth; do
        for eps in 1e-2 1e-3 1e-5; do probe "$spec" false 1 256 "$group" "$eps"; done
    done
done
# The Hadamard-rotated W4A4 model (no LET), at the training shapes of train_results.sh: does the
# difference rise above its rounding floor with more tokens per step?
for shape in "1 256" "4 512"; do
    for group in weights clip; do
        # shellcheck disable=SC2086  # $shape is "BSZ CTX", two arguments
        for eps in 1e-2 1e-3 1e-5; do probe W4A4 true $shape "$group" "$eps"; done
    done
done
mkdir -p docs/data/train
cpu="$(lscpu | sed -n 's/^Model name: *//p')"
{
    printf '{"cpu": "%s", "threads": %s, "rows": [\n' "$cpu" "$threads"
    (IFS=$',\n'; printf '%s\n' "${rows[*]}")
    printf ']}\n'
} >docs/data/train/zo-noise.json.tmp
mv docs/data/train/zo-noise.json.tmp docs/data/train/zo-noise.json
python3 scripts/render_train_results.py docs/data/train
