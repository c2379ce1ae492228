// Netlink messages and attributes on byte buffers, in pure Swift: no sockets, no pointers, so every request
// and every reply shape is testable byte for byte (Tests/VXNetlinkTests/MessageEncodingTests.swift).
//
//   struct nlmsghdr (16 B, host byte order)          struct rtattr / nlattr (4 B, host byte order)
//   +--------------------------------------+         +------------------+------------------+
//   | nlmsg_len   u32  header + payload    |         | len u16 (hdr+data)| type u16        |
//   | nlmsg_type  u16  | nlmsg_flags u16   |         +------------------+------------------+
//   | nlmsg_seq   u32                      |         | data, then zero padding to 4 bytes  |
//   | nlmsg_pid   u32  sender's port id    |         +-------------------------------------+
//   +--------------------------------------+
//   | family header (ifinfomsg, ...)       |   rtattr.len counts the header and the data but not the padding;
//   | attributes, each 4-byte aligned      |   nlmsg_len counts everything, including the last attribute's
//   +--------------------------------------+   padding (the kernel's nlmsg_end does the same).
//
// Decoding never traps and never throws: a buffer that does not hold what its lengths claim gives nil or a
// `NetlinkDecodingFailure`, which the session turns into `NetlinkError.malformedReply` (STYLE §6).

/// Appends integers to a byte buffer in a named byte order.
import VXPacket

struct ByteWriter {
    /// The bytes written so far.
    var bytes: [UInt8] = []

    /// Appends `value` in the host's byte order (netlink headers and integer attributes).
    mutating func appendHost<T: FixedWidthInteger>(_ value: T) {
        #if _endian(little)
        appendLittle(value)
        #else
        appendBig(value)
        #endif
    }

    /// Appends `value` most significant byte first (network byte order: addresses in attributes).
    mutating func appendBig<T: FixedWidthInteger>(_ value: T) {
        let width = T.bitWidth / 8
        for index in stride(from: width - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: value >> (index * 8)))
        }
    }

    mutating func appendLittle<T: FixedWidthInteger>(_ value: T) {
        let width = T.bitWidth / 8
        for index in 0..<width {
            bytes.append(UInt8(truncatingIfNeeded: value >> (index * 8)))
        }
    }

    /// Appends zero bytes up to the next 4-byte boundary.
    mutating func padToAlignment() {
        let target = NetlinkLayout.aligned(bytes.count)
        bytes.append(contentsOf: repeatElement(0, count: target - bytes.count))
    }

    /// Overwrites the 4 bytes at `offset` with `value` in host byte order (nlmsg_len once the body is known).
    mutating func setHost(_ value: UInt32, at offset: Int) {
        var patch = ByteWriter()
        patch.appendHost(value)
        bytes.replaceSubrange(offset..<offset + 4, with: patch.bytes)
    }
}

/// Reads integers out of a byte buffer, bounds-checked: every read returns nil past the end.
struct ByteReader {
    /// The buffer; indices are 0-based offsets into it.
    let bytes: [UInt8]

    /// `T` at `offset` in the host's byte order, or nil if the buffer is too short.
    func host<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        #if _endian(little)
        return little(T.self, at: offset)
        #else
        return big(T.self, at: offset)
        #endif
    }

    /// `T` at `offset`, most significant byte first (network byte order), or nil if the buffer is too short.
    func big<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let width = T.bitWidth / 8
        guard offset >= 0, offset <= bytes.count - width else { return nil }
        var value: T = 0
        for index in 0..<width { value = value << 8 | T(truncatingIfNeeded: bytes[offset + index]) }
        return value
    }

    func little<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        let width = T.bitWidth / 8
        guard offset >= 0, offset <= bytes.count - width else { return nil }
        var value: T = 0
        for index in stride(from: width - 1, through: 0, by: -1) {
            value = value << 8 | T(truncatingIfNeeded: bytes[offset + index])
        }
        return value
    }
}

// MARK: - Attributes

