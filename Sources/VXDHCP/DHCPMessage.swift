import VXPacket

/// BOOTP message op code (RFC 951, RFC 2131 §2).
public enum BOOTPOperation: UInt8, Hashable, Sendable {
    /// BOOTREQUEST: client to server.
    case request = 1
    /// BOOTREPLY: server to client.
    case reply = 2
}

/// DHCP message type, option 53 (RFC 2132 §9.6).
public enum DHCPMessageType: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case discover = 1
    case offer = 2
    case request = 3
    case decline = 4
    case ack = 5
    case nak = 6
    case release = 7
    case inform = 8

    public var description: String {
        switch self {
        case .discover: "DHCPDISCOVER"
        case .offer: "DHCPOFFER"
        case .request: "DHCPREQUEST"
        case .decline: "DHCPDECLINE"
        case .ack: "DHCPACK"
        case .nak: "DHCPNAK"
        case .release: "DHCPRELEASE"
        case .inform: "DHCPINFORM"
        }
    }
}

/// A DHCP message (RFC 2131 §2): the BOOTP fixed header, the magic cookie and the options.
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +---------------+---------------+---------------+---------------+
/// |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |   0
/// +---------------+---------------+---------------+---------------+
/// |                            xid (4)                            |   4
/// +-------------------------------+-------------------------------+
/// |           secs (2)            |           flags (2)           |   8
/// +-------------------------------+-------------------------------+
/// |                          ciaddr  (4)                          |  12
/// |                          yiaddr  (4)                          |  16
/// |                          siaddr  (4)                          |  20
/// |                          giaddr  (4)                          |  24
/// +---------------------------------------------------------------+
/// |                          chaddr  (16)                         |  28
/// |                          sname   (64)                         |  44
/// |                          file    (128)                        | 108
/// +---------------------------------------------------------------+
/// |                 magic cookie 99.130.83.99 (4)                 | 236
/// +---------------------------------------------------------------+
/// |                   options (variable, ends with 255)           | 240
/// +---------------------------------------------------------------+
/// ```
///
/// Flags: only the leftmost bit is defined, BROADCAST (§2, figure 2); the rest MUST be zero on send and are
/// ignored on receipt, so they round-trip here unchanged. `sname` and `file` may carry options when option 52
/// (overload) says so; that is not supported, and a message using it is rejected (`.optionOverloadUnsupported`)
/// rather than half-read.
///
/// Parsing never traps: every load is preceded by a length check, and malformed input returns a
/// `DHCPDropReason`. This is the control path (a few messages per client per lease), so the value type holds
/// arrays and allocates; the hot path only calls `DHCPClientFrame.isClientToServer`.
public struct DHCPMessage: Hashable, Sendable {
    /// Bytes of the BOOTP fixed header (op ... file).
    public static let fixedHeaderSize = 236
    /// The magic cookie 99.130.83.99 (RFC 2131 §3), in host order.
    public static let magicCookie: UInt32 = 0x6382_5363
    /// Offset of the first option: the fixed header plus the cookie. Also the smallest message we accept.
    public static let optionsOffset = 240
    /// Replies are padded to this size: the length of an RFC 951 BOOTP message (its 64-byte `vend` field), as
    /// ISC dhcpd (`BOOTP_MIN_LEN`) and dnsmasq do, for old relays and clients that drop shorter datagrams.
    public static let minimumReplySize = 300
    /// The BROADCAST bit of `flags` (RFC 2131 §2, figure 2), in host order.
    public static let broadcastFlag: UInt16 = 0x8000
    /// Size of the `chaddr` field in bytes.
    public static let clientHardwareAddressSize = 16
    /// Size of the `sname` field in bytes.
    public static let serverNameSize = 64
    /// Size of the `file` field in bytes.
    public static let bootFileNameSize = 128
    /// `htype` for Ethernet (RFC 1700 "Hardware Type"), the only one the server answers.
    public static let hardwareTypeEthernet: UInt8 = 1

