// The worker end to end on in-memory ports: frames are injected as an engine would receive them (TAP frames,
// VXLAN datagram payloads, raw IPv4+GRE packets, GRE datagrams of a raw IPv6 socket) and what the worker transmits
// is decoded and compared.
//
// One suite runs for every encapsulation (VPP's template_bd.py is reused by test_vxlan.py, test_gre...): decap,
// encap, flooding with split horizon, learning, VNI isolation, and malformed input counted.

import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXPacket
import VXTestSupport

/// A peer's encapsulation as the suite is parameterized over it.
struct EncapCase: CustomTestStringConvertible, Sendable {
    var encapsulation: TunnelEncapsulation
    var layout: GREKeyLayout
    /// GRE over an IPv6 underlay: raw IPv6 sockets, so datagrams start at GRE both ways.
    var ipv6 = false
    var testDescription: String {
        encapsulation == .vxlan ? "vxlan" : "gre\(ipv6 ? " over IPv6" : "") key=\(layout)"
    }

    static let all: [EncapCase] = [
        EncapCase(encapsulation: .vxlan, layout: .vni),
        EncapCase(encapsulation: .gre, layout: .vni),
        EncapCase(encapsulation: .gre, layout: .nvgre),
        EncapCase(encapsulation: .gre, layout: .none),
        EncapCase(encapsulation: .gre, layout: .vni, ipv6: true),
        EncapCase(encapsulation: .gre, layout: .none, ipv6: true),
    ]
}

/// A one-worker switch on a MemoryEngine: VNI 42 with ports p1, p2 and one peer; VNI 43 with port p3.
final class Harness {
    static let local = UnderlayAddress(192, 0, 2, 1)
    static let peerAddress = UnderlayAddress(192, 0, 2, 2)
    static let localIPv6 = UnderlayAddress("2001:db8::1")!
    static let peerAddressIPv6 = UnderlayAddress("2001:db8::2")!
    static let vni = VNI(42)!
    static let otherVNI = VNI(43)!

    let engine: MemoryEngine
    let worker: DataplaneWorker<MemoryEngine>
    let table = ForwardingTable(capacity: 1024)
    let publisher = ConfigPublisher()
    let counters = WorkerCounters(maxPorts: 16, maxPeers: 16)
    let encap: EncapCase
    /// This switch's and the peer's underlay addresses: `Harness.local`/`peerAddress`, or the IPv6 pair.
    let local: UnderlayAddress
    let peerAddress: UnderlayAddress
    var ports: [PortID] = []
    var portHandles: [PortHandle] = []
    var peer: PeerID!
    var tunnelHandle: PortHandle!
    var senderHandle: PortHandle!

