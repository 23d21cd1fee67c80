#!/bin/bash
# RedisCache through `cache` beside redis-benchmark, on a redis-server of
# its own (free port, no persistence), client and server pinned to one CPU
# with taskset so that both measurements share the same conditions.
#
#   bench/redis.sh            (after `make`; BENCH_SCALE=N for longer runs)
#
# Prints the rows of bench/redis.lua ("name|ops/s|p50 ns|p99 ns|baseline|
# ratio"), then the same as a table. Environment: LUA (lua5.4), CPU (0),
# MODDIR (where cache/core.so is, default: the repository root).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LUA=${LUA:-lua5.4}
CPU=${CPU:-0}
SCALE=${BENCH_SCALE:-1}
MODDIR=${MODDIR:-.}
. "$ROOT/spec/support/redis_lib.sh"

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
    { echo "bench/redis.sh: redis-server and redis-benchmark are needed" >&2; exit 1; }
[ -e "$MODDIR/cache/core.so" ] || { echo "bench/redis.sh: build first (make)" >&2; exit 1; }
PIN=""
command -v taskset >/dev/null && PIN="taskset -c $CPU"

DIR=$(mktemp -d /tmp/cache-bench-redis.XXXXXX)
cleanup() { stop_pids "$DIR"; rm -rf "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server, pinned (taskset is inherited by the process it starts).
start_pinned() {
    local attempt port pid i
    for attempt in 1 2 3 4 5; do
        port=$("$ROOT/spec/support/freeport.sh")
        $PIN redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$DIR" --logfile "$DIR/log" </dev/null >/dev/null 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/redis.pid"
        for i in $(seq 200); do
            alive "$pid" || break
            redis_ready "$port" && { PORT=$port; return 0; }
            sleep 0.05
        done
        alive "$pid" && kill -KILL "$pid"
    done
    return 1
}
start_pinned || { echo "bench/redis.sh: redis-server did not start" >&2; exit 1; }

# rps PIPELINE N TEST: redis-benchmark's requests per second (3-byte values).
rps() {
    $PIN redis-benchmark -h 127.0.0.1 -p "$PORT" -c 1 -P "$1" -n "$2" -d 3 -t "$3" --csv 2>/dev/null |
        awk -F'","' -v t="$(echo "$3" | tr a-z A-Z)" 'index($1, "\"" t) == 1 && $1 == "\"" t {print $2; exit}'
}
BASE_SET_P1=$(rps 1 $((20000 * SCALE)) set)
BASE_GET_P1=$(rps 1 $((20000 * SCALE)) get)
BASE_GET_P100=$(rps 100 $((500000 * SCALE)) get)
export BASE_SET_P1 BASE_GET_P1 BASE_GET_P100 BENCH_SCALE=$SCALE

OUT=$(LUA_PATH="$ROOT/lua/?.lua;;" LUA_CPATH="$MODDIR/?.so;;" $PIN "$LUA" bench/redis.lua "$PORT") ||
    { echo "bench/redis.sh: bench/redis.lua failed" >&2; exit 1; }
echo "$OUT"
echo
printf '%-34s %12s %9s %9s  %s\n' "redis ($(redis-server --version | grep -o 'v=[^ ]*'), cpu $CPU)" "ops/s" "p50 ns" "p99 ns" "ratio to baseline"
echo "$OUT" | while IFS='|' read -r name ops p50 p99 base ratio; do
    printf '%-34s %12s %9s %9s  %s\n' "$name" "$ops" "$p50" "$p99" "${ratio:+$ratio x ($base)}"
done
