#!/usr/bin/env bash
# Installs the Debian packages gpt2_ddp builds and tests with. Idempotent: packages
# already present are left alone, and apt is only touched when something is missing.
# CUDA (nvcc, cuBLASLt, NCCL) is expected under /usr/local/cuda and is not installed here.
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

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
