#!/usr/bin/env bash
# Runs CMD and passes only when it exits 0 and its output (stdout and stderr together)
# matches the extended regular expression PATTERN, in which "." also matches a newline.
# (ctest's PASS_REGULAR_EXPRESSION alone ignores the exit status: a crash after the
# expected line would pass.)
#   expect_output.sh PATTERN CMD...
set -u
pattern=${1:?usage: expect_output.sh PATTERN CMD...}
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
  echo "expect_output: '$1' exited with $rc"
  exit 1
fi
if ! [[ $out =~ $pattern ]]; then
  echo "expect_output: the output does not match /$pattern/"
  exit 1
fi