/// One rtnetlink attribute (`struct rtattr`, the same layout as `struct nlattr`): a type and its data.
public struct NetlinkAttribute: Hashable, Sendable, CustomStringConvertible {
    /// The attribute type (IFLA_*, IFA_*, RTA_*, NLMSGERR_ATTR_*), without the NLA_F_NESTED/NET_BYTEORDER bits.
    public var type: UInt16
    /// The data, without the header and without padding.
    public var payload: [UInt8]

    /// - Parameters:
    ///   - type: the attribute type.
    ///   - payload: the data, unpadded.
    public init(type: UInt16, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    /// A u32 attribute, host byte order (IFLA_MTU, IFLA_NET_NS_FD, RTA_OIF, ...).
    public static func uint32(_ type: UInt16, _ value: UInt32) -> NetlinkAttribute {
        var writer = ByteWriter()
        writer.appendHost(value)
        return NetlinkAttribute(type: type, payload: writer.bytes)
    }

    /// A NUL-terminated string attribute (IFLA_IFNAME, IFA_LABEL).
    public static func string(_ type: UInt16, _ value: String) -> NetlinkAttribute {
        NetlinkAttribute(type: type, payload: Array(value.utf8) + [0])
    }

    /// An IPv4 address attribute, network byte order (IFA_LOCAL, RTA_GATEWAY, ...).
    public static func ipv4(_ type: UInt16, _ address: IPv4Address) -> NetlinkAttribute {
        var writer = ByteWriter()
        writer.appendBig(address.value)
        return NetlinkAttribute(type: type, payload: writer.bytes)
    }

    /// A 6-byte hardware address attribute, in wire order (IFLA_ADDRESS).
    public static func mac(_ type: UInt16, _ address: MACAddress) -> NetlinkAttribute {
        NetlinkAttribute(type: type, payload: (0..<6).map { address[octet: $0] })
    }

    /// Bytes this attribute takes in a message, padding included.
    public var encodedSize: Int { NetlinkLayout.aligned(NetlinkLayout.attributeHeaderSize + payload.count) }

    /// The data as a host-order u32, or nil unless it is exactly 4 bytes.
    public var uint32Value: UInt32? {
        payload.count == 4 ? ByteReader(bytes: payload).host(UInt32.self, at: 0) : nil
    }

    /// The data as a u8, or nil unless it is exactly 1 byte.
    public var uint8Value: UInt8? { payload.count == 1 ? payload[0] : nil }

    /// The data up to the first NUL (or all of it), as UTF-8 text.
    public var stringValue: String {
        let end = payload.firstIndex(of: 0) ?? payload.count
        return String(decoding: payload[..<end], as: UTF8.self)
    }

    /// The data as an IPv4 address in network byte order, or nil unless it is exactly 4 bytes.
    public var ipv4Value: IPv4Address? {
        payload.count == 4 ? ByteReader(bytes: payload).big(UInt32.self, at: 0).map(IPv4Address.init(value:)) : nil
    }

    /// The data as an Ethernet address, or nil unless it is exactly 6 bytes.
    public var macValue: MACAddress? {
        guard payload.count == 6 else { return nil }
        return MACAddress(payload[0], payload[1], payload[2], payload[3], payload[4], payload[5])
    }

    public var description: String { "attr(\(type), \(payload.count) B)" }

    /// Appends the attribute (header, data, padding) to `writer`.
    func encode(into writer: inout ByteWriter) {
        precondition(payload.count <= Int(UInt16.max) - NetlinkLayout.attributeHeaderSize, "attribute too long")
        writer.appendHost(UInt16(NetlinkLayout.attributeHeaderSize + payload.count))  // rta_len: no padding
        writer.appendHost(type)
        writer.bytes.append(contentsOf: payload)
        writer.padToAlignment()
    }

    /// Splits `bytes[range]` into attributes.
    ///
    /// Every attribute must have `len >= 4` and fit in the range; the padding of the last one may be missing
    /// (the kernel pads, but a message may end right after the data). The NLA_F_NESTED (0x8000) and
    /// NLA_F_NET_BYTEORDER (0x4000) bits are masked off the type.
    /// - Returns: the attributes in order, or nil when a length is inconsistent.
    public static func decodeAll(_ bytes: [UInt8], in range: Range<Int>) -> [NetlinkAttribute]? {
        let reader = ByteReader(bytes: bytes)
        var attributes: [NetlinkAttribute] = []
        var offset = range.lowerBound
        while offset < range.upperBound {
            guard range.upperBound - offset >= NetlinkLayout.attributeHeaderSize,
                let length = reader.host(UInt16.self, at: offset),
                let type = reader.host(UInt16.self, at: offset + 2),
                Int(length) >= NetlinkLayout.attributeHeaderSize,
                offset + Int(length) <= range.upperBound
            else { return nil }
            let data = Array(bytes[(offset + NetlinkLayout.attributeHeaderSize)..<(offset + Int(length))])
            attributes.append(NetlinkAttribute(type: type & 0x3FFF, payload: data))
            offset += NetlinkLayout.aligned(Int(length))
        }
        return attributes
    }
}

extension Array where Element == NetlinkAttribute {
    /// The first attribute of `type`, or nil.
    public func attribute(_ type: UInt16) -> NetlinkAttribute? { first { $0.type == type } }
}

// MARK: - Requests

/// A request before its sequence number and port id are known: the session stamps those when it sends.
public struct NetlinkRequest: Hashable, Sendable, CustomStringConvertible {
    /// nlmsg_type.
    public var type: NetlinkMessageType
    /// nlmsg_flags; always includes `.request`.
    public var flags: NetlinkFlags
    /// The family header (ifinfomsg, ifaddrmsg, rtmsg), already encoded.
    public var familyHeader: [UInt8]
    /// The attributes after the family header, in order.
    public var attributes: [NetlinkAttribute]
    /// What the request does, for errors and logs ("set mtu 1400 on ifindex 5").
    public var operation: String

