#!/usr/bin/env bash
# The tests under AddressSanitizer and UndefinedBehaviorSanitizer: host code, the CPU
# backend and the CUDA kernels under the CPU emulator (their device memory is host memory
# there, so an out-of-bounds kernel access is caught too), in build-sanitize/ (no nvcc).
#   ./launch/sanitize.sh [ctest args...]    e.g. ./launch/sanitize.sh -L cpu
#   ./launch/sanitize.sh -E 'emu\.CudaTrain'    all but the emulated training runs
# GPT2_SANITIZE=address (say) narrows the sanitizers. On 2 cores: ~12 minutes to build, ~10 for
# the cpu and mpi labels, ~14 for the emulated op tests; the emulated training runs take 3-5
# minutes each there (a fiber switch is a system call). Not part of CI (./launch/test.sh).
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh
jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p build-sanitize
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
  -DGPT2_ENABLE_CUDA=OFF -DGPT2_SANITIZE="${GPT2_SANITIZE:-address,undefined}" \
  -DGPT2_TEST_DATA_DIR="$GPT2_DATA_DIR" >build-sanitize/cmake.log 2>&1 || {
  cat build-sanitize/cmake.log >&2; exit 1; }
cmake --build build-sanitize -j"$jobs"
# Leaks are not errors here (MPI and the test fixtures keep memory to the end).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
cd build-sanitize
ctest --output-on-failure -j"$jobs" --timeout 3000 "$@"