    /// Field offsets in the fixed header.
    enum Offset {
        static let operation = 0
        static let hardwareType = 1
        static let hardwareAddressLength = 2
        static let hops = 3
        static let transactionID = 4
        static let seconds = 8
        static let flags = 10
        static let clientIPAddress = 12
        static let yourIPAddress = 16
        static let serverIPAddress = 20
        static let relayAgentIPAddress = 24
        static let clientHardwareAddress = 28
        static let serverName = 44
        static let bootFileName = 108
        static let magicCookie = 236
    }

    /// `op`: request (client to server) or reply.
    public var operation: BOOTPOperation
    /// `htype`: hardware address type, 1 for Ethernet.
    public var hardwareType: UInt8
    /// `hlen`: hardware address length, 0 ... 16 (6 for Ethernet).
    public var hardwareAddressLength: UInt8
    /// `hops`: set by relay agents; clients send 0.
    public var hops: UInt8
    /// `xid`: transaction ID chosen by the client, echoed in replies.
    public var transactionID: UInt32
    /// `secs`: seconds since the client began acquiring or renewing.
    public var seconds: UInt16
    /// `flags`: BROADCAST is `broadcastFlag`; the other bits are carried as received.
    public var flags: UInt16
    /// `ciaddr`: the client's address, only when it is BOUND, RENEWING or REBINDING.
    public var clientIPAddress: IPv4Address
    /// `yiaddr`: the address the server offers or assigns.
    public var yourIPAddress: IPv4Address
    /// `siaddr`: the next server for bootstrap (TFTP); we send zero.
    public var serverIPAddress: IPv4Address
    /// `giaddr`: the relay agent's address, zero when the client is directly attached.
    public var relayAgentIPAddress: IPv4Address
    /// `chaddr`: exactly 16 bytes as on the wire; the first `hardwareAddressLength` are the address.
    public var clientHardwareAddress: [UInt8]
    /// `sname`: optional server host name; trailing zero bytes are trimmed (the wire field is zero-padded).
    public var serverName: [UInt8]
    /// `file`: boot file name; trailing zero bytes are trimmed.
    public var bootFileName: [UInt8]
    /// Option 53: which DHCP message this is. Required: a message without it is BOOTP and is rejected.
    public var messageType: DHCPMessageType
    /// Every other option.
    public var options: DHCPOptions

    /// Builds a message.
    /// - Parameters:
    ///   - operation: request or reply.
    ///   - messageType: option 53.
    ///   - transactionID: `xid`.
    ///   - clientMAC: written into `chaddr` with `htype` 1 and `hlen` 6.
    ///   - flags: `flags`, e.g. `DHCPMessage.broadcastFlag`.
    ///   - options: the other options.
    public init(
        operation: BOOTPOperation,
        messageType: DHCPMessageType,
        transactionID: UInt32,
        clientMAC: MACAddress,
        flags: UInt16 = 0,
        seconds: UInt16 = 0,
        clientIPAddress: IPv4Address = .any,
        yourIPAddress: IPv4Address = .any,
        serverIPAddress: IPv4Address = .any,
        relayAgentIPAddress: IPv4Address = .any,
        options: DHCPOptions = DHCPOptions()
    ) {
        self.init(
            operation: operation,
            hardwareType: DHCPMessage.hardwareTypeEthernet,
            hardwareAddressLength: 6,
            hops: 0,
            transactionID: transactionID,
            seconds: seconds,
            flags: flags,
            clientIPAddress: clientIPAddress,
            yourIPAddress: yourIPAddress,
            serverIPAddress: serverIPAddress,
            relayAgentIPAddress: relayAgentIPAddress,
            clientHardwareAddress: (0..<6).map { clientMAC[octet: $0] } + [UInt8](repeating: 0, count: 10),
            serverName: [],
            bootFileName: [],
            messageType: messageType,
            options: options
        )
    }

    /// True when the client asked for broadcast replies (RFC 2131 §4.1: it cannot receive unicast IP datagrams
    /// before its address is configured).
    public var broadcast: Bool {
        get { flags & DHCPMessage.broadcastFlag != 0 }
        set { flags = newValue ? flags | DHCPMessage.broadcastFlag : flags & ~DHCPMessage.broadcastFlag }
    }

