import PropertyBased
import Testing
import VXOffload
import VXPacket
import VXTestSupport

@Suite("virtio-net header")
struct VirtioNetHeaderTests {
    // A TSO frame as a TAP hands it out: NEEDS_CSUM, TCPV4 with the ECN bit, hdr_len 1514, gso_size 1448,
    // csum_start 34, csum_offset 16, num_buffers 0. Every 16-bit field little-endian.
    static let tso = [UInt8](
        hex: """
            01          // flags: NEEDS_CSUM
            81          // gso_type: TCPV4 | ECN
            ea05        // hdr_len 1514 (le16)
            a805        // gso_size 1448 (le16)
            2200        // csum_start 34 (le16)
            1000        // csum_offset 16 (le16)
            0000        // num_buffers 0 (le16, 12-byte form only)
            """
    )

    @Test func parsesTheTwelveByteFormLittleEndian() throws {
        let header = try #require(parseHeader(Self.tso))
        #expect(header.flags == .needsChecksum)
        #expect(header.gsoType == .tcpv4)
        #expect(header.ecn)
        #expect(header.headerLength == 1514)
        #expect(header.gsoSize == 1448)
        #expect(header.checksumStart == 34)
        #expect(header.checksumOffset == 16)
        #expect(header.bufferCount == 0)
    }

