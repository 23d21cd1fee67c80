#!/bin/bash
# uWSGI cache server for the UWSGICache specs (recipe: test-servers.md §7).
#   uwsgi.sh start DIR   starts one uWSGI with two caches, listening on a free
#                        loopback port and on the unix socket DIR/uwsgi.sock;
#                        prints on stdout only:
#                          export CACHE_TEST_UWSGI=127.0.0.1:PORT
#                          export CACHE_TEST_UWSGI_SOCKET=DIR/uwsgi.sock
#   uwsgi.sh stop DIR    stops it by PID (TERM, then KILL after 5 s)
# UWSGI_PORT=P uwsgi.sh start DIR  uses port P (a restart on the same address).
#
# Caches: "mycache" (expired entries swept by the master every second) and
# "lazyc" (lazy_expire=1: expiry checked on every read, so a TTL is exact to
# the second). Both have the same number of items on purpose: uWSGI 2.0.21's
# remote `clear` walks the item count of the server's FIRST cache whatever
# cache it clears, so a smaller first cache clears others only partly and a
# bigger one walks past the end of a smaller cache's item table.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

alive() { # alive PID: true while the process runs (a zombie counts as gone)
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

stop() {
    local pidfile pid i
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if [ -n "$pid" ] && alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null
            for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -KILL "$pid" 2>/dev/null
        fi
        rm -f "$pidfile"
    done
    rm -f "$DIR/uwsgi.sock"
}

start() {
    command -v uwsgi >/dev/null || { echo "uwsgi is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    local sock="$DIR/uwsgi.sock" attempt port pid i
    for attempt in 1 2 3 4 5; do
        port=${UWSGI_PORT:-$("$ROOT/spec/support/freeport.sh")}
        rm -f "$sock"
        uwsgi --plugin cache --socket "127.0.0.1:$port" --socket "$sock" \
            --master --processes 1 --die-on-term --vacuum \
            --cache2 name=mycache,items=1000 \
            --cache2 name=lazyc,items=1000,lazy_expire=1 \
            --cache-expire-freq 1 </dev/null >"$DIR/uwsgi.log" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/uwsgi.pid"
        # About 180 ms to listen; allow 10 s on a loaded machine.
        for i in $(seq 100); do
            alive "$pid" || break
            if [ -S "$sock" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "export CACHE_TEST_UWSGI=127.0.0.1:$port"
                echo "export CACHE_TEST_UWSGI_SOCKET=$sock"
                return 0
            fi
            sleep 0.1
        done
        # Lost the port to someone else, or too slow: try again elsewhere.
        stop
        echo "uwsgi attempt $attempt on port $port failed:" >&2
        tail -n 3 "$DIR/uwsgi.log" >&2
    done
    exit 1
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
