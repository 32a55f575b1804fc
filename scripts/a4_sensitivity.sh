#!/usr/bin/env bash
# How much does the WikiText-2 subset PPL move when a training step changes almost nothing? From
# the Hadamard-rotated RTN model, one `zqat train` step at weight lr 1e-9 (every element moves
# by at most 2e-8 |z|: the gradient clip is 0.2/eps with eps 1e-2), LWC and LET frozen; the packed
# models before and after the step (--snapshot-every 1) are compared byte by byte and both are
# evaluated on the first 8 test windows of 2048 tokens. W4A4 against W4A16, to test the guess
# that with 4-bit activations a changed weight code shifts a few activations across a rounding
# threshold and each such flip, a whole activation step, spreads through the later layers.
# Writes docs/data/train/a4-sensitivity.json. Usage: scripts/a4_sensitivity.sh [threads]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
if [ -z "${ZQAT_BIN:-}" ]; then bash scripts/build.sh release zqat >/dev/null; fi
zqat="${ZQAT_BIN:-./build/release/zqat}"
model="$(bash scripts/fetch_model.sh)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rows=()
for spec in W4A4 W4A16; do
    rm -rf "$tmp/r"
    "$zqat" train --model "$model" --qspec "$spec" --init rtn --rotate --no-clip --no-smooth \
        --steps 1 --bsz 1 --ctx 256 --lr 1e-9 --lr-clip 0 --lr-smooth 0 --eps 1e-2 \
        --eval-every 1 --eval-windows 8 --eval-ctx 2048 --final-eval none --snapshot-every 1 \
        --seed 0 --run-dir "$tmp/r" --threads "$threads" --quiet >/dev/null
    changed=$(cmp -l "$tmp/r/model-0.gguf" "$tmp/r/model-1.gguf" | wc -l || true)
    bytes=$(stat -c %s "$tmp/r/model-0.gguf")
    ppl=$(python3 -c "
import json
print(json.dumps([j['eval_ppl'] for j in map(json.loads, open('$tmp/r/metrics.jsonl')) if 'eval_ppl' in j]))")
    rows+=("{\"qspec\": \"$spec\", \"bytes\": $bytes, \"changed_bytes\": $changed, \"ppl\": $ppl}")
    echo "a4_sensitivity: $spec: $changed of $bytes bytes changed, PPL $ppl" >&2
done
mkdir -p docs/data/train
{
    printf '{"cpu": "%s", "threads": %s, "rows": [\n' \
        "$(lscpu | sed -n 's/^Model name: *//p')" "$threads"
    (IFS=$',\n'; printf '%s\n' "${rows[*]}")
    printf ']}\n'
} >docs/data/train/a4-sensitivity.json.tmp
mv docs/data/train/a4-sensitivity.json.tmp docs/data/train/a4-sensitivity.json
python3 scripts/render_train_results.py docs/data/train
