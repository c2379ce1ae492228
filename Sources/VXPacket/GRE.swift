/// GRE header (RFC 2784 §2, with the Key and Sequence Number extensions of RFC 2890 §2).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |C|R|K|S| Reserved0       | Ver |         Protocol Type         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Checksum (if C)          |       Reserved1 (if C)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Key (if K)                            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Sequence Number (if S)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// RFC 2784 §2.5: the checksum is the Internet checksum of the GRE header and payload. §2.3.1: bit 1 is RFC
/// 1701's Routing Present; we do not implement source routing, so a set R bit is rejected (as Linux does),
/// while the other Reserved0 bits are ignored on receipt and sent as zero. §2.3.2: Ver MUST be 0 (1 is PPTP).
/// We carry only Ethernet, so the protocol type must be 0x6558 (transparent Ethernet bridging).
public struct GREHeader: Hashable, Sendable {
    /// Base header size in bytes (no optional fields).
    public static let baseSize = 4
    @usableFromInline static let flagC: UInt16 = 0x8000
    @usableFromInline static let flagR: UInt16 = 0x4000
    @usableFromInline static let flagK: UInt16 = 0x2000
    @usableFromInline static let flagS: UInt16 = 0x1000

    /// C: a checksum field is present.
    public var checksumPresent: Bool
    /// The checksum field as on the wire (host order); meaningful only when `checksumPresent`.
    public var checksum: UInt16
    /// The key, or nil when K is clear.
    public var key: UInt32?
    /// The sequence number, or nil when S is clear.
    public var sequenceNumber: UInt32?
    /// Protocol type of the payload.
    public var protocolType: EtherType

    /// Builds a header value.
    @inlinable
    public init(
        checksumPresent: Bool = false, checksum: UInt16 = 0, key: UInt32? = nil, sequenceNumber: UInt32? = nil,
        protocolType: EtherType = .transparentEthernetBridging
    ) {
        self.checksumPresent = checksumPresent
        self.checksum = checksum
        self.key = key
        self.sequenceNumber = sequenceNumber
        self.protocolType = protocolType
    }

    /// Header length in bytes: 4, plus 4 for each of checksum, key and sequence number present.
    @inlinable
    public var length: Int {
        GREHeader.baseSize + (checksumPresent ? 4 : 0) + (key == nil ? 0 : 4) + (sequenceNumber == nil ? 0 : 4)
    }

    /// Decodes and validates a GRE packet carrying Ethernet.
    /// - Parameter bytes: the GRE header and exactly its payload (the checksum, if present, covers both).
    /// - Returns: the header, or `.truncatedGRE`, `.greBadVersion`, `.greRoutingPresent`, `.greNotTEB`,
    ///   `.greChecksumBad`.
    @inlinable
    public static func parse(_ bytes: RawSpan) -> Result<GREHeader, PacketDropReason> {
        guard bytes.byteCount >= baseSize else { return .failure(.truncatedGRE) }
        let word = bytes.vxBE16(0)
        guard word & 0x7 == 0 else { return .failure(.greBadVersion) }
        guard word & flagR == 0 else { return .failure(.greRoutingPresent) }
        var header = GREHeader(checksumPresent: word & flagC != 0, protocolType: EtherType(rawValue: bytes.vxBE16(2)))
        let length = header.length + (word & flagK != 0 ? 4 : 0) + (word & flagS != 0 ? 4 : 0)
        guard bytes.byteCount >= length else { return .failure(.truncatedGRE) }
        guard header.protocolType == .transparentEthernetBridging else { return .failure(.greNotTEB) }
        var offset = baseSize
        if header.checksumPresent {
            header.checksum = bytes.vxBE16(offset)
            guard InternetChecksum.sum(bytes) == 0xFFFF else { return .failure(.greChecksumBad) }
            offset += 4
        }
        if word & flagK != 0 {
            header.key = bytes.vxBE32(offset)
            offset += 4
        }
        if word & flagS != 0 {
            header.sequenceNumber = bytes.vxBE32(offset)
        }
        return .success(header)
    }

