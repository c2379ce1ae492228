// A URingEngine on the smallest pool vxswitchd gives a worker (`DataplaneWorker.minimumPool`) with the reserves
// vxswitchd creates it with: the worker still gets what it keeps for itself, and the kernel still has a whole
// receive batch of large buffers. Loopback UDP only, no root; skipped where io_uring is unusable.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#endif
import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXPacket
import VXTestSupport

@Suite(.enabled(if: URingEngine.isSupported, "io_uring unsupported on this kernel: \(URingEngine.support)"))
struct URingFloorPoolTests {
    typealias Worker = DataplaneWorker<URingEngine>

    @Test("a floor-sized pool leaves the worker its reserves and the kernel a full batch of large buffers")
    func floorSizedPoolReceivesAFullBatch() throws {
        let floor = Worker.minimumPool
        let pool = PacketBufferPool(count: floor.standard, largeCount: floor.large)
        let engine = try URingEngine(
            pool: pool, poolReserve: Worker.segmentBufferReserve, largePoolReserve: Worker.scratchBufferReserve)
        #expect(pool.available == Worker.segmentBufferReserve)
        #expect(pool.availableLarge == Worker.scratchBufferReserve)

        // Without UDP_GRO every datagram is one read into one large buffer (the tunnel socket's group).
        let receiver = try TunnelSockets.openUDP(local: UnderlayAddress(127, 0, 0, 1), port: 0, gro: false)
        let handle = try engine.register(fd: receiver.fileDescriptor.rawValue, kind: .udpTunnel)
        defer { engine.unregister(handle) }
        let batchSize = Worker.defaultBatchSize
        var batch = RxBatch(capacity: batchSize)
        _ = try engine.receive(into: &batch, timeout: .zero)  // arms the multishot recvmsg
        try #require(batch.count == 0)

        let sender = try PlainUDPSocket()
        for index in 0..<batchSize {
            try #require(sender.send([UInt8](repeating: UInt8(index), count: 100), to: receiver.localPort))
        }

        // Hold every buffer until the batch is complete: the ring alone must have had room for all of it. (Taking
        // its last buffer ends the multishot recvmsg with ENOBUFS on 6.x kernels, so `bufferRingEmpty` may count
        // one; the engine re-arms it once buffers come back.)
        var held: [BufferID] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while held.count < batchSize, ContinuousClock.now < deadline {
            batch.reset()
            _ = try engine.receive(into: &batch, timeout: .milliseconds(50))
            held += batch.frames.map(\.buffer)
        }
        #expect(held.count == batchSize)
        #expect(held.allSatisfy(pool.isLarge))
        held.forEach(engine.release)

        // The worker takes its coalescing scratch from what the engine left; TSO segments and GSO sends keep theirs.
        let worker = Worker(
            engine: engine, table: ForwardingTable(capacity: 1024), publisher: ConfigPublisher(),
            counters: WorkerCounters(maxPorts: 16, maxPeers: 16))
        #expect(pool.available == Worker.segmentBufferReserve)
        #expect(pool.availableLarge == Worker.gsoBufferReserve)
        withExtendedLifetime(worker) {}
    }
}
#endif
