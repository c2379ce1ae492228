/// An IPv4 address held as a host-order `UInt32` (`192.0.2.1` is `0xC000_0201`); convert with `.bigEndian`
/// when writing it into a header or a `sockaddr_in`.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address in host byte order.
    public let value: UInt32

    public static let any = IPv4Address(value: 0)

    @inlinable
    public init(value: UInt32) {
        self.value = value
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        self.value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text (`198.51.100.7`). Returns nil for anything else, including leading zeros
    /// that some parsers read as octal.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part.count == 1 || part.first != "0", let octet = UInt8(part)
            else { return nil }
            value = value << 8 | UInt32(octet)
        }
        self.value = value
    }

    public var isMulticast: Bool { value >> 28 == 0xE }
    public var isUnspecified: Bool { value == 0 }
    /// 127.0.0.0/8: this host talking to itself, never another host's address.
    public var isLoopback: Bool { value >> 24 == 127 }
    /// An address one host can have: not 0.0.0.0, not multicast (224/4), not reserved or the limited broadcast
    /// (240/4). Says nothing of a subnet's own network and broadcast addresses, which depend on the prefix.
    public var isUnicast: Bool { value != 0 && value >> 28 < 0xE }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}
