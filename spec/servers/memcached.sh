#!/bin/bash
# memcached servers for the Memcached* specs (recipe: test-servers.md §6).
#   memcached.sh start DIR   starts, on free loopback ports, with temp data in DIR:
#                              a, b   two plain memcached (a pool of two)
#                              sock   one on the unix socket DIR/mc.sock
#                              sasl   one with SASL (-S), a sasldb made here
#                                     with saslpasswd2, -I 2m (the spread specs
#                                     store 1 MiB chunks)
#                            and prints on stdout only:
#                              export CACHE_TEST_MEMCACHED=127.0.0.1:PA
#                              export CACHE_TEST_MEMCACHED2=127.0.0.1:PB
#                              export CACHE_TEST_MEMCACHED_SOCKET=DIR/mc.sock
#                              export CACHE_TEST_MEMCACHED_SASL=127.0.0.1:PS
#                              export CACHE_TEST_MEMCACHED_USER=mcuser
#                              export CACHE_TEST_MEMCACHED_PASS=...
#   memcached.sh stop DIR    stops them by PID (TERM, then KILL after 5 s)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

USER_NAME=mcuser
PASSWORD="pw-$$-$RANDOM"

alive() { # alive PID: true while the process runs (a zombie counts as gone)
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

stop_one() { # stop_one NAME
    local pidfile="$DIR/$1.pid" pid i
    [ -e "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop() {
    local pidfile
    for pidfile in "$DIR"/*.pid; do
        [ -e "$pidfile" ] || continue
        stop_one "$(basename "$pidfile" .pid)"
    done
    rm -f "$DIR/mc.sock"
}

# As root memcached insists on -u; as anyone else -u is harmless only when
# it names the current user.
RUNAS=(-u "$(id -un)")

# launch NAME EXTRA-ARGS...: one memcached in the background, PID in DIR/NAME.pid.
launch() {
    local name=$1
    shift
    memcached -U 0 -m 64 "${RUNAS[@]}" "$@" </dev/null >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
}

# wait_tcp NAME PORT: true once PORT accepts connections (at most 10 s).
wait_tcp() {
    local pid i
    pid=$(cat "$DIR/$1.pid")
    for i in $(seq 100); do
        alive "$pid" || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# start_tcp NAME VAR EXTRA-ARGS...: starts on a free port (retrying another
# port when someone else took it) and sets VAR to the port.
start_tcp() {
    local name=$1 var=$2 attempt port
    shift 2
    for attempt in 1 2 3 4 5; do
        port=$("$ROOT/spec/support/freeport.sh")
        launch "$name" -l 127.0.0.1 -p "$port" "$@"
        if wait_tcp "$name" "$port"; then
            printf -v "$var" '%s' "$port"
            return 0
        fi
        echo "memcached $name attempt $attempt on port $port failed:" >&2
        tail -n 3 "$DIR/$name.log" >&2
        stop_one "$name"
    done
    return 1
}

start_socket() {
    local sock="$DIR/mc.sock" pid i
    rm -f "$sock"
    launch sock -s "$sock" -a 0700
    pid=$(cat "$DIR/sock.pid")
    for i in $(seq 100); do
        alive "$pid" || break
        [ -S "$sock" ] && return 0
        sleep 0.1
    done
    echo "memcached on $sock did not start:" >&2
    tail -n 3 "$DIR/sock.log" >&2
    return 1
}

start() {
    command -v memcached >/dev/null || { echo "memcached is not installed" >&2; exit 1; }
    command -v saslpasswd2 >/dev/null || { echo "saslpasswd2 (sasl2-bin) is not installed" >&2; exit 1; }
    mkdir -p "$DIR/sasl"
    local pa pb ps
    start_tcp a pa || { stop; exit 1; }
    start_tcp b pb || { stop; exit 1; }
    start_socket || { stop; exit 1; }
    # SASL: the realm is this host's name, so the sasldb is made here and now
    # (never committed). memcached reads DIR/sasl/memcached.conf.
    rm -f "$DIR/sasl/sasldb2"
    printf '%s' "$PASSWORD" | saslpasswd2 -p -a memcached -c -f "$DIR/sasl/sasldb2" "$USER_NAME" \
        || { echo "saslpasswd2 failed" >&2; stop; exit 1; }
    printf 'mech_list: plain cram-md5\nsasldb_path: %s/sasldb2\n' "$DIR/sasl" >"$DIR/sasl/memcached.conf"
    export SASL_CONF_PATH="$DIR/sasl"
    start_tcp sasl ps -S -I 2m || { stop; exit 1; }
    echo "export CACHE_TEST_MEMCACHED=127.0.0.1:$pa"
    echo "export CACHE_TEST_MEMCACHED2=127.0.0.1:$pb"
    echo "export CACHE_TEST_MEMCACHED_SOCKET=$DIR/mc.sock"
    echo "export CACHE_TEST_MEMCACHED_SASL=127.0.0.1:$ps"
    echo "export CACHE_TEST_MEMCACHED_USER=$USER_NAME"
    echo "export CACHE_TEST_MEMCACHED_PASS=$PASSWORD"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