    /// - Parameters:
    ///   - punt: where the worker punts; `puntRule` applies to port 0.
    init(encap: EncapCase, punt: PuntQueue? = nil, puntRule: PuntRule? = nil) throws {
        self.encap = encap
        local = encap.ipv6 ? Harness.localIPv6 : Harness.local
        peerAddress = encap.ipv6 ? Harness.peerAddressIPv6 : Harness.peerAddress
        engine = MemoryEngine(pool: PacketBufferPool(count: 256))
        worker = DataplaneWorker(engine: engine, table: table, publisher: publisher, counters: counters, punt: punt)
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: Harness.vni)!
        let other = builder.addDomain(vni: Harness.otherVNI)!
        ports = [builder.addPort(domain: domain)!, builder.addPort(domain: domain)!, builder.addPort(domain: other)!]
        peer = builder.addPeer(peerAddress, to: domain)!
        let template = EncapTemplate(
            encapsulation: encap.encapsulation, local: local, remote: peerAddress, vni: Harness.vni,
            greKeyLayout: encap.layout)
        let tunnel = PeerTunnel(
            peer: peer, address: peerAddress, encapsulation: encap.encapsulation, greKeyLayout: encap.layout,
            unkeyedVNI: encap.layout == .none ? Harness.vni : nil, templates: [domain: template])
        publisher.publish(
            DataplaneConfig(
                topology: builder.build(), peers: [tunnel], punt: puntRule.map { [ports[0]: $0] } ?? [:]))
        // Fake descriptors: the MemoryEngine only numbers them.
        for (index, port) in ports.enumerated() {
            portHandles.append(try attach(.attachPort(port, fd: Int32(100 + index), kind: .tap(virtioHeader: false))))
        }
        let tunnelKind: PortKind = encap.encapsulation == .vxlan ? .udpTunnel : encap.ipv6 ? .rawGREIPv6 : .rawGRE
        tunnelHandle = try attach(.attachTunnel(fd: 200, kind: tunnelKind))
        senderHandle = try attach(.attachTunnel(fd: 201, kind: .rawSender))
    }

    /// Runs `command` on the worker (stepping it once on this thread) and returns the handle it made.
    func attach(_ command: WorkerCommand) throws -> PortHandle {
        let result = Mutex<Result<PortHandle?, IOError>?>(nil)
        worker.mailbox.post(command) { outcome in result.withLock { $0 = outcome } }
        try worker.runOnce(timeout: .zero)
        return try #require(try result.withLock { $0 }!.get())
    }

    /// Injects a frame on local port `index` and runs one batch.
    func fromPort(_ index: Int, _ frame: [UInt8]) throws {
        #expect(engine.inject(frame, into: portHandles[index]))
        try worker.runOnce(timeout: .seconds(1))
    }

    /// Injects what the tunnel socket would receive for `inner` sent by the peer in `vni`, and runs one batch.
    func fromPeer(_ inner: [UInt8], vni: VNI = Harness.vni, from address: UnderlayAddress? = nil) throws {
        try fromPeerRaw(tunnelBytes(inner, vni: vni), from: address)
    }

    /// - Parameter address: the sender; nil: the peer.
    func fromPeerRaw(_ bytes: [UInt8], from address: UnderlayAddress? = nil) throws {
        #expect(engine.inject(bytes, into: tunnelHandle, remote: address ?? peerAddress))
        try worker.runOnce(timeout: .seconds(1))
    }

    /// The bytes the engine would deliver for `inner` from the peer: VXLAN payload, the whole IPv4+GRE packet, or
    /// over IPv6 GRE header + frame.
    func tunnelBytes(_ inner: [UInt8], vni: VNI) -> [UInt8] {
        switch encap.encapsulation {
        case .vxlan:
            return PacketBuilder.vxlanDatagram(vni: vni, inner: inner)
        case .gre where encap.ipv6:
            return PacketBuilder.greDatagram(key: encap.layout.key(for: vni), inner: inner)
        case .gre:
            return PacketBuilder.greIPv4(
                source: peerAddress.ipv4!, destination: local.ipv4!, key: encap.layout.key(for: vni), inner: inner)
        }
    }

    func sentToPort(_ index: Int) -> [[UInt8]] { engine.drainTransmitted(from: portHandles[index]).map(\.bytes) }

    /// Frames sent towards the peer, decapsulated: (VNI, inner frame, outer UDP source port or nil).
    func sentToPeer() throws -> [(vni: VNI, inner: [UInt8])] {
        try engine.drainTransmitted(from: senderHandle).map { sent in
            #expect(sent.remote == peerAddress)
            return try decodeOuter(sent.bytes)
        }
    }

    func decodeOuter(_ packet: [UInt8]) throws -> (vni: VNI, inner: [UInt8]) {
        switch encap.encapsulation {
        case .vxlan:
            let decap = try TunnelDecap.vxlanIPv4(packet.span.bytes).get()
            #expect(decap.ipv4.source == Harness.local.ipv4 && decap.ipv4.destination == Harness.peerAddress.ipv4)
            return (decap.vni, Array(packet[decap.innerOffset..<(decap.innerOffset + decap.innerLength)]))
        case .gre where encap.ipv6:
            let ip = try IPv6Header.parse(packet.span.bytes).get()
            #expect(ip.nextHeader == .gre && Int(ip.payloadLength) == packet.count - IPv6Header.size)
            #expect(UnderlayAddress(ip.source) == local && UnderlayAddress(ip.destination) == peerAddress)
            let gre = Array(packet[IPv6Header.size...])
            let decap = try TunnelDecap.greDatagram(gre.span.bytes).get()
            let vni = try decap.vni(layout: encap.layout, unkeyedVNI: Harness.vni).get()
            return (vni, Array(gre[decap.innerOffset..<(decap.innerOffset + decap.innerLength)]))
        case .gre:
            let decap = try TunnelDecap.greIPv4(packet.span.bytes).get()
            let vni = try decap.vni(layout: encap.layout, unkeyedVNI: Harness.vni).get()
            return (vni, Array(packet[decap.innerOffset..<(decap.innerOffset + decap.innerLength)]))
        }
    }

    func drops(_ entity: CounterEntity, _ code: DropCode) -> UInt64 { counters.snapshot(of: entity).drops[code] ?? 0 }
}

