#!/usr/bin/env bash
# The two-host overlay demo: the seeds' scenario (containers on two hosts joined by VXLAN) with vxswitch in place
# of Open vSwitch, entirely inside network namespaces this script creates and removes.
#
#   tools/demo.sh              install what is needed, build (release), run the demo, clean up
#   tools/demo.sh --encap gre  the same over GRE (key = VNI)
#   tools/demo.sh --io epoll   with the epoll engine instead of io_uring
#
#   underlay vx-RUN-ul: bridge br0, 192.0.2.0/24
#     host vx-RUN-h1 (192.0.2.11): vxswitchd; containers vx-RUN-h1-c1 (10.0.0.11), vx-RUN-h1-c2 (10.0.0.12)
#     host vx-RUN-h2 (192.0.2.12): vxswitchd; containers vx-RUN-h2-c1 (10.0.0.21), vx-RUN-h2-c2 (10.0.0.22)
#   every container interface is a TAP port of its host's vxswitchd in VNI 42, moved into the container.
#
# Every address is inside these namespaces; everything is removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

encap=vxlan
io=uring
while [[ $# -gt 0 ]]; do
    case "$1" in
        --encap) encap=${2:?--encap needs vxlan or gre}; shift 2 ;;
        --io) io=${2:?--io needs uring or epoll}; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done
[[ $encap == vxlan || $encap == gre ]] || { echo "demo.sh: --encap must be vxlan or gre" >&2; exit 64; }
[[ $io == uring || $io == epoll ]] || { echo "demo.sh: --io must be uring or epoll" >&2; exit 64; }
[[ $(id -u) -eq 0 ]] || { echo "demo.sh: needs root (network namespaces, TAP devices)" >&2; exit 1; }

tools/install-deps.sh
echo "== building (release)"
swift build -c release --product vxswitchd
swift build -c release --product vxctl
bin=$(swift build -c release --show-bin-path)

run=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
prefix="vx-$run"
work=$(mktemp -d -t "vx-demo-$run-XXXX")
pids=()

cleanup() {
    trap - EXIT INT TERM
    echo "== cleaning up"
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do ip netns del "$ns"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
vxctl() { local host=$1; shift; "$bin/vxctl" --control "$work/h$host.sock" "$@"; }

say "== underlay: $prefix-ul (bridge br0, 192.0.2.0/24)"
ip netns add "$prefix-ul"
ip -n "$prefix-ul" link set lo up
ip -n "$prefix-ul" link add br0 type bridge
ip -n "$prefix-ul" link set br0 up

for h in 1 2; do
    host="$prefix-h$h"
    ip netns add "$host"
    ip -n "$host" link set lo up
    ip link add "ul$h" netns "$prefix-ul" type veth peer name eth0 netns "$host"
    ip -n "$prefix-ul" link set "ul$h" master br0 up
    ip -n "$host" addr add "192.0.2.1$h/24" dev eth0
    ip -n "$host" link set eth0 up
    say "== host $host: vxswitchd --local 192.0.2.1$h --io $io"
    ip netns exec "$host" "$bin/vxswitchd" --local "192.0.2.1$h" --control "$work/h$h.sock" --io "$io" \
        --state "$work/h$h.state" \
        2>"$work/h$h.log" &
    pids+=($!)
done
for h in 1 2; do
    for _ in $(seq 100); do [[ -S $work/h$h.sock ]] && break; sleep 0.05; done
    [[ -S $work/h$h.sock ]] || { echo "vxswitchd on host $h did not start:"; cat "$work/h$h.log"; exit 1; }
done

for h in 1 2; do
    other=$((3 - h))
    for c in 1 2; do
        container="$prefix-h$h-c$c"
        ip netns add "$container"
        ip -n "$container" link set lo up
        say "== host $h: vxctl add-port tap$c --vni 42   (container $container, 10.0.0.$h$c)"
        vxctl "$h" add-port "tap$c" --vni 42
        ip -n "$prefix-h$h" link set "tap$c" netns "$container"
        ip -n "$container" link set "tap$c" name eth0
        ip -n "$container" addr add "10.0.0.$h$c/24" dev eth0
        ip -n "$container" link set eth0 up
    done
    say "== host $h: vxctl add-peer 192.0.2.1$other --vni 42 --encap $encap"
    vxctl "$h" add-peer "192.0.2.1$other" --vni 42 --encap "$encap"
done

say "== vxctl show (host 1)"
vxctl 1 show

say "== ping across hosts: 10.0.0.11 (host 1) -> 10.0.0.21 and 10.0.0.22 (host 2)"
ip netns exec "$prefix-h1-c1" ping -c 3 -i 0.2 -W 2 10.0.0.21
ip netns exec "$prefix-h1-c1" ping -c 3 -i 0.2 -W 2 10.0.0.22
say "== ping within host 2: 10.0.0.21 -> 10.0.0.22"
ip netns exec "$prefix-h2-c1" ping -c 2 -i 0.2 -W 2 10.0.0.22

say "== vxctl fdb (host 1): MACs learnt behind local ports and behind the peer"
vxctl 1 fdb

say "== iperf3 TCP, 5 s: 10.0.0.11 (host 1) -> 10.0.0.21 (host 2)"
ip netns exec "$prefix-h2-c1" iperf3 -s -1 -B 10.0.0.21 >"$work/iperf-server.log" 2>&1 &
pids+=($!)
sleep 0.5
ip netns exec "$prefix-h1-c1" timeout 30 iperf3 -c 10.0.0.21 -t 5 -f m | tail -n 4

say "== vxctl stats (host 1)"
vxctl 1 stats

say "demo finished: two hosts, four containers, one $encap overlay; removing everything"
