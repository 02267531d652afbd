#!/usr/bin/env bash
# The GPU proof in one run, on a machine with the CUDA 13 toolkit, cuBLASLt, NCCL and
# PyTorch but none of our other dependencies (see ../shared/GPU.md). Stage first with
# launch/pack_device.sh; this script uses only .device/.
#   launch/device_check.sh OUT_DIR [--skip-train]
# Steps, most informative first (what must be proven comes before what is measured
# again), each under its own timeout:
#   1. nvidia-smi, glibc, library discovery, ldd of every binary
#   2. the gpu-label tests: every op and whole train steps against the CPU reference
#   3. gpt2_bench (bf16) at B=16, T=1024
#   4. the Shakespeare config to loss < 0.1; checkpoint verify, samples, HF logits check;
#      the trained weights are left in $DEVICE_CHECK_KEEP (default /tmp/gpt2_weights) as
#      bf16 parts for launch/device_fetch_weights.sh to bring back in the next calls
#   5. the PyTorch reference at B=16 on the same card
#   6. two ranks on the one GPU and NCCL at world size 1 against one process
#   7. the fast Shakespeare config, decode speed, B=64, portable attention, B=32
# Logs go to OUT_DIR, 8 files at most (what a device run returns): machine.txt (with
# nvidia-smi), gpu_tests.txt, bench.txt, dist.txt, train.txt, metrics.jsonl,
# metrics_fast.jsonl, samples.txt. A summary table is printed last.
# The whole run keeps within DEVICE_CHECK_BUDGET_S (default 520 s): each step's
# limit is cut to what is left, and steps that no longer fit are skipped (and
# say so in the summary), so the summary always comes back.
set -u
out=${1:?usage: device_check.sh OUT_DIR [--skip-train]}
skip_train=${2:-}
budget=${DEVICE_CHECK_BUDGET_S:-520}
keep=${DEVICE_CHECK_KEEP:-/tmp/gpt2_weights}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
stage=$root/.device
summary=()
log() { echo "[device_check $(date +%H:%M:%S)] $*" | tee -a "$out/machine.txt"; }

# run NAME TIMEOUT_S LOGFILE CMD...: appends the output to LOGFILE, records rc and time.
run() {
  local name=$1 limit=$2 file=$3; shift 3
  local left=$((budget - SECONDS - 15))
  if [ "$left" -lt 20 ]; then
    summary+=("$(printf '%-28s %-9s %5ss  %s' "$name" "skipped" 0 "(out of budget)")")
    log "$name: skipped, ${left}s of the budget left"
    return 99
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start=$SECONDS
  { echo "===== $name (limit ${limit}s): $*"; } >>"$out/$file"
  timeout --kill-after=10 "$limit" "$@" >>"$out/$file" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  summary+=("$(printf '%-28s rc=%-4s %5ss  %s' "$name" "$rc" "$took" "$file")")
  log "$name: rc=$rc in ${took}s"
  return $rc
}

if [ ! -x "$stage/bin/gpt2_ddp" ]; then
  echo "device_check: $stage/bin/gpt2_ddp missing: run launch/pack_device.sh first" >&2
  exit 2
fi
log "commit $(cat "$stage/COMMIT" 2>/dev/null || echo unknown), host $(hostname)"

