#!/usr/bin/env bash
# End-to-end checks of the zqat binary. Usage: cli_test.sh path/to/zqat
# Bad input must exit non-zero with a message naming the file; with ZQAT_MODEL set, a bounded
# real-model tier runs perplexity and greedy generation.
set -uo pipefail
zqat="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
ko() { echo "FAIL: $1"; fail=$((fail + 1)); }

# expect_fail NAME PATTERN CMD...: non-zero exit and stderr matching PATTERN
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        ko "$name: exited 0"
    elif ! grep -Eq -- "$pattern" "$tmp/err"; then
        ko "$name: stderr lacks /$pattern/: $(head -c 300 "$tmp/err")"
    else
        ok "$name"
    fi
}

for sub in "" inspect eval-ppl generate quantize train plot; do
    if "$zqat" $sub --help >"$tmp/out" 2>&1 && grep -q -- "--help" "$tmp/out"; then
        ok "help ${sub:-top}"
    else
        ko "help ${sub:-top}"
    fi
done
expect_fail "no subcommand" "subcommand" "$zqat"
expect_fail "unknown flag" "--bogus" "$zqat" inspect some.gguf --bogus
expect_fail "missing model" "nope\.gguf" "$zqat" inspect "$tmp/nope.gguf"
printf 'not a gguf file at all' >"$tmp/bad.gguf"
expect_fail "bad magic" "\[gguf\].*bad\.gguf" "$zqat" inspect "$tmp/bad.gguf"
expect_fail "train without run dir" "run-dir" "$zqat" train --model "$tmp/bad.gguf"
expect_fail "resume a missing run" "nope/config\.json" "$zqat" train --resume "$tmp/nope"
expect_fail "plot a missing run" "nope/metrics\.jsonl" "$zqat" plot "$tmp/nope"
mkdir -p "$tmp/badrun" && printf '{"model": 3}' >"$tmp/badrun/config.json"
expect_fail "resume a bad config" "config\.json.*'model'" "$zqat" train --resume "$tmp/badrun"

if [ -n "${ZQAT_MODEL:-}" ] && [ -f "$ZQAT_MODEL" ]; then
    head -c 100000 "$ZQAT_MODEL" >"$tmp/trunc.gguf"
    expect_fail "truncated model" "\[gguf\].*trunc\.gguf" "$zqat" inspect "$tmp/trunc.gguf"
    expect_fail "missing text" "no_such_text" "$zqat" eval-ppl --model "$ZQAT_MODEL" \
        --text "$tmp/no_such_text.txt" --quiet
    printf 'too short\n' >"$tmp/short.txt"
    expect_fail "text shorter than ctx" "fewer than one window" "$zqat" eval-ppl \
        --model "$ZQAT_MODEL" --text "$tmp/short.txt" --ctx 512 --quiet

    if "$zqat" inspect "$ZQAT_MODEL" >"$tmp/inspect" 2>&1 && grep -q "576" "$tmp/inspect"; then
        ok "inspect real model"
    else
        ko "inspect real model: $(head -c 300 "$tmp/inspect")"
    fi

    wiki="$(dirname "$0")/../../shared/data/wikitext-2-raw/wiki.test.raw"
    if [ -f "$wiki" ]; then
        if "$zqat" eval-ppl --model "$ZQAT_MODEL" --text "$wiki" --ctx 256 --limit-windows 2 \
            --json --quiet >"$tmp/ppl.json" 2>"$tmp/err"; then
            if python3 - "$tmp/ppl.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
for k in ("ppl", "nll", "tokens", "windows", "seconds"):
    assert k in j, k
assert j["windows"] == 2 and j["tokens"] == 2 * 255, j
assert 3.0 < j["ppl"] < 200.0, j  # a working 135M model lands near 20-30 here; broken ones don't
PY
            then ok "eval-ppl json ($(cat "$tmp/ppl.json" | head -c 120))"; else ko "eval-ppl json: $(cat "$tmp/ppl.json")"; fi
        else
            ko "eval-ppl ran: $(head -c 300 "$tmp/err")"
        fi
    fi
    # quantize: bad input fails before any work and leaves no output behind.
    data="$(dirname "$0")/../../shared/data"
    q="$tmp/q.gguf"
    expect_fail "quantize unknown method" "unknown method 'awq'" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method awq --out "$q" --quiet
    expect_fail "quantize bad qspec" "qspec.*W5A4" "$zqat" quantize --model "$ZQAT_MODEL" \
        --qspec W5A4 --out "$q" --quiet
    expect_fail "quantize group does not divide" "g128|128" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A16g128 --out "$q" --quiet
    expect_fail "quantize gptq with A4" "weight-only" "$zqat" quantize --model "$ZQAT_MODEL" \
        --qspec W4A4 --method gptq --out "$q" --quiet
    expect_fail "quantize missing calibration data" "$tmp/nodata" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method smoothquant --data-dir "$tmp/nodata" \
        --out "$q" --quiet
    expect_fail "quantize calibration too short" "too short" "$zqat" quantize \
        --model "$ZQAT_MODEL" --qspec W4A4 --method smoothquant --ctx 500000 --nsamples 2 \
        --data-dir "$data" --out "$q" --quiet
    if [ -e "$q" ] || ls "$tmp" | grep -q '^q\.gguf'; then ko "failed quantize left $(ls "$tmp")"; else ok "no output after failures"; fi
    # A W8A8 RTN model is close to FP: it still knows the capital of France, and eval-ppl and
    # generate read the packed file.
    if "$zqat" quantize --model "$ZQAT_MODEL" --qspec W8A8 --method rtn --out "$q" --json \
        --quiet >"$tmp/q.json" 2>"$tmp/err" && [ -s "$q" ]; then
        ok "quantize W8A8 rtn"
        if "$zqat" generate --model "$q" --prompt "The capital of France is" -n 8 --quiet \
            >"$tmp/gen" 2>"$tmp/err" && grep -q "Paris" "$tmp/gen"; then
            ok "W8A8 model says Paris"
        else
            ko "W8A8 generate: $(head -c 300 "$tmp/gen") $(head -c 300 "$tmp/err")"
        fi
        if [ -f "$wiki" ] && "$zqat" eval-ppl --model "$q" --text "$wiki" --ctx 256 \
            --limit-windows 2 --json --quiet >"$tmp/qppl.json" 2>"$tmp/err" &&
            python3 - "$tmp/ppl.json" "$tmp/qppl.json" <<'PY'
