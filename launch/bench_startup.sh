#!/usr/bin/env bash
# Process start-up of the CUDA build's tools: cuBLASLt opened on demand (now) against
# cuBLASLt loaded with the process (as when it was linked), in the same run.
#
#   launch/bench_startup.sh [ROUNDS]
#
# "linked" is the same gpt2_ddp linked again (build/'s own link command) with the
# toolkit's libcublasLt as a dependency, as the build linked it before: its start-up code
# then runs before main(), in every process and again after the re-exec. The rounds
# alternate the two, so both see the same machine load. Timed: `gpt2_ddp --help` (a
# tool's whole life, with and without the OpenMP re-exec of src/core/threads.h), and the
# "launch" phase of gpt2_ddp's start-up line (process start to the trainer) on
# configs/tiny_cpu.pbtxt for one step on the CPU. Medians of the rounds, and their
# ratio. Needs a CUDA build in build/.
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bin=build/bin/gpt2_ddp
[ -x "$bin" ] || { echo "build first: $bin is missing (./launch/build.sh)" >&2; exit 2; }
lib=$(ldconfig -p | awk '/libcublasLt\.so\.[0-9]+ /{print $NF; exit}')
for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -n "$lib" ] || lib=$(ls "$dir"/libcublasLt.so.[0-9]* 2>/dev/null | head -1)
done
[ -n "$lib" ] || { echo "no libcublasLt found (CUDA toolkit?)" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_startup: ROUNDS must be a number >= 1, got '$rounds'" >&2; exit 2; }
# The data directory as the other scripts pick it.
source launch/data_dir.sh
data=$(data_dir "$PWD")
run_dir=$(mktemp -d)
trap 'rm -rf "$run_dir"' EXIT
echo "# $(date -u +%F) $(uname -m), $(nproc) core(s), $(git rev-parse --short HEAD 2>/dev/null)," \
  "$lib; $rounds rounds"

seconds() {  # wall seconds of a command
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }'
}
launch_s() {  # the start-up line's launch phase; the run's output where it has none
  local out seconds
  out=$("$@" --config configs/tiny_cpu.pbtxt --data_dir "$data" --set train.max_steps=1 \
    --set log.run_dir="$run_dir" --set log.sample_prompts= 2>&1) || true
  seconds=$(sed -n 's/.*(launch \([0-9.]*\),.*/\1/p' <<<"$out")
  if [ -z "$seconds" ]; then
    echo "bench_startup: no start-up line from $*:" >&2
    tail -5 <<<"$out" >&2
    return 1
  fi
  echo "$seconds"
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# The peer: build/'s link line for gpt2_ddp, its output elsewhere, cuBLASLt added.
link=build/CMakeFiles/gpt2_ddp.dir/link.txt
[ -f "$link" ] || { echo "no $link: a CMake build in build/ first" >&2; exit 2; }
linked=$run_dir/gpt2_ddp_linked
(cd build && eval "$(sed "s#-o bin/gpt2_ddp #-o $linked #" "CMakeFiles/gpt2_ddp.dir/link.txt")" \
  -Wl,--no-as-needed "$lib")
readelf -d "$linked" | grep -q "NEEDED.*libcublasLt" || { echo "relink without cuBLASLt?" >&2; exit 1; }

declare -A samples
for ((r = 1; r <= rounds; r++)); do
  for mode in on_demand linked; do
    tool=$bin
    [ "$mode" = linked ] && tool=$linked
    samples[$mode.help]+="$(seconds env -u OMP_WAIT_POLICY "$tool" --help) "
    samples[$mode.help_noexec]+="$(seconds env OMP_WAIT_POLICY=passive "$tool" --help) "
    launch=$(launch_s env -u OMP_WAIT_POLICY "$tool") || exit 1
    samples[$mode.launch]+="$launch "
  done
done
for what in help help_noexec launch; do
  a=$(tr ' ' '\n' <<<"${samples[on_demand.$what]}" | grep . | median)
  b=$(tr ' ' '\n' <<<"${samples[linked.$what]}" | grep . | median)
  case $what in
    help) label="gpt2_ddp --help (re-executes for OpenMP)" ;;
    help_noexec) label="gpt2_ddp --help (OMP_WAIT_POLICY set: no re-exec)" ;;
    launch) label="gpt2_ddp start-up, launch phase (tiny_cpu, CPU)" ;;
  esac
  printf '%-52s on demand %.3f s, linked %.3f s: %.1fx\n' "$label" "$a" "$b" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')"
done
if [ -x /usr/bin/time ]; then
  rss() { env OMP_WAIT_POLICY=passive /usr/bin/time -f %M "$1" --help 2>&1 >/dev/null | tail -1; }
  printf '%-52s on demand %d MB, linked %d MB\n' "gpt2_ddp --help, peak resident memory" \
    $(($(rss "$bin") / 1024)) $(($(rss "$linked") / 1024))
fi
