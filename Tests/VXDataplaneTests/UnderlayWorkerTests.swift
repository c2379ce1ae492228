// The worker with an underlay TAP (docs/offload.md, "The TAP underlay") on in-memory ports: VXLAN leaves as whole
// outer frames behind the 24-byte tunnel virtio-net header, a container's TSO burst as one frame for the kernel to
// carry whole, and frames read from the underlay are sorted (ARP punted, VXLAN for this VTEP decapsulated, the rest
// counted), a TCP burst among them passed whole to a virtio TAP or segmented for a plain one.

import Synchronization
import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXOffload
import VXPacket
import VXTestSupport

/// One VNI (42) with ports p0 (virtio) and p1 (plain TAP), one VXLAN peer, and the underlay TAP.
final class UnderlayHarness {
    static let local = IPv4Address(192, 0, 2, 1)
    static let peerAddress = IPv4Address(192, 0, 2, 2)
    static let localMAC = MACAddress(0x02, 0x76, 0x78, 0, 2, 1)
    static let peerMAC = MACAddress(0x02, 0x76, 0x78, 0, 2, 2)
    static let vni = VNI(42)!

    let engine = MemoryEngine(pool: PacketBufferPool(count: 512, largeCount: 16))
    let worker: DataplaneWorker<MemoryEngine>
    let table = ForwardingTable(capacity: 1024)
    let publisher = ConfigPublisher()
    let counters = WorkerCounters(maxPorts: 16, maxPeers: 16)
    let punt = PuntQueue {}
    var portHandles: [PortHandle] = []
    var underlayHandle: PortHandle!
    var peer: PeerID!
    private var builder = TopologyBuilder()
    private var domain: BridgeDomain!

