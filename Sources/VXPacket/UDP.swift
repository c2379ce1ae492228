/// UDP header (RFC 768).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            Length             |           Checksum            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 768: the checksum covers a pseudo-header, the UDP header and the data; a transmitted checksum of zero
/// means "none" over IPv4, so a computed zero is sent as `0xFFFF`. RFC 8200 §8.1: over IPv6 the checksum is
/// mandatory and a zero checksum MUST be discarded. (RFC 6935's tunnel exception is not needed: our underlay is
/// IPv4.)
public struct UDPHeader: Hashable, Sendable {
    /// Header size in bytes.
    public static let size = 8
    /// Where the checksum field is, from the start of the header.
    public static let checksumOffset = 6

    /// Source port.
    public var sourcePort: UInt16
    /// Destination port.
    public var destinationPort: UInt16
    /// Length in bytes of header plus data.
    public var length: UInt16
    /// Checksum as on the wire (host order); zero means none (IPv4 only).
    public var checksum: UInt16

    /// Builds a header value.
    @inlinable
    public init(sourcePort: UInt16, destinationPort: UInt16, length: UInt16, checksum: UInt16 = 0) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.checksum = checksum
    }

    /// Decodes the header at the start of `bytes`.
    /// - Parameters:
    ///   - bytes: the IP payload from the UDP header on; may extend past the datagram.
    ///   - checkLength: false for the first fragment of a fragmented datagram, whose length field covers data
    ///     in later fragments.
    /// - Returns: the header, `.truncatedUDP`, or `.udpBadLength` when the length field is below 8 or runs past
    ///   `bytes`.
    @inlinable
    public static func parse(_ bytes: RawSpan, checkLength: Bool = true) -> Result<UDPHeader, PacketDropReason> {
        guard bytes.byteCount >= size else { return .failure(.truncatedUDP) }
        let length = bytes.vxBE16(4)
        guard !checkLength || (Int(length) >= size && Int(length) <= bytes.byteCount) else {
            return .failure(.udpBadLength)
        }
        return .success(
            UDPHeader(
                sourcePort: bytes.vxBE16(0), destinationPort: bytes.vxBE16(2), length: length,
                checksum: bytes.vxBE16(6)))
    }

    /// Encodes the header at `offset`, checksum field as stored.
    /// - Parameters:
    ///   - bytes: destination; must hold 8 bytes from `offset` (traps otherwise).
    ///   - offset: where the source port goes.
    /// - Returns: bytes written (8).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreBE16(sourcePort, at: offset)
        bytes.vxStoreBE16(destinationPort, at: offset + 2)
        bytes.vxStoreBE16(length, at: offset + 4)
        bytes.vxStoreBE16(checksum, at: offset + 6)
        return UDPHeader.size
    }

    /// The checksum to transmit for `segment` (header + data, exactly `length` bytes), whatever its checksum
    /// field holds now.
    /// - Parameter pseudoHeaderSum: from `InternetChecksum.pseudoHeaderSum` for IPv4 or IPv6.
    /// - Returns: the checksum, never zero (a computed zero is sent as `0xFFFF`, RFC 768).
    @inlinable
    public static func computeChecksum(segment: RawSpan, pseudoHeaderSum: UInt16) -> UInt16 {
        let value = TransportChecksum.compute(segment: segment, pseudoHeaderSum: pseudoHeaderSum, fieldOffset: 6)
        return value == 0 ? 0xFFFF : value
    }

    /// Verifies a UDP-over-IPv4 segment's checksum; a zero checksum is accepted (RFC 768).
    /// - Parameters:
    ///   - segment: header + data, exactly the UDP length.
    ///   - source: IPv4 source address.
    ///   - destination: IPv4 destination address.
    /// - Returns: nil when acceptable, else `.truncatedUDP` or `.udpBadChecksum`.
    @inlinable
    public static func verifyChecksum(
        segment: RawSpan, source: IPv4Address, destination: IPv4Address
    ) -> PacketDropReason? {
        guard segment.byteCount >= size else { return .truncatedUDP }
        guard segment.vxBE16(6) != 0 else { return nil }
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: .udp, length: segment.byteCount)
        return TransportChecksum.verify(segment: segment, pseudoHeaderSum: pseudo) ? nil : .udpBadChecksum
    }

    /// Verifies a UDP-over-IPv6 segment's checksum; a zero checksum is rejected (RFC 8200 §8.1).
    /// - Returns: nil when valid, else `.truncatedUDP`, `.udpZeroChecksumIPv6` or `.udpBadChecksum`.
    @inlinable
    public static func verifyChecksum(
        segment: RawSpan, source: IPv6Address, destination: IPv6Address
    ) -> PacketDropReason? {
        guard segment.byteCount >= size else { return .truncatedUDP }
        guard segment.vxBE16(6) != 0 else { return .udpZeroChecksumIPv6 }
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: .udp, length: segment.byteCount)
        return TransportChecksum.verify(segment: segment, pseudoHeaderSum: pseudo) ? nil : .udpBadChecksum
    }
}

/// Shared pseudo-header checksum arithmetic for UDP and TCP.
@usableFromInline
enum TransportChecksum {
    /// Computes the checksum as if the field at `fieldOffset` were zero, without writing to `segment`:
    /// subtracting the field in one's complement is adding its complement.
    @inlinable
    static func compute(segment: RawSpan, pseudoHeaderSum: UInt16, fieldOffset: Int) -> UInt16 {
        var total = InternetChecksum.combine(pseudoHeaderSum, InternetChecksum.sum(segment))
        total = InternetChecksum.combine(total, ~segment.vxBE16(fieldOffset))
        return ~total
    }

    @inlinable
    static func verify(segment: RawSpan, pseudoHeaderSum: UInt16) -> Bool {
        InternetChecksum.combine(pseudoHeaderSum, InternetChecksum.sum(segment)) == 0xFFFF
    }
}
