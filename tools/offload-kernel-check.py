#!/usr/bin/env python3
# Checks VXOffload's assumptions about a TAP with IFF_VNET_HDR + TUNSETOFFLOAD against the running kernel.
#
#   ip netns add vxoffcheck && ip netns exec vxoffcheck python3 tools/offload-kernel-check.py; ip netns del vxoffcheck
#
# Root only; everything happens inside the given netns (a TAP "vxo0", 10.9.0.1/24, and a listening socket). The
# script plays the peer 10.9.0.2 through the TAP: handshake, then
#   (a) prints the virtio header and TCP checksum field of a TSO burst the kernel hands out;
#   (b) writes one GSO frame shaped as TCPCoalescer.writeCoalesced shapes it (NEEDS_CSUM, TCPV4, gso_size, hdr_len =
#       headers, pseudo-header sum in the checksum field) and checks the socket receives all of it;
#   (c) writes a frame with a bad checksum behind DATA_VALID to see whether tun honours DATA_VALID on writes;
#   (d) writes UDP frames shaped as UDPCoalescer.writeCoalesced shapes them (NEEDS_CSUM, UDP_L4, gso_size, the
#       pseudo-header sum over the merged UDP length in the checksum field) over IPv4 and IPv6, with a shorter last
#       datagram, and checks a UDP socket gets every datagram byte for byte; then finds the most datagrams one such
#       write may carry (the TAP offers no USO: TUNSETOFFLOAD stays CSUM|TSO4|TSO6).
# Results on Linux 6.18 are in docs/offload.md.
import fcntl, os, select, socket, struct, subprocess, time

TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ = 0x400454ca, 0x400454d0, 0x400454d8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 1, 2, 4
MY_MAC, PEER_MAC = None, bytes.fromhex("020000000002")
LOCAL, PEER = socket.inet_aton("10.9.0.1"), socket.inet_aton("10.9.0.2")

def csum_sum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return s

def pseudo(src, dst, length):
    return csum_sum(src + dst + struct.pack("!BBH", 0, 6, length))

fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"vxo0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 12))
fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
for cmd in ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1", "ip link set lo up", "ip link set vxo0 up",
            "ip addr add 10.9.0.1/24 dev vxo0", "ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev vxo0"]:
    subprocess.run(cmd.split(), check=True)
MY_MAC = bytes.fromhex(open("/sys/class/net/vxo0/address").read().strip().replace(":", ""))

server = socket.socket(); server.bind(("10.9.0.1", 5001)); server.listen(1); server.setblocking(False)

def read_tcp(timeout=2.0):
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r: continue
        data = os.read(fd, 70000)
        hdr, frame = data[:12], data[12:]
        if frame[12:14] != b"\x08\x00" or frame[23] != 6: continue
        return struct.unpack("<BBHHHHH", hdr), frame
    return None, None

def tcp_frame(seq, ack, flags, payload=b"", opts=b"", csum="full", ip_id=1):
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, seq, ack, (5 + len(opts) // 4) << 4, flags, 65535, 0, 0) + opts + payload
    p = pseudo(PEER, LOCAL, len(tcp))
    c = p  # "partial": the pseudo-header sum, as TCPCoalescer leaves it with NEEDS_CSUM
    if csum == "full":
        s = csum_sum(tcp) + p
        while s >> 16: s = (s & 0xFFFF) + (s >> 16)
        c = ~s & 0xFFFF
    elif csum == "bad":
        s = csum_sum(tcp) + p
        while s >> 16: s = (s & 0xFFFF) + (s >> 16)
        c = (~s & 0xFFFF) ^ 0x0100
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0, PEER, LOCAL)
    ip = ip[:10] + struct.pack("!H", ~csum_sum(ip) & 0xFFFF) + ip[12:]
    return MY_MAC + PEER_MAC + b"\x08\x00" + ip + tcp

def write(frame, flags=0, gso=0, hdr_len=0, gso_size=0, cstart=0, coff=0):
    os.write(fd, struct.pack("<BBHHHHH", flags, gso, hdr_len, gso_size, cstart, coff, 0) + frame)

# Handshake: SYN with MSS 1460 and window scale 7.
opts = bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 7])
write(tcp_frame(1000, 0, 0x02, opts=opts))
hdr, synack = read_tcp()
print("SYN-ACK virtio header", hdr)
their_seq = struct.unpack("!I", synack[38:42])[0]
write(tcp_frame(1001, their_seq + 1, 0x10))
time.sleep(0.2)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

# (a) TAP read: what a TSO burst looks like.
conn.send(b"x" * 30000)
hdr, frame = read_tcp()
flags, gso, hdr_len, gso_size, cstart, coff, nbuf = hdr
ipl = struct.unpack("!H", frame[16:18])[0]
field = struct.unpack("!H", frame[cstart + coff:cstart + coff + 2])[0]
print("TSO read: flags=%d gso_type=%d hdr_len=%d gso_size=%d csum_start=%d csum_offset=%d num_buffers=%d frame=%d ip_total=%d"
      % (flags, gso, hdr_len, gso_size, cstart, coff, nbuf, len(frame), ipl))
