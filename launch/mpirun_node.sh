#!/usr/bin/env bash
# One node, one rank per GPU (or N CPU ranks), each rank bound to its own share of cores.
#   launch/mpirun_node.sh [-np N] --config FILE [gpt2_ddp flags...]
# N defaults to the number of GPUs (nvidia-smi), else 1. Ranks pick GPU = local rank.
# The N ranks split the config's step (each its share; N must divide its sequences).
# To stop cleanly (every rank after the same step, with a checkpoint): kill -USR1 the
# mpirun process; Open MPI answers Ctrl-C by killing the ranks a second after asking.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
np=""
if [ "${1:-}" = "-np" ]; then
  if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
    echo "mpirun_node.sh: -np needs a number of ranks >= 1, got '${2:-}'" >&2
    exit 2
  fi
  np=$2; shift 2
fi
# --config and the other paths are taken from the folder it is started in.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$np" ]; then
  np=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "$np" -gt 0 ] || np=1
fi
# The data directory as the other scripts pick it (launch/data_dir.sh).
source "$root/launch/data_dir.sh"
GPT2_DATA_DIR=$(data_dir "$root")
# The ranks split the config's step, each its share, the recipe unchanged: -np must
# divide its sequences.
source "$root/launch/batch_split.sh"
batch_split "$root/build/bin/gpt2_ddp" "$np" --data_dir "$GPT2_DATA_DIR" "$@"
if [ "$split_ranks" != "$np" ]; then
  echo "mpirun_node.sh: $np ranks cannot split the config's step ($split_note at most)" >&2
  exit 2
fi
echo "mpirun_node.sh: $split_note"
cores=$(nproc)
per_rank=$(( cores / np )); [ "$per_rank" -ge 1 ] || per_rank=1
export OMP_NUM_THREADS=$per_rank OMP_WAIT_POLICY=passive
# Root in containers needs these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bind=(--map-by "ppr:${np}:node:PE=${per_rank}" --bind-to core)
if [ $(( per_rank * np )) -gt "$cores" ]; then bind=(--oversubscribe --bind-to none); fi
exec mpirun -np "$np" "${bind[@]}" -x OMP_NUM_THREADS -x OMP_WAIT_POLICY \
  "$root/build/bin/gpt2_ddp" --data_dir "$GPT2_DATA_DIR" "${split_args[@]}" "$@"
