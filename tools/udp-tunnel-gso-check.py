#!/usr/bin/env python3
# Checks whether the running kernel can carry a VXLAN-encapsulated TCP burst of ~60 KB through an underlay whole,
# the way its own vxlan device does, when a user-space switch writes it into a TAP: the TAP is opened with the
# 24-byte virtio-net header that can describe GSO over a UDP tunnel (virtio_net_hdr_v1_hash_tunnel: the 12-byte
# v1 header, 8 bytes of hash report, then outer_th_offset and inner_nh_offset) and TUNSETOFFLOAD with
# TUN_F_UDP_TUNNEL_GSO (0x80) and TUN_F_UDP_TUNNEL_GSO_CSUM (0x100).
#
#   python3 tools/udp-tunnel-gso-check.py      # root; exit 0 when the burst arrived whole, 1 when not (also when
#                                              # the kernel refuses the offload flags)
#
# Topology, in two namespaces this script creates and removes (vx-<pid>-ta, vx-<pid>-tb):
#
#   TAP utap ─ br0 ─ veth ul0 ══ ul0 ─ br0 ─ TAP utap
#
# One write into A's TAP: outer Ethernet/IPv4 (192.0.2.1 → 192.0.2.2)/UDP 4789/VXLAN VNI 42, inner Ethernet/IPv4
# (10.0.0.1 → 10.0.0.2)/TCP with 60,000 bytes of payload and the pseudo-header sum in its checksum field; the header
# says NEEDS_CSUM at the inner TCP checksum, gso_type TCPV4 | UDP_TUNNEL_IPV4, gso_size 1398. The script then
# reads B's TAP: if one frame of the whole size arrives with the same GSO description, nothing between the two
# TAPs cut it up (no segmentation in user space, none in the kernel), which is what `vxswitchd --underlay-tap`
# relies on (docs/offload.md, "The TAP underlay"). Linux 6.18: it does.
import ctypes, fcntl, os, select, struct, subprocess, sys, time

TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ = 0x400454CA, 0x400454D0, 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_UDP_TUNNEL_GSO, TUN_F_UDP_TUNNEL_GSO_CSUM = 0x1, 0x2, 0x80, 0x100
GSO_TCPV4, GSO_UDP_TUNNEL_IPV4, F_NEEDS_CSUM = 0x1, 0x20, 0x1
HEADER_SIZE = 24
PAYLOAD, GSO_SIZE = 60_000, 1398
libc = ctypes.CDLL(None, use_errno=True)


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def open_tap_in(namespace):
    """Opens TAP "utap" inside `namespace` (the fd keeps working from here) with the tunnel-capable header."""
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        if libc.setns(target, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"utap", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", HEADER_SIZE))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM)
        return fd
    finally:
        libc.setns(home, 0x40000000)
        os.close(target)
        os.close(home)


def ones_sum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4(source, destination, protocol, payload):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, protocol, 0, source, destination)
    return header[:10] + struct.pack("!H", 0xFFFF ^ ones_sum(header)) + header[12:] + payload


def burst():
    """The encapsulated burst and its header: (header bytes, frame bytes)."""
    inner_source, inner_destination = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    payload = bytes((i * 7) & 0xFF for i in range(PAYLOAD))
    pseudo = ones_sum(struct.pack("!4s4sBBH", inner_source, inner_destination, 0, 6, 20 + len(payload)))
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1000, 1, 0x50, 0x10, 502, pseudo, 0) + payload
    inner = bytes.fromhex("020000000002020000000001" "0800") + ipv4(inner_source, inner_destination, 6, tcp)
    vxlan = struct.pack("!II", 0x08000000, 42 << 8)
    udp = struct.pack("!HHHH", 49152, 4789, 8 + len(vxlan) + len(inner), 0) + vxlan + inner
    outer_ip = ipv4(bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), 17, udp)
    frame = bytes.fromhex("02aabbccdd02" "02aabbccdd01" "0800") + outer_ip
    outer_transport = 14 + 20
    inner_network = outer_transport + 8 + 8 + 14
    inner_transport = inner_network + 20
    header = struct.pack("<BBHHHHH", F_NEEDS_CSUM, GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4, inner_transport + 20, GSO_SIZE,
                         inner_transport, 16, 0)
    header += struct.pack("<IHH", 0, 0, 0) + struct.pack("<HH", outer_transport, inner_network)
    return header, frame


def main():
    if os.geteuid() != 0:
        sys.exit("udp-tunnel-gso-check: needs root (network namespaces)")
    a, b = f"vx-{os.getpid():x}-ta", f"vx-{os.getpid():x}-tb"
    try:
        for namespace in (a, b):
            run("ip", "netns", "add", namespace)
        run("ip", "-n", a, "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b)
        taps = {}
        for namespace in (a, b):
            try:
                taps[namespace] = open_tap_in(namespace)
            except OSError as error:  # a kernel without GSO over UDP tunnels refuses the offload flags (EINVAL)
                print(f"this kernel's TAPs refuse TUN_F_UDP_TUNNEL_GSO ({error}): the burst did not arrive whole")
                return 1
            run("ip", "-n", namespace, "link", "add", "br0", "type", "bridge")
            for device in ("ul0", "utap"):
                run("ip", "-n", namespace, "link", "set", device, "master", "br0", "up")
            run("ip", "-n", namespace, "link", "set", "br0", "up")
        features = run("ip", "netns", "exec", a, "ethtool", "-k", "utap")
        print("A's TAP:", ", ".join(line.strip() for line in features.splitlines() if "udp_tnl" in line))
        time.sleep(1)  # let the kernel's own first frames (IPv6 DAD, MLD) pass, and drop them
        for fd in taps.values():
            try:
                while True:
                    os.read(fd, 70_000)
            except BlockingIOError:
                pass
        header, frame = burst()
        os.write(taps[a], header + frame)
        arrived = []
        deadline = time.time() + 2
        while time.time() < deadline:
            if select.select([taps[b]], [], [], 0.2)[0]:
                try:
                    while True:
                        arrived.append(os.read(taps[b], 70_000))
                except BlockingIOError:
                    pass
        whole = [data for data in arrived if data[HEADER_SIZE:] == frame]
        print(f"wrote one {len(frame)}-byte frame into A's TAP; B's TAP read {len(arrived)} frames of "
              f"{sorted({len(data) - HEADER_SIZE for data in arrived}, reverse=True)[:6]} bytes")
        if whole:
            flags, gso_type, _, gso_size, start, offset, _ = struct.unpack("<BBHHHHH", whole[0][:12])
            outer, inner = struct.unpack("<HH", whole[0][20:24])
            print(f"arrived whole: flags {flags:#x}, gso_type {gso_type:#x}, gso_size {gso_size},",
                  f"csum {start}/{offset}, outer_th_offset {outer}, inner_nh_offset {inner}")
            return 0
        print("the burst did not arrive whole")
        return 1
    finally:
        for namespace in (a, b):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
