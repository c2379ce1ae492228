// UDP segmentation offload through the engines, on loopback (127.0.0.1 does UDP GSO and GRO; no privileges):
// a GSO send from a `.udpSender` must arrive as its datagrams, byte for byte, at a plain socket, and as one GRO
// frame with the right segment size at a `.udpTunnel` socket (UDP_GRO on). Run against both kernel engines.

import Foundation
import Testing
import VXIO
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

enum KernelEngineKind: String, CaseIterable, CustomTestStringConvertible {
    case epoll, uring
    var testDescription: String { rawValue }
}

@Suite("UDP GSO and GRO through the engines (loopback)")
struct UDPOffloadEngineTests {
    /// `count` datagrams of `size` bytes, the last `lastSize`, each starting with its index.
    static func datagrams(count: Int, size: Int, lastSize: Int) -> [[UInt8]] {
        (0..<count).map { index in
            let length = index == count - 1 ? lastSize : size
            return [UInt8(index), 0xA5] + (0..<(length - 2)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
        }
    }

    /// Puts `payload` in a large buffer taken from the pool (the caller gives it back).
    static func stageLarge(_ payload: [UInt8], in pool: PacketBufferPool) throws -> BufferID {
        let buffer = try #require(pool.takeLarge())
        let target = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom, length: payload.count)
        unsafe target.copyBytes(from: payload)
        return buffer
    }

