#!/usr/bin/env bash
# Installs the system packages vxswitch needs to build and test (Debian bookworm; run as root).
#
#   liburing-dev libpcap-dev pkgconf   the CLibURing / CLibPcap system libraries (Package.swift's `providers:`
#                                      only prints a hint, so CI installs them here)
#   iproute2 iputils-ping              ip netns / ip link / bridge, and ping, for the netns system tests
#   python3                            tools/netns-tcp-transfer.py (hash-verified TCP transfer check)
#   iperf3 ethtool procps              throughput runs, offload inspection, sysctl/ps when debugging
#   busybox isc-dhcp-client            real DHCP clients (udhcpc, dhclient) for the built-in DHCP server's tests
#   gcc libc6-dev                      tools/tests/test_pktgen.py compiles the bench's 64-byte sender
#                                      (tools/bench.d/pktgen.c); without gcc those tests would only skip
#
# Idempotent: when every package is already installed it does not touch apt at all, so repeated runs take
# milliseconds. scapy is deliberately absent: packet fixtures are generated once and committed.
set -euo pipefail

packages=(liburing-dev libpcap-dev pkgconf iproute2 iputils-ping iperf3 ethtool python3 procps busybox isc-dhcp-client
          gcc libc6-dev)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
