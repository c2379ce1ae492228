// Tunnel encapsulation: build each tunnel's outer header once, patch only the per-packet fields.
//
// Flow: the dataplane reads an inner frame into a buffer with headroom, picks the destination tunnel, then calls
// `EncapTemplate.write(into:at:innerLength:flowHash:)` to place the outer header just before the frame, and sends
// header + frame through a raw socket that takes the IP header from us (IPv4 IP_HDRINCL, or IPv6 IPPROTO_RAW;
// there is no outer Ethernet header). That is GRE's path; VXLAN normally leaves through UDP sender sockets with
// GSO, where the kernel builds IPv4 + UDP and the worker writes only the VXLAN header (docs/offload.md), and takes
// this path only when no UDP sender exists. Per packet this writes the precomputed bytes with a few 8-byte stores
// and patches the IPv4 total length and header checksum, and for VXLAN the UDP source port and length (OVS
// `netdev_tnl_push_udp_header`, VPP `vnet_rewrite_two_headers`). The UDP checksum stays zero (RFC 7348 §5 allows
// it over IPv4).
//
// Over an IPv6 underlay VXLAN leaves through UDP sockets only: the kernel builds IPv6 + UDP (and the UDP checksum,
// which IPv6 requires), the worker writes the VXLAN header from the template's VNI, and `write` is never called (it
// traps). GRE over IPv6 (RFC 7676) takes this path like GRE over IPv4: `write` writes the IPv6 header and GRE, and a
// raw IPv6 IPPROTO_RAW socket (header included, like IP_HDRINCL) sends them. Per packet it patches the payload
// length and the flow label, which carries the inner flow's hash (RFC 6438): GRE has no UDP source port, and the
// label is what an IPv6 underlay's ECMP hashes on besides the addresses.
//
// Locking: a template is an immutable value; the control plane builds a new one when a tunnel changes and
// workers read whichever copy they hold.

/// The outer encapsulation of a tunnel.
public enum TunnelEncapsulation: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// IPv4 or IPv6 + UDP + VXLAN (RFC 7348).
    case vxlan
    /// IPv4 or IPv6 + GRE (+ key) carrying Ethernet (RFC 2784/2890/7676, protocol 0x6558).
    case gre

    public var description: String { self == .vxlan ? "vxlan" : "gre" }
}

/// The precomputed outer header of one tunnel (local IP, remote IP, VNI, encapsulation, GRE key layout, UDP port).
///
/// The outer IPv4 header has TTL 64, DF clear, ID 0, no options: with DF clear and ID 0 the underlay may still
/// fragment, which RFC 6864 §4.1 allows for non-atomic datagrams only when IDs are unique; we leave fragmentation
/// to the MTU configuration (inner MTU = underlay MTU - `headerLength`), so outer packets are never fragmented in
/// practice.
public struct EncapTemplate: Hashable, Sendable {
    /// Outer IPv4 + UDP + VXLAN, in bytes.
    public static let vxlanIPv4Size = 36
    /// Outer IPv4 + GRE with key, in bytes.
    public static let greKeyedIPv4Size = 28
    /// Outer IPv4 + GRE without key, in bytes.
    public static let greIPv4Size = 24
    /// Outer IPv6 + UDP + VXLAN, in bytes (what the kernel and the worker put on the wire for an IPv6 peer).
    public static let vxlanIPv6Size = 56
    /// Outer IPv6 + GRE with key, in bytes.
    public static let greKeyedIPv6Size = 48
    /// Outer IPv6 + GRE without key, in bytes.
    public static let greIPv6Size = 44
    /// Outer TTL.
    public static let timeToLive: UInt8 = 64
    /// First UDP source port of the dynamic range (RFC 7348 §5 recommends it for the entropy port).
    public static let sourcePortBase: UInt16 = 49152

    /// The tunnel's encapsulation.
    public let encapsulation: TunnelEncapsulation
    /// Outer source address.
    public let local: UnderlayAddress
    /// Outer destination address (the same family as `local`).
    public let remote: UnderlayAddress
    /// The VNI carried (in the VXLAN header, or in the GRE key by `greKeyLayout`).
    public let vni: VNI
    /// How the VNI is put in the GRE key; ignored for VXLAN.
    public let greKeyLayout: GREKeyLayout
    /// UDP destination port; ignored for GRE.
    public let udpDestinationPort: UInt16
    /// Bytes of outer headers before the inner frame, all of them written by `write`: 36, 28 or 24 over IPv4, 48
    /// or 44 for GRE over IPv6; 56 for VXLAN over IPv6, which the kernel writes.
    public let headerLength: Int

