#!/bin/bash
# Helpers for the Redis server scripts (spec/servers/redis*.sh), sourced,
# not run. Recipes: shared/reference/test-servers.md §3-§5.

REDIS_ROOT=${REDIS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

# alive PID: true while the process runs (a zombie counts as gone).
alive() {
    local s
    s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

# stop_pids DIR: TERM every DIR/*.pid, KILL what is left after 5 s.
stop_pids() {
    local dir=$1 pidfile pid i
    local pids=()
    for pidfile in "$dir"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        [ -n "$pid" ] && alive "$pid" && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        rm -f "$pidfile"
    done
    for pid in "${pids[@]}"; do
        for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

# redis_ready PORT: answers PING (or asks for AUTH, which proves the same).
redis_ready() {
    redis-cli -h 127.0.0.1 -p "$1" ping 2>&1 | grep -qE 'PONG|NOAUTH'
}

# redis_start DIR NAME PORT [ARGS...]: one redis-server on 127.0.0.1:PORT,
# data and log under DIR/NAME, PID in DIR/NAME.pid; a config file named by
# $REDIS_CONF (if set) comes first. Returns 0 once it answers, 1 if it died
# (port taken) or took over 10 s.
redis_start() {
    local dir=$1 name=$2 port=$3 pid i
    shift 3
    mkdir -p "$dir/$name"
    redis-server ${REDIS_CONF:+"$REDIS_CONF"} --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir/$name" --logfile "$dir/$name/log" "$@" \
        </dev/null >"$dir/$name/out" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/$name.pid"
    for i in $(seq 200); do
        alive "$pid" || break
        redis_ready "$port" && return 0
        sleep 0.05
    done
    echo "redis $name on port $port did not start:" >&2
    tail -n 3 "$dir/$name/log" >&2 2>/dev/null
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    rm -f "$dir/$name.pid"
    return 1
}

# redis_start_free DIR NAME VAR [ARGS...]: redis_start on a free port,
# retried on new ports; the port is left in the variable named VAR.
redis_start_free() {
    local dir=$1 name=$2 var=$3 attempt port
    shift 3
    for attempt in 1 2 3 4 5; do
        port=$("$REDIS_ROOT/spec/support/freeport.sh")
        if redis_start "$dir" "$name" "$port" "$@"; then
            printf -v "$var" '%s' "$port"
            return 0
        fi
    done
    return 1
}
