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

for sub in "" inspect eval-ppl generate; do
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
