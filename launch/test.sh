#!/usr/bin/env bash
# The test command: installs dependencies, builds, checks the data, runs every ctest.
#   ./launch/test.sh [ctest args...]    e.g. ./launch/test.sh -L cpu
# Data: $GPT2_DATA_DIR, else ../shared/data if present, else ./data (fetched).
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh
./launch/build.sh -DGPT2_TEST_DATA_DIR="$GPT2_DATA_DIR"
cd build
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" --timeout 600 "$@"
