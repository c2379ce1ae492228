// GSO over a UDP tunnel through a TAP: the header a TAP-based underlay reads and writes, and how it maps to the
// 12-byte header of the container TAPs.
//
// A switch running with an underlay TAP (`vxswitchd --underlay-tap`, docs/offload.md "The TAP underlay") writes
// whole outer frames (Ethernet + IPv4 + UDP + VXLAN + inner frame) into a TAP bridged to the uplink. With
// TUN_F_UDP_TUNNEL_GSO (Linux 6.18) that TAP takes, and hands out, a 64 KiB VXLAN-encapsulated TCP burst as one
// frame, described by `struct virtio_net_hdr_v1_hash_tunnel` (24 bytes, TUNSETVNETHDRSZ 24):
//
//     bytes 0-11   the v1 header (`VirtioNetHeader`); gso_type ORs in UDP_TUNNEL_IPV4 (0x20) or _IPV6 (0x40),
//                  csum_start is the inner transport header, from the start of the outer frame
//     bytes 12-19  hash report (value le32, report le16, padding le16): zero on writes, ignored on reads
//     bytes 20-21  outer_th_offset (le16): the outer UDP header, from the start of the frame
//     bytes 22-23  inner_nh_offset (le16): the inner IP header, from the start of the frame
//
// The kernel carries such a frame unsegmented through bridges and veths (as it carries its own vxlan device's
// bursts) and cuts it only where a device cannot take it. So a container's TSO burst crosses the underlay in one
// write and one read, with no segmentation, checksumming or coalescing in user space (tools/udp-tunnel-gso-check.py
// shows the kernel doing it). The two functions below are the only translation: `encapsulating` turns a container
// TAP's header into the underlay's, `decapsulated` turns the underlay's back into a container TAP's.

import VXPacket

/// The 24-byte virtio-net header of a TAP opened for GSO over UDP tunnels (see the file comment).
public struct VirtioNetTunnelHeader: Hashable, Sendable {
    /// Bytes of header in front of every frame (TUNSETVNETHDRSZ).
    public static let size = 24
    /// gso_type bit: the GSO frame is encapsulated in UDP over IPv4.
    public static let udpTunnelIPv4: UInt8 = 0x20
    /// gso_type bit: the GSO frame is encapsulated in UDP over IPv6.
    public static let udpTunnelIPv6: UInt8 = 0x40
    /// flags bit: the outer UDP checksum is partial too (VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM).
    public static let udpTunnelChecksumFlag: UInt8 = 0x08

    /// The first 12 bytes, with the tunnel bits taken out of `gsoType` (into `tunnel`) and out of `flags` (into
    /// `outerChecksumPartial`), so `inner.gsoType` is what the inner burst is (TCPV4, TCPV6).
    public var inner: VirtioNetHeader
    /// UDP_TUNNEL_IPV4 or _IPV6 of gso_type (0 when the frame is no GSO burst over a tunnel).
    public var tunnel: UInt8
    /// VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM.
    public var outerChecksumPartial: Bool
    /// The outer UDP header's offset from the start of the frame (tunnel GSO frames only).
    public var outerTransportOffset: UInt16
    /// The inner IP header's offset from the start of the frame (tunnel GSO frames only).
    public var innerNetworkOffset: UInt16

    public init(
        inner: VirtioNetHeader = .plain, tunnel: UInt8 = 0, outerChecksumPartial: Bool = false,
        outerTransportOffset: UInt16 = 0, innerNetworkOffset: UInt16 = 0
    ) {
        self.inner = inner
        self.tunnel = tunnel
        self.outerChecksumPartial = outerChecksumPartial
        self.outerTransportOffset = outerTransportOffset
        self.innerNetworkOffset = innerNetworkOffset
    }

    /// The header of a frame with nothing to segment or complete (ARP, control frames).
    public static var plain: VirtioNetTunnelHeader { VirtioNetTunnelHeader() }

