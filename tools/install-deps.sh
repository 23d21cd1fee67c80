#!/bin/sh
# Installs the Debian packages that building, the demo and the test suite
# need, when any is missing. Idempotent; silent when everything is present.
# Usage: tools/install-deps.sh [build|test|all]   (default: all)
set -eu

BUILD="gcc make pkg-config lua5.4 liblua5.4-dev libhiredis-dev \
libmemcached-dev libsasl2-dev libssl-dev"
TEST="libmsgpack-dev lua-busted lua-check luarocks lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev redis-server redis-tools memcached libmemcached-tools \
sasl2-bin libsasl2-modules uwsgi-core nginx libnginx-mod-http-lua luajit2 libluajit2-5.1-dev \
curl wrk valgrind clang llvm procps psmisc"

case "${1:-all}" in
build) WANT="$BUILD" ;;
test | all) WANT="$BUILD $TEST" ;;
*) echo "usage: $0 [build|test|all]" >&2; exit 2 ;;
esac

missing=""
for p in $WANT; do
    s=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$s" in ii*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Services must not start on install: the suite runs its own servers.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.cache-tmp
chmod +x /usr/sbin/policy-rc.d.cache-tmp
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ $had_policy = 0 ] && mv /usr/sbin/policy-rc.d.cache-tmp /usr/sbin/policy-rc.d \
    || rm -f /usr/sbin/policy-rc.d.cache-tmp
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
[ $had_policy = 0 ] && rm -f /usr/sbin/policy-rc.d
exit 0
