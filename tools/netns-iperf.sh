#!/usr/bin/env bash
# Throughput between two containers on two vxswitchd hosts, all in network namespaces this script creates and
# removes on every exit path (vx-<run id>-ul, -h1, -h2, -c1, -c2):
#
#   c1 (10.0.0.1) ─ tap1 ─ vxswitchd h1 (192.0.2.11) ─┐
#                                                    ul: bridge ─ VXLAN/GRE underlay, MTU 1500
#   c2 (10.0.0.2) ─ tap2 ─ vxswitchd h2 (192.0.2.12) ─┘
#
# Prints the offloads the containers see, ping, `iperf3 -t SECS` both ways, a 50 MB SHA-256-checked transfer, and per
# daemon the CPU seconds used (user and system: user time is what the switch's own code costs) and the peak resident
# size (VmHWM). Used for the figures in docs/offload.md:
#
#   swift build -c release && BIN=.build/release tools/netns-iperf.sh
#
# Environment: BIN (directory with vxswitchd and vxctl, required), IO (uring | epoll, default uring), ENCAP (vxlan |
# gre), SECS (default 5), STREAMS (iperf3 -P, default 1; with more, the totals are printed), V6=1 (also an IPv6
# run), CSTATS=1 (the containers' interface counters after each run: their RX packets are the writes the switch
# made, so coalescing shows as bytes per packet), ARGS (extra vxswitchd
# arguments, e.g. ARGS="--workers 1"), CC (the TCP congestion control, on the containers' route and iperf3 -C,
# default cubic as in tools/bench: BBR, the default on some VMs, changes the figures by up to 2x), SYSCALLS=1
# (instead of the iperf3 runs, the system calls and context switches of both daemons per frame they received, `perf
# stat` over 3 s in the middle of one TCP stream and of pktgen's 64-byte frames; needs perf and gcc, which
# tools/bench.d/install-deps.sh installs), UNDERLAY=tap (each daemon owns its VTEP address on an underlay TAP,
# `--underlay-tap vxul0`, bridged with the host's uplink in a bridge `brul`; the kernel has no address there:
# docs/offload.md, "The TAP underlay"; VXLAN only), UNDERLAY=ipv6 (the hosts' underlay is 2001:db8::11 and ::12,
# the documentation prefix, and the daemons run VXLAN over UDP/IPv6, or with ENCAP=gre GRE over IPv6: --local
# 2001:db8::1x; ports get the IPv6 default MTU of 1430).
set -u
BIN=${BIN:?set BIN to the directory holding vxswitchd and vxctl}
IO=${IO:-uring}; ENCAP=${ENCAP:-vxlan}; SECS=${SECS:-5}; CC=${CC:-cubic}; UNDERLAY=${UNDERLAY:-socket}
STREAMS=${STREAMS:-1}
case $UNDERLAY in socket | tap | ipv6) ;; *) echo "UNDERLAY must be socket, tap or ipv6, not $UNDERLAY" >&2; exit 2 ;; esac
if [ "$UNDERLAY" = tap ] && [ "$ENCAP" != vxlan ]; then echo "UNDERLAY=tap carries VXLAN only" >&2; exit 2; fi
case $STREAMS in [1-9] | 1[0-6]) ;; *) echo "STREAMS must be 1-16, not $STREAMS" >&2; exit 2 ;; esac
ID=$(printf '%x' $((RANDOM * 32768 + RANDOM)))
UL=vx-$ID-ul; H1=vx-$ID-h1; H2=vx-$ID-h2; C1=vx-$ID-c1; C2=vx-$ID-c2
TMP=$(mktemp -d /tmp/vx-$ID.XXXX)
PIDS=()
cleanup() {
    # Only the daemons this script started, by PID; iperf3 servers exit with their namespace's last socket.
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for n in $UL $H1 $H2 $C1 $C2; do
        for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$n" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

for n in $UL $H1 $H2 $C1 $C2; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n $UL link add br0 type bridge
# Over IPv6, neighbour solicitations go to solicited-node groups: flood them rather than depend on MLD snooping.
[ "$UNDERLAY" = ipv6 ] && ip -n $UL link set br0 type bridge mcast_snooping 0
ip -n $UL link set br0 up
for i in 1 2; do
    H=vx-$ID-h$i
    ip link add ul$i netns $UL type veth peer name eth0 netns "$H"
    ip -n $UL link set ul$i master br0 up
    UNDERLAY_ARGS=()
    if [ "$UNDERLAY" = tap ]; then
        # The daemon owns 192.0.2.1x on its TAP; the kernel only bridges the TAP and the uplink.
        ip -n "$H" link add brul type bridge
        ip -n "$H" link set eth0 master brul up
        ip -n "$H" link set brul up
        UNDERLAY_ARGS=(--underlay-tap vxul0 --underlay-bridge brul)
    elif [ "$UNDERLAY" = ipv6 ]; then
        # nodad: usable at once, no duplicate address detection wait.
        ip -n "$H" addr add 2001:db8::1$i/64 dev eth0 nodad
        ip -n "$H" link set eth0 up
    else
        ip -n "$H" addr add 192.0.2.1$i/24 dev eth0
        ip -n "$H" link set eth0 up
    fi
    LOCAL=192.0.2.1$i; [ "$UNDERLAY" = ipv6 ] && LOCAL=2001:db8::1$i
    ip netns exec "$H" "$BIN/vxswitchd" --local "$LOCAL" --control "$TMP/h$i.sock" --io "$IO" --log-level info --state none \
        "${UNDERLAY_ARGS[@]}" ${ARGS:-} 2>"$TMP/h$i.log" &
    PIDS+=($!)
done
for i in 1 2; do for _ in $(seq 50); do [ -S "$TMP/h$i.sock" ] && break; sleep 0.1; done; done
for i in 1 2; do
    H=vx-$ID-h$i; C=vx-$ID-c$i; o=$((3 - i))
    "$BIN/vxctl" --control "$TMP/h$i.sock" add-port tap$i --vni 42 >/dev/null
    PEER=192.0.2.1$o; [ "$UNDERLAY" = ipv6 ] && PEER=2001:db8::1$o
    "$BIN/vxctl" --control "$TMP/h$i.sock" add-peer "$PEER" --vni 42 --encap "$ENCAP" >/dev/null
    ip -n "$H" link set tap$i netns "$C"
    ip -n "$C" link set tap$i name eth0
    ip -n "$C" addr add 10.0.0.$i/24 dev eth0
    ip -n "$C" link set eth0 up
    # Sockets start with the route's algorithm: iperf3 -C switches only after connecting, and a socket that began
    # on BBR (some VMs' default) stays paced by the kernel after the switch (tools/bench's docstring).
    ip -n "$C" route replace 10.0.0.0/24 dev eth0 congctl "$CC"
done

cstats() {
    [ -n "${CSTATS:-}" ] || return 0
    for C in $C1 $C2; do
        echo "   $C eth0 rx packets/bytes, tx packets/bytes: $(ip -n "$C" -s -j link show eth0 | python3 -c '
import json, sys
d = json.load(sys.stdin)[0]["stats64"]
print(d["rx"]["packets"], d["rx"]["bytes"], d["tx"]["packets"], d["tx"]["bytes"])')"
    done
}
iperf() {  # iperf CLIENT_NS SERVER_NS SERVER_ADDRESS [-6]
    ip netns exec "$2" iperf3 -s -1 -D >/dev/null 2>&1
    sleep 0.5
    # With several streams, only the [SUM] lines: the per-stream ones would bury them.
    timeout $((SECS + 15)) ip netns exec "$1" iperf3 ${4:-} -c "$3" -t "$SECS" -f g -C "$CC" -P "$STREAMS" \
        | grep -E "sender|receiver" | { if [ "$STREAMS" -gt 1 ]; then grep SUM; else cat; fi; }
    cstats
}

# SYSCALLS=1: what both daemons' threads entered the kernel for, per frame they received (TAP frames and tunnel
# datagrams, from `vxctl stats`), over a bounded 3 s window of each load.
received() {
    local total=0 i
    for i in 1 2; do
        total=$((total + $("$BIN/vxctl" --control "$TMP/h$i.sock" stats --json | python3 -c '
import json, sys
reply = json.load(sys.stdin)
print(sum(row.get("rxFrames", 0) for kind in ("ports", "peers") for row in reply.get(kind, [])))')))
    done
    echo "$total"
}
syscalls_during() {  # LABEL
    local before after
    before=$(received)
    perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "${PIDS[0]},${PIDS[1]}" -- sleep 3 \
        2>"$TMP/perf.csv" >/dev/null
    after=$(received)
    python3 - "$1" $((after - before)) "$TMP/perf.csv" <<'PY'
import sys
label, frames, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
counts = {f[2]: int(f[0]) for f in (line.split(",") for line in open(path)) if len(f) > 2 and f[0].isdigit()}
calls, switches = counts.get("raw_syscalls:sys_enter", 0), counts.get("context-switches", 0)
per_frame = lambda count: f"{count / max(frames, 1):.3f} per frame"
print(f"{label}: {frames} frames received by the two daemons in 3 s; {calls} syscalls ({per_frame(calls)}),",
      f"{switches} context switches ({per_frame(switches)})")
PY
}
if [ -n "${SYSCALLS:-}" ]; then
    command -v perf >/dev/null && command -v gcc >/dev/null || { echo "SYSCALLS=1 needs perf and gcc" \
        "(tools/bench.d/install-deps.sh installs them)" >&2; exit 1; }
    gcc -O2 -o "$TMP/pktgen" "$(dirname "$0")/bench.d/pktgen.c"
    ip netns exec $C1 ping -c 3 -i 0.2 -W 1 10.0.0.2 >/dev/null
    ip netns exec $C2 iperf3 -s -1 -D >/dev/null 2>&1
    sleep 0.5
    timeout 20 ip netns exec $C1 iperf3 -c 10.0.0.2 -t 8 -f g -C "$CC" >"$TMP/iperf.txt" 2>&1 &
    load=$!  # waited for by PID: a bare `wait` would wait for the daemons too
    sleep 3; syscalls_during "one TCP stream ($IO)"; wait $load
    grep receiver "$TMP/iperf.txt"
    mac=$(ip -n $C2 -j link show eth0 | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["address"])')
    timeout 20 ip netns exec $C2 "$TMP/pktgen" recv --bind 10.0.0.2 --port 9000 --seconds 12 --idle 1 \
        >"$TMP/recv.txt" &
    counter=$!
    sleep 0.5
    timeout 20 ip netns exec $C1 "$TMP/pktgen" send --to 10.0.0.2 --port 9000 --size 18 --seconds 8 --packet eth0 \
        --dst-mac "$mac" >/dev/null &
    load=$!
    sleep 3; syscalls_during "64-byte frames ($IO)"; wait $load $counter
    echo "64-byte frames delivered: $(tail -1 "$TMP/recv.txt")"
    exit 0
fi

echo "== offloads on c1 eth0:"
ip netns exec $C1 ethtool -k eth0 | grep -E "^(tx-checksumming|tcp-segmentation-offload):"
echo "== ping"; ip netns exec $C1 ping -c 3 -i 0.2 -W 1 10.0.0.2 | tail -2
echo "== iperf3 c1 -> c2 (${SECS}s)"; iperf $C1 $C2 10.0.0.2
echo "== iperf3 c2 -> c1 (${SECS}s)"; iperf $C2 $C1 10.0.0.1
if [ -n "${V6:-}" ]; then
    ip -n $C1 addr add fd00::1/64 dev eth0 nodad
    ip -n $C2 addr add fd00::2/64 dev eth0 nodad
    sleep 0.5
    echo "== ping -6"; ip netns exec $C1 ping -6 -c 3 -i 0.2 -W 1 fd00::2 | tail -2
    echo "== iperf3 -6 c1 -> c2 (${SECS}s)"; iperf $C1 $C2 fd00::2 -6
fi

echo "== 50 MB transfer, SHA-256 checked"
head -c 50000000 /dev/urandom >"$TMP/blob"
timeout 30 ip netns exec $C2 python3 -c '
import hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.0.0.2", 9000)); s.listen(1)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())' >"$TMP/received" &
receiver=$!
sleep 0.5
timeout 30 ip netns exec $C1 python3 -c '
import socket, sys
s = socket.create_connection(("10.0.0.2", 9000)); s.sendall(open(sys.argv[1], "rb").read()); s.close()' "$TMP/blob"
wait $receiver
sent="50000000 $(sha256sum "$TMP/blob" | cut -d' ' -f1)"
received=$(cat "$TMP/received")
echo "sent:     $sent"; echo "received: $received"
[ "$sent" == "$received" ] && echo "transfer intact" || echo "TRANSFER CORRUPTED OR INCOMPLETE"

for i in 1 2; do
    P=${PIDS[$((i - 1))]}
    echo "h$i vxswitchd: cpu $(awk '{printf "%.2fs (user %.2f, system %.2f)", ($14 + $15) / 100, $14 / 100, $15 / 100}' /proc/$P/stat)," \
        "$(grep -E 'VmHWM' /proc/$P/status | tr -s ' \t' ' ')"
done
"$BIN/vxctl" --control "$TMP/h1.sock" stats
