// The per-frame packet path: decapsulation, parsing, learning, the forwarding decision, the flow hash and the
// encapsulation template, separately and chained, plus the real worker loop over an engine that replays
// frames from memory.
//
// Method
//   - One switch: bridge domain 1 = VNI 100, one local port, peer A (sends us VXLAN), peer B (we send it
//     VXLAN), peer C (we send it GRE with the VNI as key). A 64K-entry table (capacity 65,536, filled to it) holds
//     the frames' MACs among random others.
//   - A ring of 250 distinct frames per direction, in `PacketBufferPool` buffers at the pool's headroom, as an
//     engine would hand them over: "rx" frames are VXLAN datagram payloads from A (VXLAN header + inner frame;
//     inner source learned behind A, destination behind the port); "tx" frames are plain inner frames from the
//     port (source behind the port, destination behind B). Inner frames are Ethernet + IPv4 + UDP, 64 or 1500
//     bytes in all (no FCS). Every measured loop walks the ring, so the 500 entries they use stay cache-warm,
//     as the MACs of busy flows do in a switch.
//   - The stage code is the worker's (Sources/VXDataplane/Worker.swift, `classify`, `ethernet`, `emit`),
//     including its lookups in the config snapshot (`endpoint(at:)`, `domain(for:)`, `outerHeader(to:in:)`);
//     counters and batch bookkeeping are left to the worker benchmarks.
//   - `.kilo` scaling: 1,000 frames per iteration, so the time column reads per frame. The malloc count of an
//     iteration (1,000 frames) must be 0: `Thresholds/6.3/*.p90.json` holds it raw and `thresholds check` fails
//     otherwise; the default text output divides it by 1,000 too, so print it raw with `--scale`.
//   - `decapLookupEncap` is the chain issue 2 sets a 100 ns budget for: decapsulate and classify a frame from
//     A, learn its source, decide (it forwards to the port), then build the VXLAN header a frame for a peer
//     gets (outer header of B, flow hash, template write). No real frame takes both halves (a frame from a
//     tunnel never goes back into one: split horizon), so it bounds either direction from above;
//     `vxlanRxPath` (decap, classify, learn, forward to the port) and `vxlanTxPath` (classify, learn, forward to
//     B, encap) measure the two real directions.
//   - `worker.*` runs `DataplaneWorker.runOnce` on batches of 50 frames, 20 batches per iteration, with a
//     `ReplayEngine` whose receive hands out ring frames and whose transmit drops everything; that is the whole
//     worker minus system calls (counters, tx batch, config refresh, buffer release included).

import Benchmark
import BenchmarkSupport
import VXDataplane
import VXForwarding
import VXIO
import VXPacket
import VXTestSupport

/// The switch and the frames every benchmark here runs on.
final class PathFixture {
    /// Distinct frames per direction.
    static let ringSize = 250
    /// Tx header slots (as `TxBatch` has, one per transmit entry); frames use them round robin.
    static let headerSlots = 64

    let innerLength: Int
    let table = ForwardingTable(capacity: 1 << 16)
    let config: DataplaneConfig
    let domain: BridgeDomain
    let port: PortID
    let peerA: PeerID
    let peerB: PeerID
    let peerC: PeerID
    let addressA = UnderlayAddress(192, 0, 2, 1)
    /// The outer headers towards B (VXLAN) and C (GRE) in domain 1.
    let templates: (vxlan: EncapTemplate, gre: EncapTemplate)
    /// Buffers 0..<ringSize hold the rx frames, ringSize..<2 ringSize the tx frames, each at `pool.headroom`.
    let pool: PacketBufferPool
    /// Header slots of `TxBatch.maxHeaderLength` bytes each.
    let headers: UnsafeMutableRawBufferPointer
    var cursor = 0

