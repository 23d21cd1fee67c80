#!/bin/bash
# nginx + lua-nginx-module (LuaJIT) running examples/openresty on a free
# loopback port, for spec/openresty_spec.lua and bench/openresty.sh.
#
#   openresty.sh start DIR   installs the rock for LuaJIT into DIR/tree the way
#                            README tells OpenResty users (spec/support/rock.sh:
#                            luarocks --lua-version=5.1 make ... LUA_INCDIR=<LuaJIT
#                            headers>), lays out DIR (conf/ logs/ tmp/ app/), starts nginx
#                            (master + 2 workers) and waits until both workers
#                            answer; prints on stdout only:
#                              export CACHE_NGX_PORT=P CACHE_NGX_PID=PID
#   openresty.sh stop DIR    stops that nginx by PID (QUIT, then TERM, then
#                            KILL), workers included.
#
# nginx loads cache.lua and cache/core.so from the tree only (nginx.conf puts
# it first on lua_package_path and alone on lua_package_cpath); app.lua comes
# from DIR/app. CACHE_NGX_TREE=path uses a tree installed beforehand the same way
# (spec/support/rocks.lua builds one per test run) instead of building.
# CACHE_NGX_OWNER=PID stops nginx by itself once process PID has exited.
# CACHE_NGX_CONF / CACHE_NGX_APP name another nginx.conf template and Lua app
# (spec/cosocket_spec.lua's); such an app finds spec/support/*.lua and
# spec/backends/*.lua under support/ and backends/ beside it.
# The Redis parts of the example use CACHE_TEST_REDIS_HOST/PORT from the
# environment when they are set. Recipe and gotchas: test-servers.md §8.
set -u
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NGX_MODULES=${NGX_MODULES:-/usr/lib/nginx/modules}

# SANITIZE=1 (make test SANITIZE=1): the module is built with ASan/UBSan and
# nginx gets the ASan runtime preloaded; nothing else here does (curl was
# seen deadlocking at start under the preloaded runtime).
SANITIZE=${SANITIZE:-0}
NGX_PRELOAD=${LD_PRELOAD:-}
if [ "$SANITIZE" = 1 ] && [ -z "$NGX_PRELOAD" ]; then
    NGX_PRELOAD=$(${CC:-cc} -print-file-name=libasan.so)
fi
unset LD_PRELOAD

