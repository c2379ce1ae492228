import Testing
import VXPacket
import VXTestSupport

enum Decoder: String, Sendable {
    case ethernet, arp, ipv4, ipv6Transport, udp, tcp, vxlanDatagram, vxlanIPv4, greIPv4, greDatagram

    func reason(_ bytes: [UInt8]) -> PacketDropReason? {
        let s = bytes.span.bytes
        switch self {
        case .ethernet: return EthernetHeader.parse(s).failureValue
        case .arp: return ARPPacket.parse(s).failureValue
        case .ipv4: return IPv4Header.parse(s).failureValue
        case .ipv6Transport: return IPv6Header.findTransport(in: s).failureValue
        case .udp: return UDPHeader.parse(s).failureValue
        case .tcp: return TCPHeader.parse(s).failureValue
        case .vxlanDatagram: return TunnelDecap.vxlanDatagram(s).failureValue
        case .vxlanIPv4: return TunnelDecap.vxlanIPv4(s).failureValue
        case .greIPv4: return TunnelDecap.greIPv4(s).failureValue
        case .greDatagram: return TunnelDecap.greDatagram(s).failureValue
        }
    }
}

struct RejectionCase: Sendable, CustomTestStringConvertible {
    let name: String
    let decoder: Decoder
    let bytes: [UInt8]
    let expected: PacketDropReason
    var testDescription: String { name }
}

private let a = IPv4Address(192, 0, 2, 1)
private let b = IPv4Address(192, 0, 2, 2)
private let inner = PacketBuilder.ethernetIPv4UDP(
    destination: MACAddress(raw: 0x0200_0000_000B), source: MACAddress(raw: 0x0200_0000_000A),
    sourceIP: IPv4Address(10, 0, 0, 1), destinationIP: IPv4Address(10, 0, 0, 2), sourcePort: 1, destinationPort: 2,
    payload: [1, 2, 3])

/// Applies `edit` to `bytes`, then (optionally) repairs the IPv4 header checksum so only the intended fault
/// remains.
private func edited(_ bytes: [UInt8], fixIPv4: Bool = true, _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
    var out = bytes
    edit(&out)
    if fixIPv4 { mutate(&out) { IPv4Header.updateChecksum(in: &$0) } }
    return out
}

