/// An IP protocol / IPv6 next-header number (IANA "Assigned Internet Protocol Numbers").
public struct IPProtocol: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The protocol number.
    public var rawValue: UInt8

    /// - Parameter rawValue: the protocol number.
    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let ipv6HopByHop = IPProtocol(rawValue: 0)
    public static let icmp = IPProtocol(rawValue: 1)
    public static let tcp = IPProtocol(rawValue: 6)
    public static let udp = IPProtocol(rawValue: 17)
    public static let ipv6Routing = IPProtocol(rawValue: 43)
    public static let ipv6Fragment = IPProtocol(rawValue: 44)
    public static let gre = IPProtocol(rawValue: 47)
    public static let esp = IPProtocol(rawValue: 50)
    public static let ah = IPProtocol(rawValue: 51)
    public static let icmpv6 = IPProtocol(rawValue: 58)
    public static let ipv6NoNextHeader = IPProtocol(rawValue: 59)
    public static let ipv6DestinationOptions = IPProtocol(rawValue: 60)

    public var description: String { String(rawValue) }
}

/// IPv4 header (RFC 791 §3.1).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |Type of Service|          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |0|D|M|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Source Address                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination Address                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options (IHL > 5)          |    Padding    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 791: the checksum is the one's complement of the one's-complement sum of the header's 16-bit words
/// (options included); the fragment offset counts 8-byte units, and only the fragment with offset 0 carries the
/// transport header. RFC 1122 §3.2.1.1: a datagram whose version is not 4 MUST be silently discarded.
public struct IPv4Header: Hashable, Sendable {
    /// Header size without options, in bytes.
    public static let minimumSize = 20
    /// The largest header (IHL 15), in bytes.
    public static let maximumSize = 60

    /// Header length in bytes, 20 ... 60 (IHL × 4).
    public var headerLength: Int
    /// DSCP and ECN.
    public var typeOfService: UInt8
    /// Total length of the datagram in bytes, header included.
    public var totalLength: UInt16
    /// Identification.
    public var identification: UInt16
    /// DF: do not fragment.
    public var dontFragment: Bool
    /// MF: more fragments follow.
    public var moreFragments: Bool
    /// Fragment offset in 8-byte units.
    public var fragmentOffset: UInt16
    /// Time to live.
    public var timeToLive: UInt8
    /// The payload's protocol.
    public var `protocol`: IPProtocol
    /// Header checksum as on the wire (host order).
    public var headerChecksum: UInt16
    /// Source address.
    public var source: IPv4Address
    /// Destination address.
    public var destination: IPv4Address

    /// Builds a header value; `headerChecksum` is left for `write` + `updateChecksum` or set by the caller.
    @inlinable
    public init(
        headerLength: Int = IPv4Header.minimumSize, typeOfService: UInt8 = 0, totalLength: UInt16,
        identification: UInt16 = 0, dontFragment: Bool = false, moreFragments: Bool = false,
        fragmentOffset: UInt16 = 0, timeToLive: UInt8 = 64, protocol proto: IPProtocol, headerChecksum: UInt16 = 0,
        source: IPv4Address, destination: IPv4Address
    ) {
        self.headerLength = headerLength
        self.typeOfService = typeOfService
        self.totalLength = totalLength
        self.identification = identification
        self.dontFragment = dontFragment
        self.moreFragments = moreFragments
        self.fragmentOffset = fragmentOffset
        self.timeToLive = timeToLive
        self.protocol = proto
        self.headerChecksum = headerChecksum
        self.source = source
        self.destination = destination
    }

    /// True for any fragment of a fragmented datagram (MF set or offset non-zero).
    @inlinable public var isFragment: Bool { moreFragments || fragmentOffset != 0 }
    /// False for a non-first fragment, which carries no transport header.
    @inlinable public var hasTransportHeader: Bool { fragmentOffset == 0 }
    /// Offset of the payload from the start of the header: `headerLength`.
    @inlinable public var payloadOffset: Int { headerLength }
    /// Payload length in bytes according to the header.
    @inlinable public var payloadLength: Int { Int(totalLength) - headerLength }
    /// Bytes of options, 0 ... 40.
    @inlinable public var optionsLength: Int { headerLength - IPv4Header.minimumSize }

