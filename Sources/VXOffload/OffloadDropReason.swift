/// Why checksum completion or segmentation refused a frame read from a TAP: one closed table, like
/// `PacketDropReason`, so the dataplane can count drops by `rawValue`.
///
/// Raw values are dense from zero and stable (counters are exported by number): append, never renumber.
public enum OffloadDropReason: UInt8, CaseIterable, CustomStringConvertible, Sendable, Error {
    /// `gso_type` is UDP, UDP_L4 or unknown: our TAPs never offer UFO/USO, so the kernel should not send them.
    case gsoTypeUnsupported = 0
    /// A GSO frame with `gso_size` 0 (the kernel's virtio_net_hdr_to_skb rejects these too).
    case gsoSizeZero = 1
    /// TCPV4 on a frame that is not IPv4, or TCPV6 on one that is not IPv6.
    case gsoProtocolMismatch = 2
    /// The Ethernet header or its 802.1Q tag is cut short.
    case malformedEthernet = 3
    /// The IPv4 header is cut short or inconsistent (version, IHL, total length).
    case malformedIPv4 = 4
    /// The IPv6 header or its extension-header chain is cut short or inconsistent.
    case malformedIPv6 = 5
    /// The TCP header is cut short or its data offset is below 5.
    case malformedTCP = 6
    /// A GSO frame whose transport protocol is not TCP.
    case notTCP = 7
    /// A GSO frame that is an IP fragment.
    case fragment = 8
    /// `csum_start`/`csum_offset` point outside the frame, or (for GSO) not at the TCP checksum field.
    case checksumOffsetInvalid = 9

    /// The number of reasons: the size of a counter array indexed by `rawValue`.
    public static let count = 10

    /// The case name, a stable identifier for machine-readable output.
    public var name: String {
        switch self {
        case .gsoTypeUnsupported: "gsoTypeUnsupported"
        case .gsoSizeZero: "gsoSizeZero"
        case .gsoProtocolMismatch: "gsoProtocolMismatch"
        case .malformedEthernet: "malformedEthernet"
        case .malformedIPv4: "malformedIPv4"
        case .malformedIPv6: "malformedIPv6"
        case .malformedTCP: "malformedTCP"
        case .notTCP: "notTCP"
        case .fragment: "fragment"
        case .checksumOffsetInvalid: "checksumOffsetInvalid"
        }
    }

    /// A short human description, for counter listings and logs.
    public var description: String {
        switch self {
        case .gsoTypeUnsupported: "virtio-net GSO type not supported (only TCPV4/TCPV6)"
        case .gsoSizeZero: "virtio-net GSO frame with gso_size 0"
        case .gsoProtocolMismatch: "virtio-net GSO type does not match the frame's IP version"
        case .malformedEthernet: "GSO frame: Ethernet header cut short"
        case .malformedIPv4: "GSO frame: IPv4 header cut short or inconsistent"
        case .malformedIPv6: "GSO frame: IPv6 header cut short or inconsistent"
        case .malformedTCP: "GSO frame: TCP header cut short or bad data offset"
        case .notTCP: "GSO frame does not carry TCP"
        case .fragment: "GSO frame is an IP fragment"
        case .checksumOffsetInvalid: "virtio-net csum_start/csum_offset outside the frame or not at the TCP checksum"
        }
    }
}
