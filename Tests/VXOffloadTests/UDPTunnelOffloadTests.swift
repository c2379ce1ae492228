// The 24-byte tunnel virtio-net header and the two translations between it and a container TAP's 12-byte header
// (docs/offload.md, "The TAP underlay"): byte layout, what is refused, and when a burst must be cut in user space.

import Testing
import VXOffload
import VXPacket
import VXTestSupport

@Suite("GSO over the UDP tunnel: header and translations")
struct UDPTunnelOffloadTests {
    /// A TSO header as a container TAP hands it out for `spec`'s frame.
    static func tso(_ spec: TCPFrameSpec, gsoSize: UInt16) -> VirtioNetHeader {
        VirtioNetHeader(
            flags: .needsChecksum, gsoType: spec.ipv6 ? .tcpv6 : .tcpv4, headerLength: UInt16(spec.headerLength),
            gsoSize: gsoSize, checksumStart: UInt16(spec.transportOffset), checksumOffset: 16)
    }

    @Test("the header's bytes are the kernel's: v1 header with the tunnel bits, hash zeroed, then the two offsets")
    func headerLayout() throws {
        let header = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(
                flags: .needsChecksum, gsoType: .tcpv4, headerLength: 0x0102, gsoSize: 1398, checksumStart: 84,
                checksumOffset: 16),
            tunnel: VirtioNetTunnelHeader.udpTunnelIPv4, outerChecksumPartial: true, outerTransportOffset: 34,
            innerNetworkOffset: 64)
        let bytes = PacketBuilder.withBytes(count: 24) { header.write(into: &$0) }
        #expect(bytes == [0x09, 0x21, 0x02, 0x01, 0x76, 0x05, 84, 0, 16, 0, 0, 0] + [UInt8](repeating: 0, count: 8)
            + [34, 0, 64, 0])
        #expect(VirtioNetTunnelHeader.parse(bytes.span.bytes) == header)
        #expect(VirtioNetTunnelHeader.parse(Array(bytes.prefix(23)).span.bytes) == nil)
    }

    @Test("a burst for the underlay: csum_start and hdr_len move by the outer headers, offsets point inside", arguments: [false, true])
    func encapsulatesABurst(vlan: Bool) throws {
        var spec = TCPFrameSpec(payload: pattern(20_000))
        if vlan { spec.vlan = VLANTag(id: 7) }
        let frame = spec.build(checksum: .partial)
        let result = try UDPTunnelOffload.encapsulating(
            Self.tso(spec, gsoSize: 1398), frame: frame.span.bytes, outerLength: 50, outerTransportOffset: 34,
            maximumInnerPacket: 1450
        ).get()
        guard case .whole(let header) = result else {
            Issue.record("expected the burst whole, got \(result)")
            return
        }
        #expect(header.tunnel == VirtioNetTunnelHeader.udpTunnelIPv4 && !header.outerChecksumPartial)
        #expect(header.inner.gsoType == .tcpv4 && header.inner.gsoSize == 1398 && header.inner.flags == .needsChecksum)
        #expect(Int(header.inner.checksumStart) == 50 + spec.transportOffset)
        #expect(Int(header.inner.headerLength) == 50 + spec.headerLength)
        #expect(header.outerTransportOffset == 34 && Int(header.innerNetworkOffset) == 50 + spec.ethernetLength)
    }

    @Test("segments that would not fit, or a burst past 64 KiB with the outer headers, are cut in user space")
    func tooLargeMeansSegment() throws {
        let spec = TCPFrameSpec(tcpOptions: TCPFrameSpec.timestamps(1), payload: pattern(20_000))
        let frame = spec.build(checksum: .partial)
        // 20 + 32 bytes of headers: 1398 + 52 = 1450 fits, 1399 does not.
        let fits = UDPTunnelOffload.encapsulating(
            Self.tso(spec, gsoSize: 1398), frame: frame.span.bytes, outerLength: 50, outerTransportOffset: 34,
            maximumInnerPacket: 1450)
        let over = UDPTunnelOffload.encapsulating(
            Self.tso(spec, gsoSize: 1399), frame: frame.span.bytes, outerLength: 50, outerTransportOffset: 34,
            maximumInnerPacket: 1450)
        guard case .success(.whole) = fits else { Issue.record("1398 + 52 fits 1450: \(fits)"); return }
        #expect(over == .success(.segment))
        let big = TCPFrameSpec(payload: pattern(65_535 - 40)).build(checksum: .partial)
        #expect(
            UDPTunnelOffload.encapsulating(
                Self.tso(TCPFrameSpec(), gsoSize: 1398), frame: big.span.bytes, outerLength: 50,
                outerTransportOffset: 34, maximumInnerPacket: 1450) == .success(.segment))
    }

    @Test("plain frames go with a plain header; bad bursts are refused with the reason")
    func refusals() throws {
        let spec = TCPFrameSpec(payload: pattern(3000))
        let frame = spec.build(checksum: .partial)
        let bytes = frame.span.bytes
        func plan(_ header: VirtioNetHeader, _ frame: RawSpan) -> Result<UDPTunnelOffload.Encapsulation, OffloadDropReason> {
            UDPTunnelOffload.encapsulating(header, frame: frame, outerLength: 50, outerTransportOffset: 34, maximumInnerPacket: 1450)
        }
        #expect(plan(.plain, bytes) == .success(.whole(.plain)))
        #expect(plan(VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 16), bytes)
            == .failure(.checksumOffsetInvalid), "a partial checksum on a plain frame must be completed first")
        var header = Self.tso(spec, gsoSize: 1000)
        header.gsoType = .udpL4
        #expect(plan(header, bytes) == .failure(.gsoTypeUnsupported))
        header = Self.tso(spec, gsoSize: 0)
        #expect(plan(header, bytes) == .failure(.gsoSizeZero))
        header = Self.tso(spec, gsoSize: 1000)
        header.checksumStart = 20
        #expect(plan(header, bytes) == .failure(.checksumOffsetInvalid))
        header.checksumStart = UInt16(frame.count - 10)
        #expect(plan(header, bytes) == .failure(.checksumOffsetInvalid))
        var badOffset = frame
        badOffset[34 + 12] = 0x20  // data offset 2 words
        #expect(plan(Self.tso(spec, gsoSize: 1000), badOffset.span.bytes) == .failure(.malformedTCP))
        #expect(plan(Self.tso(spec, gsoSize: 1000), Array(frame.prefix(10)).span.bytes) == .failure(.malformedEthernet))
    }

    @Test("from the underlay: a burst's header comes back relative to the inner frame; other kinds are refused")
    func decapsulates() throws {
        let burst = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(
                flags: [.needsChecksum, .dataValid], gsoType: .tcpv4, headerLength: 104, gsoSize: 1398,
                checksumStart: 84, checksumOffset: 16),
            tunnel: VirtioNetTunnelHeader.udpTunnelIPv4, outerTransportOffset: 34, innerNetworkOffset: 64)
        #expect(
            UDPTunnelOffload.decapsulated(burst, innerOffset: 50)
                == .success(
                    VirtioNetHeader(
                        flags: .needsChecksum, gsoType: .tcpv4, headerLength: 54, gsoSize: 1398, checksumStart: 34,
                        checksumOffset: 16)))
        var ipv6Outer = burst
        ipv6Outer.tunnel = VirtioNetTunnelHeader.udpTunnelIPv6
        #expect(UDPTunnelOffload.decapsulated(ipv6Outer, innerOffset: 50) == .failure(.gsoTypeUnsupported))
        var untunnelled = burst
        untunnelled.tunnel = 0
        #expect(UDPTunnelOffload.decapsulated(untunnelled, innerOffset: 50) == .failure(.gsoTypeUnsupported))
        var intoOuter = burst
        intoOuter.inner.checksumStart = 40
        #expect(UDPTunnelOffload.decapsulated(intoOuter, innerOffset: 50) == .failure(.checksumOffsetInvalid))
        // A single frame: a partial inner checksum moves, one in the outer headers (the outer UDP's) is dropped,
        // and DATA_VALID, which speaks of the outer packet, never reaches the container.
        let partialInner = VirtioNetTunnelHeader(inner: VirtioNetHeader(flags: .needsChecksum, checksumStart: 84, checksumOffset: 16))
        #expect(
            UDPTunnelOffload.decapsulated(partialInner, innerOffset: 50)
                == .success(VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 16)))
        let partialOuter = VirtioNetTunnelHeader(inner: VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 6))
        #expect(UDPTunnelOffload.decapsulated(partialOuter, innerOffset: 50) == .success(.plain))
        let valid = VirtioNetTunnelHeader(inner: VirtioNetHeader(flags: .dataValid))
        #expect(UDPTunnelOffload.decapsulated(valid, innerOffset: 50) == .success(.plain))
    }
}
