#!/usr/bin/env bash
# Copies the K-th group of weight parts that launch/device_check.sh left on the GPU machine
# (launch/weights_parts.py split) to OUT_DIR, four parts of ~16 MB and SHA256SUMS, within
# what one device run returns. Call it in runs that follow each other within the machine's
# warm period (~30 s), K = 0, 1, 2, ... until it says "no more parts"; here, join them with
#   python3 launch/weights_parts.py join FILES_DIR_0 FILES_DIR_1 ... --out model_bf16.bin
#   launch/device_fetch_weights.sh K OUT_DIR
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
k=${1:?usage: device_fetch_weights.sh K OUT_DIR}
out=${2:?usage: device_fetch_weights.sh K OUT_DIR}
keep=${DEVICE_CHECK_KEEP:-/tmp/gpt2_weights}
per_run=4
if [ ! -f "$keep/SHA256SUMS" ]; then
  echo "device_fetch_weights: $keep/SHA256SUMS missing: the machine was given back, or" \
    "device_check.sh did not get as far as the weights" >&2
  exit 1
fi
mkdir -p "$out"
cp "$keep/SHA256SUMS" "$out/"
mapfile -t parts < <(cd "$keep" && ls part_* | sort)
first=$((k * per_run))
if [ "$first" -ge "${#parts[@]}" ]; then
  echo "device_fetch_weights: no more parts (${#parts[@]} in all)"
  exit 0
fi
for p in "${parts[@]:$first:$per_run}"; do cp "$keep/$p" "$out/"; done
last=$((first + per_run < ${#parts[@]} ? first + per_run : ${#parts[@]}))
echo "device_fetch_weights: parts $first..$((last - 1)) of ${#parts[@]}" \
  "($(( ${#parts[@]} - last )) left)"
