// The worker's offload paths on in-memory ports with virtio-net headers (TAPs opened with IFF_VNET_HDR and TSO):
// TSO frames from a TAP are segmented to the overlay MTU for peers and plain TAPs and passed whole to virtio TAPs,
// partial checksums are completed, frames from the tunnel are coalesced for virtio TAPs, and every frame written to
// a virtio TAP carries a header. Frames are built byte by byte here and checked header by header.

import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXOffload
import VXPacket
import VXTestSupport

/// One VNI (42) with ports p0 (virtio), p1 (virtio), p2 (plain TAP) and one VXLAN peer.
final class OffloadHarness {
    static let local = UnderlayAddress(192, 0, 2, 1)
    static let peerAddress = UnderlayAddress(192, 0, 2, 2)
    static let vni = VNI(42)!
    static let virtioPorts = [true, true, false]

    let engine: MemoryEngine
    let worker: DataplaneWorker<MemoryEngine>
    let table = ForwardingTable(capacity: 1024)
    let publisher = ConfigPublisher()
    let counters = WorkerCounters(maxPorts: 16, maxPeers: 16)
    var portHandles: [PortHandle] = []
    var tunnelHandle: PortHandle!
    var senderHandle: PortHandle!
    /// UDP sender sockets (VXLAN then leaves through them, with GSO); empty unless asked for.
    var udpSenderHandles: [PortHandle] = []

    /// - Parameters:
    ///   - udpSenders: `.udpSender` ports to attach (0: VXLAN goes through the raw sender).
    ///   - largeCount: large buffers in the pool (the coalescing scratch, TAP and GRO reads, GSO sends).
    init(udpSenders: Int = 0, largeCount: Int = 10) throws {
        // 512 standard buffers, 10 large ones: two are the worker's coalescing scratch (a quarter of a small pool),
        // the rest take TAP reads.
        engine = MemoryEngine(pool: PacketBufferPool(count: 512, largeCount: largeCount))
        worker = DataplaneWorker(engine: engine, table: table, publisher: publisher, counters: counters)
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: OffloadHarness.vni)!
        let ports = OffloadHarness.virtioPorts.map { _ in builder.addPort(domain: domain)! }
        let peer = builder.addPeer(OffloadHarness.peerAddress, to: domain)!
        let template = EncapTemplate(
            encapsulation: .vxlan, local: OffloadHarness.local, remote: OffloadHarness.peerAddress,
            vni: OffloadHarness.vni, greKeyLayout: .vni)
        let tunnel = PeerTunnel(
            peer: peer, address: OffloadHarness.peerAddress, encapsulation: .vxlan, greKeyLayout: .vni,
            unkeyedVNI: nil, templates: [domain: template])
        publisher.publish(DataplaneConfig(topology: builder.build(), peers: [tunnel]))
        for (index, port) in ports.enumerated() {
            let kind = PortKind.tap(virtioHeader: OffloadHarness.virtioPorts[index])
            portHandles.append(try attach(.attachPort(port, fd: Int32(100 + index), kind: kind)))
        }
        tunnelHandle = try attach(.attachTunnel(fd: 200, kind: .udpTunnel))
        senderHandle = try attach(.attachTunnel(fd: 201, kind: .rawSender))
        for index in 0..<udpSenders {
            udpSenderHandles.append(try attach(.attachTunnel(fd: Int32(300 + index), kind: .udpSender)))
        }
    }

    func attach(_ command: WorkerCommand) throws -> PortHandle {
        let result = Mutex<Result<PortHandle?, IOError>?>(nil)
        worker.mailbox.post(command) { outcome in result.withLock { $0 = outcome } }
        try worker.runOnce(timeout: .zero)
        return try #require(try result.withLock { $0 }!.get())
    }

    /// Queues `frame` on port `index`, behind `header` when the port has a virtio header (a plain one by default).
    func inject(_ frame: [UInt8], port index: Int, header: VirtioNetHeader = .plain) {
        let bytes = OffloadHarness.virtioPorts[index] ? virtioBytes(header) + frame : frame
        #expect(engine.inject(bytes, into: portHandles[index]))
    }

    /// Queues `inner` as a VXLAN datagram from the peer.
    func injectFromPeer(_ inner: [UInt8]) {
        #expect(engine.inject(
            PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: inner), into: tunnelHandle,
            remote: OffloadHarness.peerAddress))
    }

    /// Runs one batch (everything injected so far, up to the batch size).
    func step() throws { try worker.runOnce(timeout: .seconds(1)) }

    func sentToPort(_ index: Int) -> [[UInt8]] { engine.drainTransmitted(from: portHandles[index]).map(\.bytes) }

    /// What went to the peer: whole outer packets (outer IPv4 + UDP + VXLAN + inner) and their inner frames.
    func sentToPeer() throws -> [(outer: [UInt8], inner: [UInt8])] {
        try engine.drainTransmitted(from: senderHandle).map { sent in
            #expect(sent.remote == OffloadHarness.peerAddress)
            let decap = try TunnelDecap.vxlanIPv4(sent.bytes.span.bytes).get()
            #expect(decap.vni == OffloadHarness.vni)
            return (sent.bytes, Array(sent.bytes[decap.innerOffset..<(decap.innerOffset + decap.innerLength)]))
        }
    }

    /// Teaches the switch that `mac` is behind port `index` (a broadcast from it), and forgets what that sent.
    func learn(_ mac: MACAddress, onPort index: Int) throws {
        inject(udpFrame(from: mac, to: .broadcast), port: index)
        try step()
        drainAll()
    }

    /// Teaches the switch that `mac` is behind the peer.
    func learnRemote(_ mac: MACAddress) throws {
        injectFromPeer(udpFrame(from: mac, to: .broadcast))
        try step()
        drainAll()
    }

    func drainAll() {
        for index in portHandles.indices { _ = sentToPort(index) }
        _ = try? sentToPeer()
    }
}