let rejectionCases: [RejectionCase] = {
    let vxlan = PacketBuilder.vxlanDatagram(vni: VNI(42)!, inner: inner)
    let vxlanIP = PacketBuilder.vxlanIPv4(source: a, destination: b, vni: VNI(42)!, inner: inner)
    let gre = PacketBuilder.greIPv4(source: a, destination: b, key: 42, inner: inner)
    let greSum = PacketBuilder.greIPv4(source: a, destination: b, checksum: true, inner: inner)
    let udp = PacketBuilder.ipv4UDP(source: a, destination: b, sourcePort: 9, destinationPort: 10, payload: [0xAA])
    var udpWithChecksum = PacketBuilder.ipv4UDP(
        source: a, destination: b, sourcePort: 9, destinationPort: 4789, payload: vxlan)
    udpWithChecksum[udpWithChecksum.count - 1] ^= 0xFF
    let arp = PacketBuilder.arp(
        ARPPacket(operation: 1, senderMAC: .zero, senderIP: a, targetMAC: .zero, targetIP: b))
    let tcp = PacketBuilder.ipv4TCP(source: a, destination: b, header: TCPHeader(sourcePort: 1, destinationPort: 2), payload: [])
    return [
        RejectionCase(name: "VXLAN I flag clear", decoder: .vxlanDatagram, bytes: edited(vxlan, fixIPv4: false) { $0[0] = 0x00 }, expected: .vxlanIFlagClear),
        RejectionCase(name: "VXLAN only reserved bits set", decoder: .vxlanDatagram, bytes: edited(vxlan, fixIPv4: false) { $0[0] = 0xF7 }, expected: .vxlanIFlagClear),
        RejectionCase(name: "VXLAN header short", decoder: .vxlanDatagram, bytes: Array(vxlan[0..<7]), expected: .truncatedVXLAN),
        RejectionCase(name: "VXLAN inner frame short", decoder: .vxlanDatagram, bytes: Array(vxlan[0..<21]), expected: .truncatedInnerEthernet),
        RejectionCase(name: "VXLAN I flag clear in full packet", decoder: .vxlanIPv4, bytes: edited(vxlanIP, fixIPv4: false) { $0[28] = 0 }, expected: .vxlanIFlagClear),
        RejectionCase(name: "VXLAN wrong UDP port", decoder: .vxlanIPv4, bytes: udp, expected: .udpWrongPort),
        RejectionCase(name: "VXLAN bad UDP checksum", decoder: .vxlanIPv4, bytes: udpWithChecksum, expected: .udpBadChecksum),
        RejectionCase(name: "VXLAN decoder given GRE", decoder: .vxlanIPv4, bytes: gre, expected: .outerNotUDP),
        RejectionCase(name: "outer fragment (MF)", decoder: .vxlanIPv4, bytes: edited(vxlanIP) { $0[6] = 0x20 }, expected: .outerFragment),
        RejectionCase(name: "GRE version 1", decoder: .greIPv4, bytes: edited(gre, fixIPv4: false) { $0[21] |= 1 }, expected: .greBadVersion),
        RejectionCase(name: "GRE routing bit", decoder: .greIPv4, bytes: edited(gre, fixIPv4: false) { $0[20] |= 0x40 }, expected: .greRoutingPresent),
        RejectionCase(name: "GRE carrying IPv4, not TEB", decoder: .greIPv4, bytes: PacketBuilder.greIPv4(source: a, destination: b, protocolType: .ipv4, inner: inner), expected: .greNotTEB),
        RejectionCase(name: "GRE bad checksum", decoder: .greIPv4, bytes: edited(greSum, fixIPv4: false) { $0[$0.count - 1] ^= 0x01 }, expected: .greChecksumBad),
        RejectionCase(name: "GRE key flag but no room", decoder: .greIPv4, bytes: PacketBuilder.ipv4(source: a, destination: b, protocol: .gre, payload: [0x20, 0, 0x65, 0x58]), expected: .truncatedGRE),
        RejectionCase(name: "GRE header short", decoder: .greIPv4, bytes: PacketBuilder.ipv4(source: a, destination: b, protocol: .gre, payload: [0, 0]), expected: .truncatedGRE),
        RejectionCase(name: "GRE inner frame short", decoder: .greIPv4, bytes: PacketBuilder.greIPv4(source: a, destination: b, inner: Array(inner[0..<13])), expected: .truncatedInnerEthernet),
        RejectionCase(name: "GRE decoder given UDP", decoder: .greIPv4, bytes: udp, expected: .outerNotGRE),
        // What a raw IPv6 GRE socket hands over: the same packets from the GRE header on.
        RejectionCase(name: "GRE datagram version 1", decoder: .greDatagram, bytes: edited(Array(gre[20...]), fixIPv4: false) { $0[1] |= 1 }, expected: .greBadVersion),
        RejectionCase(name: "GRE datagram routing bit", decoder: .greDatagram, bytes: edited(Array(gre[20...]), fixIPv4: false) { $0[0] |= 0x40 }, expected: .greRoutingPresent),
        RejectionCase(name: "GRE datagram bad checksum", decoder: .greDatagram, bytes: edited(Array(greSum[20...]), fixIPv4: false) { $0[$0.count - 1] ^= 0x01 }, expected: .greChecksumBad),
        RejectionCase(name: "GRE datagram key flag but no room", decoder: .greDatagram, bytes: [0x20, 0, 0x65, 0x58], expected: .truncatedGRE),
        RejectionCase(name: "GRE datagram 3 bytes", decoder: .greDatagram, bytes: [0, 0, 0x65], expected: .truncatedGRE),
        RejectionCase(name: "GRE datagram inner frame short", decoder: .greDatagram, bytes: Array(gre[20..<(28 + 13)]), expected: .truncatedInnerEthernet),
        // IPv4's version nibble, 4, lands on GRE's R bit: an IPv4 header is never taken for GRE.
        RejectionCase(name: "GRE datagram given a whole IPv4 packet", decoder: .greDatagram, bytes: gre, expected: .greRoutingPresent),
        RejectionCase(name: "IPv4 bad header checksum", decoder: .greIPv4, bytes: edited(gre, fixIPv4: false) { $0[10] ^= 0x10 }, expected: .ipv4BadChecksum),
        RejectionCase(name: "IPv4 version 6", decoder: .ipv4, bytes: edited(udp) { $0[0] = 0x65 }, expected: .ipv4BadVersion),
        RejectionCase(name: "IPv4 IHL 4", decoder: .ipv4, bytes: edited(udp, fixIPv4: false) { $0[0] = 0x44 }, expected: .ipv4BadHeaderLength),
        RejectionCase(name: "IPv4 IHL past buffer", decoder: .ipv4, bytes: Array(edited(udp, fixIPv4: false) { $0[0] = 0x4F }[0..<24]), expected: .truncatedIPv4),
        RejectionCase(name: "IPv4 total length past buffer", decoder: .ipv4, bytes: edited(udp) { $0[2] = 0x10 }, expected: .ipv4BadTotalLength),
        RejectionCase(name: "IPv4 total length below header", decoder: .ipv4, bytes: edited(udp) { $0[2] = 0; $0[3] = 19 }, expected: .ipv4BadTotalLength),
        RejectionCase(name: "IPv4 19 bytes", decoder: .ipv4, bytes: Array(udp[0..<19]), expected: .truncatedIPv4),
        RejectionCase(name: "Ethernet 13 bytes", decoder: .ethernet, bytes: Array(inner[0..<13]), expected: .truncatedEthernet),
        RejectionCase(name: "802.1Q tag cut", decoder: .ethernet, bytes: edited(Array(inner[0..<16]), fixIPv4: false) { $0[12] = 0x81; $0[13] = 0 }, expected: .truncatedVLANTag),
        RejectionCase(name: "ARP 27 bytes", decoder: .arp, bytes: Array(arp[0..<27]), expected: .truncatedARP),
        RejectionCase(name: "ARP hardware type 6", decoder: .arp, bytes: edited(arp, fixIPv4: false) { $0[1] = 6 }, expected: .arpUnsupportedFormat),
        RejectionCase(name: "UDP length 7", decoder: .udp, bytes: [0, 1, 0, 2, 0, 7, 0, 0], expected: .udpBadLength),
        RejectionCase(name: "UDP length past buffer", decoder: .udp, bytes: [0, 1, 0, 2, 0, 9, 0, 0], expected: .udpBadLength),
        RejectionCase(name: "UDP 7 bytes", decoder: .udp, bytes: [0, 1, 0, 2, 0, 8, 0], expected: .truncatedUDP),
        RejectionCase(name: "TCP data offset 4", decoder: .tcp, bytes: edited(Array(tcp[20...]), fixIPv4: false) { $0[12] = 0x40 }, expected: .tcpBadDataOffset),
        RejectionCase(name: "TCP options past buffer", decoder: .tcp, bytes: edited(Array(tcp[20...]), fixIPv4: false) { $0[12] = 0x60 }, expected: .truncatedTCP),
        RejectionCase(name: "IPv6 version 4", decoder: .ipv6Transport, bytes: [0x40] + [UInt8](repeating: 0, count: 39), expected: .ipv6BadVersion),
        RejectionCase(name: "IPv6 payload past buffer", decoder: .ipv6Transport, bytes: [0x60, 0, 0, 0, 0, 8, 17, 64] + [UInt8](repeating: 0, count: 32), expected: .ipv6BadPayloadLength),
        RejectionCase(name: "IPv6 hop-by-hop cut", decoder: .ipv6Transport, bytes: [0x60, 0, 0, 0, 0, 8, 0, 64] + [UInt8](repeating: 0, count: 32) + [17, 1, 0, 0, 0, 0, 0, 0], expected: .ipv6TruncatedExtensionHeader),
        RejectionCase(name: "IPv6 nine destination options", decoder: .ipv6Transport, bytes: [0x60, 0, 0, 0, 0, 72, 60, 64] + [UInt8](repeating: 0, count: 32) + Array((0..<9).map { _ in [UInt8]([60, 0, 0, 0, 0, 0, 0, 0]) }.joined()), expected: .ipv6TooManyExtensionHeaders),
    ]
}()