    /// - Parameters:
    ///   - type: nlmsg_type.
    ///   - flags: nlmsg_flags; `.request` is added.
    ///   - familyHeader: the encoded family header.
    ///   - attributes: attributes in order.
    ///   - operation: a short human description.
    public init(
        type: NetlinkMessageType,
        flags: NetlinkFlags,
        familyHeader: [UInt8],
        attributes: [NetlinkAttribute] = [],
        operation: String
    ) {
        self.type = type
        self.flags = flags.union(.request)
        self.familyHeader = familyHeader
        self.attributes = attributes
        self.operation = operation
    }

    /// True for GET requests with NLM_F_DUMP: answered by NLM_F_MULTI parts and NLMSG_DONE, not by an ACK.
    public var isDump: Bool { flags.isSuperset(of: .dump) }

    public var description: String { "\(type) \(operation)" }

    /// The complete message: header, family header, attributes.
    /// - Parameters:
    ///   - sequence: nlmsg_seq; replies echo it.
    ///   - portID: nlmsg_pid, the sender's port id (the kernel does not rely on it; we send ours, as
    ///     containerization does, and the kernel echoes it in error replies).
    /// - Returns: the bytes to send, nlmsg_len filled in.
    public func encoded(sequence: UInt32, portID: UInt32) -> [UInt8] {
        var writer = ByteWriter()
        writer.appendHost(UInt32(0))  // nlmsg_len, patched below
        writer.appendHost(type.rawValue)  // nlmsg_type
        writer.appendHost(flags.rawValue)  // nlmsg_flags
        writer.appendHost(sequence)  // nlmsg_seq
        writer.appendHost(portID)  // nlmsg_pid
        writer.bytes.append(contentsOf: familyHeader)
        writer.padToAlignment()
        for attribute in attributes { attribute.encode(into: &writer) }
        writer.setHost(UInt32(writer.bytes.count), at: 0)
        return writer.bytes
    }
}

// MARK: - Replies

/// One message of a datagram the kernel sent: header fields and the payload after the 16-byte header.
public struct NetlinkMessage: Hashable, Sendable {
    /// nlmsg_type.
    public var type: NetlinkMessageType
    /// nlmsg_flags.
    public var flags: NetlinkFlags
    /// nlmsg_seq: the sequence number of the request this answers.
    public var sequence: UInt32
    /// nlmsg_pid: the port id of the socket it is addressed to (ours), 0 for the kernel's own notifications.
    public var portID: UInt32
    /// Everything after the header, up to nlmsg_len (family header and attributes).
    public var payload: [UInt8]

