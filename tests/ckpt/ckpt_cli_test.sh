#!/usr/bin/env bash
# gpt2_ckpt end to end: a small llm.c model file written here with python3 is
# imported, then inspected, verified, diffed, exported (llm.c byte-exact, Hugging
# Face folder checked with python3), damaged, and misused; every failure must exit
# 1..127 with a message naming the problem.
#   ckpt_cli_test.sh BIN_DIR [DATA_DIR]
set -u
bin=$(cd "$1" && pwd)
data=${2:-}
ckpt=$bin/gpt2_ckpt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0

ok() { echo "ok   $1"; passes=$((passes+1)); }
fail() { echo "FAIL $1"; failures=$((failures+1)); }

# expect_ok NAME PATTERN CMD...: exit 0 and output matching PATTERN.
expect_ok() {
  local name=$1 pattern=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne 0 ]; then fail "$name: exit $rc"; echo "$out" | tail -5
  elif ! grep -qE -- "$pattern" <<<"$out"; then fail "$name: output lacks /$pattern/"; echo "$out" | tail -5
  else ok "$name"; fi
}

# expect_fail NAME PATTERN CMD...: exit 1..127 (not a signal) and the message.
expect_fail() {
  local name=$1 pattern=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then fail "$name: exit code $rc (want 1..127)"; echo "$out" | tail -5
  elif ! grep -qE -- "$pattern" <<<"$out"; then fail "$name: output lacks /$pattern/"; echo "$out" | tail -5
  else ok "$name"; fi
}

# An llm.c model file (version 3): L=2 NH=2 C=8 maxT=16 V=50 Vp=64. With a third
# argument, one weight of qkvw differs.
make_llmc() {
  python3 - "$1" "${2:-}" <<'EOF'
import random, struct, sys
L, NH, C, maxT, V, Vp = 2, 2, 8, 16, 50, 64
sizes = [Vp*C, maxT*C, L*C, L*C, L*3*C*C, L*3*C, L*C*C, L*C, L*C, L*C,
         L*4*C*C, L*4*C, L*C*4*C, L*C, C, C]
random.seed(1234)
values = [random.gauss(0, 0.02) for _ in range(sum(sizes))]
if sys.argv[2]:
    values[sum(sizes[:4]) + 5] = 0.75
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", 20240326, 3, maxT, V, L, NH, C, Vp, *([0] * 248)))
    f.write(struct.pack("<%df" % len(values), *values))
EOF
}

make_llmc "$work/model.bin"
make_llmc "$work/other.bin" changed

expect_ok "import" "wrote .*a.ckpt" "$ckpt" import --from llmc --out "$work/a.ckpt" "$work/model.bin"
expect_ok "verify" "a.ckpt: ok \(format version 1, step 0, 16 tensors" "$ckpt" verify "$work/a.ckpt"
# A run folder (or its checkpoints/ folder) means the checkpoint its `latest` names.
mkdir -p "$work/run/checkpoints" "$work/empty_folder"
cp "$work/a.ckpt" "$work/run/checkpoints/step_00000007.ckpt"
echo step_00000007.ckpt >"$work/run/checkpoints/latest"
expect_ok "verify: run folder" "run/checkpoints/step_00000007.ckpt: ok" "$ckpt" verify "$work/run"
expect_ok "verify: checkpoints folder" "step_00000007.ckpt: ok" "$ckpt" verify "$work/run/checkpoints/"
expect_fail "verify: other folder" "empty_folder is a folder without" "$ckpt" verify "$work/empty_folder"
expect_ok "inspect: header" "format version: 1" "$ckpt" inspect "$work/a.ckpt"
expect_ok "inspect: config" "num_layers: 2" "$ckpt" inspect "$work/a.ckpt"
expect_ok "inspect: tensor row" "qkvw +\(2, 24, 8\) +f32 +384 " "$ckpt" inspect "$work/a.ckpt"
expect_ok "inspect: groups" "params +16 tensors +2400 elements \| rms" "$ckpt" inspect "$work/a.ckpt"
expect_ok "inspect: sizes" "size: header [0-9]+ .*params 9600 .*total" "$ckpt" inspect "$work/a.ckpt"
out=$("$ckpt" inspect --json "$work/a.ckpt" 2>&1)
if python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert d["format_version"] == 1, d["format_version"]
assert len(d["tensors"]) == 16
t = {x["name"]: x for x in d["tensors"]}
assert t["qkvw"]["shape"] == [2, 24, 8] and t["qkvw"]["numel"] == 384
assert t["wte"]["nan"] == 0 and abs(t["wte"]["std"] - 0.02) < 0.005, t["wte"]
assert d["header"]["config"]["model"]["channels"] == 8
assert d["size"]["params"] == 9600
assert d["groups"][0]["name"] == "params" and d["groups"][0]["elements"] == 2400
' <<<"$out"; then ok "inspect --json"; else fail "inspect --json"; echo "$out" | head -c 600; fi