    /// The client's MAC from `chaddr`, or nil unless `htype` is Ethernet and `hlen` is 6.
    public var clientMAC: MACAddress? {
        guard hardwareType == DHCPMessage.hardwareTypeEthernet, hardwareAddressLength == 6,
            clientHardwareAddress.count >= 6
        else { return nil }
        let c = clientHardwareAddress
        return MACAddress(c[0], c[1], c[2], c[3], c[4], c[5])
    }

    // MARK: Parsing

    /// Decodes a DHCP message (the UDP payload).
    /// - Parameter bytes: the message, exactly the UDP data (anything after the END option is ignored).
    /// - Returns: the message, or why it was rejected: `.truncatedMessage`, `.badOperation`,
    ///   `.badHardwareAddressLength`, `.badMagicCookie`, or an option error from `DHCPOptions.parse`.
    public static func parse(_ bytes: RawSpan) -> Result<DHCPMessage, DHCPDropReason> {
        guard bytes.byteCount >= optionsOffset else { return .failure(.truncatedMessage) }
        guard let operation = BOOTPOperation(rawValue: bytes.vxU8(Offset.operation)) else {
            return .failure(.badOperation)
        }
        let hardwareAddressLength = bytes.vxU8(Offset.hardwareAddressLength)
        guard Int(hardwareAddressLength) <= clientHardwareAddressSize else {
            return .failure(.badHardwareAddressLength)
        }
        guard bytes.vxBE32(Offset.magicCookie) == magicCookie else { return .failure(.badMagicCookie) }
        let parsed: DHCPOptions.Parsed
        switch DHCPOptions.parse(bytes.extracting(optionsOffset...)) {
        case .failure(let reason): return .failure(reason)
        case .success(let p): parsed = p
        }
        return .success(
            DHCPMessage(
                operation: operation,
                hardwareType: bytes.vxU8(Offset.hardwareType),
                hardwareAddressLength: hardwareAddressLength,
                hops: bytes.vxU8(Offset.hops),
                transactionID: bytes.vxBE32(Offset.transactionID),
                seconds: bytes.vxBE16(Offset.seconds),
                flags: bytes.vxBE16(Offset.flags),
                clientIPAddress: IPv4Address(value: bytes.vxBE32(Offset.clientIPAddress)),
                yourIPAddress: IPv4Address(value: bytes.vxBE32(Offset.yourIPAddress)),
                serverIPAddress: IPv4Address(value: bytes.vxBE32(Offset.serverIPAddress)),
                relayAgentIPAddress: IPv4Address(value: bytes.vxBE32(Offset.relayAgentIPAddress)),
                clientHardwareAddress: bytes.vxBytes(
                    at: Offset.clientHardwareAddress,
                    count: clientHardwareAddressSize
                ),
                serverName: trimmingTrailingZeros(bytes.vxBytes(at: Offset.serverName, count: serverNameSize)),
                bootFileName: trimmingTrailingZeros(bytes.vxBytes(at: Offset.bootFileName, count: bootFileNameSize)),
                messageType: parsed.messageType,
                options: parsed.options
            )
        )
    }

    /// Memberwise, for the parser: no normalisation.
    init(
        operation: BOOTPOperation,
        hardwareType: UInt8,
        hardwareAddressLength: UInt8,
        hops: UInt8,
        transactionID: UInt32,
        seconds: UInt16,
        flags: UInt16,
        clientIPAddress: IPv4Address,
        yourIPAddress: IPv4Address,
        serverIPAddress: IPv4Address,
        relayAgentIPAddress: IPv4Address,
        clientHardwareAddress: [UInt8],
        serverName: [UInt8],
        bootFileName: [UInt8],
        messageType: DHCPMessageType,
        options: DHCPOptions
    ) {
        self.operation = operation
        self.hardwareType = hardwareType
        self.hardwareAddressLength = hardwareAddressLength
        self.hops = hops
        self.transactionID = transactionID
        self.seconds = seconds
        self.flags = flags
        self.clientIPAddress = clientIPAddress
        self.yourIPAddress = yourIPAddress
        self.serverIPAddress = serverIPAddress
        self.relayAgentIPAddress = relayAgentIPAddress
        self.clientHardwareAddress = clientHardwareAddress
        self.serverName = serverName
        self.bootFileName = bootFileName
        self.messageType = messageType
        self.options = options
    }

