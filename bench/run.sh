#!/bin/bash
# bench/run.sh - every benchmark of `cache` in one table (run by `make bench`
# after it built cache/core.so at the repository root).
#
#   1. bench/local.lua            SimpleCache, FileSystemCache, decorators,
#                                 memory per entry (in-process, not pinned)
#   2. bench/decorators_redis.lua memoize / cached on RedisCache (pinned)
#   3. bench/redis.sh             RedisCache beside redis-benchmark (pinned)
#   4. bench/memcached.sh         MemcachedCache beside a raw protocol loop
#   5. bench/openresty.sh         nginx + LuaJIT handlers (wrk)
# Each network script starts and stops its own servers; one that is absent
# or whose tools are missing is skipped with a note.
#
# Every row: operation | ops/s (median of BENCH_REPS >= 5 repetitions) |
# p50 | p99 (ns per operation, over batches of 100) | baseline | ratio, the
# baseline measured in the same run. Then the targets of issue 9, each
# marked met / NOT MET.
#
# Environment: LUA (lua5.4), MODDIR (where cache/core.so is; default the
# repository root), CPU (the CPU network client and server share; 0),
# BENCH_REPS (5), BENCH_SCALE (1), BENCH_SKIP (space-separated parts to
# skip: local redis-deco redis memcached openresty), BENCH_OUT (also write
# the table to this file).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LUA=${LUA:-lua5.4}
MODDIR=${MODDIR:-$ROOT}
case "$MODDIR" in /*) ;; *) MODDIR="$ROOT/$MODDIR" ;; esac
CPU=${CPU:-0}
export BENCH_REPS=${BENCH_REPS:-5}
export BENCH_SCALE=${BENCH_SCALE:-1}
[ "$BENCH_REPS" -ge 5 ] 2>/dev/null || BENCH_REPS=5
export LUA_PATH="$ROOT/lua/?.lua;;" LUA_CPATH="$MODDIR/?.so;;"
export MODDIR LUA CPU
SKIP=" ${BENCH_SKIP:-} "
PIN=""
command -v taskset >/dev/null && PIN="taskset -c $CPU"

[ -e "$MODDIR/cache/core.so" ] || { echo "bench/run.sh: $MODDIR/cache/core.so missing: run make first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/cache-bench.XXXXXX)
. "$ROOT/spec/support/redis_lib.sh"
cleanup() { stop_pids "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ROWS="$WORK/rows"   # section|name|ops|p50|p99|baseline|ratio
NOTES="$WORK/notes"
: >"$ROWS"
: >"$NOTES"
note() { echo "$*" >>"$NOTES"; echo "bench: $*" >&2; }
skipped() { case "$SKIP" in *" $1 "*) return 0 ;; esac; return 1; }

# The rows of a part's output ("name|ops|p50|p99|baseline|ratio"), tagged.
collect() { # section file
    grep -E '^[^|#]+\|[0-9.e+]+\|[^|]*\|[^|]*\|[^|]*\|[^|]*$' "$2" | sed "s/^/$1|/" >>"$ROWS"
}

elapsed() { echo $(( $(date +%s) - T0 )); }
T0=$(date +%s)
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)

# ---- 1. in-process ---------------------------------------------------------------
if ! skipped local; then
    echo "bench: local (SimpleCache, FileSystemCache, decorators, memory)..." >&2
    if "$LUA" bench/local.lua >"$WORK/local.out" 2>"$WORK/local.err"; then
        collect local "$WORK/local.out"
        grep '^memory|' "$WORK/local.out" >"$WORK/memory" || true
    else
        note "bench/local.lua failed: $(tail -n 3 "$WORK/local.err")"
    fi
fi

# ---- 2. decorators on Redis (a server of our own, pinned with the client) -----------
if ! skipped redis-deco; then
    if command -v redis-server >/dev/null && "$LUA" -e 'assert(require("cache").backend_types().RedisCache)' 2>/dev/null; then
        echo "bench: memoize / cached on RedisCache..." >&2
        if redis_start_free "$WORK" deco DECO_PORT 2>"$WORK/deco.err"; then
            [ -n "$PIN" ] && taskset -pc "$CPU" "$(cat "$WORK/deco.pid")" >/dev/null
            RAWBIN=""
            ${CC:-cc} -O2 -o "$WORK/redis_raw" bench/redis_raw.c 2>"$WORK/raw.err" && RAWBIN="$WORK/redis_raw"
            [ -n "$RAWBIN" ] || note "raw Redis socket loop did not build: $(head -n 3 "$WORK/raw.err")"
            if REDIS_RAW="$RAWBIN" $PIN "$LUA" bench/decorators_redis.lua "$DECO_PORT" >"$WORK/deco.out" 2>"$WORK/deco.err"; then
                collect redis "$WORK/deco.out"
            else
                note "bench/decorators_redis.lua failed: $(tail -n 3 "$WORK/deco.err")"
            fi
            stop_pids "$WORK"
        else
            note "decorators on Redis skipped: redis-server did not start"
        fi
    else
        note "decorators on Redis skipped: redis-server or RedisCache missing"
    fi
fi

# ---- 3/4. network backends beside their raw baselines ------------------------------------
for part in redis memcached; do
    skipped "$part" && continue
    script="bench/$part.sh"
    if [ ! -e "$script" ]; then
        note "$part skipped: $script does not exist yet"
        continue
    fi
    echo "bench: $script..." >&2
    if timeout 150 bash "$script" >"$WORK/$part.out" 2>"$WORK/$part.err"; then
        collect "$part" "$WORK/$part.out"
    else
        note "$part skipped: $script failed: $(tail -n 2 "$WORK/$part.err" | tr '\n' ' ')"
        collect "$part" "$WORK/$part.out"
    fi
done

# ---- 5. OpenResty ----------------------------------------------------------------------------
if ! skipped openresty; then
    if [ -e bench/openresty.sh ]; then
        echo "bench: bench/openresty.sh (about a minute)..." >&2
        if DURATION=${DURATION:-4} timeout 180 bash bench/openresty.sh >"$WORK/ngx.out" 2>"$WORK/ngx.err"; then
            # "label   N req/s  (runs: ...)" rows; ratios to the bare handler
            awk '
                / req\/s  \(runs:/ {
                    line = $0; sub(/ +[0-9.]+ req\/s  \(runs:.*/, "", line)
                    match($0, /[0-9.]+ req\/s/); v = substr($0, RSTART, RLENGTH); sub(/ req\/s/, "", v)
                    name = "OpenResty req/s: " line
                    if (bare == "") { bare = v; bname = name; print "openresty|" name "|" v "||||" }
                    else printf "openresty|%s|%s|||%s|%.2f\n", name, v, bname, (bare > 0 ? v / bare : 0)
                }
                / median [0-9.]+ us, p99 [0-9.]+ us/ {
                    line = substr($0, 3)
                    if (line !~ /^ /) { be = line; sub(/ .*/, "", be); sub(/^[^ ]+/, "", line) }
                    sz = line; sub(/ +min .*/, "", sz); gsub(/^ +| +$/, "", sz)
                    match($0, /median [0-9.]+ us/); m = substr($0, RSTART + 7, RLENGTH - 10)
                    match($0, /p99 [0-9.]+ us/); p = substr($0, RSTART + 4, RLENGTH - 7)
                    printf "openresty|OpenResty: one %s get inside a handler, %s|%.0f|%.0f|%.0f||\n", be, sz, (m > 0 ? 1e6 / m : 0), m * 1000, p * 1000
                }' "$WORK/ngx.out" >>"$ROWS"
            grep -E '^nginx |medians:|delayed:|^stall|^Redis |cosocket get =' "$WORK/ngx.out" | sed 's/^ */OpenResty: /' >>"$NOTES"
            sed -n '/not answering/,/^[^ ]/p' "$WORK/ngx.out" | grep '^ ' | sed 's/^ */OpenResty, /' >>"$NOTES"
            grep '^TARGET|' "$WORK/ngx.out" | cut -d'|' -f2- >"$WORK/ngx.targets"
        else
            note "openresty skipped: $(tail -n 2 "$WORK/ngx.err" | tr '\n' ' ')"
        fi
    else
        note "openresty skipped: bench/openresty.sh does not exist"
    fi
