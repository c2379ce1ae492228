// Tunnel decapsulation: from what a socket hands us to (VNI, inner frame offset) or a drop reason.
//
// Flow: a UDP/4789 socket yields VXLAN datagram payloads (the kernel has stripped IP and UDP and checked the UDP
// checksum) -> `vxlanDatagram`; a raw IPv4 IPPROTO_GRE socket yields whole IPv4 packets -> `greIPv4`, a raw IPv6
// one the GRE header and what follows (raw IPv6 sockets never deliver the IPv6 header) -> `greDatagram`; then the
// peer's `GREKeyLayout` turns the key into a VNI. `vxlanIPv4` parses a full outer IPv4 + UDP + VXLAN packet for tests
// and pcap tooling. All are pure functions over the caller's bytes; nothing is copied or allocated.

/// The result of decoding a VXLAN datagram payload.
public struct VXLANDecapsulation: Hashable, Sendable {
    /// The VNI from the VXLAN header.
    public var vni: VNI
    /// Offset of the inner Ethernet frame in the decoded bytes.
    public var innerOffset: Int
    /// Length of the inner Ethernet frame.
    public var innerLength: Int

    /// Builds a value (decoders do this).
    @inlinable
    public init(vni: VNI, innerOffset: Int, innerLength: Int) {
        self.vni = vni
        self.innerOffset = innerOffset
        self.innerLength = innerLength
    }
}

/// The result of decoding an outer IPv4 + GRE packet.
public struct GREDecapsulation: Hashable, Sendable {
    /// The outer IPv4 header.
    public var ipv4: IPv4Header
    /// The GRE header (key and sequence number, if present).
    public var gre: GREHeader
    /// Offset of the inner Ethernet frame from the start of the IPv4 header.
    public var innerOffset: Int
    /// Length of the inner Ethernet frame (bounded by the IPv4 total length, not the buffer).
    public var innerLength: Int

    /// Builds a value (decoders do this).
    @inlinable
    public init(ipv4: IPv4Header, gre: GREHeader, innerOffset: Int, innerLength: Int) {
        self.ipv4 = ipv4
        self.gre = gre
        self.innerOffset = innerOffset
        self.innerLength = innerLength
    }

    /// The GRE part alone, as `TunnelDecap.greDatagram` describes a raw IPv6 socket's datagram, with the offsets
    /// still counted from the IPv4 header: what the worker decodes both kinds of GRE socket into.
    @inlinable
    public var datagram: GREDatagramDecapsulation {
        GREDatagramDecapsulation(gre: gre, innerOffset: innerOffset, innerLength: innerLength)
    }

    /// The VNI by the sending peer's key layout (see `GREDatagramDecapsulation.vni(layout:unkeyedVNI:)`).
    @inlinable
    public func vni(layout: GREKeyLayout, unkeyedVNI: VNI) -> Result<VNI, PacketDropReason> {
        datagram.vni(layout: layout, unkeyedVNI: unkeyedVNI)
    }
}

/// The result of decoding a GRE packet without its outer IP header (what a raw IPv6 IPPROTO_GRE socket delivers).
public struct GREDatagramDecapsulation: Hashable, Sendable {
    /// The GRE header (key and sequence number, if present).
    public var gre: GREHeader
    /// Offset of the inner Ethernet frame from the start of the GRE header.
    public var innerOffset: Int
    /// Length of the inner Ethernet frame.
    public var innerLength: Int

    /// Builds a value (decoders do this).
    @inlinable
    public init(gre: GREHeader, innerOffset: Int, innerLength: Int) {
        self.gre = gre
        self.innerOffset = innerOffset
        self.innerLength = innerLength
    }

    /// The VNI by the sending peer's key layout.
    /// - Parameters:
    ///   - layout: the peer's key layout.
    ///   - unkeyedVNI: the peer's VNI, for `.none`.
    /// - Returns: the VNI, or `.greKeyMissing`, `.greKeyUnexpected`, `.vniOutOfRange`.
    @inlinable
    public func vni(layout: GREKeyLayout, unkeyedVNI: VNI) -> Result<VNI, PacketDropReason> {
        layout.vni(forKey: gre.key, unkeyedVNI: unkeyedVNI)
    }
}

/// The result of decoding a full outer IPv4 + UDP + VXLAN packet.
public struct VXLANIPv4Decapsulation: Hashable, Sendable {
    /// The outer IPv4 header.
    public var ipv4: IPv4Header
    /// The outer UDP header.
    public var udp: UDPHeader
    /// The VNI from the VXLAN header.
    public var vni: VNI
    /// Offset of the inner Ethernet frame from the start of the IPv4 header.
    public var innerOffset: Int
    /// Length of the inner Ethernet frame.
    public var innerLength: Int

    /// Builds a value (decoders do this).
    @inlinable
    public init(ipv4: IPv4Header, udp: UDPHeader, vni: VNI, innerOffset: Int, innerLength: Int) {
        self.ipv4 = ipv4
        self.udp = udp
        self.vni = vni
        self.innerOffset = innerOffset
        self.innerLength = innerLength
    }
}