import Synchronization

func virtioBytes(_ header: VirtioNetHeader) -> [UInt8] {
    PacketBuilder.withBytes(count: VirtioNetHeader.size) { header.write(into: &$0) }
}

let tcpSource = IPv4Address(10, 0, 0, 1)
let tcpDestination = IPv4Address(10, 0, 0, 2)

/// How a built frame's TCP checksum field is filled.
enum TCPChecksum {
    /// The complete checksum.
    case full
    /// The pseudo-header sum for the whole segment, as the kernel leaves it with NEEDS_CSUM.
    case partial
}

/// Ethernet + IPv4 (no options, DF clear) + TCP (no options) with `payload`.
func tcpFrame(
    from source: MACAddress, to destination: MACAddress, sequence: UInt32, identification: UInt16,
    flags: TCPFlags = [.ack], payload: [UInt8], checksum: TCPChecksum = .full, sourcePort: UInt16 = 40_000
) -> [UInt8] {
    let header = TCPHeader(
        sourcePort: sourcePort, destinationPort: 5201, sequenceNumber: sequence, acknowledgmentNumber: 0x0102_0304,
        flags: flags, window: 502)
    var segment = PacketBuilder.withBytes(count: TCPHeader.minimumSize) { header.write(into: &$0) } + payload
    let pseudo = InternetChecksum.pseudoHeaderSum(
        source: tcpSource, destination: tcpDestination, protocol: .tcp, length: segment.count)
    let field =
        checksum == .full ? TCPHeader.computeChecksum(segment: segment.span.bytes, pseudoHeaderSum: pseudo) : pseudo
    segment[16] = UInt8(field >> 8)
    segment[17] = UInt8(field & 0xFF)
    let packet = PacketBuilder.ipv4(
        source: tcpSource, destination: tcpDestination, protocol: .tcp, payload: segment,
        identification: identification)
    return PacketBuilder.ethernet(destination: destination, source: source, etherType: .ipv4, payload: packet)
}