import Synchronization

let macA = MACAddress(0x02, 0, 0, 0, 0, 0x0A)
let macB = MACAddress(0x02, 0, 0, 0, 0, 0x0B)
let macRemote = MACAddress(0x02, 0, 0, 0, 0, 0x0F)

func udpFrame(from source: MACAddress, to destination: MACAddress, size: Int = 64) -> [UInt8] {
    PacketBuilder.ethernetIPv4UDP(
        destination: destination, source: source, sourceIP: IPv4Address(10, 0, 0, 1),
        destinationIP: IPv4Address(10, 0, 0, 2), sourcePort: 1234, destinationPort: 5678,
        payload: [UInt8](repeating: 0x5A, count: size))
}

@Suite("Dataplane worker, per encapsulation")
struct WorkerEncapsulationTests {
    @Test("a broadcast from a port floods to the other port of its VNI and to the peer, not to another VNI",
          arguments: EncapCase.all)
    func broadcastFromPortFloodsLocallyAndToPeers(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        let arp = PacketBuilder.arpRequest(
            senderMAC: macA, senderIP: IPv4Address(10, 0, 0, 1), targetIP: IPv4Address(10, 0, 0, 2))
        try harness.fromPort(0, arp)
        #expect(harness.sentToPort(0).isEmpty, "never back to the ingress")
        #expect(harness.sentToPort(1) == [arp])
        #expect(harness.sentToPort(2).isEmpty, "VNI 43 must not see VNI 42's broadcast")
        let toPeer = try harness.sentToPeer()
        #expect(toPeer.count == 1)
        #expect(toPeer.first?.vni == Harness.vni)
        #expect(toPeer.first?.inner == arp)
    }

    @Test("a broadcast from the tunnel reaches local ports only (split horizon)", arguments: EncapCase.all)
    func broadcastFromTunnelStaysLocal(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        let frame = udpFrame(from: macRemote, to: .broadcast)
        try harness.fromPeer(frame)
        #expect(harness.sentToPort(0) == [frame])
        #expect(harness.sentToPort(1) == [frame])
        #expect(harness.sentToPort(2).isEmpty)
        #expect(try harness.sentToPeer().isEmpty)
    }

    @Test("a MAC learnt from the tunnel is reached by unicast through the tunnel only", arguments: EncapCase.all)
    func learnsRemoteMACAndEncapsulatesUnicast(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        try harness.fromPeer(udpFrame(from: macRemote, to: .broadcast))
        _ = harness.sentToPort(0)
        _ = harness.sentToPort(1)
        let reply = udpFrame(from: macA, to: macRemote, size: 1400)
        try harness.fromPort(0, reply)
        #expect(harness.sentToPort(1).isEmpty, "known unicast must not flood")
        let toPeer = try harness.sentToPeer()
        #expect(toPeer.map(\.inner) == [reply])
        #expect(toPeer.first?.vni == Harness.vni)
    }

