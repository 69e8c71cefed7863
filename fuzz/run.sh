#!/bin/sh
# Runs libFuzzer targets built in BUILD (make fuzz: build/fuzz), one at a time, each for a fixed
# number of executions from its seed corpus, and prints what each did.
#   fuzz/run.sh BUILD [TARGET...]       TARGET: checkpoint, csv, ... (default: every fuzz_*
#                                       in BUILD/fuzz)
# Environment:
#   FUZZ_RUNS     executions per target (default 100000; -1: no limit, stop at FUZZ_SECONDS)
#   FUZZ_SECONDS  stop a target after this many seconds (default 0: no time limit)
#   FUZZ_SEED     libFuzzer's -seed (default 0: a random one, printed in the log)
#   FUZZ_ARGS     more libFuzzer flags, e.g. -jobs=2 or -max_len=65536
#   FUZZ_FRESH=1  start from the seeds alone, not from what earlier runs added (make test's smoke)
# The seeds in fuzz/corpus/<target>/ are only read; new inputs go to BUILD/fuzz/corpus/<target>/,
# crashing inputs to BUILD/fuzz/artifacts/, each target's output to BUILD/fuzz/<target>.log.
# Exit status 1 when a target found something (the end of its log is printed), 2 on a usage
# error.
set -u
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILD [TARGET...]" >&2; exit 2; }
build=$1
shift
targets=$*
if [ -z "$targets" ]; then
  for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] && targets="$targets ${bin##*/fuzz_}"
  done
fi
[ -n "$targets" ] || { echo "fuzz/run.sh: no fuzz targets in $build/fuzz (make fuzz builds them)" >&2; exit 2; }
runs=${FUZZ_RUNS:-100000}
seconds=${FUZZ_SECONDS:-0}
seed=${FUZZ_SEED:-0}
status=0
printf '%-16s %10s %8s %8s %6s  %s\n' target executions seconds exec/s cov result
for t in $targets; do
  bin=$build/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: no $bin (make fuzz builds it)" >&2; exit 2; }
  work=$build/fuzz/corpus/$t
  art=$build/fuzz/artifacts
  log=$build/fuzz/$t.log
  [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$work"
  mkdir -p "$work" "$art"
  dict=
  [ -f "$here/$t.dict" ] && dict=-dict=$here/$t.dict
  # the first corpus directory receives new inputs; the seeds are read from the second
  # shellcheck disable=SC2086
  "$bin" -runs="$runs" -max_total_time="$seconds" -seed="$seed" -print_final_stats=1 \
    -artifact_prefix="$art/$t-" $dict ${FUZZ_ARGS:-} "$work" "$here/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' "$log" | tail -1)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FOUND (exit $rc): $(grep -m1 -E 'ERROR:|runtime error|fuzz.*: ' "$log" | cut -c1-120); see $log"
    status=1
    tail -n 40 "$log" >&2
  fi
  : "${execs:=0}" "${secs:=-}" "${cov:=-}"
  rate=-
  [ "$secs" != - ] && rate=$((execs / (secs > 0 ? secs : 1)))
  printf '%-16s %10s %8s %8s %6s  %s\n' "fuzz_$t" "$execs" "$secs" "$rate" "$cov" "$result"
done
exit $status
