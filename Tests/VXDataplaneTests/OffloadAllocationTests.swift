// The offload paths allocate nothing per frame: the worker runs TSO segmentation (TAP → peer) and coalescing
// (tunnel → virtio TAP) `VXDATAPLANE_LOOPS` times over an engine that itself allocates nothing after setup, so the
// process's allocation count must not grow with the loop count. Run it under heaptrack (docs/offload.md):
//
//   B=.build/x86_64-unknown-linux-gnu/debug/vxswitchPackageTests.xctest
//   VXDATAPLANE_LOOPS=1 heaptrack $B --testing-library swift-testing --filter offloadPathsAllocateNothingPerFrame
//   VXDATAPLANE_LOOPS=1001 heaptrack $B --testing-library swift-testing --filter offloadPathsAllocateNothingPerFrame
//
// Without heaptrack it is one more functional check of both paths (loop count 1 by default).

import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXOffload
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Wakes nobody: the replay engine never blocks.
struct NullWaker: EngineWaker {
    func wake() {}
}

/// A `PacketEngine` that replays a script of frames staged up front and only counts what is sent, allocating
/// nothing per frame (unlike MemoryEngine, whose queues and transmit log are arrays).
final class ReplayEngine: PacketEngine {
    let pool: PacketBufferPool
    let waker = NullWaker()
    private var kinds: [PortKind] = []
    /// The frames, in delivery order: the port, the bytes, the tunnel sender, the GRO segment size.
    private var script: [(handle: PortHandle, bytes: [UInt8], remote: UnderlayAddress, segmentSize: UInt32)] = []
    /// The next script entry `receive` delivers.
    var position = 0
    /// Frames `receive` may still deliver before it reports a timeout.
    var budget = 0
    /// Frames and bytes sent, per target handle slot (sized at registration).
    private(set) var sentFrames: [Int] = []
    private(set) var sentBytes: [Int] = []
    /// Transmit entries (a GSO send is one entry of many datagrams).
    private(set) var sentEntries = 0

    init(pool: PacketBufferPool) {
        self.pool = pool
    }

    func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle {
        kinds.append(kind)
        sentFrames.append(0)
        sentBytes.append(0)
        return PortHandle(raw: UInt32(kinds.count - 1))
    }

    func unregister(_ handle: PortHandle) {}

    /// Adds a frame to the script (setup only: this allocates).
    func stage(_ bytes: [UInt8], on handle: PortHandle, remote: UnderlayAddress = .any, segmentSize: UInt32 = 0) {
        script.append((handle, bytes, remote, segmentSize))
    }

    var scriptCount: Int { script.count }

    func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        var delivered = 0
        while budget > 0, position < script.count, batch.remainingCapacity > 0 {
            let virtio = kinds[script[position].handle.slot].hasVirtioHeader
            let large = virtio || script[position].segmentSize > 0  // TSO reads and GRO reads
            let offset = virtio ? pool.headroom - PortKind.virtioHeaderLength : pool.headroom
            guard let buffer = large ? pool.takeLarge() : pool.take() else { break }
            let count = script[position].bytes.count
            unsafe pool.unsafeBytes(of: buffer, offset: offset, length: count).copyBytes(from: script[position].bytes)
            batch.append(
                ReceivedFrame(
                    source: script[position].handle, buffer: buffer, offset: UInt32(offset), length: UInt32(count),
                    remote: script[position].remote, segmentSize: script[position].segmentSize))
            position += 1
            budget -= 1
            delivered += 1
        }
        return delivered > 0 ? .frames(delivered) : .timedOut
    }

    func transmit(_ batch: TxBatch) -> TransmitReport {
        var report = TransmitReport()
        for index in 0..<batch.count {
            let slot = batch.frames[index].target.slot
            sentFrames[slot] += batch.frames[index].datagramCount
            sentBytes[slot] += Int(batch.frames[index].headerLength) + Int(batch.frames[index].length)
            report.sent += batch.frames[index].datagramCount
            sentEntries += 1
        }
        return report
    }

    func release(_ buffer: BufferID) {
        pool.give(buffer)
    }

    /// Replayed ports never fail.
    func portFailure(of handle: PortHandle) -> IOError? { nil }

    func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) {}
}

