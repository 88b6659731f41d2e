#!/bin/bash
# Runs the libFuzzer harness of the core for a bounded time (mk/fuzz.mk calls it).
#
#   tests/fuzz/run.sh BINARY SECONDS
#
# Every saved input is replayed first (tests/fuzz/corpus, tests/fuzz/regressions):
# a regression fails at once. Then libFuzzer mutates a working copy of the corpus in
# build/fuzz/corpus for SECONDS; crashes go to build/fuzz/artifacts/. The last line
# is `fuzz: N executions in S s, corpus C inputs, no crash` or names the crash file.
# Exit status: 0, or 1 on a crash, a contract violation or a timeout.
set -u
bin=${1:?binary}
seconds=${2:?seconds}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$root/build/fuzz
corpus=$work/corpus
artifacts=$work/artifacts
log=$work/fuzz.log
mkdir -p "$corpus" "$artifacts"
cp -n "$here"/corpus/* "$corpus"/ 2>/dev/null || true

# The run must not inherit a sanitizer runtime preloaded for another suite.
unset LD_PRELOAD
export ASAN_OPTIONS="${FUZZ_ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${FUZZ_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

regress=("$here/corpus")
if compgen -G "$here/regressions/*" > /dev/null; then
    regress+=("$here/regressions")
fi
if ! "$bin" -runs=0 -timeout=30 "${regress[@]}" > "$work/regress.log" 2>&1; then
    tail -60 "$work/regress.log"
    echo "fuzz: a saved input fails (replay of ${regress[*]}; log $work/regress.log)"
    exit 1
fi

"$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=1024 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" > "$log" 2>&1
status=$?
runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
inputs=$(ls "$corpus" | wc -l)
if [ $status -ne 0 ]; then
    tail -80 "$log"
    crash=$(ls -t "$artifacts" 2>/dev/null | head -1)
    echo "fuzz: FAILED after ${runs:-?} executions: $artifacts/$crash"
    echo "      keep it: cp '$artifacts/$crash' tests/fuzz/regressions/ and report it"
    echo "      replay:  FUZZ_CORE_TRACE=1 $bin '$artifacts/$crash'"
    exit 1
fi
echo "fuzz: ${runs:-?} executions in $seconds s, corpus $inputs inputs, no crash (log $log)"
