#!/usr/bin/env bash
# Regenerates the quantization section of docs/RESULTS.md and the quantize-cost section of
# docs/PERF.md: SmolLM2-135M quantized by every method at every spec of issue 3, scored on
# WikiText-2 test (ctx 2048, gptq protocol) and on the held-out half of C4-demo.
# Every quantize/eval result is kept as JSON in out/quant/ (with the command that made it), so
# the tables can be re-rendered with scripts/render_quant_results.py without rerunning.
#
# Usage: scripts/quant_results.sh [threads]
# Environment (defaults in brackets):
#   NSAMPLES [128]  calibration windows      CALIB_CTX [2048]   tokens per calibration window
#   LIMIT_WINDOWS   score only the first K windows of each text (unset: all of them)
#   SPECS   ["W6A6 W4A4 W4A16 W4A16g64 W3A16g64 W2A16g64"]
#   METHODS ["rtn smoothquant gptq init"]  (gptq runs only for A16 specs)
#   SEARCH_WINDOWS [16]  init: windows its per-block alpha search is scored on
#   SEED [0]        calibration seed         KEEP=1  skip configurations whose JSON exists
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
threads="${1:-$(nproc)}"
bash scripts/build.sh release zqat >/dev/null
model="$(bash scripts/fetch_model.sh)"
data=../shared/data
wiki="$data/wikitext-2-raw/wiki.test.raw"
c4="$data/c4/c4_demo.jsonl"
out=out/quant
qdir=.cache/quant
mkdir -p "$out" "$qdir"
nsamples="${NSAMPLES:-128}"
cctx="${CALIB_CTX:-2048}"
seed="${SEED:-0}"
search="${SEARCH_WINDOWS:-16}"
# g128 does not divide SmolLM2-135M's 576-wide inputs (q/k/v/o, gate/up): its grouped specs use g64.
specs="${SPECS:-W6A6 W4A4 W4A16 W4A16g64 W3A16g64 W2A16g64}"
methods="${METHODS:-rtn smoothquant gptq init}"
limit=()
[ -n "${LIMIT_WINDOWS:-}" ] && limit=(--limit-windows "$LIMIT_WINDOWS")
zqat=./build/release/zqat

# run NAME CMD...: the command's JSON stdout into $out/NAME.json and the command into NAME.cmd
run() {
    local name="$1"
    shift
    if [ "${KEEP:-0}" = 1 ] && [ -s "$out/$name.json" ]; then return; fi
    echo "running: $*" >&2
    "$@" >"$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
    printf '%s\n' "$*" >"$out/$name.cmd"
}

evals() {  # evals TAG MODEL
    run "ppl_wiki_$1" "$zqat" eval-ppl --model "$2" --text "$wiki" --ctx 2048 \
        --threads "$threads" "${limit[@]}" --json --quiet
    run "ppl_c4_$1" "$zqat" eval-ppl --model "$2" --text "$c4" --c4-half heldout --ctx 2048 \
        --threads "$threads" "${limit[@]}" --json --quiet
}

evals fp "$model"
for spec in $specs; do
    for method in $methods; do
        if [ "$method" = gptq ] && [[ "$spec" != *A16* ]]; then continue; fi
        q="$qdir/smollm2-135m-$spec-$method.gguf"
        run "quant_${spec}_$method" "$zqat" quantize --model "$model" --qspec "$spec" \
            --method "$method" --calib wikitext2,c4 --nsamples "$nsamples" --ctx "$cctx" \
            --seed "$seed" --search-windows "$search" --out "$q" --threads "$threads" --json --quiet
        evals "${spec}_$method" "$q"
    done
done
python3 scripts/render_quant_results.py "$out" "$(lscpu | sed -n 's/^Model name: *//p')" "$threads"
