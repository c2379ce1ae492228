// Raw GRE sockets through both kernel engines, on loopback (needs CAP_NET_RAW: skipped, with a message, when not
// root). GRE over IPv6 leaves through a raw IPv6 IPPROTO_RAW socket (we write the IPv6 header) and arrives on a raw
// IPv6 IPPROTO_GRE socket, whose datagrams start at GRE (the kernel never delivers the IPv6 header to it), with the
// sender as the message name.
// And a raw GRE socket whose receive queue once overflowed must go on delivering: from then on the kernel puts an
// SO_RXQ_OVFL message in front of every datagram, which io_uring's receive, asking for no control data, finds cut
// (MSG_CTRUNC).
//
// Every raw GRE socket on the host gets a copy of every GRE packet on loopback, other tests' included, so each
// test marks its packets with a GRE key of its own and looks only at those.

import Foundation
import Testing
import VXIO
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

// Serialized: every raw GRE socket bound to 127.0.0.1 gets a copy of every GRE packet to it, so one engine's burst
// would fill the other's deliberately tiny receive queue.
@Suite("raw GRE sockets through the engines (loopback)", .serialized)
struct RawGRESocketTests {
    static var isRoot: Bool { getuid() == 0 }

    /// A GRE header with a key (K set, protocol 0x6558): what the IPv6 template writes.
    static func greHeader(key: UInt32) -> [UInt8] {
        [0x20, 0x00, 0x65, 0x58] + withUnsafeBytes(of: key.bigEndian) { Array($0) }
    }

    /// A key no other test run, and no other engine's case of this one (they run at once), uses: the run's random
    /// ID folded into 20 bits, the engine in the next 4, `index` in the low byte.
    static func key(_ index: UInt8, _ kind: KernelEngineKind) -> UInt32 {
        let engineBits: UInt32 = kind == .epoll ? 1 : 2
        return (UInt32(runID, radix: 16)! & 0xF_FFFF) << 12 | engineBits << 8 | UInt32(index)
    }

    /// Sends `frames` through `sender` to `remote`, each behind `header(frameIndex)`, each `times` times.
    static func send<Engine: PacketEngine>(
        _ frames: [[UInt8]], times: Int = 1, through sender: PortHandle, to remote: UnderlayAddress, engine: Engine,
        header: (Int) -> [UInt8]
    ) throws -> Int {
        let tx = TxBatch(capacity: frames.count * times)
        var staged: [BufferID] = []
        defer { for buffer in staged { engine.pool.give(buffer) } }
        for (index, frame) in frames.enumerated() {
            let (buffer, offset, length) = try stage(frame, in: engine.pool)
            staged.append(buffer)
            let slotHeader = header(index)
            for _ in 0..<times {
                unsafe tx.append(target: sender, remote: remote, buffer: buffer, offset: offset, length: length) {
                    unsafe writeHeader(slotHeader, into: $0)
                }
            }
        }
        return engine.transmit(tx).sent
    }

    /// Receives (bounded: `polls` polls of 50 ms) and keeps the datagrams from `source` that `keep` accepts.
    static func collect<Engine: PacketEngine>(
        from source: PortHandle, engine: Engine, polls: Int = 20, until enough: Int,
        keep: ([UInt8]) -> Bool
    ) throws -> [(bytes: [UInt8], remote: UnderlayAddress)] {
        var kept: [(bytes: [UInt8], remote: UnderlayAddress)] = []
        var rx = RxBatch(capacity: 64)
        for _ in 0..<polls where kept.count < enough {
            rx.reset()
            _ = try engine.receive(into: &rx, timeout: .milliseconds(50))
            for frame in rx.frames {
                let data = bytes(of: frame, in: engine)
                if frame.source == source, keep(data) { kept.append((data, frame.remote)) }
                engine.release(frame.buffer)
            }
        }
        return kept
    }

