#!/bin/bash
# A 3-master Redis Cluster over TLS only (client and cluster bus; recipe:
# test-servers.md §10), with the ACL user app (keys app:* only) on every
# node, for spec/redis_tls_spec.lua. Certificates are made at start
# (tls_certs in redis_lib.sh).
#   redis_tls_cluster.sh start DIR   prints on stdout only:
#     export CACHE_TEST_TLS_CLUSTER=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#     export CACHE_TEST_TLS_CLUSTER_CERTS=DIR/certs   (ca.crt)
#   redis_tls_cluster.sh stop DIR    stops the nodes by PID
set -u
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
. "$(dirname "$0")/../support/redis_lib.sh"

APP_PASS='app pw#1'

start_node() { # start_node I: node I on a free cluster port, port echoed
    local i=$1 port
    for _ in 1 2 3 4 5; do
        port=$("$REDIS_ROOT/spec/support/freeport.sh" 1 --cluster)
        rm -rf "$DIR/n$i"
        mkdir -p "$DIR/n$i"
        if REDIS_CONF="$DIR/acl.conf" redis_start "$DIR" "n$i" "$port" \
            --tls-cert-file "$DIR/certs/server.crt" --tls-key-file "$DIR/certs/server.key" \
            --tls-ca-cert-file "$DIR/certs/ca.crt" --tls-auth-clients no \
            --tls-cluster yes --tls-replication yes --cluster-enabled yes \
            --cluster-config-file "$DIR/n$i/nodes.conf" --cluster-node-timeout 2000 >&2; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

start() {
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "the openssl command is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    tls_certs "$DIR/certs" || exit 1
    printf 'user app on ">%s" ~app:* +@all\n' "$APP_PASS" >"$DIR/acl.conf"
    export REDIS_TLS="$DIR/certs"
    local ports=() i p ok
    local cli=(redis-cli --tls --cacert "$DIR/certs/ca.crt")
    for i in 1 2 3; do
        p=$(start_node "$i") || { stop_pids "$DIR"; exit 1; }
        ports+=("$p")
    done
    "${cli[@]}" --cluster create $(for p in "${ports[@]}"; do printf '127.0.0.1:%s ' "$p"; done) \
        --cluster-replicas 0 --cluster-yes >"$DIR/create.log" 2>&1 \
        || { cat "$DIR/create.log" >&2; stop_pids "$DIR"; exit 1; }
    for i in $(seq 300); do
        ok=1
        for p in "${ports[@]}"; do
            "${cli[@]}" -p "$p" cluster info 2>/dev/null | tr -d '\r' | grep -q '^cluster_state:ok' || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.05
    done
    [ $ok = 1 ] || { echo "cluster did not reach state ok" >&2; stop_pids "$DIR"; exit 1; }
    echo "export CACHE_TEST_TLS_CLUSTER=$(IFS=,; for p in "${ports[@]}"; do printf '127.0.0.1:%s\n' "$p"; done | paste -sd,)"
    echo "export CACHE_TEST_TLS_CLUSTER_CERTS=$DIR/certs"
}

case "$cmd" in
start) start ;;
stop) stop_pids "$DIR" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
