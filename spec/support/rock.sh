#!/bin/bash
# Builds the rock from this checkout for one Lua with `luarocks make`, the
# command README's install sections give, into a tree:
#
#   rock.sh LUA TREE    LUA: lua5.1, lua5.3, lua5.4, or luajit (LuaJIT 2.1 through
#                       --lua-version=5.1 and LUA_INCDIR, as for OpenResty)
#
# The build runs in a copy of the checkout's sources, build/rock-src (or
# build/rock-src-san with SANITIZE=1, which the Makefile reads from the
# environment), one build at a time under a lock: concurrent runs (a spec and
# bench/openresty.sh) never share a half-written build/rock, and the engine
# objects, which do not depend on the Lua, are reused by the next Lua's build
# as in a user's checkout. Prints the luarocks output; the exit status is
# luarocks'.
set -u
LUA_NAME=${1:-}
TREE=${2:-}
[ -n "$LUA_NAME" ] && [ -n "$TREE" ] || { echo "usage: $0 lua5.1|lua5.3|lua5.4|luajit TREE" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

extra=()
case "$LUA_NAME" in
lua5.1 | lua5.3 | lua5.4) version=${LUA_NAME#lua} ;;
luajit)
    version=5.1
    incdir=$(pkg-config --cflags-only-I luajit 2>/dev/null | sed 's/^ *-I//; s/ .*//')
    [ -n "$incdir" ] || { echo "rock.sh: no LuaJIT headers (libluajit2-5.1-dev)" >&2; exit 1; }
    extra=("LUA_INCDIR=$incdir")
    ;;
*) echo "rock.sh: unknown Lua '$LUA_NAME'" >&2; exit 2 ;;
esac

SRC="$ROOT/build/rock-src$([ "${SANITIZE:-0}" = 1 ] && echo -san)"
mkdir -p "$SRC"
(
    flock -w 600 9 || { echo "rock.sh: $SRC is locked" >&2; exit 1; }
    # The sources as they are now: the files git tracks or would track (so a
    # new file counts before it is committed), or the whole folder outside git.
    # tar keeps their times, so make rebuilds only what changed.
    find "$SRC" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$ROOT" && git ls-files -z -co --exclude-standard |
            tar --null -T - --ignore-failed-read -cf - 2>/dev/null)
    else
        (cd "$ROOT" && tar --exclude=./build --exclude=./cache -cf - .)
    fi | tar -xf - -C "$SRC" || exit 1
    cd "$SRC" && luarocks --lua-version="$version" make rockspec/cache-scm-1.rockspec \
        --tree "$TREE" "${extra[@]}"
) 9>"$SRC.lock"