print("  checksum field %#06x, pseudo-header sum for the whole segment %#06x" % (field, pseudo(LOCAL, PEER, ipl - 20)))

# (b) TAP write: a coalesced frame as TCPCoalescer writes it.
payload = bytes(range(256)) * 12  # 3072 bytes = 3 x 1024
f = tcp_frame(1001, their_seq + 1, 0x18, payload=payload, csum="partial", ip_id=2)
write(f, flags=1, gso=1, hdr_len=54, gso_size=1024, cstart=34, coff=16)
time.sleep(0.3)
conn.setblocking(False)
got = b""
try:
    while True:
        chunk = conn.recv(65536)
        if not chunk: break
        got += chunk
except BlockingIOError:
    pass
except Exception as e:
    print("recv error", e)
conn.setblocking(False)
try:
    got += conn.recv(65536)
except BlockingIOError:
    pass
print("GSO write accepted:", got == payload, len(got))

# (c) Does tun honour DATA_VALID on write? A bad checksum behind DATA_VALID.
bad = tcp_frame(1001 + len(payload), their_seq + 1, 0x18, payload=b"Z" * 100, csum="bad", ip_id=3)
write(bad, flags=2)
time.sleep(0.3)
try:
    extra = conn.recv(65536)
except BlockingIOError:
    extra = b""
print("bad checksum + DATA_VALID delivered:", len(extra) > 0)

# (d) USO writes: UDP datagrams merged as UDPCoalescer merges them, IPv4 and IPv6.
subprocess.run("sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.vxo0.disable_ipv6=0".split(), check=True)
subprocess.run("ip addr add fd00:9::1/64 dev vxo0 nodad".split(), check=True)
subprocess.run("ip neigh add fd00:9::2 lladdr 02:00:00:00:00:02 dev vxo0".split(), check=True)
LOCAL6, PEER6 = socket.inet_pton(socket.AF_INET6, "fd00:9::1"), socket.inet_pton(socket.AF_INET6, "fd00:9::2")

def uso_frame(payloads, v6, ip_id=100):
    body = b"".join(payloads)
    ulen = 8 + len(body)
    if v6:
        ps = csum_sum(PEER6 + LOCAL6 + struct.pack("!IxxxB", ulen, 17))
        ip = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, 64, PEER6, LOCAL6)
        eth_type = b"\x86\xdd"
    else:
        ps = csum_sum(PEER + LOCAL + struct.pack("!BBH", 0, 17, ulen))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ip_id, 0x4000, 64, 17, 0, PEER, LOCAL)
        ip = ip[:10] + struct.pack("!H", ~csum_sum(ip) & 0xFFFF) + ip[12:]
        eth_type = b"\x08\x00"
    udp = struct.pack("!HHHH", 40000, 9000, ulen, ps)  # not complemented: the kernel completes it per segment
    return MY_MAC + PEER_MAC + eth_type + ip + udp + body, 14 + len(ip)

def uso_write(payloads, v6):
    frame, udp_at = uso_frame(payloads, v6)
    try:
        write(frame, flags=1, gso=5, hdr_len=udp_at + 8, gso_size=len(payloads[0]), cstart=udp_at, coff=6)
        return None
    except OSError as e:
        return e.errno

def udp_socket(v6):
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("fd00:9::1" if v6 else "10.9.0.1", 9000))
    s.settimeout(0.3)
    return s

def drain(s):
    got = []
    try:
        while True: got.append(s.recv(70000))
    except socket.timeout:
        pass
    return got

def nstat(name):
    out = subprocess.run(["nstat", "-az", name], capture_output=True, text=True).stdout.split()
    return int(out[out.index(name) + 1]) if name in out else None

for v6 in (False, True):
    s = udp_socket(v6)
    name = "IPv6" if v6 else "IPv4"
    payloads = [bytes([i]) * 18 for i in range(4)] + [b"\xee" * 7]
    err = uso_write(payloads, v6)
    got = drain(s)
    print("USO write %s: errno=%s received=%d byte-exact=%s" % (name, err, len(got), got == payloads))
    for n in (64, 128, 129, 200):
        payloads = [struct.pack("!H", i) * 4 for i in range(n)]
        err = uso_write(payloads, v6)
        got = drain(s)
        print("  %s %d datagrams of 8 bytes in one write: errno=%s received=%d byte-exact=%s"
              % (name, n, err, len(got), got == payloads))
    s.close()
print("UdpInCsumErrors", nstat("UdpInCsumErrors"), "Udp6InCsumErrors", nstat("Udp6InCsumErrors"))
