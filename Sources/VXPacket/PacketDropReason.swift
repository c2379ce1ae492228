/// Why a decoder rejected a frame or datagram: the one closed table the dataplane counts drops by.
///
/// Like VPP's `vxlan_error.def`, every rejection anywhere in VXPacket maps to exactly one case here. The raw
/// values are dense from zero so a worker can index a fixed counter array with `rawValue`; they are a stable
/// contract (counters are exported by number), so new cases are appended and existing numbers never change.
public enum PacketDropReason: UInt8, CaseIterable, CustomStringConvertible, Sendable, Error {
    case truncatedEthernet = 0
    case truncatedVLANTag = 1
    case truncatedARP = 2
    case arpUnsupportedFormat = 3
    case truncatedIPv4 = 4
    case ipv4BadVersion = 5
    case ipv4BadHeaderLength = 6
    case ipv4BadTotalLength = 7
    case ipv4BadChecksum = 8
    case truncatedIPv6 = 9
    case ipv6BadVersion = 10
    case ipv6BadPayloadLength = 11
    case ipv6TruncatedExtensionHeader = 12
    case ipv6TooManyExtensionHeaders = 13
    case truncatedUDP = 14
    case udpBadLength = 15
    case udpBadChecksum = 16
    case udpZeroChecksumIPv6 = 17
    case truncatedTCP = 18
    case tcpBadDataOffset = 19
    case tcpBadChecksum = 20
    case outerNotUDP = 21
    case udpWrongPort = 22
    case outerFragment = 23
    case truncatedVXLAN = 24
    case vxlanIFlagClear = 25
    case outerNotGRE = 26
    case truncatedGRE = 27
    case greBadVersion = 28
    case greRoutingPresent = 29
    case greNotTEB = 30
    case greChecksumBad = 31
    case greKeyMissing = 32
    case greKeyUnexpected = 33
    case vniOutOfRange = 34
    case truncatedInnerEthernet = 35

    /// The number of reasons: the size of a counter array indexed by `rawValue`.
    public static let count = 36

    /// The case name, a stable identifier for machine-readable output (JSON stats).
    public var name: String {
        switch self {
        case .truncatedEthernet: "truncatedEthernet"
        case .truncatedVLANTag: "truncatedVLANTag"
        case .truncatedARP: "truncatedARP"
        case .arpUnsupportedFormat: "arpUnsupportedFormat"
        case .truncatedIPv4: "truncatedIPv4"
        case .ipv4BadVersion: "ipv4BadVersion"
        case .ipv4BadHeaderLength: "ipv4BadHeaderLength"
        case .ipv4BadTotalLength: "ipv4BadTotalLength"
        case .ipv4BadChecksum: "ipv4BadChecksum"
        case .truncatedIPv6: "truncatedIPv6"
        case .ipv6BadVersion: "ipv6BadVersion"
        case .ipv6BadPayloadLength: "ipv6BadPayloadLength"
        case .ipv6TruncatedExtensionHeader: "ipv6TruncatedExtensionHeader"
        case .ipv6TooManyExtensionHeaders: "ipv6TooManyExtensionHeaders"
        case .truncatedUDP: "truncatedUDP"
        case .udpBadLength: "udpBadLength"
        case .udpBadChecksum: "udpBadChecksum"
        case .udpZeroChecksumIPv6: "udpZeroChecksumIPv6"
        case .truncatedTCP: "truncatedTCP"
        case .tcpBadDataOffset: "tcpBadDataOffset"
        case .tcpBadChecksum: "tcpBadChecksum"
        case .outerNotUDP: "outerNotUDP"
        case .udpWrongPort: "udpWrongPort"
        case .outerFragment: "outerFragment"
        case .truncatedVXLAN: "truncatedVXLAN"
        case .vxlanIFlagClear: "vxlanIFlagClear"
        case .outerNotGRE: "outerNotGRE"
        case .truncatedGRE: "truncatedGRE"
        case .greBadVersion: "greBadVersion"
        case .greRoutingPresent: "greRoutingPresent"
        case .greNotTEB: "greNotTEB"
        case .greChecksumBad: "greChecksumBad"
        case .greKeyMissing: "greKeyMissing"
        case .greKeyUnexpected: "greKeyUnexpected"
        case .vniOutOfRange: "vniOutOfRange"
        case .truncatedInnerEthernet: "truncatedInnerEthernet"
        }
    }

    /// A short human description, for `vxctl` counter listings and logs.
    public var description: String {
        switch self {
        case .truncatedEthernet: "frame shorter than an Ethernet header"
        case .truncatedVLANTag: "802.1Q tag cut short"
        case .truncatedARP: "ARP packet cut short"
        case .arpUnsupportedFormat: "ARP not Ethernet/IPv4"
        case .truncatedIPv4: "IPv4 header cut short"
        case .ipv4BadVersion: "IPv4 version field is not 4"
        case .ipv4BadHeaderLength: "IPv4 IHL below 5"
        case .ipv4BadTotalLength: "IPv4 total length shorter than header or longer than buffer"
        case .ipv4BadChecksum: "IPv4 header checksum mismatch"
        case .truncatedIPv6: "IPv6 header cut short"
        case .ipv6BadVersion: "IPv6 version field is not 6"
        case .ipv6BadPayloadLength: "IPv6 payload length longer than buffer"
        case .ipv6TruncatedExtensionHeader: "IPv6 extension header cut short"
        case .ipv6TooManyExtensionHeaders: "IPv6 extension header chain too long"
        case .truncatedUDP: "UDP header cut short"
        case .udpBadLength: "UDP length field inconsistent with buffer"
        case .udpBadChecksum: "UDP checksum mismatch"
        case .udpZeroChecksumIPv6: "UDP over IPv6 with zero checksum"
        case .truncatedTCP: "TCP header cut short"
        case .tcpBadDataOffset: "TCP data offset below 5"
        case .tcpBadChecksum: "TCP checksum mismatch"
        case .outerNotUDP: "outer IPv4 protocol is not UDP"
        case .udpWrongPort: "outer UDP destination port is not the VXLAN port"
        case .outerFragment: "outer IPv4 packet is a fragment"
        case .truncatedVXLAN: "VXLAN header cut short"
        case .vxlanIFlagClear: "VXLAN I flag clear"
        case .outerNotGRE: "outer IPv4 protocol is not GRE"
        case .truncatedGRE: "GRE header cut short"
        case .greBadVersion: "GRE version is not 0"
        case .greRoutingPresent: "GRE routing bit set"
        case .greNotTEB: "GRE protocol is not transparent Ethernet bridging (0x6558)"
        case .greChecksumBad: "GRE checksum mismatch"
        case .greKeyMissing: "GRE key absent but the peer's layout needs one"
        case .greKeyUnexpected: "GRE key present but the peer's layout has none"
        case .vniOutOfRange: "GRE key does not fit in a 24-bit VNI"
        case .truncatedInnerEthernet: "inner frame shorter than an Ethernet header"
        }
    }
}
