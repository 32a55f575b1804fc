#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each for a bounded
# time on its seed corpus (tests/data/io/corpus_<target>/, copied so the repo is not modified).
# Any crash, sanitizer report, leak or timeout fails the script and prints the reproducer.
# Env: FUZZ_SECONDS per target (default 20).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${FUZZ_SECONDS:-20}"
targets=$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)" --target $targets >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for t in $targets; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    seeds="tests/data/io/corpus_$t"
    [ -d "$seeds" ] && cp "$seeds"/* "$work/$t/corpus/"
    if ./build/fuzz/tests/fuzz/"$t" "$work/$t/corpus" -max_total_time="$secs" -rss_limit_mb=2048 \
        -max_len=65536 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" >"$work/$t/log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$t/log" | grep -Eo '[0-9]+$' || echo '?')
        echo "fuzz: $t ok ($runs inputs in ${secs}s)"
    else
        echo "fuzz: $t FAILED"
        tail -40 "$work/$t/log"
        mkdir -p "$root/build/fuzz-findings"
        cp "$work/$t/artifacts/"* "$root/build/fuzz-findings/" 2>/dev/null || true
        echo "reproducers copied to build/fuzz-findings/"
        status=1
    fi
done
exit $status
