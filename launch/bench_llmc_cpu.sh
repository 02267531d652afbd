#!/usr/bin/env bash
# Our CPU train step beside llm.c's CPU trainer (train_gpt2.c), in the same run, on
# the same machine, at llm.c's own setting: GPT-2 124M, B=4, T=64, fp32, all cores.
#
#   launch/bench_llmc_cpu.sh LLMC_DIR [ROUNDS]
#
# LLMC_DIR holds llm.c's train_gpt2.c and llmc/ headers (a clone of
# https://github.com/karpathy/llm.c); nothing of it is copied into this project. Its
# trainer is built with its Makefile's flags (-Ofast -march=native -fopenmp) and run
# unmodified in a scratch folder on the inputs it expects, made by our tools:
# gpt2_124M.bin (a GPT-2 124M init exported in llm.c's fp32 format by gpt2_ckpt) and
# Tiny Shakespeare token shards (gpt2_prepro). The rounds alternate ours
# (gpt2_bench --device cpu --batch 4 --seq_len 64) and llm.c's, so both see the same
# machine load; each prints its median step, and the last line the medians of the
# rounds and their ratio. llm.c's step times are its own "took N ms" lines (steps 1 to
# 9; step 0 is a warm-up), taken from a run stopped after its step 10 (it would go on
# to sample, which we do not time).
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
llmc=${1:?usage: launch/bench_llmc_cpu.sh LLMC_DIR [ROUNDS]}
rounds=${2:-3}
llmc=$(cd "$llmc" && pwd)
[ -f "$llmc/train_gpt2.c" ] || { echo "no train_gpt2.c in $llmc" >&2; exit 2; }
source launch/prepare.sh >/dev/null
bin=build/bin
for tool in gpt2_bench gpt2_ddp gpt2_ckpt gpt2_prepro; do
  [ -x "$bin/$tool" ] || { echo "build first: $bin/$tool is missing (./launch/build.sh)" >&2; exit 2; }
done
threads=${OMP_NUM_THREADS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# llm.c train_gpt2.c beside gpt2_bench --device cpu, GPT-2 124M, B=4 T=64, fp32, $threads thread(s)"
echo "# $(date -u +%F) $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), llm.c $(git -C "$llmc" rev-parse --short HEAD 2>/dev/null || echo '(not a git checkout)')"

gcc -Ofast -Wno-unused-result -Wno-ignored-pragmas -Wno-unknown-attributes -march=native \
  -fopenmp -DOMP "$llmc/train_gpt2.c" -I "$llmc" -lm -lgomp -o "$work/train_gpt2"

# llm.c's inputs, from our tools.
mkdir -p "$work/run/dev/data/tinyshakespeare"
"$bin/gpt2_prepro" --input "$GPT2_DATA_DIR/tinyshakespeare/input.txt" --output_dir "$work/shards" \
  --val_tokens 32768 --data_dir "$GPT2_DATA_DIR" >/dev/null
cp "$work/shards/input_train.bin" "$work/run/dev/data/tinyshakespeare/tiny_shakespeare_train.bin"
cp "$work/shards/input_val.bin" "$work/run/dev/data/tinyshakespeare/tiny_shakespeare_val.bin"
# One short step of the 124M config (T=64) leaves a checkpoint of GPT-2 124M's shape.
"$bin/gpt2_ddp" --config configs/gpt2_124m_shakespeare.pbtxt --data_dir "$GPT2_DATA_DIR" \
  --set train.device=CPU --set train.max_steps=1 --set train.seq_len=64 \
  --set train.micro_batch_size=1 --set train.total_batch_tokens=64 --set log.sample_prompts= \
  --set log.run_dir="$work/init" >/dev/null
"$bin/gpt2_ckpt" export --format llmc --out "$work/run/gpt2_124M.bin" \
  "$work"/init/gpt2_124m_shakespeare/checkpoints/step_00000001.ckpt >/dev/null

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ours=() theirs=()
for round in $(seq 1 "$rounds"); do
  line=$(OMP_NUM_THREADS=$threads "$bin/gpt2_bench" --device cpu --batch 4 --seq_len 64 --steps 9 \
    | grep '^median over')
  ms=$(echo "$line" | sed -E 's/^median over [0-9]+ steps: ([0-9.]+) ms.*/\1/')
  ours+=("$ms")
  echo "round $round: gpt2_ddp $line"
  log="$work/llmc_$round.txt"
  # Stopped at its step 10 (its val pass then runs; sampling would follow at step 20).
  (cd "$work/run" && OMP_NUM_THREADS=$threads exec stdbuf -oL "$work/train_gpt2" >"$log" 2>&1) &
  pid=$!
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null || grep -q '^step 10:' "$log"; then break; fi
    sleep 1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  steps=$(grep -E '^step [1-9]: ' "$log" | sed -E 's/.*\(took ([0-9.]+) ms\).*/\1/')
  [ "$(echo "$steps" | grep -c .)" = 9 ] || { echo "llm.c did not print steps 1-9:" >&2; cat "$log" >&2; exit 1; }
  ms=$(echo "$steps" | median)
  theirs+=("$ms")
  echo "round $round: llm.c train_gpt2 median over 9 steps: $ms ms/step (steps 1-9: $(echo "$steps" | tr '\n' ' '))"
done
o=$(printf '%s\n' "${ours[@]}" | median)
t=$(printf '%s\n' "${theirs[@]}" | median)
awk -v o="$o" -v t="$t" 'BEGIN {
  printf "median of the rounds: gpt2_ddp %.1f ms/step (%.0f tokens/s), llm.c %.1f ms/step (%.0f tokens/s): gpt2_ddp %.2fx llm.c\n",
    o, 256000 / o, t, 256000 / t, t / o }'
