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
# With REDIS_TLS=CERTS (a tls_certs folder) the check speaks TLS with
# CERTS/client.crt, without verifying the server (a server may deliberately
# hold a bad certificate).
redis_ready() {
    local tls=()
    [ -n "${REDIS_TLS:-}" ] &&
        tls=(--tls --insecure --cert "$REDIS_TLS/client.crt" --key "$REDIS_TLS/client.key")
    redis-cli -h 127.0.0.1 -p "$1" "${tls[@]}" ping 2>&1 | grep -qE 'PONG|NOAUTH'
}

# redis_start DIR NAME PORT [ARGS...]: one redis-server on 127.0.0.1:PORT,
# data and log under DIR/NAME, PID in DIR/NAME.pid; a config file named by
# $REDIS_CONF (if set) comes first. With REDIS_TLS set (see redis_ready),
# PORT is its TLS port and there is no plain one (ARGS name its certificates). Returns 0
# once it answers, 1 if it died (port taken) or took over 10 s.
redis_start() {
    local dir=$1 name=$2 port=$3 pid i
    local ports=(--port "$port")
    [ -n "${REDIS_TLS:-}" ] && ports=(--port 0 --tls-port "$port")
    shift 3
    mkdir -p "$dir/$name"
    redis-server ${REDIS_CONF:+"$REDIS_CONF"} "${ports[@]}" --bind 127.0.0.1 --save '' --appendonly no \
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

# tls_certs DIR: a test CA and certificates signed by it, made with the
# openssl command (EC P-256: about 20 ms each), in DIR:
#   ca.crt ca.key           the CA
#   server.crt server.key   for localhost and 127.0.0.1 (server and client use)
#   client.crt client.key   a client certificate
# With "bad" as a second argument, also certificates a client must refuse:
#   other-ca.crt            a CA that signed nothing here
#   expired.crt .key        for localhost and 127.0.0.1, expired in 2020
#   other.crt other.key     valid, but for the name other.example only
tls_certs() {
    local d=$1 key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    mkdir -p "$d"
    ( cd "$d" || exit 1
      openssl req -x509 -new $key -keyout ca.key -out ca.crt -days 3 -subj /CN=cache-test-ca || exit 1
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >client.ext
      printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:other.example\n' >other.ext
      sign() { # sign NAME CN: NAME.key and NAME.crt, valid for 3 days
          openssl req -new $key -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" &&
              openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
                  -out "$1.crt" -days 3 -extfile "$1.ext"
      }
      sign server localhost && sign client cache-test-client || exit 1
      [ "${2:-}" = bad ] || exit 0
      openssl req -x509 -new $key -keyout other-ca.key -out other-ca.crt -days 3 -subj /CN=other-ca &&
          sign other other.example || exit 1
      # `openssl x509 -req` cannot back-date; `openssl ca` can.
      mkdir -p ca.db && : >ca.db/index.txt && echo 1000 >ca.db/serial
      printf '%s\n' '[ca]' 'default_ca=d' '[d]' 'database=ca.db/index.txt' 'new_certs_dir=ca.db' \
          'serial=ca.db/serial' 'default_md=sha256' 'policy=p' 'unique_subject=no' '[p]' 'commonName=supplied' >ca.cnf
      openssl req -new $key -keyout expired.key -out expired.csr -subj /CN=localhost &&
          openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr \
              -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z -extfile server.ext
    ) >"$d/openssl.log" 2>&1 || { echo "tls_certs: openssl failed:" >&2; tail -n 5 "$d/openssl.log" >&2; return 1; }
}
