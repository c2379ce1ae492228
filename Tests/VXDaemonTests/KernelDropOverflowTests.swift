// A tunnel socket's receive queue really overflowing, on loopback, and the count arriving where `vxctl stats`
// reads it (`kernelReceiveQueueOverflow`, from the drops column of /proc/net/udp via KernelSocketDrops) and where
// the epoll engine reads it (SO_RXQ_OVFL). The parser tests next to KernelSocketDrops only ever see a count of 0
// on a real socket; these see a non-zero one and check every reader agrees with the kernel.
//
// Bounded: 2,000 datagrams of 200 bytes to 127.0.0.1, a receive buffer of the kernel's minimum, a few receives
// with short timeouts. No root needed.

import Foundation
import Logging
import Testing
import VXControl
import VXIO
import VXPacket
import VXTestSupport

@testable import VXDaemon

#if canImport(Glibc)
import Glibc
#endif

/// A loopback tunnel socket whose receive queue overflows, and the kernel's own account of it.
struct OverflowingSocket: ~Copyable {
    static let burst = 2000
    let socket: TunnelSocket
    let isIPv6: Bool

    /// - Parameter ipv6: on ::1 (listed in /proc/net/udp6) instead of 127.0.0.1.
    init(ipv6: Bool = false) throws {
        // The smallest buffer the kernel allows (it raises 1 KiB to SOCK_MIN_RCVBUF): about ten datagrams.
        socket = try TunnelSockets.openUDP(
            local: ipv6 ? UnderlayAddress("::1")! : UnderlayAddress(127, 0, 0, 1), port: 0, bufferBytes: 1024)
        isIPv6 = ipv6
    }

    /// Sends `count` datagrams (the burst by default) from a separate socket. - Returns: how many sends succeeded.
    func overflow(count: Int = burst) throws -> Int {
        let sender = try PlainUDPSocket(ipv6: isIPv6)
        let payload = [UInt8](repeating: 0xC3, count: 200)
        var sent = 0
        for _ in 0..<count where sender.send(payload, to: socket.localPort) { sent += 1 }
        return sent
    }

    /// The drops column of /proc/self/net/udp (udp6) for this socket, found by its local port rather than by inode
    /// (as KernelSocketDrops does), so the test does not check the product's parser against itself.
    var procDrops: UInt64? { loopbackUDPDrops(port: socket.localPort, ipv6: isIPv6) }
}

/// A host whose VXLAN socket is a real one (the rest are FakeHost's fake descriptors): the MemoryEngine never
/// reads it, so whatever arrives stays queued in the kernel, and `stats` reads its drops from /proc.
final class RealTunnelHost: SwitchHost {
    let fake = FakeHost()
    let tunnelFD: Int32

    init(tunnelFD: Int32) { self.tunnelFD = tunnelFD }

    func createPort(name: String, mtu: Int, persistent: Bool, queues: Int) throws(ControlError) -> OwnedDescriptor {
        try fake.createPort(name: name, mtu: mtu, persistent: persistent, queues: queues)
    }

    func openTunnels(local: UnderlayAddress, udpPort: UInt16, worker: Int) throws(ControlError) -> [OwnedDescriptor] {
        var sockets = try fake.openTunnels(local: local, udpPort: udpPort, worker: worker)
        sockets[0] = OwnedDescriptor(fd: tunnelFD, kind: .udpTunnel) {}
        return sockets
    }
}

@Suite("kernel receive-queue overflow, counted for real")
struct KernelDropOverflowTests {
    @Test("epoll: SO_RXQ_OVFL, KernelSocketDrops and /proc/net/udp report the same non-zero count")
    func epollEngineSeesTheKernelsCount() throws {
        let overflowing = try OverflowingSocket()
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        let handle = try engine.register(fd: overflowing.socket.fileDescriptor.rawValue, kind: .udpTunnel)
        let sent = try overflowing.overflow()
        try #require(sent == OverflowingSocket.burst)

        // Read what the queue held; the count rides on those datagrams.
        var received = 0
        var rx = RxBatch(capacity: 64)
        for _ in 0..<20 {
            rx.reset()
            guard case .frames = try engine.receive(into: &rx, timeout: .milliseconds(50)) else { break }
            received += rx.count
            for frame in rx.frames { engine.release(frame.buffer) }
        }
        // The kernel stamps the drop count on datagrams queued after a drop, so what was queued before the burst
        // overflowed carries none: one more datagram brings it.
        try #require(try overflowing.overflow(count: 1) == 1)
        rx.reset()
        _ = try engine.receive(into: &rx, timeout: .milliseconds(500))
        #expect(rx.count == 1)
        for frame in rx.frames { engine.release(frame.buffer) }
        let counted = overflowing.procDrops
        let proc = try #require(counted)
        print("kernel receive-queue overflow: \(sent) sent, \(received) received, \(proc) dropped (/proc/net/udp)")
        #expect(proc > 0)
        #expect(received > 0 && received < sent)
        #expect(engine.receiveQueueDrops(for: handle) == proc)
        #expect(KernelSocketDrops.count(fd: overflowing.socket.fileDescriptor.rawValue, table: "udp") == proc)
        // Loopback loses nothing between the two sockets: every datagram was either queued or counted.
        #expect(UInt64(received) + proc == UInt64(sent))
    }

