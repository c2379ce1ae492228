import Testing
import VXPacket
import VXTestSupport

/// Byte-exact vectors made by scapy (tools/fixtures/make_packet_fixtures.py): decode with our code, compare
/// every expected field, then re-encode with our writers / templates and compare byte for byte.
@Suite("Fixtures from scapy")
struct FixtureTests {
    static let metaKeys: Set<String> = ["kind", "length", "template", "flowhash", "layout"]

    @Test func everyFixtureIsPresent() {
        #expect(Fixture.all.count >= 20, "fixtures missing: run tools/fixtures/make_packet_fixtures.py")
    }

    @Test(arguments: Fixture.all)
    func decodesEveryExpectedField(_ fixture: Fixture) {
        #expect(fixture.bytes.count == Int(fixture.expect["length"]!))
        let layout = fixture.expect["layout"].flatMap { name in GREKeyLayout.allCases.first { "\($0)" == name } }
        let fields = decodeFields(fixture.bytes, kind: fixture.expect["kind"]!, layout: layout)
        #expect(fields["error"] == nil, "\(fixture.name): \(fields["error"] ?? "")")
        for (key, value) in fixture.expect where !Self.metaKeys.contains(key) {
            #expect(fields[key] == value, "\(fixture.name): \(key) decoded \(fields[key] ?? "nil"), scapy says \(value)")
        }
    }

    /// The control plane builds its ARP frames with `ARPPacket.ethernetFrame`: scapy's reply, rebuilt from its
    /// parsed ARP packet alone, must come out byte for byte, and a tag must sit between the MACs and the EtherType.
    @Test func arpEthernetFrameMatchesScapysReply() throws {
        let fixture = Fixture.load("arp_reply")
        let bytes = fixture.bytes.span.bytes
        let ethernet = try EthernetHeader.parse(bytes).get()
        let arp = try ARPPacket.parse(bytes.extracting(ethernet.length...)).get()
        #expect(arp.ethernetFrame(to: ethernet.destination) == fixture.bytes)

        let tagged = arp.ethernetFrame(to: ethernet.destination, vlan: VLANTag(id: 42))
        #expect(tagged.count == fixture.bytes.count + 4)
        #expect(Array(tagged[0..<12]) == Array(fixture.bytes[0..<12]))
        #expect(Array(tagged[12..<16]) == [0x81, 0x00, 0x00, 42])
        #expect(Array(tagged[16...]) == Array(fixture.bytes[12...]))
    }

    /// Writes each parsed header back over a copy whose header bytes were zeroed; options and payload are left
    /// as they were. Recomputed checksums must equal scapy's.
    @Test(arguments: Fixture.all.filter { $0.expect["kind"] == "frame" })
    func reencodesFrameHeadersByteForByte(_ fixture: Fixture) throws {
        let original = fixture.bytes
        var out = original
        let span = original.span.bytes
        let eth = try EthernetHeader.parse(span).get()
        for i in 0..<eth.length { out[i] = 0 }
        mutate(&out) { eth.write(into: &$0) }
        let l3 = span.extracting(eth.length...)
        var transport: (proto: IPProtocol, offset: Int, end: Int, pseudo: (Int) -> UInt16)? = nil
        switch eth.etherType {
        case .arp:
            let arp = try ARPPacket.parse(l3).get()
            for i in eth.length..<(eth.length + ARPPacket.size) { out[i] = 0 }
            mutate(&out) { arp.write(into: &$0, at: eth.length) }
        case .ipv4:
            let ip = try IPv4Header.parse(l3).get()
            for i in eth.length..<(eth.length + 20) { out[i] = 0 }
            mutate(&out) { ip.write(into: &$0, at: eth.length) }
            var recomputed = out
            var checksum: UInt16 = 0
            mutate(&recomputed) { checksum = IPv4Header.updateChecksum(in: &$0, at: eth.length) }
            #expect(checksum == ip.headerChecksum, "IPv4 header checksum differs from scapy's")
            if ip.hasTransportHeader && !ip.isFragment {
                transport = (ip.protocol, eth.length + ip.headerLength, eth.length + Int(ip.totalLength), {
                    InternetChecksum.pseudoHeaderSum(source: ip.source, destination: ip.destination, protocol: ip.protocol, length: $0)
                })
            }
        case .ipv6:
            let ip = try IPv6Header.parse(l3).get()
            for i in eth.length..<(eth.length + 40) { out[i] = 0 }
            mutate(&out) { ip.write(into: &$0, at: eth.length) }
            let loc = try IPv6Header.findTransport(in: l3).get()
            if loc.hasTransportHeader && !loc.isFragment {
                transport = (loc.protocol, eth.length + loc.offset, eth.length + 40 + Int(ip.payloadLength), {
                    InternetChecksum.pseudoHeaderSum(source: ip.source, destination: ip.destination, protocol: loc.protocol, length: $0)
                })
            }
        default:
            Issue.record("unexpected EtherType in \(fixture.name)")
        }
        if let t = transport {
            let segment = original.span.bytes.extracting(t.offset..<t.end)
            switch t.proto {
            case .udp:
                let udp = try UDPHeader.parse(segment).get()
                for i in t.offset..<(t.offset + 8) { out[i] = 0 }
                mutate(&out) { udp.write(into: &$0, at: t.offset) }
                #expect(fixture.expect["udp.csumok"] != "1" || UDPHeader.computeChecksum(segment: segment, pseudoHeaderSum: t.pseudo(segment.byteCount)) == udp.checksum)
            case .tcp:
                let tcp = try TCPHeader.parse(segment).get()
                for i in t.offset..<(t.offset + 20) { out[i] = 0 }
                mutate(&out) { tcp.write(into: &$0, at: t.offset) }
                #expect(fixture.expect["tcp.csumok"] != "1" || TCPHeader.computeChecksum(segment: segment, pseudoHeaderSum: t.pseudo(segment.byteCount)) == tcp.checksum)
            default: break
            }
        }
        #expect(out == original, "\(fixture.name)\nours:\n\(out.hexDump)\nscapy:\n\(original.hexDump)")
    }

