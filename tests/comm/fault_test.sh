#!/usr/bin/env bash
# No hangs: when one rank of a CPU run fails (a fatal error, or killed with SIGKILL),
# every rank must exit non-zero within 60 s, with a message naming the failed rank; a
# SIGTERM on one rank stops them all after the same step, with a checkpoint; a rank
# short of memory stops them all before anything is allocated; HellaSwag during training
# scores on 2 ranks as on one; a non-finite loss stops both after a collective save; a
# SIGTERM on one rank during a val pass stops both in it; ranks whose configs differ (or
# that cannot read theirs) stop before training, saying so.
#   fault_test.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC
set -u
bin=$(cd "$1" && pwd) src=$(cd "$2" && pwd) data=$3 mpiexec=$4
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
failures=0 passes=0
run=("$mpiexec" -np 2 "$bin/gpt2_ddp" --config "$src/configs/tiny_cpu.pbtxt"
     --data_dir "$data" --set train.max_steps=100000 --set train.micro_batch_size=4
     --set log.val_every_steps=0 --set log.run_dir="$work/logs")

check() {  # NAME CONDITION-RESULT MESSAGE
  if [ "$2" = 0 ]; then echo "ok   $1"; passes=$((passes+1));
  else echo "FAIL $1: $3"; failures=$((failures+1)); fi
}
until_step2() {  # LOG: waits (up to 120 s) for the run in LOG to log step 2
  for _ in $(seq 1200); do grep -q '^step 2 |' "$1" && break; sleep 0.1; done
}
rank1_pid() {  # this test's rank 1, by its Open MPI environment
  local pid
  for pid in $(pgrep -f "$bin/gpt2_ddp.*$work"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
      echo "$pid"
    fi
  done
}
wait_exit() {  # PID: sets rc to its exit status, or 124 if it still runs after 60 s
  rc=124
  for _ in $(seq 600); do
    if ! kill -0 "$1" 2>/dev/null; then wait "$1"; rc=$?; break; fi
    sleep 0.1
  done
}

# 1. A fatal error on rank 1 at step 3 (the path a CUDA/NCCL failure takes).
start=$(date +%s)
out=$(GPT2_TEST_FAIL_AT=1:3 timeout 120 "${run[@]}" 2>&1); rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -le 60 ]; check "fatal error on rank 1 ends the job (rc=$rc, ${elapsed}s)" $? "$(tail -3 <<<"$out")"
# Our line names the rank and the cause; under heavy load mpirun may drop it, and then
# its own MPI_ABORT notice still names the rank.
grep -qE "\[rank 1\] fatal: injected fault at step 3|MPI_ABORT was invoked on rank 1" <<<"$out"
check "message names rank 1" $? "$(tail -5 <<<"$out")"

# 2. kill -9 of rank 1 once training is under way.
"${run[@]}" >"$work/kill.log" 2>&1 &
launcher=$!
until_step2 "$work/kill.log"
victim=$(rank1_pid)
[ -n "$victim" ]; check "found rank 1's process" $? "no rank 1 among $(pgrep -f "$bin/gpt2_ddp.*$work" | tr '\n' ' ')"
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
wait_exit $launcher
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -le 60 ]; check "kill -9 of rank 1 ends the job (rc=$rc, ${elapsed}s)" $? "$(tail -3 "$work/kill.log")"
grep -qiE "rank 1.*(signal 9|killed)|process rank 1" "$work/kill.log"; check "message names rank 1" $? "$(tail -8 "$work/kill.log")"
for _ in $(seq 50); do pgrep -f "$bin/gpt2_ddp.*$work" >/dev/null || break; sleep 0.1; done
left=$(pgrep -f "$bin/gpt2_ddp.*$work" | wc -l)
[ "$left" -eq 0 ]; check "no rank left running" $? "$left still running"

# 3. SIGTERM on rank 1 alone (raised in the process as step 3 starts): the ranks agree to
# stop after that step, save one checkpoint together, and the run goes on from it.
start=$(date +%s)
out=$(GPT2_TEST_SIGNAL_AT=1:3:15 timeout 120 "${run[@]}" --set log.run_name=sig 2>&1); rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -le 60 ]; check "SIGTERM on rank 1 ends the job (rc=$rc, ${elapsed}s)" $? "$(tail -3 <<<"$out")"
grep -q "SIGTERM received: stopping after step 3 and saving a checkpoint" <<<"$out" \
  && [ -f "$work/logs/sig/checkpoints/step_00000004.ckpt" ]
check "both ranks stop after step 3 and save" $? "$(tail -5 <<<"$out")"
out=$(timeout 120 "${run[@]}" --set log.run_name=sig --set train.max_steps=6 --resume latest 2>&1); rc=$?
[ $rc -eq 0 ] && grep -q "at step 4" <<<"$out" && grep -q "^step 5 |" <<<"$out"
check "the run resumes at step 4" $? "$(tail -5 <<<"$out")"

