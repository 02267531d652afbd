#!/usr/bin/env bash
# Installs the Debian packages gpt2_ddp builds and tests with. Idempotent: packages
# already present are left alone, and apt is only touched when something is missing.
# CUDA (nvcc, cuBLASLt) is expected under /usr/local/cuda and is not installed here; NCCL,
# where the toolkit lacks it, is added from NVIDIA's apt repository when apt knows it.
# Arguments name more packages a script needs beyond these (launch/fuzz.sh: clang).
case "${1:-}" in -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates curl
  libprotobuf-dev protobuf-compiler
  libabsl-dev
  libopenmpi-dev openmpi-bin
  libgtest-dev googletest
  libboost-context-dev
  libcpp-httplib-dev nlohmann-json3-dev chromium
  python3-matplotlib python3-numpy
  "$@"
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

# The CUDA build needs NCCL. NVIDIA's CUDA packages ship it apart (libnccl-dev, from
# their apt repository); a toolkit folder may hold it itself. Where nvcc is here and
# nccl.h is not, the package is added when apt knows it, else this says what to do.
nvcc=$(command -v nvcc 2>/dev/null || true)
[ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
nccl_h=""
for h in "$(dirname "${nvcc:-/}")/../include/nccl.h" /usr/local/cuda/include/nccl.h /usr/include/nccl.h \
    /usr/include/*/nccl.h; do
  [ -f "$h" ] && nccl_h=$h
done
if [ -n "$nvcc" ] && [ -z "$nccl_h" ] && ! installed libnccl-dev; then
  if apt-cache policy libnccl-dev 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    missing+=(libnccl-dev libnccl2)
  else
    echo "setup: warning: nvcc is here ($nvcc) but NCCL is not (no nccl.h; apt knows no" \
      "libnccl-dev): the CUDA build needs it. Add NVIDIA's CUDA apt repository and rerun, or" \
      "put NCCL in the CUDA folder; ./launch/build.sh -DGPT2_ENABLE_CUDA=OFF builds for the CPU" >&2
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup: missing packages: ${missing[*]}; installing them needs root, and there is no" \
      "sudo: run this as root (or apt-get install them), then again" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