fi

# ---- the table ----------------------------------------------------------------------------------
cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$cpu_model" ] || cpu_model=$(lscpu 2>/dev/null | awk -F': *' '/Model name/ {print $2; exit}')
{
echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, Linux $(uname -r), $("$LUA" -v 2>&1 | head -n 1)"
echo "Command: make bench   (bench/run.sh with cache/core.so from ${MODDIR#$ROOT/}; BENCH_REPS=$BENCH_REPS BENCH_SCALE=$BENCH_SCALE; load average at start: $LOAD0)"
echo "ops/s: median of $BENCH_REPS repetitions. In-process rows (Simple, FS, memoize, cached): operations per"
echo "  CPU-second of the benchmark process (os.clock), as the machine is shared and the wall clock would"
echo "  measure the other tenants; each repetition runs right after one of its baseline, and ratio is the"
echo "  median of those per-pair ratios. p50/p99: wall-clock ns per operation over batches of 100 (so p99"
echo "  includes preemption). Network rows ([pinned]): wall clock, client and server pinned to CPU $CPU with"
echo "  taskset; ratio = ops/s / baseline ops/s measured in the same run. OpenResty rows: not pinned."
echo
echo "| operation | ops/s | p50 ns | p99 ns | baseline | ratio |"
echo "|---|---:|---:|---:|---|---:|"
awk -F'|' '
    function sec(s) { return s == "local" ? "" : s == "redis" ? "[pinned] " : s == "memcached" ? "[pinned] " : "" }
    { printf "| %s%s | %s | %s | %s | %s | %s |\n", sec($1), $2, $3, $4, $5, $6, $7 }' "$ROWS"
if [ -s "$WORK/memory" ]; then
    IFS='|' read -r _ per payload target what <"$WORK/memory"
    echo
    echo "Memory: $per bytes of RSS per SimpleCache entry ($what)"
fi
if [ -s "$NOTES" ]; then
    echo
    sed 's/^/Note: /' "$NOTES"
fi
echo
echo "Targets (issue 9):"
} >"$WORK/table"

