/// VXLAN header (RFC 7348 §5).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |R|R|R|R|I|R|R|R|            Reserved                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                VXLAN Network Identifier (VNI) |   Reserved    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 7348 §5: "The I flag MUST be set to 1 for a valid VXLAN Network ID (VNI). The other 7 bits (designated
/// "R") are reserved fields and MUST be set to zero on transmission and ignored on receipt." The same holds for
/// both reserved fields. The UDP destination port is 4789 (IANA); the UDP checksum SHOULD be transmitted as zero
/// and a receiver MUST accept a zero checksum.
public struct VXLANHeader: Hashable, Sendable {
    /// Header size in bytes.
    public static let size = 8
    /// The I flag in the first octet.
    public static let flagI: UInt8 = 0x08
    /// The IANA-assigned UDP destination port.
    public static let udpPort: UInt16 = 4789

    /// The 24-bit network identifier.
    public var vni: VNI

    /// - Parameter vni: the network identifier.
    @inlinable
    public init(vni: VNI) { self.vni = vni }

    /// Decodes the header at the start of `bytes`; reserved bits are ignored.
    /// - Parameter bytes: starts at the flags octet.
    /// - Returns: the header, `.truncatedVXLAN`, or `.vxlanIFlagClear`.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<VXLANHeader, PacketDropReason> {
        guard bytes.byteCount >= size else { return .failure(.truncatedVXLAN) }
        guard bytes.vxU8(0) & flagI != 0 else { return .failure(.vxlanIFlagClear) }
        return .success(VXLANHeader(vni: VNI(truncating: bytes.vxBE32(4) >> 8)))
    }

    /// Encodes the header at `offset`: I flag set, every reserved bit zero.
    /// - Parameters:
    ///   - bytes: destination; must hold 8 bytes from `offset` (traps otherwise).
    ///   - offset: where the flags octet goes.
    /// - Returns: bytes written (8).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        bytes.vxStoreBE32(UInt32(VXLANHeader.flagI) << 24, at: offset)
        bytes.vxStoreBE32(vni.value << 8, at: offset + 4)
        return VXLANHeader.size
    }
}