    public init(type: NetlinkMessageType, flags: NetlinkFlags, sequence: UInt32, portID: UInt32, payload: [UInt8]) {
        self.type = type
        self.flags = flags
        self.sequence = sequence
        self.portID = portID
        self.payload = payload
    }

    /// Splits one received datagram into messages.
    ///
    /// Each message needs nlmsg_len >= 16 and must fit in the datagram; the next one starts at the 4-byte aligned
    /// end. Trailing bytes shorter than a header are rejected too: the kernel never sends them.
    /// - Returns: the messages, or why the datagram is malformed.
    public static func split(datagram bytes: [UInt8]) -> Result<[NetlinkMessage], NetlinkDecodingFailure> {
        let reader = ByteReader(bytes: bytes)
        var messages: [NetlinkMessage] = []
        var offset = 0
        if bytes.isEmpty { return .failure(.empty) }
        while offset < bytes.count {
            guard let length = reader.host(UInt32.self, at: offset),
                let type = reader.host(UInt16.self, at: offset + 4),
                let flags = reader.host(UInt16.self, at: offset + 6),
                let sequence = reader.host(UInt32.self, at: offset + 8),
                let portID = reader.host(UInt32.self, at: offset + 12)
            else { return .failure(.truncatedHeader(offset: offset, available: bytes.count - offset)) }
            guard length >= UInt32(NetlinkLayout.headerSize), Int(length) <= bytes.count - offset else {
                return .failure(.badLength(offset: offset, length: length, available: bytes.count - offset))
            }
            let payload = Array(bytes[(offset + NetlinkLayout.headerSize)..<(offset + Int(length))])
            messages.append(
                NetlinkMessage(
                    type: NetlinkMessageType(rawValue: type),
                    flags: NetlinkFlags(rawValue: flags),
                    sequence: sequence,
                    portID: portID,
                    payload: payload
                )
            )
            offset += NetlinkLayout.aligned(Int(length))
        }
        return .success(messages)
    }

    /// What this message means to a requester: data, the end of a dump, an ACK, or an error.
    /// - Returns: the reply, or why an NLMSG_ERROR/NLMSG_DONE payload is malformed.
    public func reply() -> Result<NetlinkReply, NetlinkDecodingFailure> {
        switch type {
        case .error: return NetlinkReply.decodeError(self)
        case .done:
            // NLMSG_DONE carries an int: 0, or a negative errno when the dump itself failed. Old kernels
            // (and some families) send an empty payload; that is a plain end.
            guard !payload.isEmpty else { return .success(.done(errno: 0)) }
            guard let code = ByteReader(bytes: payload).host(Int32.self, at: 0) else {
                return .failure(.truncatedPayload(type: type, length: payload.count))
            }
            return .success(.done(errno: code < 0 ? -code : 0))
        case .noop: return .success(.noop)
        case .overrun: return .success(.overrun)
        default: return .success(.data(self))
        }
    }
}

/// The meaning of one reply message.
public enum NetlinkReply: Hashable, Sendable {
    /// A data message (RTM_NEWLINK for a link, ...).
    case data(NetlinkMessage)
    /// NLMSG_ERROR with error 0: the request succeeded. A warning from the kernel, if any, is attached.
    case ack(warning: String?)
    /// NLMSG_ERROR with a negative error: the request failed.
    case error(KernelError)
    /// NLMSG_DONE: the dump is complete; a non-zero errno means it failed partway.
    case done(errno: Int32)
    /// NLMSG_NOOP.
    case noop
    /// NLMSG_OVERRUN.
    case overrun

