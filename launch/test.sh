#!/usr/bin/env bash
# The test command: installs dependencies, builds, checks the data, runs every ctest.
#   ./launch/test.sh [ctest args...]    e.g. ./launch/test.sh -L cpu
# Data: $GPT2_DATA_DIR, else ../shared/data if present, else ./data (fetched).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh
./launch/build.sh -DGPT2_TEST_DATA_DIR="$GPT2_DATA_DIR"
cd build
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" --timeout 600 "$@"
