/// TCP control bits (RFC 9293 §3.1, RFC 3168 for ECE/CWR), host order, low 9 bits of header word 6.
public struct TCPFlags: OptionSet, Hashable, Sendable {
    /// The flag bits.
    public var rawValue: UInt16

    /// - Parameter rawValue: flag bits; bits above 9 are meaningless.
    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let fin = TCPFlags(rawValue: 0x001)
    public static let syn = TCPFlags(rawValue: 0x002)
    public static let rst = TCPFlags(rawValue: 0x004)
    public static let psh = TCPFlags(rawValue: 0x008)
    public static let ack = TCPFlags(rawValue: 0x010)
    public static let urg = TCPFlags(rawValue: 0x020)
    public static let ece = TCPFlags(rawValue: 0x040)
    public static let cwr = TCPFlags(rawValue: 0x080)
    /// Formerly NS (RFC 3540, historic), now AE for AccECN.
    public static let ae = TCPFlags(rawValue: 0x100)
}

/// TCP header (RFC 9293 §3.1): the fields flow hashing and segmentation need.
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Source Port          |       Destination Port        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                        Sequence Number                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Acknowledgment Number                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Data |     |A|C|E|U|A|P|R|S|F|                               |
/// | Offset| Rsv |E|W|C|R|C|S|S|Y|I|            Window             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Checksum            |         Urgent Pointer        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options (data offset > 5)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 9293: the data offset counts 32-bit words and is at least 5; the checksum covers the same pseudo-header
/// as UDP's, and, unlike UDP's, is never optional.
public struct TCPHeader: Hashable, Sendable {
    /// Header size without options, in bytes.
    public static let minimumSize = 20

    /// Source port.
    public var sourcePort: UInt16
    /// Destination port.
    public var destinationPort: UInt16
    /// Sequence number.
    public var sequenceNumber: UInt32
    /// Acknowledgment number.
    public var acknowledgmentNumber: UInt32
    /// Header length in bytes (data offset × 4), 20 ... 60.
    public var headerLength: Int
    /// Control bits.
    public var flags: TCPFlags
    /// Receive window (unscaled).
    public var window: UInt16
    /// Checksum as on the wire (host order).
    public var checksum: UInt16
    /// Urgent pointer.
    public var urgentPointer: UInt16

    /// Builds a header value.
    @inlinable
    public init(
        sourcePort: UInt16, destinationPort: UInt16, sequenceNumber: UInt32 = 0, acknowledgmentNumber: UInt32 = 0,
        headerLength: Int = TCPHeader.minimumSize, flags: TCPFlags = [], window: UInt16 = 0, checksum: UInt16 = 0,
        urgentPointer: UInt16 = 0
    ) {
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequenceNumber = sequenceNumber
        self.acknowledgmentNumber = acknowledgmentNumber
        self.headerLength = headerLength
        self.flags = flags
        self.window = window
        self.checksum = checksum
        self.urgentPointer = urgentPointer
    }

    /// Bytes of options, 0 ... 40.
    @inlinable public var optionsLength: Int { headerLength - TCPHeader.minimumSize }

    /// Decodes the header at the start of `bytes`.
    /// - Parameter bytes: the segment from the TCP header on.
    /// - Returns: the header, `.truncatedTCP` (also when options run past `bytes`), or `.tcpBadDataOffset`.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<TCPHeader, PacketDropReason> {
        guard bytes.byteCount >= minimumSize else { return .failure(.truncatedTCP) }
        let word = bytes.vxBE16(12)
        let headerLength = Int(word >> 12) * 4
        guard headerLength >= minimumSize else { return .failure(.tcpBadDataOffset) }
        guard headerLength <= bytes.byteCount else { return .failure(.truncatedTCP) }
        return .success(
            TCPHeader(
                sourcePort: bytes.vxBE16(0), destinationPort: bytes.vxBE16(2), sequenceNumber: bytes.vxBE32(4),
                acknowledgmentNumber: bytes.vxBE32(8), headerLength: headerLength,
                flags: TCPFlags(rawValue: word & 0x01FF), window: bytes.vxBE16(14), checksum: bytes.vxBE16(16),
                urgentPointer: bytes.vxBE16(18)))
    }

    /// Encodes the fixed 20 bytes at `offset` (data offset from `headerLength`, checksum as stored); options
    /// are the caller's to place after them.
    /// - Parameters:
    ///   - bytes: destination; must hold 20 bytes from `offset` (traps otherwise).
    ///   - offset: where the source port goes.
    /// - Returns: bytes written (20).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreBE16(sourcePort, at: offset)
        bytes.vxStoreBE16(destinationPort, at: offset + 2)
        bytes.vxStoreBE32(sequenceNumber, at: offset + 4)
        bytes.vxStoreBE32(acknowledgmentNumber, at: offset + 8)
        let dataOffset = UInt16(truncatingIfNeeded: headerLength / 4) & 0xF
        bytes.vxStoreBE16(dataOffset << 12 | flags.rawValue & 0x01FF, at: offset + 12)
        bytes.vxStoreBE16(window, at: offset + 14)
        bytes.vxStoreBE16(checksum, at: offset + 16)
        bytes.vxStoreBE16(urgentPointer, at: offset + 18)
        return TCPHeader.minimumSize
    }

    /// The checksum to transmit for `segment` (header, options and data), whatever its checksum field holds.
    /// - Parameter pseudoHeaderSum: from `InternetChecksum.pseudoHeaderSum` for IPv4 or IPv6.
    @inlinable
    public static func computeChecksum(segment: RawSpan, pseudoHeaderSum: UInt16) -> UInt16 {
        TransportChecksum.compute(segment: segment, pseudoHeaderSum: pseudoHeaderSum, fieldOffset: 16)
    }

    /// Verifies a TCP segment's checksum.
    /// - Parameters:
    ///   - segment: header, options and data.
    ///   - pseudoHeaderSum: from `InternetChecksum.pseudoHeaderSum` with `length: segment.byteCount`.
    /// - Returns: nil when valid, else `.truncatedTCP` or `.tcpBadChecksum`.
    @inlinable
    public static func verifyChecksum(segment: RawSpan, pseudoHeaderSum: UInt16) -> PacketDropReason? {
        guard segment.byteCount >= minimumSize else { return .truncatedTCP }
        return TransportChecksum.verify(segment: segment, pseudoHeaderSum: pseudoHeaderSum) ? nil : .tcpBadChecksum
    }
}