    @Test("a MAC learnt on a port is reached by unicast from the tunnel", arguments: EncapCase.all)
    func decapsulatesToLearntPort(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        try harness.fromPort(1, udpFrame(from: macB, to: .broadcast))
        _ = harness.sentToPort(0)
        _ = try harness.sentToPeer()
        let frame = udpFrame(from: macRemote, to: macB)
        try harness.fromPeer(frame)
        #expect(harness.sentToPort(1) == [frame])
        #expect(harness.sentToPort(0).isEmpty)
    }

    // Without a key there is no VNI on the wire: a keyless GRE peer's frames always belong to its one VNI, so it
    // is not among the arguments (the keyless case is `keylessGREFramesBelongToThePeersVNI`).
    @Test(
        "a tunnel frame for a VNI the switch does not serve is dropped and counted",
        arguments: EncapCase.all.filter { $0.layout != .none || $0.encapsulation == .vxlan })
    func unknownVNIIsCounted(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        try harness.fromPeer(udpFrame(from: macRemote, to: .broadcast), vni: VNI(4242)!)
        #expect(harness.sentToPort(0).isEmpty && harness.sentToPort(1).isEmpty && harness.sentToPort(2).isEmpty)
        #expect(harness.drops(.peer(index: 0), DropCode(DataplaneDropReason.unknownVNI)) == 1)
    }

    @Test("frames from an address that is not a peer are dropped and counted", arguments: EncapCase.all)
    func unknownPeerIsCounted(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        let stranger = encap.ipv6 ? UnderlayAddress("2001:db8::99")! : UnderlayAddress(192, 0, 2, 99)
        try harness.fromPeer(udpFrame(from: macRemote, to: .broadcast), from: stranger)
        #expect(harness.sentToPort(0).isEmpty)
        #expect(harness.drops(.unattributed, DropCode(DataplaneDropReason.unknownPeer)) == 1)
    }

    @Test("every truncation of a tunnel packet is dropped and counted, never forwarded", arguments: EncapCase.all)
    func truncatedTunnelPacketsAreCounted(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        let whole = harness.tunnelBytes(udpFrame(from: macRemote, to: .broadcast), vni: Harness.vni)
        // Cut anywhere before the end of the inner Ethernet header.
        let headerEnd = whole.count - (udpFrame(from: macRemote, to: .broadcast).count - 14)
        for length in 0..<headerEnd {
            try harness.fromPeerRaw(Array(whole.prefix(length)))
        }
        #expect(harness.sentToPort(0).isEmpty && harness.sentToPort(1).isEmpty)
        #expect(harness.counters.snapshot(of: .peer(index: 0)).totalDrops == UInt64(headerEnd))
        #expect(harness.engine.buffersOutstanding == 0, "every rx buffer must be released")
    }
}

@Suite("Dataplane worker")
struct WorkerTests {
    let vxlan = EncapCase(encapsulation: .vxlan, layout: .vni)

    @Test("a keyless GRE peer's frames are delivered in the peer's one VNI, and only there")
    func keylessGREFramesBelongToThePeersVNI() throws {
        let harness = try Harness(encap: EncapCase(encapsulation: .gre, layout: .none))
        let frame = udpFrame(from: macRemote, to: .broadcast)
        try harness.fromPeer(frame)
        #expect(harness.sentToPort(0) == [frame] && harness.sentToPort(1) == [frame])
        #expect(harness.sentToPort(2).isEmpty, "VNI 43 must not see the keyless peer's frames")
    }

