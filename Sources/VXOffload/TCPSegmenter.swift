// TCP segmentation (TSO in software) for GSO frames read from a TAP.
//
// Flow: the TAP (IFF_VNET_HDR, TUNSETOFFLOAD TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) hands the dataplane up to 64 KiB
// of one TCP flow at a time in a scratch buffer, behind a virtio-net header with gso_type TCPV4/TCPV6 and gso_size
// (the MSS). `TCPSegmenter.plan` parses the frame once; then `writeSegment(_:of:into:)` writes segment i into a
// destination the caller chooses (a pool buffer, after its headroom), one at a time, so segmentation never needs
// more than one extra buffer at once and never allocates.
//
// Each segment is the frame's headers (Ethernet/802.1Q, IP with options or extension headers, TCP with options)
// copied verbatim, then patched as the kernel's own GSO does (inet_gso_segment, tcp_gso_segment,
// ipv6_gso_segment):
//   - IPv4: total length; identification = first + i (the stack numbered the whole burst this way, see
//     ip_select_ident_segs); header checksum recomputed (from a sum of the unchanging words taken once per frame).
//   - IPv6: payload length.
//   - TCP: sequence number = first + i × mss; FIN and PSH only on the last segment; CWR only on the first (the
//     kernel clears it after the first whether or not gso_type has the ECN bit); checksum computed from scratch.
// The TCP checksum is computed from scratch, with the pseudo-header from the IP addresses and this segment's length:
// the payload is summed while it is copied (`InternetChecksum.copyAndSum`, one pass over it instead of a memmove
// and a checksum pass). The header's part is a sum of its unchanging words taken once per frame plus the three words
// a segment patches (sequence number, data offset and flags), as for the IPv4 header: a few additions per segment
// instead of a pass over the patched header. The frame's own checksum field (the pseudo-header seed for the whole
// frame) is ignored, so the result is right whatever the TAP said.
//
// What the kernel leaves unreliable: `hdr_len` is skb_headlen, a linearisation hint that can cover a whole segment
// or more (wireguard-go hit this on the forward path), so the header length is always recomputed from the
// packet. `csum_start`/`csum_offset`, when NEEDS_CSUM is set, must point at the TCP checksum, or the frame is
// refused (the kernel's virtio_net_hdr_to_skb refuses TCP GSO with csum_offset other than 16 as well).
//
// Thread-safety: a plan is an immutable value; any thread may use it with its own frame and destination.

import VXPacket

/// The segmentation of one GSO frame; write its segments with `writeSegment(_:of:into:at:)`.
public struct TCPSegmenter: Hashable, Sendable {
    /// Number of segments; 1 when the payload fits one segment (or is empty).
    public let segmentCount: Int
    /// TCP payload bytes per segment (the last may carry fewer): `min(gso_size, maximumSegmentSize)`.
    public let segmentSize: Int
    /// Bytes of headers copied into every segment: Ethernet (+ tag), IP (+ options / extension headers), TCP
    /// (+ options).
    public let headerLength: Int
    /// Total TCP payload bytes in the frame.
    public let payloadLength: Int
    /// Offset of the IP header in the frame and in every segment.
    public let networkOffset: Int
    /// Offset of the TCP header in the frame and in every segment.
    public let transportOffset: Int
    /// True for IPv6.
    public let isIPv6: Bool

    /// Sequence number of the first payload byte.
    let firstSequence: UInt32
    /// IPv4 identification of the first segment (0 for IPv6).
    let firstIdentification: UInt16
    /// The pseudo-header sum with length 0 (see `TCPFrameLayout.pseudoHeaderBase`).
    let pseudoHeaderBase: UInt16
    /// The sum of the IPv4 header (options included) without its total length, identification and checksum, the
    /// only words that differ between segments; 0 for IPv6.
    let ipv4HeaderBase: UInt16
    /// The sum of the TCP header (options included) without its sequence number, data offset and flags word, and
    /// checksum, the only words that differ between segments (see `tcpHeaderSumWithoutVaryingWords`).
    let tcpHeaderBase: UInt16

    /// The longest segment, for sizing destinations: `headerLength + segmentSize`.
    @inlinable public var maximumSegmentLength: Int { headerLength + segmentSize }

