/// A 128-bit IPv6 address as two host-order halves: `high` holds the first eight octets on the wire.
public struct IPv6Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Octets 0 ... 7 in host order.
    public var high: UInt64
    /// Octets 8 ... 15 in host order.
    public var low: UInt64

    /// - Parameters:
    ///   - high: octets 0 ... 7 as a host-order integer.
    ///   - low: octets 8 ... 15 as a host-order integer.
    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The address as eight 16-bit groups, for tests and printing.
    public init(_ g0: UInt16, _ g1: UInt16, _ g2: UInt16, _ g3: UInt16, _ g4: UInt16, _ g5: UInt16, _ g6: UInt16, _ g7: UInt16) {
        high = UInt64(g0) << 48 | UInt64(g1) << 32 | UInt64(g2) << 16 | UInt64(g3)
        low = UInt64(g4) << 48 | UInt64(g5) << 32 | UInt64(g6) << 16 | UInt64(g7)
    }

    /// RFC 5952 text: lower-case hex, the longest run (of two or more) of zero groups shortened to `::`.
    public var description: String {
        let groups = (0..<8).map { i -> UInt16 in
            let half = i < 4 ? high : low
            return UInt16(truncatingIfNeeded: half >> UInt64(48 - 16 * (i % 4)))
        }
        var bestStart = -1
        var bestLength = 1
        var i = 0
        while i < 8 {
            guard groups[i] == 0 else {
                i += 1
                continue
            }
            var j = i
            while j < 8 && groups[j] == 0 { j += 1 }
            if j - i > bestLength {
                bestStart = i
                bestLength = j - i
            }
            i = j
        }
        func text(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        guard bestStart >= 0 else { return text(0..<8) }
        return text(0..<bestStart) + "::" + text((bestStart + bestLength)..<8)
    }

    public static func < (lhs: IPv6Address, rhs: IPv6Address) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

extension RawSpan {
    @inlinable @inline(__always)
    func vxIPv6(_ offset: Int) -> IPv6Address {
        IPv6Address(
            high: UInt64(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self)),
            low: UInt64(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)))
    }
}

/// IPv6 fixed header (RFC 8200 §3).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Traffic Class |           Flow Label                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Payload Length        |  Next Header  |   Hop Limit   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Source Address (128)                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  Destination Address (128)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Extension headers (RFC 8200 §4) are chained by Next Header. Hop-by-Hop (0), Routing (43) and Destination
/// Options (60) give their length in 8-octet units not counting the first 8; Fragment (44) is always 8 octets;
/// AH (51, RFC 4302 §2.2) gives its length in 4-octet units minus 2. Only the fragment with offset 0 carries
/// the upper-layer header (RFC 8200 §4.5).
public struct IPv6Header: Hashable, Sendable {
    /// Fixed header size in bytes.
    public static let size = 40
    /// Extension headers walked before giving up: bounds the work a crafted chain can cause. Eight covers every
    /// header type RFC 8200 §4.1 lists, each once, plus a second Destination Options.
    public static let maximumExtensionHeaders = 8

    /// Traffic class (DSCP and ECN).
    public var trafficClass: UInt8
    /// Flow label, 20 bits.
    public var flowLabel: UInt32
    /// Payload length in bytes (everything after the fixed header).
    public var payloadLength: UInt16
    /// Next header: the first extension header or the upper-layer protocol.
    public var nextHeader: IPProtocol
    /// Hop limit.
    public var hopLimit: UInt8
    /// Source address.
    public var source: IPv6Address
    /// Destination address.
    public var destination: IPv6Address

    /// Builds a header value.
    @inlinable
    public init(
        trafficClass: UInt8 = 0, flowLabel: UInt32 = 0, payloadLength: UInt16, nextHeader: IPProtocol,
        hopLimit: UInt8 = 64, source: IPv6Address, destination: IPv6Address
    ) {
        self.trafficClass = trafficClass
        self.flowLabel = flowLabel & 0xF_FFFF
        self.payloadLength = payloadLength
        self.nextHeader = nextHeader
        self.hopLimit = hopLimit
        self.source = source
        self.destination = destination
    }

