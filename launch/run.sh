#!/usr/bin/env bash
# The main job: installs dependencies, builds, gets the data, and trains the default
# config on whatever hardware is here. Extra arguments go to gpt2_ddp (e.g. --set ...;
# build/bin/gpt2_ddp --help lists them).
#   ./launch/run.sh [--config FILE] [gpt2_ddp flags...]
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh
# The tools only: the tests (./launch/test.sh builds them too) and the CPU emulation of
# CUDA they run on are not needed to train.
GPT2_BUILD_TARGETS=tools ./launch/build.sh

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
# Where there is a GPU, every GPU gets a rank (one process for one GPU, mpirun beyond) and
# the default config is the Shakespeare task; GPT2_TRAIN_ON_GPU=0 trains the small CPU
# config instead. (The CUDA backend passed its GPU tests on an H200 on 2026-11-26:
# logs/gpu_h200_2026-11-26/.)
launch=()
if [ "$gpus" -gt 0 ] && [ "${GPT2_TRAIN_ON_GPU:-1}" = 1 ]; then
  ranks=$gpus
  if [ -z "$config" ]; then
    config=configs/gpt2_124m_shakespeare.pbtxt
    # Its batch is 16 sequences: split over a power-of-two number of ranks (<= 16), so
    # the global batch and the recipe stay the same.
    ranks=1
    while [ $((ranks * 2)) -le "$gpus" ] && [ $((ranks * 2)) -le 16 ]; do ranks=$((ranks * 2)); done
    [ "$ranks" -gt 1 ] && args=(--set "train.micro_batch_size=$((16 / ranks))" "${args[@]}")
  fi
  if [ "$ranks" -gt 1 ]; then
    launch=(mpirun -np "$ranks" --bind-to none)
    [ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
    echo "run.sh: $gpus GPUs: $ranks ranks, one per GPU"
  fi
else
  if [ "$gpus" -gt 0 ]; then
    echo "run.sh: GPT2_TRAIN_ON_GPU=0: training the small CPU config on the CPU"
  else
    echo "run.sh: no GPU found: training the small CPU config"
  fi
  : "${config:=configs/tiny_cpu.pbtxt}"
fi
cmd=("${launch[@]}" build/bin/gpt2_ddp --config "$config" --data_dir "$GPT2_DATA_DIR" "${args[@]}")
echo "run.sh: ${cmd[*]}"
[ "${GPT2_RUN_PRINT_ONLY:-0}" = 1 ] && exit 0  # for checking this script
exec "${cmd[@]}"