    /// Parses a GSO frame and plans its segmentation.
    /// - Parameters:
    ///   - frame: the frame after the virtio-net header, from the Ethernet header to the end of the IP packet
    ///     (anything past the IP length is ignored).
    ///   - header: the frame's virtio-net header; `gsoType` must not be `.none` (the caller sends such frames as
    ///     they are, after `ChecksumCompletion`).
    ///   - maximumSegmentSize: the largest TCP payload a segment may carry on the tunnel (inner MTU minus the IP and
    ///     TCP headers); segments are `min(gso_size, maximumSegmentSize)` bytes. Must be positive.
    /// - Returns: the plan, or why the frame cannot be segmented (count it and drop the frame).
    public static func plan(
        frame: RawSpan,
        header: VirtioNetHeader,
        maximumSegmentSize: Int
    ) -> Result<TCPSegmenter, OffloadDropReason> {
        precondition(header.gsoType != .none, "TCPSegmenter: frame has no GSO; send it as it is")
        precondition(maximumSegmentSize > 0, "TCPSegmenter: maximumSegmentSize must be positive")
        let wantIPv6: Bool
        switch header.gsoType {
        case .tcpv4: wantIPv6 = false
        case .tcpv6: wantIPv6 = true
        default: return .failure(.gsoTypeUnsupported)
        }
        guard header.gsoSize > 0 else { return .failure(.gsoSizeZero) }
        let layout: TCPFrameLayout
        switch TCPFrameLayout.parse(frame, allowIPOptions: true) {
        case .success(let parsed): layout = parsed
        case .failure(let reason): return .failure(reason)
        }
        guard layout.isIPv6 == wantIPv6 else { return .failure(.gsoProtocolMismatch) }
        if header.flags.contains(.needsChecksum) {
            guard Int(header.checksumStart) == layout.transportOffset, header.checksumOffset == 16 else {
                return .failure(.checksumOffsetInvalid)
            }
        }
        let size = min(Int(header.gsoSize), maximumSegmentSize)
        let payload = layout.payloadLength
        let count = payload == 0 ? 1 : (payload + size - 1) / size
        return .success(
            TCPSegmenter(
                segmentCount: count,
                segmentSize: size,
                headerLength: layout.payloadOffset,
                payloadLength: payload,
                networkOffset: layout.networkOffset,
                transportOffset: layout.transportOffset,
                isIPv6: layout.isIPv6,
                firstSequence: frame.vxBE32(layout.transportOffset + 4),
                firstIdentification: layout.isIPv6 ? 0 : frame.vxBE16(layout.networkOffset + 4),
                pseudoHeaderBase: layout.pseudoHeaderBase(frame),
                ipv4HeaderBase: layout.isIPv6 ? 0 : ipv4HeaderSumWithoutVaryingWords(frame, at: layout.networkOffset),
                tcpHeaderBase: tcpHeaderSumWithoutVaryingWords(
                    frame, at: layout.transportOffset, end: layout.payloadOffset)
            )
        )
    }

    /// The IPv4 header's sum over every word but total length (bytes 2-3), identification (4-5) and checksum
    /// (10-11), so that each segment's header checksum is two additions instead of a pass over the header. The
    /// version byte keeps it non-zero, so the result equals a checksum computed from scratch bit for bit.
    private static func ipv4HeaderSumWithoutVaryingWords(_ frame: RawSpan, at ip: Int) -> UInt16 {
        let headerLength = Int(frame.vxU8(ip) & 0x0F) * 4
        let before = InternetChecksum.sum(frame.extracting(ip..<(ip + 2)))
        let middle = InternetChecksum.sum(frame.extracting((ip + 6)..<(ip + 10)))
        let options = InternetChecksum.sum(frame.extracting((ip + 12)..<(ip + headerLength)))
        return InternetChecksum.combine(InternetChecksum.combine(before, middle), options)
    }

    /// The TCP header's sum over every word but the sequence number (bytes 4-7), data offset and flags (12-13) and
    /// checksum (16-17): ports, acknowledgment number, window, urgent pointer, options. A segment adds its own three
    /// words; the data offset (at least 5) keeps that total non-zero, so it equals a sum over the patched header
    /// bit for bit.
    private static func tcpHeaderSumWithoutVaryingWords(_ frame: RawSpan, at tcp: Int, end: Int) -> UInt16 {
        let ports = InternetChecksum.sum(frame.extracting(tcp..<(tcp + 4)))
        let acknowledgment = InternetChecksum.sum(frame.extracting((tcp + 8)..<(tcp + 12)))
        let window = InternetChecksum.sum(frame.extracting((tcp + 14)..<(tcp + 16)))
        let rest = InternetChecksum.sum(frame.extracting((tcp + 18)..<end))
        return InternetChecksum.combine(
            InternetChecksum.combine(ports, acknowledgment), InternetChecksum.combine(window, rest))
    }