# ---- targets ---------------------------------------------------------------------------------------
# target LABEL ROW-NAME FIELD OP LIMIT: FIELD is ops or ratio
target() {
    local label=$1 name=$2 field=$3 op=$4 limit=$5 v
    v=$(awk -F'|' -v n="$name" -v f="$field" '$2 == n { print (f == "ops" ? $3 : $7); exit }' "$ROWS")
    if [ -z "$v" ]; then
        printf '  %-58s %s\n' "$label" "not measured"
    elif awk -v v="$v" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == ">=" ? v >= l : v <= l) }'; then
        printf '  %-58s %-12s met\n' "$label" "$v"
    else
        printf '  %-58s %-12s NOT MET\n' "$label" "$v"
    fi
}
{
target "SimpleCache get hit >= 0.6x plain table" "Simple get hit 100 B" ratio ">=" 0.6
target "SimpleCache set >= 0.6x plain table" "Simple set 100 B" ratio ">=" 0.6
target "SimpleCache churn >= 3M ops/s" "Simple churn get/set-on-miss (thr 1000)" ops ">=" 3000000
target "memoize hit >= 0.5x hand-written memoize" "memoize hit (SimpleCache)" ratio ">=" 0.5
target "FileSystemCache get hit >= 250k ops/s (1000 keys)" "FS get hit 100 B (1000 keys)" ops ">=" 250000
target "FileSystemCache get hit >= 250k ops/s (50 hot keys)" "FS get hit 100 B (50 hot keys)" ops ">=" 250000
target "FileSystemCache set >= 25k ops/s" "FS set 100 B" ops ">=" 25000
target "Redis get >= 0.9x raw C socket loop" "RedisCache get (vs raw socket)" ratio ">=" 0.9
target "Redis set >= 0.9x raw C socket loop" "RedisCache set (vs raw socket)" ratio ">=" 0.9
target "Redis get >= redis-benchmark -c1 -P1" "RedisCache get" ratio ">=" 1.0
target "Redis set >= redis-benchmark -c1 -P1" "RedisCache set" ratio ">=" 1.0
target "Redis get_many(100) >= 0.5x per-key rate of -P100" "RedisCache get_many(100) keys" ratio ">=" 0.5
target "Redis TLS get >= 0.8x plain get" "RedisCache TLS get (vs plain)" ratio ">=" 0.8
target "Redis TLS set >= 0.8x plain set" "RedisCache TLS set (vs plain)" ratio ">=" 0.8
target "memcached get >= 0.9x raw protocol loop" "MemcachedCache get" ratio ">=" 0.9
target "memcached set >= 0.9x raw protocol loop" "MemcachedCache set" ratio ">=" 0.9
# issue 13's goals, measured by bench/openresty.sh: label|value|op|limit
if [ -s "$WORK/ngx.targets" ]; then
    while IFS='|' read -r label v op limit; do
        if awk -v v="$v" -v l="$limit" -v op="$op" 'BEGIN { exit !(op == ">=" ? v >= l : v <= l) }'; then
            printf '  %-58s %-12s met\n' "$label" "$v"
        else
            printf '  %-58s %-12s NOT MET\n' "$label" "$v"
        fi
    done <"$WORK/ngx.targets"
fi
if [ -s "$WORK/memory" ]; then
    IFS='|' read -r _ per payload limit _ <"$WORK/memory"
    if awk -v v="$per" -v l="$limit" 'BEGIN { exit !(v <= l) }'; then s=met; else s="NOT MET"; fi
    printf '  %-58s %-12s %s\n' "memory per entry <= 1.5x(key+value)+64 = $limit B" "$per" "$s"
fi
echo
echo "(total time: $(elapsed) s)"
} >>"$WORK/table"
cat "$WORK/table"
[ -n "${BENCH_OUT:-}" ] && cp "$WORK/table" "$BENCH_OUT"
exit 0