    /// Decodes the header at the start of `bytes`; nil when there are fewer than 24 bytes.
    public static func parse(_ bytes: RawSpan) -> VirtioNetTunnelHeader? {
        guard bytes.byteCount >= size, var inner = VirtioNetHeader.parse(bytes) else { return nil }
        let tunnelBits = inner.gsoType.rawValue & (udpTunnelIPv4 | udpTunnelIPv6)
        inner.gsoType = VirtioNetHeader.GSOType(rawValue: inner.gsoType.rawValue & ~(udpTunnelIPv4 | udpTunnelIPv6))
        let outerPartial = inner.flags.rawValue & udpTunnelChecksumFlag != 0
        inner.flags = VirtioNetHeader.Flags(rawValue: inner.flags.rawValue & ~udpTunnelChecksumFlag)
        inner.bufferCount = 0
        return VirtioNetTunnelHeader(
            inner: inner, tunnel: tunnelBits, outerChecksumPartial: outerPartial,
            outerTransportOffset: bytes.vxLE16(20), innerNetworkOffset: bytes.vxLE16(22))
    }

    /// Encodes the header at `offset` (the hash report zeroed).
    /// - Returns: bytes written (24).
    @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        var first = inner
        first.gsoType = VirtioNetHeader.GSOType(rawValue: inner.gsoType.rawValue | tunnel)
        first.flags = VirtioNetHeader.Flags(
            rawValue: inner.flags.rawValue | (outerChecksumPartial ? Self.udpTunnelChecksumFlag : 0))
        first.bufferCount = 0
        first.write(into: &bytes, at: offset)
        for hashByte in stride(from: offset + 12, to: offset + 20, by: 2) { bytes.vxStoreLE16(0, at: hashByte) }
        bytes.vxStoreLE16(outerTransportOffset, at: offset + 20)
        bytes.vxStoreLE16(innerNetworkOffset, at: offset + 22)
        return Self.size
    }
}

/// Translations between a container TAP's virtio-net header and the underlay TAP's (see the file comment).
public enum UDPTunnelOffload {
    /// What to do with a frame from a container TAP on its way into the underlay TAP.
    public enum Encapsulation: Hashable, Sendable {
        /// Write it whole behind the outer headers, with this header in front.
        case whole(VirtioNetTunnelHeader)
        /// Its segments would not fit the underlay (an MSS above the overlay MTU, or more than 64 KiB with the
        /// outer headers): segment it in user space and send each segment as a plain frame.
        case segment
    }

