#!/usr/bin/env bash
# The main job: installs dependencies, builds, gets the data, and trains the default
# config on whatever hardware is here. Extra arguments go to gpt2_ddp (e.g. --set ...;
# build/bin/gpt2_ddp --help lists them).
#   ./launch/run.sh [--config FILE] [gpt2_ddp flags...]
# Where there are GPUs, every GPU gets a rank (one process for one GPU, mpirun beyond),
# as many as split the config's step evenly: each rank trains its share, the recipe
# unchanged. Paths (--config, --resume, GPT2_DATA_DIR, the run's logs/) are taken from
# the folder it is started in.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# The arguments first: a mistake is said before minutes of set-up.
config=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config)
      [ $# -ge 2 ] || { echo "run.sh: --config needs a file" >&2; exit 2; }
      config=$2; shift 2 ;;
    --config=*) config="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -n "$config" ] && [ ! -f "$config" ]; then
  echo "run.sh: --config $config: no such file (from $PWD)" >&2
  exit 2
fi
# (Absolute, as given: the set-up below runs in the repository.)
case "${GPT2_DATA_DIR:-/}" in /*) ;; *) GPT2_DATA_DIR=$PWD/$GPT2_DATA_DIR ;; esac

# GPT2_RUN_PRINT_ONLY=1 (for checking this script): no set-up or build (the binaries, in
# GPT2_BIN_DIR or build/bin, must be built), the command printed, not run.
print_only=${GPT2_RUN_PRINT_ONLY:-0}
if [ "$print_only" != 1 ]; then
  here=$PWD
  cd "$root"
  source launch/prepare.sh
  # The tools only: the tests (./launch/test.sh builds them too) and the CPU emulation of
  # CUDA they run on are not needed to train.
  GPT2_BUILD_TARGETS=tools ./launch/build.sh
  cd "$here"
fi
source "$root/launch/data_dir.sh"
GPT2_DATA_DIR=$(data_dir "$root")
source "$root/launch/batch_split.sh"
ddp=${GPT2_BIN_DIR:-$root/build/bin}/gpt2_ddp

gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
# Where there is a GPU the default config is the Shakespeare task; GPT2_TRAIN_ON_GPU=0
# trains the small CPU config instead. (The CUDA backend passed its GPU tests on an H200
# on 2026-11-26: logs/gpu_h200_2026-11-26/.)
launch=()
if [ "$gpus" -gt 0 ] && [ "${GPT2_TRAIN_ON_GPU:-1}" = 1 ]; then
  : "${config:=$root/configs/gpt2_124m_shakespeare.pbtxt}"
  if [ "$gpus" -gt 1 ]; then
    batch_split "$ddp" "$gpus" --config "$config" --data_dir "$GPT2_DATA_DIR" "${args[@]}"
    if [ "$split_ranks" -gt 1 ]; then
      args=("${split_args[@]}" "${args[@]}")
      launch=(mpirun -np "$split_ranks" --bind-to none)
      [ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
    fi
    echo "run.sh: $gpus GPUs: $split_note"
  fi
else
  what="the small CPU config"
  [ -n "${config:-}" ] && what="$config"
  if [ "$gpus" -gt 0 ]; then
    echo "run.sh: GPT2_TRAIN_ON_GPU=0: training $what on the CPU"
  else
    echo "run.sh: no GPU found: training $what on the CPU"
  fi
  : "${config:=$root/configs/tiny_cpu.pbtxt}"
fi
cmd=("${launch[@]}" "$ddp" --config "$config" --data_dir "$GPT2_DATA_DIR" "${args[@]}")
echo "run.sh: ${cmd[*]}"
[ "$print_only" = 1 ] && exit 0
exec "${cmd[@]}"
