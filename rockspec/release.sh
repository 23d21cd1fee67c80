#!/bin/sh
# rockspec/release.sh VERSION: prints the release rockspec for VERSION, made
# from cache-scm-1.rockspec (the one place its build rules are written): the
# same text with version "VERSION-1" and the release tarball as the source.
# `make rockspec` writes it to rockspec/cache-VERSION-1.rockspec; `make rock`
# checks the committed one is what this prints.
set -eu
v=${1:?usage: $0 VERSION}
dir=$(dirname "$0")
awk -v v="$v" '
/^version = "scm-1"$/ { print "version = \"" v "-1\""; next }
/^source = \{$/ {
    print "source = {"
    print "  -- The tarball `make rock` makes of the files git tracks; luarocks pack"
    print "  -- puts it inside cache-" v "-1.src.rock, so installing that rock needs"
    print "  -- no network. (make rock hands luarocks pack an absolute file:// URL to"
    print "  -- it; a rock only ever looks for the file by this name.)"
    print "  url = \"cache-" v ".tar.gz\","
    print "  dir = \"cache-" v "\","
    print "}"
    skip = 1; next
}
skip && /^}$/ { skip = 0; next }
skip { next }
{ print }
' "$dir/cache-scm-1.rockspec"