    /// An NLMSG_ERROR payload, decoded.
    ///
    ///   struct nlmsgerr { int error; struct nlmsghdr msg; } then, unless NLM_F_CAPPED, the rest of the echoed
    ///   request (msg.nlmsg_len - 16 bytes, padded), then, with NLM_F_ACK_TLVS, NLMSGERR_ATTR_* attributes.
    static func decodeError(_ message: NetlinkMessage) -> Result<NetlinkReply, NetlinkDecodingFailure> {
        let reader = ByteReader(bytes: message.payload)
        guard message.payload.count >= NetlinkLayout.errorSize,
            let error = reader.host(Int32.self, at: 0),
            let echoedLength = reader.host(UInt32.self, at: 4)
        else { return .failure(.truncatedPayload(type: .error, length: message.payload.count)) }
        guard error <= 0 else { return .failure(.positiveErrorCode(error)) }

        var extendedMessage: String? = nil
        var offset: UInt32? = nil
        if message.flags.contains(.ackTLVs) {
            // Where the attributes start: right after the echoed header when capped, else after the whole
            // echoed request.
            var start = NetlinkLayout.errorSize
            if !message.flags.contains(.capped) {
                guard echoedLength >= UInt32(NetlinkLayout.headerSize) else {
                    return .failure(.badLength(offset: 4, length: echoedLength, available: message.payload.count))
                }
                start = 4 + NetlinkLayout.aligned(Int(echoedLength))
            }
            guard start <= message.payload.count,
                let attributes = NetlinkAttribute.decodeAll(message.payload, in: start..<message.payload.count)
            else { return .failure(.badExtendedAck) }
            extendedMessage = attributes.attribute(ExtendedAckAttribute.message).map(\.stringValue)
            offset = attributes.attribute(ExtendedAckAttribute.offset)?.uint32Value
        }
        if error == 0 { return .success(.ack(warning: extendedMessage)) }
        return .success(.error(KernelError(errno: -error, message: extendedMessage, attributeOffset: offset)))
    }
}

/// A failure the kernel reported in NLMSG_ERROR.
public struct KernelError: Hashable, Sendable {
    /// The positive errno.
    public var errno: Int32
    /// The extended-ACK message (NLMSGERR_ATTR_MSG), when the kernel gave one.
    public var message: String?
    /// The offset of the offending attribute in the request (NLMSGERR_ATTR_OFFS), when given.
    public var attributeOffset: UInt32?

    public init(errno: Int32, message: String? = nil, attributeOffset: UInt32? = nil) {
        self.errno = errno
        self.message = message
        self.attributeOffset = attributeOffset
    }
}

/// Why received bytes are not a valid netlink reply.
public enum NetlinkDecodingFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// A zero-length datagram.
    case empty
    /// Fewer than 16 bytes left where a header should start.
    case truncatedHeader(offset: Int, available: Int)
    /// nlmsg_len (or the echoed length in an error) is below 16 or beyond the bytes received.
    case badLength(offset: Int, length: UInt32, available: Int)
    /// A message too short for what its type requires (an NLMSG_ERROR under 20 bytes, ...).
    case truncatedPayload(type: NetlinkMessageType, length: Int)
    /// An NLMSG_ERROR with a positive error code (the kernel sends 0 or a negative errno).
    case positiveErrorCode(Int32)
    /// Extended-ACK attributes whose lengths do not add up.
    case badExtendedAck
    /// A data message whose family header or attributes are malformed.
    case badPayload(type: NetlinkMessageType, reason: String)

    public var description: String {
        switch self {
        case .empty: return "empty datagram"
        case .truncatedHeader(let offset, let available):
            return "truncated header at offset \(offset) (\(available) bytes left, need 16)"
        case .badLength(let offset, let length, let available):
            return "bad length \(length) at offset \(offset) (\(available) bytes available)"
        case .truncatedPayload(let type, let length): return "\(type) payload of \(length) bytes is too short"
        case .positiveErrorCode(let code): return "NLMSG_ERROR with positive error \(code)"
        case .badExtendedAck: return "malformed extended-ACK attributes"
        case .badPayload(let type, let reason): return "malformed \(type): \(reason)"
        }
    }
}
