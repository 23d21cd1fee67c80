#!/bin/bash
# fuzz/leakcheck.sh - `make leakcheck`: runs the core specs (values, the
# shared contract on the backends that need no server, the decorator specs)
# under valgrind in lua5.4 and checks that no byte is definitely lost in
# cache code (loss records whose stack passes through engine/, backends/ or
# bindings/). Prints valgrind's leak summary, the specs' own result line and
#   leakcheck: 0 bytes definitely lost in cache code (N bytes elsewhere)
# Exit status 1 on a loss in cache code, a valgrind error or a failing spec.
#
# --keep-debuginfo=yes: Lua dlcloses cache/core.so in lua_close, before
# valgrind's leak scan; without it the stacks of the module read "???".
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODDIR=${MODDIR:-.}
LUA_BIN=${LUA_BIN:-lua5.4}
OUT=${LEAKCHECK_DIR:-build/leakcheck}
mkdir -p "$OUT"
LOG="$OUT/valgrind.log"
SPECS=${LEAKCHECK_SPECS:-"spec/values_spec.lua spec/contract_spec.lua spec/cache_new_spec.lua spec/cached_spec.lua spec/memoize_spec.lua spec/decorators_backends_spec.lua"}
specs=()
for s in $SPECS; do [ -e "$s" ] && specs+=("$s"); done

STATE=$(mktemp -d /tmp/cache-leakcheck.XXXXXX)
trap 'rm -rf "$STATE"' EXIT
export CACHE_TEST_STATE="$STATE" CACHE_ROOT="$ROOT"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/spec/?.lua;;"
# A private copy of the module: `make` rewrites $MODDIR/cache/core.so in
# place, which would crash a run that has it mapped.
mkdir -p "$OUT/mod/cache"
cp "$ROOT/$MODDIR/cache/core.so" "$OUT/mod/cache/core.so.tmp" &&
    mv "$OUT/mod/cache/core.so.tmp" "$OUT/mod/cache/core.so" || exit 1
export LUA_CPATH="$ROOT/$OUT/mod/?.so;;"
# Servers are not started: specs of network backends show as pending, unless
# LEAKCHECK_SERVERS=1 keeps the CACHE_TEST_* variables of servers already
# running (spec/servers/*.sh start DIR), so their contract runs too.
if [ -z "${LEAKCHECK_SERVERS:-}" ]; then
    for v in $(env | sed -n 's/^\(CACHE_TEST_[A-Z_]*\)=.*/\1/p'); do
        case $v in CACHE_TEST_STATE) ;; *) unset "$v" ;; esac
    done
fi

echo "== valgrind $LUA_BIN busted: ${specs[*]}"
# LEAKCHECK_REUSE=1: only analyse the log of the previous run.
[ -n "${LEAKCHECK_REUSE:-}" ] && [ -s "$LOG" ] || \
valgrind --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --keep-debuginfo=yes \
    --num-callers=40 --log-file="$LOG" \
    "$LUA_BIN" /usr/bin/busted -o TAP "${specs[@]}" >"$OUT/busted.out" 2>&1
rc=$?
grep -E '^(not ok|# )' "$OUT/busted.out" | head -n 20
passed=$(grep -c '^ok ' "$OUT/busted.out")
failed=$(grep -c '^not ok ' "$OUT/busted.out")
echo "specs under valgrind: $passed ok, $failed not ok (busted exit $rc)"
died=0
if [ "$rc" -gt 128 ] && [ -z "${LEAKCHECK_REUSE:-}" ]; then
    died=1
    echo "leakcheck: busted died of signal $((rc - 128)): the leak figures below are incomplete"
fi
sed -n '/LEAK SUMMARY/,/suppressed/p;/ERROR SUMMARY/p' "$LOG" | sed 's/^==[0-9]*== //'

# valgrind prints basenames only: a frame is in cache code when it names a
# source file of engine/, backends/ or bindings/.
CODE_RE=$(ls engine/*.c backends/*.c backends/*/*.c bindings/*.c | xargs -n1 basename | sed 's/\./\\./' | paste -sd'|')
# Reads valgrind's records (separated by "==pid== " lines) and prints:
#   <definitely lost bytes in cache code> <elsewhere> <memory errors in cache code> <elsewhere>
read -r ours others memerr othererr < <(awk -v code="\\((${CODE_RE}):[0-9]+\\)" '
    function flush() {
        if (kind == "leak") { if (mine) lo += b; else le += b }
        else if (kind == "err") { if (mine) eo++; else ee++ }
        kind = ""; mine = 0
    }
    /^==[0-9]+== *$/ { flush(); next }
    /definitely lost in loss record/ {
        flush(); kind = "leak"
        s = $0; sub(/^==[0-9]+== */, "", s); split(s, w, " ")
        b = w[1]; gsub(/,/, "", b)
        next
    }
    /^==[0-9]+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap)/ {
        flush(); kind = "err"; next
    }
    kind != "" && $0 ~ code { mine = 1 }
    END { flush(); print lo + 0, le + 0, eo + 0, ee + 0 }
' "$LOG")
echo "leakcheck: $ours bytes definitely lost in cache code ($others bytes elsewhere);" \
     "memory errors: $memerr in cache code ($othererr elsewhere: the dynamic loader's strncmp, a known valgrind false positive); log $LOG"
if [ "$ours" != 0 ] || [ "$memerr" != 0 ]; then
    awk -v code="\\((${CODE_RE}):[0-9]+\\)" '
        /^==[0-9]+== *$/ { if (keep && rec ~ code) print rec; rec = ""; keep = 0; next }
        /definitely lost in loss record|Invalid (read|write|free)|Conditional jump|Use of uninitialised/ { keep = 1 }
        { rec = rec $0 "\n" }
    ' "$LOG" | head -n 80
fi
[ "$failed" != 0 ] && echo "(specs failing under valgrind are timing-dependent: everything runs ~30x slower)"
[ "$ours" = 0 ] && [ "$memerr" = 0 ] && [ "$died" = 0 ] && [ "$passed" -gt 0 ]