    /// Bytes waiting in `fd`'s receive queue: 0 when a non-blocking peek finds nothing.
    static func queuedBytes(_ fd: Int32) -> Int {
        var byte: UInt8 = 0
        let count = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC))
        return count < 0 ? 0 : max(count, 1)
    }

    static func inner(_ marker: [UInt8]) -> [UInt8] {
        ethernetFrame(
            dst: .broadcast, src: MACAddress(0x02, 0, 0, 0, 0, 6), etherType: experimentalEtherType, payload: marker)
    }

    func checkIPv6<Engine: PacketEngine>(_ engine: Engine, _ kind: KernelEngineKind) throws {
        let sender = try TunnelSockets.openRawSender(local: loopbackIPv6)
        #expect(sender.kind == .rawSender)
        let receiver = try TunnelSockets.openRawGRE(local: loopbackIPv6)
        #expect(receiver.kind == .rawGREIPv6)
        let out = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .rawSender)
        let inbound = try engine.register(fd: receiver.fileDescriptor.rawValue, kind: .rawGREIPv6)
        // Armed before anything is sent, so no engine misses what arrives first.
        var rx = RxBatch(capacity: 8)
        _ = try engine.receive(into: &rx, timeout: .milliseconds(10))
        for frame in rx.frames { engine.release(frame.buffer) }

        let frames = (0..<3).map { Self.inner(Array("gre6-\(runID)-\($0)".utf8)) }
        let keys = (0..<3).map { Self.key(UInt8($0), kind) }
        let sent = try Self.send(frames, through: out, to: loopbackIPv6, engine: engine) { index in
            ipv6Header(
                nextHeader: 47, source: loopbackIPv6, destination: loopbackIPv6, payloadLength: 8 + frames[index].count)
                + Self.greHeader(key: keys[index])
        }
        #expect(sent == 3)

        let wanted = Set(keys.indices.map { Self.greHeader(key: keys[$0]) + frames[$0] })
        let received = try Self.collect(from: inbound, engine: engine, until: 3) { wanted.contains($0) }
        // Each datagram is GRE header + frame, no IPv6 header in front, from ::1.
        #expect(Set(received.map(\.bytes)) == wanted, "received \(received.count) of 3")
        #expect(received.allSatisfy { $0.remote == loopbackIPv6 })
        // The sender (IPPROTO_RAW) is given no copy of them, unlike a raw GRE socket.
        #expect(Self.queuedBytes(sender.fileDescriptor.rawValue) == 0, "the send-only socket has packets queued")
        engine.unregister(inbound)
        engine.unregister(out)
    }

    /// A `kind` engine for `body`, or nothing (with the reason printed) where raw sockets cannot be opened.
    static func withEngine(_ kind: KernelEngineKind, _ body: (any PacketEngine) throws -> Void) throws {
        guard isRoot else {
            print("skipped: raw GRE sockets need root (CAP_NET_RAW)")
            return
        }
        guard let engine = try UDPOffloadEngineTests.engine(kind) else { return }
        try body(engine)
    }

    @Test(arguments: KernelEngineKind.allCases)
    func ipv6GRESocketsCarryGREAndReportTheSender(_ kind: KernelEngineKind) throws {
        try Self.withEngine(kind) { try checkIPv6($0, kind) }
    }

    /// The IPv4 raw GRE socket on the kernel's smallest receive buffer takes a burst before any engine reads it, so
    /// its queue overflows; then every datagram it delivers carries the drop count (SO_RXQ_OVFL).
    func checkAfterOverflow<Engine: PacketEngine>(_ engine: Engine, _ kind: KernelEngineKind) throws {
        let receiver = try TunnelSockets.openRawGRE(local: loopback, bufferBytes: 1024)
        let sender = try TunnelSockets.openRawSender()
        let out = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .rawSender)
        let key = Self.key(0x77, kind)
        let frame = Self.inner(Array("gre-overflow-\(runID)".utf8))
        let outer = ipv4Header(
            protocol: 47, source: loopbackIPv4, destination: loopbackIPv4, payloadLength: 8 + frame.count)
            + Self.greHeader(key: key)
        let burst = 200
        let sent = try Self.send([frame], times: burst, through: out, to: loopback, engine: engine) { _ in outer }
        try #require(sent == burst)
        // Now read: what the queue kept (a few), and one more sent afterwards, which carries the count too.
        let inbound = try engine.register(fd: receiver.fileDescriptor.rawValue, kind: .rawGRE)
        let ours: ([UInt8]) -> Bool = { $0.count == outer.count + frame.count && Array($0[20...]) == Array(outer[20...]) + frame }
        let queued = try Self.collect(from: inbound, engine: engine, polls: 4, until: burst, keep: ours)
        try #require(queued.count < burst, "the queue kept all \(burst): it never overflowed, so this proves nothing")
        #expect(queued.count > 0, "nothing that the overflowed queue kept was delivered")
        // Room in the queue for the next one: whatever else arrived meanwhile is read and dropped.
        _ = try Self.collect(from: inbound, engine: engine, polls: 2, until: Int.max) { _ in false }
        // Its own key: the burst's stragglers (loopback queues in a softirq backlog first) must not count.
        let laterOuter = Array(outer[0..<24]) + withUnsafeBytes(of: Self.key(0x78, kind).bigEndian) { Array($0) }
        #expect(try Self.send([frame], through: out, to: loopback, engine: engine) { _ in laterOuter } == 1)
        let later = try Self.collect(from: inbound, engine: engine, until: 1) {
            $0.count == laterOuter.count + frame.count && Array($0[20...]) == Array(laterOuter[20...]) + frame
        }
        #expect(later.count == 1, "a datagram after the overflow was not delivered")
        #expect(later.allSatisfy { $0.remote == loopback })
        engine.unregister(inbound)
        engine.unregister(out)
    }

    @Test(arguments: KernelEngineKind.allCases)
    func rawGREDatagramsStillArriveAfterTheQueueOverflowed(_ kind: KernelEngineKind) throws {
        try Self.withEngine(kind) { try checkAfterOverflow($0, kind) }
    }
}