    /// - Parameter innerLength: bytes of every inner Ethernet frame (64 or 1500).
    init(innerLength: Int) {
        self.innerLength = innerLength
        let vni = VNI(100)!
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: vni)!
        let port = builder.addPort(domain: domain)!
        let local = UnderlayAddress(192, 0, 2, 254)
        let addressB = UnderlayAddress(192, 0, 2, 2)
        let addressC = UnderlayAddress(192, 0, 2, 3)
        peerA = builder.addPeer(addressA, to: domain)!
        peerB = builder.addPeer(addressB, to: domain)!
        peerC = builder.addPeer(addressC, to: domain)!
        let topology = builder.build()
        func tunnel(_ peer: PeerID, _ address: UnderlayAddress, _ encapsulation: TunnelEncapsulation) -> PeerTunnel {
            PeerTunnel(
                peer: peer,
                address: address,
                encapsulation: encapsulation,
                greKeyLayout: .vni,
                unkeyedVNI: nil,
                templates: [
                    domain: EncapTemplate(encapsulation: encapsulation, local: local, remote: address, vni: vni)
                ]
            )
        }
        config = DataplaneConfig(
            topology: topology,
            peers: [tunnel(peerA, addressA, .vxlan), tunnel(peerB, addressB, .vxlan), tunnel(peerC, addressC, .gre)]
        )
        self.domain = domain
        self.port = port
        templates = (
            config.outerHeader(to: peerB, in: domain)!.template, config.outerHeader(to: peerC, in: domain)!.template
        )

        // MACs: 4 x ringSize for the frames, learned where the frames say; random fill up to capacity.
        let keys = RandomKeys.distinct(table.capacity, domain: domain, seed: 0xF4A3E)
        let macs = keys.map(\.mac)
        let n = PathFixture.ringSize
        for (index, key) in keys.enumerated() {
            let destination: Destination
            switch index / n {
            case 0: destination = .peer(peerA)  // rx sources
            case 1: destination = .port(port)  // rx destinations
            case 2: destination = .port(port)  // tx sources
            case 3: destination = .peer(peerB)  // tx destinations
            default: destination = index & 1 == 0 ? .port(port) : .peer(peerB)
            }
            let result = table.learn(key, destination: destination)
            precondition(result == .learned || index >= 4 * n, "a frame's MAC was not learned: \(result)")
        }

        pool = PacketBufferPool(count: 2 * n)
        headers = UnsafeMutableRawBufferPointer.allocate(
            byteCount: PathFixture.headerSlots * TxBatch.maxHeaderLength,
            alignment: 64
        )
        let payload = [UInt8](repeating: 0xA5, count: innerLength - EthernetHeader.size - 20 - 8)
        for index in 0..<n {
            func frame(destination: MACAddress, source: MACAddress) -> [UInt8] {
                PacketBuilder.ethernetIPv4UDP(
                    destination: destination,
                    source: source,
                    sourceIP: IPv4Address(10, 0, 0, UInt8(index & 0xFF)),
                    destinationIP: IPv4Address(10, 0, 1, 1),
                    sourcePort: UInt16(1024 + index),
                    destinationPort: 80,
                    payload: payload
                )
            }
            let rx = PacketBuilder.vxlanDatagram(
                vni: vni,
                inner: frame(destination: macs[n + index], source: macs[index])
            )
            let tx = frame(destination: macs[3 * n + index], source: macs[2 * n + index])
            precondition(tx.count == innerLength)
            store(rx, in: BufferID(UInt32(index)))
            store(tx, in: BufferID(UInt32(n + index)))
        }
    }

    deinit {
        headers.deallocate()
    }

    private func store(_ bytes: [UInt8], in buffer: BufferID) {
        let target = pool.unsafeBytes(of: buffer, offset: pool.headroom, length: bytes.count)
        bytes.withUnsafeBytes { target.copyMemory(from: $0) }
    }

    /// Bytes of a VXLAN datagram payload in the rx ring.
    var datagramLength: Int { VXLANHeader.size + innerLength }

    /// Rx frame `index` (a VXLAN datagram payload).
    func rxFrame(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(
            pool.unsafeBytes(of: BufferID(UInt32(index)), offset: pool.headroom, length: datagramLength)
        )
    }

    /// Tx frame `index` (an inner Ethernet frame from the port).
    func txFrame(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(
            pool.unsafeBytes(
                of: BufferID(UInt32(PathFixture.ringSize + index)),
                offset: pool.headroom,
                length: innerLength
            )
        )
    }

    /// Header slot `index % headerSlots`.
    func headerSlot(_ index: Int) -> UnsafeMutableRawBufferPointer {
        let size = TxBatch.maxHeaderLength
        let start = (index % PathFixture.headerSlots) * size
        return UnsafeMutableRawBufferPointer(rebasing: headers[start..<(start + size)])
    }
}

