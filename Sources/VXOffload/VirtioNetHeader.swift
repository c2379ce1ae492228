// The virtio-net header a TAP opened with IFF_VNET_HDR puts in front of every frame it hands out and expects in
// front of every frame written to it.
//
// We open TAPs with TUNSETVNETHDRSZ 12, so the header is `struct virtio_net_hdr_v1` (the same 12 bytes as the
// legacy `struct virtio_net_hdr_mrg_rxbuf`): the 10-byte `struct virtio_net_hdr` plus `num_buffers`. The kernel
// zero-fills bytes it does not define when it reads out (tun_vnet_hdr_put: copy the 10 bytes, then iov_iter_zero
// the rest) and skips them when it reads in (tun_vnet_hdr_get advances past `sz - sizeof(hdr)`), so
// `num_buffers` is 0 on every frame read and is ignored on every frame written.
//
// Byte order: the 16-bit fields are `__virtio16`, converted by tun with `tun_vnet_is_little_endian(flags)`, which
// is `flags & TUN_VNET_LE || virtio_legacy_is_little_endian()`. Legacy ("native-endian") virtio is little-endian
// on little-endian hosts, and VIRTIO 1.x (what the spec calls a modern device) is always little-endian, so on
// x86-64 and arm64 the fields are little-endian whether or not TUNSETVNETLE was issued. This type always reads and
// writes little-endian; a big-endian host must issue TUNSETVNETLE on the TAP before using it.

/// The virtio-net header (VIRTIO 1.2 §5.1.6 "Device Operation"; Linux `include/uapi/linux/virtio_net.h`).
///
/// ```
///  0               1               2               3
/// +---------------+---------------+-------------------------------+
/// |     flags     |   gso_type    |        hdr_len (le16)         |
/// +---------------+---------------+-------------------------------+
/// |        gso_size (le16)        |      csum_start (le16)        |
/// +-------------------------------+-------------------------------+
/// |      csum_offset (le16)       |  num_buffers (le16, 12-B only)|
/// +-------------------------------+-------------------------------+
/// ```
///
/// - `flags`: NEEDS_CSUM (1): the L4 checksum is partial: sum from `csum_start` to the end of the frame and store
///   the complement at `csum_start + csum_offset`; the field already holds the pseudo-header sum. DATA_VALID (2):
///   the checksum was verified (read side; the tun write path ignores it, see `Flags.dataValid`).
/// - `gso_type`: NONE (0), TCPV4 (1), UDP (3, legacy UFO), TCPV6 (4), UDP_L4 (5); bit 0x80 (ECN) says the TCP
///   segment carries CWR and the stack accepted ECN segmentation semantics.
/// - `hdr_len`: on a write, how many bytes the kernel copies into the skb's linear area (the headers); on a read
///   only a hint (`skb_headlen`, which can be the whole first segment or more), never the header length.
/// - `gso_size`: payload bytes per segment (the MSS) for GSO frames.
/// - `csum_start`, `csum_offset`: from the start of the frame (the Ethernet header on a TAP, VLAN tag included).
public struct VirtioNetHeader: Hashable, Sendable {
    /// Size of `struct virtio_net_hdr` (no `num_buffers`), the TAP default.
    public static let legacySize = 10
    /// Size of `struct virtio_net_hdr_v1`, what our TAPs use (TUNSETVNETHDRSZ 12).
    public static let size = 12

    /// The `flags` byte.
    public struct Flags: OptionSet, Hashable, Sendable {
        /// The flag bits.
        public var rawValue: UInt8

        /// - Parameter rawValue: flag bits.
        @inlinable
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum must be completed (CHECKSUM_PARTIAL in the skb).
        public static let needsChecksum = Flags(rawValue: 1)
        /// VIRTIO_NET_HDR_F_DATA_VALID: the L4 checksum has been verified (CHECKSUM_UNNECESSARY). The kernel sets it
        /// on TAP reads; on TAP writes tun (virtio_net_hdr_to_skb) only looks at NEEDS_CSUM, so setting it costs
        /// nothing and gains nothing today; we set it only when we did verify, so it is never a lie.
        public static let dataValid = Flags(rawValue: 2)
        /// VIRTIO_NET_HDR_F_RSC_INFO: csum fields carry coalescing statistics (virtio devices only; not tun).
        public static let rscInfo = Flags(rawValue: 4)
    }

    /// The segmentation type in the low 7 bits of `gso_type`.
    public struct GSOType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The type number (without the ECN bit).
        public var rawValue: UInt8