    /// Sends `joined` as one GSO send of `segmentSize`-byte datagrams from `sender` to `remote:port`, and requires
    /// it to come back as one GRO read of the whole run with that segment size. The caller checks the rest of the
    /// frame and releases its buffer.
    func receiveAsOneGROFrame<Engine: PacketEngine>(
        _ joined: [UInt8], segmentSize: Int, from sender: PortHandle, to remote: UnderlayAddress, port: UInt16,
        engine: Engine, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> ReceivedFrame {
        let buffer = try Self.stageLarge(joined, in: engine.pool)
        defer { engine.pool.give(buffer) }
        let tx = TxBatch(capacity: 2)
        tx.appendSegmented(
            target: sender, remote: remote, remotePort: port, buffer: buffer, offset: UInt32(engine.pool.headroom),
            length: UInt32(joined.count), segmentSize: UInt16(segmentSize))
        let datagrams = (joined.count + segmentSize - 1) / segmentSize
        #expect(engine.transmit(tx).sent == datagrams, sourceLocation: sourceLocation)
        var rx = RxBatch(capacity: 8)
        try receiveUntil(engine, &rx) { $0.count >= 1 }
        try #require(rx.count == 1, "one GRO read, not \(rx.count) frames", sourceLocation: sourceLocation)
        let frame = rx.frames[0]
        #expect(frame.segmentSize == UInt32(segmentSize), sourceLocation: sourceLocation)
        #expect(bytes(of: frame, in: engine) == joined, sourceLocation: sourceLocation)
        return frame
    }

    /// Sends the datagrams as one GSO entry and a last, separate datagram with a header slot, then checks what a
    /// plain socket and a GRO tunnel socket receive.
    func checkGSO<Engine: PacketEngine>(_ engine: Engine) throws {
        let pool = engine.pool
        let sender = try TunnelSockets.openUDPSender(local: loopback)
        #expect(sender.kind == .udpSender && sender.localPort != 0)
        let senderHandle = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .udpSender)
        let plain = try PlainUDPSocket()
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0)
        let tunnelHandle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)

        let pieces = Self.datagrams(count: 5, size: 1000, lastSize: 300)
        let joined = pieces.flatMap { $0 }
        let buffer = try Self.stageLarge(joined, in: pool)
        defer { pool.give(buffer) }
        let single = try stage([0x51, 0x52, 0x53], in: pool)
        defer { pool.give(single.0) }

        // To the plain socket: the kernel must cut the GSO send into its 5 datagrams.
        let tx = TxBatch(capacity: 4)
        tx.appendSegmented(
            target: senderHandle, remote: loopback, remotePort: plain.port, buffer: buffer,
            offset: UInt32(pool.headroom), length: UInt32(joined.count), segmentSize: 1000)
        unsafe tx.append(
            target: senderHandle, remote: loopback, remotePort: plain.port, buffer: single.0, offset: single.1,
            length: single.2
        ) { unsafe writeHeader([0x08, 0, 0, 0], into: $0) }
        let report = engine.transmit(tx)
        #expect(report.sent == 6, "5 datagrams of the GSO send + 1 single: \(report)")
        #expect(report.droppedError == 0 && report.droppedNoBuffer == 0)
        var arrived: [[UInt8]] = []
        while arrived.count < 6, let datagram = plain.receive(timeoutMilliseconds: 2000) { arrived.append(datagram) }
        #expect(arrived == pieces + [[0x08, 0, 0, 0, 0x51, 0x52, 0x53]], "byte-exact, in order")

        // To the GRO socket: one frame, 5 datagrams, segment size 1000.
        let frame = try receiveAsOneGROFrame(
            joined, segmentSize: 1000, from: senderHandle, to: loopback, port: tunnel.localPort, engine: engine)
        #expect(frame.source == tunnelHandle)
        #expect(frame.remote == loopback)
        #expect(Int(frame.length) == joined.count)
        #expect(pool.isLarge(frame.buffer), "GRO reads land in large buffers")
        engine.release(frame.buffer)
        var rx = RxBatch(capacity: 8)

        // A lone datagram to the GRO socket carries no segment size.
        tx.reset()
        unsafe tx.append(
            target: senderHandle, remote: loopback, remotePort: tunnel.localPort, buffer: single.0, offset: single.1,
            length: single.2
        ) { unsafe writeHeader([0x08], into: $0) }
        #expect(engine.transmit(tx).sent == 1)
        rx.reset()
        try receiveUntil(engine, &rx) { $0.count >= 1 }
        try #require(rx.count == 1)
        #expect(rx.frames[0].segmentSize == 0)
        #expect(bytes(of: rx.frames[0], in: engine) == [0x08, 0x51, 0x52, 0x53])
        engine.release(rx.frames[0].buffer)
        engine.unregister(tunnelHandle)
        engine.unregister(senderHandle)
    }

    /// The engine `kind` names over a pool with large buffers, or nil (recorded as an issue) when io_uring is
    /// unsupported here. io_uring keeps two large buffers out of the kernel's ring for the sends the tests build.
    static func engine(_ kind: KernelEngineKind) throws -> (any PacketEngine)? {
        let pool = PacketBufferPool(count: 64, largeCount: 6)
        switch kind {
        case .epoll:
            return try EpollEngine(pool: pool)
        case .uring:
            guard URingEngine.isSupported else {
                Issue.record("io_uring unsupported here: \(URingEngine.support)")
                return nil
            }
            return try URingEngine(pool: pool, poolReserve: 4, largePoolReserve: 2)
        }
    }

    @Test(arguments: KernelEngineKind.allCases)
    func gsoSendArrivesAsDatagramsAtAPlainSocketAndAsOneGROFrameAtATunnelSocket(_ kind: KernelEngineKind) throws {
        guard let engine = try Self.engine(kind) else { return }
        try checkGSO(engine)
    }

    /// The same over IPv6 (::1): the sockets are AF_INET6, every send carries a sockaddr_in6, and the sender's
    /// address comes back from the receive's name (epoll: recvmmsg; io_uring: the multishot recvmsg's name space,
    /// parsed in C) as the same 128 bits. A GSO send arrives as one GRO frame, a lone datagram as itself.
    func checkIPv6<Engine: PacketEngine>(_ engine: Engine) throws {
        let pool = engine.pool
        let sender = try TunnelSockets.openUDPSender(local: loopbackIPv6)
        #expect(sender.localAddress == loopbackIPv6 && (49152...65535).contains(sender.localPort))
        let senderHandle = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .udpSender)
        let tunnel = try TunnelSockets.openUDP(local: loopbackIPv6, port: 0)
        #expect(tunnel.localAddress == loopbackIPv6 && tunnel.localPort != 0)
        let tunnelHandle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)

        let joined = Self.datagrams(count: 4, size: 1200, lastSize: 77).flatMap { $0 }
        let frame = try receiveAsOneGROFrame(
            joined, segmentSize: 1200, from: senderHandle, to: loopbackIPv6, port: tunnel.localPort, engine: engine)
        #expect(frame.source == tunnelHandle)
        #expect(frame.remote == loopbackIPv6, "the sender, read back from an IPv6 name")
        engine.release(frame.buffer)

        let single = try stage([0x61, 0x62], in: pool)
        defer { pool.give(single.0) }
        let tx = TxBatch(capacity: 1)
        var rx = RxBatch(capacity: 8)
        unsafe tx.append(
            target: senderHandle, remote: loopbackIPv6, remotePort: tunnel.localPort, buffer: single.0,
            offset: single.1, length: single.2
        ) { unsafe writeHeader([0x08, 0, 0, 0], into: $0) }
        #expect(engine.transmit(tx).sent == 1)
        rx.reset()
        try receiveUntil(engine, &rx) { $0.count >= 1 }
        try #require(rx.count == 1)
        #expect(rx.frames[0].remote == loopbackIPv6 && rx.frames[0].segmentSize == 0)
        #expect(bytes(of: rx.frames[0], in: engine) == [0x08, 0, 0, 0, 0x61, 0x62])
        engine.release(rx.frames[0].buffer)
        engine.unregister(tunnelHandle)
        engine.unregister(senderHandle)
    }

    @Test(arguments: KernelEngineKind.allCases)
    func ipv6SocketsCarryGSOSendsAndReportTheSender(_ kind: KernelEngineKind) throws {
        guard let engine = try Self.engine(kind) else { return }
        try checkIPv6(engine)
    }

    /// After a tunnel socket has dropped anything, the kernel puts SO_RXQ_OVFL in front of every datagram's
    /// control data, before UDP_GRO. An io_uring receive that left room for one control message lost the
    /// segment size (MSG_CTRUNC), and each GRO read went on as one frame: 64-byte frames through the tunnel lost
    /// 80% of the traffic silently whenever the receive queue had overflowed once (tools/bench, offloads off).
    func checkGROAfterDrops<Engine: PacketEngine>(_ engine: Engine) throws {
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0, bufferBytes: 1024)
        let tunnelHandle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        var rx = RxBatch(capacity: 64)
        _ = try engine.receive(into: &rx, timeout: .milliseconds(10))  // arms io_uring's receive
        // Overflow the (minimum-size) receive queue, then drain what it kept.
        let peer = try PlainUDPSocket()
        for _ in 0..<300 { peer.send([UInt8](repeating: 0x3C, count: 200), to: tunnel.localPort) }
        for _ in 0..<20 {
            for frame in rx.frames { engine.release(frame.buffer) }
            rx.reset()
            guard case .frames = try engine.receive(into: &rx, timeout: .milliseconds(50)) else { break }
        }
        for frame in rx.frames { engine.release(frame.buffer) }
        try #require(loopbackUDPDrops(port: tunnel.localPort) ?? 0 > 0, "the queue must have overflowed")
        // Room again for a GRO read; the socket's drop count stays, so every datagram now carries SO_RXQ_OVFL.
        var size: Int32 = 1 << 20
        try #require(unsafe setsockopt(
            tunnel.fileDescriptor.rawValue, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) == 0)

        let sender = try TunnelSockets.openUDPSender(local: loopback)
        let senderHandle = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .udpSender)
        // The segment size must survive the SO_RXQ_OVFL message in front of it.
        let joined = Self.datagrams(count: 5, size: 1000, lastSize: 300).flatMap { $0 }
        let frame = try receiveAsOneGROFrame(
            joined, segmentSize: 1000, from: senderHandle, to: loopback, port: tunnel.localPort, engine: engine)
        engine.release(frame.buffer)
        engine.unregister(senderHandle)
        engine.unregister(tunnelHandle)
    }

    @Test(arguments: KernelEngineKind.allCases)
    func groReadKeepsItsSegmentSizeAfterTheQueueOverflowed(_ kind: KernelEngineKind) throws {
        guard let engine = try Self.engine(kind) else { return }
        try checkGROAfterDrops(engine)
    }
}

@Suite("VXLAN UDP senders")
struct UDPSenderPortTests {
    @Test("senders bind distinct source ports in 49152-65535 (RFC 7348 §5), not the kernel's ephemeral range")
    func sourcePortsComeFromTheDynamicRange() throws {
        // 64 senders: were the ports the kernel's choice (32768-60999), some would fall below 49152 (each does
        // with probability 0.58).
        var ports: [UInt16] = []
        try openSenders(64, ports: &ports)
        #expect(ports.allSatisfy { (49152...65535).contains($0) }, "ports: \(ports.sorted())")
        #expect(Set(ports).count == ports.count)
    }

    /// Opens `count` senders, all open at once (a socket is ~Copyable, so they live on the call stack), and
    /// records their ports.
    private func openSenders(_ count: Int, ports: inout [UInt16]) throws {
        guard count > 0 else { return }
        let sender = try TunnelSockets.openUDPSender(local: UnderlayAddress(127, 0, 0, 1))
        ports.append(sender.localPort)
        try openSenders(count - 1, ports: &ports)
        withExtendedLifetime(sender) {}
    }
}