// MARK: The stages, as the worker runs them

/// Classify an rx frame from peer A, learn, decide: `Worker.classify` + `ethernet` + the learn and decide calls of
/// `processBatch`. Returns the inner frame's position and the decision, or nil when the frame would be dropped.
@inline(__always)
func receiveAndSwitch(
    _ f: PathFixture,
    _ bytes: RawSpan,
    remote: UnderlayAddress
) -> (domain: BridgeDomain, innerOffset: Int, innerLength: Int, action: ForwardingAction)? {
    guard let peer = f.config.endpoint(at: remote), peer.encapsulation == .vxlan else { return nil }
    guard case .success(let decap) = TunnelDecap.vxlanDatagram(bytes) else { return nil }
    guard let domain = f.config.domain(for: decap.vni) else { return nil }
    let inner = bytes.extracting(decap.innerOffset..<(decap.innerOffset + decap.innerLength))
    guard case .success(let ethernet) = EthernetHeader.parse(inner) else { return nil }
    let ingress = Ingress.tunnel(peer.peer)
    let topology = f.config.topology
    if SwitchDecision.learn(
        domain: domain,
        ingress: ingress,
        source: ethernet.source,
        table: f.table,
        topology: topology
    )
        != nil
    {
        return nil
    }
    let action = SwitchDecision.decide(
        domain: domain,
        ingress: ingress,
        destination: ethernet.destination,
        table: f.table,
        topology: topology
    )
    return (domain, decap.innerOffset, decap.innerLength, action)
}

/// The encapsulation a frame for `peer` gets in `Worker.emit`: tunnel and template lookup, flow hash, template
/// write into a header slot. Returns the header length (0 when the peer has no template).
@inline(__always)
func encapsulate(_ f: PathFixture, _ inner: RawSpan, domain: BridgeDomain, to peer: PeerID, slot: Int) -> Int {
    guard let (_, template) = f.config.outerHeader(to: peer, in: domain) else { return 0 }
    let innerLength = inner.byteCount
    guard template.headerLength + innerLength <= 0xFFFF else { return 0 }
    let hash = FlowHash.hash(frame: inner)
    var header = MutableRawSpan(_unsafeBytes: f.headerSlot(slot))
    return template.write(into: &header, innerLength: innerLength, flowHash: hash)
}

/// Rx direction: VXLAN from A to the local port (decap, classify, learn, forward). Returns a checksum.
@inline(__always)
func rxPath(_ f: PathFixture, _ index: Int) -> UInt32 {
    let bytes = RawSpan(_unsafeBytes: f.rxFrame(index))
    guard let switched = receiveAndSwitch(f, bytes, remote: f.addressA),
        case .forward(let destination) = switched.action
    else { return 1 << 31 }
    return destination.packed
}

/// Tx direction: a frame from the port to peer B (classify, learn, forward, encap). Returns a checksum.
@inline(__always)
func txPath(_ f: PathFixture, _ index: Int) -> UInt32 {
    let inner = RawSpan(_unsafeBytes: f.txFrame(index))
    let topology = f.config.topology
    guard let domain = topology.domain(of: f.port), case .success(let ethernet) = EthernetHeader.parse(inner) else {
        return 1 << 31
    }
    let ingress = Ingress.port(f.port)
    if SwitchDecision.learn(
        domain: domain,
        ingress: ingress,
        source: ethernet.source,
        table: f.table,
        topology: topology
    )
        != nil
    {
        return 1 << 31
    }
    let action = SwitchDecision.decide(
        domain: domain,
        ingress: ingress,
        destination: ethernet.destination,
        table: f.table,
        topology: topology
    )
    guard case .forward(.peer(let peer)) = action else { return 1 << 31 }
    return UInt32(encapsulate(f, inner, domain: domain, to: peer, slot: index))
}

