#!/usr/bin/env bash
# gpt2_ddp's CPU trainer (fp32) against an independent numpy GPT-2 trainer (float64,
# tests/reference/gpt2_numpy.py: its own forward, hand-written backward checked by
# finite differences, AdamW with decay on the 2-D weights only, clipping, warmup +
# cosine), from the same initial weights (written by the numpy side, read by
# gpt2_ddp --init_from) on the same token shard: every step's loss must agree to 2e-6
# relative over 80 steps of a model that is learning (lr 3e-3, a padded vocab). The
# whole algorithm, not only the gradients, is then PyTorch's.
#   numpy_reference_test.sh BIN_DIR SOURCE_DIR
# GPT2_NUMPY_EXTRA adds flags to the numpy side only, to see the test fail: e.g.
# "--weight_decay 0.0", "--clip 1.5" or "--warmup 4" each move some step's loss by
# 4e-3 to 7e-3.
set -euo pipefail
bin=$1 src=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$py" - <<'PYEOF'
import numpy as np
rng = np.random.default_rng(3)
# A few hundred distinct tokens repeated in a fixed order: learnable in 60 steps.
base = rng.integers(0, 256, 150)
tokens = np.tile(base, 20).astype("<u2")
header = np.zeros(256, dtype="<i4")
header[:3] = [20240520, 1, tokens.size]
open("train.bin", "wb").write(header.tobytes() + tokens.tobytes())
PYEOF
cat >tiny.pbtxt <<'CFG'
model { num_layers: 2 num_heads: 2 channels: 32 max_seq_len: 16 vocab_size: 256 padded_vocab_size: 320 }
data { train_shards: "train.bin" }
train { micro_batch_size: 4 seq_len: 16 total_batch_tokens: 64 max_steps: 80 precision: FP32 seed: 1 device: CPU }
optim { lr: 3e-3 beta1: 0.9 beta2: 0.95 eps: 1e-8 weight_decay: 0.1 grad_clip: 1.0 }
schedule { warmup_steps: 3 min_lr: 3e-4 }
log { run_name: "ours" every_steps: 10 }
checkpoint { save_at_end: false }
CFG
"$py" "$src/tests/reference/gpt2_numpy.py" --tokens train.bin --init init.bin \
  --padded_vocab 320 --steps 80 --lr 3e-3 --min_lr 3e-4 --warmup 3 ${GPT2_NUMPY_EXTRA:-} \
  --losses numpy_losses.txt --check_grads >numpy.log
head -1 numpy.log
OMP_NUM_THREADS=1 "$bin/gpt2_ddp" --config tiny.pbtxt --data_dir "$work" --init_from init.bin \
  --set log.run_dir="$work/logs" >ours.log 2>&1 || { cat ours.log; exit 1; }
"$py" - <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open("logs/ours/metrics.jsonl") if l.startswith("{")]
ours = [r["loss"] for r in rows if "loss" in r]  # the step rows
ref = [float(x) for x in open("numpy_losses.txt")]
if len(ours) != len(ref):
    sys.exit(f"FAIL: {len(ours)} steps from gpt2_ddp, {len(ref)} from numpy")
worst = max(range(len(ref)), key=lambda i: abs(ours[i] - ref[i]) / ref[i])
err = abs(ours[worst] - ref[worst]) / ref[worst]
print(f"loss step 0: {ref[0]:.6f}, step {len(ref) - 1}: {ref[-1]:.6f} (numpy) / {ours[-1]:.6f} (gpt2_ddp); "
      f"worst relative difference {err:.1e} at step {worst}")
if not ref[-1] < ref[0] - 0.5:
    sys.exit("FAIL: the model did not learn: nothing was tested")
if err > 2e-6:
    sys.exit(f"FAIL: step {worst}: gpt2_ddp {ours[worst]!r}, numpy {ref[worst]!r}")
print("PASS")
PYEOF
