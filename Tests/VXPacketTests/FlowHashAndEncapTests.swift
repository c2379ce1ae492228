import Testing
import VXPacket
import VXTestSupport

private func frame(srcIP: UInt32 = 0x0A00_0001, dstIP: UInt32 = 0x0A00_0002, sport: UInt16 = 1000, dport: UInt16 = 80, vlan: VLANTag? = nil, payload: [UInt8] = [1, 2, 3]) -> [UInt8] {
    PacketBuilder.ethernetIPv4UDP(
        destination: MACAddress(raw: 0x0200_0000_000B), source: MACAddress(raw: 0x0200_0000_000A), vlan: vlan,
        sourceIP: IPv4Address(value: srcIP), destinationIP: IPv4Address(value: dstIP), sourcePort: sport,
        destinationPort: dport, payload: payload)
}

private func hash(_ bytes: [UInt8], seed: UInt64 = FlowHash.defaultSeed) -> UInt32 {
    FlowHash.hash(frame: bytes.span.bytes, seed: seed)
}

@Suite("Flow hash")
struct FlowHashTests {
    @Test func sameFlowSameHashWhateverThePayload() {
        #expect(hash(frame(payload: [1, 2, 3])) == hash(frame(payload: Array(repeating: 9, count: 500))))
    }

    @Test func portsAddressesAndVLANChangeTheHash() {
        let base = hash(frame())
        #expect(hash(frame(sport: 1001)) != base)
        #expect(hash(frame(dport: 81)) != base)
        #expect(hash(frame(srcIP: 0x0A00_0003)) != base)
        #expect(hash(frame(dstIP: 0x0A00_0004)) != base)
        #expect(hash(frame(vlan: VLANTag(id: 10))) != base)
        #expect(hash(frame(), seed: 1) != base)
    }

    @Test func nonFirstFragmentIgnoresTheBytesWherePortsWouldBe() {
        var a = frame(sport: 1)
        var b = frame(sport: 2)
        // Set a fragment offset, then fix the IPv4 checksum; the "ports" are now mid-datagram data.
        for j in 0..<2 {
            var f = j == 0 ? a : b
            f[14 + 6] = 0x00
            f[14 + 7] = 0x10
            var s = Array(f[14...])
            mutate(&s) { IPv4Header.updateChecksum(in: &$0) }
            f.replaceSubrange(14..., with: s)
            if j == 0 { a = f } else { b = f }
        }
        #expect(hash(a) == hash(b))
    }

    @Test func ipv6PortsAreHashedThroughExtensionHeaders() {
        let fixture = Fixture.load("ipv6_ext_tcp")
        var other = fixture.bytes
        other[14 + 64] ^= 0xFF  // TCP source port, behind three extension headers
        #expect(hash(fixture.bytes) != hash(other))
    }

    /// Stability contract (FlowHash.swift): the hash of a fixed frame with the default seed never changes across
    /// processes or releases, so tunnel source ports stay put across restarts. A change here is a deliberate,
    /// visible change of the algorithm.
    @Test func pinnedValueForAFixedFrame() {
        #expect(hash(frame()) == 0xD8FA_DEEC)
    }

    @Test func tenThousandFlowsSpreadOverTheSourcePortRange() {
        var buckets = [Int](repeating: 0, count: 16384)
        for i in 0..<10_000 {
            let f = frame(srcIP: 0x0A00_0000 | UInt32(i / 100), sport: UInt16(20000 + i % 100))
            buckets[Int(EncapTemplate.udpSourcePort(flowHash: hash(f)) - 49152)] += 1
        }
        // Poisson with mean 0.61: about 7,400 distinct ports and a fullest bucket of 5 or 6 are expected.
        #expect(buckets.filter { $0 > 0 }.count > 7000)
        #expect(buckets.max()! <= 8)
    }

    @Test func shortFramesHashWithoutTrapping() {
        let f = frame(vlan: VLANTag(id: 3))
        for n in 0..<f.count { _ = hash(Array(f[0..<n])) }
    }
}

@Suite("Encapsulation templates")
struct EncapTemplateTests {
    @Test func sizes() {
        #expect(EncapTemplate.vxlanIPv4Size == 36)
        #expect(EncapTemplate.greKeyedIPv4Size == 28)
        #expect(EncapTemplate.greIPv4Size == 24)
        let local = UnderlayAddress(1, 2, 3, 4), remote = UnderlayAddress(5, 6, 7, 8), vni = VNI(9)!
        #expect(EncapTemplate(encapsulation: .vxlan, local: local, remote: remote, vni: vni).headerLength == 36)
        #expect(EncapTemplate(encapsulation: .gre, local: local, remote: remote, vni: vni).headerLength == 28)
        #expect(EncapTemplate(encapsulation: .gre, local: local, remote: remote, vni: vni, greKeyLayout: .none).headerLength == 24)
    }

    @Test(arguments: [TunnelEncapsulation.vxlan, .gre])
    func writesOnlyItsHeaderIntoHeadroom(_ encapsulation: TunnelEncapsulation) {
        let t = EncapTemplate(encapsulation: encapsulation, local: UnderlayAddress(1, 2, 3, 4), remote: UnderlayAddress(5, 6, 7, 8), vni: VNI(0xABCDE)!, udpDestinationPort: 8472)
        let inner = frame()
        let headroom = 64
        var buffer = [UInt8](repeating: 0xEE, count: headroom) + inner
        mutate(&buffer) { _ = t.write(into: &$0, at: headroom - t.headerLength, innerLength: inner.count, flowHash: 7) }
        #expect(buffer[0..<(headroom - t.headerLength)].allSatisfy { $0 == 0xEE })
        #expect(Array(buffer[headroom...]) == inner)
        let packet = Array(buffer[(headroom - t.headerLength)...])
        if encapsulation == .vxlan {
            let d = TunnelDecap.vxlanIPv4(packet.span.bytes, udpDestinationPort: 8472).successValue
            #expect(d?.vni.value == 0xABCDE)
            #expect(d?.udp.checksum == 0)
            #expect(d?.udp.sourcePort == UInt16(49159))
            #expect(d?.ipv4.totalLength == UInt16(packet.count))
        } else {
            let d = TunnelDecap.greIPv4(packet.span.bytes).successValue
            #expect(d?.gre.key == 0xABCDE)
            #expect(d?.ipv4.identification == 0)
            #expect(d?.ipv4.dontFragment == false)
        }
    }
}
