/// Why a DHCP client frame got no answer: the one table the daemon counts DHCP drops by.
///
/// Like `PacketDropReason` (and VPP's `vxlan_error.def`), every rejection in VXDHCP maps to exactly one case: the
/// wire-level ones come from `DHCPMessage.parse` and `DHCPClientFrame.classify`, the rest from `DHCPServer`. Raw
/// values are dense from zero so a counter array can be indexed by `rawValue`; they are a stable contract, so new
/// cases are appended and existing numbers never change.
public enum DHCPDropReason: UInt8, CaseIterable, CustomStringConvertible, Sendable, Error {
    // MARK: Wire format (DHCPMessage.parse, DHCPClientFrame.classify)
    case truncatedMessage = 0
    case badOperation = 1
    case badHardwareAddressLength = 2
    case badMagicCookie = 3
    case truncatedOption = 4
    case badOptionLength = 5
    case optionOverloadUnsupported = 6
    case missingMessageType = 7
    case unknownMessageType = 8
    case fragmented = 9
    case badUDPLength = 10
    case badUDPChecksum = 11

    // MARK: Server decisions (DHCPServer)
    case notBootRequest = 12
    case unsupportedHardwareType = 13
    case relayedMessage = 14
    case unexpectedMessageType = 15
    case poolExhausted = 16
    case otherServerSelected = 17
    case requestWithoutAddress = 18
    case notClientsLease = 19
    case informFromOtherNetwork = 20

    /// The number of reasons: the size of a counter array indexed by `rawValue`.
    public static let count = 21

    /// The case name, a stable identifier for machine-readable output (JSON stats).
    public var name: String {
        switch self {
        case .truncatedMessage: "truncatedMessage"
        case .badOperation: "badOperation"
        case .badHardwareAddressLength: "badHardwareAddressLength"
        case .badMagicCookie: "badMagicCookie"
        case .truncatedOption: "truncatedOption"
        case .badOptionLength: "badOptionLength"
        case .optionOverloadUnsupported: "optionOverloadUnsupported"
        case .missingMessageType: "missingMessageType"
        case .unknownMessageType: "unknownMessageType"
        case .fragmented: "fragmented"
        case .badUDPLength: "badUDPLength"
        case .badUDPChecksum: "badUDPChecksum"
        case .notBootRequest: "notBootRequest"
        case .unsupportedHardwareType: "unsupportedHardwareType"
        case .relayedMessage: "relayedMessage"
        case .unexpectedMessageType: "unexpectedMessageType"
        case .poolExhausted: "poolExhausted"
        case .otherServerSelected: "otherServerSelected"
        case .requestWithoutAddress: "requestWithoutAddress"
        case .notClientsLease: "notClientsLease"
        case .informFromOtherNetwork: "informFromOtherNetwork"
        }
    }

    /// A short human description, for `vxctl` counter listings and logs.
    public var description: String {
        switch self {
        case .truncatedMessage: "DHCP message shorter than the BOOTP header and magic cookie"
        case .badOperation: "BOOTP op is neither 1 (request) nor 2 (reply)"
        case .badHardwareAddressLength: "BOOTP hlen above 16"
        case .badMagicCookie: "no DHCP magic cookie (plain BOOTP)"
        case .truncatedOption: "DHCP option runs past the end of the message"
        case .badOptionLength: "DHCP option length invalid for its code"
        case .optionOverloadUnsupported: "DHCP option overload (52) not supported"
        case .missingMessageType: "no DHCP message type option (53)"
        case .unknownMessageType: "DHCP message type outside 1...8"
        case .fragmented: "DHCP datagram is an IPv4 fragment"
        case .badUDPLength: "UDP length inconsistent with the IPv4 datagram"
        case .badUDPChecksum: "UDP checksum mismatch"
        case .notBootRequest: "BOOTREPLY sent to the server port"
        case .unsupportedHardwareType: "client hardware is not Ethernet (htype 1, hlen 6)"
        case .relayedMessage: "relayed message (giaddr set); only directly attached clients are served"
        case .unexpectedMessageType: "OFFER, ACK or NAK sent by a client"
        case .poolExhausted: "no free address in this host's range"
        case .otherServerSelected: "client selected another DHCP server"
        case .requestWithoutAddress: "REQUEST or DECLINE names no address"
        case .notClientsLease: "RELEASE or DECLINE of an address the client does not hold"
        case .informFromOtherNetwork: "INFORM from an address outside the subnet"
        }
    }
}

/// Why the server answered a REQUEST with DHCPNAK. The description goes into the NAK's message option (56,
/// RFC 2131 §4.3.2: the server SHOULD say why) and into the daemon's log.
public enum DHCPNakReason: UInt8, CaseIterable, CustomStringConvertible, Sendable {
    /// The address is not in this network's subnet (the client moved networks).
    case wrongNetwork = 0
    /// The address is in the subnet but not in this host's range, or is excluded (gateway, server identifier).
    case notInPool = 1
    /// Another client holds the address, it is reserved statically, or it is quarantined after a DECLINE.
    case addressInUse = 2
    /// Renewing, rebinding or rebooting with an address the server holds no lease of this client for.
    case noBinding = 3
    /// SELECTING without the requested-address option (RFC 2131 §4.3.2: it MUST be present).
    case missingRequestedAddress = 4

    /// The number of reasons: the size of a counter array indexed by `rawValue`.
    public static let count = 5

    /// The case name, a stable identifier for machine-readable output.
    public var name: String {
        switch self {
        case .wrongNetwork: "wrongNetwork"
        case .notInPool: "notInPool"
        case .addressInUse: "addressInUse"
        case .noBinding: "noBinding"
        case .missingRequestedAddress: "missingRequestedAddress"
        }
    }

    /// The text sent in the NAK's message option.
    public var description: String {
        switch self {
        case .wrongNetwork: "address not on this network"
        case .notInPool: "address not in this server's range"
        case .addressInUse: "address in use"
        case .noBinding: "no lease for this client"
        case .missingRequestedAddress: "requested address missing"
        }
    }
}
