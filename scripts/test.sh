#!/usr/bin/env bash
# Installs, builds and runs every test tier on a fresh machine:
#   1. format check (clang-format) of the C++ sources
#   2. release build with -Werror, the unit suite + the real-model tier (ctest; ZQAT_MODEL is the
#      default model fetched from PyPI) + CLI tests
#   3. the parser tests again under ASan/UBSan (clang)
#   4. each libFuzzer target for a bounded time (FUZZ_SECONDS, default 20) under ASan/UBSan
# Environment: ZQAT_SKIP_FUZZ=1 / ZQAT_SKIP_ASAN=1 to skip tiers 3-4 during development.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
jobs="$(nproc)"

bash scripts/install_deps.sh
export ZQAT_MODEL="$(bash scripts/fetch_model.sh)"

echo "== format check"
command -v clang-format >/dev/null || { echo "clang-format is missing"; exit 1; }
files=$(git ls-files '*.cpp' '*.h' | grep -v '^src/io/unicode_data' || true)
if [ -n "$files" ]; then
    bad=$(clang-format --dry-run $files 2>&1 | grep -c 'warning:' || true)
    if [ "$bad" != "0" ]; then
        clang-format --dry-run $files 2>&1 | head -20
        echo "format check: $bad places differ from .clang-format (run clang-format -i)"
        exit 1
    fi
fi

echo "== release build (-Werror) and tests"
cmake --preset ci >/dev/null
cmake --build --preset ci -j "$jobs"
ctest --test-dir build/ci --output-on-failure -j "$jobs" --timeout 600

if [ "${ZQAT_SKIP_ASAN:-0}" != "1" ]; then
    echo "== parser tests under ASan/UBSan"
    cmake --preset asan >/dev/null
    # The file parsers (test_eval_tasks: the task readers), and the model loader's checks of
    # packed GGUF tensors.
    targets="$(cd tests && ls test_io_*.cpp | sed 's/\.cpp$//') test_eval_tasks test_model_save"
    cmake --build --preset asan -j "$jobs" --target $targets
    for t in $targets; do
        echo "-- $t (ASan/UBSan)"
        ./build/asan/tests/"$t" --gtest_brief=1
    done
fi

if [ "${ZQAT_SKIP_FUZZ:-0}" != "1" ]; then
    echo "== fuzzing (bounded)"
    FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz.sh
fi
echo "test.sh: all tiers passed"
