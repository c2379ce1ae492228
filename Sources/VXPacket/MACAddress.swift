/// A 48-bit IEEE 802 MAC address, held in the low 48 bits of a `UInt64` in network (big-endian) octet order:
/// the first octet on the wire is bits 40...47, so `raw` compares and hashes like the address itself and packs
/// straight into a forwarding-table key.
public struct MACAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address in the low 48 bits; the high 16 bits are always zero.
    public let raw: UInt64

    public static let broadcast = MACAddress(raw: 0xFFFF_FFFF_FFFF)
    public static let zero = MACAddress(raw: 0)

    /// - Parameter raw: the address in the low 48 bits; higher bits are discarded.
    @inlinable
    public init(raw: UInt64) {
        self.raw = raw & 0xFFFF_FFFF_FFFF
    }

    /// - Parameter octets: exactly six octets in wire order.
    public init(_ o0: UInt8, _ o1: UInt8, _ o2: UInt8, _ o3: UInt8, _ o4: UInt8, _ o5: UInt8) {
        var value = UInt64(o0) << 40 | UInt64(o1) << 32 | UInt64(o2) << 24
        value |= UInt64(o3) << 16 | UInt64(o4) << 8 | UInt64(o5)
        self.raw = value
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators). Returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var value: UInt64 = 0
        for part in parts {
            guard part.count == 2, let octet = UInt8(part, radix: 16) else { return nil }
            value = value << 8 | UInt64(octet)
        }
        self.raw = value
    }

    /// The group bit (least significant bit of the first octet): broadcast and multicast destinations.
    @inlinable public var isMulticast: Bool { raw & 0x0100_0000_0000 != 0 }
    @inlinable public var isBroadcast: Bool { raw == 0xFFFF_FFFF_FFFF }
    @inlinable public var isZero: Bool { raw == 0 }
    /// A unicast address that may be learned as a frame's source.
    @inlinable public var isLearnableSource: Bool { !isMulticast && !isZero }

    /// The octet at `index` (0 is the first octet on the wire).
    @inlinable public subscript(octet index: Int) -> UInt8 {
        precondition(index >= 0 && index < 6, "MAC octet index out of range")
        return UInt8(truncatingIfNeeded: raw >> UInt64(40 - 8 * index))
    }

    public var description: String {
        let hex = (0..<6).map { i -> String in
            let s = String(self[octet: i], radix: 16)
            return s.count == 1 ? "0" + s : s
        }
        return hex.joined(separator: ":")
    }

    public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.raw < rhs.raw }
}
