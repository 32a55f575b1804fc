#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, fetch the default model, and
# measure its WikiText-2 test perplexity (GPTQ protocol, ctx 2048). Extra arguments go to
# `zqat eval-ppl` (e.g. --limit-windows 4 for a quick look).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/install_deps.sh
bash scripts/build.sh release zqat
model="$(bash scripts/fetch_model.sh)"
text="${ZQAT_TEXT:-$root/../shared/data/wikitext-2-raw/wiki.test.raw}"
./build/release/zqat eval-ppl --model "$model" --text "$text" --ctx 2048 "$@"