        /// - Parameter rawValue: the type number; the ECN bit (0x80) is kept separately in `VirtioNetHeader.ecn`.
        @inlinable
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// VIRTIO_NET_HDR_GSO_NONE: a single frame.
        public static let none = GSOType(rawValue: 0)
        /// VIRTIO_NET_HDR_GSO_TCPV4: TCP over IPv4 to be segmented at `gso_size`.
        public static let tcpv4 = GSOType(rawValue: 1)
        /// VIRTIO_NET_HDR_GSO_UDP: legacy UDP fragmentation offload (UFO); never offered by our TAPs.
        public static let udp = GSOType(rawValue: 3)
        /// VIRTIO_NET_HDR_GSO_TCPV6: TCP over IPv6 to be segmented at `gso_size`.
        public static let tcpv6 = GSOType(rawValue: 4)
        /// VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation offload (USO, TUN_F_USO4/6); offered only by the underlay TAP.
        public static let udpL4 = GSOType(rawValue: 5)

        /// The bit in `gso_type` that carries `ecn`.
        public static let ecnBit: UInt8 = 0x80

        public var description: String {
            switch self {
            case .none: "none"
            case .tcpv4: "tcpv4"
            case .udp: "udp"
            case .tcpv6: "tcpv6"
            case .udpL4: "udpL4"
            default: "gso(\(rawValue))"
            }
        }
    }

    /// `flags`.
    public var flags: Flags
    /// `gso_type` without the ECN bit.
    public var gsoType: GSOType
    /// The ECN bit of `gso_type` (VIRTIO_NET_HDR_GSO_ECN): the frame has CWR set (SKB_GSO_TCP_ECN).
    public var ecn: Bool
    /// `hdr_len`: on writes the header bytes to copy linearly; on reads only a hint, see the type's doc.
    public var headerLength: UInt16
    /// `gso_size`: payload bytes per segment.
    public var gsoSize: UInt16
    /// `csum_start`: where checksumming starts, from the start of the frame.
    public var checksumStart: UInt16
    /// `csum_offset`: where the checksum goes, from `checksumStart` (16 for TCP, 6 for UDP).
    public var checksumOffset: UInt16
    /// `num_buffers` of the 12-byte form; 0 on TAP reads, ignored on TAP writes.
    public var bufferCount: UInt16

    /// Builds a header value.
    @inlinable
    public init(
        flags: Flags = [],
        gsoType: GSOType = .none,
        ecn: Bool = false,
        headerLength: UInt16 = 0,
        gsoSize: UInt16 = 0,
        checksumStart: UInt16 = 0,
        checksumOffset: UInt16 = 0,
        bufferCount: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoType = gsoType
        self.ecn = ecn
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
        self.bufferCount = bufferCount
    }

    /// The header for a plain frame written to a TAP: no segmentation, nothing to complete, no flags. Never
    /// DATA_VALID: tun ignores it on writes (docs/offload.md), so claiming a verified checksum would buy nothing.
    @inlinable
    public static var plain: VirtioNetHeader { VirtioNetHeader(flags: []) }

    /// Decodes a header at the start of `bytes`.
    /// - Parameters:
    ///   - bytes: starts at `flags`.
    ///   - size: `legacySize` (10) or `size` (12); with 10, `bufferCount` is 0.
    /// - Returns: the header, or nil when `bytes` is shorter than `size`.
    public static func parse(_ bytes: RawSpan, size: Int = VirtioNetHeader.size) -> VirtioNetHeader? {
        precondition(size == legacySize || size == VirtioNetHeader.size, "virtio-net header size is 10 or 12")
        guard bytes.byteCount >= size else { return nil }
        let type = bytes.vxU8(1)
        return VirtioNetHeader(
            flags: Flags(rawValue: bytes.vxU8(0)),
            gsoType: GSOType(rawValue: type & ~GSOType.ecnBit),
            ecn: type & GSOType.ecnBit != 0,
            headerLength: bytes.vxLE16(2),
            gsoSize: bytes.vxLE16(4),
            checksumStart: bytes.vxLE16(6),
            checksumOffset: bytes.vxLE16(8),
            bufferCount: size == VirtioNetHeader.size ? bytes.vxLE16(10) : 0
        )
    }

    /// Encodes the header at `offset`.
    /// - Parameters:
    ///   - bytes: destination; must hold `size` bytes from `offset` (traps otherwise).
    ///   - offset: where `flags` goes.
    ///   - size: `legacySize` (10) or `size` (12).
    /// - Returns: bytes written (`size`).
    @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0, size: Int = VirtioNetHeader.size) -> Int {
        precondition(
            size == VirtioNetHeader.legacySize || size == VirtioNetHeader.size,
            "virtio-net header size is 10 or 12"
        )
        bytes.vxStoreU8(flags.rawValue, at: offset)
        bytes.vxStoreU8(gsoType.rawValue & ~GSOType.ecnBit | (ecn ? GSOType.ecnBit : 0), at: offset + 1)
        bytes.vxStoreLE16(headerLength, at: offset + 2)
        bytes.vxStoreLE16(gsoSize, at: offset + 4)
        bytes.vxStoreLE16(checksumStart, at: offset + 6)
        bytes.vxStoreLE16(checksumOffset, at: offset + 8)
        if size == VirtioNetHeader.size {
            bytes.vxStoreLE16(bufferCount, at: offset + 10)
        }
        return size
    }
}
