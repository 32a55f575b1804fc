#!/usr/bin/env bash
# Regenerates the quantization section of docs/RESULTS.md and the quantize-cost section of
# docs/PERF.md: SmolLM2-135M quantized by every method at every spec of issue 3, scored on
# WikiText-2 test (ctx 2048, gptq protocol) and on the held-out half of C4-demo.
# Every quantize/eval result is kept as JSON, with the command that made it, in the tracked folder
# docs/data/quant-<profile>/, so the tables re-render without rerunning
# (scripts/render_quant_results.py), and a run cut short resumes where it stopped: a
# configuration whose JSON exists is skipped.
#
# Usage: scripts/quant_results.sh [profile] [threads]
# Profiles (each a section of docs/RESULTS.md):
#   full   [default] every window of both texts, 32 calibration windows of 2048 tokens (the
#          paper uses 128; on 2 cores that alone would take most of a day), alpha search on 16
#   quick  the first 8 windows of each text, 16 calibration windows, alpha search on 4: minutes
#          per configuration, for a first look and for checking the orderings
# Environment overrides (profile defaults in brackets):
#   NSAMPLES  calibration windows      CALIB_CTX [2048]   tokens per calibration window
#   LIMIT_WINDOWS   score only the first K windows of each text
#   SPECS   ["W6A6 W4A4 W4A16 W4A16g64 W3A16g64 W2A16g64"]
#   METHODS ["rtn smoothquant gptq init"]  (gptq runs only for A16 specs); variants:
#           rtn-rot, gptq-rot, init-rot  with --rotate (Hadamard rotation of every decoder linear)
#           gptq-noact                   with --no-act-order (columns in order, groups as they come)
#           gptq-c4calib                 calibrated on C4 alone (--calib c4), not half WikiText-2
#           gptq-nosink                  --gptq-skip-first 1: position 0 (the attention sink) of
#                                        every window left out of the Hessians
#           gptq-ns128                   128 calibration windows (the paper's count), not NSAMPLES
#   SEARCH_WINDOWS  init: windows its per-block alpha search is scored on
#   SEED [0]        calibration seed
#   ZQAT_BIN        a zqat binary to use instead of building build/release (a copy, so that
#                   rebuilding during a long run does not change the binary under it)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
profile="${1:-full}"
threads="${2:-$(nproc)}"
case "$profile" in
full) d_ns=32 d_search=16 d_limit= ;;
quick) d_ns=16 d_search=4 d_limit=8 ;;
*) echo "quant_results: unknown profile '$profile' (full, quick)" >&2; exit 2 ;;
esac
if [ -z "${ZQAT_BIN:-}" ]; then bash scripts/build.sh release zqat >/dev/null; fi
model="$(bash scripts/fetch_model.sh)"
data=../shared/data
wiki="$data/wikitext-2-raw/wiki.test.raw"
c4="$data/c4/c4_demo.jsonl"
out="docs/data/quant-$profile"
qdir=.cache/quant
mkdir -p "$out" "$qdir"
nsamples="${NSAMPLES:-$d_ns}"
cctx="${CALIB_CTX:-2048}"
seed="${SEED:-0}"
search="${SEARCH_WINDOWS:-$d_search}"
# g128 does not divide SmolLM2-135M's 576-wide inputs (q/k/v/o, gate/up): its grouped specs use g64.
specs="${SPECS:-W6A6 W4A4 W4A16 W4A16g64 W3A16g64 W2A16g64}"
methods="${METHODS:-rtn smoothquant gptq init}"
limit=()
lw="${LIMIT_WINDOWS-$d_limit}"
[ -n "$lw" ] && limit=(--limit-windows "$lw")
zqat="${ZQAT_BIN:-./build/release/zqat}"

source scripts/lib.sh  # run NAME CMD...

evals() {  # evals TAG MODEL
    run "ppl_wiki_$1" "$zqat" eval-ppl --model "$2" --text "$wiki" --ctx 2048 \
        --threads "$threads" "${limit[@]}" --json --quiet
    run "ppl_c4_$1" "$zqat" eval-ppl --model "$2" --text "$c4" --c4-half heldout --ctx 2048 \
        --threads "$threads" "${limit[@]}" --json --quiet
}

evals fp "$model"
for spec in $specs; do
    for method in $methods; do
        base="${method%%-*}" extra=() calib=wikitext2,c4 ns="$nsamples"
        case "$method" in
        *-rot) extra=(--rotate) ;;
        *-noact) extra=(--no-act-order) ;;
        *-c4calib) calib=c4 ;;
        *-nosink) extra=(--gptq-skip-first 1) ;;
        *-ns128) ns=128 ;;
        "$base") ;;
        *) echo "quant_results: unknown method variant '$method'" >&2; exit 2 ;;
        esac
        if [ "$base" = gptq ] && [[ "$spec" != *A16* ]]; then continue; fi
        q="$qdir/smollm2-135m-$spec-$method.gguf"
        run "quant_${spec}_$method" "$zqat" quantize --model "$model" --qspec "$spec" \
            --method "$base" "${extra[@]}" --calib "$calib" --nsamples "$ns" --ctx "$cctx" \
            --seed "$seed" --search-windows "$search" --out "$q" --threads "$threads" --json --quiet
        evals "${spec}_$method" "$q"
    done
done
cpu="$(lscpu | sed -n 's/^Model name: *//p')"
printf '{"cpu": "%s", "threads": %s, "profile": "%s"}\n' "$cpu" "$threads" "$profile" >"$out/machine.json"
python3 scripts/render_quant_results.py "$out"
