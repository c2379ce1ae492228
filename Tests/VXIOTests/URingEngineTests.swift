// URingEngine against real kernel objects: loopback UDP sockets, a raw IPv4 sender and a TAP of our own.
// Every loop is bounded by a deadline or a count; every fd and TAP is released in `defer`.

#if os(Linux)
#if canImport(Musl)
import Musl
#elseif canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import VXIO
import VXPacket

@Suite(.enabled(if: URingEngine.isSupported, "io_uring unsupported on this kernel: \(URingEngine.support)"))
struct URingEngineTests {
    @Test func udpDatagramsArriveWithTheirBytesAndSender() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 64))
        let receiver = try LoopbackUDPSocket()
        let sender = try LoopbackUDPSocket()
        let handle = try engine.register(fd: receiver.fd, kind: .udpTunnel)
        defer { engine.unregister(handle) }

        let payload: [UInt8] = [0x08, 0, 0, 0, 0, 0, 0x2A, 0] + Array("inner frame".utf8)
        #expect(sender.send(payload, toPort: receiver.port))
        let result = try engine.collect(seconds: 2) { $0.count >= 1 }

        try #require(result.frames.count == 1)
        #expect(result.frames[0].0 == handle)
        #expect(result.frames[0].1 == UnderlayAddress(127, 0, 0, 1))
        #expect(result.frames[0].2 == payload)
    }

    @Test func manyDatagramsArriveInBatchesWithNoneLost() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 512))
        let receiver = try LoopbackUDPSocket()
        let sender = try LoopbackUDPSocket()
        let handle = try engine.register(fd: receiver.fd, kind: .udpTunnel)
        defer { engine.unregister(handle) }
        // Arm the multishot recvmsg before the burst.
        var batch = RxBatch(capacity: 8)
        _ = try engine.receive(into: &batch, timeout: .zero)

        let total = 200
        for index in 0..<total {
            #expect(sender.send([UInt8(index >> 8), UInt8(index & 0xFF)] + Array(repeating: 0x5A, count: 62), toPort: receiver.port))
        }
        let result = try engine.collect(seconds: 5) { $0.count >= total }

        let indices = result.frames.map { Int($0.2[0]) << 8 | Int($0.2[1]) }
        #expect(indices.count == total)
        #expect(Set(indices) == Set(0..<total))
        #expect(result.frames.allSatisfy { $0.0 == handle && $0.1 == UnderlayAddress(127, 0, 0, 1) && $0.2.count == 64 })
        #expect(result.largestBatch > 1, "every receive returned a single frame")
        #expect(engine.stats.largestReceive > 1)
    }

    @Test(.enabled(if: runningAsRoot, "needs root for SOCK_RAW"))
    func rawSenderDeliversAHandBuiltIPv4UDPPacket() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 16), poolReserve: 4)
        let raw = try RawIPv4Socket()
        let receiver = try LoopbackUDPSocket()
        let handle = try engine.register(fd: raw.fd, kind: .rawSender)
        defer { engine.unregister(handle) }

        let payload = Array("through io_uring sendmsg".utf8)
        let buffer = try #require(engine.pool.take())
        defer { engine.pool.give(buffer) }  // taken from the pool, not received: it goes back to the pool
        let offset = engine.pool.headroom
        let bytes = engine.pool.unsafeBytes(of: buffer, offset: offset, length: payload.count)
        bytes.copyBytes(from: payload)

        let batch = TxBatch(capacity: 4)
        let receiverPort = receiver.port
        batch.append(
            target: handle, remote: UnderlayAddress(127, 0, 0, 1), buffer: buffer, offset: UInt32(offset),
            length: UInt32(payload.count)
        ) { slot in
            // IPv4 (RFC 791): version/IHL, TOS, total length, ID, flags/fragment, TTL, protocol 17, checksum
            // (0: the kernel fills it for IPPROTO_RAW), source, destination (both 127.0.0.1).
            let total = 20 + 8 + payload.count
            let ipv4: [UInt8] = [
                0x45, 0x00, UInt8(total >> 8), UInt8(total & 0xFF), 0x00, 0x00, 0x40, 0x00, 64, 17, 0x00, 0x00,
                127, 0, 0, 1, 127, 0, 0, 1,
            ]
            // UDP (RFC 768): source port 40000, destination, length, checksum 0 (none, allowed over IPv4).
            let udp: [UInt8] = [
                0x9C, 0x40, UInt8(receiverPort >> 8), UInt8(receiverPort & 0xFF), UInt8((8 + payload.count) >> 8),
                UInt8((8 + payload.count) & 0xFF), 0, 0,
            ]
            slot.copyBytes(from: ipv4 + udp)
            return ipv4.count + udp.count
        }
        let report = engine.transmit(batch)

        #expect(report.sent == 1, "report: \(report)")
        #expect(receiver.receive(waitingMilliseconds: 2000) == payload)
    }

    @Test(.enabled(if: runningAsRoot, "needs root for SOCK_RAW"))
    func receiveCompletionsSeenDuringTransmitAreStashedForTheNextReceive() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 64), poolReserve: 4)
        let raw = try RawIPv4Socket()
        let receiver = try LoopbackUDPSocket()
        let sender = try LoopbackUDPSocket()
        let rawHandle = try engine.register(fd: raw.fd, kind: .rawSender)
        let udpHandle = try engine.register(fd: receiver.fd, kind: .udpTunnel)
        defer {
            engine.unregister(rawHandle)
            engine.unregister(udpHandle)
        }
        var batch = RxBatch(capacity: 16)
        _ = try engine.receive(into: &batch, timeout: .zero)  // arms the recvmsg
        for index in 0..<5 {
            #expect(sender.send([0xA0 | UInt8(index)], toPort: receiver.port))
        }

        // A send to 127.0.0.1:9 (nobody listens; the datagram is simply dropped by the kernel): while the engine
        // waits for its completion, the five receive completions come in too.
        let buffer = try #require(engine.pool.take())
        defer { engine.pool.give(buffer) }  // taken from the pool, not received: it goes back to the pool
        let tx = TxBatch(capacity: 1)
        tx.append(target: rawHandle, remote: UnderlayAddress(127, 0, 0, 1), buffer: buffer, offset: 0, length: 0) { slot in
            let header: [UInt8] = [
                0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,  // IPv4, 28 bytes total
                0x9C, 0x40, 0x00, 0x09, 0x00, 0x08, 0, 0,  // UDP 40000 -> 9, length 8, no checksum
            ]
            slot.copyBytes(from: header)
            return header.count
        }
        #expect(engine.transmit(tx).sent == 1)
        #expect(engine.stats.stashed == 5)

        batch.reset()
        let outcome = try engine.receive(into: &batch, timeout: .zero)
        #expect(outcome == .frames(5))
        #expect(batch.frames.map { engine.bytes(of: $0)[0] } == [0xA0, 0xA1, 0xA2, 0xA3, 0xA4])
        batch.frames.forEach { engine.release($0.buffer) }
    }

    @Test(.enabled(if: runningAsRoot, "needs root to create a TAP"))
    func tapReceivesKernelFramesAndKernelSeesTransmittedFrames() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 64), poolReserve: 4)
        let tap = try TestTAP()
        defer { tap.close() }
        let handle = try engine.register(fd: tap.fd, kind: .tap(virtioHeader: false))
        defer { engine.unregister(handle) }

        // Kernel -> TAP: ARP requests for 10.213.x.2, provoked a few times in case the first precedes the arm.
        var frames: [(PortHandle, UnderlayAddress, [UInt8])] = []
        for _ in 0..<5 where !frames.contains(where: isARPRequest) {
            try tap.provokeARP()
            frames += try engine.collect(seconds: 1.2) { $0.contains(where: isARPRequest) }.frames
        }
        let arp = try #require(frames.first(where: isARPRequest), "no ARP request read from \(tap.name)")
        #expect(arp.0 == handle)
        #expect(arp.1 == .any)
        #expect(Array(arp.2[38..<42]) == [10, 213, tap.subnet, 2], "ARP target protocol address")
        #expect(engine.stats.multishotFallbacks == 0 || !URingEngine.support.multishotRead)

        // TAP -> kernel: an ARP request from 10.213.x.2 written as Ethernet header (header slot) + ARP body
        // (pool buffer), i.e. a two-iovec writev.
        let before = try #require(tap.kernelReceivedPackets())
        let buffer = try #require(engine.pool.take())
        defer { engine.pool.give(buffer) }  // taken from the pool, not received: it goes back to the pool
        let body: [UInt8] = [
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,  // Ethernet/IPv4, request
            0x02, 0x00, 0x00, 0x76, 0x78, 0x75, 10, 213, tap.subnet, 2,  // sender MAC, IP
            0, 0, 0, 0, 0, 0, 10, 213, tap.subnet, 1,  // target MAC (unknown), IP
        ]
        engine.pool.unsafeBytes(of: buffer, offset: engine.pool.headroom, length: body.count).copyBytes(from: body)
        let batch = TxBatch(capacity: 4)
        batch.append(target: handle, remote: .any, buffer: buffer, offset: UInt32(engine.pool.headroom), length: UInt32(body.count)) { slot in
            let ethernet: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0x00, 0x00, 0x76, 0x78, 0x75, 0x08, 0x06]
            slot.copyBytes(from: ethernet)
            return ethernet.count
        }
        let report = engine.transmit(batch)
        #expect(report.sent == 1, "report: \(report)")
        let after = try #require(tap.kernelReceivedPackets())
        #expect(after > before, "rx_packets of \(tap.name) did not increase")
    }

    @Test("the kernel writes into at most largeRingLimit large buffers, the same ones lap after lap")
    func largeBuffersCycleWithinTheRingLimit() throws {
        let pool = PacketBufferPool(count: 64, largeCount: 200)
        let engine = try URingEngine(pool: pool, largePoolReserve: 8)
        #expect(pool.availableLarge == 200 - URingEngine.defaultLargeRingLimit, "the rest stays in the pool")
        let receiver = try LoopbackUDPSocket()  // a tunnel socket reads into the large ring
        let sender = try LoopbackUDPSocket()
        let handle = try engine.register(fd: receiver.fd, kind: .udpTunnel)
        defer { engine.unregister(handle) }

        // One datagram at a time, released at once: with the whole pool in the ring the kernel would walk all
        // 192 offered buffers (and every one would go cold in between); with the limit it reuses 64.
        var used = Set<BufferID>()
        var batch = RxBatch(capacity: 8)
        let deadline = ContinuousClock.now + .seconds(10)
        for index in 0..<300 {
            #expect(sender.send([UInt8(index & 0xFF)], toPort: receiver.port))
            var received = false
            while !received, ContinuousClock.now < deadline {
                batch.reset()
                _ = try engine.receive(into: &batch, timeout: .milliseconds(50))
                for frame in batch.frames {
                    #expect(pool.isLarge(frame.buffer))
                    used.insert(frame.buffer)
                    engine.release(frame.buffer)
                    received = true
                }
            }
            try #require(received, "datagram \(index) did not arrive")
        }
        #expect(used.count == URingEngine.defaultLargeRingLimit, "more buffers than the limit, or not walked as a ring")
    }

    @Test func exhaustedBufferRingIsReArmedAfterRelease() throws {
        // 4 buffers, 16 datagrams: the multishot recvmsg ends with ENOBUFS at least once and must come back.
        let engine = try URingEngine(pool: PacketBufferPool(count: 4))
        let receiver = try LoopbackUDPSocket()
        let sender = try LoopbackUDPSocket()
        let handle = try engine.register(fd: receiver.fd, kind: .udpTunnel)
        defer { engine.unregister(handle) }
        var batch = RxBatch(capacity: 16)
        _ = try engine.receive(into: &batch, timeout: .zero)
        #expect(batch.count == 0)

        let total = 16
        for index in 0..<total {
            #expect(sender.send([UInt8(index)], toPort: receiver.port))
        }
        // Hold the first batch's buffers across one more receive so the ring stays dry while data waits.
        var held: [BufferID] = []
        var seen: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while seen.count < total, ContinuousClock.now < deadline {
            batch.reset()
            _ = try engine.receive(into: &batch, timeout: .milliseconds(50))
            #expect(batch.count <= 4)
            for frame in batch.frames {
                seen.append(engine.bytes(of: frame)[0])
                held.append(frame.buffer)
            }
            if held.count == 4 || batch.count == 0 {
                if engine.stats.bufferRingEmpty == 0 {
                    // Give the kernel a pass with an empty buffer ring before releasing.
                    batch.reset()
                    _ = try engine.receive(into: &batch, timeout: .milliseconds(50))
                    #expect(batch.count == 0)
                }
                held.forEach(engine.release)
                held.removeAll()
            }
        }
        held.forEach(engine.release)

        #expect(seen == (0..<UInt8(total)).map { $0 })
        #expect(engine.stats.bufferRingEmpty >= 1)
        #expect(engine.stats.arms >= 2)
    }

    @Test func wakeFromAnotherThreadInterruptsABlockingReceive() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 8))
        let waker = engine.waker
        let thread = Thread {
            usleep(100_000)
            waker.wake()
        }
        let start = ContinuousClock.now
        thread.start()
        var batch = RxBatch(capacity: 8)
        let outcome = try engine.receive(into: &batch, timeout: .seconds(10))

        #expect(outcome == .woken(frames: 0))
        #expect(ContinuousClock.now - start < .seconds(5))
        // The wake is consumed: the next receive times out.
        #expect(try engine.receive(into: &batch, timeout: .milliseconds(50)) == .timedOut)
    }

    @Test func completionsOfAnUnregisteredPortAreIgnoredAndTheirBuffersReturned() throws {
        // 8 buffers: if the cancelled port's buffers leaked, the second port could not receive 8 datagrams.
        let engine = try URingEngine(pool: PacketBufferPool(count: 8))
        let first = try LoopbackUDPSocket()
        let sender = try LoopbackUDPSocket()
        let firstHandle = try engine.register(fd: first.fd, kind: .udpTunnel)
        var batch = RxBatch(capacity: 8)
        _ = try engine.receive(into: &batch, timeout: .zero)
        for index in 0..<6 {
            #expect(sender.send([0xF0 | UInt8(index)], toPort: first.port))
        }
        // Let the kernel fill buffers for the first port (completions not yet harvested: capacity 0).
        var full = RxBatch(capacity: 1)
        full.append(ReceivedFrame(source: firstHandle, buffer: BufferID(0), offset: 0, length: 0, remote: .any))
        _ = try engine.receive(into: &full, timeout: .milliseconds(20))
        engine.unregister(firstHandle)
        engine.unregister(firstHandle)  // twice: a no-op

        let second = try LoopbackUDPSocket()
        let secondHandle = try engine.register(fd: second.fd, kind: .udpTunnel)
        defer { engine.unregister(secondHandle) }
        #expect(secondHandle != firstHandle)
        for index in 0..<8 {
            #expect(sender.send([UInt8(index)], toPort: second.port))
        }
        let result = try engine.collect(seconds: 3, capacity: 8) { $0.count >= 8 }

        #expect(result.frames.allSatisfy { $0.0 == secondHandle }, "a cancelled port's frame was delivered")
        #expect(result.frames.map { $0.2[0] } == Array(0..<8))
        // A transmit to the unregistered handle is dropped, not sent.
        let tx = TxBatch(capacity: 1)
        tx.append(target: firstHandle, buffer: BufferID(0), offset: 0, length: 1)
        let report = engine.transmit(tx)
        #expect(report.sent == 0 && report.droppedError == 1)
    }
}

private func isARPRequest(_ frame: (PortHandle, UnderlayAddress, [UInt8])) -> Bool {
    frame.2.count >= 42 && frame.2[12] == 0x08 && frame.2[13] == 0x06 && frame.2[20] == 0x00 && frame.2[21] == 0x01
}
#endif
