#!/bin/bash
# RedisCache through `cache` beside redis-benchmark, on a redis-server of
# its own (free port, no persistence), client and server pinned to one CPU
# with taskset so that both measurements share the same conditions; and
# RedisCache over TLS beside plain, on a second server with only a TLS port
# (certificates made with the openssl command; skipped without it).
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

# start_pinned NAME VAR [ARGS...]: a server, pinned (taskset is inherited
# by the process it starts), its port left in VAR; with REDIS_TLS set, a
# TLS port only (redis_lib.sh).
start_pinned() {
    local name=$1 var=$2 attempt port pid i
    local ports
    shift 2
    for attempt in 1 2 3 4 5; do
        port=$("$ROOT/spec/support/freeport.sh")
        ports=(--port "$port")
        [ -n "${REDIS_TLS:-}" ] && ports=(--port 0 --tls-port "$port")
        $PIN redis-server "${ports[@]}" --bind 127.0.0.1 --save '' --appendonly no \
            --dir "$DIR" --dbfilename "$name.rdb" --logfile "$DIR/$name.log" "$@" </dev/null >/dev/null 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/$name.pid"
        for i in $(seq 200); do
            alive "$pid" || break
            redis_ready "$port" && { printf -v "$var" '%s' "$port"; return 0; }
            sleep 0.05
        done
        alive "$pid" && kill -KILL "$pid"
    done
    return 1
}
start_pinned redis PORT || { echo "bench/redis.sh: redis-server did not start" >&2; exit 1; }
TLS_PORT=""
if command -v openssl >/dev/null && tls_certs "$DIR/certs"; then
    REDIS_TLS="$DIR/certs" start_pinned redis-tls TLS_PORT --tls-cert-file "$DIR/certs/server.crt" \
        --tls-key-file "$DIR/certs/server.key" --tls-ca-cert-file "$DIR/certs/ca.crt" \
        --tls-auth-clients no || echo "bench/redis.sh: the TLS redis-server did not start" >&2
fi

# rps PIPELINE N TEST [ARGS...]: redis-benchmark's requests per second
# (3-byte values) on PORT, or as ARGS say.
rps() {
    local p=$1 n=$2 t=$3
    shift 3
    $PIN redis-benchmark -h 127.0.0.1 -p "$PORT" "$@" -c 1 -P "$p" -n "$n" -d 3 -t "$t" --csv 2>/dev/null |
        awk -F'","' -v t="$(echo "$t" | tr a-z A-Z)" 'index($1, "\"" t) == 1 && $1 == "\"" t {print $2; exit}'
}
BASE_SET_P1=$(rps 1 $((20000 * SCALE)) set)
BASE_GET_P1=$(rps 1 $((20000 * SCALE)) get)
BASE_GET_P100=$(rps 100 $((500000 * SCALE)) get)
export BASE_SET_P1 BASE_GET_P1 BASE_GET_P100 BENCH_SCALE=$SCALE
if [ -n "$TLS_PORT" ]; then
    export REDIS_TLS_PORT=$TLS_PORT REDIS_TLS_CA="$DIR/certs/ca.crt"
    # what the server's own client gets from TLS, for scale
    tls=(-p "$TLS_PORT" --tls --cacert "$DIR/certs/ca.crt")
    BASE_TLS_GET_P1=$(rps 1 $((20000 * SCALE)) get "${tls[@]}")
    BASE_TLS_SET_P1=$(rps 1 $((20000 * SCALE)) set "${tls[@]}")
    export BASE_TLS_GET_P1 BASE_TLS_SET_P1
fi
OUT=$(LUA_PATH="$ROOT/lua/?.lua;;" LUA_CPATH="$MODDIR/?.so;;" $PIN "$LUA" bench/redis.lua "$PORT") ||
    { echo "bench/redis.sh: bench/redis.lua failed" >&2; exit 1; }
echo "$OUT"
echo
printf '%-34s %12s %9s %9s  %s\n' "redis ($(redis-server --version | grep -o 'v=[^ ]*'), cpu $CPU)" "ops/s" "p50 ns" "p99 ns" "ratio to baseline"
echo "$OUT" | while IFS='|' read -r name ops p50 p99 base ratio; do
    printf '%-34s %12s %9s %9s  %s\n' "$name" "$ops" "$p50" "$p99" "${ratio:+$ratio x ($base)}"
done
