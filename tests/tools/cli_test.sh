#!/usr/bin/env bash
# The command-line tools on bad input: each case must exit non-zero with a message that
# names the problem, and never crash (exit codes >= 128 are signals).
#   cli_test.sh BIN_DIR SOURCE_DIR DATA_DIR
set -u
bin=$(cd "$1" && pwd) src=$(cd "$2" && pwd) data=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 passes=0

# expect_fail NAME PATTERN CMD...
expect_fail() {
  local name=$1 pattern=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
    echo "FAIL $name: exit code $rc (want 1..127)"; echo "$out" | tail -5; failures=$((failures+1))
  elif ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/:"; echo "$out" | tail -5; failures=$((failures+1))
  else
    echo "ok   $name"; passes=$((passes+1))
  fi
}

ddp=$bin/gpt2_ddp
printf 'model {\n  num_layerz: 2\n}\n' >"$work/unknown.pbtxt"
expect_fail "no --config" "--config FILE is required" "$ddp"
expect_fail "missing config" "nope.pbtxt: cannot open config file" "$ddp" --config "$work/nope.pbtxt"
# A folder where a file belongs is named as such (it read as an empty file: "set exactly
# one of data.train_shards and data.train_text", "no training tokens out of 0").
expect_fail "config is a folder" "$work is a folder, not a config file" "$ddp" --config "$work"
expect_fail "training text is a folder" "tinyshakespeare is a folder, not a text file" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set data.train_text=tinyshakespeare
expect_fail "unknown field" "unknown.pbtxt:2:.*num_layerz" "$ddp" --config "$work/unknown.pbtxt"
expect_fail "bad --set" "no field 'max_stepz' in train" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --set train.max_stepz=3
expect_fail "inconsistent" "train.seq_len \(128\) exceeds model.max_seq_len \(64\)" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --set train.seq_len=128
expect_fail "missing data" "cannot open the training text" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$work/empty"
expect_fail "stray argument" "unexpected argument 'extra'" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" extra
# The GPT2_* switches: a value a switch does not take is refused (it would leave
# the switch silently off); a misspelt name is warned about.
expect_fail "bad switch value" "GPT2_UPDATE_BESIDE=yes: GPT2_UPDATE_BESIDE takes 0 or 1" \
  env GPT2_UPDATE_BESIDE=yes "$ddp" --config "$src/configs/tiny_cpu.pbtxt"
expect_fail "misspelt switch" "warning: GPT2_TRAIN_GRAPH is set, but no gpt2 tool reads it" \
  env GPT2_TRAIN_GRAPH=1 "$ddp"
expect_fail "CUDA without a GPU" "no GPU is usable|no CUDA backend" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.device=CUDA
expect_fail "resume without checkpoints" "latest" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set log.run_dir="$work/none" \
  --resume latest
expect_fail "init_from missing file" "cannot open --init_from file" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --init_from "$work/nope.ckpt" \
  --set log.run_dir="$work/refused"
printf 'not a model at all' >"$work/junk.bin"
expect_fail "init_from neither format" "takes a gpt2_ddp checkpoint, an llm.c model file" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --init_from "$work/junk.bin" \
  --set log.run_dir="$work/refused"
expect_fail "sample without a prompt" "prompt" "$bin/gpt2_sample" --checkpoint "$work/nope.ckpt"
expect_fail "prepro no args" "--input and --output_dir are required" "$bin/gpt2_prepro"
expect_fail "prepro missing input" "nope.txt: no such file" \
  "$bin/gpt2_prepro" --input "$work/nope.txt" --output_dir "$work/out"
mkdir -p "$work/corpus/sub"
printf '{"text": "one"}\n{"body": "two"}\n' >"$work/corpus/bad.jsonl"
expect_fail "prepro jsonl line without text" "bad.jsonl:2: not a JSON object with a string \"text\"" \
  "$bin/gpt2_prepro" --input "$work/corpus/bad.jsonl" --output_dir "$work/out" --data_dir "$data"
rm "$work/corpus/bad.jsonl"
# An input with no text says so, and leaves no empty output folder behind; a --name with
# a '/' (the shards went outside --output_dir) and a file named twice are refused.
: >"$work/empty.txt"
expect_fail "prepro empty input" "the input holds no text" \
  "$bin/gpt2_prepro" --input "$work/empty.txt" --output_dir "$work/pp_empty" --data_dir "$data"
[ ! -e "$work/pp_empty" ]; if [ $? -eq 0 ]; then passes=$((passes+1)); else
  echo "FAIL prepro empty input left $work/pp_empty"; failures=$((failures+1)); fi
printf 'some text\n' >"$work/small.txt"
expect_fail "prepro name with a slash" "--name '../escape' must be a plain name" \
  "$bin/gpt2_prepro" --input "$work/small.txt" --output_dir "$work/pp" --name ../escape --data_dir "$data"
# --plan makes the loader's checks too: a shard shorter than one step fails the plan as
# it fails the run (the plan passed it).
printf 'x y\n' >"$work/tiny.txt"
"$bin/gpt2_prepro" --input "$work/tiny.txt" --output_dir "$work/pp_tiny" --data_dir "$data" >/dev/null 2>&1
expect_fail "plan with a shard too short" "data: FAILS: .*tiny_train.bin: [0-9]+ tokens; one step needs 513" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set data.train_text= \
  --set data.train_shards="$work/pp_tiny/tiny_train.bin" --set data.val_tokens=0 --plan
# Into a folder inside the data directory: the config lines it prints are relative to
# it, and their glob takes a lone shard (<name>_train.bin).
mkdir -p "$work/dd" && ln -sfn "$data/gpt2" "$work/dd/gpt2"
out=$("$bin/gpt2_prepro" --input "$work/tiny.txt" --output_dir "$work/dd/lone" --data_dir "$work/dd" 2>&1)
glob=$(sed -nE 's/^    train_shards: "(.*)"$/\1/p' <<<"$out")
matched=$(cd "$work/dd" && echo $glob)
if grep -q "^for a config (paths relative to the data directory):" <<<"$out" \
   && [ "$glob" = "lone/tiny_train*.bin" ] && [ "$matched" = "lone/tiny_train.bin" ] \
   && ! grep -q "val_shards" <<<"$out"; then
  echo "ok   prepro config lines relative to the data directory"; passes=$((passes+1))
else
  echo "FAIL prepro config lines relative to the data directory ('$glob' matched '$matched')"
  echo "$out" | tail -5; failures=$((failures+1))
fi
expect_fail "prepro without the BPE files" "encoder.json.*set --data_dir or GPT2_DATA_DIR" \
  "$bin/gpt2_prepro" --input "$work/small.txt" --output_dir "$work/pp" --data_dir "$work/nodata"
expect_fail "prepro file named twice" "small.txt: named twice in --input" \
  "$bin/gpt2_prepro" --input "$work/small.txt,$work/small.txt" --output_dir "$work/pp" --data_dir "$data"

# A corpus of several files (a folder of text, JSON lines) into shards, then trained on.
head -c 300000 "$data/tinyshakespeare/input.txt" >"$work/corpus/a.txt"
tail -c 300000 "$data/tinyshakespeare/input.txt" >"$work/corpus/sub/b.txt"
printf '{"text": "To be, or not to be"}\n\n{"text": "that is the question"}\n' >"$work/corpus/c.jsonl"
out=$("$bin/gpt2_prepro" --input "$work/corpus" --output_dir "$work/shards" --name mine \
      --val_tokens 5000 --shard_tokens 60000 --data_dir "$data" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "^3 file(s), .*each document starts with <|endoftext|>" <<<"$out" \
   && grep -q "^tokenized 4 documents" <<<"$out" && grep -q "mine_train_000001.bin" <<<"$out" \
   && grep -q "wrote .*/mine_val.bin: 5000 tokens" <<<"$out" \
   && grep -q "^for a config (absolute paths: the folder is not under the data directory):" <<<"$out"; then
  echo "ok   prepro corpus"; passes=$((passes+1))
else
  echo "FAIL prepro corpus (rc=$rc)"; echo "$out" | tail -5; failures=$((failures+1))
fi
# The config lines it printed, as they are: the glob takes every shard (a lone one too).
train_glob=$(sed -nE 's/^    train_shards: "(.*)"$/\1/p' <<<"$out")
val_file=$(sed -nE 's/^    val_shards: "(.*)"$/\1/p' <<<"$out")
out=$(cd "$work" && "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set data.train_text= --set "data.train_shards=$train_glob" --set "data.val_shards=$val_file" \
      --set data.val_tokens=0 --set train.max_steps=2 --set log.sample_prompts= --set log.run_name=mine 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$train_glob" = "$work/shards/mine_train*.bin" ] \
   && grep -qE "^loaded [0-9]+ train tokens in [0-9]+ shards? .*/mine_train\*\.bin; [0-9]+ val tokens in 1 shard .*/mine_val\.bin$" <<<"$out" \
   && grep -q "^step 1 |" <<<"$out"; then
  echo "ok   training on the prepro shards"; passes=$((passes+1))
else
  echo "FAIL training on the prepro shards (rc=$rc)"; echo "$out" | grep -E "^loaded|^error" ; echo "$out" | tail -2; failures=$((failures+1))
fi
# --plan makes the val set's checks too (a val shard shorter than one batch; val passes asked for with no
# val set): the plan passed both, the run then refused them.
expect_fail "plan with a val shard too short" "data: FAILS: the val set: .*tiny_train.bin: [0-9]+ tokens; one step needs 513" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set data.train_text= \
  --set data.train_shards="$train_glob" --set data.val_shards="$work/pp_tiny/tiny_train.bin" \
  --set data.val_tokens=0 --plan
expect_fail "plan with val passes and no val set" "data: FAILS: .*log.val_every_steps is set but the data has no val set" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set data.train_text= \
  --set data.train_shards="$train_glob" --set data.val_tokens=0 --plan
expect_fail "bench bad shape" "--channels 768: must be a multiple of --heads 5" "$bin/gpt2_bench" --heads 5
# (--channels 0 died of SIGFPE; every bad value is named.)
# --comm on one rank: nothing to overlap (it printed noise as negative milliseconds).
if timeout 120 "$bin/gpt2_bench" --comm --layers 1 --channels 16 --heads 2 --batch 2 --seq_len 16 --steps 1 \
     --tokenizer=false 2>&1 | grep -q "^overlap: one rank, nothing communicated to hide"; then
  echo "ok   bench --comm on one rank"; passes=$((passes+1))
else echo "FAIL bench --comm on one rank"; failures=$((failures+1)); fi
expect_fail "bench zero channels" "--channels 0: must be >= 1$" "$bin/gpt2_bench" --channels 0
expect_fail "bench several bad values" "--batch 0: must be >= 1; --seq_len 2000: must be in \[1, 1024\]" \
  "$bin/gpt2_bench" --batch 0 --seq_len 2000
expect_fail "bench weights that cannot fit" "state alone do not fit: a smaller shape" \
  "$bin/gpt2_bench" --layers 100000 --tokenizer=false --steps 1
expect_fail "bench that cannot fit" "B=4096 T=[0-9]+ needs .* on the host and .* is free .*: a smaller --batch or --seq_len fits" \
  "$bin/gpt2_bench" --batch 4096 --steps 1 --tokenizer=false
expect_fail "bench stray argument" "unexpected argument '16'" "$bin/gpt2_bench" 16
# Each timed step's loss is read: a non-finite one fails the bench (a NaN weight made by
# the test hook flows through the tied lm-head into every row's loss), and the first and
# last are printed, the last lower (the same tokens every step).
expect_fail "bench with a non-finite loss" "the mean loss of step 2 is nan: this step is broken at B=2 T=64" \
  env GPT2_TEST_NAN_AT=2:weights "$bin/gpt2_bench" --layers 1 --channels 16 --heads 2 --batch 2 \
  --seq_len 64 --steps 3 --tokenizer=false
out=$("$bin/gpt2_bench" --layers 1 --channels 16 --heads 2 --batch 2 --seq_len 64 --steps 3 \
      --tokenizer=false 2>&1); rc=$?
first=$(sed -nE 's/^loss: ([0-9.]+) at step 0, ([0-9.]+) at step 3 .*/\1/p' <<<"$out")
last=$(sed -nE 's/^loss: ([0-9.]+) at step 0, ([0-9.]+) at step 3 .*/\2/p' <<<"$out")
if [ $rc -eq 0 ] && [ -n "$first" ] && awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a && a > 10 && a < 11.5) }' \
   && ! grep -q "^warning: the loss did not fall" <<<"$out"; then
  echo "ok   bench loss falls ($first -> $last)"; passes=$((passes+1))
