#!/usr/bin/env bash
# An independent reference for our perplexity: llama.cpp's `llama-perplexity` on the same GGUF.
# llama.cpp comes from the source archive of the PyPI package llama-cpp-python==0.3.36 (which
# vendors it), built once into the ignored cache .cache/llamacpp/ -- never committed, never linked.
# Usage: scripts/llamacpp_reference.sh CTX CHUNKS [THREADS]   prints llama-perplexity's final line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ctx="${1:-512}" chunks="${2:-8}" threads="${3:-$(nproc)}"
cache="$root/.cache"
src="$cache/llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp"
bin="$src/build/bin/llama-perplexity"
if [ ! -x "$bin" ]; then
    mkdir -p "$cache/pip" "$cache/llamacpp"
    python3 -m pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d "$cache/pip" \
        --quiet --disable-pip-version-check >&2
    tar -xzf "$cache/pip/llama_cpp_python-0.3.36.tar.gz" -C "$cache/llamacpp"
    # GGML_NATIVE=OFF: -march=native would use AMX instructions that this kind of VM lists but
    # does not allow.
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF \
        -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON >/dev/null
    cmake --build "$src/build" --target llama-perplexity -j "$(nproc)" >/dev/null
fi
model="$(bash "$root/scripts/fetch_model.sh")"
"$bin" -m "$model" -f "$root/../shared/data/wikitext-2-raw/wiki.test.raw" -c "$ctx" \
    --chunks "$chunks" -t "$threads" 2>&1 | grep -E 'Final estimate'