/// The chain of issue 2: decap + classify + learn + decide (rx frame from A), then the encapsulation a frame for
/// peer B gets. Returns a checksum.
@inline(__always)
func decapLookupEncap(_ f: PathFixture, _ index: Int) -> UInt32 {
    let bytes = RawSpan(_unsafeBytes: f.rxFrame(index))
    guard let switched = receiveAndSwitch(f, bytes, remote: f.addressA),
        case .forward(let destination) = switched.action
    else { return 1 << 31 }
    let inner = bytes.extracting(switched.innerOffset..<(switched.innerOffset + switched.innerLength))
    return destination.packed &+ UInt32(encapsulate(f, inner, domain: switched.domain, to: f.peerB, slot: index))
}

// MARK: The worker over a replaying engine

/// An engine without I/O: `receive` hands out the next frames of a ring of pool buffers, `transmit` drops the
/// batch (counting it), `release` does nothing (the frames are replayed, never rewritten: the worker writes outer
/// headers into TxBatch slots, not into rx buffers).
final class ReplayEngine: PacketEngine {
    struct Waker: EngineWaker {
        func wake() {}
    }

    let pool: PacketBufferPool
    let waker = Waker()
    /// The frames to replay, in order, round robin.
    var ring: [ReceivedFrame] = []
    var next = 0
    var registered: UInt32 = 0
    var transmitted = 0

    init(pool: PacketBufferPool) {
        self.pool = pool
    }

    /// Handles are 0, 1, 2... in registration order.
    func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle {
        defer { registered += 1 }
        return PortHandle(raw: registered)
    }

    func unregister(_ handle: PortHandle) {}

    func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        let count = batch.remainingCapacity
        for _ in 0..<count {
            batch.append(ring[next])
            next = next + 1 == ring.count ? 0 : next + 1
        }
        return .frames(count)
    }

    func transmit(_ batch: TxBatch) -> TransmitReport {
        var report = TransmitReport()
        report.sent = batch.count
        transmitted += batch.count
        return report
    }

    func release(_ buffer: BufferID) {}

    /// Replayed ports never fail.
    func portFailure(of handle: PortHandle) -> IOError? { nil }

    func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) {}
}

/// A worker wired to the fixture's switch, replaying rx frames (from A) or tx frames (from the port).
final class WorkerFixture {
    static let batchSize = 50
    static let batchesPerIteration = 20  // x 50 = 1,000 frames, the `.kilo` scaling

    let path: PathFixture
    let engine: ReplayEngine
    let worker: DataplaneWorker<ReplayEngine>
    let counters = WorkerCounters(maxPorts: 16, maxPeers: 16)

