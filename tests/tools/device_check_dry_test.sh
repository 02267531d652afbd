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
for step in wgmma_probe wgmma_wide_probe wgmma_dq4_probe wgmma_split_probe classifier_ring_probe gpu_tests bench_ours_B16 bench_autotune32_B16 pdl_tests bench_pdl_B16 bench_pdl_B4 bench_search_B16 bench_search_B64 bench_inline_wgrad_B64 \
  bench_inline_wgrad_B16 bench_classifier_ring_B16 bench_pytorch_B16 bench_ours_B8 bench_ours_B4 bench_ours_B2 bench_ours_B1 bench_search_B1 \
  sweep_b4_lr1.5e-4 sweep_b4_wsd2000 sweep_b2_lr1.5e-4 sweep_b8_lr1.5e-4 sweep_b4_lr1e-4 bench_bf16state_B2 sweep_b4_lr1.5e-4_bf16state shakespeare_fast shakespeare hf_logits_check \
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
# The fast group before the sweep (the next call's plan): the config as shipped stands in
# for the sweep's yardstick instead of training it twice; a sweep first trains it.
mkdir -p "$work/out2"
DEVICE_CHECK_DRY=1 DEVICE_CHECK_GROUPS="fast sweep" DEVICE_CHECK_STATE="$work/state2" \
  TMPDIR="$work" bash "$root/launch/device_check.sh" "$work/out2" >"$work/log2" 2>&1 ||
  { cat "$work/log2"; echo "FAIL: the fast-then-sweep dry run exited non-zero"; exit 1; }
summary2=$(sed -n '/^===== device_check summary/,$p' "$work/log2")
if ! grep -q "sweep: sweep_b4_lr1.5e-4 is the fast config as shipped" "$work/log2" ||
    grep -qE "^sweep_b4_lr1\.5e-4 " <<<"$summary2" ||
    ! grep -qE "^shakespeare_fast +rc=0 " <<<"$summary2" ||
    ! grep -qE "^sweep_b4_wsd2000 +rc=0 " <<<"$summary2"; then
  echo "$summary2"
  echo "FAIL: after the fast group the sweep should take its run as the yardstick"
  exit 1
fi
# Each run's window for clocks.csv (collect_device_run.py's clocks table). (Read whole
# first: under pipefail, grep -q leaving early would fail tar with SIGPIPE.)
windows=$(tar -xzOf "$work/out/device_check.tar.gz" device_check/runs.tsv)
if ! grep -qP "^gpu_tests\t\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{3}\t\d{4}/\d\d/\d\d [\d:.]+\t0$" \
    <<<"$windows"; then
  echo "FAIL: runs.tsv in device_check.tar.gz lacks gpu_tests' window"
  exit 1
fi
# The start-of-call probes for real (no groups: a blank list; an empty one means the
# default groups), twice on one state folder, against a stand-in test binary that fails
# the wide forward's test: the second call runs again only the probe that failed, and
# the failure switches its kernel off each time; and the second reuses the first's
# library search.
fake=$work/fake
mkdir -p "$fake/launch" "$fake/.device/bin"
cp "$root/launch/device_check.sh" "$fake/launch/"
printf '#!/bin/sh
case "$*" in *WgmmaWide*) exit 1 ;; esac
exit 0
' \
  >"$fake/.device/bin/cuda_backend_test_gpu"
printf '#!/bin/sh
exit 0
' >"$fake/.device/bin/gpt2_ddp"
chmod +x "$fake/.device/bin/"*
for call in 1 2; do
  DEVICE_CHECK_GROUPS=" " DEVICE_CHECK_STATE="$work/fake_state" TMPDIR="$work" \
    bash "$fake/launch/device_check.sh" "$work/fake_out$call" >"$work/fake_log$call" 2>&1
done
grep -q "libraries: as an earlier call on this machine found them" "$work/fake_log2" || {
  cat "$work/fake_log2"
  echo "FAIL: the second call searched the file system for the libraries again"
  exit 1
}
if grep -qE "^gpu_tests +rc=" "$work/fake_log1"; then
  echo "FAIL: a call with a blank group list ran the tests group"
  exit 1
fi
for probe in wgmma_regs_probe wgmma_probe classifier_bulk_probe; do
  grep -qE "^$probe +rc=0 " "$work/fake_log1" &&
    grep -qE "^$probe +passed .*earlier call, same binary" "$work/fake_log2" || {
    cat "$work/fake_log1" "$work/fake_log2"
    echo "FAIL: $probe ran in the second call, or did not pass in the first"
    exit 1
  }
done
for call in 1 2; do
  grep -qE "^wgmma_wide_probe +rc=1 " "$work/fake_log$call" &&
    grep -q "the wide wgmma kernels failed their probe" "$work/fake_log$call" || {
    cat "$work/fake_log$call"
    echo "FAIL: call $call did not run the failing probe, or kept its kernel"
    exit 1
  }
done
# The bench group for real against stand-ins: the PyTorch reference compiles in the
# background from the call's start, the group waits for it to be ready before its first
# bench and lets it take its timed steps after its last.
mkdir -p "$fake/.device/reference"
printf '#!/bin/sh\necho "median over 5 steps: 30.0 ms/step, 546000 tokens/s"\n' \
  >"$fake/.device/bin/gpt2_bench"
chmod +x "$fake/.device/bin/gpt2_bench"
cat >"$fake/.device/reference/gpt2_torch.py" <<'PY'
import argparse, os, time
p = argparse.ArgumentParser()
for flag in ("--batch", "--seq_len", "--steps", "--ready_file", "--go_file"):
    p.add_argument(flag)
a = p.parse_args()
time.sleep(2)
open(a.ready_file, "w").close()
while not os.path.exists(a.go_file):
    time.sleep(0.1)
print("pytorch reference: stand-in, median 39.5 ms/step, 414440 tokens/s")
PY
DEVICE_CHECK_GROUPS=bench DEVICE_CHECK_STATE="$work/fake_state" TMPDIR="$work" \
  bash "$fake/launch/device_check.sh" "$work/fake_out3" >"$work/fake_log3" 2>&1
tar -xzf "$work/fake_out3/device_check.tar.gz" -C "$work/fake_out3"
grep -qE "^bench_pytorch_B16 +rc=0 .*compiled in the background" "$work/fake_log3" &&
  grep -q "bench_pytorch_B16: ready" "$work/fake_log3" &&
  grep -A1 "^===== bench_pytorch_B16 (compiled in the background" \
    "$work/fake_out3/device_check/bench.txt" | grep -q "stand-in, median 39.5" || {
  cat "$work/fake_log3"
  echo "FAIL: the PyTorch reference was not compiled in the background and timed after"
  exit 1
}
echo "device_check dry run: $(grep -cE ' rc=0 ' <<<"$summary") steps, every group walked;" \
  "probes that passed are not rerun; PyTorch compiles in the background"
