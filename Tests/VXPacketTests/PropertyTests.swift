import PropertyBased
import Testing
import VXPacket
import VXTestSupport

private func naiveSum(_ bytes: [UInt8]) -> UInt16 {
    var s: UInt32 = 0
    var i = 0
    while i < bytes.count {
        s += UInt32(bytes[i]) << 8 | (i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0)
        i += 2
    }
    while s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
    return UInt16(s)
}

@Suite("Properties")
struct PropertyTests {
    static let innerGen = Gen<UInt8>.value(in: 0...255).array(of: 14...300)

    @Test func checksumSumMatchesNaiveReference() async {
        await propertyCheck(count: 300, input: Gen<UInt8>.value(in: 0...255).array(of: 0...200)) { bytes in
            #expect(InternetChecksum.sum(bytes.span.bytes) == naiveSum(bytes))
        }
    }

    /// The largest frames the offload paths sum: the accumulator must not lose a carry, even when every word is
    /// 0xFFFF, and the vectorised loop's tail must handle every length.
    @Test(arguments: [0xFF, 0x00, 0x80] as [UInt8])
    func checksumSumOfLargeFramesMatchesNaiveReference(fill: UInt8) {
        var bytes = [UInt8](repeating: fill, count: 65_535)
        #expect(InternetChecksum.sum(bytes.span.bytes) == naiveSum(bytes))
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<8 {
            let count = Int.random(in: 9_000...65_535, using: &generator)
            bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(InternetChecksum.sum(bytes.span.bytes) == naiveSum(bytes), "\(count) random bytes")
        }
    }

