#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of user input (tests/fuzz: JSON, the web demo's
# request bodies, the tokenizer, run configs, HellaSwag files, token shards and the data
# loader, gpt2_prepro's corpus files, llm.c and Hugging Face weights, checkpoints, --resume)
# with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer,
# built with clang in build-fuzz/ (no nvcc).
#   ./launch/fuzz.sh [SECONDS] [TARGET...]   e.g. ./launch/fuzz.sh 300 json hf_import
# SECONDS (default 60) is each target's run; TARGET is a file name of tests/fuzz/ without
# _fuzz.cc (default: all). Each target starts from tests/fuzz/corpus/<target> (what CI
# replays, with seeded mutations, as the fuzz_* tests) and keeps what it finds new in
# build-fuzz/corpus/<target>; a finding is written to build-fuzz/findings/ and replays with
# `build-fuzz/bin/<target>_fuzz FILE`, or in any build with `build/bin/<target>_fuzz FILE`.
# Allocations above 256 MiB count as findings (-malloc_limit_mb): a size read from an input
# must not size a buffer beyond what the input holds. The build defines
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION: checkpoints' CRC checks pass whatever the bytes
# (src/ckpt/checkpoint.cc), so that mutations reach the parsing behind them; its binaries are
# for fuzzing only. On 2 cores: ~10 minutes to build.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then seconds=$1; shift; fi
./launch/setup.sh clang libomp-dev
source launch/prepare.sh
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p build-fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DGPT2_ENABLE_CUDA=OFF -DGPT2_FUZZ=ON \
  -DCMAKE_CXX_FLAGS=-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
  -DGPT2_SANITIZE=address,undefined,fuzzer-no-link \
  -DGPT2_TEST_DATA_DIR="$GPT2_DATA_DIR" >build-fuzz/cmake.log 2>&1 || {
  cat build-fuzz/cmake.log >&2; exit 1; }
cmake --build build-fuzz -j"$jobs" --target fuzz_targets
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in tests/fuzz/*_fuzz.cc; do
    name=$(basename "$src" _fuzz.cc)
    [[ -x build-fuzz/bin/${name}_fuzz ]] && targets+=("$name")
  done
fi
mkdir -p build-fuzz/findings
failed=()
for name in "${targets[@]}"; do
  bin=build-fuzz/bin/${name}_fuzz
  [[ -x $bin ]] || { echo "fuzz.sh: no target $name ($bin)" >&2; exit 1; }
  work=build-fuzz/corpus/$name
  mkdir -p "$work"
  dict=()
  [[ -f tests/fuzz/$name.dict ]] && dict=(-dict="tests/fuzz/$name.dict")
  echo "== $name: ${seconds} s (log: build-fuzz/logs/$name.log)"
  mkdir -p build-fuzz/logs
  rc=0
  "$bin" -max_total_time="$seconds" -malloc_limit_mb=256 -rss_limit_mb=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/findings/${name}-" "${dict[@]}" \
    "$work" "tests/fuzz/corpus/$name" >"build-fuzz/logs/$name.log" 2>&1 || rc=$?
  grep -E "^#[0-9]+.*DONE|^stat::(number_of_executed_units|new_units_added|peak_rss_mb)|^==[0-9]+== ?ERROR|runtime error|SUMMARY|fuzz check|Test unit written|malloc\(" \
    "build-fuzz/logs/$name.log" || true
  [[ $rc -eq 0 ]] || failed+=("$name")
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: findings in: ${failed[*]} (build-fuzz/findings/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, no findings"
