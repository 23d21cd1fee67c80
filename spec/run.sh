#!/bin/bash
# The test suite: the servers the specs need (each spec/servers/*.sh started
# on free loopback ports in a temporary folder), the C unit tests, every
# busted spec, then the servers stopped by PID. The last line is
# "N passed, N failed, N skipped"; the exit status is non-zero on a failure.
#
# Arguments narrow the run, for working on one area: `spec/run.sh
# spec/memcached_spec.lua spec/c/test_memcached.c` starts every server but
# runs only the C tests and busted specs named (C tests only if some are named).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OBJDIR=${OBJDIR:-build/obj}
MODDIR=${MODDIR:-.}
STATE=$(mktemp -d /tmp/cache-test.XXXXXX)
chmod 755 "$STATE"
COUNTS="$STATE/counts"
: >"$COUNTS"
export CACHE_TEST_STATE="$STATE" CACHE_TEST_COUNTS="$COUNTS" CACHE_ROOT="$ROOT"
LUA_BIN=${LUA_BIN:-lua5.4}
# SANITIZE=1: lua5.4 needs the ASan runtime preloaded (see the file).
[ "${SANITIZE:-0}" = 1 ] && . "$ROOT/spec/support/sanitize.sh"

stop_servers() {
    for s in spec/servers/*.sh; do
        [ -e "$s" ] || continue
        name=$(basename "$s" .sh)
        [ -d "$STATE/servers/$name" ] && bash "$s" stop "$STATE/servers/$name" >/dev/null 2>&1
    done
}
cleanup() {
    stop_servers
    [ -n "${KEEP_TEST_STATE:-}" ] || rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Servers, started side by side. Each script prints `export VAR=...`
#    lines for the specs; one that cannot start leaves its specs skipped.
mkdir -p "$STATE/servers"
pids=()
for s in spec/servers/*.sh; do
    [ -e "$s" ] || continue
    name=$(basename "$s" .sh)
    mkdir -p "$STATE/servers/$name"
    ( bash "$s" start "$STATE/servers/$name" >"$STATE/servers/$name.env" \
        2>"$STATE/servers/$name.err" || {
          echo "server $name did not start (its specs are skipped):" >&2
          tail -n 5 "$STATE/servers/$name.err" >&2; : >"$STATE/servers/$name.env"; } ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for s in spec/servers/*.sh; do
    [ -e "$s" ] || continue
    name=$(basename "$s" .sh)
    # shellcheck disable=SC1090
    . "$STATE/servers/$name.env"
done

# 2. C unit tests of the engine (no Lua involved; some use the servers).
mkdir -p "$STATE/c"
ONLY=("$@")
c_tests=(spec/c/test_*.c); lua_specs=("$ROOT/spec")
if [ ${#ONLY[@]} -gt 0 ]; then
    c_tests=(); lua_specs=()
    for a in "${ONLY[@]}"; do
        case "$a" in
            *.c) c_tests+=("$a") ;;
            *) lua_specs+=("$a") ;;
        esac
    done
fi
# The engine's libraries, as the Makefile names them (DEPS_PC), and
# msgpack-c, which the C tests compare the engine's MessagePack bytes with.
DEPS_PC="$(sed -n 's/^DEPS_PC *:= *//p' Makefile) msgpack"
for t in "${c_tests[@]}"; do
    [ -e "$t" ] || continue
    name=$(basename "$t" .c)
    if ! ${CC:-cc} -std=c11 -g -O1 -Wall -Wextra -Werror -Iengine -Ispec/c \
        $( [ "${SANITIZE:-0}" = 1 ] && echo -fsanitize=address,undefined ) \
        $(pkg-config --cflags $DEPS_PC) \
        "$t" "$OBJDIR/libcacheengine.a" \
        $(pkg-config --libs $DEPS_PC) -lpthread -lm \
        -o "$STATE/c/$name" 2>"$STATE/c/$name.build"; then
        echo "C test $name does not build:"; cat "$STATE/c/$name.build"
        echo "0 1 0" >>"$COUNTS"; continue
    fi
    echo "== $name"
    "$STATE/c/$name" | tee "$STATE/c/$name.out" | grep -v '^ok ' || true
    last=$(tail -n 1 "$STATE/c/$name.out")
    if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
        echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}" >>"$COUNTS"
    else
        echo "C test $name ended abnormally"; echo "0 1 0" >>"$COUNTS"
    fi
done

# 3. The Lua specs.
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/spec/?.lua;;"
export LUA_CPATH="$ROOT/$MODDIR/?.so;;"
[ ${#lua_specs[@]} -gt 0 ] && echo "== busted ($LUA_BIN)"
[ ${#lua_specs[@]} -gt 0 ] && $LUA_BIN /usr/bin/busted --lua="$LUA_BIN" -o "$ROOT/spec/support/output.lua" \
    --pattern=_spec "${lua_specs[@]}" || true

# 4. Lint: luacheck over the Lua sources with the committed .luacheckrc
# (one test; a full run only, not a narrowed one).
if [ ${#ONLY[@]} -eq 0 ]; then
    echo "== luacheck"
    if luacheck -q --no-color . >"$STATE/luacheck.out" 2>&1; then
        echo "0 warnings"; echo "1 0 0" >>"$COUNTS"
    else
        cat "$STATE/luacheck.out"; echo "0 1 0" >>"$COUNTS"
    fi
fi

# 5. The total.
read -r passed failed skipped < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$COUNTS")
[ -s "$COUNTS" ] || failed=1
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
