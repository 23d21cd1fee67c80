#!/bin/bash
# Redis Sentinel for the RedisSentinelCache specs (recipe: test-servers.md §4):
# one master, one replica, three sentinels (quorum 2, down-after 1000 ms,
# failover-timeout 3000 ms), all on free loopback ports.
#   redis_sentinel.sh start DIR   prints on stdout only:
#     export CACHE_TEST_SENTINELS=127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3
#     export CACHE_TEST_SENTINEL_MASTER=mymaster
#     export CACHE_TEST_SENTINEL_DIR=DIR   (DIR/master.pid, DIR/replica.pid,
#       DIR/<name>.port and DIR/<name>.args let a spec kill and restart them)
#   redis_sentinel.sh stop DIR    stops them all by PID
set -u
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
. "$(dirname "$0")/../support/redis_lib.sh"

NAME=mymaster
DATA_ARGS=(--repl-diskless-sync-delay 0)

# sentinel_conf I PORT MASTER_PORT: a writable config (sentinels rewrite it).
sentinel_conf() {
    local i=$1 port=$2 mport=$3
    mkdir -p "$DIR/s$i"
    cat >"$DIR/s$i/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
daemonize no
dir $DIR/s$i
logfile $DIR/s$i/log
sentinel monitor $NAME 127.0.0.1 $mport 2
sentinel down-after-milliseconds $NAME 1000
sentinel failover-timeout $NAME 3000
sentinel parallel-syncs $NAME 1
CONF
}

# field PORT SECTION-COMMAND... : raw text of a redis-cli call, CRs removed.
ask() { redis-cli -h 127.0.0.1 -p "$@" 2>/dev/null | tr -d '\r'; }

start_data() {
    local mport rport i
    redis_start_free "$DIR" master mport "${DATA_ARGS[@]}" || return 1
    echo "$mport" >"$DIR/master.port"
    printf '%s\n' "${DATA_ARGS[@]}" >"$DIR/master.args"
    redis_start_free "$DIR" replica rport "${DATA_ARGS[@]}" --replicaof 127.0.0.1 "$mport" || return 1
    echo "$rport" >"$DIR/replica.port"
    printf '%s\n' "${DATA_ARGS[@]}" >"$DIR/replica.args"
    for i in $(seq 200); do # 85 ms in the recipe
        ask "$rport" info replication | grep -q '^master_link_status:up' && return 0
        sleep 0.05
    done
    echo "replica did not sync" >&2
    return 1
}

start_sentinels() {
    local mport rport i attempt port pid ok
    mport=$(cat "$DIR/master.port")
    rport=$(cat "$DIR/replica.port")
    SENTINELS=()
    for i in 1 2 3; do
        for attempt in 1 2 3 4 5; do
            port=$("$REDIS_ROOT/spec/support/freeport.sh")
            sentinel_conf "$i" "$port" "$mport"
            redis-server "$DIR/s$i/sentinel.conf" --sentinel </dev/null >"$DIR/s$i/out" 2>&1 &
            pid=$!
            echo "$pid" >"$DIR/sentinel$i.pid"
            ok=0
            for _ in $(seq 100); do
                alive "$pid" || break
                redis_ready "$port" && { ok=1; break; }
                sleep 0.05
            done
            [ $ok = 1 ] && break
            alive "$pid" && kill -KILL "$pid"
            rm -f "$DIR/sentinel$i.pid"
        done
        [ $ok = 1 ] || return 1
        SENTINELS+=("127.0.0.1:$port")
    done
    # Ready when every sentinel knows the two others and the replica
    # (about 2.4 s in the recipe).
    for i in $(seq 300); do
        ok=1
        for s in "${SENTINELS[@]}"; do
            port=${s##*:}
            ask "$port" sentinel master "$NAME" | grep -A1 -x 'num-other-sentinels' | tail -n1 | grep -qx 2 || ok=0
            ask "$port" sentinel replicas "$NAME" | grep -qx "$rport" || ok=0
        done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    echo "sentinels did not discover each other" >&2
    return 1
}

start() {
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    start_data && start_sentinels || { stop_pids "$DIR"; exit 1; }
    local list
    list=$(IFS=,; echo "${SENTINELS[*]}")
    echo "export CACHE_TEST_SENTINELS=$list"
    echo "export CACHE_TEST_SENTINEL_MASTER=$NAME"
    echo "export CACHE_TEST_SENTINEL_DIR=$DIR"
}

case "$cmd" in
start) start ;;
stop) stop_pids "$DIR" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
