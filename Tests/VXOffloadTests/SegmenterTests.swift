import Testing
import VXOffload
import VXPacket
import VXTestSupport

/// One table row: a GSO frame and how it must come out.
struct SegmentationCase: CustomTestStringConvertible, Sendable {
    var name: String
    var ipv6 = false
    var vlan = false
    var payload: Int
    var mss = 1448
    /// The tunnel's limit, if below gso_size.
    var maximumSegmentSize = 65_535
    var flags: TCPFlags = [.ack, .psh]
    var tcpOptions: [UInt8] = []
    var ipOptions: [UInt8] = []

    var testDescription: String { name }

    var spec: TCPFrameSpec {
        TCPFrameSpec(
            vlan: vlan ? VLANTag(id: 100, priority: 5) : nil,
            ipv6: ipv6,
            ipOptions: ipOptions,
            flags: flags,
            tcpOptions: tcpOptions,
            payload: pattern(payload, seed: payload)
        )
    }
    var effectiveMSS: Int { min(mss, maximumSegmentSize) }
    var expectedCount: Int { payload == 0 ? 1 : (payload + effectiveMSS - 1) / effectiveMSS }
}

@Suite("TCP segmentation")
struct SegmenterTests {
    static let cases: [SegmentationCase] = [
        SegmentationCase(name: "IPv4, 3 × mss", payload: 3 * 1448),
        SegmentationCase(name: "IPv4, not a multiple", payload: 3 * 1448 + 100),
        SegmentationCase(name: "IPv4, smaller than mss", payload: 500),
        SegmentationCase(name: "IPv4, exactly mss", payload: 1448),
        SegmentationCase(name: "IPv4, 64 KiB burst", payload: 65_535 - 20 - 32, tcpOptions: TCPFrameSpec.timestamps(9)),
        SegmentationCase(name: "IPv4 + VLAN, not a multiple", vlan: true, payload: 5000),
        SegmentationCase(name: "IPv4 + VLAN, smaller than mss", vlan: true, payload: 1),
        SegmentationCase(name: "IPv4 with options", payload: 4000, ipOptions: [0x94, 0x04, 0, 0]),
        SegmentationCase(name: "IPv4, timestamps", payload: 10_000, tcpOptions: TCPFrameSpec.timestamps(77)),
        SegmentationCase(name: "IPv4, FIN on the burst", payload: 3000, flags: [.ack, .psh, .fin]),
        SegmentationCase(name: "IPv4, CWR + ECE", payload: 3000, flags: [.ack, .cwr, .ece]),
        SegmentationCase(name: "IPv4, tunnel MSS below gso_size", payload: 6000, maximumSegmentSize: 1000),
        SegmentationCase(name: "IPv4, no payload", payload: 0, flags: [.ack]),
        SegmentationCase(name: "IPv6, 3 × mss", ipv6: true, payload: 3 * 1428, mss: 1428),
        SegmentationCase(name: "IPv6, not a multiple", ipv6: true, payload: 7 * 1428 + 1, mss: 1428),
        SegmentationCase(name: "IPv6, smaller than mss", ipv6: true, payload: 100, mss: 1428),
        SegmentationCase(
            name: "IPv6 + VLAN, timestamps",
            ipv6: true,
            vlan: true,
            payload: 20_000,
            mss: 1416,
            tcpOptions: TCPFrameSpec.timestamps(5)
        ),
        SegmentationCase(name: "IPv6 + VLAN, FIN", ipv6: true, vlan: true, payload: 2000, flags: [.ack, .fin]),
        SegmentationCase(name: "IPv6, tiny mss", ipv6: true, payload: 333, mss: 7),
    ]

    @Test(arguments: cases)
    func segmentsAreValidContiguousAndCarryThePayload(_ c: SegmentationCase) throws {
        let spec = c.spec
        let frame = spec.build(checksum: .partial)
        let segments = try #require(
            segment(frame, header: spec.gsoHeader(mss: c.mss), maximumSegmentSize: c.maximumSegmentSize)
        )
        #expect(segments.count == c.expectedCount)

