// A real TAP with a virtio-net header and TCP offloads (TUNSETOFFLOAD CSUM | TSO4 | TSO6), inside a network
// namespace this test creates, through both engines: the offloads show in `ethtool -k`, the kernel's frames come
// out with their header first in a large buffer, and a 30 KB GSO write (TCPV4, NEEDS_CSUM) is taken whole.
//
// Network safety: the TAP is moved into `vx-<run id>-off*`, which is deleted on every path; its only traffic is an
// ARP request the namespace sends for an address nobody has, and one TCP burst to a closed port there.

import Foundation
import Testing
import VXIO
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("TAP offloads in a namespace (root)", .enabled(if: hasNetAdmin, Comment(rawValue: needsRootMessage)))
struct TAPOffloadTests {
    @Test("offloads take effect, reads carry the header, a GSO write is accepted (epoll)")
    func offloadedTAPThroughEpoll() throws {
        try exercise(try EpollEngine(pool: PacketBufferPool(count: 64, largeCount: 4)), label: "offe")
    }

    @Test(
        "offloads take effect, reads carry the header, a GSO write is accepted (io_uring)",
        .enabled(if: URingEngine.isSupported, "io_uring is not usable on this kernel"))
    func offloadedTAPThroughURing() throws {
        let pool = PacketBufferPool(count: 64, largeCount: 4)
        try exercise(try URingEngine(pool: pool, poolReserve: 4, largePoolReserve: 1), label: "offu")
    }

    private func exercise<Engine: PacketEngine>(_ engine: Engine, label: String) throws {
        let namespace = try TestNamespace(label)
        defer { namespace.delete() }
        let tap = try TAPDevice(name: uniqueTAPName(), options: [.virtioHeader])
        try tap.setOffloads(.tcp)
        let port = try engine.register(fd: tap.fileDescriptor.rawValue, kind: tap.portKind)
        defer { engine.unregister(port) }
        // The descriptor keeps working once the interface is in the namespace.
        try #require(try run(["ip", "link", "set", tap.name, "netns", namespace.name]).status == 0)
        try #require(try namespace.exec(["ip", "addr", "add", "10.77.0.1/24", "dev", tap.name]).status == 0)
        try #require(try namespace.exec(["ip", "link", "set", tap.name, "up"]).status == 0)

        let features = try namespace.exec(["ethtool", "-k", tap.name]).output
        #expect(features.contains("tx-checksumming: on"), "TUN_F_CSUM")
        #expect(features.contains("tcp-segmentation-offload: on"), "TUN_F_TSO4 | TUN_F_TSO6")
        #expect(features.contains("tx-tcp-segmentation: on") && features.contains("tx-tcp6-segmentation: on"))

        // Kernel -> TAP: an ARP request for 10.77.0.2, read with its 12-byte header into a large buffer.
        try namespace.exec(["ping", "-c", "1", "-W", "1", "10.77.0.2"], timeout: 5)
        var rx = RxBatch(capacity: 16)
        let isARP = { (frame: ReceivedFrame) -> Bool in
            let data = bytes(of: frame, in: engine)
            return data.count >= 12 + 14 && data[24] == 0x08 && data[25] == 0x06
        }
        try receiveUntil(engine, &rx) { $0.frames.contains(where: isARP) }
        let arp = try #require(rx.frames.first(where: isARP), "no ARP request read from \(tap.name)")
        #expect(arp.source == port)
        #expect(engine.pool.isLarge(arp.buffer))
        #expect(Int(arp.offset) == engine.pool.headroom - 12)
        #expect(bytes(of: arp, in: engine).prefix(2) == [0, 0], "ARP: no checksum to complete, no GSO")
        let arpBytes = bytes(of: arp, in: engine)
        let tapMAC = MACAddress(arpBytes[18], arpBytes[19], arpBytes[20], arpBytes[21], arpBytes[22], arpBytes[23])
        for frame in rx.frames { engine.release(frame.buffer) }

        // TAP -> kernel: one 30,000-byte TCP burst behind a TCPV4 header, as the coalescer writes them.
        let frame = gsoFrame(to: tapMAC, payloadLength: 30_000)
        let header: [UInt8] = [
            0x01,  // flags: NEEDS_CSUM
            0x01,  // gso_type: TCPV4
            54, 0,  // hdr_len (le16): Ethernet 14 + IPv4 20 + TCP 20
            0xA8, 0x05,  // gso_size (le16): 1448
            34, 0,  // csum_start (le16): the TCP header
            16, 0,  // csum_offset (le16): the TCP checksum field
            0, 0,  // num_buffers (le16)
        ]
        let before = try counter(namespace, tap.name, "rx_bytes")
        let buffer = try #require(takeLarge(engine))
        let offset = engine.pool.headroom - 12
        unsafe engine.pool.unsafeBytes(of: buffer, offset: offset, length: header.count + frame.count)
            .copyBytes(from: header + frame)
        let tx = TxBatch(capacity: 1)
        tx.append(target: port, buffer: buffer, offset: UInt32(offset), length: UInt32(header.count + frame.count))
        let report = engine.transmit(tx)
        engine.pool.give(buffer)
        #expect(report.sent == 1, "the kernel took the GSO write: \(report)")
        let after = try counter(namespace, tap.name, "rx_bytes")
        #expect(after - before >= frame.count, "one skb of \(frame.count) bytes")
    }

    /// A large buffer for the test's own write: the epoll engine leaves them in the pool; the io_uring engine was
    /// created with one held back.
    private func takeLarge<Engine: PacketEngine>(_ engine: Engine) -> BufferID? {
        engine.pool.takeLarge()
    }

    /// Ethernet + IPv4 (10.77.0.2 → 10.77.0.1, DF) + TCP (ACK, to the closed port 9) with `payloadLength` bytes, the
    /// TCP checksum field holding the pseudo-header sum (NEEDS_CSUM).
    private func gsoFrame(to destination: MACAddress, payloadLength: Int) -> [UInt8] {
        let source = IPv4Address(10, 77, 0, 2)
        let target = IPv4Address(10, 77, 0, 1)
        let payload = (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0) }
        let tcpHeader = TCPHeader(
            sourcePort: 40_000, destinationPort: 9, sequenceNumber: 1, acknowledgmentNumber: 1, flags: [.ack],
            window: 1000)
        var segment = PacketBuilder.withBytes(count: TCPHeader.minimumSize) { tcpHeader.write(into: &$0) } + payload
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source, destination: target, protocol: .tcp, length: segment.count)
        segment[16] = UInt8(pseudo >> 8)
        segment[17] = UInt8(pseudo & 0xFF)
        let ip = IPv4Header(
            totalLength: UInt16(20 + segment.count), identification: 1, dontFragment: true, timeToLive: 64,
            protocol: .tcp, source: source, destination: target)
        let packet =
            PacketBuilder.withBytes(count: 20) {
                ip.write(into: &$0)
                IPv4Header.updateChecksum(in: &$0)
            } + segment
        return PacketBuilder.ethernet(
            destination: destination, source: MACAddress(0x02, 0, 0, 0, 0x77, 2), etherType: .ipv4, payload: packet)
    }

    /// An interface counter inside the namespace (sysfs is remounted there by `ip netns exec`).
    private func counter(_ namespace: TestNamespace, _ name: String, _ counter: String) throws -> Int {
        let output = try namespace.exec(["cat", "/sys/class/net/\(name)/statistics/\(counter)"]).output
        return try #require(Int(output.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}
