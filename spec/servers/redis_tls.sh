#!/bin/bash
# Redis over TLS only (no plain port), with ACL users, for
# spec/redis_tls_spec.lua (recipe: test-servers.md §10). Certificates are
# made at start with the openssl command (tls_certs in redis_lib.sh).
#   redis_tls.sh start DIR   starts, on free loopback ports:
#     tls      certificate for localhost / 127.0.0.1; client certificates
#              not asked for; ACL users app (keys app:* only) and nopw
#              (no password, keys nopw:* only)
#     mtls     the same, but a client certificate signed by the CA required
#     expired  a certificate that expired in 2020
#     other    a valid certificate for other.example only
#     master + one sentinel, both TLS only: the sentinel monitors the
#              master over TLS and admits only the ACL user sentuser; the
#              master has the ACL user app (app:* only)
#   and prints on stdout only:
#     export CACHE_TEST_TLS_CERTS=DIR/certs   (ca.crt, client.crt/.key,
#                                              other-ca.crt)
#     export CACHE_TEST_TLS_PORT=P CACHE_TEST_TLS_MTLS_PORT=P
#     export CACHE_TEST_TLS_EXPIRED_PORT=P CACHE_TEST_TLS_OTHER_PORT=P
#     export CACHE_TEST_TLS_ACL_USER=app CACHE_TEST_TLS_ACL_PASSWORD=...
#     export CACHE_TEST_TLS_ACL_PREFIX=app:
#     export CACHE_TEST_TLS_SENTINEL=127.0.0.1:S CACHE_TEST_TLS_SENTINEL_MASTER=tlsmaster
#     export CACHE_TEST_TLS_SENTINEL_USER=sentuser CACHE_TEST_TLS_SENTINEL_PASSWORD=...
#   redis_tls.sh stop DIR    stops them by PID
set -u
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
. "$(dirname "$0")/../support/redis_lib.sh"

NAME=tlsmaster
APP_PASS='app pw#1'
SENT_PASS='sent pw#2'

# tls CERT [ARGS...]: the TLS flags of a server presenting CERT.{crt,key},
# then ARGS, into the array FLAGS.
tls() {
    FLAGS=(--tls-cert-file "$DIR/certs/$1.crt" --tls-key-file "$DIR/certs/$1.key"
           --tls-ca-cert-file "$DIR/certs/ca.crt" "${@:2}")
}

start_sentinel() {
    local mport=$1 port pid ok
    for _ in 1 2 3 4 5; do
        port=$("$REDIS_ROOT/spec/support/freeport.sh")
        mkdir -p "$DIR/s1"
        cat >"$DIR/s1/sentinel.conf" <<CONF
port 0
tls-port $port
bind 127.0.0.1
daemonize no
dir $DIR/s1
logfile $DIR/s1/log
tls-cert-file $DIR/certs/server.crt
tls-key-file $DIR/certs/server.key
tls-ca-cert-file $DIR/certs/ca.crt
tls-auth-clients no
tls-replication yes
user default off
user sentuser on ">$SENT_PASS" allchannels +@all
sentinel monitor $NAME 127.0.0.1 $mport 1
sentinel down-after-milliseconds $NAME 5000
CONF
        redis-server "$DIR/s1/sentinel.conf" --sentinel </dev/null >"$DIR/s1/out" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/sentinel.pid"
        ok=0
        for _ in $(seq 100); do
            alive "$pid" || break
            redis_ready "$port" && { ok=1; break; }
            sleep 0.05
        done
        [ $ok = 1 ] && { SENTINEL_PORT=$port; return 0; }
        alive "$pid" && kill -KILL "$pid"
        rm -f "$DIR/sentinel.pid"
    done
    return 1
}

start() {
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "the openssl command is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    tls_certs "$DIR/certs" bad || exit 1
    printf 'user app on ">%s" ~app:* +@all\nuser nopw on nopass ~nopw:* +@all\n' "$APP_PASS" >"$DIR/acl.conf"
    local tls mtls expired other master
    export REDIS_TLS="$DIR/certs"
    { tls server --tls-auth-clients no &&
      REDIS_CONF="$DIR/acl.conf" redis_start_free "$DIR" tls tls "${FLAGS[@]}" &&
      tls server --tls-auth-clients yes && redis_start_free "$DIR" mtls mtls "${FLAGS[@]}" &&
      tls expired --tls-auth-clients no && redis_start_free "$DIR" expired expired "${FLAGS[@]}" &&
      tls other --tls-auth-clients no && redis_start_free "$DIR" other other "${FLAGS[@]}" &&
      tls server --tls-auth-clients no --tls-replication yes &&
      REDIS_CONF="$DIR/acl.conf" redis_start_free "$DIR" master master "${FLAGS[@]}" &&
      start_sentinel "$master"; } || { stop_pids "$DIR"; exit 1; }
    echo "export CACHE_TEST_TLS_CERTS=$DIR/certs"
    echo "export CACHE_TEST_TLS_PORT=$tls CACHE_TEST_TLS_MTLS_PORT=$mtls"
    echo "export CACHE_TEST_TLS_EXPIRED_PORT=$expired CACHE_TEST_TLS_OTHER_PORT=$other"
    echo "export CACHE_TEST_TLS_ACL_USER=app CACHE_TEST_TLS_ACL_PASSWORD='$APP_PASS'"
    echo "export CACHE_TEST_TLS_ACL_PREFIX=app:"
    echo "export CACHE_TEST_TLS_SENTINEL=127.0.0.1:$SENTINEL_PORT CACHE_TEST_TLS_SENTINEL_MASTER=$NAME"
    echo "export CACHE_TEST_TLS_SENTINEL_USER=sentuser CACHE_TEST_TLS_SENTINEL_PASSWORD='$SENT_PASS'"
}

case "$cmd" in
start) start ;;
stop) stop_pids "$DIR" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
