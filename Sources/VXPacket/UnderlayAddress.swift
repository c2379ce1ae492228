// The address of a tunnel endpoint (a VTEP) on the underlay: IPv4 or IPv6.
//
// A switch has one underlay family, that of its `--local` address, and every peer must share it; but the
// dataplane, the engines and the control protocol carry peer addresses of either family through the same fields.
// One 128-bit value serves both: IPv4 is held in its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291
// §2.5.5.2), so equality, hashing and the per-frame peer lookup never branch on the family, and the family is a
// comparison of the top 96 bits.

/// An underlay (outer) address, IPv4 or IPv6.
public struct UnderlayAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Octets 0 ... 7 of the IPv6 (or IPv4-mapped) form, host order.
    public let high: UInt64
    /// Octets 8 ... 15 of the IPv6 (or IPv4-mapped) form, host order.
    public let low: UInt64

    /// The top 32 bits of `low` for an IPv4-mapped address (`high` is 0).
    @usableFromInline static let mappedMarker: UInt64 = 0x0000_FFFF_0000_0000

    /// 0.0.0.0: what engines report as the sender of a frame that did not come from the underlay (a TAP's).
    public static let any = UnderlayAddress(IPv4Address.any)

    @inlinable
    public init(_ address: IPv4Address) {
        high = 0
        low = UnderlayAddress.mappedMarker | UInt64(address.value)
    }

    /// An IPv6 address; an IPv4-mapped one (`::ffff:192.0.2.1`) is that IPv4 address.
    @inlinable
    public init(_ address: IPv6Address) {
        high = address.high
        low = address.low
    }

    /// An IPv4 address from its four octets, for tests and literals.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.init(IPv4Address(a, b, c, d))
    }

    /// Parses dotted-quad IPv4 (`192.0.2.1`) or IPv6 text (`2001:db8::1`, RFC 4291 §2.2). Returns nil for anything
    /// else, zone identifiers (`fe80::1%eth0`) and prefix lengths included.
    public init?(_ text: some StringProtocol) {
        if let v4 = IPv4Address(text) {
            self.init(v4)
        } else if let v6 = IPv6Address(text) {
            self.init(v6)
        } else {
            return nil
        }
    }

    /// The IPv4 address, when this is one.
    @inlinable
    public var ipv4: IPv4Address? {
        guard high == 0, low & 0xFFFF_FFFF_0000_0000 == UnderlayAddress.mappedMarker else { return nil }
        return IPv4Address(value: UInt32(truncatingIfNeeded: low))
    }

    /// True for an IPv4 address.
    @inlinable
    public var isIPv4: Bool { ipv4 != nil }

    /// The address as IPv6 (IPv4 in its mapped form).
    @inlinable
    public var ipv6: IPv6Address { IPv6Address(high: high, low: low) }

    /// An address a VTEP can have and send to: for IPv4 `IPv4Address.isUnicast`; for IPv6 not `::` and not
    /// multicast (ff00::/8). Link-local IPv6 (fe80::/10) is refused as well: it means something only with an
    /// interface, and peers and `--local` name none.
    public var isUnicast: Bool {
        if let v4 = ipv4 { return v4.isUnicast }
        let firstOctet = high >> 56
        let linkLocal = high >> 54 == 0x3FA  // fe80::/10
        return !(high == 0 && low == 0) && firstOctet != 0xFF && !linkLocal
    }

    /// 127.0.0.0/8 or ::1: this host talking to itself, never a peer.
    public var isLoopback: Bool { ipv4?.isLoopback ?? (high == 0 && low == 1) }

    /// The family's name as users see it: "IPv4" or "IPv6".
    public var familyName: String { isIPv4 ? "IPv4" : "IPv6" }

    /// Bytes of the outer IP header a tunnel packet to this family's peers carries: IPv4 20 (no options) or IPv6 40.
    public var ipHeaderLength: Int { isIPv4 ? IPv4Header.minimumSize : IPv6Header.size }

    /// Bytes of outer headers a VXLAN packet to this family's peers carries before the inner Ethernet frame:
    /// the IP header, plus UDP 8 and VXLAN 8.
    public var vxlanOverhead: Int { ipHeaderLength + UDPHeader.size + VXLANHeader.size }

    public var description: String { ipv4.map(\.description) ?? ipv6.description }

    /// IPv4 before IPv6, each in numeric order.
    public static func < (lhs: UnderlayAddress, rhs: UnderlayAddress) -> Bool {
        switch (lhs.ipv4, rhs.ipv4) {
        case (let a?, let b?): return a < b
        case (.some, nil): return true
        case (nil, .some): return false
        case (nil, nil): return lhs.ipv6 < rhs.ipv6
        }
    }
}

extension IPv6Address {
    /// Parses IPv6 text (RFC 4291 §2.2): eight groups of one to four hex digits, at most one `::` standing for
    /// one or more zero groups, and optionally a dotted-quad IPv4 address in place of the last two groups
    /// (`::ffff:192.0.2.1`). Returns nil for anything else, including zone identifiers and prefix lengths.
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        guard text.utf8.count >= 2, text.utf8.count <= 45 else { return nil }
        let halves = text.split(separator: "::", maxSplits: 2, omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return nil }
        // Each half is ":"-separated groups; the address's last field may be a dotted quad (two groups).
        func groups(_ half: Substring, endsAddress: Bool) -> [UInt16]? {
            if half.isEmpty { return [] }
            let fields = half.split(separator: ":", omittingEmptySubsequences: false)
            var result: [UInt16] = []
            for (position, field) in fields.enumerated() {
                if endsAddress, position == fields.count - 1, field.contains(".") {
                    guard let v4 = IPv4Address(field) else { return nil }
                    result.append(UInt16(truncatingIfNeeded: v4.value >> 16))
                    result.append(UInt16(truncatingIfNeeded: v4.value))
                } else {
                    guard !field.isEmpty, field.utf8.count <= 4, let value = UInt16(field, radix: 16),
                        field.utf8.allSatisfy({ IPv6Address.isHexDigit($0) })
                    else { return nil }
                    result.append(value)
                }
            }
            return result
        }
        var all: [UInt16]
        if halves.count == 2 {
            guard let head = groups(halves[0], endsAddress: false), let tail = groups(halves[1], endsAddress: true),
                head.count + tail.count <= 7  // "::" stands for at least one zero group
            else { return nil }
            all = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let only = groups(halves[0], endsAddress: true) else { return nil }
            all = only
        }
        guard all.count == 8 else { return nil }
        self.init(all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7])
    }

    private static func isHexDigit(_ character: UInt8) -> Bool {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"):
            return true
        default: return false
        }
    }
}