    @Test func writesTheSameBytes() throws {
        let header = try #require(parseHeader(Self.tso))
        var bytes = [UInt8](repeating: 0xEE, count: 14)
        mutate(&bytes) { #expect(header.write(into: &$0, at: 1) == 12) }
        #expect(Array(bytes[1..<13]) == Self.tso)
        #expect(bytes[0] == 0xEE && bytes[13] == 0xEE)
    }

    @Test func tenByteFormHasNoBufferCount() throws {
        var twelve = Self.tso
        twelve[10] = 5
        let ten = try #require(parseHeader(twelve, size: VirtioNetHeader.legacySize))
        #expect(ten.bufferCount == 0)
        #expect(ten.gsoSize == 1448)
        #expect(parseHeader(twelve)?.bufferCount == 5)
        var out = [UInt8](repeating: 0xEE, count: 12)
        mutate(&out) { #expect(ten.write(into: &$0, size: VirtioNetHeader.legacySize) == 10) }
        #expect(Array(out[0..<10]) == Array(Self.tso[0..<10]))
        #expect(out[10] == 0xEE)
    }

    @Test func shortInputIsNil() {
        #expect(parseHeader(Array(Self.tso[0..<11])) == nil)
        #expect(parseHeader(Array(Self.tso[0..<9]), size: 10) == nil)
    }

    @Test func gsoTypesAndFlagsHaveTheKernelsNumbers() {
        #expect(VirtioNetHeader.GSOType.none.rawValue == 0)
        #expect(VirtioNetHeader.GSOType.tcpv4.rawValue == 1)
        #expect(VirtioNetHeader.GSOType.udp.rawValue == 3)
        #expect(VirtioNetHeader.GSOType.tcpv6.rawValue == 4)
        #expect(VirtioNetHeader.GSOType.udpL4.rawValue == 5)
        #expect(VirtioNetHeader.GSOType.ecnBit == 0x80)
        #expect(VirtioNetHeader.Flags.needsChecksum.rawValue == 1)
        #expect(VirtioNetHeader.Flags.dataValid.rawValue == 2)
        let dataValid = VirtioNetHeader(flags: .dataValid)
        var bytes = [UInt8](repeating: 0xEE, count: 12)
        mutate(&bytes) { dataValid.write(into: &$0) }
        #expect(bytes == [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        mutate(&bytes) { VirtioNetHeader.plain.write(into: &$0) }
        #expect(bytes == [UInt8](repeating: 0, count: 12), "a plain header is all zeros")
    }

    @Test func dropReasonTableIsDense() {
        #expect(OffloadDropReason.allCases.count == OffloadDropReason.count)
        #expect(OffloadDropReason.allCases.map(\.rawValue) == (0..<UInt8(OffloadDropReason.count)).map { $0 })
        #expect(Set(OffloadDropReason.allCases.map(\.name)).count == OffloadDropReason.count)
    }
}

@Suite("Checksum completion")
struct ChecksumCompletionTests {
    /// Turns a frame with a valid L4 checksum at `field` into what the kernel hands out with NEEDS_CSUM: the field
    /// holding the pseudo-header sum.
    static func partial(_ frame: [UInt8], field: Int, pseudo: UInt16) -> [UInt8] {
        var out = frame
        out[field] = UInt8(pseudo >> 8)
        out[field + 1] = UInt8(pseudo & 0xFF)
        return out
    }

    @Test func tcpOverIPv4AndIPv6MatchesTheReferenceChecksum() async {
        await propertyCheck(
            count: 200,
            input: Gen<Int>.int(in: 0...1600),
            Gen<Int>.int(in: 0...255),
            Gen.bool,
            Gen.bool
        ) { length, seed, ipv6, vlan in
            let payload = pattern(length, seed: seed)
            let spec = TCPFrameSpec(
                vlan: vlan ? VLANTag(id: 3) : nil,
                ipv6: ipv6,
                tcpOptions: TCPFrameSpec.timestamps(4),
                payload: payload
            )
            let reference = spec.build(checksum: .full)
            var frame = spec.build(checksum: .partial)
            let header = VirtioNetHeader(
                flags: .needsChecksum,
                checksumStart: UInt16(spec.transportOffset),
                checksumOffset: 16
            )
            mutate(&frame) { #expect(ChecksumCompletion.complete(&$0, header: header) == nil) }
            #expect(frame == reference)
        }
    }

    @Test func udpZeroBecomesFFFF() throws {
        // Pick the last two payload bytes so that the checksum comes out as zero, which UDP must send as 0xFFFF.
        let source = IPv4Address(192, 0, 2, 1)
        let destination = IPv4Address(192, 0, 2, 2)
        var payload = pattern(40) + [0, 0]
        let probe = PacketBuilder.ipv4UDP(
            source: source,
            destination: destination,
            sourcePort: 7,
            destinationPort: 9,
            payload: payload
        )
        let checksum = readBE16(probe, 20 + 6)  // the checksum with the last word zero: ~S
        payload[40] = UInt8(checksum >> 8)  // adding ~S makes the sum 0xFFFF, so the checksum 0
        payload[41] = UInt8(checksum & 0xFF)
        let reference = PacketBuilder.ethernetIPv4UDP(
            destination: TCPFrameSpec.mac2,
            source: TCPFrameSpec.mac1,
            sourceIP: source,
            destinationIP: destination,
            sourcePort: 7,
            destinationPort: 9,
            payload: payload
        )
        #expect(readBE16(reference, 34 + 6) == 0xFFFF)  // VXPacket also sends a computed zero as 0xFFFF
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source,
            destination: destination,
            protocol: .udp,
            length: 50
        )
        var frame = Self.partial(reference, field: 34 + 6, pseudo: pseudo)
        mutate(&frame) { #expect(ChecksumCompletion.complete(&$0, checksumStart: 34, checksumOffset: 6) == nil) }
        #expect(frame == reference)
    }

    @Test func withoutNeedsChecksumNothingChanges() {
        let spec = TCPFrameSpec(payload: pattern(100))
        var frame = spec.build(checksum: .partial)
        let before = frame
        mutate(&frame) { #expect(ChecksumCompletion.complete(&$0, header: .plain) == nil) }
        #expect(frame == before)
    }

    @Test func offsetsOutsideTheFrameAreRefused() {
        var frame = [UInt8](repeating: 0, count: 60)
        mutate(&frame) {
            #expect(ChecksumCompletion.complete(&$0, checksumStart: 50, checksumOffset: 9) == .checksumOffsetInvalid)
            #expect(ChecksumCompletion.complete(&$0, checksumStart: 61, checksumOffset: 0) == .checksumOffsetInvalid)
            #expect(ChecksumCompletion.complete(&$0, checksumStart: 50, checksumOffset: 8) == nil)
        }
    }
}

@Suite("Round trip")
struct RoundTripPropertyTests {
    @Test func segmentThenCoalesceGivesBackTheGSOFrame() async {
        await propertyCheck(
            count: 150,
            input: Gen<Int>.int(in: 1...30_000),
            Gen<Int>.int(in: 1...1460),
            Gen.bool,
            Gen.bool
        ) { payloadSize, drawnMSS, ipv6, vlan in
            let mss = max(drawnMSS, (payloadSize + 255) / 256)  // at most 256 segments: one coalescer batch
            let spec = TCPFrameSpec(
                vlan: vlan ? VLANTag(id: 77) : nil,
                ipv6: ipv6,
                flags: [.ack, .psh],
                tcpOptions: TCPFrameSpec.timestamps(UInt32(payloadSize)),
                payload: pattern(payloadSize, seed: mss)
            )
            let gso = spec.build(checksum: .partial)
            guard let segments = segment(gso, header: spec.gsoHeader(mss: mss)) else {
                Issue.record("segmentation refused")
                return
            }
            #expect(segments.count == (payloadSize + mss - 1) / mss)
            let outputs = coalesce(segments)
            if segments.count == 1 {
                #expect(outputs.count == 1)
                #expect(outputs.first?.header == VirtioNetHeader())  // not verified by the coalescer
                #expect(outputs.first?.frame == segments[0])
                return
            }
            // Small MSS means many segments; the IPv4/IPv6 length limit is never hit below 30 000 bytes.
            #expect(outputs.count == 1)
            guard let output = outputs.first else { return }
            #expect(output.frame == gso)
            #expect(output.header.gsoSize == UInt16(mss))
            #expect(segment(output.frame, header: output.header) == segments)
        }
    }
}
