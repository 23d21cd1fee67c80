#!/bin/bash
# Standalone Redis for the RedisCache specs (recipe: test-servers.md §3).
#   redis.sh start DIR   starts two servers on free loopback ports:
#     main: no password, also on the unix socket DIR/redis.sock
#     auth: requirepass (default user) and an ACL user, for AUTH specs
#   and prints on stdout only:
#     export CACHE_TEST_REDIS_HOST=127.0.0.1
#     export CACHE_TEST_REDIS_PORT=P
#     export CACHE_TEST_REDIS_SOCKET=DIR/redis.sock
#     export CACHE_TEST_REDIS_AUTH_PORT=P2
#     export CACHE_TEST_REDIS_PASSWORD=...      (the default user's)
#     export CACHE_TEST_REDIS_ACL_USER=... CACHE_TEST_REDIS_ACL_PASSWORD=...
#   redis.sh stop DIR    stops them by PID (TERM, then KILL after 5 s)
set -u
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
. "$(dirname "$0")/../support/redis_lib.sh"

start() {
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    local sock="$DIR/redis.sock" main auth
    redis_start_free "$DIR" main main --unixsocket "$sock" --unixsocketperm 700 \
        || { stop_pids "$DIR"; exit 1; }
    # ACL users can only be given in a config file.
    printf '%s\n' 'requirepass "pass word!"' 'user alice on >wonder#land ~* &* +@all' \
        >"$DIR/auth.conf"
    REDIS_CONF="$DIR/auth.conf" redis_start_free "$DIR" auth auth \
        || { stop_pids "$DIR"; exit 1; }
    echo "export CACHE_TEST_REDIS_HOST=127.0.0.1"
    echo "export CACHE_TEST_REDIS_PORT=$main"
    echo "export CACHE_TEST_REDIS_SOCKET=$sock"
    echo "export CACHE_TEST_REDIS_AUTH_PORT=$auth"
    echo "export CACHE_TEST_REDIS_PASSWORD='pass word!'"
    echo "export CACHE_TEST_REDIS_ACL_USER=alice"
    echo "export CACHE_TEST_REDIS_ACL_PASSWORD='wonder#land'"
}

case "$cmd" in
start) start ;;
stop) stop_pids "$DIR"; rm -f "$DIR/redis.sock" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
