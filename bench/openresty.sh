#!/bin/bash
# bench/openresty.sh: `cache` inside nginx + LuaJIT (examples/openresty), with
# in-run baselines. Prints:
#   1. requests/s (wrk, median of 3 interleaved runs) of a bare content_by_lua handler, of a `cached` view
#      served from the per-worker SimpleCache, and of one served from Redis
#      (same body: "hello world");
#   2. how long one get blocks the nginx worker inside a handler, for each
#      backend (SimpleCache, FileSystemCache, and the blocking transports of
#      Redis, memcached, uWSGI), timed on the monotonic clock in the handler;
#   3. how long a get blocks when the server stops answering (SIGSTOP):
#      bounded by the backend's timeout (0.5 s for Redis and uWSGI in the
#      example; libmemcached's fixed 1 s poll timeout for memcached);
#   4. with the handlers of spec/support/ngx/fetch_app.lua: requests/s of a
#      fetch hit from a TieredCache's l1 and of a SharedDictCache get (same
#      body as the bare handler), and the stampede figure: callback runs for
#      1000 concurrent requests of one cold key, with and without lock.
# Starts its own Redis, memcached, uWSGI and nginx on free loopback ports and
# stops them by PID.
# Env: DURATION (wrk seconds, default 5), CONNS (default 32), THREADS (1).
set -u
unset LD_PRELOAD
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
for tool in wrk curl nginx redis-server; do
    command -v $tool >/dev/null || { echo "bench/openresty.sh: $tool is not installed (tools/install-deps.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/cache-bench-ngx.XXXXXX)
chmod 755 "$WORK"
STOPPED=""
cleanup() {
    # shellcheck disable=SC2086
    [ -n "$STOPPED" ] && kill -CONT $STOPPED 2>/dev/null
    bash "$ROOT/spec/support/openresty.sh" stop "$WORK/nginx" >/dev/null 2>&1
    for srv in redis memcached uwsgi; do
        [ -d "$WORK/$srv" ] && bash "$ROOT/spec/servers/$srv.sh" stop "$WORK/$srv" >/dev/null 2>&1
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/redis" "$WORK/nginx" "$WORK/memcached" "$WORK/uwsgi"
bash "$ROOT/spec/servers/redis.sh" start "$WORK/redis" >"$WORK/redis.env" || exit 1
# shellcheck disable=SC1091
. "$WORK/redis.env"
REDIS_PID=$(cat "$WORK/redis"/main*.pid 2>/dev/null | head -n 1)
MC_PIDS="" UWSGI_PIDS=""
if command -v memcached >/dev/null && bash "$ROOT/spec/servers/memcached.sh" start "$WORK/memcached" >"$WORK/memcached.env" 2>"$WORK/memcached.err"; then
    . "$WORK/memcached.env"
    mc_port=${CACHE_TEST_MEMCACHED##*:}
    for f in "$WORK/memcached"/*.pid; do # the one serving CACHE_TEST_MEMCACHED
        p=$(cat "$f"); tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "-p $mc_port\b" && MC_PIDS=$p
    done
else
    unset CACHE_TEST_MEMCACHED
fi
if command -v uwsgi >/dev/null && bash "$ROOT/spec/servers/uwsgi.sh" start "$WORK/uwsgi" >"$WORK/uwsgi.env" 2>"$WORK/uwsgi.err"; then
    . "$WORK/uwsgi.env"
    up=$(cat "$WORK/uwsgi/uwsgi.pid")
    UWSGI_PIDS="$up $(ps -o pid= --ppid "$up" | tr -d ' ' | tr '\n' ' ')"
else
    unset CACHE_TEST_UWSGI
fi
env_out=$(CACHE_NGX_OWNER=$$ bash "$ROOT/spec/support/openresty.sh" start "$WORK/nginx") || exit 1
eval "$env_out"
BASE="http://127.0.0.1:$CACHE_NGX_PORT"
curl -s "$BASE/info" | grep -q 'redis=yes' || { echo "nginx has no RedisCache:" >&2; curl -s "$BASE/info" >&2; exit 1; }
TIMED=$(curl -s "$BASE/info" | sed -n 's/.*timed=\([^;]*\).*/\1/p')

rps() { # path -> requests/s
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$BASE$1" 2>&1 | awk '/^Requests\/sec/ {print $2}'
}

echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), 2 workers, wrk -t$THREADS -c$CONNS -d${DURATION}s on $(nproc) cores (wrk shares them)"
# warm every worker's cache, then measure, alternating to even out noise
for _ in $(seq 1 20); do
    curl -s -H 'Connection: close' -o /dev/null "$BASE/bench/cached" -o /dev/null "$BASE/bench/redis"
done
for _ in $(seq 1 20); do
    curl -s -H 'Connection: close' -o /dev/null "$BASE/bench/fetch_l1" -o /dev/null "$BASE/bench/shdict"
done
declare -A runs=()
for round in 1 2 3; do
    for h in bare cached redis fetch_l1 shdict; do runs[$h]="${runs[$h]:-} $(rps /bench/$h)"; done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bare=$(echo "${runs[bare]}" | median)
cached=$(echo "${runs[cached]}" | median)
redis=$(echo "${runs[redis]}" | median)
fetch_l1=$(echo "${runs[fetch_l1]}" | median)
shdict=$(echo "${runs[shdict]}" | median)
printf '%-44s %10s req/s  (runs:%s)\n' \
    "bare content_by_lua (ngx.say)" "$bare" "${runs[bare]}" \
    "cached view hit, SimpleCache (per worker)" "$cached" "${runs[cached]}" \
    "cached view hit, RedisCache (blocking)" "$redis" "${runs[redis]}" \
    "fetch hit from L1 (TieredCache)" "$fetch_l1" "${runs[fetch_l1]}" \
    "SharedDictCache get" "$shdict" "${runs[shdict]}"
awk -v b="$bare" -v c="$cached" -v r="$redis" 'BEGIN {
    if (b > 0) printf "  medians: SimpleCache hit = %.0f%% of bare, Redis hit = %.0f%% of bare\n", 100*c/b, 100*r/b }'

# One get inside a handler: durations in microseconds, from the handler.
stats() { # reads numbers on stdin, prints min / median / p99 / max
    tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {
        if (NR == 0) { print "no samples"; exit }
        p = int(NR * 0.99); if (p < 1) p = 1
        printf "min %.1f us, median %.1f us, p99 %.1f us, max %.0f us (%d gets)\n",
               a[1], a[int((NR + 1) / 2)], a[p], a[NR], NR }'
}
echo "one get inside a handler, i.e. how long it holds the worker (timed in the handler):"
for b in simple filesystem redis memcached uwsgi; do
    case ",$TIMED," in *",$b,"*) ;; *) printf '  %-11s not available\n' "$b"; continue ;; esac
    curl -s -o /dev/null "$BASE/backend/set?b=$b&k=bench-small&size=5"
    curl -s -o /dev/null "$BASE/backend/set?b=$b&k=bench-big&size=10000"
    printf '  %-11s %-7s %s\n' "$b" "5 B" "$(curl -s "$BASE/backend/time?b=$b&k=bench-small&n=2000" | stats)"
    printf '  %-11s %-7s %s\n' "" "10 kB" "$(curl -s "$BASE/backend/time?b=$b&k=bench-big&n=2000" | stats)"
    printf '  %-11s %-7s %s\n' "" "miss" "$(curl -s "$BASE/backend/time?b=$b&k=bench-none&n=2000" | stats)"