expect_ok "export llmc" "wrote .*b.bin" "$ckpt" export --format llmc --out "$work/b.bin" "$work/a.ckpt"
if cmp -s "$work/model.bin" "$work/b.bin"; then ok "llm.c round trip is byte-exact"; else fail "llm.c round trip differs"; fi
expect_ok "import again" "wrote" "$ckpt" import --from llmc --weights_only --out "$work/b.ckpt" "$work/b.bin"
expect_ok "diff: identical" "^identical: 16 tensors" "$ckpt" diff "$work/a.ckpt" "$work/b.ckpt"
expect_ok "import changed" "wrote" "$ckpt" import --from llmc --out "$work/c.ckpt" "$work/other.bin"
expect_ok "diff: one weight" "qkvw +[0-9.e+-]+ +[0-9.e+-]+ +1$" "$ckpt" diff "$work/a.ckpt" "$work/c.ckpt"
expect_ok "diff: summary" "^different: 1 of 16" "$ckpt" diff "$work/a.ckpt" "$work/c.ckpt"

expect_ok "export hf" "wrote .*hf" "$ckpt" export --format hf --notokenizer --out "$work/hf" "$work/a.ckpt"
if python3 - "$work/hf" "$work/model.bin" <<'EOF'
import json, struct, sys
d, llmc = sys.argv[1], sys.argv[2]
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
assert (8 + n) % 8 == 0
h = json.loads(raw[8:8 + n])
h.pop("__metadata__")
assert len(h) == 4 + 12 * 2, len(h)
assert h["transformer.wte.weight"]["shape"] == [50, 8]
assert h["transformer.h.1.attn.c_attn.weight"]["shape"] == [8, 24]
assert h["transformer.h.0.mlp.c_proj.weight"]["shape"] == [32, 8]
spans = sorted(t["data_offsets"] for t in h.values())
pos = 0
for b, e in spans:
    assert b == pos, (b, pos); pos = e
assert pos == len(raw) - 8 - n
# c_attn.weight[i][o] of layer 0 is qkvw[0][o][i] in llm.c's file.
C = 8
src = open(llmc, "rb").read()
qkvw = 1024 + 4 * (64 * C + 16 * C + 2 * C + 2 * C)
def ours(o, i): return struct.unpack_from("<f", src, qkvw + 4 * (o * C + i))[0]
b = 8 + n + h["transformer.h.0.attn.c_attn.weight"]["data_offsets"][0]
def theirs(i, o): return struct.unpack_from("<f", raw, b + 4 * (i * 3 * C + o))[0]
for i, o in [(0, 0), (1, 5), (7, 23), (3, 9)]:
    assert ours(o, i) == theirs(i, o)
cfg = json.load(open(d + "/config.json"))
assert cfg["n_layer"] == 2 and cfg["n_embd"] == 8 and cfg["vocab_size"] == 50
assert cfg["architectures"] == ["GPT2LMHeadModel"]
EOF
then ok "hf export layout"; else fail "hf export layout"; fi
if [ -n "$data" ] && [ -f "$data/gpt2/encoder.json" ]; then
  expect_ok "export hf + tokenizer" "vocab.json, merges.txt" \
    "$ckpt" export --format hf --data_dir "$data" --out "$work/hf2" "$work/a.ckpt"
  if cmp -s "$data/gpt2/vocab.bpe" "$work/hf2/merges.txt"; then ok "merges.txt copied"; else fail "merges.txt"; fi
else
  # CMake always passes the tests' data folder: without GPT-2's tokenizer in it these
  # two checks would go unrun under a passing test.
  fail "export hf + tokenizer: no GPT-2 tokenizer in '$data' (gpt2/encoder.json)"