    // The header as it appears on the wire, as six little-endian words: storing each with `.littleEndian`
    // reproduces the byte sequence on any host. Words past `headerLength` are zero and never written.
    @usableFromInline let word0: UInt64
    @usableFromInline let word1: UInt64
    @usableFromInline let word2: UInt64
    @usableFromInline let word3: UInt64
    @usableFromInline let word4: UInt64
    @usableFromInline let word5: UInt64
    /// Folded one's-complement sum of the outer IPv4 header with total length and checksum zero; per packet only
    /// the total length is added, so the checksum costs two adds and a complement.
    @usableFromInline let checksumBase: UInt16

    /// Builds the template. Not for the hot path (it allocates once).
    /// - Parameters:
    ///   - encapsulation: VXLAN or GRE.
    ///   - local: outer source address.
    ///   - remote: outer destination address, of `local`'s family (traps otherwise).
    ///   - vni: the tunnel's VNI.
    ///   - greKeyLayout: key layout for GRE; default `.vni`.
    ///   - udpDestinationPort: VXLAN UDP port; default 4789.
    public init(
        encapsulation: TunnelEncapsulation, local: UnderlayAddress, remote: UnderlayAddress, vni: VNI,
        greKeyLayout: GREKeyLayout = .vni, udpDestinationPort: UInt16 = VXLANHeader.udpPort
    ) {
        precondition(local.isIPv4 == remote.isIPv4, "EncapTemplate: local and remote of different families")
        self.encapsulation = encapsulation
        self.local = local
        self.remote = remote
        self.vni = vni
        self.greKeyLayout = greKeyLayout
        self.udpDestinationPort = udpDestinationPort
        let gre = GREHeader(key: greKeyLayout.key(for: vni))
        var storage = [UInt8](repeating: 0, count: 48)
        var span = storage.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        switch (encapsulation, local.ipv4, remote.ipv4) {
        case (_, let source?, let destination?):
            let ip = IPv4Header(
                totalLength: 0, timeToLive: EncapTemplate.timeToLive, protocol: encapsulation == .vxlan ? .udp : .gre,
                source: source, destination: destination)
            ip.write(into: &bytes)
            switch encapsulation {
            case .vxlan:
                headerLength = EncapTemplate.vxlanIPv4Size
                UDPHeader(sourcePort: 0, destinationPort: udpDestinationPort, length: 0).write(into: &bytes, at: 20)
                VXLANHeader(vni: vni).write(into: &bytes, at: 28)
            case .gre:
                headerLength = IPv4Header.minimumSize + gre.length
                gre.write(into: &bytes, at: 20)
            }
        case (.vxlan, _, _):
            headerLength = EncapTemplate.vxlanIPv6Size
        case (.gre, _, _):
            headerLength = IPv6Header.size + gre.length
            let ip = IPv6Header(
                payloadLength: 0, nextHeader: .gre, hopLimit: EncapTemplate.timeToLive,
                source: local.ipv6, destination: remote.ipv6)
            ip.write(into: &bytes)
            gre.write(into: &bytes, at: IPv6Header.size)
        }
        let view = bytes.bytes
        checksumBase = local.isIPv4 ? InternetChecksum.sum(view.extracting(0..<IPv4Header.minimumSize)) : 0
        word0 = view.vxLE64(0)
        word1 = view.vxLE64(8)
        word2 = view.vxLE64(16)
        word3 = view.vxLE64(24)
        word4 = view.vxLE64(32)
        word5 = view.vxLE64(40)
    }

    /// The UDP source port for a flow hash: 49152 + hash % 16384 (RFC 7348 §5).
    @inlinable
    public static func udpSourcePort(flowHash: UInt32) -> UInt16 {
        sourcePortBase | UInt16(truncatingIfNeeded: flowHash & 0x3FFF)
    }

