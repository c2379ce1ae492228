import VXPacket

/// An IPv4 subnet: a network address and a prefix length (`10.0.0.0/24`).
public struct IPv4Subnet: Hashable, Sendable, CustomStringConvertible {
    /// The network address (host bits zero).
    public let network: IPv4Address
    /// The prefix length, 0 ... 32.
    public let prefixLength: Int

    /// - Parameters:
    ///   - address: any address in the subnet; host bits are cleared (`10.0.0.1/24` is `10.0.0.0/24`).
    ///   - prefixLength: 0 ... 32.
    /// - Returns: nil when `prefixLength` is out of range.
    public init?(_ address: IPv4Address, prefixLength: Int) {
        guard (0...32).contains(prefixLength) else { return nil }
        self.prefixLength = prefixLength
        self.network = IPv4Address(value: address.value & IPv4Subnet.maskValue(prefixLength))
    }

    /// Parses `a.b.c.d/n`; host bits are cleared. Returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]), parts[1].count <= 2,
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(parts[1])
        else { return nil }
        self.init(address, prefixLength: length)
    }

    private static func maskValue(_ prefixLength: Int) -> UInt32 {
        prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength)
    }

    /// The subnet mask (`255.255.255.0` for /24).
    public var mask: IPv4Address { IPv4Address(value: IPv4Subnet.maskValue(prefixLength)) }

    /// The directed broadcast address (all host bits set).
    public var broadcast: IPv4Address { IPv4Address(value: network.value | ~IPv4Subnet.maskValue(prefixLength)) }

    /// True when `address` is in the subnet (network and broadcast addresses included).
    public func contains(_ address: IPv4Address) -> Bool {
        address.value & IPv4Subnet.maskValue(prefixLength) == network.value
    }

    /// True when `address` is in the subnet and is neither its network nor its broadcast address.
    public func containsHost(_ address: IPv4Address) -> Bool {
        contains(address) && address != network && address != broadcast
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