@Suite("Rejections")
struct RejectionTests {
    @Test(arguments: rejectionCases)
    func malformedInputIsRejectedWithItsReason(_ c: RejectionCase) {
        #expect(c.decoder.reason(c.bytes) == c.expected, "\(c.name)\n\(c.bytes.hexDump)")
    }

    @Test(arguments: [
        (GREKeyLayout.vni, UInt32?.none, PacketDropReason.greKeyMissing),
        (.nvgre, nil, .greKeyMissing),
        (.none, 42, .greKeyUnexpected),
        (.vni, 0x0100_0000, .vniOutOfRange),
        (.vni, 0xFFFF_FFFF, .vniOutOfRange),
    ])
    func greKeyLayoutRejects(_ layout: GREKeyLayout, _ key: UInt32?, _ expected: PacketDropReason) {
        #expect(layout.vni(forKey: key, unkeyedVNI: VNI(1)!).failureValue == expected)
    }

    @Test func dropReasonTableIsDenseStableAndDescribed() {
        #expect(PacketDropReason.allCases.count == PacketDropReason.count)
        for (index, reason) in PacketDropReason.allCases.enumerated() {
            #expect(Int(reason.rawValue) == index)
            #expect(!reason.description.isEmpty)
        }
        #expect(Set(PacketDropReason.allCases.map(\.description)).count == PacketDropReason.count)
        // Pinned numbers: exported counters are keyed by them.
        #expect(PacketDropReason.vxlanIFlagClear.rawValue == 25)
        #expect(PacketDropReason.truncatedInnerEthernet.rawValue == 35)
    }

