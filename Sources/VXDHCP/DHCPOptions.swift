import VXPacket

/// DHCP option codes (RFC 2132) that VXDHCP reads or writes.
public enum DHCPOptionCode {
    /// Pad (§3.1): one byte, no length.
    public static let pad: UInt8 = 0
    /// Subnet mask (§3.3).
    public static let subnetMask: UInt8 = 1
    /// Router list (§3.5).
    public static let router: UInt8 = 3
    /// Domain name server list (§3.8).
    public static let domainNameServer: UInt8 = 6
    /// Host name (§3.14).
    public static let hostName: UInt8 = 12
    /// Requested IP address (§9.1).
    public static let requestedIPAddress: UInt8 = 50
    /// IP address lease time (§9.2).
    public static let leaseTime: UInt8 = 51
    /// Option overload (§9.3): options continue in `file` and/or `sname`. Not supported.
    public static let overload: UInt8 = 52
    /// DHCP message type (§9.6).
    public static let messageType: UInt8 = 53
    /// Server identifier (§9.7).
    public static let serverIdentifier: UInt8 = 54
    /// Parameter request list (§9.8).
    public static let parameterRequestList: UInt8 = 55
    /// Message (§9.9): text, e.g. why a NAK was sent.
    public static let message: UInt8 = 56
    /// Maximum DHCP message size (§9.10).
    public static let maximumMessageSize: UInt8 = 57
    /// Renewal (T1) time value (§9.11).
    public static let renewalTime: UInt8 = 58
    /// Rebinding (T2) time value (§9.12).
    public static let rebindingTime: UInt8 = 59
    /// Client identifier (§9.14).
    public static let clientIdentifier: UInt8 = 61
    /// End (§3.2): one byte, no length.
    public static let end: UInt8 = 255
}

/// An option VXDHCP has no typed field for: its code and its data (after RFC 3396 concatenation).
public struct DHCPOption: Hashable, Sendable {
    /// The option code; never a typed code, PAD, END or overload.
    public var code: UInt8
    /// The option data.
    public var data: [UInt8]

    /// - Parameters:
    ///   - code: the option code.
    ///   - data: the option data.
    public init(code: UInt8, data: [UInt8]) {
        self.code = code
        self.data = data
    }
}

/// The options of a DHCP message other than the message type (RFC 2132), typed where the server needs them.
///
/// Wire format (RFC 2132 §2): PAD (0) and END (255) are single bytes; every other option is `code, len, data`.
/// An option that appears more than once is one option whose data is the concatenation, in order (RFC 3396 §5,
/// "long options"), so values longer than 255 bytes are split on encoding and joined on parsing.
///
/// Typed options are validated on parsing (`.badOptionLength` when the length is wrong for the code: 4 for
/// addresses and 32-bit times, 2 for the maximum message size, a non-zero multiple of 4 for address lists, at
/// least 1 for names and lists, at least 2 for the client identifier, RFC 2132 §9.14). `nil` (or an empty list)
/// means absent; empty values are never encoded. Encoding writes options in one fixed order (53, 54, 51, 58, 59,
/// 1, 3, 6, 12, 50, 55, 57, 56, 61, then `other` as stored), so replies are byte-for-byte reproducible.
public struct DHCPOptions: Hashable, Sendable {
    /// Option 1: subnet mask.
    public var subnetMask: IPv4Address?
    /// Option 3: routers, in order of preference; empty when absent.
    public var routers: [IPv4Address]
    /// Option 6: DNS servers, in order of preference; empty when absent.
    public var domainNameServers: [IPv4Address]
    /// Option 12: the client's host name, as sent (not necessarily UTF-8).
    public var hostName: [UInt8]?
    /// Option 50: the address a client asks for (SELECTING, INIT-REBOOT, DECLINE).
    public var requestedIPAddress: IPv4Address?
    /// Option 51: lease time in seconds.
    public var leaseTime: UInt32?
    /// Option 54: the server identifier (the address of the server that sent or should handle the message).
    public var serverIdentifier: IPv4Address?
    /// Option 55: the option codes the client asks for, in its order of preference.
    public var parameterRequestList: [UInt8]?
    /// Option 56: a text message (a NAK's reason).
    public var message: [UInt8]?
    /// Option 57: the largest DHCP message the client accepts, in bytes.
    public var maximumMessageSize: UInt16?
    /// Option 58: renewal time T1 in seconds.
    public var renewalTime: UInt32?
    /// Option 59: rebinding time T2 in seconds.
    public var rebindingTime: UInt32?
    /// Option 61: the client identifier (type byte then identifier; RFC 2132 §9.14).
    public var clientIdentifier: [UInt8]?
    /// Every other option, in the order first seen.
    public var other: [DHCPOption]