done

# A server alive but silent (SIGSTOP): the worker is stuck until the
# backend's timeout. The PIDs are those of the servers this script started.
stall() { # backend, pids...
    local b=$1 t; shift
    [ $# -gt 0 ] || return 0
    case ",$TIMED," in *",$b,"*) ;; *) return 0 ;; esac
    STOPPED="$*"
    kill -STOP "$@"
    t=$(curl -s --max-time 10 "$BASE/backend/time?b=$b&k=bench-small&n=1" | tr -d ' \n')
    kill -CONT "$@"; STOPPED=""
    printf '  %-11s one get took %.0f ms\n' "$b" "$(awk -v t="$t" 'BEGIN {print t/1000}')"
}
echo "server not answering (SIGSTOP), one get:"
stall redis "$REDIS_PID"
stall memcached $MC_PIDS
stall uwsgi $UWSGI_PIDS

# The stampede figure: 1000 requests of one cold key at once (4 curl
# processes of 250 parallel connections), a 100 ms callback; how many runs.
stampede() { # lock: 1 or 0 -> callback runs
    local key="stampede-$1-$RANDOM$RANDOM" i j args
    for j in 1 2 3 4; do
        args=()
        for i in $(seq 1 250); do
            [ "$i" -gt 1 ] && args+=(--next)
            args+=(-s -o /dev/null -H 'Connection: close' "$BASE/fetch/stampede?b=shd&ms=100&lock=$1&k=$key")
        done
        curl --parallel --parallel-immediate --parallel-max 250 "${args[@]}" 2>/dev/null &
    done
    wait
    curl -s "$BASE/fetch/runs?k=$key"
}
echo "fetch stampede (1000 concurrent requests of one cold key, 100 ms callback, SharedDictCache):"
printf '  stampede|fetch stampede: callback runs per 1000 cold reads, without lock|%s\n' "$(stampede 0)"
printf '  stampede|fetch stampede: callback runs per 1000 cold reads, lock = true|%s\n' "$(stampede 1)"