/// The header of a TSO frame as a TAP hands it out (Ethernet 14 + IPv4 20 + TCP 20).
func tsoHeader(gsoSize: UInt16) -> VirtioNetHeader {
    VirtioNetHeader(
        flags: .needsChecksum, gsoType: .tcpv4, headerLength: 54, gsoSize: gsoSize, checksumStart: 34,
        checksumOffset: 16)
}

/// A frame's IPv4 and TCP headers, checked: IPv4 header checksum, TCP checksum over the segment.
struct CheckedTCPFrame {
    var identification: UInt16
    var totalLength: Int
    var sequence: UInt32
    var flags: TCPFlags
    var payload: [UInt8]

    init(_ frame: [UInt8]) throws {
        let bytes = frame.span.bytes
        let ip = try IPv4Header.parse(bytes.extracting(14..<frame.count), verifyChecksum: true).get()
        identification = ip.identification
        totalLength = Int(ip.totalLength)
        #expect(14 + totalLength == frame.count, "no padding, no truncation")
        let segment = bytes.extracting(34..<frame.count)
        let tcp = try TCPHeader.parse(segment).get()
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: ip.source, destination: ip.destination, protocol: .tcp, length: frame.count - 34)
        #expect(TCPHeader.verifyChecksum(segment: segment, pseudoHeaderSum: pseudo) == nil, "TCP checksum")
        sequence = tcp.sequenceNumber
        flags = tcp.flags
        payload = Array(frame[(34 + tcp.headerLength)...])
    }
}