else
  echo "FAIL bench loss (rc=$rc, '$first' -> '$last')"; echo "$out" | tail -3; failures=$((failures+1))
fi
expect_fail "bench bf16 state on f32" "--bf16_state keeps the optimizer state in bf16 beside bf16 params; this step's are f32" "$bin/gpt2_bench" --bf16_state --layers 1 --channels 16 --heads 2 --steps 1 --tokenizer=false
tiny_bench=("$bin/gpt2_bench" --layers 1 --channels 16 --heads 2 --batch 2 --seq_len 64 --steps 1
            --tokenizer=false)
expect_fail "bench text tokens without the text" "tinyshakespeare/input.txt: cannot open" \
  "${tiny_bench[@]}" --text_tokens --data_dir "$work/empty"
# The text's first 128 tokens repeat some (uniform random ones over 50,257 would not).
out=$("${tiny_bench[@]}" --text_tokens --data_dir "$data" 2>&1); rc=$?
distinct=$(sed -nE "s/^train step: .*; tokens: Tiny Shakespeare's from its start, ([0-9]+) distinct of 128$/\1/p" <<<"$out")
if [ $rc -eq 0 ] && [ -n "$distinct" ] && [ "$distinct" -lt 110 ] && grep -q "^median over 1 steps" <<<"$out"; then
  echo "ok   bench on the text's tokens ($distinct distinct of 128)"; passes=$((passes+1))
else
  echo "FAIL bench on the text's tokens (rc=$rc, distinct '$distinct')"; echo "$out" | tail -3
  failures=$((failures+1))
fi
expect_fail "prepro stray argument" "unexpected argument 'x'" "$bin/gpt2_prepro" x

# --help prints and exits 0 in every tool (Abseil's own exit status is 1).
for tool in gpt2_ddp gpt2_sample gpt2_serve gpt2_ckpt gpt2_eval gpt2_prepro gpt2_bench; do
  out=$("$bin/$tool" --help 2>&1); rc=$?
  if [ $rc -eq 0 ] && [ -n "$out" ]; then
    passes=$((passes+1))
  else
    echo "FAIL $tool --help: exit $rc"; echo "$out" | tail -2; failures=$((failures+1))
  fi
done

# --help explains every flag.
help=$("$ddp" --help 2>&1)
for flag in --config --set --data_dir --plan; do
  if grep -q -- "$flag" <<<"$help"; then passes=$((passes+1)); else
    echo "FAIL --help lacks $flag"; failures=$((failures+1)); fi
done

