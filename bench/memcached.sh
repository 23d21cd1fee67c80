#!/bin/bash
# MemcachedCache through `cache` beside a raw memcached text-protocol loop
# (bench/memcached_raw.c, one socket, one request per round trip) and beside
# bare libmemcached in binary mode (bench/memcached_libmc.c) on a
# memcached of its own (free port), client and server pinned to one CPU with
# taskset so that both measurements share the same conditions.
#
#   bench/memcached.sh          (after `make`; BENCH_SCALE=N for longer runs)
#
# Prints the rows of bench/memcached.lua ("name|ops/s|p50 ns|p99 ns|baseline|
# ratio"), then the same as a table. Environment: LUA (lua5.4), CPU (0),
# MODDIR (where cache/core.so is, default: the repository root), CC.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LUA=${LUA:-lua5.4}
CPU=${CPU:-0}
SCALE=${BENCH_SCALE:-1}
MODDIR=${MODDIR:-.}

command -v memcached >/dev/null || { echo "bench/memcached.sh: memcached is needed" >&2; exit 1; }
[ -e "$MODDIR/cache/core.so" ] || { echo "bench/memcached.sh: build first (make)" >&2; exit 1; }
PIN=""
command -v taskset >/dev/null && PIN="taskset -c $CPU"

DIR=$(mktemp -d /tmp/cache-bench-memcached.XXXXXX)
PID=""
alive() { # a zombie counts as gone
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}
cleanup() {
    if [ -n "$PID" ] && alive "$PID"; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 50); do alive "$PID" || break; sleep 0.1; done
        alive "$PID" && kill -KILL "$PID" 2>/dev/null
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

${CC:-cc} -O2 -std=c11 -o "$DIR/raw" bench/memcached_raw.c ||
    { echo "bench/memcached.sh: cannot build bench/memcached_raw.c" >&2; exit 1; }
# shellcheck disable=SC2046
${CC:-cc} -O2 -std=c11 -o "$DIR/libmc" bench/memcached_libmc.c $(pkg-config --cflags --libs libmemcached) ||
    { echo "bench/memcached.sh: cannot build bench/memcached_libmc.c" >&2; exit 1; }

RUNAS=(-u "$(id -un)")
start_pinned() {
    local attempt port i
    for attempt in 1 2 3 4 5; do
        port=$("$ROOT/spec/support/freeport.sh")
        $PIN memcached -l 127.0.0.1 -p "$port" -U 0 -m 64 -t 1 "${RUNAS[@]}" \
            </dev/null >"$DIR/log" 2>&1 &
        PID=$!
        for i in $(seq 100); do
            alive "$PID" || break
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { PORT=$port; return 0; }
            sleep 0.05
        done
        alive "$PID" && kill -KILL "$PID"
        PID=""
    done
    return 1
}
start_pinned || { echo "bench/memcached.sh: memcached did not start" >&2; exit 1; }

BASE_GET=$($PIN "$DIR/raw" "$PORT" get $((20000 * SCALE)))
BASE_SET=$($PIN "$DIR/raw" "$PORT" set $((20000 * SCALE)))
BASE_MGET100=$($PIN "$DIR/raw" "$PORT" mget $((1000 * SCALE)))
LIB_GET=$($PIN "$DIR/libmc" "$PORT" get $((20000 * SCALE)))
LIB_SET=$($PIN "$DIR/libmc" "$PORT" set $((20000 * SCALE)))
LIB_MGET100=$($PIN "$DIR/libmc" "$PORT" mget $((1000 * SCALE)))
export BASE_GET BASE_SET BASE_MGET100 LIB_GET LIB_SET LIB_MGET100 BENCH_SCALE=$SCALE

OUT=$(LUA_PATH="$ROOT/lua/?.lua;;" LUA_CPATH="$MODDIR/?.so;;" $PIN "$LUA" bench/memcached.lua "$PORT") ||
    { echo "bench/memcached.sh: bench/memcached.lua failed" >&2; exit 1; }
echo "$OUT"
echo
printf '%-38s %12s %9s %9s  %s\n' "memcached ($(memcached -V | awk '{print $2}'), cpu $CPU)" "ops/s" "p50 ns" "p99 ns" "ratio to baseline"
echo "$OUT" | while IFS='|' read -r name ops p50 p99 base ratio; do
    printf '%-38s %12s %9s %9s  %s\n' "$name" "$ops" "$p50" "$p99" "${ratio:+$ratio x ($base)}"
done