    init() throws {
        worker = DataplaneWorker(engine: engine, table: table, publisher: publisher, counters: counters, punt: punt)
        domain = builder.addDomain(vni: Self.vni)!
        let ports = [builder.addPort(domain: domain)!, builder.addPort(domain: domain)!]
        peer = builder.addPeer(UnderlayAddress(Self.peerAddress), to: domain)!
        publish(nextHop: Self.peerMAC)
        for (index, port) in ports.enumerated() {
            let kind = PortKind.tap(virtioHeader: index == 0)
            portHandles.append(try #require(try attach(.attachPort(port, fd: Int32(100 + index), kind: kind))))
        }
        underlayHandle = try attach(.attachUnderlay(fd: 400))
    }

    /// Publishes the switch with the peer's next hop at `nextHop` (nil: unresolved).
    func publish(nextHop: MACAddress?) {
        let template = EncapTemplate(
            encapsulation: .vxlan, local: UnderlayAddress(Self.local), remote: UnderlayAddress(Self.peerAddress),
            vni: Self.vni, greKeyLayout: .vni)
        let tunnel = PeerTunnel(
            peer: peer, address: UnderlayAddress(Self.peerAddress), encapsulation: .vxlan, greKeyLayout: .vni, unkeyedVNI: nil,
            templates: [domain: template], nextHopMAC: nextHop)
        publisher.publish(
            DataplaneConfig(
                topology: builder.build(), peers: [tunnel],
                underlay: UnderlayIdentity(mac: Self.localMAC, address: Self.local, udpPort: VXLANHeader.udpPort)))
    }

    func attach(_ command: WorkerCommand) throws -> PortHandle? {
        let result = Mutex<Result<PortHandle?, IOError>?>(nil)
        worker.mailbox.post(command) { outcome in result.withLock { $0 = outcome } }
        try worker.runOnce(timeout: .zero)
        return try result.withLock { $0 }!.get()
    }

    /// An outer frame from the peer (Ethernet to our MAC, IPv4, UDP 4789, VXLAN) around `inner`.
    static func outerFrame(_ inner: [UInt8], to mac: MACAddress = localMAC, destination: IPv4Address = local)
        -> [UInt8]
    {
        PacketBuilder.ethernet(
            destination: mac, source: peerMAC, etherType: .ipv4,
            payload: PacketBuilder.vxlanIPv4(source: peerAddress, destination: destination, vni: vni, inner: inner))
    }

    /// The header the kernel gives a TCP burst over the tunnel: NEEDS_CSUM at the inner TCP checksum (Ethernet,
    /// IPv4 and TCP without options inside 50 outer bytes), TCPV4 | UDP_TUNNEL_IPV4.
    static let burstHeader = VirtioNetTunnelHeader(
        inner: VirtioNetHeader(
            flags: .needsChecksum, gsoType: .tcpv4, headerLength: 104, gsoSize: 1398, checksumStart: 50 + 34,
            checksumOffset: 16),
        tunnel: VirtioNetTunnelHeader.udpTunnelIPv4, outerTransportOffset: 34, innerNetworkOffset: 64)

    /// Teaches the switch that `mac` is behind port `index` (a broadcast from it), and forgets what that sent.
    func learnLocal(_ mac: MACAddress, onPort index: Int) throws {
        let frame = udpFrame(from: mac, to: .broadcast)
        #expect(engine.inject(index == 0 ? virtioBytes(.plain) + frame : frame, into: portHandles[index]))
        try step()
        _ = try sentToUnderlay()
        for port in portHandles.indices { _ = sentToPort(port) }
    }

    /// Queues `frame` on the underlay TAP behind `header`.
    func injectUnderlay(_ frame: [UInt8], header: VirtioNetTunnelHeader = .plain) {
        let bytes = PacketBuilder.withBytes(count: VirtioNetTunnelHeader.size) { header.write(into: &$0) } + frame
        #expect(engine.inject(bytes, into: underlayHandle))
    }

    func step() throws { try worker.runOnce(timeout: .seconds(1)) }

    /// What the worker wrote into the underlay TAP: each write's tunnel header and the frame after it.
    func sentToUnderlay() throws -> [(header: VirtioNetTunnelHeader, frame: [UInt8])] {
        try engine.drainTransmitted(from: underlayHandle).map { sent in
            let parsed = VirtioNetTunnelHeader.parse(sent.bytes.span.bytes)
            let header = try #require(parsed)
            return (header, Array(sent.bytes[VirtioNetTunnelHeader.size...]))
        }
    }

    func sentToPort(_ index: Int) -> [[UInt8]] { engine.drainTransmitted(from: portHandles[index]).map(\.bytes) }

    func drops(_ entity: CounterEntity, _ reason: DataplaneDropReason) -> UInt64 {
        counters.snapshot(of: entity).drops[DropCode(reason)] ?? 0
    }

    /// Has the container on p0 (virtio) send a TSO burst of `payload` bytes to `macRemote` with `gsoSize`, after
    /// teaching the switch where `macRemote` is; returns the burst and what went into the underlay TAP.
    func containerBurst(payload size: Int, seed: Int, gsoSize: UInt16) throws
        -> (frame: [UInt8], sent: [(header: VirtioNetTunnelHeader, frame: [UInt8])])
    {
        try learnRemote(macRemote)
        let frame = tcpFrame(
            from: macA, to: macRemote, sequence: 1000, identification: 7, payload: pattern(size, seed: seed),
            checksum: .partial)
        #expect(engine.inject(virtioBytes(tsoHeader(gsoSize: gsoSize)) + frame, into: portHandles[0]))
        try step()
        return (frame, try sentToUnderlay())
    }

    /// Teaches the switch that `mac` is behind the peer, and forgets what that sent.
    func learnRemote(_ mac: MACAddress) throws {
        injectUnderlay(Self.outerFrame(udpFrame(from: mac, to: .broadcast)))
        try step()
        for index in portHandles.indices { _ = sentToPort(index) }
    }
}

/// `frame` decoded as an outer frame to the peer: Ethernet to its next hop, IPv4 192.0.2.1 → .2, UDP to 4789,
/// VXLAN 42; returns the inner frame and the outer UDP source port.
func decodeUnderlayFrame(_ frame: [UInt8]) throws -> (inner: [UInt8], sourcePort: UInt16) {
    let ethernet = try EthernetHeader.parse(frame.span.bytes).get()
    #expect(ethernet.destination == UnderlayHarness.peerMAC && ethernet.source == UnderlayHarness.localMAC)
    #expect(ethernet.etherType == .ipv4 && ethernet.vlan == nil)
    let decap = try TunnelDecap.vxlanIPv4(frame.span.bytes.extracting(14..<frame.count)).get()
    #expect(decap.ipv4.source == UnderlayHarness.local && decap.ipv4.destination == UnderlayHarness.peerAddress)
    #expect(decap.vni == UnderlayHarness.vni)
    #expect(14 + Int(decap.ipv4.totalLength) == frame.count, "the outer lengths cover the whole burst")
    let start = 14 + decap.innerOffset
    return (Array(frame[start..<(start + decap.innerLength)]), decap.udp.sourcePort)
}

/// Cuts a UDP_L4 underlay write into the datagrams the kernel makes of it: __udp_gso_segment (each datagram gets
/// the first's headers, its own IPv4 and UDP lengths, the IPv4 ID counting up, and the partial UDP checksum adjusted
/// from the run's length to its own), then the checksum completed over UDP header and payload as a device or
/// skb_checksum_help would.
func segmentUnderlayRun(_ frame: [UInt8], gsoSize: Int) -> [[UInt8]] {
    let ip = EthernetHeader.size
    let udp = ip + IPv4Header.minimumSize
    let headers = Array(frame[0..<(udp + UDPHeader.size)])
    let payload = Array(frame[(udp + UDPHeader.size)...])
    let runLength = UInt16(frame[udp + 4]) << 8 | UInt16(frame[udp + 5])
    let partial = UInt16(frame[udp + 6]) << 8 | UInt16(frame[udp + 7])
    let identification = UInt16(frame[ip + 4]) << 8 | UInt16(frame[ip + 5])
    var datagrams: [[UInt8]] = []
    for (index, start) in stride(from: 0, to: payload.count, by: gsoSize).enumerated() {
        var datagram = headers + payload[start..<min(start + gsoSize, payload.count)]
        func store(_ value: UInt16, at offset: Int) {
            datagram[offset] = UInt8(value >> 8)
            datagram[offset + 1] = UInt8(value & 0xFF)
        }
        let udpLength = UInt16(datagram.count - udp)
        store(UInt16(datagram.count - ip), at: ip + 2)
        store(identification &+ UInt16(index), at: ip + 4)
        store(0, at: ip + 10)
        store(InternetChecksum.checksum(datagram.span.bytes.extracting(ip..<udp)), at: ip + 10)
        store(udpLength, at: udp + 4)
        // csum16_add(csum16_sub(check, old length), new length), then the complement of the sum from the UDP header.
        store(InternetChecksum.combine(InternetChecksum.combine(partial, ~runLength), udpLength), at: udp + 6)
        let completed = InternetChecksum.checksum(datagram.span.bytes.extracting(udp..<datagram.count))
        store(completed == 0 ? 0xFFFF : completed, at: udp + 6)
        datagrams.append(datagram)
    }
    return datagrams
}

@Suite("Dataplane worker, underlay TAP (GSO over the UDP tunnel)")
struct UnderlayWorkerTests {
    @Test("a container's TSO burst leaves as one underlay frame, described for the kernel to cut")
    func tsoBurstLeavesWhole() throws {
        let harness = try UnderlayHarness()
        let (frame, sent) = try harness.containerBurst(payload: 60_000, seed: 3, gsoSize: 1398)
        try #require(sent.count == 1)
        // Bytes counted from the outer IPv4 header on, as on the socket underlay.
        #expect(harness.counters.snapshot(of: .peer(index: Int(harness.peer.index))).txBytes == UInt64(36 + frame.count))
        let header = sent[0].header
        #expect(header.tunnel == VirtioNetTunnelHeader.udpTunnelIPv4)
        #expect(header.inner.gsoType == .tcpv4 && header.inner.gsoSize == 1398)
        #expect(header.inner.flags == .needsChecksum)
        #expect(header.inner.checksumStart == 50 + 34 && header.inner.checksumOffset == 16)
        #expect(header.outerTransportOffset == 34 && header.innerNetworkOffset == 64)
        let decoded = try decodeUnderlayFrame(sent[0].frame)
        #expect(decoded.inner == frame, "the burst itself goes untouched, its checksum still partial")
        #expect(decoded.sourcePort >= EncapTemplate.sourcePortBase)
    }

