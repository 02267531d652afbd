# Sourced by the launch scripts: the data directory they use. data_dir ROOT (the
# repository) prints $GPT2_DATA_DIR where set, else ROOT/../shared/data where it exists
# (made absolute), else ROOT/data (launch/fetch_data.sh fills that one).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0; fi
data_dir() {
  if [ -n "${GPT2_DATA_DIR:-}" ]; then
    echo "$GPT2_DATA_DIR"
  elif [ -d "$1/../shared/data" ]; then
    (cd "$1/../shared/data" && pwd)
  else
    echo "$1/data"
  fi
}
