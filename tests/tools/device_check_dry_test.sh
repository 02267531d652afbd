#!/usr/bin/env bash
# launch/device_check.sh walked with DEVICE_CHECK_DRY=1 (nothing runs; no .device
# needed): the script a GPU session's few minutes depend on parses, walks every group,
# and lists each step it would run with rc=0. A typo there would otherwise first show
# on the lent machine.
#   tests/tools/device_check_dry_test.sh SOURCE_DIR
set -euo pipefail
root=${1:?usage: device_check_dry_test.sh SOURCE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
groups="tests compare bench decode dist extra proof sweep fast seeds torch_seeds init_path torch_full profile search"
if ! DEVICE_CHECK_DRY=1 DEVICE_CHECK_GROUPS="$groups" DEVICE_CHECK_STATE="$work/state" \
  TMPDIR="$work" bash "$root/launch/device_check.sh" "$work/out" >"$work/log" 2>&1; then
  cat "$work/log"
  echo "FAIL: the dry run exited non-zero"
  exit 1
fi
# Bash's own complaints (a bad test, a command not found, an unbound variable) do not
# stop the script, but fail this test.
if grep -E "device_check\.sh: line [0-9]+: " "$work/log"; then
  echo "FAIL: bash reported errors in the dry run"
  exit 1
fi
summary=$(sed -n '/^===== device_check summary/,$p' "$work/log")
[ -n "$summary" ] || { cat "$work/log"; echo "FAIL: no summary"; exit 1; }
# One step of each kind the next session's plan runs (docs/gpu_runbook.md).
for step in wgmma_probe wgmma_wide_probe classifier_ring_probe gpu_tests bench_ours_B16 bench_autotune32_B16 pdl_tests bench_pdl_B16 bench_pdl_B4 bench_search_B16 bench_search_B64 bench_inline_wgrad_B64 \
  bench_inline_wgrad_B16 bench_classifier_ring_B16 bench_pytorch_B16 bench_ours_B8 bench_ours_B4 bench_ours_B2 bench_ours_B1 \
  sweep_b2_lr7e-5 sweep_b1_lr3.5e-5 sweep_b4_lr1.5e-4 bench_bf16state_B2 sweep_b2_lr7e-5_bf16state shakespeare_fast shakespeare hf_logits_check \
  shakespeare_torch_full; do
  if ! grep -qE "^$step +rc=0 " <<<"$summary"; then
    echo "$summary"
    echo "FAIL: '$step' missing from the dry run, or not rc=0"
    exit 1
  fi
done
if grep -vE "^(=====|$)" <<<"$summary" | grep -vE " rc=0 "; then
  echo "FAIL: a step above did not pass the dry run"
  exit 1
fi
[ -s "$work/out/machine.txt" ] || { echo "FAIL: no machine.txt in the output folder"; exit 1; }
echo "device_check dry run: $(grep -cE ' rc=0 ' <<<"$summary") steps, every group walked"