    /// Encodes the header at `offset` with the checksum field as stored (Reserved1 zero). When
    /// `checksumPresent`, place the payload and then call `updateChecksum(in:at:length:)`.
    /// - Parameters:
    ///   - bytes: destination; must hold `length` bytes from `offset` (traps otherwise).
    ///   - offset: where the flags go.
    /// - Returns: bytes written (`length`).
    @inlinable @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        var word: UInt16 = checksumPresent ? GREHeader.flagC : 0
        if key != nil { word |= GREHeader.flagK }
        if sequenceNumber != nil { word |= GREHeader.flagS }
        bytes.vxStoreBE16(word, at: offset)
        bytes.vxStoreBE16(protocolType.rawValue, at: offset + 2)
        var position = offset + GREHeader.baseSize
        if checksumPresent {
            bytes.vxStoreBE16(checksum, at: position)
            bytes.vxStoreBE16(0, at: position + 2)
            position += 4
        }
        if let key {
            bytes.vxStoreBE32(key, at: position)
            position += 4
        }
        if let sequenceNumber {
            bytes.vxStoreBE32(sequenceNumber, at: position)
            position += 4
        }
        return position - offset
    }

    /// Computes and stores the checksum of the GRE packet (header + payload) at `offset`, whose C bit is set.
    /// - Parameters:
    ///   - bytes: holds the whole GRE packet from `offset` (traps otherwise).
    ///   - offset: where the GRE header starts.
    ///   - length: GRE header plus payload, in bytes.
    /// - Returns: the checksum stored (host order).
    @inlinable @discardableResult
    public static func updateChecksum(in bytes: inout MutableRawSpan, at offset: Int = 0, length: Int) -> UInt16 {
        bytes.vxStoreBE16(0, at: offset + 4)
        let checksum = InternetChecksum.checksum(bytes.bytes.extracting(offset..<offset + length))
        bytes.vxStoreBE16(checksum, at: offset + 4)
        return checksum
    }
}

/// How a GRE peer maps the 32-bit key to a VNI; chosen per peer, because deployed peers disagree.
public enum GREKeyLayout: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The whole 32-bit key is the VNI: what `ovs-vsctl ... options:key=42` and Linux `gretap key 42` put on
    /// the wire. The default. A received key above 2^24 - 1 cannot be a VNI and is rejected.
    case vni
    /// NVGRE (RFC 7637 §3.2): the Virtual Subnet ID in the upper 24 bits, FlowID in the low 8 (ignored on
    /// receipt; we send 0, which RFC 7637 requires when no FlowID is generated).
    case nvgre
    /// No key on the wire: every frame from the peer belongs to the peer's one VNI.
    case none

    public var description: String {
        switch self {
        case .vni: "vni"
        case .nvgre: "nvgre"
        case .none: "none"
        }
    }

    /// The key to put in an outgoing GRE header.
    /// - Parameters:
    ///   - vni: the frame's VNI.
    ///   - flowID: NVGRE FlowID (low 8 bits); ignored by other layouts.
    /// - Returns: the key, or nil for `.none` (K bit clear).
    @inlinable
    public func key(for vni: VNI, flowID: UInt8 = 0) -> UInt32? {
        switch self {
        case .vni: vni.value
        case .nvgre: vni.value << 8 | UInt32(flowID)
        case .none: nil
        }
    }

    /// The VNI a received frame belongs to.
    /// - Parameters:
    ///   - key: the received key, or nil when K was clear.
    ///   - unkeyedVNI: the peer's VNI, used by `.none` only.
    /// - Returns: the VNI, or `.greKeyMissing`, `.greKeyUnexpected`, `.vniOutOfRange`.
    @inlinable
    public func vni(forKey key: UInt32?, unkeyedVNI: VNI) -> Result<VNI, PacketDropReason> {
        switch self {
        case .vni:
            guard let key else { return .failure(.greKeyMissing) }
            guard let vni = VNI(key) else { return .failure(.vniOutOfRange) }
            return .success(vni)
        case .nvgre:
            guard let key else { return .failure(.greKeyMissing) }
            return .success(VNI(truncating: key >> 8))
        case .none:
            guard key == nil else { return .failure(.greKeyUnexpected) }
            return .success(unkeyedVNI)
        }
    }
}