# ---- 1. The machine --------------------------------------------------------------
{ nvidia-smi; nvidia-smi -q | head -60; } >>"$out/machine.txt" 2>&1 || log "nvidia-smi failed"
glibc=$(ldd --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+$')
log "glibc $glibc (binaries built on Debian 12 need >= 2.34)"
# cuBLASLt and NCCL are too big to carry: use the machine's (CUDA toolkit or pip wheels).
libdirs=""
for lib in libcublasLt.so.13 libnccl.so.2 libcudart.so.13; do
  found=$(find / \( -path /proc -o -path /sys \) -prune -o -name "$lib" -print 2>/dev/null | head -1)
  if [ -n "$found" ]; then libdirs="$libdirs:$(dirname "$found")"; log "found $found"; else log "MISSING $lib"; fi
done
export LD_LIBRARY_PATH="$stage/lib${libdirs}:${LD_LIBRARY_PATH:-}"
# The carried Open MPI runtime.
mpi=$stage/mpi/usr
export OPAL_PREFIX=$mpi PATH="$mpi/bin:$PATH" LD_LIBRARY_PATH="$mpi/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH"
export PMIX_PKGDATADIR=$mpi/share/pmix PMIX_PKGLIBDIR=$mpi/lib/x86_64-linux-gnu/pmix2/lib
export OMPI_MCA_plm_rsh_agent= OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=8 OMP_WAIT_POLICY=passive
for bin in "$stage"/bin/*; do
  if ldd "$bin" | grep -q "not found"; then
    log "$(basename "$bin") has unresolved libraries:"; ldd "$bin" | tee -a "$out/machine.txt"
  fi
done
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
  >>"$out/machine.txt" 2>&1

# ---- 2. GPU tests ------------------------------------------------------------------
run gpu_tests 180 gpu_tests.txt "$stage/bin/cuda_backend_test_gpu"
grep -E "^\[ where|FAILED|PASSED|SKIPPED" "$out/gpu_tests.txt" | head -30 | tee -a "$out/machine.txt"
# A fast path that failed its tests is switched off for the rest of the run (and the
# benchmark says which kernels ran), so one bad kernel does not spoil the whole proof.
failed() { grep -qE "^\[  FAILED  \] ($1)" "$out/gpu_tests.txt"; }
if failed "CudaMma\.|Types/CudaOps\.Attention(Peaked)?/bf16"; then
  export GPT2_PORTABLE_ATTENTION=1; log "tensor-core attention failed its tests: portable attention from here on"
fi
if failed "Types/CudaOps\.FusedMatmulGelu[A-Za-z]*/bf16"; then
  export GPT2_GELU_EPILOGUES=0; log "fused GELU failed its tests: separate GELU kernels from here on"
fi
if failed "Types/CudaOps\.Matmul/"; then
  export GPT2_PORTABLE_MATMUL=1; log "cuBLASLt matmuls failed their tests: portable matmuls from here on (slow)"
fi
if failed "CudaDecode\."; then
  export GPT2_DECODE_GRAPHS=0; log "decoding failed its tests: no decode graphs from here on"
fi

# ---- 3. Our benchmark (bf16, as training runs) -------------------------------------
bench() {  # bench NAME B [extra flags]
  local name=$1 b=$2; shift 2
  run "$name" 90 bench.txt "$stage/bin/gpt2_bench" --device cuda --tokenizer=false \
    --precision bf16 --batch "$b" --seq_len 1024 --steps 10 "$@"
}
bench bench_ours_B16 16
grep -E "^train step|^kernels|^median|^MFU|^GPU memory|  attention" "$out/bench.txt" | \
  tee -a "$out/machine.txt"

# ---- 4. Shakespeare, then what it learned -----------------------------------------
# train NAME CONFIG MAX_SECONDS METRICS_FILE: trains, copies metrics, leaves the run in $runs.
runs=$(mktemp -d)  # checkpoints are far too big to come back
train() {
  local name=$1 config=$2 seconds=$3 metrics=$4
  run "$name" $((seconds + 40)) train.txt "$stage/bin/gpt2_ddp" \
    --config "$stage/configs/$config.pbtxt" --data_dir "$stage/data" \
    --set log.run_dir="$runs" --set train.max_seconds="$seconds"
  grep -E "first at step|at every step since|^done" "$out/train.txt" | tail -3 | tee -a "$out/machine.txt"
  cp "$runs/$config/metrics.jsonl" "$out/$metrics" 2>/dev/null
}
if [ "$skip_train" != "--skip-train" ]; then
  train shakespeare gpt2_124m_shakespeare 200 metrics.jsonl
  ckpt=$(ls "$runs"/gpt2_124m_shakespeare/checkpoints/step_*.ckpt 2>/dev/null | tail -1)
  if [ -n "$ckpt" ]; then
    run ckpt_verify 40 train.txt "$stage/bin/gpt2_ckpt" verify "$ckpt"
    for prompt in "First Citizen:" "ROMEO:"; do
      run "sample" 60 samples.txt "$stage/bin/gpt2_sample" --device cuda --checkpoint "$ckpt" \
        --prompt "$prompt" --num_samples 5 --max_new_tokens 50 --data_dir "$stage/data"
    done
    # HF export checked against transformers.
    run hf_export 60 train.txt "$stage/bin/gpt2_ckpt" export --format hf --out "$runs/hf" \
      --data_dir "$stage/data" "$ckpt"
    run our_logits 60 train.txt "$stage/bin/gpt2_ckpt" logits "$ckpt" --prompt "ROMEO:" \
      --data_dir "$stage/data" --out "$runs/ours.bin"
    run hf_logits_check 90 train.txt python3 "$stage/reference/hf_logits_check.py" \
      --hf_dir "$runs/hf" --ours "$runs/ours.bin" --prompt "ROMEO:"
    grep "hf_logits_check:" "$out/train.txt" | tee -a "$out/machine.txt"
    # The weights, as bf16 parts, for the web demo here (launch/device_fetch_weights.sh).
    rm -rf "$keep"
    run export_llmc 60 train.txt "$stage/bin/gpt2_ckpt" export --format llmc \
      --out "$runs/model_f32.bin" "$ckpt" &&
      run weights_parts 60 train.txt python3 "$root/launch/weights_parts.py" split \
        "$runs/model_f32.bin" "$keep"
    rm -rf "$runs/hf" "$runs/model_f32.bin" "$runs/ours.bin"
  fi
fi

# ---- 5. The PyTorch reference on the same card ------------------------------------
run bench_pytorch_B16 150 bench.txt python3 "$stage/reference/gpt2_torch.py" --batch 16 \
  --seq_len 1024 --steps 10 ||
  # torch.compile can fail or take too long on a fresh machine: then eager mode.
  run bench_pytorch_eager_B16 90 bench.txt python3 "$stage/reference/gpt2_torch.py" --batch 16 \
    --seq_len 1024 --steps 10 --no_compile
grep -E "^pytorch reference" "$out/bench.txt" | tee -a "$out/machine.txt"

# ---- 6. Distributed paths on one GPU ------------------------------------------------
# Two ranks sharing the GPU (host-staged MPI, ZeRO-1) and NCCL at world size 1 against
# one process, 20 steps each (compare the step tables in dist.txt).
dist=$(mktemp -d)
run dist_single 90 dist.txt "$stage/bin/gpt2_ddp" --config "$stage/configs/gpt2_124m_shakespeare.pbtxt" \
  --data_dir "$stage/data" --set log.run_dir="$dist/one" --set train.max_steps=20 \
  --set checkpoint.save_at_end=false --set train.stop_at_loss=0
run dist_nccl_np1 90 dist.txt "$stage/bin/gpt2_ddp" \
  --config "$stage/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$stage/data" \
  --set log.run_dir="$dist/nccl" --set train.max_steps=20 --set distributed.comm=BACKEND_NCCL \
  --set checkpoint.save_at_end=false --set train.stop_at_loss=0
run dist_mpi_np2 120 dist.txt mpirun.openmpi -np 2 --oversubscribe -x LD_LIBRARY_PATH -x OPAL_PREFIX \
  -x PMIX_PKGDATADIR -x PMIX_PKGLIBDIR "$stage/bin/gpt2_ddp" \
  --config "$stage/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$stage/data" \
  --set log.run_dir="$dist/two" --set train.max_steps=20 --set train.micro_batch_size=8 \
  --set distributed.zero_stage=1 --set checkpoint.save_at_end=false --set train.stop_at_loss=0
rm -rf "$dist"

# ---- 7. What is left: the fast recipe, decode, other batch sizes -------------------
if [ "$skip_train" != "--skip-train" ]; then
  train shakespeare_fast gpt2_124m_shakespeare_fast 60 metrics_fast.jsonl
fi
rm -rf "$runs"
run decode_bench_124m 60 bench.txt "$stage/bin/gpt2_sample" --device cuda --bench --random_124m \
  --data_dir "$stage/data"
GPT2_DECODE_GRAPHS=0 run decode_bench_no_graphs 60 bench.txt "$stage/bin/gpt2_sample" --device cuda \
  --bench --random_124m --data_dir "$stage/data"
grep -E "tokens/s" "$out/bench.txt" | tail -4 | tee -a "$out/machine.txt"
# The same two ranks on the GPU as a test (label gpu): loss curves against one process.
run gpu_mpi_test 120 gpu_tests.txt mpirun.openmpi -np 2 --oversubscribe -x LD_LIBRARY_PATH \
  -x OPAL_PREFIX -x PMIX_PKGDATADIR -x PMIX_PKGLIBDIR "$stage/bin/cuda_mpi_test_gpu"
bench bench_ours_B64 64
# The portable attention kernels, to show what the tensor-core ones bring.
GPT2_PORTABLE_ATTENTION=1 bench bench_portable_attn_B16 16 --steps 5
bench bench_ours_B32 32
grep -E "^median" "$out/bench.txt" | tee -a "$out/machine.txt"

echo
echo "===== device_check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))" | tee -a "$out/machine.txt"
printf '%s\n' "${summary[@]}" | tee -a "$out/machine.txt"