    /// Builds an option set; all options absent by default.
    public init(
        subnetMask: IPv4Address? = nil,
        routers: [IPv4Address] = [],
        domainNameServers: [IPv4Address] = [],
        hostName: [UInt8]? = nil,
        requestedIPAddress: IPv4Address? = nil,
        leaseTime: UInt32? = nil,
        serverIdentifier: IPv4Address? = nil,
        parameterRequestList: [UInt8]? = nil,
        message: [UInt8]? = nil,
        maximumMessageSize: UInt16? = nil,
        renewalTime: UInt32? = nil,
        rebindingTime: UInt32? = nil,
        clientIdentifier: [UInt8]? = nil,
        other: [DHCPOption] = []
    ) {
        self.subnetMask = subnetMask
        self.routers = routers
        self.domainNameServers = domainNameServers
        self.hostName = hostName
        self.requestedIPAddress = requestedIPAddress
        self.leaseTime = leaseTime
        self.serverIdentifier = serverIdentifier
        self.parameterRequestList = parameterRequestList
        self.message = message
        self.maximumMessageSize = maximumMessageSize
        self.renewalTime = renewalTime
        self.rebindingTime = rebindingTime
        self.clientIdentifier = clientIdentifier
        self.other = other
    }

    /// The host name as text (invalid UTF-8 repaired), or nil.
    public var hostNameText: String? {
        hostName.map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: Parsing

    /// What `parse` returns: the message type and the rest.
    struct Parsed {
        var messageType: DHCPMessageType
        var options: DHCPOptions
    }

    /// Walks the options field: collects each code's data (concatenating repeats), then types them.
    /// - Parameter bytes: from the first option to the end of the message.
    /// - Returns: the options, or `.truncatedOption`, `.badOptionLength`, `.optionOverloadUnsupported`,
    ///   `.missingMessageType`, `.unknownMessageType`.
    static func parse(_ bytes: RawSpan) -> Result<Parsed, DHCPDropReason> {
        var order: [UInt8] = []
        var data: [UInt8: [UInt8]] = [:]
        var offset = 0
        // A missing END is tolerated (as ISC dhcpd and dnsmasq do): the options stop at the end of the datagram,
        // whose length the UDP header and checksum have already vouched for.
        while offset < bytes.byteCount {
            let code = bytes.vxU8(offset)
            if code == DHCPOptionCode.pad {
                offset += 1
                continue
            }
            if code == DHCPOptionCode.end { break }
            guard offset + 2 <= bytes.byteCount else { return .failure(.truncatedOption) }
            let length = Int(bytes.vxU8(offset + 1))
            guard offset + 2 + length <= bytes.byteCount else { return .failure(.truncatedOption) }
            if data[code] == nil { order.append(code) }
            data[code, default: []] += bytes.vxBytes(at: offset + 2, count: length)
            offset += 2 + length
        }
        guard data[DHCPOptionCode.overload] == nil else { return .failure(.optionOverloadUnsupported) }
        guard let typeData = data[DHCPOptionCode.messageType] else { return .failure(.missingMessageType) }
        guard typeData.count == 1 else { return .failure(.badOptionLength) }
        guard let messageType = DHCPMessageType(rawValue: typeData[0]) else { return .failure(.unknownMessageType) }

        var options = DHCPOptions()
        for code in order {
            let value = data[code]!
            switch code {
            case DHCPOptionCode.messageType:
                continue
            case DHCPOptionCode.subnetMask:
                guard let v = address(value) else { return .failure(.badOptionLength) }
                options.subnetMask = v
            case DHCPOptionCode.router:
                guard let v = addressList(value) else { return .failure(.badOptionLength) }
                options.routers = v
            case DHCPOptionCode.domainNameServer:
                guard let v = addressList(value) else { return .failure(.badOptionLength) }
                options.domainNameServers = v
            case DHCPOptionCode.hostName:
                guard !value.isEmpty else { return .failure(.badOptionLength) }
                options.hostName = value
            case DHCPOptionCode.requestedIPAddress:
                guard let v = address(value) else { return .failure(.badOptionLength) }
                options.requestedIPAddress = v
            case DHCPOptionCode.leaseTime:
                guard let v = uint32(value) else { return .failure(.badOptionLength) }
                options.leaseTime = v
            case DHCPOptionCode.serverIdentifier:
                guard let v = address(value) else { return .failure(.badOptionLength) }
                options.serverIdentifier = v
            case DHCPOptionCode.parameterRequestList:
                guard !value.isEmpty else { return .failure(.badOptionLength) }
                options.parameterRequestList = value
            case DHCPOptionCode.message:
                guard !value.isEmpty else { return .failure(.badOptionLength) }
                options.message = value
            case DHCPOptionCode.maximumMessageSize:
                guard value.count == 2 else { return .failure(.badOptionLength) }
                options.maximumMessageSize = UInt16(value[0]) << 8 | UInt16(value[1])
            case DHCPOptionCode.renewalTime:
                guard let v = uint32(value) else { return .failure(.badOptionLength) }
                options.renewalTime = v
            case DHCPOptionCode.rebindingTime:
                guard let v = uint32(value) else { return .failure(.badOptionLength) }
                options.rebindingTime = v
            case DHCPOptionCode.clientIdentifier:
                guard value.count >= 2 else { return .failure(.badOptionLength) }
                options.clientIdentifier = value
            default:
                options.other.append(DHCPOption(code: code, data: value))
            }
        }
        return .success(Parsed(messageType: messageType, options: options))
    }

    private static func uint32(_ b: [UInt8]) -> UInt32? {
        guard b.count == 4 else { return nil }
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }

    private static func address(_ b: [UInt8]) -> IPv4Address? {
        uint32(b).map(IPv4Address.init(value:))
    }

    private static func addressList(_ b: [UInt8]) -> [IPv4Address]? {
        guard !b.isEmpty, b.count % 4 == 0 else { return nil }
        return stride(from: 0, to: b.count, by: 4).map { address(Array(b[$0..<$0 + 4]))! }
    }

    // MARK: Encoding

    /// Every option to encode, as (code, data), in the fixed encoding order; empty values are left out.
    func encodingList(messageType: DHCPMessageType) -> [(code: UInt8, data: [UInt8])] {
        func be32(_ v: UInt32) -> [UInt8] {
            [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
        }
        var list: [(code: UInt8, data: [UInt8])] = [(DHCPOptionCode.messageType, [messageType.rawValue])]
        func add(_ code: UInt8, _ data: [UInt8]?) {
            if let data, !data.isEmpty { list.append((code, data)) }
        }
        add(DHCPOptionCode.serverIdentifier, serverIdentifier.map { be32($0.value) })
        add(DHCPOptionCode.leaseTime, leaseTime.map(be32))
        add(DHCPOptionCode.renewalTime, renewalTime.map(be32))
        add(DHCPOptionCode.rebindingTime, rebindingTime.map(be32))
        add(DHCPOptionCode.subnetMask, subnetMask.map { be32($0.value) })
        add(DHCPOptionCode.router, routers.flatMap { be32($0.value) })
        add(DHCPOptionCode.domainNameServer, domainNameServers.flatMap { be32($0.value) })
        add(DHCPOptionCode.hostName, hostName)
        add(DHCPOptionCode.requestedIPAddress, requestedIPAddress.map { be32($0.value) })
        add(DHCPOptionCode.parameterRequestList, parameterRequestList)
        add(DHCPOptionCode.maximumMessageSize, maximumMessageSize.map { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
        add(DHCPOptionCode.message, message)
        add(DHCPOptionCode.clientIdentifier, clientIdentifier)
        for option in other { add(option.code, option.data) }
        return list
    }

    /// Encoded bytes of all options including the message type, excluding END.
    func encodedLength(messageType: DHCPMessageType) -> Int {
        encodingList(messageType: messageType).reduce(0) { total, option in
            // Each 255-byte piece costs two header bytes (RFC 3396 §6).
            total + option.data.count + 2 * ((option.data.count + 254) / 255)
        }
    }

    /// Writes all options including the message type, excluding END, splitting values over 255 bytes.
    /// - Returns: bytes written.
    func write(into bytes: inout MutableRawSpan, at offset: Int, messageType: DHCPMessageType) -> Int {
        var cursor = offset
        for option in encodingList(messageType: messageType) {
            var start = 0
            while start < option.data.count {
                let piece = Swift.min(255, option.data.count - start)
                bytes.vxStoreU8(option.code, at: cursor)
                bytes.vxStoreU8(UInt8(piece), at: cursor + 1)
                bytes.vxStoreBytes(Array(option.data[start..<start + piece]), at: cursor + 2)
                cursor += 2 + piece
                start += piece
            }
        }
        return cursor - offset
    }
}