@Suite("Dataplane worker, offload allocations")
struct OffloadAllocationTests {
    /// A worker on `engine` with a virtio TAP (handle 0), a VXLAN socket (1) and a sender of kind `sender` (2), in
    /// one VNI with the VXLAN peer; the attach commands are queued and run at the first step.
    func vxlanWorker(on engine: ReplayEngine, sender: PortKind) -> DataplaneWorker<ReplayEngine> {
        let publisher = ConfigPublisher()
        let worker = DataplaneWorker(
            engine: engine, table: ForwardingTable(capacity: 1024), publisher: publisher,
            counters: WorkerCounters(maxPorts: 4, maxPeers: 4))
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: OffloadHarness.vni)!
        let port = builder.addPort(domain: domain)!
        let peer = builder.addPeer(OffloadHarness.peerAddress, to: domain)!
        let template = EncapTemplate(
            encapsulation: .vxlan, local: OffloadHarness.local, remote: OffloadHarness.peerAddress,
            vni: OffloadHarness.vni, greKeyLayout: .vni)
        publisher.publish(
            DataplaneConfig(
                topology: builder.build(),
                peers: [
                    PeerTunnel(
                        peer: peer, address: OffloadHarness.peerAddress, encapsulation: .vxlan, greKeyLayout: .vni,
                        unkeyedVNI: nil, templates: [domain: template])
                ]))
        for command in [
            WorkerCommand.attachPort(port, fd: 10, kind: .tap(virtioHeader: true)),
            .attachTunnel(fd: 11, kind: .udpTunnel), .attachTunnel(fd: 12, kind: sender),
        ] {
            worker.mailbox.post(command) { _ in }
        }
        return worker
    }

    @Test func offloadPathsAllocateNothingPerFrame() throws {
        let loops = getenv("VXDATAPLANE_LOOPS").flatMap { Int(String(cString: $0)) } ?? 1
        let engine = ReplayEngine(pool: PacketBufferPool(count: 512, largeCount: 8))
        let worker = vxlanWorker(on: engine, sender: .rawSender)
        let tap = PortHandle(raw: 0)
        let tunnel = PortHandle(raw: 1)
        let sender = PortHandle(raw: 2)

        // Learning: macA behind the TAP, macRemote behind the peer.
        engine.stage(virtioBytes(.plain) + udpFrame(from: macA, to: .broadcast), on: tap)
        engine.stage(
            PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: udpFrame(from: macRemote, to: .broadcast)),
            on: tunnel, remote: OffloadHarness.peerAddress)
        // Per loop: one 30 KB TSO burst to the peer (22 segments), then ten segments from the peer (one write), and
        // three of another flow whose second has a corrupt payload byte (its run goes out as three plain writes).
        let loopStart = engine.scriptCount
        let burst = tcpFrame(
            from: macA, to: macRemote, sequence: 0, identification: 0,
            payload: (0..<30_000).map { UInt8(truncatingIfNeeded: $0) }, checksum: .partial)
        engine.stage(virtioBytes(tsoHeader(gsoSize: 1448)) + burst, on: tap)
        for index in 0..<10 {
            let segment = tcpFrame(
                from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                payload: [UInt8](repeating: UInt8(index), count: 1400))
            engine.stage(
                PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: segment), on: tunnel,
                remote: OffloadHarness.peerAddress)
        }
        for index in 0..<3 {
            var segment = tcpFrame(
                from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                payload: [UInt8](repeating: UInt8(index), count: 1400), sourcePort: 40_001)
            if index == 1 { segment[segment.count - 1] ^= 0x01 }
            engine.stage(
                PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: segment), on: tunnel,
                remote: OffloadHarness.peerAddress)
        }
        let perLoop = engine.scriptCount - loopStart
        engine.budget = loopStart
        try worker.runOnce(timeout: .zero)  // attaches, then delivers the learning frames

        for _ in 0..<loops {
            engine.position = loopStart
            engine.budget = 1
            try worker.runOnce(timeout: .zero)  // the burst: segmented for the peer
            engine.budget = perLoop - 1
            try worker.runOnce(timeout: .zero)  // the ten segments coalesced for the TAP, the bad run as it came
        }

        #expect(engine.sentFrames[sender.slot] == 1 + loops * 22, "the flood of the TAP's broadcast, then segments")
        #expect(
            engine.sentFrames[tap.slot] == 1 + loops * 4,
            "the peer's broadcast, then one write per ten segments and the bad run's three frames")
        #expect(worker.offloadStatistics.coalescedFrames == UInt64(loops * 10))
        #expect(
            engine.pool.available == 512 && engine.pool.availableLarge == 8 - worker.coalesceScratchCount,
            "all but the scratch returned")
    }

    /// The same with VXLAN through a UDP sender: the TSO burst becomes one GSO send, the peer's ten segments come as
    /// one GRO read, and four plain frames of one flow are packed into one GSO send.
    @Test func udpOffloadPathsAllocateNothingPerFrame() throws {
        let loops = getenv("VXDATAPLANE_LOOPS").flatMap { Int(String(cString: $0)) } ?? 1
        let engine = ReplayEngine(pool: PacketBufferPool(count: 512, largeCount: 16))
        let worker = vxlanWorker(on: engine, sender: .udpSender)
        let tap = PortHandle(raw: 0)
        let tunnel = PortHandle(raw: 1)
        let sender = PortHandle(raw: 2)

        engine.stage(virtioBytes(.plain) + udpFrame(from: macA, to: .broadcast), on: tap)
        engine.stage(
            PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: udpFrame(from: macRemote, to: .broadcast)),
            on: tunnel, remote: OffloadHarness.peerAddress)
        let loopStart = engine.scriptCount
        // Per loop: a 30 KB TSO burst (22 segments, one GSO send), four plain frames (one packed GSO send), then
        // the peer's ten segments in one GRO read (one coalesced write).
        let burst = tcpFrame(
            from: macA, to: macRemote, sequence: 0, identification: 0,
            payload: (0..<30_000).map { UInt8(truncatingIfNeeded: $0) }, checksum: .partial)
        engine.stage(virtioBytes(tsoHeader(gsoSize: 1448)) + burst, on: tap)
        for _ in 0..<4 {
            engine.stage(virtioBytes(.plain) + udpFrame(from: macA, to: macRemote, size: 500), on: tap)
        }
        var gro: [UInt8] = []
        var size = 0
        for index in 0..<10 {
            let datagram = PacketBuilder.vxlanDatagram(
                vni: OffloadHarness.vni,
                inner: tcpFrame(
                    from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                    payload: [UInt8](repeating: UInt8(index), count: 1400)))
            size = datagram.count
            gro += datagram
        }
        engine.stage(gro, on: tunnel, remote: OffloadHarness.peerAddress, segmentSize: UInt32(size))
        let perLoop = engine.scriptCount - loopStart
        engine.budget = loopStart
        try worker.runOnce(timeout: .zero)

        let entriesBefore = engine.sentEntries
        for _ in 0..<loops {
            engine.position = loopStart
            engine.budget = perLoop
            try worker.runOnce(timeout: .zero)
        }
        #expect(engine.sentFrames[sender.slot] == 1 + loops * (22 + 4), "the flood, then segments and frames")
        #expect(engine.sentEntries - entriesBefore == loops * 3, "a GSO send, a packed send, a coalesced write")
        #expect(engine.sentFrames[tap.slot] == 1 + loops)
        #expect(worker.offloadStatistics.groDatagrams == UInt64(loops * 10))
        #expect(worker.offloadStatistics.udpGSODatagrams == UInt64(loops * 26))
        #expect(
            engine.pool.available == 512 && engine.pool.availableLarge == 16 - worker.coalesceScratchCount,
            "all but the scratch returned")
    }
}
