# spec/support/sanitize.sh - sourced by spec/run.sh when SANITIZE=1
# (`make test SANITIZE=1`: the module and the engine library are built with
# gcc's -fsanitize=address,undefined into build/san).
#
# An ASan-built module cannot be loaded into a plain lua5.4: the ASan runtime
# must be the first library of the process, hence
#     LD_PRELOAD=$(gcc -print-file-name=libasan.so) lua5.4 ...
# (libasan.so.8; libubsan comes along as a dependency of the module). This
# file puts a `lua5.4` wrapper first in PATH that does so, so busted, its
# re-exec and every lua5.4 child a spec spawns run with the runtime.
#
# Choices:
#   detect_leaks=0 in Lua processes: Lua dlcloses the module before exit, so
#     LeakSanitizer's stacks would be unsymbolized, and busted's own C modules
#     are not ours. Leaks of cache code are checked by valgrind instead
#     (`make leakcheck`), and the C tests run with LeakSanitizer on.
#   halt_on_error=1 for UBSan (C tests and Lua): a report is a failure.
#   log_path: Lua processes write reports to files under $CACHE_TEST_STATE/san;
#     the outermost wrapper (busted) prints them after the run and counts one
#     failure per report in the suite total, so a report inside a child
#     process or a crash that kills busted cannot go unnoticed.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
SAN_RT=$(${CC:-cc} -print-file-name=libasan.so)
SAN_BIN="$CACHE_TEST_STATE/san-lua/bin"
mkdir -p "$SAN_BIN" "$CACHE_TEST_STATE/san"
# LuaRocks takes the directory above the interpreter's as the Lua prefix and
# looks for the headers and library under it (spec/luarocks_spec.lua builds
# a rock): point include/ and lib/ at the real prefix's.
SAN_PREFIX=$(dirname "$(dirname "$(command -v lua5.4 || echo /usr/bin/lua5.4)")")
ln -sfn "$SAN_PREFIX/include" "$CACHE_TEST_STATE/san-lua/include"
ln -sfn "$SAN_PREFIX/lib" "$CACHE_TEST_STATE/san-lua/lib"
# unpreload.so, preloaded after the runtime, takes LD_PRELOAD out of the Lua
# process's environment once the loader has used it: what Lua starts (sh,
# curl, nginx, redis-server...) runs without an ASan runtime it was not built
# for (a preloaded libasan was seen to deadlock curl), and a lua5.4 child
# gets it again from this wrapper.
printf '%s\n' '#include <stdlib.h>' \
    '__attribute__((constructor)) static void unpreload(void) { unsetenv("LD_PRELOAD"); }' \
    >"$SAN_BIN/unpreload.c"
${CC:-cc} -shared -fPIC -o "$SAN_BIN/unpreload.so" "$SAN_BIN/unpreload.c"
for lua in lua5.4 lua5.3 lua5.1 luajit; do
    real=$(command -v "$lua") || continue
    cat >"$SAN_BIN/$lua" <<EOF
#!/bin/bash
# ASan wrapper written by spec/support/sanitize.sh
export LD_PRELOAD="$SAN_RT $SAN_BIN/unpreload.so\${LD_PRELOAD:+ \$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$CACHE_TEST_STATE/san/report"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$CACHE_TEST_STATE/san/report"
if [ -n "\${CACHE_SAN_INNER:-}" ]; then
    exec "$real" "\$@"
fi
export CACHE_SAN_INNER=1
"$real" "\$@"
rc=\$?
n=0
for f in "$CACHE_TEST_STATE"/san/report.*; do
    [ -e "\$f" ] || continue
    n=\$((n + 1))
    echo "== sanitizer report \$f:" >&2
    cat "\$f" >&2
    mv "\$f" "\$f.seen"
done
if [ "\$n" -gt 0 ]; then
    echo "\$n sanitizer report(s) (counted as failures)" >&2
    [ -n "\${CACHE_TEST_COUNTS:-}" ] && echo "0 \$n 0" >>"\$CACHE_TEST_COUNTS"
fi
exit \$rc
EOF
    chmod 755 "$SAN_BIN/$lua"
done
export PATH="$SAN_BIN:$PATH"
echo "== sanitizers: lua runs with LD_PRELOAD=$SAN_RT"
