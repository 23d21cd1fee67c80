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
#   4. the cosocket transport against the blocking one: Redis behind a
#      proxy that delays every reply 20 ms (bench/delay_proxy.c), 100
#      connections; and a get on a stopped Redis (timeout 1 s) while bare
#      requests reach the same worker;
#   5. TARGET|label|value|op|limit lines for bench/run.sh (issue 13's goals).
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
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null
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
# Redis 20 ms away: a proxy that holds every reply
DELAY_MS=${DELAY_MS:-20}
if ${CC:-cc} -O2 -pthread -o "$WORK/delay_proxy" "$ROOT/bench/delay_proxy.c" 2>"$WORK/proxy.err"; then
    "$WORK/delay_proxy" "$WORK/proxy.port" "$CACHE_TEST_REDIS_PORT" "$DELAY_MS" </dev/null >/dev/null 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 1 100); do [ -s "$WORK/proxy.port" ] && break; sleep 0.02; done
    export CACHE_BENCH_DELAYED_PORT=$(cat "$WORK/proxy.port" 2>/dev/null)
else
    echo "bench/openresty.sh: delay_proxy did not build: $(head -n 3 "$WORK/proxy.err")" >&2
fi
env_out=$(CACHE_NGX_OWNER=$$ bash "$ROOT/spec/support/openresty.sh" start "$WORK/nginx") || exit 1
eval "$env_out"
BASE="http://127.0.0.1:$CACHE_NGX_PORT"
curl -s "$BASE/info" | grep -q 'redis=yes' || { echo "nginx has no RedisCache:" >&2; curl -s "$BASE/info" >&2; exit 1; }
TIMED=$(curl -s "$BASE/info" | sed -n 's/.*timed=\([^;]*\).*/\1/p')

rps() { # path -> requests/s
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$BASE$1" 2>&1 | awk '/^Requests\/sec/ {print $2}'
}
rps_c() { # connections path -> requests/s (wrk's 10 s timeout: the blocking side queues)
    wrk -t"$THREADS" -c"$1" -d"${DURATION}s" --timeout 10s "$BASE$2" 2>&1 | awk '/^Requests\/sec/ {print $2}'
}

echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), 2 workers, wrk -t$THREADS -c$CONNS -d${DURATION}s on $(nproc) cores (wrk shares them)"
# warm every worker's cache, then measure, alternating to even out noise
HANDLERS="bare cached raw_cosocket redis_get redis redis_blocking"
curl -s "$BASE/bench/memcached" | grep -q 'hello world' && HANDLERS="$HANDLERS memcached"
for _ in $(seq 1 20); do
    for h in $HANDLERS; do curl -s -H 'Connection: close' -o /dev/null "$BASE/bench/$h"; done
done
declare -A runs=()
for round in 1 2 3; do
    for h in $HANDLERS; do runs[$h]="${runs[$h]:-} $(rps /bench/$h)"; done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A med=()
for h in $HANDLERS; do med[$h]=$(echo "${runs[$h]}" | median); done
declare -A label=(
    [bare]="bare content_by_lua (ngx.say)"
    [cached]="cached view hit, SimpleCache (per worker)"
    [raw_cosocket]="GET by hand on ngx.socket.tcp (pure Lua)"
    [redis_get]="RedisCache get (cosocket)"
    [redis]="cached view hit, RedisCache (cosocket)"
    [redis_blocking]="cached view hit, RedisCache (blocking)"
    [memcached]="cached view hit, MemcachedCache (cosocket)"
)
for h in $HANDLERS; do
    printf '%-44s %10s req/s  (runs:%s)\n' "${label[$h]}" "${med[$h]}" "${runs[$h]}"
