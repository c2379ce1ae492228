#!/usr/bin/env bash
# Installs what tools/bench needs on Debian bookworm (run as root). Not part of the test suite's install step
# (tools/install-deps.sh): only the benchmark uses Open vSwitch.
#
#   openvswitch-switch   ovsdb-server, ovs-vswitchd, ovs-vsctl (userspace datapath variants ovs-vxlan, ovs-gre)
#   iperf3 ethtool       TCP throughput; container offloads on/off
#   iproute2 iputils-ping procps  ip netns / ip link; ping RTT; sysctl
#   gcc libc6-dev        tools/bench.d/pktgen.c (64-byte frame generator, compiled per run)
#   linux-perf           system calls per frame (SYSCALLS=1 tools/netns-iperf.sh) and profiles (docs/performance.md)
#
# The package's own services are never started: Debian's invoke-rc.d asks /usr/sbin/policy-rc.d, and when the
# machine has none this script puts a deny-all one in place for the duration of the install and removes it after.
# tools/bench starts its own ovsdb-server/ovs-vswitchd per host namespace, with private run/db/log directories.
# Idempotent: when everything is installed it does not touch apt.
set -euo pipefail

packages=(openvswitch-switch iperf3 ethtool iproute2 iputils-ping procps gcc libc6-dev linux-perf)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "bench install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "bench install-deps: run as root to install ${missing[*]}" >&2; exit 1; }

policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
echo "bench install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