# --plan: the batch arithmetic, the lr schedule and the memory per rank, nothing written; a run that
# cannot fit is refused with a micro-batch that does (the whole total batch kept).
out=$(cd "$work" && "$ddp" --config "$src/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$data" \
      --plan 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "16 x 1024 tokens per micro-step x 1 rank(s) x 1 accumulation step(s) = 16,384 tokens per step; 1 epoch = 20 steps" <<<"$out" \
   && grep -q "^schedule: lr 6.0000e-04 after 10 warmup steps, cosine to 6.0000e-05 at step 5,000$" <<<"$out" \
   && grep -qE "^memory per rank: params 474.8 MiB, grads 474.8 MiB, optimizer 949.7 MiB, activations [0-9.]+ GiB" <<<"$out" \
   && grep -q "^memory check: .* free on the host" <<<"$out" && [ ! -e "$work/logs/gpt2_124m_shakespeare" ]; then
  echo "ok   --plan"; passes=$((passes+1))
else
  echo "FAIL --plan (rc=$rc)"; echo "$out" | tail -5; failures=$((failures+1))
fi
# --plan of a CUDA run where no GPU is usable (planning one on a laptop): the plan in bf16,
# as the GPU would run it, and no memory check (it stopped at "no GPU is usable").
out=$(cd "$work" && "$ddp" --config "$src/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$data" \
      --set train.device=CUDA --plan 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "124,475,904 parameters; bf16 on cuda$" <<<"$out" \
   && grep -q "^memory per rank: params 237.4 MiB, grads 237.4 MiB, optimizer 1.4 GiB" <<<"$out" \
   && grep -qE "^memory check: (not made, no GPU here \(|.* free on GPU)" <<<"$out"; then
  echo "ok   --plan of a CUDA run"; passes=$((passes+1))
else
  echo "FAIL --plan of a CUDA run (rc=$rc)"; echo "$out" | tail -4; failures=$((failures+1))
fi
GPT2_TEST_FREE_MEMORY=8000000000 expect_fail "run that cannot fit" \
  "needs 14.7 GiB of memory on the host and 7.5 GiB is free.*--set train.micro_batch_size=4 " \
  "$ddp" --config "$src/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$data" --set log.run_dir="$work/nofit"
[ ! -e "$work/nofit" ]; if [ $? -eq 0 ]; then passes=$((passes+1)); else
  echo "FAIL a refused run wrote $work/nofit"; failures=$((failures+1)); fi

# A short real run from the raw text: the data dir is only read.
before=$(find "$data" -type f | sort | xargs sha256sum | sha256sum)
out=$(cd "$work" && "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set train.max_steps=2 --set log.val_every_steps=0 2>&1); rc=$?
after=$(find "$data" -type f | sort | xargs sha256sum | sha256sum)
if [ $rc -eq 0 ] && grep -qE '^step 1 \| loss: [0-9.]+ \|' <<<"$out" && [ "$before" = "$after" ] \
   && [ -s "$work/logs/tiny_cpu/metrics.jsonl" ]; then
  echo "ok   tiny run from raw text"; passes=$((passes+1))
else
  echo "FAIL tiny run (rc=$rc)"; echo "$out" | tail -5; failures=$((failures+1))
fi
# Its last lines: what to do next with the saved run, as commands to copy (the tools by
# this binary's folder, the config's first prompt).
if grep -qxF "next: $bin/gpt2_sample --checkpoint logs/tiny_cpu --prompt \"ROMEO:\"   (samples)" <<<"$out" \
   && grep -qxF "      $bin/gpt2_serve --checkpoint logs/tiny_cpu   (the web demo, http://127.0.0.1:8080)" <<<"$out" \
   && grep -qxF "      the same command with --resume latest --set train.max_steps=4   (more steps)" <<<"$out" \
   && [ "$(tail -1 <<<"$out")" = "      the same command with --resume latest --set train.max_steps=4   (more steps)" ]; then
  echo "ok   a run ends with the next commands"; passes=$((passes+1))
else
  echo "FAIL a run ends with the next commands"; echo "$out" | tail -4; failures=$((failures+1))
fi

# A run refused at its --init_from, in the folder of that run: the run's logs are left as
# they were (its train.log and metrics.jsonl were emptied).
logs_before=$(cat "$work/logs/tiny_cpu/train.log" "$work/logs/tiny_cpu/metrics.jsonl" | sha256sum)
(cd "$work" && "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
   --init_from "$work/junk.bin" >/dev/null 2>&1)
refused_rc=$?
logs_after=$(cat "$work/logs/tiny_cpu/train.log" "$work/logs/tiny_cpu/metrics.jsonl" | sha256sum)
if [ $refused_rc -ne 0 ] && [ "$logs_before" = "$logs_after" ] && [ -s "$work/logs/tiny_cpu/metrics.jsonl" ]; then
  echo "ok   a refused --init_from leaves the folder's logs"; passes=$((passes+1))
else
  echo "FAIL a refused --init_from emptied the folder's logs (rc=$refused_rc)"; failures=$((failures+1))
fi
# SIGINT ignored from the start (a background job of a non-interactive shell) stays
# ignored, and the run says so (kill -INT did nothing, silently).
out=$(cd "$work" && trap '' INT && exec "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set train.max_steps=1 --set log.val_every_steps=0 --set log.sample_prompts= \
      --set log.run_name=ignored 2>&1)
if grep -q "^gpt2_ddp: note: SIGINT ignored when this process started .* stop the run with SIGTERM$" <<<"$out"; then
  echo "ok   an inherited ignored SIGINT is said"; passes=$((passes+1))
else
  echo "FAIL an inherited ignored SIGINT is said"; echo "$out" | head -3; failures=$((failures+1))
fi
# A fresh run in a folder that holds another run's checkpoints warns (they were mixed
# unawares); samples longer than the model's context say they stop there; NCCL asked
# for a CPU process is refused as it is for CPU ranks.
warn_run=("$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=1
          --set log.val_every_steps=0 --set log.run_name=again --set log.sample_prompts=ROMEO:)
(cd "$work" && "${warn_run[@]}" >/dev/null 2>&1)
out=$(cd "$work" && "${warn_run[@]}" --set log.sample_tokens=100 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "warning: logs/again already holds a run (latest checkpoint .*step_00000001.ckpt)" <<<"$out" \
   && grep -q "100 new tokens each, fewer where the model's context of 64 tokens ends first" <<<"$out"; then
  echo "ok   a fresh run over an earlier one; samples cut by the context"; passes=$((passes+1))
else
  echo "FAIL a fresh run over an earlier one (rc=$rc)"; echo "$out" | grep -E "warning|samples" | head -3
  failures=$((failures+1))
fi
# The end-of-training samples come with the gpt2_sample commands that draw them again
# (each prompt's seed, the checkpoint of those weights); run, they print samples.txt's
# bytes, a prompt with a quote and a newline (shell-quoted as $'...') included.
out=$(cd "$work" && "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set train.max_steps=1 --set log.val_every_steps=0 --set log.run_name=redraw \
      --set log.sample_tokens=8 --set log.samples_per_prompt=2 --set log.sample_prompts=ROMEO: \
      --set log.sample_prompts+=$'It\'s\nus' 2>&1); rc=$?
redraws=$(sed -n '/^the same samples again:$/,/^done:/p' <<<"$out" | grep '^  .*gpt2_sample --checkpoint ')
redrawn=$(cd "$work" && while IFS= read -r command; do eval "$command" 2>/dev/null; done <<<"$redraws" |
          grep -avE '^[0-9]+ samples?, [0-9]+ new tokens')
if [ $rc -eq 0 ] && [ "$(wc -l <<<"$redraws")" -eq 2 ] && [ -s "$work/logs/redraw/samples.txt" ] \
   && [ "$redrawn" == "$(cat "$work/logs/redraw/samples.txt")" ]; then
  echo "ok   the end-of-training samples' gpt2_sample commands draw them again"; passes=$((passes+1))
else
  echo "FAIL the end-of-training samples' gpt2_sample commands (rc=$rc)"; echo "$redraws" | head -3
  diff <(echo "$redrawn") "$work/logs/redraw/samples.txt" | head -5; failures=$((failures+1))
fi
expect_fail "NCCL on a CPU process" "BACKEND_NCCL, but these ranks run on the CPU backend" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set distributed.comm=BACKEND_NCCL \
  --set log.run_dir="$work/nccl"

# A reader of its output that goes away (`| head -1`: gone after the first line, long
# before the steps) does not end a run: it trains on (SIGPIPE ignored), every line still
# in train.log.
piped_rc=$(cd "$work" && { "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
      --set train.max_steps=2 --set log.val_every_steps=0 --set log.run_name=piped 2>&1 |
    head -1 >/dev/null; echo "${PIPESTATUS[0]}"; })
if [ "$piped_rc" = 0 ] && grep -q "^done: 2 steps" "$work/logs/piped/train.log" 2>/dev/null; then
  echo "ok   a run whose stdout reader went away"; passes=$((passes+1))
else
  echo "FAIL a run whose stdout reader went away (rc=$piped_rc)"; failures=$((failures+1))
fi

# Its TensorBoard events, read by a decoder of the format written apart from ours, are
# metrics.jsonl's figures, with the samples and the run's header as text
# (tests/reference/tensorboard_check.py).
out=$(/usr/bin/python3 "$src/tests/reference/tensorboard_check.py" "$work/logs/tiny_cpu" 2>&1)
if [ $? -eq 0 ] && grep -q "^tensorboard_check: ok: 1 event file(s), 2 train/loss values.*, 2 text summaries" <<<"$out"; then
  echo "ok   TensorBoard events of the tiny run"; passes=$((passes+1))
else
  echo "FAIL TensorBoard events of the tiny run"; echo "$out" | tail -3; failures=$((failures+1))
fi

# launch/run.sh's launch on N GPUs (a stand-in nvidia-smi; printed, not run): as many
# ranks as split the config's step evenly, each its share (a named config as the
# default; the batch was left as it was, and 2 ranks of B=16 could not start).
mkdir -p "$work/fake_gpus"
printf '#!/bin/sh\ni=0; while [ $i -lt "$FAKE_GPUS" ]; do echo "GPU $i: NVIDIA H100"; i=$((i+1)); done\n' \
  >"$work/fake_gpus/nvidia-smi"
chmod +x "$work/fake_gpus/nvidia-smi"
run_on() {  # GPUS run.sh-args...
  local gpus=$1; shift
  (cd "$work" && FAKE_GPUS=$gpus PATH="$work/fake_gpus:$PATH" GPT2_RUN_PRINT_ONLY=1 GPT2_BIN_DIR="$bin" \
    GPT2_DATA_DIR="$data" "$src/launch/run.sh" "$@" 2>&1)
}
want_run() {  # NAME PATTERN GPUS run.sh-args...
  local name=$1 pattern=$2 out; shift 2
  out=$(run_on "$@")
  if grep -qE -- "$pattern" <<<"$out"; then echo "ok   run.sh: $name"; passes=$((passes+1))
  else echo "FAIL run.sh: $name: lacks /$pattern/"; echo "$out" | tail -3; failures=$((failures+1)); fi
}
want_run "no GPU" "^run.sh: $bin/gpt2_ddp --config $src/configs/tiny_cpu.pbtxt --data_dir $data\$" 0
want_run "no GPU, the message" "^run.sh: no GPU found: training the small CPU config on the CPU\$" 0
# A named config with no GPU is trained on the CPU, and said so (it said "the small CPU
# config" and ran the named one).
want_run "no GPU, a named config" \
  "^run.sh: no GPU found: training $src/configs/gpt2_124m_shakespeare.pbtxt on the CPU\$" \
  0 --config "$src/configs/gpt2_124m_shakespeare.pbtxt"
want_run "one GPU" "^run.sh: $bin/gpt2_ddp --config $src/configs/gpt2_124m_shakespeare.pbtxt --data_dir $data\$" 1
want_run "3 GPUs" "mpirun -np 2 .* --set train.total_batch_tokens=16384 --set train.micro_batch_size=8\$" 3
want_run "32 GPUs" "mpirun -np 16 .* --set train.total_batch_tokens=16384 --set train.micro_batch_size=1\$" 32
want_run "a named config" \
  "mpirun -np 4 .*gpt2_124m_shakespeare_fast.pbtxt .* --set train.micro_batch_size=1 --set train.max_steps=9\$" \
  8 --config "$src/configs/gpt2_124m_shakespeare_fast.pbtxt" --set train.max_steps=9
# The split it prints starts: the plan of 2 ranks of 8 passes.
if OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
   mpirun -np 2 "$ddp" --config "$src/configs/gpt2_124m_shakespeare.pbtxt" --data_dir "$data" \
   --set train.total_batch_tokens=16384 --set train.micro_batch_size=8 --plan 2>&1 |
   grep -q "^batch: 8 x 1024 tokens per micro-step x 2 rank(s) x 1 accumulation step(s) = 16,384"; then
  echo "ok   run.sh: its 2-rank split plans"; passes=$((passes+1))
else echo "FAIL run.sh: its 2-rank split does not plan"; failures=$((failures+1)); fi
# slurm.sbatch (a stand-in srun) splits the step over its tasks the same way, and refuses
# a task count that cannot split it; mpirun_node.sh too.
printf '#!/bin/sh\necho "srun $*"\n' >"$work/fake_gpus/srun"
chmod +x "$work/fake_gpus/srun"
out=$(cd "$src" && SLURM_SUBMIT_DIR="$src" SLURM_NTASKS=16 SLURM_CPUS_PER_TASK=1 PATH="$work/fake_gpus:$PATH" \
      GPT2_DATA_DIR="$data" bash launch/slurm.sbatch --set train.max_steps=5 2>&1)
if grep -q -- "^srun .* --set train.total_batch_tokens=16384 --set train.micro_batch_size=1 --set train.max_steps=5$" <<<"$out"; then
  echo "ok   slurm.sbatch: 16 tasks of 1 sequence"; passes=$((passes+1))
else echo "FAIL slurm.sbatch: 16 tasks"; echo "$out" | tail -3; failures=$((failures+1)); fi
expect_fail "slurm.sbatch: 12 tasks" "12 tasks cannot split .* giving 8 tasks" \
  env SLURM_SUBMIT_DIR="$src" SLURM_NTASKS=12 SLURM_CPUS_PER_TASK=1 PATH="$work/fake_gpus:$PATH" \
  GPT2_DATA_DIR="$data" bash "$src/launch/slurm.sbatch"
expect_fail "mpirun_node.sh: 3 ranks of 8 sequences" "3 ranks cannot split the config's step" \
  env GPT2_DATA_DIR="$data" "$src/launch/mpirun_node.sh" -np 3 --config "$src/configs/tiny_cpu.pbtxt"
expect_fail "mpirun_node.sh -np 0" "-np needs a number of ranks >= 1, got '0'" "$src/launch/mpirun_node.sh" -np 0
expect_fail "run.sh --config without a file" "run.sh: --config needs a file" "$src/launch/run.sh" --config
expect_fail "run.sh missing config" "run.sh: --config nope.pbtxt: no such file" \
  "$src/launch/run.sh" --config nope.pbtxt

# A training checkpoint records its data's size (a resume on other data says so).
if "$bin/gpt2_ckpt" inspect "$work/logs/tiny_cpu" 2>&1 |
   grep -q "^step: 2 | tokens seen: 1024 | lr: .* | training data: 305257 tokens$"; then
  echo "ok   inspect: the training data's tokens"; passes=$((passes+1))
else
  echo "FAIL inspect: the training data's tokens"; "$bin/gpt2_ckpt" inspect "$work/logs/tiny_cpu" 2>&1 | grep "^step"
  failures=$((failures+1))
fi

# A run resumed from an earlier checkpoint than its last (steps 2-3 and the final val loss
# redone): its metrics.jsonl's restart row abandons them as its event file's restart does.
tb_run=("$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=4
        --set log.val_every_steps=2 --set log.val_batches=1 --set checkpoint.every_steps=2
        --set log.sample_prompts= --set log.run_name=tb_resumed)
(cd "$work" && "${tb_run[@]}" >/dev/null 2>&1 &&
  "${tb_run[@]}" --resume logs/tb_resumed/checkpoints/step_00000002.ckpt >/dev/null 2>&1)
out=$(/usr/bin/python3 "$src/tests/reference/tensorboard_check.py" "$work/logs/tb_resumed" 2>&1)
if [ $? -eq 0 ] && grep -q "^tensorboard_check: ok: 2 event file(s), 4 train/loss values" <<<"$out" \
   && [ "$(grep -c '"final": true' "$work/logs/tb_resumed/metrics.jsonl")" = 2 ] \
   && grep -q '^{"step": 2, "restart": true}$' "$work/logs/tb_resumed/metrics.jsonl"; then
  echo "ok   a resumed run's metrics.jsonl and TensorBoard events agree"; passes=$((passes+1))
else
  echo "FAIL a resumed run's metrics.jsonl and events"; echo "$out" | tail -3
  cat "$work/logs/tb_resumed/metrics.jsonl"; failures=$((failures+1))
fi

# The commit the binaries were built from, in --version, the run's header and its
# checkpoint (git's HEAD of the source, which test.sh builds before testing).
if head=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null); then build="build $head"; else
  build="build unknown"; fi
version=$("$ddp" --version 2>&1)
first_line=$(head -1 "$work/logs/tiny_cpu/train.log")
created=$("$bin/gpt2_ckpt" inspect "$work/logs/tiny_cpu" 2>&1 | grep "^created by:")
if grep -q "gpt2_ddp (gpt2_ddp project) $build" <<<"$version" && grep -q "| $build" <<<"$first_line" \
   && grep -q "created by: gpt2_ddp ($build" <<<"$created"; then
  echo "ok   the build's commit in --version, the header and the checkpoint"; passes=$((passes+1))
else
  echo "FAIL the build's commit (want '$build'): '$version' / '$first_line' / '$created'"
  failures=$((failures+1))
fi

# Resuming that finished run (step 2 of train.max_steps 2) says there is nothing left to
# train and writes nothing (it said "done: 0 steps ... final loss 0.000000" and left an
# empty event file); --resume and --init_from together are refused, and a start that fails
# leaves no event file.
events_before=$(ls "$work/logs/tiny_cpu" | grep -c tfevents)
tiny_resume=("$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set train.max_steps=2
             --set log.run_dir="$work/logs")
out=$("${tiny_resume[@]}" --resume latest 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "step_00000002.ckpt: already at step 2, and train.max_steps is 2: nothing left to train" <<<"$out" \
   && ! grep -q "final loss" <<<"$out"; then
  echo "ok   resume a finished run"; passes=$((passes+1))
else
  echo "FAIL resume a finished run (rc=$rc)"; echo "$out" | tail -3; failures=$((failures+1))
fi
expect_fail "resume and init_from" "--resume and --init_from both given" \
  "${tiny_resume[@]}" --resume latest --init_from "$work/logs/tiny_cpu"
expect_fail "resume a different model" "model" \
  "${tiny_resume[@]}" --set train.max_steps=4 --set model.channels=64 --resume latest
events_after=$(ls "$work/logs/tiny_cpu" | grep -c tfevents)
if [ "$events_before" = 1 ] && [ "$events_after" = 1 ]; then
  echo "ok   refused resumes leave no event file"; passes=$((passes+1))
else
  echo "FAIL refused resumes: event files $events_before before, $events_after after"
  failures=$((failures+1))
fi

# That run's checkpoint as a Hugging Face folder: gpt2_sample reads the folder itself
# (OpenAI's GPT-2 comes this way), and the same weights write the same text.
sample=("$bin/gpt2_sample" --data_dir "$data" --prompt "ROMEO:" --seed 3 --max_new_tokens 8
        --num_samples 2 --device cpu)
"$bin/gpt2_ckpt" export --format hf --notokenizer --out "$work/hf" "$work/logs/tiny_cpu" >/dev/null 2>&1
from_run=$("${sample[@]}" --checkpoint "$work/logs/tiny_cpu" 2>&1 | sed '$d')
from_hf=$("${sample[@]}" --checkpoint "$work/hf" 2>&1 | sed '$d')
if grep -q "^ROMEO:" <<<"$from_hf" && [ "$from_run" = "$from_hf" ]; then
  echo "ok   gpt2_sample on a Hugging Face folder"; passes=$((passes+1))
else
  echo "FAIL gpt2_sample on a Hugging Face folder"; diff <(echo "$from_run") <(echo "$from_hf") | head
  failures=$((failures+1))
fi

# gpt2_ckpt inspect on a Hugging Face folder (which the sampling tools read) says how to
# make a checkpoint of it.
expect_fail "inspect a Hugging Face folder" "holds a Hugging Face model.safetensors: gpt2_ckpt import --from hf" \
  "$bin/gpt2_ckpt" inspect "$work/hf"

expect_fail "sample with a bench flag" "--bench_runs does not apply to sampling" \
  "$bin/gpt2_sample" --checkpoint "$work/logs/tiny_cpu" --prompt a --bench_runs 3 --data_dir "$data"
expect_fail "sample on no such device" "--device gpu is not a device: auto, cpu or cuda" \
  "$bin/gpt2_sample" --checkpoint "$work/logs/tiny_cpu" --prompt a --device gpu --data_dir "$data"

# --init_from an llm.c file of another shape: the error names that file (it named the
# temporary checkpoint the file is converted to).
"$bin/gpt2_ckpt" export --format llmc --out "$work/tiny_llmc.bin" "$work/logs/tiny_cpu" >/dev/null 2>&1
# That export imported back against the training checkpoint: the weights they share are
# equal; the optimizer's state is in the training one only (the verdict read "different:
# 0 of 16 common tensors differ").
"$bin/gpt2_ckpt" import --from llmc --out "$work/tiny_back.ckpt" "$work/tiny_llmc.bin" >/dev/null 2>&1
out=$("$bin/gpt2_ckpt" diff "$work/logs/tiny_cpu" "$work/tiny_back.ckpt" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -qE "^common tensors identical: 16 tensors in both files, every element equal; [1-9][0-9]* \+ 0 tensors in only one file$" <<<"$out"; then
  echo "ok   diff a checkpoint against its weights"; passes=$((passes+1))
else
  echo "FAIL diff a checkpoint against its weights (rc=$rc)"; echo "$out" | tail -3; failures=$((failures+1))
fi
expect_fail "init_from llm.c of another shape" "tiny_llmc.bin: tensor 'wte'" \
  "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" --set model.channels=64 \
  --set log.run_dir="$work/other" --init_from "$work/tiny_llmc.bin"

# gpt2_eval: HellaSwag on that run's checkpoint (two examples in HellaSwag's format),
# the same scores from the Hugging Face folder; a malformed file named by its line.
cat >"$work/hs.jsonl" <<'JSONL'
{"ctx": "A man is sitting on a roof. he", "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], "label": 3}
{"ctx": "ROMEO: What light", "endings": ["through yonder window breaks?", "is that?", "goes there.", "and so on."], "label": 0}
JSONL
eval_run=$("$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs.jsonl" \
           --data_dir "$data" --device cpu 2>&1); rc=$?
eval_hf=$("$bin/gpt2_eval" --checkpoint "$work/hf" --hellaswag "$work/hs.jsonl" \
          --data_dir "$data" --device cpu 2>&1)
score() { grep -oE "^hellaswag: 2 examples: acc [01]\.[0-9]{4}, acc_norm [01]\.[0-9]{4}" <<<"$1"; }
if [ $rc -eq 0 ] && [ -n "$(score "$eval_run")" ] && [ "$(score "$eval_run")" = "$(score "$eval_hf")" ]; then
  echo "ok   gpt2_eval hellaswag"; passes=$((passes+1))
else
  echo "FAIL gpt2_eval hellaswag (rc=$rc)"; echo "$eval_run" | tail -3; echo "$eval_hf" | tail -2
  failures=$((failures+1))
fi
# An example longer than the model's context (64 tokens here) is left out and counted, as
# training's HellaSwag does (it stopped the whole evaluation); none fitting is an error.
long_ctx=$(printf 'word %.0s' $(seq 1 80))
printf '{"ctx": "%s", "endings": ["a", "b", "c", "d"], "label": 1}\n' "$long_ctx" >"$work/hs_long_only.jsonl"
cat "$work/hs.jsonl" "$work/hs_long_only.jsonl" >"$work/hs_long.jsonl"
out=$("$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs_long.jsonl" \
      --data_dir "$data" --device cpu 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -qE "^hellaswag: 2 examples: acc .*; 1 longer than the model's context of 64 left out" <<<"$out" \
   && [ "$(score "$out")" = "$(score "$eval_run")" ]; then
  echo "ok   gpt2_eval leaves out an example longer than the context"; passes=$((passes+1))
else
  echo "FAIL gpt2_eval with a long example (rc=$rc)"; echo "$out" | tail -2; failures=$((failures+1))
fi
# Progress lines (every --progress_seconds; 0: each example): how far, the scores so far and
# the time left (it printed the scores alone, every 5 s, over a file that takes hours).
out=$("$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs_long.jsonl" \
      --data_dir "$data" --device cpu --progress_seconds 0 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -qE "^  1 of 3 examples \(33%\): acc [01]\.[0-9]{4}, acc_norm [01]\.[0-9]{4} \([0-9.]+ s; about [0-9]+s left\)$" <<<"$out" \
   && grep -qE "^  3 of 3 examples \(100%\): .*about 0s left\); 1 longer than the model's context of 64 left out$" <<<"$out" \
   && [ "$(score "$out")" = "$(score "$eval_run")" ]; then
  echo "ok   gpt2_eval progress lines"; passes=$((passes+1))
else
  echo "FAIL gpt2_eval progress lines (rc=$rc)"; echo "$out" | tail -4; failures=$((failures+1))
fi
expect_fail "eval negative progress" "--progress_seconds must be >= 0" \
  "$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs.jsonl" --progress_seconds -1
expect_fail "eval with no example fitting" "no example fits the model's context of 64 tokens \(1 left out\)" \
  "$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs_long_only.jsonl" \
  --data_dir "$data" --device cpu
printf '{"ctx": "x", "endings": ["a"], "label": 0}\n' >"$work/hs_bad.jsonl"
expect_fail "eval malformed example" "hs_bad.jsonl:1: not a HellaSwag example" \
  "$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work/hs_bad.jsonl" --data_dir "$data"
expect_fail "eval no file" "--checkpoint and --hellaswag are required" "$bin/gpt2_eval"
expect_fail "eval file is a folder" "is a folder, not a HellaSwag .jsonl file" \
  "$bin/gpt2_eval" --checkpoint "$work/logs/tiny_cpu" --hellaswag "$work" --data_dir "$data"

# Ctrl-C on a config that saves no checkpoint: the note says so (it promised one).
int_log=$work/int.log
(cd "$work" && exec "$ddp" --config "$src/configs/tiny_cpu.pbtxt" --data_dir "$data" \
   --set log.run_name=nosave --set checkpoint.save_at_end=false --set log.val_every_steps=0 \
   >"$int_log" 2>&1) &
int_pid=$!
for _ in $(seq 1 600); do grep -q "^step 1 |" "$int_log" && break; sleep 0.1; done
kill -INT "$int_pid"; wait "$int_pid"; rc=$?
if [ $rc -eq 130 ] && grep -q "stopping after this step (this config saves no checkpoint" "$int_log" \
   && ! grep -q "saving a checkpoint" "$int_log" && [ ! -e "$work/logs/nosave/checkpoints" ]; then
  echo "ok   Ctrl-C without checkpoints"; passes=$((passes+1))
else
  echo "FAIL Ctrl-C without checkpoints (rc=$rc)"; tail -5 "$int_log"; failures=$((failures+1))
fi

# plot_loss.py on that run's metrics.jsonl (and on a made-up one with a known answer),
# where Debian's matplotlib is installed (launch/setup.sh installs it).
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  plot=$src/launch/plot_loss.py
  out=$(/usr/bin/python3 "$plot" "$work/logs/tiny_cpu/metrics.jsonl" --out "$work/loss.png" 2>&1)
  if [ $? -eq 0 ] && [ -s "$work/loss.png" ]; then echo "ok   plot_loss on a run"; passes=$((passes+1))
  else echo "FAIL plot_loss on a run"; echo "$out" | tail -3; failures=$((failures+1)); fi
  printf '%s\n' '{"step": 0, "loss": 0.5, "elapsed_s": 1.0}' '{"step": 1, "loss": 0.09, "elapsed_s": 2.0}' \
    '{"step": 2, "loss": 0.11, "elapsed_s": 3.0}' '{"step": 3, "loss": 0.08, "elapsed_s": 4.5}' \
    '{"step": 4, "loss": 0.07, "elapsed_s": 5.0}' >"$work/known.jsonl"
  out=$(/usr/bin/python3 "$plot" "$work/known.jsonl" --out "$work/known.png" --target 0.1 2>&1)
  if grep -q "first at step 1 (2.0 s" <<<"$out" && grep -q "since step 3 (4.5 s" <<<"$out"; then
    echo "ok   plot_loss first below / stays below"; passes=$((passes+1))
  else echo "FAIL plot_loss first below / stays below:"; echo "$out"; failures=$((failures+1)); fi
  # --window_tokens: the mean over the latest steps holding that many tokens (4,096 a step
  # here: 4 steps) held against the target, as the trainer's train.stop_loss_tokens. One
  # step at 0.05 (step 4) is not enough; steps 7-10 are.
  awk 'BEGIN { for (s = 0; s <= 12; s++)
    printf "{\"step\": %d, \"loss\": %s, \"dt_ms\": 2.0, \"tok_per_sec\": 2048000, \"elapsed_s\": %d}\n",
      s, (s == 4 || s >= 7 ? "0.05" : "1.0"), s + 1 }' >"$work/windowed.jsonl"
  out=$(/usr/bin/python3 "$plot" "$work/windowed.jsonl" --out "$work/windowed.png" --target 0.1 \
        --window_tokens 16384 2>&1)
  if grep -q "mean loss of the last 4 steps (16,384 tokens) < 0.1 first at step 10 (11.0 s" <<<"$out" \
     && grep -q "since step 10 (11.0 s" <<<"$out"; then
    echo "ok   plot_loss --window_tokens"; passes=$((passes+1))
  else echo "FAIL plot_loss --window_tokens:"; echo "$out"; failures=$((failures+1)); fi
  # A resumed run's restart row: the abandoned steps 3-4 (below the target) are dropped,
  # and the final weights' row (no loss) is a val point, not a step.
  printf '%s\n' '{"step": 0, "loss": 0.5}' '{"step": 1, "loss": 0.5}' '{"step": 2, "loss": 0.5}' \
    '{"step": 3, "loss": 0.05}' '{"step": 4, "loss": 0.05}' '{"step": 3, "restart": true}' \
    '{"step": 3, "loss": 0.5}' '{"step": 4, "loss": 0.08}' '{"step": 5, "final": true, "val_loss": 0.2}' \
    >"$work/restarted.jsonl"
  out=$(/usr/bin/python3 "$plot" "$work/restarted.jsonl" --out "$work/restarted.png" --target 0.1 2>&1)
  if grep -q "< 0.1 first at step 4" <<<"$out" && grep -q "(5 steps, last loss 0.0800)" <<<"$out"; then
    echo "ok   plot_loss restart and final rows"; passes=$((passes+1))
  else echo "FAIL plot_loss restart and final rows:"; echo "$out"; failures=$((failures+1)); fi
  # Seconds after process start, on a resumed run, name the process: the resumed one's
  # clock starts again (step 4 at 1.5 s is 1.5 s into the process resumed at step 3).
  printf '%s\n' '{"step": 0, "loss": 0.5, "elapsed_s": 1.0}' '{"step": 1, "loss": 0.05, "elapsed_s": 2.0}' \
    '{"step": 2, "loss": 0.5, "elapsed_s": 3.0}' '{"step": 3, "restart": true}' \
    '{"step": 3, "loss": 0.5, "elapsed_s": 1.0}' '{"step": 4, "loss": 0.05, "elapsed_s": 1.5}' \
    >"$work/resumed_clock.jsonl"
  out=$(/usr/bin/python3 "$plot" "$work/resumed_clock.jsonl" --out "$work/resumed_clock.png" --target 0.1 2>&1)
  if grep -q "< 0.1 first at step 1 (2.0 s after process start)$" <<<"$out" \
     && grep -q "since step 4 (1.5 s after the start of the process resumed at step 3), to the last" <<<"$out"; then
    echo "ok   plot_loss times on a resumed run"; passes=$((passes+1))
  else echo "FAIL plot_loss times on a resumed run:"; echo "$out"; failures=$((failures+1)); fi
  # A value that is not a number, and an --out that cannot be written: said, no traceback.
  echo '{"step": 1, "loss": "abc"}' >"$work/abc.jsonl"
  expect_fail "plot_loss loss not a number" "abc.jsonl:1: not a metrics line \(loss 'abc' is not a number\)" \
    /usr/bin/python3 "$plot" "$work/abc.jsonl" --out "$work/x.png"
  expect_fail "plot_loss --out in a missing folder" "^plot_loss: cannot write $work/nope/x.png" \
    /usr/bin/python3 "$plot" "$work/known.jsonl" --out "$work/nope/x.png"
  echo '{"loss": 1}' >"$work/bad.jsonl"
  expect_fail "plot_loss bad line" "bad.jsonl:1: not a metrics line" \
    /usr/bin/python3 "$plot" "$work/bad.jsonl" --out "$work/x.png"
  # collect_device_run.py on an invented device_check output (made-up numbers, to check the
  # parsing only): the figures must land in SUMMARY.md as given.
  run=$work/device_run; mkdir -p "$run"
  echo "    Product Name : NVIDIA H100 80GB HBM3" >"$run/nvidia-smi.txt"
  printf '%s\n' "===== gpu_tests: x" "[  PASSED  ] 7 tests." >"$run/gpu_tests.txt"
  printf '%s\n' "===== bench_ours_B16 (limit 1s): x" \
    "train step: GPT-2 L=12 C=768 NH=12 (1 params), B=16 T=1024, bf16, X" \
    "median over 10 steps: 20.0 ms/step, 1000 tokens/s (forward 1, backward 1, optimizer 1 ms)" \
    "loss: 10.9876 at step 0, 9.8765 at step 10 (the same tokens every step, lr 1e-4: it falls as they are memorised; ln V = 10.8249)" \
    "back to back: 19.5 ms/step, 1025 tokens/s (median of 3 rounds of 10 steps queued without host waits, as training runs; the host issued a step's calls in 3.0 ms)" \
    "per-op time of one profiled step (GPU events):" \
    "  attention_bwd             12 calls      5.00 ms  50.0%    111 TFLOP/s     321 GB/s" \
    "  adamw                     16 calls      1.25 ms  12.5%    2345 GB/s" \
    "attention kernels alone, one layer (median of 5; x12 layers):" \
    "  forward (ldmatrix)              0.111 ms    222 TFLOP/s" \
    "  dK, dV (transposed tiles)       0.333 ms     44 TFLOP/s" \
    "  dQ (wgmma)                      0.150 ms    200 TFLOP/s" \
    "  dQ (wgmma, pipelined)           0.120 ms    250 TFLOP/s" \
    "===== bench_ours_B4 (limit 1s): x" \
    "train step: GPT-2 L=12 C=768 NH=12 (1 params), B=4 T=1024, bf16, X" \
    "median over 10 steps: 9.0 ms/step, 400 tokens/s (forward 1, backward 1, optimizer 1 ms)" \
    "back to back: 8.5 ms/step, 450 tokens/s (median of 3 rounds)" \
    "===== bench_ours_B2 (limit 1s): x" \
    "train step: GPT-2 L=12 C=768 NH=12 (1 params), B=2 T=1024, bf16, X" \
    "median over 10 steps: 7.0 ms/step, 300 tokens/s (forward 1, backward 1, optimizer 1 ms)" \
    "===== bench_ours_B64 (limit 1s): x" \
    "train step: GPT-2 L=12 C=768 NH=12 (1 params), B=64 T=1024, bf16, X" \
    "gpt2_bench: error: the mean loss of step 3 is nan: this step is broken at B=64 T=1024, whatever its speed" \
    "===== decode_bench_no_graphs (limit 1s): z" \
    "decode batch 1: 800.0 tokens/s (1.25 ms/step, top-k sampling included; prefill 9.0 ms)" \
    "decode batch 1 (one draw per wait): 700.0 tokens/s (1.43 ms/step, top-k sampling included, 1 draw per wait for the device; prefill 9.0 ms)" \
    "device time per token at batch 1, op by op (CUDA events, graphs off): 321.0 us in all" \
    "  matmul_fwd              37.0 calls    123.4 us" \
    "===== decode_bench_long_warp (limit 1s): w" \
    "decode batch 8: 600.0 tokens/s (13.33 ms/step, top-k sampling included; prefill 9.0 ms)" \
    "===== bench_pytorch_B16 (limit 1s): y" \
    "pytorch reference: X, 1 params, B=16 T=1024, bf16 autocast, torch.compile: median 40.0 ms/step, 500 tokens/s, peak memory 1.00 GiB" \
    >"$run/bench.txt"
  printf '%s\n' '{"step": 0, "loss": 0.5, "elapsed_s": 1.0}' >"$run/metrics.jsonl"
  printf '%s\n' "[device_check 10:00:00] commit abc1234, host vm, groups: bench" \
    "[device_check 10:01:00] GPT2_PDL=1 from now on (programmatic dependent launch: 19.0 ms/step against 20.0 ms)" \
    "[device_check 10:01:01] GPT2_CLASSIFIER_RING=1 not adopted (the two-buffer bulk classifier: 20.1 ms/step against 20.0 ms)" \
    >"$run/machine.txt"
  out=$(/usr/bin/python3 "$src/launch/collect_device_run.py" "$run" --logs "$work/logs_out" --date 2000-01-01 2>&1)
  summary=$work/logs_out/gpu_h100_2000-01-01/SUMMARY.md
  if [ -s "$summary" ] && grep -q "| 16 | bf16 | 20.0 | 1,000 | - | - | 19.5 | 10.9876 -> 9.8765 |" "$summary" \
     && grep -q "| gpt2_ddp \`bench_ours_B64\` | 64 | bf16 | .* | \*\*broken\*\*: the mean loss of step 3 is nan" "$summary" \
     && grep -q "Ratio to PyTorch (torch.compile) at B=16: 2.00x" "$summary" \
     && grep -q "bench_ours_B{2,4,16}, back to back where printed): ms = 5.06 + 0.901 x B" "$summary" \
     && grep -q "passed: 7" "$summary" \
     && grep -q "^- GPT2_PDL=1 from now on (programmatic dependent launch: 19.0 ms/step against 20.0 ms)" "$summary" \
     && grep -q "^- GPT2_CLASSIFIER_RING=1 not adopted" "$summary" \
     && grep -q "| forward (ldmatrix) | 0.111 | 222 |" "$summary" \
     && grep -q "| matmul_fwd | 37.0 | 123.4 |" "$summary" \
     && grep -q "| adamw | 16 | 1.25 | 12.5 |  | 2345 |" "$summary" \
     && grep -q "| \`bench_ours_B16\` | 16 | - | - | 5.00 (111) |" "$summary" \
     && grep -q "without CUDA graphs: batch 1: 800.0 tokens/s; one draw per wait for the device: batch 1: 700.0 tokens/s" "$summary" \
     && grep -q "| dK, dV (transposed tiles) | 0.333 | 44 |" "$summary" \
     && grep -q "| dQ (wgmma, pipelined) | 0.120 | 0.150 | 1.25x |" "$summary" \
     && grep -q "1,000 positions, warp-per-position decode attention: batch 8: 600.0 tokens/s" "$summary" \
     && [ -s "$work/logs_out/gpu_h100_2000-01-01/loss.png" ]; then
    echo "ok   collect_device_run"; passes=$((passes+1))
  else
    echo "FAIL collect_device_run:"; echo "$out"; cat "$summary" 2>/dev/null | head -20
    failures=$((failures+1))
  fi
  # A second run of the same card and date goes beside the first (never over it), and
  # its attention kernels are shown against the first run's.
  again=$work/device_run_again; mkdir -p "$again"
  cp "$run"/* "$again/"
  sed -i 's/^  forward (ldmatrix)              0.111 ms    222 TFLOP\/s$/  forward (ldmatrix)              0.100 ms    246 TFLOP\/s/' "$again/bench.txt"
  out=$(/usr/bin/python3 "$src/launch/collect_device_run.py" "$again" --logs "$work/logs_out" --date 2000-01-01 2>&1)
  second=$work/logs_out/gpu_h100_2000-01-01_2/SUMMARY.md
  if [ -s "$second" ] && grep -q "| forward (ldmatrix) | 0.100 | 246 | 0.111 | 1.11x |" "$second" \
     && grep -q "previous run on this kind of card (gpu_h100_2000-01-01," "$second" \
     && grep -q "| forward (ldmatrix) | 0.111 | 222 |$" "$summary"; then
    echo "ok   collect_device_run: a second run of the day beside the first"; passes=$((passes+1))
  else
    echo "FAIL collect_device_run: a second run of the day:"; echo "$out"
    grep -A6 "kernels alone" "$second" 2>/dev/null; failures=$((failures+1))
  fi
  # The same run as device_check.sh returns it: packed into device_check.tar.gz.
  packed=$work/device_run_packed; mkdir -p "$packed/device_check"
  cp "$run"/* "$packed/device_check/"
  printf '%s\n' '{"step": 0, "loss": 0.7, "elapsed_s": 1.0}' >"$packed/device_check/metrics_torch.jsonl"
  tar -C "$packed" -czf "$packed/device_check.tar.gz" device_check && rm -r "$packed/device_check"
  out=$(/usr/bin/python3 "$src/launch/collect_device_run.py" "$packed" --logs "$work/logs_packed" \
        --date 2000-01-01 2>&1)
  summary=$work/logs_packed/gpu_h100_2000-01-01/SUMMARY.md
  if [ -s "$summary" ] && grep -q "| 16 | bf16 | 20.0 | 1,000 | - | - | 19.5 |" "$summary" \
     && grep -q "### metrics_torch.jsonl" "$summary" \
     && [ -s "$work/logs_packed/gpu_h100_2000-01-01/loss_torch.png" ]; then
    echo "ok   collect_device_run from device_check.tar.gz"; passes=$((passes+1))
  else
    echo "FAIL collect_device_run from device_check.tar.gz:"; echo "$out"
    cat "$summary" 2>/dev/null | head -20; failures=$((failures+1))
  fi
  # check_summary NAME FOLDER LOGS [collect_device_run.py args] -- PATTERN...: files FOLDER
  # into LOGS; passes when the SUMMARY.md written holds a line matching each PATTERN (grep).
  check_summary() {
    local name=$1 folder=$2 logs=$3; shift 3
    local args=() out pattern missing=
    while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
    out=$(/usr/bin/python3 "$src/launch/collect_device_run.py" "$folder" --logs "$logs" \
          --date 2000-01-01 "${args[@]}" 2>&1)
    local summary=$logs/gpu_h100_2000-01-01/SUMMARY.md
    for pattern in "$@"; do
      grep -q -- "$pattern" "$summary" 2>/dev/null || missing+="  $pattern"$'\n'
    done
    if [ -z "$missing" ]; then
      echo "ok   $name"; passes=$((passes+1))
    else
      echo "FAIL $name: SUMMARY.md lacks"; echo -n "$missing"; echo "$out"
      failures=$((failures+1))
    fi
  }
  # Two runs side by side at equal time after process start (the sweep's table): 30
  # logged steps half a second apart, losses 2 and 1, so the 20 up to 10 s average to
  # exactly that; before them, steps at loss 9 that a resumed run's restart row
  # abandons, and after them the final weights' row.
  timed=$work/device_run_timed; mkdir -p "$timed"
  cp "$run"/* "$timed/"
  {
    for i in $(seq 1 30); do printf '{"step": %d, "loss": 9.0, "elapsed_s": 1.0}\n' "$i"; done
    echo '{"step": 1, "restart": true}'
    for i in $(seq 1 30); do
      printf '{"step": %d, "loss": 2.0, "elapsed_s": %s}\n' "$i" "$(awk "BEGIN { print $i * 0.5 }")"
    done
    echo '{"step": 31, "final": true, "val_loss": 3.0}'
  } >"$timed/metrics.jsonl"
  # The rows it reads from such a file: steps 1-30 at loss 2 (the abandoned rows and the
  # final row left out).
  rows=$(cd "$src/launch" && /usr/bin/python3 - "$timed/metrics.jsonl" 2>&1 <<'PY'
import sys, collect_device_run as c
print(" ".join("%d:%g" % (r["step"], r["loss"]) for r in c.metrics_rows(sys.argv[1])))
PY
)
  if [ "$rows" = "$(for i in $(seq 1 30); do printf '%d:2 ' "$i"; done | sed 's/ $//')" ]; then
    echo "ok   collect_device_run: a restart row drops the steps it redoes"; passes=$((passes+1))
  else echo "FAIL collect_device_run: restart row: $rows"; failures=$((failures+1)); fi
  sed 's/"loss": 2.0/"loss": 1.0/' "$timed/metrics.jsonl" >"$timed/metrics_torch.jsonl"
  check_summary "collect_device_run: losses at equal time" "$timed" "$work/logs_timed" -- \
    "^| run | 10 s |$" "^| metrics.jsonl | 2.000 |$" "^| metrics_torch.jsonl | 1.000 |$"
  # What came before the second step: the start-up line's phases, step 0, the kernel
  # timing seconds, and when step 1 ended (a sweep run's section of train.txt).
  early=$work/early_run; mkdir -p "$early"
  echo "    Product Name : NVIDIA H100 80GB HBM3" >"$early/nvidia-smi.txt"
  printf '%s\n' "===== sweep_b4 (limit 50s): x" \
    "start-up: 0.6 s before the first step (launch 0.01, backend 0.13, data 0.09, model 0.27, optimizer 0.00, other 0.00 s)" \
    "kernels chosen by timing: attention forward wgmma (0.054 ms against 0.077 ms with mma.sync, one layer, B=4 T=1024) (the attention timing took 0.21 s); matmuls: 9 of 10 shapes timed took another algorithm than cuBLASLt's first (0.131 ms less per call of each, summed; the timing took 0.18 s)" \
    "cuBLASLt 130100 (libcublasLt.so.13) opened in 0.31 s on a thread of its own beside start-up; the first matmul waited 0.00 s for it" \
    >"$early/train.txt"
  printf '%s\n' '{"step": 0, "loss": 10.9, "dt_ms": 612.5, "elapsed_s": 1.25}' \
    '{"step": 1, "loss": 9.8, "dt_ms": 9.5, "elapsed_s": 1.26}' >"$early/metrics_sweep_b4.jsonl"
  check_summary "collect_device_run: before the second step" "$early" "$work/logs_early" -- \
    "^| metrics_sweep_b4.jsonl | 0.01 | 0.13 | 0.09 | 0.27 | 0.00 | 0.61 | 0.21 | 0.18 | 1.26 |$" \
    "^- \`cuBLASLt 130100 (libcublasLt.so.13) opened in 0.31 s on a thread of its own beside start-up; the first matmul waited 0.00 s for it\`$"
  # The lag against a reference run to < 0.1 (--reference): a reference of 16,384 tokens
  # a step whose loss falls 0.0025 a step from 5 (below 0.1 first at step 1,961) and a
  # run of 8,192 tokens a step falling half as fast, 4 ms a step, step 1 ending 1 s
  # after start. Means over about an epoch's tokens: 21 steps and 41. The reference's
  # reach 4.0 at step 410 and 3.5 at 610, the run's at 820 and 1,220; the ratio (2.00x)
  # projects 3,922 steps and 1 + 3,922 x 4 ms = 16.7 s.
  lag=$work/lag_run; mkdir -p "$lag"
  echo "    Product Name : NVIDIA H100 80GB HBM3" >"$lag/nvidia-smi.txt"
  awk 'BEGIN { for (s = 0; s < 2000; s++)
    printf "{\"step\": %d, \"loss\": %.6f, \"dt_ms\": 1000, \"tok_per_sec\": 16384}\n", s, 5 - 0.0025 * s }' \
    >"$work/reference.jsonl"
  awk 'BEGIN { for (s = 0; s < 1500; s++)
    printf "{\"step\": %d, \"loss\": %.6f, \"dt_ms\": 4.0, \"tok_per_sec\": 2048000, \"elapsed_s\": %.3f}\n",
      s, 5 - 0.00125 * s, 0.996 + 0.004 * s }' >"$lag/metrics_sweep_b2.jsonl"
  check_summary "collect_device_run: the lag against a reference run" "$lag" "$work/logs_lag" \
    --reference "$work/reference.jsonl" -- "(below 0\.1 first at step 1,961)" \
    "^| metrics_sweep_b2\.jsonl | 8192 | 41 | 4\.00 | 820 (2\.00x) | 1,220 (2\.00x) | - | - | - | - | - | - | 3,922 steps, 16\.7 s |$"
  # Clocks and power per run: the clocks.csv samples inside each runs.tsv window (the
  # header and the sample before the window left out); the power cap on 2 of the 4.
  clocks=$work/clock_run; mkdir -p "$clocks"
  echo "    Product Name : NVIDIA H100 80GB HBM3" >"$clocks/nvidia-smi.txt"
  printf '%s\n' "timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], temperature.gpu, utilization.gpu [%], clocks_event_reasons.active" \
    "2000/01/01 10:00:00.100, 1980 MHz, 2619 MHz, 100.00 W, 40, 0 %, 0x0000000000000001" \
    "2000/01/01 10:00:01.100, 1980 MHz, 2619 MHz, 600.00 W, 50, 100 %, 0x0000000000000000" \
    "2000/01/01 10:00:01.300, 1755 MHz, 2619 MHz, 700.00 W, 61, 100 %, 0x0000000000000004" \
    "2000/01/01 10:00:01.500, 1500 MHz, 2619 MHz, 690.00 W, 62, 100 %, 0x0000000000000004" \
    "2000/01/01 10:00:01.700, 1800 MHz, 2619 MHz, 650.00 W, 60, 100 %, 0x0000000000000000" \
    >"$clocks/clocks.csv"
  printf 'bench_x\t2000/01/01 10:00:01.000\t2000/01/01 10:00:02.000\t0\n' >"$clocks/runs.tsv"
  check_summary "collect_device_run: clocks and power during each run" "$clocks" "$work/logs_clocks" -- \
    "^| \`bench_x\` | 4 | 1800 | 1500 | 690 | 700 | 62 | power cap 50% |$"
  # The same run in two calls (the fast group again from another seed): kept as
  # metrics_fast.jsonl and metrics_fast_2.jsonl, each with its own section of the merged
  # train.txt and the settings its command line set over the config.
  for call in 1 2; do
    mkdir -p "$work/repeat_$call"
    echo "    Product Name : NVIDIA H100 80GB HBM3" >"$work/repeat_$call/nvidia-smi.txt"
    printf '%s\n' "===== shakespeare_fast (limit 50s): gpt2_ddp --set log.run_name=f --set train.seed=$call" \
      "loss 0.09$call < 0.099999 first at step 10$call, 2.$call s after process start; stopping" \
      >"$work/repeat_$call/train.txt"
    printf '{"step": 0, "loss": 0.5, "elapsed_s": 1.0}\n' >"$work/repeat_$call/metrics_fast.jsonl"
  done
  out=$(/usr/bin/python3 "$src/launch/collect_device_run.py" "$work/repeat_1" "$work/repeat_2" \
        --logs "$work/logs_repeat" --date 2000-01-01 2>&1)
  summary=$work/logs_repeat/gpu_h100_2000-01-01/SUMMARY.md
  if grep -A4 "^### metrics_fast.jsonl" "$summary" | grep -q "settings over the config: \`train.seed=1\`" \
     && grep -A4 "^### metrics_fast.jsonl" "$summary" | grep -q "first at step 101, 2.1 s" \
     && grep -A4 "^### metrics_fast_2.jsonl" "$summary" | grep -q "settings over the config: \`train.seed=2\`" \
     && grep -A4 "^### metrics_fast_2.jsonl" "$summary" | grep -q "first at step 102, 2.2 s"; then
    echo "ok   collect_device_run: a run repeated over calls"; passes=$((passes+1))
  else
    echo "FAIL collect_device_run: a run repeated over calls:"; echo "$out"
    grep -A5 "^### metrics_fast" "$summary" 2>/dev/null; failures=$((failures+1))
  fi
else
  # launch/setup.sh (which the test command runs) installs it: missing is a failure,
  # not a skip that would leave these ~15 checks unrun under a passing test.
  echo "FAIL plot_loss, collect_device_run, check_summary: no matplotlib for /usr/bin/python3" \
       "(launch/setup.sh installs python3-matplotlib)"; failures=$((failures+1))
fi

# pick_recipe.py (device_check's choice between groups): invented runs of 30 logged steps
# half a second apart with constant losses, so each rule's answer is known.
pick=$src/launch/pick_recipe.py
metrics() {  # FILE LOSS [STEP_BELOW]: 30 steps at LOSS, 0.05 from STEP_BELOW on
  local i loss
  for i in $(seq 1 30); do
    loss=$2; [ -n "${3:-}" ] && [ "$i" -ge "$3" ] && loss=0.05
    printf '{"step": %d, "loss": %s, "elapsed_s": %s}\n' "$i" "$loss" "$(awk "BEGIN { print $i * 0.5 }")"
  done >"$1"
}
metrics "$work/p_hi.jsonl" 2.0; metrics "$work/p_lo.jsonl" 1.0; metrics "$work/p_lo2.jsonl" 0.995
metrics "$work/p_early.jsonl" 3.0 25; metrics "$work/p_late.jsonl" 1.0 28
head -5 "$work/p_hi.jsonl" >"$work/p_short.jsonl"
check_pick() {  # NAME WANT ARGS...: the "pick:" line must start with WANT
  local name=$1 want=$2; shift 2
  local out
  out=$(/usr/bin/python3 "$pick" "$@" 2>&1)
  if grep -q "^pick: $want" <<<"$out"; then echo "ok   $name"; passes=$((passes+1))
  else echo "FAIL $name: want 'pick: $want':"; echo "$out"; failures=$((failures+1)); fi
}
check_pick "pick_recipe: lowest loss at equal time" "lo (lowest mean loss at 15.0 s: 1.0000)" \
  hi="$work/p_hi.jsonl" lo="$work/p_lo.jsonl"
check_pick "pick_recipe: first below the target wins" "early (loss below 0.1 first, 12.5 s" \
  lo="$work/p_lo.jsonl" late="$work/p_late.jsonl" early="$work/p_early.jsonl"
check_pick "pick_recipe: a gain within the margin keeps the baseline" "lo (the best, lo2" \
  --baseline lo --margin 0.01 lo="$work/p_lo.jsonl" lo2="$work/p_lo2.jsonl"
check_pick "pick_recipe: a gain past the margin" "lo2 (lowest mean loss at 15.0 s: 0.9950, 0.5%" \
  --baseline lo --margin 0.001 lo="$work/p_lo.jsonl" lo2="$work/p_lo2.jsonl"
check_pick "pick_recipe: too few steps" "none (no run logged the steps of its window)" \
  short="$work/p_short.jsonl" missing="$work/nothing.jsonl"
check_pick "pick_recipe: a short run does not set the time" "lo (lowest mean loss at 15.0 s" \
  lo="$work/p_lo.jsonl" short="$work/p_short.jsonl" hi="$work/p_hi.jsonl"
# A run whose loss went non-finite (null in metrics.jsonl) loses (it crashed the pick);
# a resumed run's restart row drops the steps it redid.
sed 's/"loss": 1.0/"loss": null/' "$work/p_lo.jsonl" >"$work/p_nan.jsonl"
check_pick "pick_recipe: a diverged run loses" "hi (lowest mean loss at 15.0 s: 2.0000)" \
  hi="$work/p_hi.jsonl" nan="$work/p_nan.jsonl"
{ cat "$work/p_hi.jsonl"; echo '{"step": 1, "restart": true}'; cat "$work/p_lo2.jsonl"; } >"$work/p_resumed.jsonl"
check_pick "pick_recipe: a restart row" "resumed (lowest mean loss at 15.0 s: 0.9950)" \
  lo="$work/p_lo.jsonl" resumed="$work/p_resumed.jsonl"
head -20 "$work/p_lo2.jsonl" >"$work/p_cut.jsonl"  # 10 s of 15: left out
check_pick "pick_recipe: a run cut short is left out" "hi (lowest mean loss at 15.0 s: 2.0000)" \
  hi="$work/p_hi.jsonl" cut="$work/p_cut.jsonl"
# --window_tokens: windows of about that many tokens a run. "small" (1,024 tokens a step,
# 0.1 s apart) is at 3.0 but for its last 20 steps (an easy section of the text, 1.0);
# "big" (16,384 tokens a step, 1 s apart) is at 2.0 throughout; both end at 40 s. Over
# 20 steps each, small looks best; over ~330 sequences each (330 and 21 steps), big is.
awk 'BEGIN { for (i = 1; i <= 400; i++)
  printf "{\"step\": %d, \"loss\": %s, \"dt_ms\": 100, \"tok_per_sec\": 10240, \"elapsed_s\": %.1f}\n",
    i, (i > 380 ? "1.0" : "3.0"), i * 0.1 }' >"$work/p_small.jsonl"
awk 'BEGIN { for (i = 1; i <= 40; i++)
  printf "{\"step\": %d, \"loss\": 2.0, \"dt_ms\": 1000, \"tok_per_sec\": 16384, \"elapsed_s\": %d}\n",
    i, i }' >"$work/p_big.jsonl"
check_pick "pick_recipe: 20 steps of a small batch see one section" "small (lowest mean loss at 40.0 s: 1.0000)" \
  small="$work/p_small.jsonl" big="$work/p_big.jsonl"
check_pick "pick_recipe: --window_tokens compares an epoch each" "big (lowest mean loss at 40.0 s: 2.0000)" \
  --window_tokens 337920 small="$work/p_small.jsonl" big="$work/p_big.jsonl"
# --target_tokens: rule 1 on the mean over about that many tokens. "noisy" (1,024 tokens a
# step, 0.1 s apart) has one step at 0.05 at 5 s and stays at 0.05 from 30 s; "steady"
# (16,384 a step, 1 s apart) from 20 s. One step of noisy goes below first; its mean
# over 16 steps (16,384 tokens) only at 31.5 s, after steady's at 20 s.
awk 'BEGIN { for (i = 1; i <= 400; i++)
  printf "{\"step\": %d, \"loss\": %s, \"dt_ms\": 100, \"tok_per_sec\": 10240, \"elapsed_s\": %.1f}\n",
    i, (i == 50 || i >= 300 ? "0.05" : "1.0"), i * 0.1 }' >"$work/p_noisy.jsonl"
awk 'BEGIN { for (i = 1; i <= 40; i++)
  printf "{\"step\": %d, \"loss\": %s, \"dt_ms\": 1000, \"tok_per_sec\": 16384, \"elapsed_s\": %d}\n",
    i, (i >= 20 ? "0.05" : "1.0"), i }' >"$work/p_steady.jsonl"
check_pick "pick_recipe: one step of a small batch below the target" "noisy (loss below 0.1 first, 5.0 s" \
  noisy="$work/p_noisy.jsonl" steady="$work/p_steady.jsonl"
check_pick "pick_recipe: --target_tokens holds it to a B=16 step's tokens" "steady (loss below 0.1 first, 20.0 s" \
  --target_tokens 16384 noisy="$work/p_noisy.jsonl" steady="$work/p_steady.jsonl"
# --behind (the sweep's early stop): a running candidate against finished runs, at its
# latest time; exit 0 and "behind:" only when over the margin and past --min_s.
check_behind() {  # NAME WANT_RC WANT_LINE ARGS...
  local name=$1 want_rc=$2 want=$3; shift 3
  local out rc
  out=$(/usr/bin/python3 "$pick" "$@" 2>&1); rc=$?
  if [ "$rc" = "$want_rc" ] && grep -q "^$want" <<<"$out"; then
    echo "ok   $name"; passes=$((passes+1))
  else
    echo "FAIL $name: want rc $want_rc and '$want', got rc $rc:"; echo "$out"
    failures=$((failures+1))
  fi
}
check_behind "pick_recipe: behind past the margin" 0 \
  "behind: hi at 15.0 s, mean loss 2.0000 against lo's 1.0000" \
  --behind hi --min_s 10 --margin 0.1 hi="$work/p_hi.jsonl" lo="$work/p_lo.jsonl"
check_behind "pick_recipe: within the margin is not behind" 1 "not behind: lo2" \
  --behind lo2 --min_s 10 --margin 0.1 lo2="$work/p_lo2.jsonl" lo="$work/p_lo.jsonl"
check_behind "pick_recipe: ahead is not behind" 1 "not behind: lo at 15.0 s" \
  --behind lo --min_s 10 --margin 0.1 lo="$work/p_lo.jsonl" hi="$work/p_hi.jsonl"
check_behind "pick_recipe: not before --min_s" 1 "not behind: hi at 15.0 s, too early" \
  --behind hi --min_s 20 --margin 0.1 hi="$work/p_hi.jsonl" lo="$work/p_lo.jsonl"
check_behind "pick_recipe: only against runs that got as far" 1 \
  "not behind: hi at 15.0 s, no other run got that far" \
  --behind hi --min_s 10 --margin 0.1 hi="$work/p_hi.jsonl" cut="$work/p_cut.jsonl"
check_behind "pick_recipe: --behind over token windows" 0 \
  "behind: small at 40.0 s, mean loss 2.8788 against big's 2.0000" \
  --behind small --window_tokens 337920 --margin 0.1 small="$work/p_small.jsonl" big="$work/p_big.jsonl"
check_behind "pick_recipe: --behind names a run" 2 "usage" \
  --behind nobody hi="$work/p_hi.jsonl"
expect_fail "pick_recipe: bad argument" "expected NAME=METRICS.jsonl" \
  /usr/bin/python3 "$pick" "$work/p_lo.jsonl"
expect_fail "pick_recipe: unknown baseline" "--baseline x is not one of the runs" \
  /usr/bin/python3 "$pick" --baseline x lo="$work/p_lo.jsonl"

# weights_parts.py: fp32 llm.c file -> bf16 parts -> joined file, checked by sha256; a
# corrupted or missing part must be refused.
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  wp=$src/launch/weights_parts.py
  /usr/bin/python3 - "$work/m32.bin" <<'PY'
import struct, sys
header = [20240326, 3, 8, 16, 1, 2, 4, 16] + [0] * 248
values = [1.0, -2.5, 3.14159, 1e-3, 65504.0, 1.00390625, -0.0, 7.0] * 9
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack(f"<{len(values)}f", *values))
PY
  out=$(/usr/bin/python3 "$wp" split "$work/m32.bin" "$work/parts" --part_bytes 500 2>&1 &&
        /usr/bin/python3 "$wp" join "$work/parts" --out "$work/m16.bin" 2>&1)
  # bf16 of the values above, rounded to nearest even: 1.00390625 is a tie and rounds to 1.0.
  check=$(/usr/bin/python3 - "$work/m16.bin" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
header = struct.unpack("<256i", data[:1024])
bits = struct.unpack(f"<{(len(data) - 1024) // 2}H", data[1024:])
vals = [struct.unpack("<f", struct.pack("<I", b << 16))[0] for b in bits[:8]]
print(header[1], len(bits), " ".join(f"{v:g}" for v in vals))
PY
)
  if [ "$check" = "5 72 1 -2.5 3.14062 0.000999451 65536 1 -0 7" ]; then
    echo "ok   weights_parts split/join"; passes=$((passes+1))
  else echo "FAIL weights_parts split/join: $check"; echo "$out"; failures=$((failures+1)); fi
  printf 'x' | dd of="$work/parts/part_01" bs=1 seek=3 conv=notrunc 2>/dev/null
  expect_fail "weights_parts corrupted part" "part_01: sha256 does not match" \
    /usr/bin/python3 "$wp" join "$work/parts" --out "$work/bad.bin"
  rm "$work/parts/part_01"
  expect_fail "weights_parts missing part" "missing parts: part_01" \
    /usr/bin/python3 "$wp" join "$work/parts" --out "$work/bad.bin"
  # (Tracebacks before: a missing file or folder, a damaged SHA256SUMS.)
  expect_fail "weights_parts missing model" "^weights_parts: error: $work/nope.bin: No such file" \
    /usr/bin/python3 "$wp" split "$work/nope.bin" "$work/parts2"
  echo "not a sum" >>"$work/parts/SHA256SUMS"
  expect_fail "weights_parts damaged SHA256SUMS" "SHA256SUMS:[0-9]+: not a 'SHA256  NAME' line" \
    /usr/bin/python3 "$wp" join "$work/parts" --out "$work/bad.bin"
else
  echo "FAIL weights_parts: no numpy for /usr/bin/python3 (launch/setup.sh installs" \
       "python3-numpy)"; failures=$((failures+1))
fi

# Every launch script answers --help with its header, and does nothing else (before this,
# device_check.sh --help made an output folder named --help, pack_device.sh built).
for script in run test build setup pack_device device_check device_fetch_weights \
    mpirun_node bench_llmc_cpu sanitize; do
  out=$(cd "$work" && bash "$src/launch/$script.sh" --help 2>&1); rc=$?
  if [ $rc -eq 0 ] && [ -n "$out" ] && ! grep -q '^#' <<<"$out" && [ ! -e "$work/--help" ]; then
    echo "ok   launch/$script.sh --help"; passes=$((passes+1))
  else
    echo "FAIL launch/$script.sh --help (rc=$rc): $(head -3 <<<"$out")"; failures=$((failures+1))
  fi
done

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
