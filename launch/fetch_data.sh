#!/usr/bin/env bash
# Gets Tiny Shakespeare and GPT-2's BPE files into a data directory and checks their
# sha256. With an existing directory that holds them (e.g. ../shared/data) it only checks.
#   launch/fetch_data.sh [--data_dir DIR]     (or GPT2_DATA_DIR=DIR)
# Without either: ../shared/data beside the repository if it exists, else its ./data.
# A download that fails leaves no partial file; a file whose sha256 differs is kept
# (said, with what to do) and never fetched over.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${GPT2_DATA_DIR:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir)
      [ $# -ge 2 ] || { echo "fetch_data: --data_dir needs a folder" >&2; exit 2; }
      data_dir="$2"; shift 2 ;;
    --data_dir=*) data_dir="${1#*=}"; shift ;;
    *) echo "fetch_data: unknown argument $1" >&2; exit 2 ;;
  esac
done
source "$root/launch/data_dir.sh"
[ -n "$data_dir" ] || data_dir=$(data_dir "$root")

# path | sha256 | public URL
files=(
  "tinyshakespeare/input.txt|86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed|https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
  "gpt2/encoder.json|196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783|https://openaipublic.blob.core.windows.net/gpt-2/models/124M/encoder.json"
  "gpt2/vocab.bpe|1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5|https://openaipublic.blob.core.windows.net/gpt-2/models/124M/vocab.bpe"
)

status=0
for entry in "${files[@]}"; do
  IFS='|' read -r rel sha url <<<"$entry"
  path="$data_dir/$rel"
  if [ ! -f "$path" ]; then
    if ! mkdir -p "$(dirname "$path")" 2>/dev/null; then
      echo "fetch_data: $path is missing and its folder cannot be created (set GPT2_DATA_DIR" \
        "or --data_dir to a folder that holds the files, or one that can be written)" >&2
      status=1; continue
    fi
    echo "fetch_data: downloading $url"
    if ! curl -fsSL --retry 3 -o "$path.part" "$url"; then
      rm -f "$path.part"
      rmdir -p "$(dirname "$path")" 2>/dev/null || true  # the folders it made, where empty
      echo "fetch_data: download failed: $url (no network? copy that file to $path, or set" \
        "GPT2_DATA_DIR to a folder that holds the files)" >&2
      status=1; continue
    fi
    mv "$path.part" "$path"
  fi
  actual=$(sha256sum "$path" | cut -d' ' -f1)
  if [ "$actual" != "$sha" ]; then
    echo "fetch_data: $path has sha256 $actual, expected $sha (not the published file: delete it" \
      "and run this again to download it)" >&2
    status=1
  else
    echo "fetch_data: ok  $path"
  fi
done
exit $status
