#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang, ASan + UBSan) and runs each for a bounded
# time on its seed corpus (tests/data/io/corpus_<target>/, copied to a temporary folder so the
# repo is not modified; tests/data/io/<target>.dict is passed as a dictionary when present).
# Any crash, sanitizer report, leak, timeout or out-of-memory fails the script; the reproducers
# are copied to build/fuzz-findings/ and printed with the command that replays them.
# Env: FUZZ_SECONDS per target (default 20); FUZZ_TARGETS to run a subset (default: all
# tests/fuzz/fuzz_*.cpp).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${FUZZ_SECONDS:-20}"
targets="${FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')}"
cmake --preset fuzz >/dev/null
# The preset configures the whole project with clang and tests off: build only the fuzz targets.
cmake --build --preset fuzz -j "$(nproc)" --target $targets >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
findings="$root/build/fuzz-findings"
status=0
for t in $targets; do
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    seeds="tests/data/io/corpus_$t"
    if [ -d "$seeds" ]; then cp "$seeds"/* "$work/$t/corpus/"; fi
    dict=()
    if [ -f "tests/data/io/$t.dict" ]; then dict=(-dict="tests/data/io/$t.dict"); fi
    if ./build/fuzz/tests/fuzz/"$t" "$work/$t/corpus" "${dict[@]}" -max_total_time="$secs" \
        -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" >"$work/$t/log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$work/$t/log" |
            grep -Eo '[0-9]+$' || echo '?')
        echo "fuzz: $t ok ($runs inputs in ${secs}s)"
    else
        echo "fuzz: $t FAILED"
        tail -40 "$work/$t/log"
        mkdir -p "$findings"
        for a in "$work/$t/artifacts/"*; do
            [ -e "$a" ] || continue
            dest="$findings/$t-$(basename "$a")"
            cp "$a" "$dest"
            echo "reproducer: $dest"
            echo "  replay: ./build/fuzz/tests/fuzz/$t $dest"
        done
        status=1
    fi
done
exit $status