        var payload: [UInt8] = []
        var sequence = spec.sequence
        for (i, bytes) in segments.enumerated() {
            let facts = try #require(checkedSegment(bytes))
            let isFirst = i == 0
            let isLast = i == segments.count - 1
            #expect(facts.payload.count <= c.effectiveMSS)
            if !isLast { #expect(facts.payload.count == c.effectiveMSS) }
            #expect(facts.sequence == sequence, "segment \(i) sequence")
            sequence &+= UInt32(facts.payload.count)
            payload += facts.payload

            var expected = spec.flags
            if !isLast { expected.subtract([.fin, .psh]) }
            if !isFirst { expected.remove(.cwr) }
            #expect(facts.flags == expected, "segment \(i) flags")
            if !c.ipv6 { #expect(facts.identification == spec.identification &+ UInt16(i)) }
            // Everything before the IP length field, the options and the TCP ports/ack/window are copied verbatim.
            #expect(bytes[0..<(spec.ethernetLength + 2)] == frame[0..<(spec.ethernetLength + 2)])
            let t = spec.transportOffset
            #expect(bytes[t..<(t + 4)] == frame[t..<(t + 4)])
            #expect(bytes[(t + 8)..<(t + 13)] == frame[(t + 8)..<(t + 13)])
            #expect(bytes[(t + 14)..<(t + 16)] == frame[(t + 14)..<(t + 16)])
            #expect(bytes[(t + 18)..<spec.headerLength] == frame[(t + 18)..<spec.headerLength])
        }
        #expect(payload == spec.payload)
    }

    @Test func planReportsSizes() throws {
        let spec = TCPFrameSpec(vlan: VLANTag(id: 7), payload: pattern(3000))
        let frame = spec.build(checksum: .partial)
        let plan = try TCPSegmenter.plan(
            frame: frame.span.bytes,
            header: spec.gsoHeader(mss: 1448),
            maximumSegmentSize: 1400
        ).get()
        #expect(plan.segmentCount == 3)
        #expect(plan.segmentSize == 1400)
        #expect(plan.headerLength == 18 + 20 + 20)
        #expect(plan.maximumSegmentLength == 58 + 1400)
        #expect(plan.networkOffset == 18)
        #expect(plan.transportOffset == 38)
        #expect(!plan.isIPv6)
        #expect(plan.segmentLength(2) == 58 + 200)
    }

    @Test func ignoresTheKernelsHeaderLengthHint() throws {
        // hdr_len from a TAP read is skb_headlen: here it claims the whole frame is header.
        let spec = TCPFrameSpec(payload: pattern(4000))
        let frame = spec.build(checksum: .partial)
        var header = spec.gsoHeader(mss: 1000)
        header.headerLength = UInt16(frame.count)
        let segments = try #require(segment(frame, header: header))
        #expect(segments.count == 4)
        let payload = Array(segments.compactMap { checkedSegment($0)?.payload }.joined())
        #expect(payload == spec.payload)
    }

    @Test func worksWithoutNeedsChecksumAndWithAFullChecksum() throws {
        let spec = TCPFrameSpec(payload: pattern(3000))
        var header = spec.gsoHeader(mss: 1448)
        header.flags = .dataValid
        let segments = try #require(segment(spec.build(checksum: .full), header: header))
        #expect(segments.count == 3)
        #expect(segments.allSatisfy { checkedSegment($0) != nil })
    }

    /// Each segment's IPv4 header checksum comes from a sum of the frame's unchanging header words, so whatever
    /// checksum the TAP's frame carried must not leak into it, and it must equal one computed from scratch.
    @Test(arguments: [0x0000, 0xFFFF, 0x1234] as [UInt16])
    func ipv4HeaderChecksumIgnoresTheFramesOwn(frameChecksum: UInt16) throws {
        let spec = TCPFrameSpec(ipOptions: [0x94, 0x04, 0, 0], payload: pattern(5000))
        var frame = spec.build(checksum: .partial)
        let ip = spec.ethernetLength
        frame[ip + 10] = UInt8(frameChecksum >> 8)
        frame[ip + 11] = UInt8(frameChecksum & 0xFF)
        let segments = try #require(segment(frame, header: spec.gsoHeader(mss: 1200)))
        #expect(segments.count == 5)
        for var bytes in segments {
            let stored = UInt16(bytes[ip + 10]) << 8 | UInt16(bytes[ip + 11])
            bytes[ip + 10] = 0
            bytes[ip + 11] = 0
            let headerLength = Int(bytes[ip] & 0x0F) * 4
            #expect(stored == InternetChecksum.checksum(bytes[ip..<(ip + headerLength)].span.bytes))
        }
    }

    @Test func paddingAfterTheIPPacketIsIgnored() throws {
        let spec = TCPFrameSpec(payload: pattern(3000))
        let frame = spec.build(checksum: .partial) + [UInt8](repeating: 0xAB, count: 10)
        let segments = try #require(segment(frame, header: spec.gsoHeader(mss: 1448)))
        let payload = Array(segments.compactMap { checkedSegment($0)?.payload }.joined())
        #expect(payload == spec.payload)
    }

    struct Rejection: CustomTestStringConvertible, Sendable {
        var name: String
        var frame: [UInt8]
        var header: VirtioNetHeader
        var reason: OffloadDropReason
        var testDescription: String { name }
    }

    static let rejections: [Rejection] = {
        let v4 = TCPFrameSpec(payload: pattern(3000))
        let v6 = TCPFrameSpec(ipv6: true, payload: pattern(3000))
        var rows: [Rejection] = []
        var h = v4.gsoHeader(mss: 1448)
        h.gsoType = .udpL4
        rows.append(
            Rejection(name: "UDP_L4", frame: v4.build(checksum: .partial), header: h, reason: .gsoTypeUnsupported)
        )
        h = v4.gsoHeader(mss: 1448)
        h.gsoSize = 0
        rows.append(Rejection(name: "gso_size 0", frame: v4.build(checksum: .partial), header: h, reason: .gsoSizeZero))
        rows.append(
            Rejection(
                name: "TCPV6 on IPv4",
                frame: v4.build(checksum: .partial),
                header: v6.gsoHeader(mss: 1448),
                reason: .gsoProtocolMismatch
            )
        )
        rows.append(
            Rejection(
                name: "TCPV4 on IPv6",
                frame: v6.build(checksum: .partial),
                header: v4.gsoHeader(mss: 1448),
                reason: .gsoProtocolMismatch
            )
        )
        h = v4.gsoHeader(mss: 1448)
        h.checksumOffset = 6
        rows.append(
            Rejection(
                name: "csum_offset 6",
                frame: v4.build(checksum: .partial),
                header: h,
                reason: .checksumOffsetInvalid
            )
        )
        h = v4.gsoHeader(mss: 1448)
        h.checksumStart += 4
        rows.append(
            Rejection(
                name: "csum_start off",
                frame: v4.build(checksum: .partial),
                header: h,
                reason: .checksumOffsetInvalid
            )
        )
        rows.append(
            Rejection(
                name: "truncated IPv4",
                frame: Array(v4.build(checksum: .partial).prefix(100)),
                header: v4.gsoHeader(mss: 1448),
                reason: .malformedIPv4
            )
        )
        rows.append(
            Rejection(
                name: "truncated Ethernet",
                frame: [1, 2, 3],
                header: v4.gsoHeader(mss: 1448),
                reason: .malformedEthernet
            )
        )
        var udp = v4.build(checksum: .partial)
        udp[14 + 9] = 17
        mutate(&udp) { IPv4Header.updateChecksum(in: &$0, at: 14) }
        rows.append(Rejection(name: "UDP under TCPV4", frame: udp, header: v4.gsoHeader(mss: 1448), reason: .notTCP))
        var fragment = v4.build(checksum: .partial)
        fragment[14 + 6] = 0x20  // MF
        rows.append(Rejection(name: "fragment", frame: fragment, header: v4.gsoHeader(mss: 1448), reason: .fragment))
        var shortTCP = v4.build(checksum: .partial)
        shortTCP[34 + 12] = 0x40  // data offset 4
        rows.append(
            Rejection(name: "data offset 4", frame: shortTCP, header: v4.gsoHeader(mss: 1448), reason: .malformedTCP)
        )
        return rows
    }()

    @Test(arguments: rejections)
    func refusesWhatItCannotSegment(_ row: Rejection) {
        let result = TCPSegmenter.plan(frame: row.frame.span.bytes, header: row.header, maximumSegmentSize: 1448)
        #expect(throws: row.reason) { try result.get() }
    }
}