    /// Every strict prefix of a valid tunnel packet is rejected with a reason, never accepted or crashed on.
    @Test(arguments: Fixture.all.filter { $0.expect["kind"] == "ipv4" })
    func everyTruncationOfATunnelFixtureIsRejected(_ fixture: Fixture) {
        let decoder: Decoder = fixture.bytes[9] == 17 ? .vxlanIPv4 : .greIPv4
        #expect(decoder.reason(fixture.bytes) == nil)
        for cut in 0..<fixture.bytes.count {
            #expect(decoder.reason(Array(fixture.bytes[0..<cut])) != nil, "prefix \(cut) accepted")
        }
    }

    /// Every prefix of a frame fixture that cuts into its IP datagram or ARP packet is rejected by the layered
    /// decode; none crashes.
    @Test(arguments: Fixture.all.filter { $0.expect["kind"] == "frame" })
    func everyTruncationOfAFrameFixtureIsRejected(_ fixture: Fixture) {
        let full = decodeFields(fixture.bytes, kind: "frame")
        #expect(full["error"] == nil)
        let l3 = fixture.expect["eth.vlan"] == nil ? 14 : 18
        let needed: Int
        if let total = full["ipv4.totlen"].flatMap({ Int($0) }) {
            needed = l3 + total
        } else if full["ipv6.src"] != nil {
            needed = l3 + 40 + Int(fixture.bytes[l3 + 4]) << 8 + Int(fixture.bytes[l3 + 5])
        } else {
            needed = l3 + ARPPacket.size
        }
        for cut in 0..<needed {
            #expect(decodeFields(Array(fixture.bytes[0..<cut]), kind: "frame")["error"] != nil, "prefix \(cut) accepted")
        }
    }
}