    @Test("a burst whose segments would not fit the underlay is segmented here, each segment a plain frame")
    func oversizedSegmentsAreCutInUserSpace() throws {
        // gso_size 1448 (a 1500-byte MTU's): with 40 bytes of headers 1488 > the overlay MTU of 1450.
        let (_, sent) = try UnderlayHarness().containerBurst(payload: 10_000, seed: 4, gsoSize: 1448)
        let payload = pattern(10_000, seed: 4)
        #expect(sent.count == (10_000 + 1409) / 1410)
        var received: [UInt8] = []
        for (header, outer) in sent {
            #expect(header == .plain)
            #expect(outer.count <= 14 + 1500)
            let segment = try CheckedTCPFrame(try decodeUnderlayFrame(outer).inner)
            received += segment.payload
        }
        #expect(received == payload)
    }

    @Test("a TCP burst read from the underlay passes whole to a virtio TAP, with the container's header")
    func burstFromUnderlayPassesWholeToVirtioTAP() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        try harness.learnLocal(macA, onPort: 0)
        let payload = pattern(30_000, seed: 5)
        let inner = tcpFrame(
            from: macRemote, to: macA, sequence: 77, identification: 9, payload: payload, checksum: .partial)
        harness.injectUnderlay(UnderlayHarness.outerFrame(inner), header: UnderlayHarness.burstHeader)
        try harness.step()
        let written = harness.sentToPort(0)
        try #require(written.count == 1)
        let first = written[0]
        let parsed = VirtioNetHeader.parse(first.span.bytes)
        let containerHeader = try #require(parsed)
        #expect(containerHeader.gsoType == .tcpv4 && containerHeader.gsoSize == 1398)
        #expect(containerHeader.flags == .needsChecksum)
        #expect(containerHeader.checksumStart == 34 && containerHeader.checksumOffset == 16)
        #expect(Array(written[0][VirtioNetHeader.size...]) == inner)
        #expect(harness.worker.offloadStatistics.tsoFramesReceived == 1)
    }