    /// - Parameters:
    ///   - innerLength: inner frame size.
    ///   - fromTunnel: replay the VXLAN frames from A (true) or the frames from the local port (false).
    init(innerLength: Int, fromTunnel: Bool) throws {
        let path = PathFixture(innerLength: innerLength)
        self.path = path
        engine = ReplayEngine(pool: path.pool)
        worker = DataplaneWorker(
            engine: engine,
            table: path.table,
            publisher: ConfigPublisher(path.config),
            counters: counters,
            batchSize: WorkerFixture.batchSize
        )
        // Handles 0, 1, 2 (ReplayEngine numbers them in order); the commands run at the start of runOnce.
        worker.mailbox.post(.attachTunnel(fd: -1, kind: .udpTunnel)) { _ in }
        worker.mailbox.post(.attachTunnel(fd: -1, kind: .rawSender)) { _ in }
        worker.mailbox.post(.attachPort(path.port, fd: -1, kind: .tap(virtioHeader: false))) { _ in }
        let tunnel = PortHandle(raw: 0)
        let tap = PortHandle(raw: 2)
        let headroom = UInt32(path.pool.headroom)
        engine.ring = (0..<PathFixture.ringSize).map { index in
            fromTunnel
                ? ReceivedFrame(
                    source: tunnel,
                    buffer: BufferID(UInt32(index)),
                    offset: headroom,
                    length: UInt32(path.datagramLength),
                    remote: path.addressA
                )
                : ReceivedFrame(
                    source: tap,
                    buffer: BufferID(UInt32(PathFixture.ringSize + index)),
                    offset: headroom,
                    length: UInt32(innerLength),
                    remote: .any
                )
        }
        try worker.runOnce(timeout: .zero)
        // Every frame must have been forwarded (rx to the port, tx to B), none dropped.
        precondition(engine.transmitted == WorkerFixture.batchSize, "worker dropped frames in the fixture")
    }
}

// MARK: Benchmarks

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .contextSwitches, .wallClock, .throughput],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000,
        // The goal on the hot path: zero mallocs (STYLE §12).
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
    )

    /// Registers a per-frame benchmark over a fixture of `innerLength`-byte frames.
    func perFrame(_ name: String, innerLength: Int, _ body: @escaping (PathFixture, Int) -> UInt32) {
        var fixture: PathFixture?
        Benchmark(
            name,
            closure: { benchmark in
                let f = fixture!
                var accumulator: UInt32 = 0
                var index = f.cursor
                for _ in benchmark.scaledIterations {
                    accumulator &+= body(f, index)
                    index = index + 1 == PathFixture.ringSize ? 0 : index + 1
                }
                f.cursor = index
                blackHole(accumulator)
            },
            setup: {
                let f = PathFixture(innerLength: innerLength)
                // The chains must take the intended path (forward, no drop) on every frame of the ring.
                for index in 0..<PathFixture.ringSize {
                    precondition(body(f, index) & (1 << 31) == 0, "\(name): frame \(index) was dropped")
                }
                fixture = f
            },
            teardown: { fixture = nil }
        )
    }

    for size in [64, 1500] {
        perFrame("decapLookupEncap.\(size)B", innerLength: size, decapLookupEncap)
        perFrame("vxlanRxPath.\(size)B", innerLength: size, rxPath)
        perFrame("vxlanTxPath.\(size)B", innerLength: size, txPath)
        perFrame("flowHash.\(size)B", innerLength: size) { f, index in
            FlowHash.hash(frame: RawSpan(_unsafeBytes: f.txFrame(index))) & 0x7FFF_FFFF
        }
    }
    // The template writes alone, with the template fetched in setup (`PathFixture.templates`), as a worker
    // holding it for a run of frames to one peer would; the lookup is part of the chains above.
    for (name, encapsulation) in [("vxlan", TunnelEncapsulation.vxlan), ("gre", .gre)] {
        perFrame("encapTemplateWrite.\(name)", innerLength: 64) { f, index in
            var header = MutableRawSpan(_unsafeBytes: f.headerSlot(index))
            let template = encapsulation == .vxlan ? f.templates.vxlan : f.templates.gre
            return UInt32(template.write(into: &header, innerLength: 64, flowHash: UInt32(truncatingIfNeeded: index)))
        }
    }

    for (name, fromTunnel) in [("vxlanToPort", true), ("portToVXLAN", false)] {
        var fixture: WorkerFixture?
        Benchmark(
            "worker.\(name).64B",
            closure: { benchmark in
                let f = fixture!
                do {
                    for _ in 0..<WorkerFixture.batchesPerIteration {
                        try f.worker.runOnce(timeout: .zero)
                    }
                } catch {
                    benchmark.error("runOnce failed: \(error)")
                }
                blackHole(f.engine.transmitted)
            },
            setup: { fixture = try WorkerFixture(innerLength: 64, fromTunnel: fromTunnel) },
            teardown: { fixture = nil }
        )
    }
}