# 4. The same from outside: kill -TERM of rank 1's process once training is under way.
"${run[@]}" --set log.run_name=term >"$work/term.log" 2>&1 &
launcher=$!
until_step2 "$work/term.log"
victim=$(rank1_pid)
[ -n "$victim" ] && kill -TERM "$victim"
wait_exit $launcher
grep -q "SIGTERM received: stopping after step" "$work/term.log" \
  && ls "$work"/logs/term/checkpoints/step_*.ckpt >/dev/null 2>&1 && [ $rc -ne 124 ]
check "kill -TERM of rank 1: saved and ended (rc=$rc)" $? "$(tail -5 "$work/term.log")"

# 5. The documented way under mpirun: kill -USR1 of mpirun, which Open MPI passes on to
# every rank (its own SIGINT/SIGTERM handling kills the ranks a second later).
"${run[@]}" --set log.run_name=usr1 >"$work/usr1.log" 2>&1 &
launcher=$!
until_step2 "$work/usr1.log"
kill -USR1 $launcher
wait_exit $launcher
grep -q "SIGUSR1 received: stopping after step" "$work/usr1.log" \
  && ls "$work"/logs/usr1/checkpoints/step_*.ckpt >/dev/null 2>&1 && [ $rc -ne 124 ]
check "kill -USR1 of mpirun: saved and ended (rc=$rc)" $? "$(tail -5 "$work/usr1.log")"

