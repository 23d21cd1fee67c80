#!/bin/bash
# freeport [N] [--cluster]: prints N free loopback TCP ports (default 1),
# picked at random; with --cluster each P is in 20000-29999 and P+10000 is
# free too (Redis Cluster's bus port). Other programs on this machine may hold
# common ports, so never assume a fixed one.
n=1; cluster=0
for a in "$@"; do case "$a" in --cluster) cluster=1 ;; *) n=$a ;; esac; done
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
out=()
while [ ${#out[@]} -lt "$n" ]; do
    if [ $cluster = 1 ]; then p=$((20000 + RANDOM % 10000)); else p=$((30000 + RANDOM % 30000)); fi
    case "$taken" in *" $p "*) continue ;; esac
    in_use "$p" && continue
    [ $cluster = 1 ] && in_use $((p + 10000)) && continue
    taken="$taken$p "; out+=("$p")
done
echo "${out[@]}"