    @Test(
        "io_uring: the /proc count (all the daemon reports for this engine) is non-zero and matches",
        .enabled(if: URingEngine.isSupported)
    )
    func uringEngineSocketIsCounted() throws {
        let overflowing = try OverflowingSocket()
        // Fewer provided buffers than datagrams: the ring stops taking them and the queue overflows behind it.
        let engine = try URingEngine(pool: PacketBufferPool(count: 64))
        _ = try engine.register(fd: overflowing.socket.fileDescriptor.rawValue, kind: .udpTunnel)
        var rx = RxBatch(capacity: 64)
        _ = try engine.receive(into: &rx, timeout: .milliseconds(10))  // arm the receive
        for frame in rx.frames { engine.release(frame.buffer) }
        let sent = try overflowing.overflow()
        try #require(sent == OverflowingSocket.burst)
        var received = 0
        for _ in 0..<20 {
            rx.reset()
            guard case .frames = try engine.receive(into: &rx, timeout: .milliseconds(50)) else { break }
            received += rx.count
            for frame in rx.frames { engine.release(frame.buffer) }
        }
        let counted = overflowing.procDrops
        let proc = try #require(counted)
        print("kernel receive-queue overflow (io_uring): \(sent) sent, \(received) received, \(proc) dropped")
        #expect(proc > 0)
        #expect(KernelSocketDrops.count(fd: overflowing.socket.fileDescriptor.rawValue, table: "udp") == proc)
        #expect(UInt64(received) + proc == UInt64(sent))
    }

    /// Over IPv6 too: an IPv6 VTEP's sockets are listed in /proc/net/udp6, where the count was once not looked for.
    @Test("vxctl stats reports the tunnel socket's drops as kernelReceiveQueueOverflow", arguments: [false, true])
    func statsReportTheOverflow(ipv6: Bool) async throws {
        let overflowing = try OverflowingSocket(ipv6: ipv6)
        // Far above the fake descriptors (10-12, 1001+) the MemoryEngine also keys its ports by.
        let tunnelFD = fcntl(overflowing.socket.fileDescriptor.rawValue, F_DUPFD_CLOEXEC, 5000)
        try #require(tunnelFD >= 5000)
        defer { close(tunnelFD) }
        let host = RealTunnelHost(tunnelFD: tunnelFD)
        let daemon = SwitchDaemon(
            options: DaemonOptions(local: ipv6 ? UnderlayAddress("2001:db8::11")! : InProcessSwitch.local),
            engines: [MemoryEngine(pool: PacketBufferPool(count: 64))],
            host: host, logger: Logger(label: "test"))
        try daemon.start()
        defer { daemon.shutdown() }
        let dispatcher = ControlDispatcher(router: ControlRouter(service: daemon))
        func stats() async throws -> [String: Any] {
            let line = #"{"jsonrpc":"2.0","id":1,"method":"stats","params":{}}"#
            let reply = try #require(await dispatcher.respond(toLine: Array(line.utf8)))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any])
            return try #require(object["result"] as? [String: Any], "\(object)")
        }

        #expect((try await stats()["drops"] as? [String: Any])?[SwitchDaemon<MemoryEngine>.kernelReceiveQueueDrops] == nil)
        let sent = try overflowing.overflow()
        try #require(sent == OverflowingSocket.burst)
        let counted = overflowing.procDrops
        let proc = try #require(counted)
        #expect(proc > 0)
        let drops = try #require(try await stats()["drops"] as? [String: Any])
        #expect((drops["kernelReceiveQueueOverflow"] as? NSNumber)?.uint64Value == proc, "\(drops)")
    }
}