# 6. Not enough memory on rank 1 alone (GPT2_TEST_FREE_MEMORY=RANK:BYTES): every rank
# stops before allocating, with no abort (none is left in a collective); rank 1 says why
# and what fits, rank 0 that another rank lacks the memory.
out=$(GPT2_TEST_FREE_MEMORY=1:100000 timeout 120 "${run[@]}" --set log.run_name=nomem 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "\[rank 1\] gpt2_ddp: error: the run needs .* is free" <<<"$out" \
  && grep -q "\[rank 0\] gpt2_ddp: error: another rank's device lacks the memory" <<<"$out" \
  && ! grep -q "MPI_ABORT" <<<"$out" && [ ! -e "$work/logs/nomem" ]
check "memory refused on rank 1: both ranks stop cleanly (rc=$rc)" $? "$(tail -5 <<<"$out")"

# 7. HellaSwag during training on 2 ranks (each scores half the examples, the counts
# summed): the same scores as one process (world sizes train the same steps).
printf '%s\n' \
  '{"ctx": "ROMEO: What light", "endings": ["through yonder window breaks?", "is that?", "goes there.", "and so on."], "label": 0}' \
  '{"ctx": "The cook", "endings": [" cracks an egg.", " sings.", " runs.", " eats"], "label": 2}' \
  '{"ctx": "JULIET: O Romeo, Romeo!", "endings": ["wherefore art thou Romeo?", "eat.", "sleep now.", "the end"], "label": 0}' \
  >"$work/hs.jsonl"
hs=(--config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=2 --set train.micro_batch_size=4
    --set log.sample_prompts= --set log.hellaswag_file="$work/hs.jsonl" --set log.run_dir="$work/logs")
one=$(timeout 120 "$bin/gpt2_ddp" "${hs[@]}" --set log.run_name=hs1 2>&1 | grep "hellaswag: acc")
two=$(timeout 120 "$mpiexec" -np 2 "$bin/gpt2_ddp" "${hs[@]}" --set log.run_name=hs2 2>&1 | grep "hellaswag: acc")
[ -n "$one" ] && [ "$(sed 's/, [0-9.]* s)$//' <<<"$one")" = "$(sed 's/, [0-9.]* s)$//' <<<"$two")" ] \
  && grep -q "(3 examples" <<<"$two"
check "HellaSwag on 2 ranks scores as one process" $? "one: $one / two: $two"

# 8. A non-finite loss at step 3 (GPT2_TEST_NAN_AT, read as NaN on every rank, as an
# all-reduced loss is): both ranks stop, the finite weights are saved first (ZeRO-1: a
# collective save) and the job ends non-zero without an abort cutting the save short.
out=$(GPT2_TEST_NAN_AT=3 timeout 120 "${run[@]}" --set log.run_name=nan --set distributed.zero_stage=1 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "the last finite weights are saved at step 4" <<<"$out" \
  && [ -f "$work/logs/nan/checkpoints/step_00000004.ckpt" ] \
  && "$bin/gpt2_ckpt" verify "$work/logs/nan/checkpoints/step_00000004.ckpt" >/dev/null 2>&1
check "a non-finite loss on 2 ranks: saved, verified, ended (rc=$rc)" $? "$(tail -5 <<<"$out")"

# 9. Without OMP_NUM_THREADS, three ranks share the node's CPUs: at most one thread a CPU
# in all (unbound, as mpirun leaves an oversubscribed node, each rank took every CPU: on
# 2 cores, 6 threads).
out=$(env -u OMP_NUM_THREADS timeout 120 "$mpiexec" -np 3 "$bin/gpt2_ddp" \
      --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=1 \
      --set train.micro_batch_size=2 --set train.total_batch_tokens=384 --set log.val_every_steps=0 \
      --set log.sample_prompts= --set log.run_dir="$work/logs" --set log.run_name=threads 2>&1); rc=$?
threads=$(sed -nE 's/^backend: cpu, f32, ([0-9]+) thread\(s\) \| world size 3.*/\1/p' <<<"$out")
cpus=$(nproc --all)
[ $rc -eq 0 ] && [ -n "$threads" ] && [ $((threads * 3)) -le $(( cpus > 3 ? cpus : 3 )) ]
check "3 ranks share $cpus CPUs ($threads thread(s) each)" $? "$(tail -3 <<<"$out")"

# 10. SIGTERM on rank 1 alone during a val pass (after its first batch, before step 3):
# the ranks agree after each val batch, stop the pass together and save step 3's
# checkpoint (the signal waited for the pass and the next step).
out=$(GPT2_TEST_SIGNAL_IN_VAL=1:3:15 timeout 120 "${run[@]}" --set log.run_name=valsig \
      --set log.val_every_steps=3 --set log.val_batches=4 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] \
  && grep -q "SIGTERM received during the val pass before step 3: stopping and saving a checkpoint" <<<"$out" \
  && ! grep -q "^step 3 |" <<<"$out" && [ -f "$work/logs/valsig/checkpoints/step_00000003.ckpt" ]
check "SIGTERM on rank 1 in a val pass stops both there and saves (rc=$rc)" $? "$(tail -5 <<<"$out")"

# 11. Ranks that do not run the same config: one that cannot open the file (a relative
# path from another working folder) hung the job at the memory check's collective; ranks
# with other --set values hung (max_steps) or trained drifting replicas (lr, seed).
mkdir -p "$work/elsewhere"
start=$(date +%s)
out=$(cd "$src" && timeout 120 "$mpiexec" -np 1 "$bin/gpt2_ddp" --config configs/tiny_cpu.pbtxt \
      --data_dir "$data" --set train.micro_batch_size=4 --set log.run_dir="$work/logs" : \
      -np 1 -wdir "$work/elsewhere" "$bin/gpt2_ddp" --config configs/tiny_cpu.pbtxt \
      --data_dir "$data" --set train.micro_batch_size=4 --set log.run_dir="$work/logs" 2>&1); rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -le 60 ] \
  && grep -q "\[rank 1\] gpt2_ddp: error: configs/tiny_cpu.pbtxt: cannot open config file" <<<"$out" \
  && grep -q "\[rank 0\] gpt2_ddp: error: another rank could not load the config" <<<"$out"
check "a config one rank cannot open ends the job, saying so (rc=$rc, ${elapsed}s)" $? "$(tail -5 <<<"$out")"
start=$(date +%s)
out=$(timeout 120 "$mpiexec" -np 1 "$bin/gpt2_ddp" --config "$src/configs/tiny_cpu.pbtxt" \
      --data_dir "$data" --set train.micro_batch_size=4 --set log.run_dir="$work/logs" : \
      -np 1 "$bin/gpt2_ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set train.micro_batch_size=4 --set log.run_dir="$work/logs" --set optim.lr=5e-3 2>&1); rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $elapsed -le 60 ] \
  && grep -q "\[rank 1\] gpt2_ddp: error: this rank's config is not rank 0's (rank 0's -> this rank's: optim.lr 0.001 -> 0.005)" <<<"$out" \
  && grep -q "\[rank 0\] gpt2_ddp: error: the ranks do not all run the same config" <<<"$out" \
  && ! grep -q "^step 0 |" <<<"$out"
check "ranks with different --set values stop before training, naming the field (rc=$rc, ${elapsed}s)" $? "$(tail -5 <<<"$out")"

# Every rank fails to load, for different reasons: each says its own (only rank 0's was
# printed); for the same reason, rank 0 alone says it.
out=$(timeout 120 "$mpiexec" -np 1 "$bin/gpt2_ddp" --config "$work/missing.pbtxt" : \
      -np 1 "$bin/gpt2_ddp" --config "$src/configs/tiny_cpu.pbtxt" --set train.max_stepz=3 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] \
  && grep -q "\[rank 0\] gpt2_ddp: error: .*missing.pbtxt: cannot open config file" <<<"$out" \
  && grep -q "\[rank 1\] gpt2_ddp: error: .*max_stepz" <<<"$out"
check "ranks that fail to load for different reasons each say theirs (rc=$rc)" $? "$(tail -5 <<<"$out")"
out=$(timeout 120 "$mpiexec" -np 2 "$bin/gpt2_ddp" --config "$work/missing.pbtxt" 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c "cannot open config file" <<<"$out")" = 1 ]
check "the same failure on every rank is said once (rc=$rc)" $? "$(tail -5 <<<"$out")"

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