    /// Decodes and validates the header at the start of `bytes`.
    /// - Parameters:
    ///   - bytes: starts at the version/IHL byte and may extend past the datagram (Ethernet padding).
    ///   - verifyChecksum: false only where the kernel has already verified it.
    /// - Returns: the header, or why it was rejected: `.truncatedIPv4`, `.ipv4BadVersion`,
    ///   `.ipv4BadHeaderLength`, `.ipv4BadTotalLength` (shorter than the header or longer than `bytes`),
    ///   `.ipv4BadChecksum`.
    @inlinable
    public static func parse(_ bytes: RawSpan, verifyChecksum: Bool = true) -> Result<IPv4Header, PacketDropReason> {
        guard bytes.byteCount >= minimumSize else { return .failure(.truncatedIPv4) }
        let versionIHL = bytes.vxU8(0)
        guard versionIHL >> 4 == 4 else { return .failure(.ipv4BadVersion) }
        let headerLength = Int(versionIHL & 0x0F) &* 4
        guard headerLength >= minimumSize else { return .failure(.ipv4BadHeaderLength) }
        guard bytes.byteCount >= headerLength else { return .failure(.truncatedIPv4) }
        let totalLength = bytes.vxBE16(2)
        guard Int(totalLength) >= headerLength, Int(totalLength) <= bytes.byteCount else {
            return .failure(.ipv4BadTotalLength)
        }
        if verifyChecksum {
            guard InternetChecksum.sum(bytes.extracting(first: headerLength)) == 0xFFFF else {
                return .failure(.ipv4BadChecksum)
            }
        }
        let fragment = bytes.vxBE16(6)
        return .success(
            IPv4Header(
                headerLength: headerLength, typeOfService: bytes.vxU8(1), totalLength: totalLength,
                identification: bytes.vxBE16(4), dontFragment: fragment & 0x4000 != 0,
                moreFragments: fragment & 0x2000 != 0, fragmentOffset: fragment & 0x1FFF,
                timeToLive: bytes.vxU8(8), protocol: IPProtocol(rawValue: bytes.vxU8(9)),
                headerChecksum: bytes.vxBE16(10), source: IPv4Address(value: bytes.vxBE32(12)),
                destination: IPv4Address(value: bytes.vxBE32(16))))
    }

    /// Encodes the fixed 20 bytes at `offset` with IHL from `headerLength` and the checksum field as stored.
    /// Options, if any, are the caller's to place after them; then call `updateChecksum(in:at:)`.
    /// - Parameters:
    ///   - bytes: destination; must hold 20 bytes from `offset` (traps otherwise).
    ///   - offset: where the version/IHL byte goes.
    /// - Returns: bytes written (20).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreU8(0x40 | UInt8(truncatingIfNeeded: headerLength / 4) & 0x0F, at: offset)
        bytes.vxStoreU8(typeOfService, at: offset + 1)
        bytes.vxStoreBE16(totalLength, at: offset + 2)
        bytes.vxStoreBE16(identification, at: offset + 4)
        let flags: UInt16 = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0)
        bytes.vxStoreBE16(flags | fragmentOffset & 0x1FFF, at: offset + 6)
        bytes.vxStoreU8(timeToLive, at: offset + 8)
        bytes.vxStoreU8(self.protocol.rawValue, at: offset + 9)
        bytes.vxStoreBE16(headerChecksum, at: offset + 10)
        bytes.vxStoreBE32(source.value, at: offset + 12)
        bytes.vxStoreBE32(destination.value, at: offset + 16)
        return IPv4Header.minimumSize
    }

    /// Recomputes the header checksum of the IPv4 header at `offset` (over IHL × 4 bytes) and stores it.
    /// - Parameters:
    ///   - bytes: holds a complete header at `offset` (traps otherwise).
    ///   - offset: where the header starts.
    /// - Returns: the checksum stored (host order).
    @inlinable @discardableResult
    public static func updateChecksum(in bytes: inout MutableRawSpan, at offset: Int = 0) -> UInt16 {
        bytes.vxStoreBE16(0, at: offset + 10)
        let headerLength = Int(bytes.bytes.vxU8(offset) & 0x0F) * 4
        let checksum = InternetChecksum.checksum(bytes.bytes.extracting(offset..<offset + headerLength))
        bytes.vxStoreBE16(checksum, at: offset + 10)
        return checksum
    }
}