    /// The underlay header for `header`'s frame (a container TAP's 12-byte header, the frame after it) behind
    /// `outerLength` bytes of outer headers (Ethernet + IPv4 + UDP + VXLAN) whose UDP header starts at
    /// `outerTransportOffset`.
    /// - Parameters:
    ///   - header: the frame's header as read from the container TAP; a plain frame's partial checksum must be
    ///     completed already (NEEDS_CSUM without GSO is refused as `.checksumOffsetInvalid`).
    ///   - frame: the inner Ethernet frame.
    ///   - outerLength: bytes of outer headers in front of it (50 for VXLAN over untagged IPv4).
    ///   - outerTransportOffset: where the outer UDP header starts (34 over untagged IPv4).
    ///   - maximumInnerPacket: the overlay MTU: no inner IP packet the kernel cuts may be larger.
    /// - Returns: the header, `.segment`, or why the frame is refused (bad offsets, a GSO type other than TCP).
    public static func encapsulating(
        _ header: VirtioNetHeader, frame: RawSpan, outerLength: Int, outerTransportOffset: Int,
        maximumInnerPacket: Int
    ) -> Result<Encapsulation, OffloadDropReason> {
        guard header.gsoType != .none else {
            guard !header.flags.contains(.needsChecksum) else { return .failure(.checksumOffsetInvalid) }
            return .success(.whole(.plain))
        }
        guard header.gsoType == .tcpv4 || header.gsoType == .tcpv6 else { return .failure(.gsoTypeUnsupported) }
        guard header.gsoSize > 0 else { return .failure(.gsoSizeZero) }
        guard header.flags.contains(.needsChecksum), header.checksumOffset == 16 else {
            return .failure(.checksumOffsetInvalid)
        }
        guard case .success(let ethernet) = EthernetHeader.parse(frame) else { return .failure(.malformedEthernet) }
        let transport = Int(header.checksumStart)
        // The TCP header must be in the frame for the kernel to cut it: its data offset gives the header length.
        guard transport >= ethernet.length + IPv4Header.minimumSize, transport + 20 <= frame.byteCount else {
            return .failure(.checksumOffsetInvalid)
        }
        let tcpHeaderLength = Int(frame.vxU8(transport + 12) >> 4) * 4
        guard tcpHeaderLength >= 20, transport + tcpHeaderLength <= frame.byteCount else {
            return .failure(.malformedTCP)
        }
        let innerHeaders = transport + tcpHeaderLength - ethernet.length
        guard innerHeaders + Int(header.gsoSize) <= maximumInnerPacket,
            outerLength + frame.byteCount - EthernetHeader.size <= 0xFFFF
        else { return .success(.segment) }
        var inner = header
        inner.checksumStart = UInt16(outerLength + transport)
        inner.headerLength = UInt16(outerLength + transport + tcpHeaderLength)
        inner.bufferCount = 0
        return .success(
            .whole(
                VirtioNetTunnelHeader(
                    inner: inner, tunnel: VirtioNetTunnelHeader.udpTunnelIPv4,
                    outerTransportOffset: UInt16(outerTransportOffset),
                    innerNetworkOffset: UInt16(outerLength + ethernet.length))))
    }

    /// The container TAP header for the inner frame of an underlay frame whose header is `header` and whose inner
    /// Ethernet frame starts `innerOffset` bytes into it.
    /// - Returns: a plain header (nothing partial in the inner frame), one with NEEDS_CSUM (a partial inner
    ///   checksum, offsets made relative to the inner frame), one for a TCP burst (TCPV4/TCPV6), or why the frame
    ///   is refused: a GSO frame that is not a TCP burst over a UDP-over-IPv4 tunnel, or a partial checksum
    ///   that starts inside the outer headers of a GSO frame.
    public static func decapsulated(_ header: VirtioNetTunnelHeader, innerOffset: Int) -> Result<
        VirtioNetHeader, OffloadDropReason
    > {
        var inner = header.inner
        inner.bufferCount = 0
        // DATA_VALID on a read is about the outer packet (the kernel never looked inside): the container's
        // kernel checks the inner checksum itself.
        inner.flags.remove(.dataValid)
        guard inner.gsoType != .none else {
            guard header.tunnel == 0 else { return .failure(.gsoTypeUnsupported) }
            // A partial checksum in the outer headers (the outer UDP checksum) is ours to drop with them.
            guard inner.flags.contains(.needsChecksum), Int(inner.checksumStart) >= innerOffset else {
                return .success(.plain)
            }
            inner.checksumStart -= UInt16(innerOffset)
            inner.headerLength = 0
            return .success(inner)
        }
        guard header.tunnel == VirtioNetTunnelHeader.udpTunnelIPv4,
            inner.gsoType == .tcpv4 || inner.gsoType == .tcpv6
        else { return .failure(.gsoTypeUnsupported) }
        guard inner.gsoSize > 0 else { return .failure(.gsoSizeZero) }
        guard inner.flags.contains(.needsChecksum), Int(inner.checksumStart) >= innerOffset + EthernetHeader.size
        else { return .failure(.checksumOffsetInvalid) }
        inner.checksumStart -= UInt16(innerOffset)
        inner.headerLength = inner.headerLength > innerOffset ? inner.headerLength - UInt16(innerOffset) : 0
        return .success(inner)
    }
}