    @Test("the same burst for a plain TAP is segmented, every segment with a valid checksum")
    func burstFromUnderlayIsSegmentedForPlainTAP() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        try harness.learnLocal(macB, onPort: 1)
        let payload = pattern(5_000, seed: 6)
        let inner = tcpFrame(
            from: macRemote, to: macB, sequence: 77, identification: 9, payload: payload, checksum: .partial)
        harness.injectUnderlay(UnderlayHarness.outerFrame(inner), header: UnderlayHarness.burstHeader)
        try harness.step()
        let written = harness.sentToPort(1)
        #expect(written.count == (5_000 + 1397) / 1398)
        #expect(try written.flatMap { try CheckedTCPFrame($0).payload } == payload)
    }

    @Test("small frames of one flow leave as one UDP_L4 write, whose datagrams are the VXLAN packets with valid checksums")
    func smallFramesOfOneFlowShareOneWrite() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        let frames = [udpFrame(from: macB, to: macRemote), udpFrame(from: macB, to: macRemote),
                      udpFrame(from: macB, to: macRemote, size: 30)]
        for frame in frames { #expect(harness.engine.inject(frame, into: harness.portHandles[1])) }
        try harness.step()
        let sent = try harness.sentToUnderlay()
        try #require(sent.count == 1, "one write for the run")
        let header = sent[0].header
        let piece = VXLANHeader.size + frames[0].count
        #expect(header.tunnel == 0 && !header.outerChecksumPartial)
        #expect(header.inner.gsoType == .udpL4 && Int(header.inner.gsoSize) == piece)
        #expect(header.inner.flags == .needsChecksum)
        #expect(header.inner.checksumStart == 34 && header.inner.checksumOffset == 6 && header.inner.headerLength == 42)
        #expect(sent[0].frame.count == 42 + 2 * piece + VXLANHeader.size + frames[2].count)
        let datagrams = segmentUnderlayRun(sent[0].frame, gsoSize: piece)
        try #require(datagrams.count == 3)
        var sourcePorts: Set<UInt16> = []
        for (datagram, frame) in zip(datagrams, frames) {
            // decodeUnderlayFrame checks addresses, VNI and lengths; vxlanIPv4 there verifies the UDP checksum.
            let decoded = try decodeUnderlayFrame(datagram)
            #expect(decoded.inner == frame)
            sourcePorts.insert(decoded.sourcePort)
            let checksum = UInt16(datagram[40]) << 8 | UInt16(datagram[41])
            #expect(checksum != 0, "USO has no zero-checksum form")
        }
        #expect(sourcePorts.count == 1 && sourcePorts.first! >= EncapTemplate.sourcePortBase)
        let peerRow = harness.counters.snapshot(of: .peer(index: Int(harness.peer.index)))
        #expect(peerRow.txFrames == 3 && peerRow.txBytes == UInt64(frames.reduce(0) { $0 + 36 + $1.count }))
        #expect(harness.worker.offloadStatistics.udpGSOSends == 1)
        #expect(harness.worker.offloadStatistics.udpGSODatagrams == 3)
    }

    @Test("a lone frame, and frames of different flows, leave as plain writes with a zero UDP checksum")
    func framesWithNothingToShareStayPlain() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        let other = PacketBuilder.ethernetIPv4UDP(
            destination: macRemote, source: macB, sourceIP: IPv4Address(10, 0, 0, 1),
            destinationIP: IPv4Address(10, 0, 0, 2), sourcePort: 4321, destinationPort: 5678,
            payload: [UInt8](repeating: 0x5A, count: 64))
        let frames = [udpFrame(from: macB, to: macRemote), other]
        for frame in frames { #expect(harness.engine.inject(frame, into: harness.portHandles[1])) }
        try harness.step()
        let sent = try harness.sentToUnderlay()
        try #require(sent.count == 2)
        for (write, frame) in zip(sent, frames) {
            #expect(write.header == .plain)
            #expect(try decodeUnderlayFrame(write.frame).inner == frame)
            #expect(write.frame[40] == 0 && write.frame[41] == 0, "VXLAN's zero UDP checksum (RFC 7348 §5)")
        }
        #expect(harness.worker.offloadStatistics.udpGSOSends == 0)
    }

    @Test("a UDP_L4 run read from the underlay is split into its datagrams; a bad one is dropped, the rest go on")
    func runFromUnderlayIsSplit() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        try harness.learnLocal(macB, onPort: 1)
        let frames = (0..<4).map { _ in udpFrame(from: macRemote, to: macB) }
        var pieces = frames.map { PacketBuilder.vxlanDatagram(vni: UnderlayHarness.vni, inner: $0) }
        pieces[2][0] = 0  // the I flag clear: not VXLAN
        let payload = pieces.flatMap { $0 }
        // What the kernel hands over: the run's headers with lengths covering every piece (the builder's VXLAN
        // header is the first piece's), the checksum partial.
        let outer = UnderlayHarness.outerFrame(Array(payload[VXLANHeader.size...]))
        let header = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(
                flags: .needsChecksum, gsoType: .udpL4, headerLength: 42, gsoSize: UInt16(pieces[0].count),
                checksumStart: 34, checksumOffset: 6))
        harness.injectUnderlay(outer, header: header)
        try harness.step()
        #expect(harness.sentToPort(1) == [frames[0], frames[1], frames[3]])
        let peerRow = harness.counters.snapshot(of: .peer(index: Int(harness.peer.index)))
        #expect(peerRow.drops[DropCode(PacketDropReason.vxlanIFlagClear)] == 1)
        #expect(harness.worker.offloadStatistics.groFramesReceived == 1)
        #expect(harness.worker.offloadStatistics.groDatagrams == 4)
    }

    @Test("a UDP_L4 run with gso_size 0 is dropped and counted")
    func runWithoutSizeIsDropped() throws {
        let harness = try UnderlayHarness()
        try harness.learnLocal(macB, onPort: 1)
        let header = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(flags: .needsChecksum, gsoType: .udpL4, checksumStart: 34, checksumOffset: 6))
        harness.injectUnderlay(UnderlayHarness.outerFrame(udpFrame(from: macRemote, to: macB)), header: header)
        try harness.step()
        #expect(harness.sentToPort(1).isEmpty)
        #expect(harness.counters.snapshot(of: .peer(index: Int(harness.peer.index))).drops[
            DropCode(OffloadDropReason.gsoSizeZero)] == 1)
    }

    @Test("ARP from the underlay is punted without a port; other hosts' frames are counted, not switched")
    func arpIsPuntedAndForeignFramesAreCounted() throws {
        let harness = try UnderlayHarness()
        let request = PacketBuilder.arpRequest(
            senderMAC: UnderlayHarness.peerMAC, senderIP: UnderlayHarness.peerAddress,
            targetIP: UnderlayHarness.local)
        harness.injectUnderlay(request)
        // VXLAN to another host's MAC, and to our MAC but another address: a host ignores both.
        harness.injectUnderlay(UnderlayHarness.outerFrame(udpFrame(from: macRemote, to: .broadcast), to: macB))
        harness.injectUnderlay(
            UnderlayHarness.outerFrame(udpFrame(from: macRemote, to: .broadcast), destination: IPv4Address(192, 0, 2, 9)))
        try harness.step()
        let punted = harness.punt.drain()
        try #require(punted.count == 1)
        #expect(punted[0].port == nil && punted[0].bytes == request)
        #expect(harness.drops(.unattributed, .underlayNotForThisVTEP) == 2)
        #expect(harness.sentToPort(0).isEmpty && harness.sentToPort(1).isEmpty)
    }

    @Test("frames for a peer whose next hop is unresolved are dropped and counted, and flow once it resolves")
    func unresolvedNextHopDrops() throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        harness.publish(nextHop: nil)
        harness.engine.inject(udpFrame(from: macB, to: macRemote), into: harness.portHandles[1])
        try harness.step()
        #expect(try harness.sentToUnderlay().isEmpty)
        #expect(harness.drops(.peer(index: Int(harness.peer.index)), .underlayNextHopUnresolved) == 1)
        harness.publish(nextHop: UnderlayHarness.peerMAC)
        let frame = udpFrame(from: macB, to: macRemote)
        harness.engine.inject(frame, into: harness.portHandles[1])
        try harness.step()
        let sent = try harness.sentToUnderlay()
        try #require(sent.count == 1)
        #expect(sent[0].header == .plain)
        #expect(try decodeUnderlayFrame(sent[0].frame).inner == frame)
    }

    @Test("the control plane's ARP frames go out of the underlay TAP behind a plain tunnel header")
    func controlFramesLeaveThroughTheUnderlay() throws {
        let harness = try UnderlayHarness()
        let request = PacketBuilder.arpRequest(
            senderMAC: UnderlayHarness.localMAC, senderIP: UnderlayHarness.local,
            targetIP: UnderlayHarness.peerAddress)
        _ = try harness.attach(.transmitUnderlay(bytes: request))
        let sent = try harness.sentToUnderlay()
        try #require(sent.count == 1)
        #expect(sent[0].header == .plain && sent[0].frame == request)
    }
}