    @Test func rfc1071Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(InternetChecksum.sum(bytes.span.bytes) == 0xDDF2)
    }

    @Test func incrementalUpdateKeepsIPv4HeaderValid() async {
        await propertyCheck(
            count: 200, input: Gen<UInt16>.value(in: 0...0xFFFF), Gen<UInt32>.value(in: 0...UInt32.max),
            Gen<UInt8>.value(in: 0...255)
        ) { totalLength, newSource, ttl in
            var bytes = PacketBuilder.ipv4(
                source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(10, 0, 0, 2), protocol: .udp,
                payload: [UInt8](repeating: 0, count: 8), timeToLive: ttl)
            var checksum = UInt16(bytes[10]) << 8 | UInt16(bytes[11])
            let oldLength = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
            checksum = InternetChecksum.update(checksum, old: oldLength, new: totalLength)
            checksum = InternetChecksum.update(checksum, old: IPv4Address(10, 0, 0, 1).value, new: newSource)
            mutate(&bytes) {
                $0.storeBytes(of: totalLength.bigEndian, toByteOffset: 2, as: UInt16.self)
                $0.storeBytes(of: newSource.bigEndian, toByteOffset: 12, as: UInt32.self)
                $0.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            }
            #expect(InternetChecksum.sum(bytes.span.bytes.extracting(0..<20)) == 0xFFFF)
        }
    }

    @Test func vxlanDatagramRoundTrip() async {
        await propertyCheck(count: 200, input: Gen<UInt32>.value(in: 0...VNI.maxValue), Self.innerGen) { vni, inner in
            let datagram = PacketBuilder.vxlanDatagram(vni: VNI(vni)!, inner: inner)
            let d = TunnelDecap.vxlanDatagram(datagram.span.bytes).successValue
            #expect(d?.vni.value == vni)
            #expect(d.map { Array(datagram[$0.innerOffset..<($0.innerOffset + $0.innerLength)]) } == inner)
        }
    }

    @Test func vxlanTemplateRoundTrip() async {
        await propertyCheck(
            count: 200, input: Gen<UInt32>.value(in: 0...VNI.maxValue), Gen<UInt32>.value(in: 0...UInt32.max),
            Self.innerGen
        ) { vni, hash, inner in
            let t = EncapTemplate(
                encapsulation: .vxlan, local: UnderlayAddress(192, 0, 2, 1), remote: UnderlayAddress(192, 0, 2, 2),
                vni: VNI(vni)!)
            var packet = [UInt8](repeating: 0, count: t.headerLength) + inner
            mutate(&packet) { _ = t.write(into: &$0, innerLength: inner.count, flowHash: hash) }
            let d = TunnelDecap.vxlanIPv4(packet.span.bytes).successValue
            #expect(d?.vni.value == vni)
            #expect(d?.udp.sourcePort == 49152 + UInt16(hash % 16384))
            #expect(d?.udp.length == UInt16(8 + 8 + inner.count))
            #expect(d?.ipv4.timeToLive == 64)
            #expect(d.map { Array(packet[$0.innerOffset...]) } == inner)
        }
    }

    @Test func greTemplateRoundTripForEveryLayout() async {
        await propertyCheck(
            count: 200, input: Gen<GREKeyLayout>.case, Gen<UInt32>.value(in: 0...VNI.maxValue), Self.innerGen
        ) { layout, vni, inner in
            let t = EncapTemplate(
                encapsulation: .gre, local: UnderlayAddress(192, 0, 2, 1), remote: UnderlayAddress(192, 0, 2, 2),
                vni: VNI(vni)!, greKeyLayout: layout)
            #expect(t.headerLength == (layout == .none ? EncapTemplate.greIPv4Size : EncapTemplate.greKeyedIPv4Size))
            var packet = [UInt8](repeating: 0, count: t.headerLength) + inner
            mutate(&packet) { _ = t.write(into: &$0, innerLength: inner.count, flowHash: 0) }
            let d = TunnelDecap.greIPv4(packet.span.bytes).successValue
            // For `.none` the VNI comes from the peer's configuration, not the wire.
            #expect(d?.vni(layout: layout, unkeyedVNI: VNI(vni)!).successValue?.value == vni)
            #expect(d.map { Array(packet[$0.innerOffset...]) } == inner)
            // The GRE part alone decodes as greDatagram does past the IPv4 header, offsets counted from that header.
            let greOnward = Array(packet[IPv4Header.minimumSize...])
            let alone = TunnelDecap.greDatagram(greOnward.span.bytes).successValue
            #expect(d?.datagram.gre == alone?.gre)
            #expect(d?.datagram.innerOffset == alone.map { IPv4Header.minimumSize + $0.innerOffset })
            #expect(d?.datagram.innerLength == alone?.innerLength)
        }
    }

    /// Over IPv6 the template writes IPv6 + GRE at the offset it is given and nothing past it, with the payload
    /// length of this frame and the flow hash as the flow label.
    @Test func ipv6GRETemplateRoundTripForEveryLayout() async {
        await propertyCheck(
            count: 200, input: Gen<GREKeyLayout>.case, Gen<UInt32>.value(in: 0...VNI.maxValue), Self.innerGen
        ) { layout, vni, inner in
            let t = EncapTemplate(
                encapsulation: .gre, local: UnderlayAddress("2001:db8::1")!,
                remote: UnderlayAddress("2001:db8::2")!, vni: VNI(vni)!, greKeyLayout: layout)
            #expect(t.headerLength == (layout == .none ? EncapTemplate.greIPv6Size : EncapTemplate.greKeyedIPv6Size))
            let guardBytes: [UInt8] = [0xA5, 0x5A, 0xC3]
            var packet = guardBytes + [UInt8](repeating: 0xEE, count: t.headerLength) + inner
            var written = 0
            let flowHash = vni &* 2_654_435_761
            mutate(&packet) {
                written = t.write(into: &$0, at: guardBytes.count, innerLength: inner.count, flowHash: flowHash)
            }
            #expect(written == t.headerLength)
            #expect(Array(packet[0..<guardBytes.count]) == guardBytes)
            let outer = Array(packet[guardBytes.count...])
            let ip = IPv6Header.parse(outer.span.bytes).successValue
            #expect(ip?.nextHeader == .gre && ip?.hopLimit == 64 && ip?.trafficClass == 0)
            #expect(ip?.flowLabel == flowHash & 0xF_FFFF)
            #expect(ip.map { Int($0.payloadLength) } == outer.count - IPv6Header.size)
            #expect(ip?.source.description == "2001:db8::1" && ip?.destination.description == "2001:db8::2")
            let d = TunnelDecap.greDatagram(Array(outer[IPv6Header.size...]).span.bytes).successValue
            #expect(d?.vni(layout: layout, unkeyedVNI: VNI(vni)!).successValue?.value == vni)
            #expect(d.map { Array(outer[(IPv6Header.size + $0.innerOffset)...]) } == inner)
        }
    }

    @Test func ipv4HeaderRoundTrip() async {
        await propertyCheck(
            count: 200, input: Gen<UInt32>.value(in: 0...UInt32.max), Gen<UInt32>.value(in: 0...UInt32.max),
            Gen<UInt16>.value(in: 0...0x1FFF), Gen<UInt8>.value(in: 0...255)
        ) { src, dst, frag, ttl in
            let header = IPv4Header(
                typeOfService: ttl ^ 0x5A, totalLength: 20, identification: UInt16(truncatingIfNeeded: src),
                dontFragment: frag & 1 == 0, moreFragments: frag & 2 == 0, fragmentOffset: frag, timeToLive: ttl,
                protocol: IPProtocol(rawValue: ttl &+ 1), source: IPv4Address(value: src),
                destination: IPv4Address(value: dst))
            var bytes = [UInt8](repeating: 0, count: 20)
            var checksum: UInt16 = 0
            mutate(&bytes) {
                header.write(into: &$0)
                checksum = IPv4Header.updateChecksum(in: &$0)
            }
            var expected = header
            expected.headerChecksum = checksum
            #expect(IPv4Header.parse(bytes.span.bytes).successValue == expected)
        }
    }

    @Test func udpRoundTripWithValidChecksum() async {
        await propertyCheck(
            count: 200, input: Gen<UInt16>.value(in: 0...0xFFFF), Gen<UInt16>.value(in: 0...0xFFFF),
            Gen<UInt8>.value(in: 0...255).array(of: 0...100)
        ) { sport, dport, payload in
            let src = IPv4Address(10, 9, 8, 7)
            let dst = IPv4Address(10, 9, 8, 6)
            let packet = PacketBuilder.ipv4UDP(
                source: src, destination: dst, sourcePort: sport, destinationPort: dport, payload: payload)
            let segment = packet.span.bytes.extracting(20...)
            let udp = UDPHeader.parse(segment).successValue
            #expect(udp?.sourcePort == sport)
            #expect(udp?.destinationPort == dport)
            #expect(udp?.length == UInt16(8 + payload.count))
            #expect(udp?.checksum != 0)
            #expect(UDPHeader.verifyChecksum(segment: segment, source: src, destination: dst) == nil)
        }
    }

    /// Any cut of a valid outer packet is rejected with a reason (no crash, no acceptance).
    @Test func truncatedTunnelPacketsAreRejected() async {
        await propertyCheck(
            count: 200, input: Gen<GREKeyLayout>.case, Self.innerGen, Gen<Int>.value(in: 0...10_000)
        ) { layout, inner, cutSeed in
            for encapsulation in TunnelEncapsulation.allCases {
                let t = EncapTemplate(
                    encapsulation: encapsulation, local: UnderlayAddress(1, 1, 1, 1), remote: UnderlayAddress(2, 2, 2, 2),
                    vni: VNI(5)!, greKeyLayout: layout)
                var packet = [UInt8](repeating: 0, count: t.headerLength) + inner
                mutate(&packet) { _ = t.write(into: &$0, innerLength: inner.count, flowHash: 1) }
                let cut = Array(packet[0..<(cutSeed % packet.count)])
                let reason = encapsulation == .vxlan
                    ? TunnelDecap.vxlanIPv4(cut.span.bytes).failureValue
                    : TunnelDecap.greIPv4(cut.span.bytes).failureValue
                #expect(reason != nil)
            }
        }
    }
}
