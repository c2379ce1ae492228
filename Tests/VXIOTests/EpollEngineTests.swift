import Dispatch
import Foundation
import Testing
import VXIO
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Tests that need no privileges: UDP on 127.0.0.1, the waker, handle bookkeeping.
@Suite("EpollEngine on loopback UDP")
struct EpollEngineUDPTests {
    @Test func udpTunnelSocketReceivesInBatchesWithTheSendersAddress() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 256))
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0)
        #expect(tunnel.localPort != 0 && tunnel.localPort != TunnelSockets.vxlanPort)
        let handle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        let peer = try PlainUDPSocket()
        let total = 100
        for sequence in 0..<total {
            #expect(peer.send([UInt8(sequence), 0x5A] + [UInt8](repeating: UInt8(sequence), count: 50), to: tunnel.localPort))
        }
        var received: [[UInt8]] = []
        var rx = RxBatch(capacity: 32)
        var calls = 0
        while received.count < total && calls < 200 {  // bounded: 100 datagrams need 4 calls
            calls += 1
            _ = try engine.receive(into: &rx, timeout: .milliseconds(200))
            for frame in rx.frames {
                #expect(frame.source == handle)
                #expect(frame.remote == loopback)
                #expect(Int(frame.offset) == engine.pool.headroom)
                received.append(bytes(of: frame, in: engine))
                engine.release(frame.buffer)
            }
            rx.reset()
        }
        #expect(received.count == total, "none lost on loopback")
        #expect(received.map { Int($0[0]) } == Array(0..<total), "in order")
        #expect(engine.statistics.maxFramesPerReceive > 1, "recvmmsg batches")
        #expect(engine.statistics.maxFramesPerReceive <= 32)
        #expect(engine.buffersOutstanding == 0)
        #expect(engine.receiveQueueDrops(for: handle) == 0)
    }

    @Test func busyPortsShareOneBatchFairly() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 256))
        let first = try TunnelSockets.openUDP(local: loopback, port: 0)
        let second = try TunnelSockets.openUDP(local: loopback, port: 0)
        let a = try engine.register(fd: first.fileDescriptor.rawValue, kind: .udpTunnel)
        let b = try engine.register(fd: second.fileDescriptor.rawValue, kind: .udpTunnel)
        let peer = try PlainUDPSocket()
        for sequence in 0..<40 {
            peer.send([UInt8(sequence)], to: first.localPort)
            peer.send([UInt8(sequence)], to: second.localPort)
        }
        usleep(50_000)  // let loopback delivery finish for both sockets
        var rx = RxBatch(capacity: 32)
        #expect(try engine.receive(into: &rx, timeout: .seconds(1)) == .frames(32))
        #expect(rx.frames.filter { $0.source == a }.count == 16, "each busy port gets half the batch")
        #expect(rx.frames.filter { $0.source == b }.count == 16)
        for frame in rx.frames { engine.release(frame.buffer) }
        // Level-triggered: both ports are still ready and are served again.
        rx.reset()
        #expect(try engine.receive(into: &rx, timeout: .seconds(1)) == .frames(32))
        #expect(Set(rx.frames.map(\.source)) == [a, b])
        for frame in rx.frames { engine.release(frame.buffer) }
    }

    @Test func kernelReceiveQueueDropsAreCountedFromSO_RXQ_OVFL() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        // A tiny receive buffer (the kernel's minimum, ~2.3 KiB) overflows after a couple of datagrams.
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0, bufferBytes: 1024)
        let handle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        let peer = try PlainUDPSocket()
        for _ in 0..<50 { peer.send([UInt8](repeating: 0xC3, count: 1000), to: tunnel.localPort) }
        var rx = RxBatch(capacity: 64)
        _ = try engine.receive(into: &rx, timeout: .milliseconds(500))
        for frame in rx.frames { engine.release(frame.buffer) }
        #expect(rx.count > 0 && rx.count < 50)
        // Drops are reported with the next datagram read after them.
        peer.send([1], to: tunnel.localPort)
        rx.reset()
        _ = try engine.receive(into: &rx, timeout: .milliseconds(500))
        for frame in rx.frames { engine.release(frame.buffer) }
        let drops = try #require(engine.receiveQueueDrops(for: handle))
        #expect(drops > 0)
        #expect(drops <= 50)
    }

    @Test func wakerInterruptsABlockingReceive() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 8))
        let waker = engine.waker
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { waker.wake() }
        var rx = RxBatch(capacity: 8)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try engine.receive(into: &rx, timeout: .seconds(10)) == .woken(frames: 0))
        #expect(clock.now - started < .seconds(5))
        // The eventfd was drained: the next call sleeps until its timeout.
        #expect(try engine.receive(into: &rx, timeout: .milliseconds(20)) == .timedOut)
    }

    @Test func emptyPoolStopsReadingWithoutLosingData() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 4))
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0)
        _ = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        let peer = try PlainUDPSocket()
        for sequence in 0..<10 { peer.send([UInt8(sequence)], to: tunnel.localPort) }
        var rx = RxBatch(capacity: 32)
        try receiveUntil(engine, &rx) { $0.count >= 4 }
        #expect(rx.count == 4)
        var more = RxBatch(capacity: 32)
        #expect(try engine.receive(into: &more, timeout: .milliseconds(50)) == .timedOut)
        #expect(engine.statistics.poolExhausted >= 1)
        for frame in rx.frames { engine.release(frame.buffer) }
        try receiveUntil(engine, &more) { $0.count >= 4 }
        #expect(more.frames.map { bytes(of: $0, in: engine)[0] } == [4, 5, 6, 7], "the socket kept the rest")
        for frame in more.frames { engine.release(frame.buffer) }
    }

    @Test func transmitToUnregisteredOrUnknownHandlesIsCountedAsDropped() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 8))
        let tunnel = try TunnelSockets.openUDP(local: loopback, port: 0)
        let handle = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        engine.unregister(handle)
        engine.unregister(handle)  // twice: ignored
        let reused = try engine.register(fd: tunnel.fileDescriptor.rawValue, kind: .udpTunnel)
        #expect(reused != handle, "a stale handle never names the port that reused its slot")
        let tx = TxBatch(capacity: 4)
        let (buffer, offset, length) = try stage([1, 2, 3, 4], in: engine.pool)
        tx.append(target: handle, buffer: buffer, offset: offset, length: length)
        tx.append(target: PortHandle(raw: 0xDEAD_BEEF), buffer: buffer, offset: offset, length: length)
        tx.append(target: reused, buffer: buffer, offset: offset, length: length)  // receive-only kind
        let report = engine.transmit(tx)
        #expect(report.sent == 0)
        #expect(report.droppedError == 3)
        #expect(engine.receiveQueueDrops(for: handle) == nil)
        #expect(engine.receiveQueueDrops(for: reused) == 0)
    }

    @Test func registeringABadDescriptorThrows() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 8))
        #expect(throws: IOError.self) { try engine.register(fd: 987_654, kind: .udpTunnel) }
        do {
            _ = try engine.register(fd: -1, kind: .tap(virtioHeader: false))
            Issue.record("register(fd: -1) succeeded")
        } catch {
            #expect(error.errno == EBADF)
            #expect(error.description.contains("closed or was never valid"))
        }
    }

    @Test func bindingATakenPortExplainsIt() throws {
        let first = try TunnelSockets.openUDP(local: loopback, port: 0)
        do {
            _ = try TunnelSockets.openUDP(local: loopback, port: first.localPort)
            Issue.record("second bind succeeded")
        } catch {
            #expect(error.errno == EADDRINUSE)
            #expect(error.operation.hasPrefix("bind(127.0.0.1:"))
            #expect(error.description.contains("already bound"))
        }
    }
}

