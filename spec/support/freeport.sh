#!/bin/bash
# freeport [N] [--cluster]: prints N free loopback TCP ports (default 1),
# picked at random. Other programs on this machine may hold common ports, so
# never assume a fixed one.
#
# Every port is below the kernel's ephemeral range (ip_local_port_range,
# 32768 by default): a port in that range may be the local end of some
# outgoing connection, which a connect test cannot see and a bind then
# refuses. With --cluster each P is in 10000-16383 so that Redis Cluster's
# bus port P+10000 (20000-26383) is below it too; other ports come from
# 16384-19999 and 26400 up to the ephemeral floor, apart from both.
n=1; cluster=0
for a in "$@"; do case "$a" in --cluster) cluster=1 ;; *) n=$a ;; esac; done
floor=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
[[ "$floor" =~ ^[0-9]+$ ]] && [ "$floor" -gt 27000 ] || floor=32768
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick() {
    if [ $cluster = 1 ]; then
        echo $((10000 + (RANDOM % 6384)))
    else
        local low=3616 high=$((floor - 26400))
        local r=$(( (RANDOM * 32768 + RANDOM) % (low + high) ))
        if [ $r -lt $low ]; then echo $((16384 + r)); else echo $((26400 + r - low)); fi
    fi
}
taken=" "
out=()
while [ ${#out[@]} -lt "$n" ]; do
    p=$(pick)
    case "$taken" in *" $p "*) continue ;; esac
    in_use "$p" && continue
    [ $cluster = 1 ] && in_use $((p + 10000)) && continue
    taken="$taken$p "; out+=("$p")
done
echo "${out[@]}"