    /// The length of segment `index` in bytes, headers included.
    /// - Parameter index: 0 ..< `segmentCount`.
    @inlinable
    public func segmentLength(_ index: Int) -> Int {
        precondition(index >= 0 && index < segmentCount, "TCPSegmenter: segment index out of range")
        return headerLength + min(segmentSize, payloadLength - index * segmentSize)
    }

    /// Writes segment `index` as a complete frame with valid IPv4 and TCP checksums.
    /// - Parameters:
    ///   - index: 0 ..< `segmentCount`.
    ///   - frame: the same bytes `plan` was made from.
    ///   - destination: where the segment goes; must hold `segmentLength(index)` bytes from `offset` (traps
    ///     otherwise: size destinations with `maximumSegmentLength`).
    ///   - offset: where the Ethernet header goes in `destination`.
    /// - Returns: bytes written (`segmentLength(index)`).
    @discardableResult
    public func writeSegment(
        _ index: Int,
        of frame: RawSpan,
        into destination: inout MutableRawSpan,
        at offset: Int = 0
    ) -> Int {
        let length = segmentLength(index)
        let payloadStart = index * segmentSize
        let payloadCount = length - headerLength
        let isLast = index == segmentCount - 1
        destination.vxCopy(from: frame, at: 0, count: headerLength, to: offset)
        let payloadSum = InternetChecksum.copyAndSum(
            frame.extracting((headerLength + payloadStart)..<(headerLength + payloadStart + payloadCount)),
            into: &destination,
            at: offset + headerLength
        )

        let ip = offset + networkOffset
        if isIPv6 {
            destination.vxStoreBE16(UInt16(truncatingIfNeeded: length - networkOffset - IPv6Header.size), at: ip + 4)
        } else {
            let totalLength = UInt16(truncatingIfNeeded: length - networkOffset)
            let identification = firstIdentification &+ UInt16(truncatingIfNeeded: index)
            destination.vxStoreBE16(totalLength, at: ip + 2)
            destination.vxStoreBE16(identification, at: ip + 4)
            let lengthSum = InternetChecksum.combine(ipv4HeaderBase, totalLength)
            let headerSum = InternetChecksum.combine(lengthSum, identification)
            destination.vxStoreBE16(~headerSum, at: ip + 10)
        }

        let tcp = offset + transportOffset
        let sequence = firstSequence &+ UInt32(truncatingIfNeeded: payloadStart)
        destination.vxStoreBE32(sequence, at: tcp + 4)
        var flags = destination.bytes.vxU8(tcp + 13)
        if !isLast { flags &= ~UInt8(truncatingIfNeeded: TCPFlags.fin.rawValue | TCPFlags.psh.rawValue) }
        if index > 0 { flags &= ~UInt8(truncatingIfNeeded: TCPFlags.cwr.rawValue) }
        destination.vxStoreU8(flags, at: tcp + 13)
        destination.vxStoreBE16(0, at: tcp + 16)
        let tcpLength = length - transportOffset
        let pseudo = InternetChecksum.combine(pseudoHeaderBase, UInt16(truncatingIfNeeded: tcpLength))
        // The payload was summed as it was copied, the header's unchanging words once per frame. Folded sums add up
        // only when the first part has an even length, which a TCP header (a multiple of 4 bytes) always has.
        assert((headerLength - transportOffset) % 4 == 0, "TCPSegmenter: TCP header length not a multiple of 4")
        let offsetAndFlags = UInt16(destination.bytes.vxU8(tcp + 12)) << 8 | UInt16(flags)
        let sequenceSum = InternetChecksum.combine(
            UInt16(truncatingIfNeeded: sequence >> 16), UInt16(truncatingIfNeeded: sequence))
        let headerSum = InternetChecksum.combine(
            InternetChecksum.combine(tcpHeaderBase, sequenceSum), offsetAndFlags)
        let sum = InternetChecksum.combine(headerSum, payloadSum)
        destination.vxStoreBE16(~InternetChecksum.combine(pseudo, sum), at: tcp + 16)
        return length
    }
}
