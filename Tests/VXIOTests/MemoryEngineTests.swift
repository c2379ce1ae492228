import Dispatch
import Testing
import VXIO
import VXPacket

@Suite("MemoryEngine")
struct MemoryEngineTests {
    @Test func virtioTAPFramesLandInLargeBuffersWithTheirHeaderFirst() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4, largeCount: 1))
        let tap = try engine.register(fd: 100, kind: .tap(virtioHeader: true))
        // A 12-byte virtio-net header (gso NONE) + 60 KB: more than a standard buffer holds.
        let injected = [UInt8](repeating: 0, count: 12) + (0..<60_000).map { UInt8(truncatingIfNeeded: $0) }
        #expect(engine.inject(injected, into: tap))
        #expect(engine.inject(injected, into: tap))
        var rx = RxBatch(capacity: 8)
        #expect(try engine.receive(into: &rx, timeout: .zero) == .frames(1), "one large buffer: one frame")
        let frame = try #require(rx.frames.first)
        #expect(engine.pool.isLarge(frame.buffer))
        #expect(Int(frame.offset) == engine.pool.headroom - 12)
        #expect(bytes(of: frame, in: engine) == injected)
        engine.release(frame.buffer)
        rx.reset()
        #expect(try engine.receive(into: &rx, timeout: .zero) == .frames(1), "the second once the first is released")
        rx.frames.forEach { engine.release($0.buffer) }

        let plain = MemoryEngine(pool: PacketBufferPool(count: 4))
        #expect(throws: IOError.self) { try plain.register(fd: 1, kind: .tap(virtioHeader: true)) }
    }

    @Test func injectedFramesRoundTripThroughReceiveAndTransmit() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 16))
        let tap = try engine.register(fd: 100, kind: .tap(virtioHeader: false))
        let sender = try engine.register(fd: 101, kind: .rawSender)
        let peer = UnderlayAddress(198, 51, 100, 7)
        let frame: [UInt8] = Array(0..<60)
        #expect(engine.inject(frame, into: tap, remote: .any))

        var rx = RxBatch(capacity: 8)
        #expect(try engine.receive(into: &rx, timeout: .zero) == .frames(1))
        let received = try #require(rx.frames.first)
        #expect(received.source == tap)
        #expect(Int(received.offset) == engine.pool.headroom)
        #expect(bytes(of: received, in: engine) == frame)
        #expect(engine.buffersOutstanding == 1)

        let tx = TxBatch(capacity: 4)
        let header: [UInt8] = [0xAA, 0xBB, 0xCC]
        tx.append(target: sender, remote: peer, buffer: received.buffer, offset: received.offset, length: received.length) {
            writeHeader(header, into: $0)
        }
        tx.append(target: tap, buffer: received.buffer, offset: received.offset, length: received.length)
        let report = engine.transmit(tx)
        #expect(report.sent == 2 && report.droppedError == 0)
        engine.release(received.buffer)
        #expect(engine.buffersOutstanding == 0)
        #expect(engine.pool.available == 16)

        #expect(engine.drainTransmitted(from: sender) == [TransmittedFrame(bytes: header + frame, remote: peer)])
        #expect(engine.drainTransmitted(from: tap) == [TransmittedFrame(bytes: frame, remote: .any)])
        #expect(engine.drainTransmitted(from: tap).isEmpty, "drain empties the log")
    }

    @Test func tunnelFramesReportTheirRemote() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4))
        let udp = try engine.register(fd: 7, kind: .udpTunnel)
        engine.inject([1, 2, 3], into: udp, remote: UnderlayAddress(192, 0, 2, 9))
        var rx = RxBatch(capacity: 4)
        _ = try engine.receive(into: &rx, timeout: .zero)
        #expect(rx.frames.map(\.remote) == [UnderlayAddress(192, 0, 2, 9)])
        engine.release(rx.frames[0].buffer)
    }

    @Test func receiveTimesOutWhenNothingIsQueued() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4))
        _ = try engine.register(fd: 1, kind: .tap(virtioHeader: false))
        var rx = RxBatch(capacity: 4)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try engine.receive(into: &rx, timeout: .milliseconds(50)) == .timedOut)
        #expect(clock.now - started >= .milliseconds(45))
    }

    @Test func wakerInterruptsABlockingReceive() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4))
        _ = try engine.register(fd: 1, kind: .tap(virtioHeader: false))
        let waker = engine.waker
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { waker.wake() }
        var rx = RxBatch(capacity: 4)
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try engine.receive(into: &rx, timeout: nil) == .woken(frames: 0))
        #expect(clock.now - started < .seconds(5))
    }

    @Test func injectionFromAnotherThreadWakesReceive() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4))
        let tap = try engine.register(fd: 1, kind: .tap(virtioHeader: false))
        let wire = engine.wire
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { wire.inject([9, 9, 9], into: tap) }
        var rx = RxBatch(capacity: 4)
        #expect(try engine.receive(into: &rx, timeout: .seconds(5)) == .frames(1))
        engine.release(rx.frames[0].buffer)
    }

    @Test func emptyPoolLeavesFramesQueuedUntilBuffersReturn() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 2))
        let tap = try engine.register(fd: 1, kind: .tap(virtioHeader: false))
        for index in 0..<3 { engine.inject([UInt8(index)], into: tap) }
        var rx = RxBatch(capacity: 8)
        #expect(try engine.receive(into: &rx, timeout: .zero) == .frames(2))
        var more = RxBatch(capacity: 8)
        #expect(try engine.receive(into: &more, timeout: .seconds(5)) == .timedOut)  // returns at once: pool empty
        #expect(engine.poolExhausted == 1)
        #expect(engine.wire.pendingCount == 1)
        for frame in rx.frames { engine.release(frame.buffer) }
        #expect(try engine.receive(into: &more, timeout: .zero) == .frames(1))
        #expect(bytes(of: more.frames[0], in: engine) == [2])
        engine.release(more.frames[0].buffer)
    }

    @Test func transmitsToUnknownOrReceiveOnlyPortsAreCountedAsDropped() throws {
        let engine = MemoryEngine(pool: PacketBufferPool(count: 4))
        let tap = try engine.register(fd: 1, kind: .tap(virtioHeader: false))
        let udp = try engine.register(fd: 2, kind: .udpTunnel)
        engine.unregister(tap)
        #expect(!engine.inject([1], into: tap), "unregistered ports take no frames")
        let tx = TxBatch(capacity: 4)
        let (buffer, offset, length) = try stage([1, 2, 3], in: engine.pool)
        tx.append(target: tap, buffer: buffer, offset: offset, length: length)
        tx.append(target: udp, buffer: buffer, offset: offset, length: length)
        tx.append(target: PortHandle(raw: 999), buffer: buffer, offset: offset, length: length)
        let report = engine.transmit(tx)
        #expect(report.sent == 0)
        #expect(report.droppedError == 3)
    }
}
