// The daemon's packet buffers as one budget split over its workers: 2 workers keep the per-worker pools they
// always had, more workers share the same memory, and no worker drops below what it needs for full batches.

import Testing
import VXDataplane
import VXIO
import VXPacket
import VXTestSupport
@testable import VXDaemon

@Suite("packet buffers: one budget for the switch, split over its workers")
struct WorkerPoolShareTests {
    static let budget = DaemonOptions(local: InProcessSwitch.local).bufferBudget
    static let ceiling = DaemonOptions(local: InProcessSwitch.local).bufferCeiling
    static let floor = DataplaneWorker<MemoryEngine>.minimumPool

    static func share(_ workers: Int) -> PacketBufferPool.Counts {
        PacketBufferPool.workerShare(of: budget, workers: workers, floor: floor, ceiling: ceiling)
    }

    @Test("the floor is the worker's own reserves plus one receive batch")
    func floorIsReservesPlusOneBatch() {
        #expect(Self.floor == PacketBufferPool.Counts(standard: 256 + 64, large: 8 + 32 + 64))
    }

    @Test("2 workers keep the pools vxswitchd always gave each worker")
    func twoWorkersKeepTodaysPools() {
        #expect(Self.budget == PacketBufferPool.Counts(standard: 8192, large: 384))
        #expect(Self.share(2) == PacketBufferPool.Counts(standard: 4096, large: 192))
    }

    @Test(
        "each worker's share: the budget split evenly, at most the 2-worker share, raised to the floor",
        arguments: [
            (1, PacketBufferPool.Counts(standard: 4096, large: 192)),
            (2, PacketBufferPool.Counts(standard: 4096, large: 192)),
            (3, PacketBufferPool.Counts(standard: 2730, large: 128)),
            (4, PacketBufferPool.Counts(standard: 2048, large: 104)),
            (8, PacketBufferPool.Counts(standard: 1024, large: 104)),
            (64, PacketBufferPool.Counts(standard: 320, large: 104)),
        ])
    func shares(workers: Int, expected: PacketBufferPool.Counts) {
        let share = Self.share(workers)
        #expect(share == expected)
        #expect(share.standard >= Self.floor.standard && share.large >= Self.floor.large)
        #expect(share.standard <= Self.ceiling.standard && share.large <= Self.ceiling.large)
        // Over the budget only where the floor raised the share.
        #expect(share.standard * workers <= Self.budget.standard || share.standard == Self.floor.standard)
        #expect(share.large * workers <= Self.budget.large || share.large == Self.floor.large)
        // Still a pool the engines can number with 16-bit buffer IDs.
        #expect(share.standard + share.large <= 65_536)
    }

    @Test("every worker count vxswitchd accepts gets at least the floor and, above it, stays within the budget")
    func everyWorkerCount() {
        for workers in 1...DaemonOptions.maxWorkers {
            let share = Self.share(workers)
            #expect(share.standard >= Self.floor.standard && share.large >= Self.floor.large, "\(workers)")
            #expect(share.standard == Self.floor.standard || share.standard * workers <= Self.budget.standard)
            #expect(share.large == Self.floor.large || share.large * workers <= Self.budget.large)
        }
    }

    @Test("workers with floor-sized pools switch full batches: a 64-datagram GRO read and a burst of 64 floods")
    func floorSizedWorkersSwitchFullBatches() async throws {
        let sw = try InProcessSwitch(workers: 2, standardBuffers: Self.floor.standard, largeBuffers: Self.floor.large)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-port", #"{"name":"tap2","vni":42}"#)
        let peer = UnderlayAddress(192, 0, 2, 12)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let batch = DataplaneWorker<MemoryEngine>.defaultBatchSize

        // Worker 0: a batch of broadcasts from tap1, each flooded to tap2 and the peer.
        let tap1 = try sw.handle(ofPort: "tap1", worker: 0)
        for index in 0..<batch {
            let request = arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 1, UInt8(index)))
            #expect(sw.engine(0).inject(request, into: tap1))
        }
        let tap2 = try sw.handle(ofPort: "tap2", worker: 0)
        let sender = try #require(sw.senderHandle(worker: 0))
        var flooded = 0
        var tunnelled = 0
        for _ in 0..<200 where flooded < batch || tunnelled < batch {
            flooded += sw.engine(0).drainTransmitted(from: tap2).count
            tunnelled += sw.engine(0).drainTransmitted(from: sender).count
            if flooded < batch || tunnelled < batch { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(flooded == batch && tunnelled == batch)

        // Worker 1: one GRO read of a batch of datagrams, every inner frame to tap1 (learnt by worker 0).
        let reply = PacketBuilder.arpReply(
            senderMAC: containerB, senderIP: IPv4Address(10, 0, 0, 2), targetMAC: containerA,
            targetIP: IPv4Address(10, 0, 0, 1))
        let datagram = PacketBuilder.vxlanDatagram(vni: VNI(42)!, inner: reply)
        let tunnel = try #require(sw.tunnelHandle(worker: 1))
        #expect(sw.engine(1).inject(
            Array([[UInt8]](repeating: datagram, count: batch).joined()), into: tunnel, remote: peer,
            segmentSize: UInt32(datagram.count)))
        let queue = try sw.handle(ofPort: "tap1", worker: 1)
        var delivered = 0
        for _ in 0..<200 where delivered < batch {
            delivered += sw.engine(1).drainTransmitted(from: queue).count
            if delivered < batch { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(delivered == batch)

        let drops = try await sw.result("stats")["drops"] as? [String: Any] ?? [:]
        #expect(drops.isEmpty, "\(drops)")
    }
}