done
awk -v b="${med[bare]}" -v c="${med[cached]}" -v r="${med[redis]}" -v rb="${med[redis_blocking]}" 'BEGIN {
    if (b > 0) printf "  medians: SimpleCache hit = %.0f%% of bare, Redis hit = %.0f%% of bare (blocking: %.0f%%)\n", 100*c/b, 100*r/b, 100*rb/b }'
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }'; }
echo "  cosocket get = $(ratio "${med[redis_get]}" "${med[raw_cosocket]}")x the hand-written pure-Lua GET"
echo "TARGET|OpenResty Redis cached hit >= 0.6x bare handler|$(ratio "${med[redis]}" "${med[bare]}")|>=|0.6"
if [ -n "${med[memcached]:-}" ]; then
    echo "TARGET|OpenResty memcached cached hit >= 0.6x bare handler|$(ratio "${med[memcached]}" "${med[bare]}")|>=|0.6"
fi

# Redis 20 ms away, 100 connections: each worker serves its requests one
# at a time on the blocking transport, all at once on cosockets.
if [ -n "${CACHE_BENCH_DELAYED_PORT:-}" ]; then
    curl -s -o /dev/null "$BASE/backend/set?b=redis&k=delayed&size=5"
    d_co=$(CONNS=100 rps_c 100 "/bench/delayed?b=delayed")
    d_blk=$(CONNS=100 rps_c 100 "/bench/delayed?b=delayed_blocking")
    printf '%-44s %10s req/s\n' "Redis ${DELAY_MS} ms away, 100 conns: cosocket" "$d_co" \
        "Redis ${DELAY_MS} ms away, 100 conns: blocking" "$d_blk"
    echo "  delayed: cosocket = $(ratio "$d_co" "$d_blk")x blocking (bound: 100 conns / ${DELAY_MS} ms = $((100000 / DELAY_MS)) req/s)"
    echo "TARGET|OpenResty Redis ${DELAY_MS} ms away: cosocket >= 40x blocking|$(ratio "$d_co" "$d_blk")|>=|40"
fi

# One get inside a handler: durations in microseconds, from the handler.
stats() { # reads numbers on stdin, prints min / median / p99 / max
    tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {
        if (NR == 0) { print "no samples"; exit }
        p = int(NR * 0.99); if (p < 1) p = 1
        printf "min %.1f us, median %.1f us, p99 %.1f us, max %.0f us (%d gets)\n",
               a[1], a[int((NR + 1) / 2)], a[p], a[NR], NR }'
}
echo "one get inside a handler, timed in the handler (blocking transports: how long it holds the worker; cosockets: the worker serves others meanwhile):"
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
echo "server not answering (SIGSTOP), one get (through cosockets where the backend has them):"
stall redis "$REDIS_PID"
stall memcached $MC_PIDS
stall uwsgi $UWSGI_PIDS

# The cosocket transport's stall test: Redis stopped, one request waits in a
# get (timeout 1 s) while bare requests reach the same worker.
if [ -n "$REDIS_PID" ]; then
    STOPPED="$REDIS_PID"
    kill -STOP "$REDIS_PID"
    curl -s --max-time 10 "$BASE/bench/stall" >"$WORK/stall.out" &
    stall_curl=$!
    sleep 0.2
    spid=$(curl -s "$BASE/bench/stalled_pid")
    worst=0 same=0
    for _ in $(seq 1 60); do
        out=$(curl -s -H 'Connection: close' -D - -o /dev/null -w 'T=%{time_total}\n' "$BASE/bench/pid")
        w=$(echo "$out" | tr -d '\r' | sed -n 's/^X-Worker: //p')
        t=$(echo "$out" | sed -n 's/^T=//p')
        if [ "$w" = "$spid" ]; then
            same=$((same + 1))
            worst=$(awk -v a="$worst" -v b="$t" 'BEGIN { print (b > a ? b : a) }')
        fi
    done
    wait "$stall_curl"
    kill -CONT "$REDIS_PID"; STOPPED=""
    worst_ms=$(awk -v t="$worst" 'BEGIN { printf "%.1f", t * 1000 }')
    echo "stall (Redis stopped, timeout 1 s, cosocket): the get took $(cut -d' ' -f1-2 "$WORK/stall.out"); meanwhile $same bare requests on its worker, slowest $worst_ms ms"
    [ "$same" -gt 0 ] && echo "TARGET|OpenResty stall: bare requests on the stalled worker < 50 ms|$worst_ms|<=|50"
fi