    /// Decodes the fixed header at the start of `bytes`.
    /// - Parameter bytes: starts at the version nibble; may extend past the packet.
    /// - Returns: the header, `.truncatedIPv6`, `.ipv6BadVersion`, or `.ipv6BadPayloadLength` when the payload
    ///   length runs past `bytes`.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<IPv6Header, PacketDropReason> {
        guard bytes.byteCount >= size else { return .failure(.truncatedIPv6) }
        let first = bytes.vxBE32(0)
        guard first >> 28 == 6 else { return .failure(.ipv6BadVersion) }
        let payloadLength = bytes.vxBE16(4)
        guard size + Int(payloadLength) <= bytes.byteCount else { return .failure(.ipv6BadPayloadLength) }
        return .success(
            IPv6Header(
                trafficClass: UInt8(truncatingIfNeeded: first >> 20), flowLabel: first & 0xF_FFFF,
                payloadLength: payloadLength, nextHeader: IPProtocol(rawValue: bytes.vxU8(6)),
                hopLimit: bytes.vxU8(7), source: bytes.vxIPv6(8), destination: bytes.vxIPv6(24)))
    }

    /// Walks the extension-header chain of the IPv6 packet at the start of `packet` to the upper-layer header.
    /// - Parameter packet: a packet whose fixed header already passed `parse`.
    /// - Returns: where the upper-layer header is, or `.truncatedIPv6`, `.ipv6BadVersion`,
    ///   `.ipv6BadPayloadLength`, `.ipv6TruncatedExtensionHeader`, `.ipv6TooManyExtensionHeaders`.
    @inlinable
    public static func findTransport(in packet: RawSpan) -> Result<IPv6TransportLocation, PacketDropReason> {
        let header: IPv6Header
        switch parse(packet) {
        case .success(let h): header = h
        case .failure(let reason): return .failure(reason)
        }
        let end = size + Int(header.payloadLength)
        var next = header.nextHeader.rawValue
        var offset = size
        var location = IPv6TransportLocation(protocol: header.nextHeader, offset: size)
        var walked = 0
        while true {
            let length: Int
            switch next {
            case 0, 43, 60:
                guard offset + 2 <= end else { return .failure(.ipv6TruncatedExtensionHeader) }
                length = (Int(packet.vxU8(offset + 1)) + 1) * 8
            case 51:
                guard offset + 2 <= end else { return .failure(.ipv6TruncatedExtensionHeader) }
                length = (Int(packet.vxU8(offset + 1)) + 2) * 4
            case 44:
                guard offset + 8 <= end else { return .failure(.ipv6TruncatedExtensionHeader) }
                let field = packet.vxBE16(offset + 2)
                location.isFragment = true
                location.fragmentOffset = field >> 3
                location.moreFragments = field & 1 != 0
                length = 8
            default:
                location.protocol = IPProtocol(rawValue: next)
                location.offset = offset
                return .success(location)
            }
            guard offset + length <= end else { return .failure(.ipv6TruncatedExtensionHeader) }
            walked += 1
            guard walked <= maximumExtensionHeaders else { return .failure(.ipv6TooManyExtensionHeaders) }
            next = packet.vxU8(offset)
            offset += length
            if !location.hasTransportHeader {
                // A later fragment: what follows is the middle of the upper-layer data, not a header.
                location.protocol = IPProtocol(rawValue: next)
                location.offset = offset
                return .success(location)
            }
        }
    }

    /// Encodes the fixed header at `offset`.
    /// - Parameters:
    ///   - bytes: destination; must hold 40 bytes from `offset` (traps otherwise).
    ///   - offset: where the version nibble goes.
    /// - Returns: bytes written (40).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreBE32(6 << 28 | UInt32(trafficClass) << 20 | flowLabel & 0xF_FFFF, at: offset)
        bytes.vxStoreBE16(payloadLength, at: offset + 4)
        bytes.vxStoreU8(nextHeader.rawValue, at: offset + 6)
        bytes.vxStoreU8(hopLimit, at: offset + 7)
        bytes.storeBytes(of: source.high.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
        bytes.storeBytes(of: source.low.bigEndian, toByteOffset: offset + 16, as: UInt64.self)
        bytes.storeBytes(of: destination.high.bigEndian, toByteOffset: offset + 24, as: UInt64.self)
        bytes.storeBytes(of: destination.low.bigEndian, toByteOffset: offset + 32, as: UInt64.self)
        return IPv6Header.size
    }
}

/// Where the upper-layer header of an IPv6 packet sits, found by `IPv6Header.findTransport(in:)`.
public struct IPv6TransportLocation: Hashable, Sendable {
    /// The upper-layer protocol (the last Next Header in the chain).
    public var `protocol`: IPProtocol
    /// Offset of the upper-layer header from the start of the IPv6 header.
    public var offset: Int
    /// A Fragment header was present.
    public var isFragment: Bool = false
    /// Fragment offset in 8-octet units (0 unless `isFragment`).
    public var fragmentOffset: UInt16 = 0
    /// The M flag of the Fragment header.
    public var moreFragments: Bool = false

    /// - Parameters:
    ///   - protocol: upper-layer protocol.
    ///   - offset: offset of the upper-layer header.
    @inlinable
    public init(protocol proto: IPProtocol, offset: Int) {
        self.protocol = proto
        self.offset = offset
    }

    /// False for a non-first fragment: `offset` then points at upper-layer data, not a header.
    @inlinable public var hasTransportHeader: Bool { fragmentOffset == 0 }
}