fi
# ...and back: the weights round-trip exactly (the import pads the vocab to 128 rows).
expect_ok "import hf" "wrote .*hf.ckpt" "$ckpt" import --from hf --step 5 --out "$work/hf.ckpt" "$work/hf"
expect_ok "export of the import" "wrote" "$ckpt" export --format llmc --out "$work/hf.bin" "$work/hf.ckpt"
if python3 - "$work/model.bin" "$work/hf.bin" <<'EOF'
import struct, sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
ha, hb = struct.unpack_from("<256i", a), struct.unpack_from("<256i", b)
assert ha[2:7] == hb[2:7], (ha[:8], hb[:8])  # maxT V L NH C
C, V, Vpa, Vpb = ha[6], ha[3], ha[7], hb[7]
assert Vpb == 128, Vpb
# wte's real rows, then every tensor after wte, are the same floats.
assert a[1024:1024 + 4 * V * C] == b[1024:1024 + 4 * V * C]
assert a[1024 + 4 * Vpa * C:] == b[1024 + 4 * Vpb * C:]
assert b[1024 + 4 * V * C:1024 + 4 * Vpb * C] == bytes(4 * (Vpb - V) * C)
EOF
then ok "hf import round trip"; else fail "hf import round trip"; fi
expect_fail "import hf: not safetensors" "not a safetensors file" \
  "$ckpt" import --from hf --out "$work/x.ckpt" "$work/model.bin"
expect_fail "hf without tokenizer files" "nodata/gpt2/encoder.json: tokenizer file not found.*--notokenizer" \
  "$ckpt" export --format hf --data_dir "$work/nodata" --out "$work/hf3" "$work/a.ckpt"

# Damaged files.
cp "$work/a.ckpt" "$work/flip.ckpt"
size=$(stat -c %s "$work/flip.ckpt")
python3 - "$work/flip.ckpt" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x40
open(p, "wb").write(bytes(b))
EOF
expect_fail "verify: flipped byte" "flip.ckpt: record [0-9]+ .*(crc32c mismatch)" "$ckpt" verify "$work/flip.ckpt"
# An export that fails on the damage, into a folder it made, leaves no folder behind.
expect_fail "export hf: flipped byte" "crc32c mismatch" \
  "$ckpt" export --format hf --notokenizer --out "$work/fresh_hf" "$work/flip.ckpt"
if [ ! -e "$work/fresh_hf" ]; then ok "... and no folder left behind"; else
  fail "a failed export left $work/fresh_hf ($(ls "$work/fresh_hf" | tr '\n' ' '))"; fi
head -c $((size - 7)) "$work/a.ckpt" >"$work/short.ckpt"
expect_fail "verify: truncated" "short.ckpt: .*truncated" "$ckpt" verify "$work/short.ckpt"
expect_fail "diff: unreadable" "short.ckpt" "$ckpt" diff "$work/a.ckpt" "$work/short.ckpt"
expect_fail "verify: llm.c file" "llm.c model file.*import --from llmc" "$ckpt" verify "$work/model.bin"
expect_fail "import: not llm.c" "not an llm.c model file" "$ckpt" import --from llmc --out "$work/x.ckpt" "$work/a.ckpt"

# Bad usage.
expect_fail "no subcommand" "missing subcommand" "$ckpt"
expect_fail "unknown subcommand" "unknown subcommand 'frobnicate'" "$ckpt" frobnicate
expect_fail "verify without file" "expected: gpt2_ckpt verify FILE" "$ckpt" verify
expect_fail "missing file" "nope.ckpt: cannot open checkpoint" "$ckpt" inspect "$work/nope.ckpt"
expect_fail "diff one file" "expected: gpt2_ckpt diff A B" "$ckpt" diff "$work/a.ckpt"
# A folder where the file should go: refused before anything is written (it wrote the
# whole export to <folder>.tmp, then said "cannot write: Success").
mkdir -p "$work/outdir"
expect_fail "export llmc onto a folder" "outdir is a folder, not a file to export to" \
  "$ckpt" export --format llmc --out "$work/outdir" "$work/a.ckpt"
if [ ! -e "$work/outdir.tmp" ]; then ok "export onto a folder wrote nothing"; else
  fail "export onto a folder left $work/outdir.tmp"; fi
# What --out would replace: never the input itself; a training checkpoint, or a folder of
# other files than an export's, only with --force (they were overwritten without a word).
cp "$work/a.ckpt" "$work/self.ckpt"
expect_fail "export onto its own input" "is the input itself" \
  "$ckpt" export --format llmc --out "$work/self.ckpt" "$work/self.ckpt"
expect_ok "the input is untouched" "self.ckpt: ok" "$ckpt" verify "$work/self.ckpt"
expect_fail "import onto its own hf input" "is the input itself" \
  "$ckpt" import --from hf --out "$work/hf/model.safetensors" "$work/hf"
