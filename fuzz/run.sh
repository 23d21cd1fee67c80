#!/bin/bash
# fuzz/run.sh SECONDS NAME... - runs each built harness build/fuzz/fuzz_NAME
# for SECONDS on its corpus and prints one line per harness:
#   fuzz_codec: 1234567 execs in 60 s, corpus 321, 0 findings
# Exit status 1 if any harness found something (the log and the crashing
# input stay under build/fuzz/). Used by `make fuzz` and spec/fuzz_spec.lua.
set -u
secs=${1:?usage: fuzz/run.sh SECONDS NAME...}
shift
FUZZ_DIR=${FUZZ_DIR:-build/fuzz}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# Per harness: the largest input worth trying (an FS entry or a uWSGI reply
# carries a value; codec values and Redis replies stay small to go fast).
max_len() {
    case $1 in
    fs_entry) echo 8192 ;;
    uwsgi) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

# The harnesses are clang ASan binaries: a gcc libasan preloaded for an
# ASan-built Lua module (make test SANITIZE=1) must not reach them.
unset LD_PRELOAD
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

status=0
for name in "$@"; do
    bin="$FUZZ_DIR/fuzz_$name"
    work="$FUZZ_DIR/corpus/$name"
    log="$FUZZ_DIR/fuzz_$name.log"
    mkdir -p "$work" "$FUZZ_DIR/artifacts" "fuzz/corpus/$name"
    # The work corpus comes first: libFuzzer writes new inputs there, never
    # into the committed seeds.
    "$bin" -max_total_time="$secs" -max_len="$(max_len "$name")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$name-" \
        "$work" "fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(ls "$work" | wc -l)
    if [ "$rc" = 0 ]; then
        echo "fuzz_$name: ${execs:-?} execs in $secs s, corpus $corpus, 0 findings"
    else
        status=1
        echo "fuzz_$name: FINDING (exit $rc) after ${execs:-?} execs; log $log:"
        grep -E 'ERROR|SUMMARY|runtime error|check failed|Test unit written' "$log" | head -n 10
    fi
done
exit $status