import json, sys
fp, q = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert q["qspec"] == "W8A8" and q["quant_method"] == "rtn", q
assert abs(q["ppl"] / fp["ppl"] - 1) < 0.05, (fp["ppl"], q["ppl"])  # W8A8 costs little
assert q["peak_rss_mib"] < fp["peak_rss_mib"], (fp["peak_rss_mib"], q["peak_rss_mib"])
PY
        then ok "eval-ppl on the packed file"; else ko "eval-ppl packed: $(cat "$tmp/qppl.json") $(head -c 300 "$tmp/err")"; fi
    else
        ko "quantize W8A8: $(head -c 300 "$tmp/err")"
    fi

    # ZeroQAT: bad flags fail before any work; a run killed with -9 and resumed logs exactly
    # what an uninterrupted run logs; plot draws its curves.
    expect_fail "train bad qspec" "W5A4" "$zqat" train --model "$ZQAT_MODEL" --qspec W5A4 \
        --run-dir "$tmp/r0" --quiet
    expect_fail "train gptq init" "init" "$zqat" train --model "$ZQAT_MODEL" --init gptq \
        --run-dir "$tmp/r0" --quiet
    expect_fail "train bad schedule" "schedule" "$zqat" train --model "$ZQAT_MODEL" \
        --schedule exp --run-dir "$tmp/r0" --quiet
    targs=(--model "$ZQAT_MODEL" --qspec W8A8 --init rtn --steps 8 --ctx 64 --eval-every 4
        --eval-windows 1 --eval-ctx 128 --final-eval none --save-every 3 --data-dir "$data"
        --threads 2 --quiet)
    if "$zqat" train "${targs[@]}" --run-dir "$tmp/ra" >/dev/null 2>"$tmp/err"; then
        ok "train W8A8 8 steps"
        expect_fail "train refuses an existing run" "already holds a run" "$zqat" train \
            "${targs[@]}" --run-dir "$tmp/ra"
        "$zqat" train "${targs[@]}" --run-dir "$tmp/rb" >/dev/null 2>&1 &
        pid=$!
        for _ in $(seq 200); do  # kill -9 once a few steps are logged
            [ "$(cat "$tmp/rb/metrics.jsonl" 2>/dev/null | wc -l)" -ge 4 ] && break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if "$zqat" train --resume "$tmp/rb" --threads 1 --quiet >/dev/null 2>"$tmp/err" &&
            python3 - "$tmp/ra" "$tmp/rb" <<'PY'
import json, sys
def log(d):
    out = []
    for line in open(d + "/metrics.jsonl"):
        j = json.loads(line)
        j.pop("seconds", None)
        out.append(j)
    return out
a, b = (log(d) for d in sys.argv[1:3])
assert a == b, (len(a), len(b))
assert open(sys.argv[1] + "/seeds.tsv").read() == open(sys.argv[2] + "/seeds.tsv").read()
assert open(sys.argv[1] + "/model.gguf", "rb").read() == open(sys.argv[2] + "/model.gguf", "rb").read()
PY
        then ok "kill -9 + resume (1 thread) == uninterrupted (2 threads)"; else ko "resume: $(head -c 300 "$tmp/err")"; fi
        if command -v gnuplot >/dev/null; then
            if "$zqat" plot "$tmp/ra" >/dev/null 2>"$tmp/err" && [ -s "$tmp/ra/curves.png" ]; then
                ok "plot"
            else
                ko "plot: $(head -c 300 "$tmp/err")"
            fi
        fi
    else
        ko "train: $(head -c 300 "$tmp/err")"
    fi

    if "$zqat" generate --model "$ZQAT_MODEL" --prompt "The capital of France is" -n 8 \
        --quiet >"$tmp/gen" 2>"$tmp/err" && grep -q "Paris" "$tmp/gen"; then
        ok "greedy generate says Paris"
    else
        ko "greedy generate: $(head -c 300 "$tmp/gen") $(head -c 300 "$tmp/err")"
    fi
else
    echo "skip: real-model tier (ZQAT_MODEL unset)"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