@Suite("Dataplane worker, TAP offloads (virtio-net header)")
struct OffloadWorkerTests {
    @Test("a 64 KB TSO frame from a TAP leaves for the peer as MTU-sized segments with valid checksums")
    func tsoFrameToPeerIsSegmentedToTheOverlayMTU() throws {
        let harness = try OffloadHarness()
        try harness.learnRemote(macRemote)
        let free = harness.engine.pool.available
        // The largest IPv4 packet: 65,535 bytes, 65,495 of them payload. gso_size 1448 is what a 1500-byte MTU
        // gives; the overlay's 1450 caps segments at 1450 - 40 = 1410 bytes of payload.
        let payload = (0..<65_495).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        let base: UInt32 = 0xFFFF_8000  // wraps within the burst
        let frame = tcpFrame(
            from: macA, to: macRemote, sequence: base, identification: 100, flags: [.ack, .psh], payload: payload,
            checksum: .partial)
        harness.inject(frame, port: 0, header: tsoHeader(gsoSize: 1448))
        try harness.step()

        let sent = try harness.sentToPeer()
        #expect(sent.count == 47)  // ceil(65,495 / 1410)
        var reassembled: [UInt8] = []
        for (index, packet) in sent.enumerated() {
            #expect(packet.outer.count <= 1500, "outer packet fits the underlay MTU")
            #expect(Array(packet.inner[0..<12]) == Array(frame[0..<12]), "Ethernet addresses kept")
            let segment = try CheckedTCPFrame(packet.inner)
            #expect(segment.totalLength <= 1450)
            #expect(segment.identification == 100 &+ UInt16(index))
            #expect(segment.sequence == base &+ UInt32(reassembled.count), "contiguous sequence numbers")
            #expect(segment.flags.contains(.psh) == (index == sent.count - 1), "PSH on the last segment only")
            #expect(segment.payload.count == (index == sent.count - 1 ? 65_495 - 46 * 1410 : 1410))
            reassembled += segment.payload
        }
        #expect(reassembled == payload)

        #expect(harness.worker.offloadStatistics.tsoFramesReceived == 1)
        #expect(harness.worker.offloadStatistics.segments == 47)
        let port = harness.counters.snapshot(of: .port(index: 0))
        #expect(port.rxFrames == 1 && port.rxBytes == UInt64(frame.count))
        #expect(harness.counters.snapshot(of: .peer(index: 0)).txFrames == 47)
        #expect(harness.engine.pool.available == free, "segment buffers go back to the pool")
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("segments follow gso_size when it is below the overlay's limit, and many TSO frames fit one batch")
    func segmentsFollowASmallGSOSize() throws {
        let harness = try OffloadHarness()
        try harness.learnRemote(macRemote)
        // 7 frames × 50 segments = 350 segments: more than one TxBatch (256), so the worker flushes midway.
        let payload = (0..<50_000).map { UInt8(truncatingIfNeeded: $0) }
        for burst in 0..<7 {
            let frame = tcpFrame(
                from: macA, to: macRemote, sequence: UInt32(burst * payload.count), identification: UInt16(burst * 50),
                payload: payload, checksum: .partial)
            harness.inject(frame, port: 0, header: tsoHeader(gsoSize: 1000))
        }
        try harness.step()
        let sent = try harness.sentToPeer()
        #expect(sent.count == 350)
        for (index, packet) in sent.enumerated() {
            let segment = try CheckedTCPFrame(packet.inner)
            #expect(segment.payload.count == 1000)
            #expect(segment.sequence == UInt32(index * 1000))
        }
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("a partial checksum (NEEDS_CSUM) from a TAP is completed before the frame is switched")
    func partialChecksumIsCompleted() throws {
        let harness = try OffloadHarness()
        try harness.learnRemote(macRemote)
        let payload = [UInt8](repeating: 0xA5, count: 777)
        let partial = tcpFrame(
            from: macA, to: macRemote, sequence: 1, identification: 9, payload: payload, checksum: .partial)
        let header = VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 16)
        harness.inject(partial, port: 0, header: header)
        try harness.step()
        let sent = try harness.sentToPeer()
        let complete = tcpFrame(from: macA, to: macRemote, sequence: 1, identification: 9, payload: payload)
        #expect(sent.map(\.inner) == [complete])
        #expect(harness.worker.offloadStatistics.checksumsCompleted == 1)
    }

    @Test("consecutive TCP segments from the tunnel reach a virtio TAP as one coalesced write")
    func segmentsFromTheTunnelAreCoalesced() throws {
        let harness = try OffloadHarness()
        try harness.learn(macA, onPort: 0)
        var payload: [UInt8] = []
        for index in 0..<10 {
            let chunk = (0..<1400).map { UInt8(truncatingIfNeeded: $0 + index * 31) }
            payload += chunk
            harness.injectFromPeer(
                tcpFrame(
                    from: macRemote, to: macA, sequence: 5000 + UInt32(index * 1400),
                    identification: 700 + UInt16(index), flags: index == 9 ? [.ack, .psh] : [.ack], payload: chunk))
        }
        try harness.step()

        let write = try onlyWrite(harness.sentToPort(0), "one write for ten segments")
        let header = write.header
        #expect(
            header
                == VirtioNetHeader(
                    flags: .needsChecksum, gsoType: .tcpv4, headerLength: 54, gsoSize: 1400, checksumStart: 34,
                    checksumOffset: 16))
        var merged = write.frame
        #expect(merged.count == 14 + 20 + 20 + 14_000)
        // The checksum field holds the pseudo-header sum (NEEDS_CSUM); completing it must give a valid checksum.
        do {
            var span = merged.mutableSpan
            var raw = MutableRawSpan(_elements: &span)
            #expect(ChecksumCompletion.complete(&raw, header: header) == nil)
        }
        let frame = try CheckedTCPFrame(merged)
        #expect(frame.sequence == 5000 && frame.identification == 700 && frame.flags == [.ack, .psh])
        #expect(frame.payload == payload)
        #expect(harness.worker.offloadStatistics.coalescedWrites == 1)
        #expect(harness.worker.offloadStatistics.coalescedFrames == 10)
        let port = harness.counters.snapshot(of: .port(index: 0))
        #expect(port.txFrames == 10, "counted per frame switched, not per write")
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("an ARP broadcast from the tunnel carries a plain virtio header to virtio TAPs and none to plain TAPs")
    func broadcastFromTheTunnelGetsPlainHeaders() throws {
        let harness = try OffloadHarness()
        let arp = PacketBuilder.arpRequest(
            senderMAC: macRemote, senderIP: IPv4Address(10, 0, 0, 9), targetIP: IPv4Address(10, 0, 0, 1))
        harness.injectFromPeer(arp)
        try harness.step()
        let plain = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        #expect(harness.sentToPort(0) == [plain + arp])
        #expect(harness.sentToPort(1) == [plain + arp])
        #expect(harness.sentToPort(2) == [arp], "a TAP without the header gets the bare frame")
    }

    @Test("a flooded TSO frame passes whole to virtio TAPs and is segmented for a plain TAP and the peer")
    func floodedTSOFrameInAMixedDomain() throws {
        let harness = try OffloadHarness()
        let payload = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        let frame = tcpFrame(
            from: macA, to: macB, sequence: 77, identification: 1, payload: payload, checksum: .partial)
        let header = tsoHeader(gsoSize: 1448)
        harness.inject(frame, port: 0, header: header)
        try harness.step()

        #expect(harness.sentToPort(0).isEmpty, "never back to the ingress")
        #expect(harness.sentToPort(1) == [virtioBytes(header) + frame], "TAP to TAP: passed through, header and all")
        let plain = harness.sentToPort(2)
        #expect(plain.count == 15)  // ceil(20,000 / 1410)
        let toPeer = try harness.sentToPeer()
        #expect(toPeer.map(\.inner) == plain, "the same segments to the plain TAP and to the peer")
        var reassembled: [UInt8] = []
        for segment in plain { reassembled += try CheckedTCPFrame(segment).payload }
        #expect(reassembled == payload)
        #expect(harness.worker.offloadStatistics.tsoFramesPassedThrough == 1)
        #expect(harness.worker.offloadStatistics.tsoFramesSegmented == 2)
    }

    @Test("frames for one virtio TAP keep their order around a TSO frame passed through")
    func orderIsKeptAroundAPassedThroughTSOFrame() throws {
        let harness = try OffloadHarness()
        try harness.learn(macB, onPort: 1)
        let first = tcpFrame(from: macA, to: macB, sequence: 1, identification: 1, payload: [1, 2, 3])
        let tso = tcpFrame(
            from: macA, to: macB, sequence: 4, identification: 2, payload: [UInt8](repeating: 9, count: 3000),
            checksum: .partial)
        let last = udpFrame(from: macA, to: macB)
        harness.inject(first, port: 0)
        harness.inject(tso, port: 0, header: tsoHeader(gsoSize: 1448))
        harness.inject(last, port: 0)
        try harness.step()
        let plain = virtioBytes(.plain)
        let written = harness.sentToPort(1)
        #expect(written.count == 3)
        #expect(written.first == plain + first, "a lone segment is not verified by the coalescer: no DATA_VALID")
        #expect(written.dropFirst().first == virtioBytes(tsoHeader(gsoSize: 1448)) + tso)
        #expect(written.last == virtioBytes(.plain) + last)
    }

    @Test("a GSO type the TAP was never offered (UDP) is dropped and counted")
    func unsupportedGSOTypeIsDropped() throws {
        let harness = try OffloadHarness()
        let header = VirtioNetHeader(gsoType: .udp, gsoSize: 1400)
        harness.inject(udpFrame(from: macA, to: .broadcast, size: 3000), port: 0, header: header)
        try harness.step()
        #expect(harness.sentToPort(1).isEmpty && harness.sentToPort(2).isEmpty)
        #expect(try harness.sentToPeer().isEmpty)
        let drops = harness.counters.snapshot(of: .port(index: 0)).drops
        #expect(drops[DropCode(OffloadDropReason.gsoTypeUnsupported)] == 1)
        #expect(DropCode(OffloadDropReason.gsoTypeUnsupported).name == "offloadGsoTypeUnsupported")
    }
}
