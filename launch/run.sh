#!/usr/bin/env bash
# The main job: installs dependencies, builds, gets the data, and trains the default
# config on whatever hardware is here. Extra arguments go to gpt2_ddp (e.g. --set ...).
#   ./launch/run.sh [--config FILE] [gpt2_ddp flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh
./launch/build.sh

config=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --config=*) config="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
# The CUDA backend is a later milestone (issue 4); until it lands every run is a CPU run.
cuda_backend_ready=0
if [ "$gpus" -gt 0 ] && [ "$cuda_backend_ready" = 1 ]; then
  : "${config:=configs/gpt2_124m_shakespeare.pbtxt}"
else
  if [ "$gpus" -gt 0 ]; then
    echo "run.sh: $gpus GPU(s) found, but the CUDA backend is not ready yet: training the CPU config"
  else
    echo "run.sh: no GPU found: training the small CPU config"
  fi
  : "${config:=configs/tiny_cpu.pbtxt}"
fi
echo "run.sh: build/bin/gpt2_ddp --config $config --data_dir $GPT2_DATA_DIR ${args[*]:-}"
exec build/bin/gpt2_ddp --config "$config" --data_dir "$GPT2_DATA_DIR" "${args[@]}"