    /// Writes the outer header for one packet.
    /// - Parameters:
    ///   - bytes: destination; must hold `headerLength` bytes from `offset` (traps otherwise: a caller bug).
    ///     The template must not be VXLAN over IPv6 (traps otherwise: those peers are reached through UDP sockets).
    ///   - offset: where the outer header starts; the inner frame follows at `offset + headerLength`.
    ///   - innerLength: the inner Ethernet frame's length; `headerLength + innerLength` must fit in 65535.
    ///   - flowHash: the inner frame's `FlowHash`; picks the VXLAN UDP source port, or the IPv6 flow label.
    /// - Returns: bytes written (`headerLength`).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0, innerLength: Int, flowHash: UInt32) -> Int {
        let totalLength = headerLength &+ innerLength
        precondition(innerLength >= 0 && totalLength <= 0xFFFF, "EncapTemplate: inner frame too long")
        precondition(offset >= 0 && bytes.byteCount &- offset >= headerLength, "EncapTemplate: destination too short")
        if headerLength > EncapTemplate.vxlanIPv4Size {
            return writeIPv6(into: &bytes, at: offset, innerLength: innerLength, flowHash: flowHash)
        }
        let total16 = UInt16(truncatingIfNeeded: totalLength)
        let checksum = ~InternetChecksum.combine(checksumBase, total16)
        // Safe: the precondition above proves [offset, offset + headerLength) is inside `bytes`, and every store
        // below ends at or before offset + headerLength (24, 28 or 36).
        unsafe bytes.storeBytes(of: word0.littleEndian, toUncheckedByteOffset: offset, as: UInt64.self)
        unsafe bytes.storeBytes(of: word1.littleEndian, toUncheckedByteOffset: offset + 8, as: UInt64.self)
        unsafe bytes.storeBytes(of: word2.littleEndian, toUncheckedByteOffset: offset + 16, as: UInt64.self)
        unsafe bytes.storeBytes(of: total16.bigEndian, toUncheckedByteOffset: offset + 2, as: UInt16.self)
        unsafe bytes.storeBytes(of: checksum.bigEndian, toUncheckedByteOffset: offset + 10, as: UInt16.self)
        switch headerLength {
        case EncapTemplate.vxlanIPv4Size:
            unsafe bytes.storeBytes(of: word3.littleEndian, toUncheckedByteOffset: offset + 24, as: UInt64.self)
            unsafe bytes.storeBytes(
                of: UInt32(truncatingIfNeeded: word4).littleEndian, toUncheckedByteOffset: offset + 32,
                as: UInt32.self)
            let sourcePort = EncapTemplate.udpSourcePort(flowHash: flowHash)
            unsafe bytes.storeBytes(of: sourcePort.bigEndian, toUncheckedByteOffset: offset + 20, as: UInt16.self)
            let udpLength = total16 &- UInt16(IPv4Header.minimumSize)
            unsafe bytes.storeBytes(of: udpLength.bigEndian, toUncheckedByteOffset: offset + 24, as: UInt16.self)
        case EncapTemplate.greKeyedIPv4Size:
            unsafe bytes.storeBytes(
                of: UInt32(truncatingIfNeeded: word3).littleEndian, toUncheckedByteOffset: offset + 24,
                as: UInt32.self)
        default:
            break
        }
        return headerLength
    }

    /// `write` over an IPv6 underlay: IPv6 + GRE, with the payload length and the flow label patched (IPv6 has no
    /// header checksum).
    @inlinable
    func writeIPv6(into bytes: inout MutableRawSpan, at offset: Int, innerLength: Int, flowHash: UInt32) -> Int {
        precondition(encapsulation == .gre, "EncapTemplate: no outer header to write for VXLAN over IPv6")
        // Safe: `write`'s precondition proves [offset, offset + headerLength) is inside `bytes`, and every store
        // below ends at or before offset + headerLength (48 or 44).
        unsafe bytes.storeBytes(of: word0.littleEndian, toUncheckedByteOffset: offset, as: UInt64.self)
        unsafe bytes.storeBytes(of: word1.littleEndian, toUncheckedByteOffset: offset + 8, as: UInt64.self)
        unsafe bytes.storeBytes(of: word2.littleEndian, toUncheckedByteOffset: offset + 16, as: UInt64.self)
        unsafe bytes.storeBytes(of: word3.littleEndian, toUncheckedByteOffset: offset + 24, as: UInt64.self)
        unsafe bytes.storeBytes(of: word4.littleEndian, toUncheckedByteOffset: offset + 32, as: UInt64.self)
        if headerLength == EncapTemplate.greKeyedIPv6Size {
            unsafe bytes.storeBytes(of: word5.littleEndian, toUncheckedByteOffset: offset + 40, as: UInt64.self)
        } else {
            unsafe bytes.storeBytes(
                of: UInt32(truncatingIfNeeded: word5).littleEndian, toUncheckedByteOffset: offset + 40,
                as: UInt32.self)
        }
        // Over the template's first word: version 6, traffic class 0 and the flow's label, then the payload length.
        let versionAndLabel = 6 << 28 | flowHash & 0xF_FFFF
        unsafe bytes.storeBytes(of: versionAndLabel.bigEndian, toUncheckedByteOffset: offset, as: UInt32.self)
        let payloadLength = UInt16(truncatingIfNeeded: headerLength &- IPv6Header.size &+ innerLength)
        unsafe bytes.storeBytes(of: payloadLength.bigEndian, toUncheckedByteOffset: offset + 4, as: UInt16.self)
        return headerLength
    }
}
