import VXPacket

/// Where the headers of an Ethernet + IPv4/IPv6 + TCP frame are, as segmentation and coalescing need them.
struct TCPFrameLayout {
    /// Ethernet header length: 14, or 18 with one 802.1Q tag; also the offset of the IP header.
    var networkOffset: Int
    /// Offset of the TCP header (IPv4 options or IPv6 extension headers included before it).
    var transportOffset: Int
    /// TCP header length, options included.
    var tcpHeaderLength: Int
    /// Where the IP packet ends according to its length field (Ethernet padding, if any, lies after it).
    var packetEnd: Int
    /// True for IPv6.
    var isIPv6: Bool

    /// Offset of the TCP payload: the length of all headers.
    var payloadOffset: Int { transportOffset + tcpHeaderLength }
    /// TCP payload bytes.
    var payloadLength: Int { packetEnd - payloadOffset }
    /// IP header length (options or extension headers included).
    var networkHeaderLength: Int { transportOffset - networkOffset }

    /// Parses Ethernet (optionally one 802.1Q tag), IPv4 or IPv6, and TCP.
    /// - Parameters:
    ///   - frame: the frame from the Ethernet header on.
    ///   - allowIPOptions: false to refuse IPv4 options and IPv6 extension headers (coalescing).
    /// - Returns: the layout, or why not: the frame is malformed, not IP, not TCP, a fragment, or (IPv6) carries a
    ///   Routing header, whose final destination the pseudo-header would need.
    static func parse(_ frame: RawSpan, allowIPOptions: Bool) -> Result<TCPFrameLayout, OffloadDropReason> {
        let ethernet: EthernetHeader
        switch EthernetHeader.parse(frame) {
        case .success(let header): ethernet = header
        case .failure: return .failure(.malformedEthernet)
        }
        let networkOffset = ethernet.length
        let packet = frame.extracting(networkOffset..<frame.byteCount)
        switch ethernet.etherType {
        case .ipv4:
            // The header checksum is verified by the coalescer itself (it must be, before trusting the header);
            // a TAP frame's header was built by the kernel.
            guard case .success(let ip) = IPv4Header.parse(packet, verifyChecksum: false) else {
                return .failure(.malformedIPv4)
            }
            guard ip.protocol == .tcp else { return .failure(.notTCP) }
            guard !ip.isFragment else { return .failure(.fragment) }
            guard allowIPOptions || ip.headerLength == IPv4Header.minimumSize else { return .failure(.malformedIPv4) }
            return tcp(
                frame,
                networkOffset: networkOffset,
                transportOffset: networkOffset + ip.headerLength,
                packetEnd: networkOffset + Int(ip.totalLength),
                isIPv6: false
            )
        case .ipv6:
            guard case .success(let location) = IPv6Header.findTransport(in: packet) else {
                return .failure(.malformedIPv6)
            }
            guard !location.isFragment else { return .failure(.fragment) }
            guard location.protocol == .tcp else { return .failure(.notTCP) }
            if location.offset != IPv6Header.size {
                guard allowIPOptions, !hasRoutingHeader(packet) else { return .failure(.malformedIPv6) }
            }
            let payloadLength = Int(packet.vxBE16(4))
            return tcp(
                frame,
                networkOffset: networkOffset,
                transportOffset: networkOffset + location.offset,
                packetEnd: networkOffset + IPv6Header.size + payloadLength,
                isIPv6: true
            )
        default:
            return .failure(.gsoProtocolMismatch)
        }
    }

    private static func tcp(
        _ frame: RawSpan,
        networkOffset: Int,
        transportOffset: Int,
        packetEnd: Int,
        isIPv6: Bool
    ) -> Result<TCPFrameLayout, OffloadDropReason> {
        guard packetEnd <= frame.byteCount, transportOffset <= packetEnd else {
            return .failure(isIPv6 ? .malformedIPv6 : .malformedIPv4)
        }
        guard case .success(let tcp) = TCPHeader.parse(frame.extracting(transportOffset..<packetEnd)) else {
            return .failure(.malformedTCP)
        }
        return .success(
            TCPFrameLayout(
                networkOffset: networkOffset,
                transportOffset: transportOffset,
                tcpHeaderLength: tcp.headerLength,
                packetEnd: packetEnd,
                isIPv6: isIPv6
            )
        )
    }

    /// Walks an extension-header chain that `IPv6Header.findTransport` already accepted, looking for a Routing
    /// header (43).
    private static func hasRoutingHeader(_ packet: RawSpan) -> Bool {
        var next = packet.vxU8(6)
        var offset = IPv6Header.size
        while true {
            switch next {
            case 43: return true
            case 0, 60: break
            case 51:
                next = packet.vxU8(offset)
                offset += (Int(packet.vxU8(offset + 1)) + 2) * 4
                continue
            default: return false
            }
            next = packet.vxU8(offset)
            offset += (Int(packet.vxU8(offset + 1)) + 1) * 8
        }
    }

    /// The folded pseudo-header sum with length 0: per segment, `combine(base, length)` gives the real one
    /// (one's-complement addition is associative and a TCP length fits 16 bits).
    func pseudoHeaderBase(_ frame: RawSpan) -> UInt16 {
        if isIPv6 {
            let ip = networkOffset
            let source = IPv6Address(high: frame.vxBE64(ip + 8), low: frame.vxBE64(ip + 16))
            let destination = IPv6Address(high: frame.vxBE64(ip + 24), low: frame.vxBE64(ip + 32))
            return InternetChecksum.pseudoHeaderSum(source: source, destination: destination, protocol: .tcp, length: 0)
        }
        let source = IPv4Address(value: frame.vxBE32(networkOffset + 12))
        let destination = IPv4Address(value: frame.vxBE32(networkOffset + 16))
        return InternetChecksum.pseudoHeaderSum(source: source, destination: destination, protocol: .tcp, length: 0)
    }
}
