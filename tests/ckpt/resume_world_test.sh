#!/usr/bin/env bash
# Resume on a different world size: a ZeRO-1 run saved with 2 ranks continues with 3
# (the optimizer state re-sharded), and its losses match the uninterrupted 2-rank run
# within float tolerance.
#   resume_world_test.sh BIN_DIR SOURCE_DIR DATA_DIR MPIEXEC
set -u
bin=$(cd "$1" && pwd) src=$(cd "$2" && pwd) data=$3 mpiexec=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
common=(--config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=6
        --set train.total_batch_tokens=768 --set distributed.zero_stage=1
        --set log.val_every_steps=0 --set checkpoint.every_steps=3)

"$mpiexec" -np 2 "$bin/gpt2_ddp" "${common[@]}" --set train.micro_batch_size=6 \
  --set log.run_dir="$work/two" >"$work/two.log" 2>&1 || { echo "FAIL: 2-rank run"; tail "$work/two.log"; exit 1; }
ckpt="$work/two/tiny_cpu/checkpoints/step_00000003.ckpt"
[ -f "$ckpt" ] || { echo "FAIL: no checkpoint at step 3"; exit 1; }
"$mpiexec" -np 3 "$bin/gpt2_ddp" "${common[@]}" --set train.micro_batch_size=4 \
  --set log.run_dir="$work/three" --resume "$ckpt" >"$work/three.log" 2>&1 ||
  { echo "FAIL: 3-rank resume"; tail "$work/three.log"; exit 1; }
grep -q "resumed from .* at step 3" "$work/three.log" || { echo "FAIL: no resume line"; exit 1; }
grep -q "ZeRO-1" "$work/three.log" || { echo "FAIL: not sharded"; exit 1; }

python3 - "$work/two/tiny_cpu/metrics.jsonl" "$work/three/tiny_cpu/metrics.jsonl" <<'PY'
import json, sys
# The step rows (a resumed run's restart row and a final row have no loss).
two = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
three = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2])) if "loss" in r}
assert sorted(three) == [3, 4, 5], f"resumed steps {sorted(three)}"
bad = [(s, two[s], three[s]) for s in three if abs(two[s] - three[s]) > 1e-5 * abs(two[s])]
for s, a, b in bad:
    print(f"FAIL step {s}: 2 ranks {a} vs resumed on 3 ranks {b}")
if bad:
    sys.exit(1)
print("ok   resumed on 3 ranks: steps 3-5 match the 2-rank run within 1e-5:",
      ", ".join(f"{three[s]:.6f}" for s in sorted(three)))
print("1 passed, 0 failed")
PY
