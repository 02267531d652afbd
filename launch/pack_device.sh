#!/usr/bin/env bash
# Builds the Release binaries for sm_90a (H100/H200; the wgmma attention kernels need the "a")
# and stages everything a GPU run needs into .device/ (git-ignored, at most 64 MiB): the
# binaries, the shared libraries they need except CUDA's (cuBLASLt and NCCL are found on the
# GPU machine), an Open MPI runtime unpacked from
# Debian's packages, the data, the configs and the PyTorch reference.
#   launch/pack_device.sh            then run launch/device_check.sh OUT on the GPU machine
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/prepare.sh >/dev/null

build=build-device
stage=.device
echo "pack: building for sm_90a in $build/"
mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPT2_CUDA_ARCHS=90a -DGPT2_STATIC_DEPS=ON \
  -DGPT2_TEST_DATA_DIR="$GPT2_DATA_DIR" >"$build/cmake.log" 2>&1 || { cat "$build/cmake.log"; exit 1; }
targets=(gpt2_ddp gpt2_bench cuda_backend_test_gpu cuda_mpi_test_gpu)
# gpt2_prepro runs here only (the token shard for the PyTorch recipe).
cmake --build "$build" -j"$(nproc)" --target gpt2_prepro >"$build/build_prepro.log" 2>&1 ||
  { tail -30 "$build/build_prepro.log"; exit 1; }
for optional in gpt2_ckpt gpt2_sample; do
  [ -f "src/tools/$optional.cc" ] && targets+=("$optional")
done
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$build/build.log" 2>&1 ||
  { tail -30 "$build/build.log"; exit 1; }

rm -rf "$stage"
mkdir -p "$stage"/{bin,lib,mpi,configs,data/gpt2,data/tinyshakespeare,reference}
for t in "${targets[@]}"; do cp "$build/bin/$t" "$stage/bin/"; done
strip --strip-unneeded "$stage"/bin/*  # symbols are not needed there; the 64 MiB are

# Shared libraries: everything ldd resolves except glibc's own and CUDA's.
skip='/(libc|libm|libdl|librt|libpthread|ld-linux-x86-64|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'
for bin in "$stage"/bin/*; do
  ldd "$bin" | awk '/=> \//{print $3}'
done | sort -u | grep -vE "$skip" | while read -r lib; do cp -L "$lib" "$stage/lib/"; done

# Open MPI's runtime (mpirun, its plugins and help files), from Debian's packages.
debs=$(mktemp -d)
(cd "$debs" && apt-get download -q openmpi-bin openmpi-common libopenmpi3 libpmix2 libhwloc15 \
   libevent-core-2.1-7 libevent-pthreads-2.1-7 libmunge2 >/dev/null)
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$stage/mpi"; done
rm -rf "$debs" "$stage/mpi/usr/share/doc" "$stage/mpi/usr/share/man"

cp configs/*.pbtxt "$stage/configs/"
cp "$GPT2_DATA_DIR/gpt2/encoder.json" "$GPT2_DATA_DIR/gpt2/vocab.bpe" "$stage/data/gpt2/"
cp "$GPT2_DATA_DIR/tinyshakespeare/input.txt" "$stage/data/tinyshakespeare/"
# The same tokens as an llm.c shard, for the PyTorch recipe (tests/reference/shakespeare_torch.py).
"$build/bin/gpt2_prepro" --input "$GPT2_DATA_DIR/tinyshakespeare/input.txt" --output_dir "$stage/data" \
  --data_dir "$GPT2_DATA_DIR" >/dev/null
mv "$stage/data/input_train.bin" "$stage/data/tinyshakespeare_train.bin"
cp tests/reference/*.py "$stage/reference/"
# The commit, marked where the binaries hold changes not yet committed (a run's logs must
# not credit a commit with code it did not have).
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
  git diff --quiet HEAD -- src proto tests CMakeLists.txt cmake 2>/dev/null ||
    commit="$commit+uncommitted"
  echo "$commit" >"$stage/COMMIT"
fi

# The binaries and libraries travel xz-compressed (about a quarter of their size):
# device_check.sh unpacks them there. The working tree travels too, within the same 64 MiB.
tar -C "$stage" -cf - bin lib mpi | xz -T2 -6 >"$stage/payload.tar.xz"
rm -rf "$stage/bin" "$stage/lib" "$stage/mpi"

size=$(du -sm "$stage" | cut -f1)
echo "pack: staged $stage (${size} MiB): $(printf '%s ' "${targets[@]}")in payload.tar.xz"
if [ "$size" -gt 64 ]; then
  echo "pack: error: $stage is ${size} MiB, over the 64 MiB a device run can carry" >&2
  exit 1
fi