/// Tunnel decoders; each returns a typed result or the reason for dropping.
public enum TunnelDecap {
    /// Decodes the payload of a datagram received on the VXLAN UDP socket.
    /// - Parameter payload: starts at the VXLAN flags octet.
    /// - Returns: VNI and inner frame position, or `.truncatedVXLAN`, `.vxlanIFlagClear`,
    ///   `.truncatedInnerEthernet`.
    @inlinable
    public static func vxlanDatagram(_ payload: RawSpan) -> Result<VXLANDecapsulation, PacketDropReason> {
        let header: VXLANHeader
        switch VXLANHeader.parse(payload) {
        case .success(let h): header = h
        case .failure(let reason): return .failure(reason)
        }
        let innerLength = payload.byteCount - VXLANHeader.size
        guard innerLength >= EthernetHeader.size else { return .failure(.truncatedInnerEthernet) }
        return .success(VXLANDecapsulation(vni: header.vni, innerOffset: VXLANHeader.size, innerLength: innerLength))
    }

    /// Decodes a packet received on a raw IPPROTO_GRE socket (it starts with the IPv4 header).
    /// - Parameters:
    ///   - packet: the IPv4 packet; bytes past its total length are ignored.
    ///   - verifyIPv4Checksum: the kernel has already checked it on a raw socket; true re-checks.
    /// - Returns: the headers and inner frame position, or an IPv4 reason, `.outerNotGRE`, `.outerFragment`
    ///   (the kernel reassembles before raw delivery, so a fragment here is malformed), a GRE reason, or
    ///   `.truncatedInnerEthernet`.
    @inlinable
    public static func greIPv4(
        _ packet: RawSpan, verifyIPv4Checksum: Bool = true
    ) -> Result<GREDecapsulation, PacketDropReason> {
        let ip: IPv4Header
        switch IPv4Header.parse(packet, verifyChecksum: verifyIPv4Checksum) {
        case .success(let h): ip = h
        case .failure(let reason): return .failure(reason)
        }
        guard ip.protocol == .gre else { return .failure(.outerNotGRE) }
        guard !ip.isFragment else { return .failure(.outerFragment) }
        let inner: GREDatagramDecapsulation
        switch greDatagram(packet.extracting(ip.headerLength..<Int(ip.totalLength))) {
        case .success(let d): inner = d
        case .failure(let reason): return .failure(reason)
        }
        return .success(
            GREDecapsulation(
                ipv4: ip, gre: inner.gre, innerOffset: ip.headerLength + inner.innerOffset,
                innerLength: inner.innerLength))
    }

    /// Decodes a GRE packet from its GRE header on: a datagram of a raw IPv6 IPPROTO_GRE socket, where the kernel
    /// has removed the IPv6 header (and reassembled fragments).
    /// - Parameter packet: the GRE header and exactly its payload (the checksum, if present, covers both).
    /// - Returns: the header and inner frame position, or a GRE reason, or `.truncatedInnerEthernet`.
    @inlinable
    public static func greDatagram(_ packet: RawSpan) -> Result<GREDatagramDecapsulation, PacketDropReason> {
        let gre: GREHeader
        switch GREHeader.parse(packet) {
        case .success(let h): gre = h
        case .failure(let reason): return .failure(reason)
        }
        let innerLength = packet.byteCount - gre.length
        guard innerLength >= EthernetHeader.size else { return .failure(.truncatedInnerEthernet) }
        return .success(GREDatagramDecapsulation(gre: gre, innerOffset: gre.length, innerLength: innerLength))
    }

    /// Decodes a full outer IPv4 + UDP + VXLAN packet.
    /// - Parameters:
    ///   - packet: the IPv4 packet; bytes past its total length are ignored.
    ///   - udpDestinationPort: the VXLAN port to accept; default 4789.
    ///   - verifyUDPChecksum: a non-zero UDP checksum is verified when true (zero is always accepted).
    /// - Returns: the headers, VNI and inner frame position, or an IPv4 reason, `.outerNotUDP`,
    ///   `.outerFragment`, a UDP reason, `.udpWrongPort`, a VXLAN reason, or `.truncatedInnerEthernet`.
    @inlinable
    public static func vxlanIPv4(
        _ packet: RawSpan, udpDestinationPort: UInt16 = VXLANHeader.udpPort, verifyUDPChecksum: Bool = true
    ) -> Result<VXLANIPv4Decapsulation, PacketDropReason> {
        let ip: IPv4Header
        switch IPv4Header.parse(packet) {
        case .success(let h): ip = h
        case .failure(let reason): return .failure(reason)
        }
        guard ip.protocol == .udp else { return .failure(.outerNotUDP) }
        guard !ip.isFragment else { return .failure(.outerFragment) }
        let ipPayload = packet.extracting(ip.headerLength..<Int(ip.totalLength))
        let udp: UDPHeader
        switch UDPHeader.parse(ipPayload) {
        case .success(let h): udp = h
        case .failure(let reason): return .failure(reason)
        }
        guard udp.destinationPort == udpDestinationPort else { return .failure(.udpWrongPort) }
        let segment = ipPayload.extracting(0..<Int(udp.length))
        if verifyUDPChecksum,
            let reason = UDPHeader.verifyChecksum(segment: segment, source: ip.source, destination: ip.destination)
        {
            return .failure(reason)
        }
        let vxlan: VXLANDecapsulation
        switch vxlanDatagram(segment.extracting(UDPHeader.size...)) {
        case .success(let v): vxlan = v
        case .failure(let reason): return .failure(reason)
        }
        let innerOffset = ip.headerLength + UDPHeader.size + vxlan.innerOffset
        return .success(
            VXLANIPv4Decapsulation(
                ipv4: ip, udp: udp, vni: vxlan.vni, innerOffset: innerOffset, innerLength: vxlan.innerLength))
    }
}
