#!/bin/bash
# bench/openresty.sh: `cache` inside nginx + LuaJIT (examples/openresty), with
# in-run baselines. Prints:
#   1. requests/s (wrk, median of 3 interleaved runs) of a bare content_by_lua handler, of a `cached` view
#      served from the per-worker SimpleCache, and of one served from Redis
#      (same body: "hello world");
#   2. how long one RedisCache get blocks the nginx worker inside a handler
#      (blocking transport), timed on the monotonic clock in the handler;
#   3. how long a get blocks when Redis stops answering (SIGSTOP): bounded by
#      the backend's `timeout` (0.5 s in the example).
# Starts its own Redis and nginx on free loopback ports, stops both by PID.
# Env: DURATION (wrk seconds, default 5), CONNS (default 32), THREADS (1).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
for tool in wrk curl nginx redis-server; do
    command -v $tool >/dev/null || { echo "bench/openresty.sh: $tool is not installed (tools/install-deps.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/cache-bench-ngx.XXXXXX)
chmod 755 "$WORK"
REDIS_STOPPED=0
cleanup() {
    [ -n "${REDIS_PID:-}" ] && [ $REDIS_STOPPED = 1 ] && kill -CONT "$REDIS_PID" 2>/dev/null
    bash "$ROOT/spec/support/openresty.sh" stop "$WORK/nginx" >/dev/null 2>&1
    bash "$ROOT/spec/servers/redis.sh" stop "$WORK/redis" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/redis" "$WORK/nginx"
bash "$ROOT/spec/servers/redis.sh" start "$WORK/redis" >"$WORK/redis.env" || exit 1
# shellcheck disable=SC1091
. "$WORK/redis.env"
REDIS_PID=$(cat "$WORK/redis"/main*.pid 2>/dev/null | head -n 1)
env_out=$(bash "$ROOT/spec/support/openresty.sh" start "$WORK/nginx") || exit 1
eval "$env_out"
BASE="http://127.0.0.1:$CACHE_NGX_PORT"
curl -s "$BASE/info" | grep -q 'redis=yes' || { echo "nginx has no RedisCache:" >&2; curl -s "$BASE/info" >&2; exit 1; }

rps() { # path -> requests/s
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$BASE$1" 2>&1 | awk '/^Requests\/sec/ {print $2}'
}

echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), 2 workers, wrk -t$THREADS -c$CONNS -d${DURATION}s on $(nproc) cores (wrk shares them)"
# warm every worker's cache, then measure, alternating to even out noise
for _ in $(seq 1 20); do
    curl -s -H 'Connection: close' -o /dev/null "$BASE/bench/cached" -o /dev/null "$BASE/bench/redis"
done
declare -A runs=()
for round in 1 2 3; do
    for h in bare cached redis; do runs[$h]="${runs[$h]:-} $(rps /bench/$h)"; done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bare=$(echo "${runs[bare]}" | median)
cached=$(echo "${runs[cached]}" | median)
redis=$(echo "${runs[redis]}" | median)
printf '%-44s %10s req/s  (runs:%s)\n' \
    "bare content_by_lua (ngx.say)" "$bare" "${runs[bare]}" \
    "cached view hit, SimpleCache (per worker)" "$cached" "${runs[cached]}" \
    "cached view hit, RedisCache (blocking)" "$redis" "${runs[redis]}"
awk -v b="$bare" -v c="$cached" -v r="$redis" 'BEGIN {
    if (b > 0) printf "  medians: SimpleCache hit = %.0f%% of bare, Redis hit = %.0f%% of bare\n", 100*c/b, 100*r/b }'

# One get inside a handler: durations in microseconds, from the handler.
stats() { # reads numbers on stdin, prints min / median / p99 / max
    tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {
        if (NR == 0) { print "no samples"; exit }
        p = int(NR * 0.99); if (p < 1) p = 1
        printf "min %.0f us, median %.0f us, p99 %.0f us, max %.0f us (%d gets)\n",
               a[1], a[int((NR + 1) / 2)], a[p], a[NR], NR }'
}
curl -s -o /dev/null "$BASE/redis/set?k=bench-small&v=hello"
curl -s -o /dev/null "$BASE/redis/set?k=bench-big&size=100000"
echo "RedisCache get blocking the worker, inside a handler:"
printf '  %-20s %s\n' "hit (5 bytes)" "$(curl -s "$BASE/redis/time?k=bench-small&n=2000" | stats)"
printf '  %-20s %s\n' "hit (100 kB)" "$(curl -s "$BASE/redis/time?k=bench-big&n=2000" | stats)"
printf '  %-20s %s\n' "miss" "$(curl -s "$BASE/redis/time?k=bench-none&n=2000" | stats)"

# Redis alive but silent: the worker is stuck until the backend's timeout.
if [ -n "$REDIS_PID" ]; then
    kill -STOP "$REDIS_PID" && REDIS_STOPPED=1
    t=$(curl -s --max-time 10 "$BASE/redis/time?k=bench-small&n=1" | stats)
    kill -CONT "$REDIS_PID"; REDIS_STOPPED=0
    printf '  %-20s %s\n' "Redis not answering" "$t"
fi