    @Test("a VXLAN header with the I flag clear is dropped with its reason")
    func vxlanIFlagClearIsCounted() throws {
        let harness = try Harness(encap: vxlan)
        var datagram = PacketBuilder.vxlanDatagram(vni: Harness.vni, inner: udpFrame(from: macRemote, to: .broadcast))
        datagram[0] = 0
        try harness.fromPeerRaw(datagram)
        #expect(harness.sentToPort(0).isEmpty)
        #expect(harness.drops(.peer(index: 0), DropCode(PacketDropReason.vxlanIFlagClear)) == 1)
    }

    @Test("a GRE frame from a VXLAN peer is dropped as the wrong encapsulation")
    func wrongEncapsulationIsCounted() throws {
        // The harness's tunnel socket is a VXLAN one; a GRE peer config with a VXLAN socket is the mismatch.
        let harness = try Harness(encap: EncapCase(encapsulation: .gre, layout: .vni))
        // Attach a UDP (VXLAN) socket and send on it: the peer is a GRE peer, so the frame is refused.
        let udpHandle = try harness.attach(.attachTunnel(fd: 300, kind: .udpTunnel))
        #expect(harness.engine.inject(
            PacketBuilder.vxlanDatagram(vni: Harness.vni, inner: udpFrame(from: macRemote, to: .broadcast)),
            into: udpHandle, remote: Harness.peerAddress))
        try harness.worker.runOnce(timeout: .seconds(1))
        #expect(harness.sentToPort(0).isEmpty)
        #expect(harness.drops(.peer(index: 0), DropCode(DataplaneDropReason.wrongEncapsulation)) == 1)
    }

    @Test("a frame with a multicast source MAC is dropped and not learnt")
    func multicastSourceIsDropped() throws {
        let harness = try Harness(encap: vxlan)
        try harness.fromPort(0, udpFrame(from: MACAddress(0x01, 0, 0x5E, 0, 0, 1), to: .broadcast))
        #expect(harness.sentToPort(1).isEmpty)
        #expect(harness.drops(.port(index: 0), DropCode(ForwardingDropReason.invalidSourceMAC)) == 1)
        #expect(harness.table.count == 0)
    }

    @Test("a frame to a MAC behind its own ingress port is dropped")
    func frameBackToIngressIsDropped() throws {
        let harness = try Harness(encap: vxlan)
        try harness.fromPort(0, udpFrame(from: macA, to: .broadcast))
        try harness.fromPort(0, udpFrame(from: macB, to: macA))
        #expect(harness.sentToPort(0).isEmpty)
        #expect(harness.drops(.port(index: 0), DropCode(ForwardingDropReason.sameAsIngress)) == 1)
    }

    @Test("learning happens before forwarding within one batch")
    func learnsBeforeForwardingWithinABatch() throws {
        let harness = try Harness(encap: vxlan)
        // Both frames in one batch: B's frame to A must already go unicast to port 0, because A was learnt from
        // the first frame of the same batch.
        #expect(harness.engine.inject(udpFrame(from: macA, to: .broadcast), into: harness.portHandles[0]))
        #expect(harness.engine.inject(udpFrame(from: macB, to: macA), into: harness.portHandles[1]))
        try harness.worker.runOnce(timeout: .seconds(1))
        let toPortZero = harness.sentToPort(0)
        #expect(toPortZero.count == 1)
        #expect(try harness.sentToPeer().count == 1, "only the broadcast goes to the peer")
    }

    @Test("a MAC that moves within one batch is learnt where its last frame came from")
    func macMovingWithinABatchEndsAtItsLastIngress() throws {
        let harness = try Harness(encap: vxlan)
        // One batch: A twice from port 0 (the second is a repeat the worker may skip), then A from port 1.
        for port in [0, 0, 1] {
            #expect(harness.engine.inject(udpFrame(from: macA, to: .broadcast), into: harness.portHandles[port]))
        }
        try harness.worker.runOnce(timeout: .seconds(1))
        _ = harness.sentToPort(0)
        _ = harness.sentToPort(1)
        try harness.fromPeer(udpFrame(from: macRemote, to: macA))
        #expect(harness.sentToPort(0).isEmpty)
        #expect(harness.sentToPort(1).count == 1)
    }

    @Test("each of a run of frames with a multicast source in one batch is dropped and counted")
    func repeatedRefusalsAreEachCounted() throws {
        let harness = try Harness(encap: vxlan)
        let multicast = MACAddress(0x01, 0, 0x5E, 0, 0, 1)
        for _ in 0..<3 {
            #expect(harness.engine.inject(udpFrame(from: multicast, to: .broadcast), into: harness.portHandles[0]))
        }
        try harness.worker.runOnce(timeout: .seconds(1))
        #expect(harness.sentToPort(1).isEmpty)
        #expect(harness.drops(.port(index: 0), DropCode(ForwardingDropReason.invalidSourceMAC)) == 3)
    }

    @Test("a batch mixing known and unknown destinations from one source decides each frame by its destination")
    func runsOfFramesAreDecidedByTheirOwnDestination() throws {
        let harness = try Harness(encap: vxlan)
        try harness.fromPort(1, udpFrame(from: macB, to: .broadcast))
        _ = harness.sentToPort(0)
        _ = try harness.sentToPeer()
        // From port 0: B, B (known, port 1), then an unknown MAC (flood: port 1 and the peer), then B again.
        let unknown = MACAddress(0x02, 0, 0, 0, 0, 0x0C)
        for destination in [macB, macB, unknown, macB] {
            #expect(harness.engine.inject(udpFrame(from: macA, to: destination), into: harness.portHandles[0]))
        }
        try harness.worker.runOnce(timeout: .seconds(1))
        #expect(harness.sentToPort(1).count == 4)
        #expect(try harness.sentToPeer().count == 1, "only the frame to the unknown MAC is flooded to the peer")
    }

    @Test("counters: frames and bytes in and out per port and peer")
    func countsFramesAndBytes() throws {
        let harness = try Harness(encap: vxlan)
        let frame = udpFrame(from: macA, to: .broadcast, size: 100)
        try harness.fromPort(0, frame)
        let port0 = harness.counters.snapshot(of: .port(index: 0))
        let port1 = harness.counters.snapshot(of: .port(index: 1))
        let peer = harness.counters.snapshot(of: .peer(index: 0))
        #expect(port0.rxFrames == 1 && port0.rxBytes == UInt64(frame.count))
        #expect(port1.txFrames == 1 && port1.txBytes == UInt64(frame.count))
        #expect(peer.txFrames == 1 && peer.txBytes == UInt64(frame.count + EncapTemplate.vxlanIPv4Size))
    }

    @Test("the VXLAN source port follows the inner flow and stays in the dynamic range")
    func sourcePortFollowsFlowHash() throws {
        let harness = try Harness(encap: vxlan)
        let frame = udpFrame(from: macA, to: .broadcast)
        try harness.fromPort(0, frame)
        try harness.fromPort(0, frame)
        let sent = harness.engine.drainTransmitted(from: harness.senderHandle)
        #expect(sent.count == 2)
        let ports = try sent.map { try TunnelDecap.vxlanIPv4($0.bytes.span.bytes).get().udp.sourcePort }
        #expect(ports[0] == ports[1], "same flow, same source port")
        #expect(ports[0] >= 49152)
        #expect(ports[0] == EncapTemplate.udpSourcePort(flowHash: FlowHash.hash(frame: frame.span.bytes)))
    }

    @Test("drop codes have unique names and descriptions")
    func dropCodesAreNamed() {
        let names = DropCode.all.map(\.name)
        #expect(Set(names).count == DropCode.count)
        #expect(names.contains("vxlanIFlagClear") && names.contains("splitHorizon") && names.contains("unknownPeer"))
        #expect(DropCode.all.allSatisfy { !$0.description.isEmpty })
    }
}

