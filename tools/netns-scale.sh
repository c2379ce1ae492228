#!/usr/bin/env bash
# Many ports on one switch: how long `vxctl add-port` and `del-port` take, what the ports cost in kernel memory
# (MemAvailable before and after) and in the daemon's RSS and descriptors, and what the switch spends while they
# sit idle. Everything lives in namespaces this script creates and removes on every exit path (vx-<run id>-h1 for
# the switch, vx-<run id>-x for the far end of its underlay veth); the daemon is stopped by its PID.
#
#   swift build -c release && BIN=.build/release PORTS=600 tools/netns-scale.sh
#
# Environment: BIN (directory with vxswitchd and vxctl, required), PORTS (1-4000, default 300), ARGS (extra
# vxswitchd arguments), STATE=1 (keep a state file, in the run's temporary directory, instead of --state none:
# every add-port and del-port then writes and fsyncs it), IPV6=1 (leave IPv6 on in the switch's namespace: each
# new port then sends router solicitations and MLD reports that the switch floods to every port of its VNI, and
# with hundreds of TAPs in one namespace each flooded copy costs a slow IPv6 route lookup there; real containers
# each have their own namespace). MemAvailable moves with everything else on the machine: run it more than once.
set -u
BIN=${BIN:?set BIN to the directory holding vxswitchd and vxctl}
PORTS=${PORTS:-300}
[[ "$PORTS" =~ ^[0-9]+$ ]] && [ "$PORTS" -ge 1 ] && [ "$PORTS" -le 4000 ] || { echo "PORTS must be 1-4000" >&2; exit 64; }
ID=$(printf '%x' $((RANDOM * 32768 + RANDOM)))
NS=vx-$ID-h1; FAR=vx-$ID-x
TMP=$(mktemp -d /tmp/vx-$ID.XXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; sleep 0.5; kill -9 "$PID" 2>/dev/null; fi
    ip netns del "$NS" 2>/dev/null; ip netns del "$FAR" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
milliseconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
per_port_ms() { awk -v a="$1" -v b="$2" -v n="$PORTS" 'BEGIN { printf "%.1f", (b - a) * 1000 / n }'; }
available_kib() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
ctl() { "$BIN/vxctl" --control "$TMP/s.sock" "$@"; }

ip netns add "$NS"; ip netns add "$FAR"
ip -n "$NS" link set lo up
[ -n "${IPV6:-}" ] || ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip link add eth0 netns "$NS" type veth peer name p0 netns "$FAR"
ip -n "$NS" addr add 192.0.2.11/24 dev eth0
ip -n "$NS" link set eth0 up
ip netns exec "$NS" "$BIN/vxswitchd" --local 192.0.2.11 --control "$TMP/s.sock" \
    --state "$([ -n "${STATE:-}" ] && echo "$TMP/state.json" || echo none)" ${ARGS:-} 2>"$TMP/log" &
PID=$!
for _ in $(seq 100); do [ -S "$TMP/s.sock" ] && break; sleep 0.1; done
[ -S "$TMP/s.sock" ] || { echo "vxswitchd did not start:"; cat "$TMP/log"; exit 1; }

memory_before=$(available_kib)
start=$(now)
for i in $(seq "$PORTS"); do
    ctl add-port "t$i" --vni $((i % 10 + 1)) >/dev/null || { echo "add-port t$i failed"; exit 1; }
done
end=$(now)
memory_after=$(available_kib)
echo "add-port: $PORTS ports in $(seconds "$start" "$end") s, $(per_port_ms "$start" "$end") ms each"
echo "kernel memory: MemAvailable fell by $(( (memory_before - memory_after) / 1024 )) MiB," \
    "$(( (memory_before - memory_after) / PORTS )) KiB per port"
echo "daemon: $(grep VmRSS "/proc/$PID/status" | tr -s ' \t' ' '), $(ls "/proc/$PID/fd" | wc -l) descriptors"
echo "port t1: $(tc -n "$NS" qdisc show dev t1 | head -1)"
ticks=$(cpu_ticks); sleep 3
echo "idle: $(( $(cpu_ticks) - ticks )) CPU ticks (1/100 s) in 3 s"
start=$(now); ctl show >/dev/null; end=$(now); echo "vxctl show: $(milliseconds "$start" "$end") ms"
start=$(now); ctl stats >/dev/null; end=$(now); echo "vxctl stats: $(milliseconds "$start" "$end") ms"
start=$(now)
for i in $(seq "$PORTS"); do ctl del-port "t$i" >/dev/null || { echo "del-port t$i failed"; exit 1; }; done
end=$(now)
echo "del-port: $(per_port_ms "$start" "$end") ms each"
grep -E "warning|error" "$TMP/log" | head -5