# A training checkpoint (optimizer state and all): one step of the tiny config.
configs=$(cd "$(dirname "$0")/../../configs" && pwd)
if [ -n "$data" ] && "$bin/gpt2_ddp" --config "$configs/tiny_cpu.pbtxt" --data_dir "$data" \
     --set train.max_steps=1 --set log.val_every_steps=0 --set 'log.sample_prompts=[]' \
     --set log.run_dir="$work/train" >"$work/train.log" 2>&1; then
  cp "$work/train/tiny_cpu/checkpoints/step_00000001.ckpt" "$work/training.ckpt"
  expect_fail "import over a training checkpoint" \
    "training.ckpt is a training checkpoint \(step 1, with its optimizer state\)" \
    "$ckpt" import --from llmc --out "$work/training.ckpt" "$work/b.bin"
  expect_ok "... it is untouched" "optimizer state: yes" "$ckpt" inspect "$work/training.ckpt"
  expect_ok "... with --force" "wrote .*training.ckpt" \
    "$ckpt" import --from llmc --force --out "$work/training.ckpt" "$work/b.bin"
else
  fail "no training checkpoint to overwrite (needs DATA_DIR; gpt2_ddp said: $(tail -3 "$work/train.log" 2>/dev/null))"
fi
mkdir -p "$work/mine" && echo notes > "$work/mine/notes.txt"
expect_fail "hf export into a folder of other files" "holds files an export does not write \(notes.txt\)" \
  "$ckpt" export --format hf --notokenizer --out "$work/mine" "$work/a.ckpt"
expect_ok "hf export over an earlier export" "wrote .*hf" \
  "$ckpt" export --format hf --notokenizer --out "$work/hf" "$work/a.ckpt"
expect_ok "... with --force" "wrote .*mine" \
  "$ckpt" export --format hf --notokenizer --force --out "$work/mine" "$work/a.ckpt"
# An export that fails part-way (here: a folder where vocab.json's temporary file goes)
# leaves the earlier export whole: every file is written before any is renamed into place
# (a full disk left new weights beside the old tokenizer files).
if [ -n "$data" ]; then
  expect_ok "hf export with the tokenizer" "wrote .*hf" \
    "$ckpt" export --format hf --data_dir "$data" --out "$work/hf" "$work/a.ckpt"
  before=$(sha256sum "$work/hf/model.safetensors" | cut -d' ' -f1)
  mkdir -p "$work/hf/vocab.json.tmp"
  expect_fail "an export that fails part-way" "vocab.json.tmp" \
    "$ckpt" export --format hf --data_dir "$data" --out "$work/hf" "$work/c.ckpt"
  after=$(sha256sum "$work/hf/model.safetensors" | cut -d' ' -f1)
  if [ "$before" = "$after" ] && [ ! -e "$work/hf/model.safetensors.tmp" ]; then
    ok "... left the earlier export's weights as they were"
  else
    fail "a failed export changed model.safetensors or left its .tmp"
  fi
  rmdir "$work/hf/vocab.json.tmp"
fi

expect_fail "import onto a folder" "outdir is a folder: name the checkpoint file" \
  "$ckpt" import --from llmc --out "$work/outdir" "$work/b.bin"

# A flag of another subcommand is refused, not ignored.
expect_fail "verify with --format" "--format does not apply to verify" \
  "$ckpt" verify --format hf "$work/a.ckpt"
expect_fail "inspect with --out" "--out does not apply to inspect" "$ckpt" inspect --out x "$work/a.ckpt"
expect_fail "export with --json" "--json does not apply to export" \
  "$ckpt" export --json --format llmc --out "$work/j.bin" "$work/a.ckpt"
expect_fail "export without format" "export needs --format llmc or hf" "$ckpt" export --out "$work/x" "$work/a.ckpt"
expect_fail "export without out" "export needs --out" "$ckpt" export --format llmc "$work/a.ckpt"
expect_fail "import bad from" "import needs --from llmc or --from hf" "$ckpt" import --from onnx --out "$work/x.ckpt" "$work/model.bin"
expect_fail "unknown flag" "Unknown command line flag 'bogus'" "$ckpt" verify --bogus "$work/a.ckpt"

help=$("$ckpt" --help 2>&1)
for word in inspect verify diff "export --format llmc" "export --format hf" "import --from llmc" "import --from hf" --json --data_dir --notokenizer; do
  if grep -q -- "$word" <<<"$help"; then passes=$((passes+1)); else fail "--help lacks $word"; fi
done

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
