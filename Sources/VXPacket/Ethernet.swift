/// An EtherType (IEEE 802.3 type field), held in host order.
public struct EtherType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The type in host order.
    public var rawValue: UInt16

    /// - Parameter rawValue: the type in host order.
    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let ipv4 = EtherType(rawValue: 0x0800)
    public static let arp = EtherType(rawValue: 0x0806)
    /// IEEE 802.1Q customer VLAN tag (TPID).
    public static let vlan = EtherType(rawValue: 0x8100)
    public static let ipv6 = EtherType(rawValue: 0x86DD)
    /// Transparent Ethernet bridging: the GRE protocol type for an Ethernet payload (RFC 1701).
    public static let transparentEthernetBridging = EtherType(rawValue: 0x6558)

    public var description: String {
        let hex = String(rawValue, radix: 16)
        return "0x" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

/// The 802.1Q tag control information: priority (PCP), drop eligible (DEI) and VLAN id.
public struct VLANTag: Hashable, Sendable {
    /// Priority code point, 0 ... 7.
    public var priority: UInt8
    /// Drop eligible indicator.
    public var dropEligible: Bool
    /// VLAN identifier, 0 ... 4095.
    public var id: UInt16

    /// - Parameters:
    ///   - id: VLAN identifier; bits above 12 are discarded.
    ///   - priority: priority code point; bits above 3 are discarded.
    ///   - dropEligible: the DEI bit.
    @inlinable
    public init(id: UInt16, priority: UInt8 = 0, dropEligible: Bool = false) {
        self.id = id & 0x0FFF
        self.priority = priority & 0x7
        self.dropEligible = dropEligible
    }

    /// - Parameter tci: the 16-bit tag control information in host order.
    @inlinable
    public init(tci: UInt16) {
        self.init(id: tci, priority: UInt8(truncatingIfNeeded: tci >> 13), dropEligible: tci & 0x1000 != 0)
    }

    /// The 16-bit tag control information in host order.
    @inlinable
    public var tci: UInt16 {
        UInt16(priority) << 13 | (dropEligible ? 0x1000 : 0) | id
    }
}

/// Ethernet II header with an optional single 802.1Q tag (IEEE 802.3, IEEE 802.1Q §9).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination MAC (48)                       |
/// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                               |                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
/// |                       Source MAC (48)                         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  TPID 0x8100 (if tagged)      | PCP |D|   VLAN ID (12)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          EtherType            |   payload ...
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Only one 0x8100 tag is recognised; an 802.1ad outer tag (0x88A8) is reported as the EtherType, so QinQ
/// frames are switched as opaque payload rather than misparsed.
public struct EthernetHeader: Hashable, Sendable {
    /// Untagged header size in bytes.
    public static let size = 14
    /// Size of one 802.1Q tag in bytes.
    public static let vlanTagSize = 4
    /// Tagged header size in bytes.
    public static let taggedSize = 18

    /// Destination MAC.
    public var destination: MACAddress
    /// Source MAC.
    public var source: MACAddress
    /// The 802.1Q tag, or nil for an untagged frame.
    public var vlan: VLANTag?
    /// The EtherType after the tag, if any.
    public var etherType: EtherType

    /// - Parameters:
    ///   - destination: destination MAC.
    ///   - source: source MAC.
    ///   - vlan: an 802.1Q tag, or nil.
    ///   - etherType: the payload's EtherType.
    @inlinable
    public init(destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil, etherType: EtherType) {
        self.destination = destination
        self.source = source
        self.vlan = vlan
        self.etherType = etherType
    }

    /// The header length, which is also the offset of the payload: 14, or 18 when tagged.
    @inlinable
    public var length: Int { vlan == nil ? EthernetHeader.size : EthernetHeader.taggedSize }

    /// Decodes the header at the start of `bytes`.
    /// - Parameter bytes: a frame, starting at the destination MAC.
    /// - Returns: the header, or `.truncatedEthernet` / `.truncatedVLANTag`.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<EthernetHeader, PacketDropReason> {
        guard bytes.byteCount >= size else { return .failure(.truncatedEthernet) }
        let destination = bytes.vxMAC(0)
        let source = bytes.vxMAC(6)
        let type = bytes.vxBE16(12)
        guard type == EtherType.vlan.rawValue else {
            return .success(EthernetHeader(destination: destination, source: source, etherType: EtherType(rawValue: type)))
        }
        guard bytes.byteCount >= taggedSize else { return .failure(.truncatedVLANTag) }
        return .success(
            EthernetHeader(
                destination: destination, source: source, vlan: VLANTag(tci: bytes.vxBE16(14)),
                etherType: EtherType(rawValue: bytes.vxBE16(16))))
    }

    /// Reads only the destination MAC; for the forwarding decision when nothing else is needed.
    /// - Returns: nil when `bytes` is shorter than an Ethernet header.
    @inlinable
    public static func destination(of bytes: RawSpan) -> MACAddress? {
        bytes.byteCount >= size ? bytes.vxMAC(0) : nil
    }

    /// Encodes the header at `offset`.
    /// - Parameters:
    ///   - bytes: destination; must hold `length` bytes from `offset` (traps otherwise).
    ///   - offset: where the destination MAC goes.
    /// - Returns: bytes written (`length`).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreMAC(destination, at: offset)
        bytes.vxStoreMAC(source, at: offset + 6)
        if let vlan {
            bytes.vxStoreBE16(EtherType.vlan.rawValue, at: offset + 12)
            bytes.vxStoreBE16(vlan.tci, at: offset + 14)
            bytes.vxStoreBE16(etherType.rawValue, at: offset + 16)
        } else {
            bytes.vxStoreBE16(etherType.rawValue, at: offset + 12)
        }
        return length
    }
}