@Suite("Dataplane worker: punting to the control plane")
struct WorkerPuntTests {
    static let server = IPv4Address(10, 0, 0, 254)

    func dhcpDiscover(from mac: MACAddress) -> [UInt8] {
        PacketBuilder.ethernetIPv4UDP(
            destination: .broadcast, source: mac, sourceIP: .any, destinationIP: IPv4Address(255, 255, 255, 255),
            sourcePort: 68, destinationPort: 67, payload: [UInt8](repeating: 0, count: 240))
    }

    @Test("DHCP and ARP for the switch's address are punted, not switched; a full queue counts; other ARP floods")
    func puntsDHCPAndARPForTheSwitch() throws {
        let queue = PuntQueue(capacity: 1) {}
        let harness = try Harness(
            encap: EncapCase(encapsulation: .vxlan, layout: .vni), punt: queue,
            puntRule: PuntRule(dhcp: true, arpTarget: Self.server))

        try harness.fromPort(0, dhcpDiscover(from: macA))
        #expect(harness.sentToPort(1).isEmpty)
        #expect(try harness.sentToPeer().isEmpty, "a DHCP request must not flood")
        let punted = queue.drain()
        #expect(punted.count == 1 && punted.first?.port == harness.ports[0])
        #expect(punted.first?.bytes == dhcpDiscover(from: macA))

        let arpForSwitch = PacketBuilder.arpRequest(senderMAC: macA, senderIP: IPv4Address(10, 0, 0, 1), targetIP: Self.server)
        try harness.fromPort(0, arpForSwitch)
        #expect(harness.sentToPort(1).isEmpty, "ARP for the switch's own address must not flood")
        // The queue now holds that ARP request; one more punted frame does not fit.
        try harness.fromPort(0, dhcpDiscover(from: macA))
        #expect(queue.drain().map(\.bytes) == [arpForSwitch])
        #expect(harness.drops(.port(index: 0), DropCode(DataplaneDropReason.puntQueueFull)) == 1)

        let arpForSomeoneElse = PacketBuilder.arpRequest(
            senderMAC: macA, senderIP: IPv4Address(10, 0, 0, 1), targetIP: IPv4Address(10, 0, 0, 2))
        try harness.fromPort(0, arpForSomeoneElse)
        #expect(harness.sentToPort(1) == [arpForSomeoneElse], "ordinary ARP is switched as usual")
        #expect(queue.drain().isEmpty)
    }

