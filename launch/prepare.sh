# Sourced by run.sh, test.sh, pack_device.sh, sanitize.sh, fuzz.sh and bench_llmc_cpu.sh: installs the Debian packages, picks the
# data directory ($GPT2_DATA_DIR, else ../shared/data if present, else ./data), and
# fetches or checks the data there. Runs from the repository root.
./launch/setup.sh
if [ -z "${GPT2_DATA_DIR:-}" ]; then
  if [ -d ../shared/data ]; then GPT2_DATA_DIR=$(cd ../shared/data && pwd); else GPT2_DATA_DIR=$PWD/data; fi
fi
export GPT2_DATA_DIR
./launch/fetch_data.sh --data_dir "$GPT2_DATA_DIR"
