#!/usr/bin/env bash
# Configures and builds gpt2_ddp in build/ (Release). Extra arguments go to cmake.
# GPT2_BUILD_TARGETS (e.g. "tools": the tools without the tests) limits what is built.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p build
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >build/cmake.log 2>&1 || {
  cat build/cmake.log >&2; exit 1; }
targets=()
for target in ${GPT2_BUILD_TARGETS:-}; do targets+=(--target "$target"); done
cmake --build build -j"$jobs" "${targets[@]}"
