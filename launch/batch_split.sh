# Sourced by run.sh, mpirun_node.sh and slurm.sbatch: how several ranks share a
# config's step without changing the recipe. batch_split BIN WORLD GPT2_DDP_ARGS...
# reads the step's batch from `BIN GPT2_DDP_ARGS... --plan` (one process) and sets
#   split_ranks  the most ranks, at most WORLD, that split the step's sequences evenly
#   split_args   the --set flags giving each of them its share: the total batch pinned
#                (a config that leaves it 0 means B x T x world), the micro-batch the
#                config's own where it divides the share, else the largest that does
#   split_note   one line saying so, for the log
# It returns 1, having printed the plan's output, where that holds no batch (a bad
# config, a missing file).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0; fi
batch_split() {
  local bin=$1 world=$2
  shift 2
  local plan line b t n seqs ranks share micro
  # (A plan whose memory check fails in one process still prints the batch: the
  # ranks' shares may fit.)
  plan=$("$bin" "$@" --plan 2>&1) || true
  # batch: 16 x 1024 tokens per micro-step x 1 rank(s) x 1 accumulation step(s) = 16,384 tokens per step; ...
  line=$(grep -m1 '^batch: ' <<<"$plan" | tr -d ,) || true
  if ! [[ $line =~ ^batch:\ ([0-9]+)\ x\ ([0-9]+)\ tokens.*=\ ([0-9]+)\ tokens\ per\ step ]]; then
    echo "batch_split: no batch line in $bin --plan's output:" >&2
    echo "$plan" >&2
    return 1
  fi
  b=${BASH_REMATCH[1]} t=${BASH_REMATCH[2]} n=${BASH_REMATCH[3]}
  seqs=$((n / t))
  ranks=$world
  [ "$ranks" -le "$seqs" ] || ranks=$seqs
  while [ $((seqs % ranks)) -ne 0 ]; do ranks=$((ranks - 1)); done
  share=$((seqs / ranks))
  micro=$b
  [ "$micro" -le "$share" ] || micro=$share
  while [ $((share % micro)) -ne 0 ]; do micro=$((micro - 1)); done
  split_ranks=$ranks
  split_args=()
  if [ "$ranks" -gt 1 ]; then
    split_args=(--set "train.total_batch_tokens=$n")
    [ "$micro" = "$b" ] || split_args+=(--set "train.micro_batch_size=$micro")
  fi
  split_note="the step's $seqs sequences ($n tokens) over $ranks rank(s): $share a rank, micro-batch $micro, $((share / micro)) accumulation step(s)"
}