pid_alive() { # alive and not a zombie
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# The workers of a master, so they can be stopped even if the master dies.
worker_pids() {
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '
}

TREE=${CACHE_NGX_TREE:-$DIR/tree}

install_rock() {
    [ -n "${CACHE_NGX_TREE:-}" ] && return 0 # installed beforehand
    SANITIZE="$SANITIZE" bash "$ROOT/spec/support/rock.sh" luajit "$TREE" >"$DIR/logs/build.log" 2>&1 || {
        echo "luarocks make for LuaJIT failed:" >&2; tail -n 20 "$DIR/logs/build.log" >&2; return 1; }
}

CONF_TEMPLATE=${CACHE_NGX_CONF:-$ROOT/examples/openresty/nginx.conf}
APP=${CACHE_NGX_APP:-$ROOT/examples/openresty/app.lua}

layout() {
    mkdir -p "$DIR"/{conf,logs,app,tmp,fscache}
    chmod 1777 "$DIR/fscache" # the example's FileSystemCache, written by the workers
    cp "$APP" "$DIR/app/"
    if [ -n "${CACHE_NGX_APP:-}" ]; then
        mkdir -p "$DIR/app/support" "$DIR/app/backends"
        cp "$ROOT"/spec/support/*.lua "$DIR/app/support/"
        cp "$ROOT"/spec/backends/*.lua "$DIR/app/backends/"
    fi
}

render() { # port
    sed -e "s|@PREFIX@|$DIR|g" -e "s|@PORT@|$1|g" -e "s|@TREE@|$TREE|g" \
        -e "s|@APP_DIR@|$DIR/app|g" "$CONF_TEMPLATE" >"$DIR/conf/nginx.conf"
}

# Starts nginx on port $1; returns 0 once it answers, 1 if the port was
# taken (the caller retries), 2 on any other failure.
try_start() {
    local port=$1 pid deadline
    render "$port"
    : >"$DIR/logs/error.log"
    rm -f "$DIR/logs/nginx.pid"
    # Workers run as nobody when started as root: everything they read must
    # be world-readable, the tree included (and the folders above it must let
    # them through: a mktemp -d folder, 0700, would not).
    chmod -R a+rX "$DIR" "$TREE"
    LD_PRELOAD="$NGX_PRELOAD" nginx -p "$DIR" -c "$DIR/conf/nginx.conf" \
        -e "$DIR/logs/error.log" >"$DIR/logs/stdout" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/master.pid"
    deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ]; do
        if ! pid_alive "$pid"; then
            wait "$pid" 2>/dev/null
            grep -q 'Address already in use' "$DIR/logs/error.log" "$DIR/logs/stdout" && return 1
            return 2
        fi
        if grep -q 'init_worker_by_lua error' "$DIR/logs/error.log"; then
            stop_nginx
            return 2
        fi
        # ready when the server answers and both workers ran init_worker
        if timeout -k 1 3 curl -s --max-time 1 "http://127.0.0.1:$port/info" 2>/dev/null |
            grep -q 'inits=2;'; then
            sleep 0.1 # let a failing init_worker of the other worker show up
            if grep -q 'init_worker_by_lua error' "$DIR/logs/error.log"; then
                stop_nginx
                return 2
            fi
            echo "$port" >"$DIR/port"
            return 0
        fi
        sleep 0.05
    done
    stop_nginx
    return 2
}

start() {
    command -v nginx >/dev/null || { echo "nginx is not installed" >&2; exit 1; }
    [ -e "$NGX_MODULES/ngx_http_lua_module.so" ] || { echo "libnginx-mod-http-lua is not installed" >&2; exit 1; }
    layout
    install_rock || exit 1
    local tries=0 port rc
    while :; do
        port=$("$ROOT/spec/support/freeport.sh")
        try_start "$port"; rc=$?
        [ $rc = 0 ] && break
        tries=$((tries + 1))
        if [ $rc = 2 ] || [ $tries -ge 5 ]; then
            echo "nginx did not start:" >&2
            tail -n 20 "$DIR/logs/error.log" "$DIR/logs/stdout" >&2
            stop_nginx; exit 1
        fi
    done
    watch_owner
    echo "export CACHE_NGX_PORT=$port CACHE_NGX_PID=$(cat "$DIR/master.pid")"
}

# With CACHE_NGX_OWNER=PID (the spec's or bench's process), a watcher stops
# nginx when that process is gone, so an interrupted run leaves nothing
# behind; `stop` ends the watcher.
watch_owner() {
    local owner=${CACHE_NGX_OWNER:-}
    [ -n "$owner" ] || return 0
    (
        trap 'exit 0' TERM
        while pid_alive "$owner"; do sleep 1; done
        stop_nginx
    ) </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/watch.pid"
}

stop_watcher() {
    local w
    w=$(cat "$DIR/watch.pid" 2>/dev/null) || return 0
    [ -n "$w" ] && pid_alive "$w" && kill -TERM "$w" 2>/dev/null
    rm -f "$DIR/watch.pid"
}

stop_nginx() {
    local master workers p i
    master=$(cat "$DIR/master.pid" 2>/dev/null || cat "$DIR/logs/nginx.pid" 2>/dev/null) || return 0
    [ -n "$master" ] || return 0
    workers=$(worker_pids "$master")
    for sig in QUIT TERM KILL; do
        pid_alive "$master" || break
        kill -"$sig" "$master" 2>/dev/null
        for i in $(seq 1 60); do pid_alive "$master" || break; sleep 0.05; done
    done
    # A master killed hard leaves its workers behind: stop them by PID too.
    for p in $workers; do
        pid_alive "$p" && grep -q nginx "/proc/$p/cmdline" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    done
    wait "$master" 2>/dev/null
    rm -f "$DIR/master.pid"
    return 0
}

case "$cmd" in
start) start ;;
stop) stop_watcher; stop_nginx ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
