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
# The CUDA backend has passed its tests only under emulation so far (issue 4): until a GPU
# run proves it, GPU machines train the CPU config unless GPT2_TRAIN_ON_GPU=1 asks for the
# GPU path. On the GPU path every GPU gets a rank: one process for one GPU, mpirun beyond.
cuda_backend_ready=${GPT2_TRAIN_ON_GPU:-0}
launch=()
if [ "$gpus" -gt 0 ] && [ "$cuda_backend_ready" = 1 ]; then
  : "${config:=configs/gpt2_124m_shakespeare.pbtxt}"
  if [ "$gpus" -gt 1 ]; then
    launch=(mpirun -np "$gpus" --bind-to none)
    [ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
    echo "run.sh: $gpus GPUs: one rank per GPU"
  fi
else
  if [ "$gpus" -gt 0 ]; then
    echo "run.sh: $gpus GPU(s) found, but the CUDA backend has not yet passed on a GPU: training the" \
      "CPU config (GPT2_TRAIN_ON_GPU=1 to train on the GPUs anyway)"
  else
    echo "run.sh: no GPU found: training the small CPU config"
  fi
  : "${config:=configs/tiny_cpu.pbtxt}"
fi
cmd=("${launch[@]}" build/bin/gpt2_ddp --config "$config" --data_dir "$GPT2_DATA_DIR" "${args[@]}")
echo "run.sh: ${cmd[*]}"
[ "${GPT2_RUN_PRINT_ONLY:-0}" = 1 ] && exit 0  # for checking this script
exec "${cmd[@]}"