    private static func trimmingTrailingZeros(_ bytes: [UInt8]) -> [UInt8] {
        guard let last = bytes.lastIndex(where: { $0 != 0 }) else { return [] }
        return Array(bytes[...last])
    }

    // MARK: Encoding

    /// The encoded size in bytes: header, cookie, options, END, then PAD up to `minimumSize`.
    /// - Parameter minimumSize: pad to at least this many bytes (`minimumReplySize` for replies, 0 for none).
    public func encodedLength(minimumSize: Int = DHCPMessage.minimumReplySize) -> Int {
        Swift.max(minimumSize, DHCPMessage.optionsOffset + options.encodedLength(messageType: messageType) + 1)
    }

    /// Encodes the message at `offset`. `chaddr`, `sname` and `file` are truncated to their field sizes and
    /// zero-padded.
    /// - Parameters:
    ///   - bytes: destination; must hold `encodedLength(minimumSize:)` bytes from `offset` (traps otherwise).
    ///   - offset: where `op` goes.
    ///   - minimumSize: pad with PAD (0) options after END up to this many bytes.
    /// - Returns: bytes written (`encodedLength(minimumSize:)`).
    @discardableResult
    public func write(
        into bytes: inout MutableRawSpan,
        at offset: Int = 0,
        minimumSize: Int = DHCPMessage.minimumReplySize
    ) -> Int {
        let length = encodedLength(minimumSize: minimumSize)
        precondition(bytes.byteCount - offset >= length, "buffer too small for the DHCP message")
        bytes.vxZero(at: offset, count: length)
        bytes.vxStoreU8(operation.rawValue, at: offset + Offset.operation)
        bytes.vxStoreU8(hardwareType, at: offset + Offset.hardwareType)
        bytes.vxStoreU8(hardwareAddressLength, at: offset + Offset.hardwareAddressLength)
        bytes.vxStoreU8(hops, at: offset + Offset.hops)
        bytes.vxStoreBE32(transactionID, at: offset + Offset.transactionID)
        bytes.vxStoreBE16(seconds, at: offset + Offset.seconds)
        bytes.vxStoreBE16(flags, at: offset + Offset.flags)
        bytes.vxStoreBE32(clientIPAddress.value, at: offset + Offset.clientIPAddress)
        bytes.vxStoreBE32(yourIPAddress.value, at: offset + Offset.yourIPAddress)
        bytes.vxStoreBE32(serverIPAddress.value, at: offset + Offset.serverIPAddress)
        bytes.vxStoreBE32(relayAgentIPAddress.value, at: offset + Offset.relayAgentIPAddress)
        bytes.vxStoreBytes(
            Array(clientHardwareAddress.prefix(DHCPMessage.clientHardwareAddressSize)),
            at: offset + Offset.clientHardwareAddress
        )
        bytes.vxStoreBytes(Array(serverName.prefix(DHCPMessage.serverNameSize)), at: offset + Offset.serverName)
        bytes.vxStoreBytes(Array(bootFileName.prefix(DHCPMessage.bootFileNameSize)), at: offset + Offset.bootFileName)
        bytes.vxStoreBE32(DHCPMessage.magicCookie, at: offset + Offset.magicCookie)
        var cursor = offset + DHCPMessage.optionsOffset
        cursor += options.write(into: &bytes, at: cursor, messageType: messageType)
        bytes.vxStoreU8(DHCPOptionCode.end, at: cursor)
        return length
    }

    /// The encoded message as an array.
    /// - Parameter minimumSize: see `write(into:at:minimumSize:)`.
    public func encoded(minimumSize: Int = DHCPMessage.minimumReplySize) -> [UInt8] {
        var storage = [UInt8](repeating: 0, count: encodedLength(minimumSize: minimumSize))
        var span = storage.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        write(into: &bytes, minimumSize: minimumSize)
        return storage
    }
}
