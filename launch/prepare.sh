# Sourced by run.sh, test.sh, pack_device.sh, sanitize.sh, fuzz.sh and
# bench_llmc_cpu.sh: installs the Debian packages, picks the data directory
# (launch/data_dir.sh: $GPT2_DATA_DIR, else ../shared/data if present, else ./data), and
# fetches or checks the data there. Runs from the repository root.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in -h | --help) sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;; esac
fi
./launch/setup.sh
source launch/data_dir.sh
GPT2_DATA_DIR=$(data_dir "$PWD")
export GPT2_DATA_DIR
./launch/fetch_data.sh --data_dir "$GPT2_DATA_DIR"