    /// The encapsulation template must write exactly what scapy built for the same tunnel parameters.
    @Test(arguments: Fixture.all.filter { $0.expect["template"] != nil })
    func templateWritesTheFixtureOuterHeader(_ fixture: Fixture) throws {
        let e = fixture.expect
        let layoutName = e["template"]!.split(separator: "-").last.map(String.init) ?? ""
        let isVXLAN = e["template"] == "vxlan"
        let layout = GREKeyLayout.allCases.first { "\($0)" == layoutName } ?? .vni
        let vni = VNI(UInt32(isVXLAN ? e["vxlan.vni"]! : e["vni"]!)!)!
        // Over IPv4 or, for GRE, IPv6: the template writes the whole outer header either way.
        let template = EncapTemplate(
            encapsulation: isVXLAN ? .vxlan : .gre, local: UnderlayAddress(e["ipv4.src"] ?? e["ipv6.src"]!)!,
            remote: UnderlayAddress(e["ipv4.dst"] ?? e["ipv6.dst"]!)!, vni: vni, greKeyLayout: layout)
        let innerOffset = Int(e["inner.off"]!)!
        #expect(template.headerLength == innerOffset)
        let inner = Array(fixture.bytes[innerOffset...])
        var out = [UInt8](repeating: 0xEE, count: template.headerLength) + inner
        var written = 0
        mutate(&out) { written = template.write(into: &$0, innerLength: inner.count, flowHash: UInt32(e["flowhash"] ?? "0")!) }
        #expect(written == template.headerLength)
        #expect(out == fixture.bytes, "\(fixture.name)\nours:\n\(out.hexDump)\nscapy:\n\(fixture.bytes.hexDump)")
    }

    /// GRE with checksum, key and sequence: our builder (GREHeader.write + updateChecksum) against scapy.
    @Test func greChecksumBuilderMatchesScapy() throws {
        let fixture = Fixture.load("gre_csum_key_seq")
        let e = fixture.expect
        let inner = Array(fixture.bytes[Int(e["inner.off"]!)!...])
        let built = PacketBuilder.greIPv4(
            source: IPv4Address(e["ipv4.src"]!)!, destination: IPv4Address(e["ipv4.dst"]!)!,
            key: UInt32(e["gre.key"]!)!, sequenceNumber: UInt32(e["gre.seq"]!)!, checksum: true, inner: inner,
            identification: UInt16(e["ipv4.id"]!)!)
        #expect(built == fixture.bytes, "ours:\n\(built.hexDump)\nscapy:\n\(fixture.bytes.hexDump)")
    }

    /// The VXLAN datagram path (what the UDP socket delivers) on the fixture's UDP payload.
    @Test(arguments: Fixture.all.filter { $0.expect["vxlan.vni"] != nil })
    func vxlanDatagramDecodesTheUDPPayload(_ fixture: Fixture) throws {
        let payload = Array(fixture.bytes[28...])
        let d = try TunnelDecap.vxlanDatagram(payload.span.bytes).get()
        #expect(String(d.vni.value) == fixture.expect["vxlan.vni"])
        #expect(d.innerOffset == 8)
        #expect(String(d.innerLength) == fixture.expect["inner.len"])
    }
}