/// Tests that need root: raw sockets and TAP devices. Each skips with a message when not root.
@Suite("EpollEngine with raw sockets and TAPs (root)", .enabled(if: hasNetAdmin, Comment(rawValue: needsRootMessage)))
struct EpollEnginePrivilegedTests {
    @Test func rawSenderDeliversAHandBuiltIPv4UDPPacketToLoopback() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        let sender = try TunnelSockets.openRawSender()
        let receiver = try TunnelSockets.openUDP(local: loopback, port: 0)
        let out = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .rawSender)
        let inbound = try engine.register(fd: receiver.fileDescriptor.rawValue, kind: .udpTunnel)

        let tx = TxBatch(capacity: 16)
        let count = 10  // one run for one target: coalesced into one sendmmsg
        for sequence in 0..<count {
            let payload = [UInt8(sequence)] + Array("vxswitch raw sender".utf8)
            let (buffer, offset, length) = try stage(payload, in: engine.pool)
            let udpLength = 8 + payload.count
            let header = ipv4Header(protocol: 17, source: loopbackIPv4, destination: loopbackIPv4, payloadLength: udpLength)
                + [0x9C, 0x40, UInt8(receiver.localPort >> 8), UInt8(receiver.localPort & 0xFF)]  // UDP 40000 -> port
                + [UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0x00, 0x00]  // length, checksum 0 (none, IPv4)
            #expect(header.count == 28)
            tx.append(target: out, remote: loopback, buffer: buffer, offset: offset, length: length) {
                writeHeader(header, into: $0)
            }
        }
        let report = engine.transmit(tx)
        #expect(report.sent == count, "report: \(report)")
        for frame in tx.frames { engine.pool.give(frame.buffer) }

        var rx = RxBatch(capacity: 32)
        try receiveUntil(engine, &rx) { $0.count >= count }
        #expect(rx.count == count)
        for (sequence, frame) in rx.frames.enumerated() {
            #expect(frame.source == inbound)
            #expect(frame.remote == loopback)
            #expect(bytes(of: frame, in: engine) == [UInt8(sequence)] + Array("vxswitch raw sender".utf8))
            engine.release(frame.buffer)
        }
    }

    @Test func rawGRESocketReceivesGREFromTheRawSenderWithTheOuterHeader() throws {
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        let sender = try TunnelSockets.openRawSender()
        let gre = try TunnelSockets.openRawGRE(local: UnderlayAddress(loopbackIPv4))
        let out = try engine.register(fd: sender.fileDescriptor.rawValue, kind: .rawSender)
        let inbound = try engine.register(fd: gre.fileDescriptor.rawValue, kind: .rawGRE)

        let marker = Array("gre-\(runID)".utf8)
        let inner = ethernetFrame(
            dst: .broadcast, src: MACAddress(0x02, 0, 0, 0, 0, 1), etherType: experimentalEtherType, payload: marker)
        let greHeader: [UInt8] = [0x00, 0x00, 0x65, 0x58]  // no flags, version 0, protocol 0x6558 (TEB)
        let header = ipv4Header(protocol: 47, source: loopbackIPv4, destination: loopbackIPv4, payloadLength: 4 + inner.count)
            + greHeader
        let (buffer, offset, length) = try stage(inner, in: engine.pool)
        let tx = TxBatch(capacity: 2)
        tx.append(target: out, remote: loopback, buffer: buffer, offset: offset, length: length) {
            writeHeader(header, into: $0)
        }
        #expect(engine.transmit(tx).sent == 1)
        engine.pool.give(buffer)

        var rx = RxBatch(capacity: 16)
        var datagram: [UInt8]? = nil
        for _ in 0..<20 where datagram == nil {  // other GRE on this host's loopback is skipped by the marker
            _ = try engine.receive(into: &rx, timeout: .milliseconds(100))
            for frame in rx.frames {
                let data = bytes(of: frame, in: engine)
                if frame.source == inbound, data.count == 24 + inner.count, Array(data[24...]) == inner {
                    #expect(frame.remote == loopback)
                    datagram = data
                }
                engine.release(frame.buffer)
            }
            rx.reset()
        }
        let received = try #require(datagram, "GRE packet not received")
        #expect(received[0] == 0x45, "starts with the outer IPv4 header")
        #expect(received[9] == 47, "protocol GRE")
        #expect(Array(received[20..<24]) == greHeader)
    }

    @Test func tapFramesFlowBothWaysThroughTheEngine() throws {
        let tap = try TAPDevice(name: uniqueTAPName())
        // No IPv6 on the test TAP: no router solicitations or DAD probes mixed into what we read.
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(tap.name)/disable_ipv6", atomically: false, encoding: .utf8)
        try tap.setUp(true)
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        let port = try engine.register(fd: tap.fileDescriptor.rawValue, kind: tap.portKind)
        let kernelSide = try PacketSocket(ifindex: try tap.interfaceIndex())
        let tapMAC = try tap.macAddress()

        // Kernel -> engine: a frame transmitted on the interface comes out of our descriptor.
        let marker = Array("to-engine-\(runID)".utf8)
        let inbound = ethernetFrame(dst: .broadcast, src: MACAddress(0x02, 0, 0, 0, 0, 9), etherType: experimentalEtherType, payload: marker)
        #expect(kernelSide.send(inbound))
        var rx = RxBatch(capacity: 16)
        try receiveUntil(engine, &rx) { batch in batch.frames.contains { bytes(of: $0, in: engine) == inbound } }
        #expect(rx.frames.contains { $0.source == port && $0.remote == .any && bytes(of: $0, in: engine) == inbound })
        for frame in rx.frames { engine.release(frame.buffer) }

        // Engine -> kernel: header slot (Ethernet header) + payload buffer, one writev.
        let rxBefore = interfaceCounter(tap.name, "rx_packets") ?? 0
        let payload = Array("to-kernel-\(runID)".utf8) + [UInt8](repeating: 0x77, count: 40)
        let ethernet = Array(ethernetFrame(dst: tapMAC, src: MACAddress(0x02, 0, 0, 0, 0, 8), etherType: experimentalEtherType, payload: []))
        let (buffer, offset, length) = try stage(payload, in: engine.pool)
        let tx = TxBatch(capacity: 2)
        tx.append(target: port, remote: .any, buffer: buffer, offset: offset, length: length) { writeHeader(ethernet, into: $0) }
        let report = engine.transmit(tx)
        engine.pool.give(buffer)
        #expect(report.sent == 1, "report: \(report)")
        let seen = kernelSide.receive { $0 == ethernet + payload }
        #expect(seen != nil, "the kernel received the frame on \(tap.name)")
        #expect((interfaceCounter(tap.name, "rx_packets") ?? 0) > rxBefore)
    }

    @Test func tapKeepsWorkingAfterMovingIntoAnotherNamespace() throws {
        let namespace = try TestNamespace("io")
        defer { namespace.delete() }
        let tap = try TAPDevice(name: uniqueTAPName())
        let engine = try EpollEngine(pool: PacketBufferPool(count: 64))
        let port = try engine.register(fd: tap.fileDescriptor.rawValue, kind: tap.portKind)
        let octet = UInt8.random(in: 1...250)
        let local = IPv4Address(10, 201, octet, 1)
        let neighbour = IPv4Address(10, 201, octet, 2)
        let neighbourMAC = MACAddress(0x02, 0x00, 0x5E, 0x00, 0x00, octet)
        try #require(try run(["ip", "link", "set", tap.name, "netns", namespace.name]).status == 0)
        try namespace.exec(["sysctl", "-q", "-w", "net.ipv6.conf.\(tap.name).disable_ipv6=1"])
        try #require(try namespace.exec(["ip", "addr", "add", "\(local)/24", "dev", tap.name]).status == 0)
        try #require(try namespace.exec(["ip", "link", "set", tap.name, "up"]).status == 0)
        #expect(throws: IOError.self, "name-based ioctls look the name up in our namespace") { try tap.interfaceIndex() }

        // Kernel (in the namespace) -> engine: ping a neighbour, so the kernel sends ARP requests out of the TAP.
        let ping = Process()
        ping.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ping.arguments = ["ip", "netns", "exec", namespace.name, "ping", "-c", "3", "-i", "0.3", "-W", "1", "\(neighbour)"]
        ping.standardOutput = FileHandle.nullDevice
        ping.standardError = FileHandle.nullDevice
        try ping.run()
        defer {
            if ping.isRunning { kill(ping.processIdentifier, SIGKILL) }
            ping.waitUntilExit()
        }
        var request: [UInt8]? = nil
        var rx = RxBatch(capacity: 16)
        for _ in 0..<50 where request == nil {
            _ = try engine.receive(into: &rx, timeout: .milliseconds(100))
            for frame in rx.frames {
                let data = bytes(of: frame, in: engine)
                // ARP (0x0806), opcode 1, target protocol address = neighbour.
                if frame.source == port, data.count >= 42, data[12] == 0x08, data[13] == 0x06, data[21] == 1,
                    Array(data[38..<42]) == [10, 201, octet, 2]
                {
                    request = data
                }
                engine.release(frame.buffer)
            }
            rx.reset()
        }
        let arpRequest = try #require(request, "no ARP request from the namespace reached the engine")
        let namespaceMAC = Array(arpRequest[6..<12])

        // Engine -> kernel: answer the ARP request; the namespace's kernel must learn the neighbour.
        let macBytes = (0..<6).map { neighbourMAC[octet: $0] }
        let ipBytes: (IPv4Address) -> [UInt8] = { a in [UInt8(a.value >> 24), UInt8(a.value >> 16 & 0xFF), UInt8(a.value >> 8 & 0xFF), UInt8(a.value & 0xFF)] }
        let arpReply: [UInt8] = [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02] + macBytes + ipBytes(neighbour) + namespaceMAC + ipBytes(local)
        let ethernet = namespaceMAC + macBytes + [0x08, 0x06]
        let rxBefore = Int(try namespace.exec(["cat", "/sys/class/net/\(tap.name)/statistics/rx_packets"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        let (buffer, offset, length) = try stage(arpReply, in: engine.pool)
        let tx = TxBatch(capacity: 1)
        tx.append(target: port, remote: .any, buffer: buffer, offset: offset, length: length) { writeHeader(ethernet, into: $0) }
        #expect(engine.transmit(tx).sent == 1)
        engine.pool.give(buffer)
        var learned = false
        for _ in 0..<20 where !learned {
            let neighbours = try namespace.exec(["ip", "neigh", "show", "\(neighbour)", "dev", tap.name]).output
            learned = neighbours.contains(neighbourMAC.description)
            if !learned { usleep(50_000) }
        }
        #expect(learned, "the namespace's kernel learned \(neighbour) from the engine's ARP reply")
        let rxAfter = Int(try namespace.exec(["cat", "/sys/class/net/\(tap.name)/statistics/rx_packets"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(rxAfter > rxBefore && rxBefore >= 0)
        engine.unregister(port)
    }
}

@Suite("TAPDevice (root)", .enabled(if: hasNetAdmin, Comment(rawValue: needsRootMessage)))
struct TAPDeviceTests {
    @Test func configuresMTULinkStateIndexAndMAC() throws {
        let tap = try TAPDevice(name: uniqueTAPName())
        #expect(tap.name.hasPrefix("vxt"))
        try tap.setMTU(1400)
        #expect(try tap.mtu() == 1400)
        #expect(try tap.isUp() == false)
        try tap.setUp(true)
        #expect(try tap.isUp())
        try tap.setUp(false)
        #expect(try tap.isUp() == false)
        let index = try tap.interfaceIndex()
        #expect(index > 0)
        #expect(try String(contentsOfFile: "/sys/class/net/\(tap.name)/ifindex", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines) == String(index))
        let mac = try tap.macAddress()
        #expect(!mac.isZero && !mac.isMulticast)
        let sysfsMAC = try String(contentsOfFile: "/sys/class/net/\(tap.name)/address", encoding: .utf8)
        #expect(sysfsMAC.trimmingCharacters(in: .whitespacesAndNewlines) == mac.description)
    }

    @Test func nonPersistentTAPGoesAwayWithItsDescriptor() throws {
        let name = uniqueTAPName()
        var tap: TAPDevice? = try TAPDevice(name: name)
        #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(name)"))
        tap = nil
        _ = consume tap
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(name)"))
    }

    @Test func persistentTAPOutlivesItsDescriptorUntilDeleted() throws {
        let name = uniqueTAPName()
        let tap = try TAPDevice(name: name)
        try tap.setPersistent(true)
        tap.close()
        defer { if let again = try? TAPDevice(name: name) { try? again.delete() } }
        #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(name)"), "persistent TAP survived close")
        let reattached = try TAPDevice(name: name)
        try reattached.delete()
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(name)"))
    }

    @Test func nameOfANonTAPInterfaceIsRefusedWithAnExplanation() throws {
        do {
            _ = try TAPDevice(name: "lo")
            Issue.record("attached a TAP to lo")
        } catch {
            #expect(error.errno == EINVAL || error.errno == EBUSY)
            #expect(error.operation == "TUNSETIFF lo")
            #expect(error.description.contains("not a TAP"))
        }
    }

    @Test func virtioHeaderTAPHandsFramesOverWithTheHeaderInALargeBuffer() throws {
        let tap = try TAPDevice(name: uniqueTAPName(), options: [.virtioHeader])
        #expect(tap.portKind == .tap(virtioHeader: true))
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(tap.name)/disable_ipv6", atomically: false, encoding: .utf8)
        try tap.setUp(true)
        let engine = try EpollEngine(pool: PacketBufferPool(count: 16, largeCount: 2))
        let port = try engine.register(fd: tap.fileDescriptor.rawValue, kind: tap.portKind)
        let kernelSide = try PacketSocket(ifindex: try tap.interfaceIndex())
        let inbound = ethernetFrame(dst: .broadcast, src: MACAddress(0x02, 0, 0, 0, 0, 7), etherType: experimentalEtherType,
                                    payload: Array("vnet-\(runID)".utf8))
        #expect(kernelSide.send(inbound))
        var rx = RxBatch(capacity: 8)
        let carriesInbound = { (frame: ReceivedFrame) in
            bytes(of: frame, in: engine).dropFirst(12).elementsEqual(inbound)
        }
        try receiveUntil(engine, &rx) { batch in batch.frames.contains(where: carriesInbound) }
        let frame = try #require(rx.frames.first { $0.source == port && carriesInbound($0) })
        #expect(engine.pool.isLarge(frame.buffer), "virtio TAP reads go to large buffers")
        #expect(Int(frame.offset) == engine.pool.headroom - 12, "the header first, the Ethernet frame at the headroom")
        #expect(bytes(of: frame, in: engine).prefix(2) == [0, 0], "no checksum or GSO work on a raw frame")
        for frame in rx.frames { engine.release(frame.buffer) }

        let outbound = ethernetFrame(dst: try tap.macAddress(), src: MACAddress(0x02, 0, 0, 0, 0, 6),
                                     etherType: experimentalEtherType, payload: Array("vnet-out-\(runID)".utf8))
        let (buffer, offset, length) = try stage(outbound, in: engine.pool)
        let tx = TxBatch(capacity: 1)
        tx.append(target: port, remote: .any, buffer: buffer, offset: offset, length: length) { slot in
            slot.initializeMemory(as: UInt8.self, repeating: 0)  // a plain 12-byte virtio-net header
            return 12
        }
        #expect(engine.transmit(tx).sent == 1)
        engine.pool.give(buffer)
        #expect(kernelSide.receive { $0 == outbound } != nil, "the header from the slot was consumed by the kernel")
    }

    @Test func virtioHeaderTAPNeedsLargeBuffers() throws {
        let tap = try TAPDevice(name: uniqueTAPName(), options: [.virtioHeader])
        let engine = try EpollEngine(pool: PacketBufferPool(count: 16))
        #expect(throws: IOError.self) { try engine.register(fd: tap.fileDescriptor.rawValue, kind: tap.portKind) }
    }
}