    @Test("a port without a rule switches DHCP like any frame")
    func portsWithoutARuleDoNotPunt() throws {
        let queue = PuntQueue(capacity: 4) {}
        let harness = try Harness(
            encap: EncapCase(encapsulation: .vxlan, layout: .vni), punt: queue,
            puntRule: PuntRule(dhcp: true, arpTarget: nil))
        try harness.fromPort(1, dhcpDiscover(from: macB))
        #expect(harness.sentToPort(0) == [dhcpDiscover(from: macB)])
        #expect(queue.drain().isEmpty)
    }

    @Test("control-plane frames go out of the port they are meant for")
    func transmitFrameSendsOutOfThePort() throws {
        let harness = try Harness(encap: EncapCase(encapsulation: .vxlan, layout: .vni))
        let reply = PacketBuilder.arpReply(
            senderMAC: macB, senderIP: Self.server, targetMAC: macA, targetIP: IPv4Address(10, 0, 0, 1))
        let done = Mutex<Result<PortHandle?, IOError>?>(nil)
        harness.worker.mailbox.post(.transmitFrame(harness.ports[1], bytes: reply)) { result in done.withLock { $0 = result } }
        try harness.worker.runOnce(timeout: .zero)
        #expect(done.withLock { $0 } != nil)
        #expect(harness.sentToPort(1) == [reply])
        #expect(harness.sentToPort(0).isEmpty)
    }
}
