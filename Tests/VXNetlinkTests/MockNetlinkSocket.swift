// The in-memory twin of KernelNetlinkSocket (containerization's MockNetlinkSocket, STYLE §11), plus builders for
// the replies a kernel sends, and hex helpers.
//
// The mock records every request. Replies come from a queue the test fills (`queue`), or, when a `responder` is
// set, from the responder, which sees each decoded request as it is sent: that is how the placement tests play
// a kernel that answers lookups and ACKs and fails exactly one chosen step.

import Testing
import VXPacket

@testable import VXNetlink

/// A NetlinkSocket that talks to a script instead of the kernel.
final class MockNetlinkSocket: NetlinkSocket {
    let portID: UInt32
    /// Every request sent, in order, as bytes.
    private(set) var sent: [[UInt8]] = []
    /// Datagrams waiting to be received.
    var queue: [[UInt8]] = []
    /// Called with each request as it is sent; whatever it returns is queued.
    var responder: ((NetlinkMessage) -> [[UInt8]])?

    init(portID: UInt32 = 0x1234_5678) {
        self.portID = portID
    }

    /// The requests sent, decoded (each datagram holds exactly one).
    var requests: [NetlinkMessage] {
        sent.map { bytes in
            guard case .success(let messages) = NetlinkMessage.split(datagram: bytes), messages.count == 1 else {
                preconditionFailure("the session sent a malformed request")
            }
            return messages[0]
        }
    }

    func send(_ message: [UInt8]) throws(NetlinkError) {
        sent.append(message)
        if let responder, case .success(let messages) = NetlinkMessage.split(datagram: message) {
            for request in messages { queue.append(contentsOf: responder(request)) }
        }
    }

    func receive() throws(NetlinkError) -> [UInt8] {
        guard !queue.isEmpty else {
            throw NetlinkError(.timedOut, operation: "recv", detail: "mock: no reply queued")
        }
        return queue.removeFirst()
    }
}

/// Builders for kernel replies, host byte order, the way the kernel lays them out.
enum KernelReply {
    /// A whole message: nlmsghdr + payload (payload padded to 4 bytes).
    static func message(
        _ type: NetlinkMessageType,
        flags: NetlinkFlags = [],
        sequence: UInt32,
        portID: UInt32,
        payload: [UInt8]
    ) -> [UInt8] {
        var writer = ByteWriter()
        writer.appendHost(UInt32(NetlinkLayout.headerSize + NetlinkLayout.aligned(payload.count)))
        writer.appendHost(type.rawValue)
        writer.appendHost(flags.rawValue)
        writer.appendHost(sequence)
        writer.appendHost(portID)
        writer.bytes.append(contentsOf: payload)
        writer.padToAlignment()
        return writer.bytes
    }

    /// NLMSG_ERROR with error 0 and the request's header echoed (NLM_F_CAPPED, as for every ACK).
    static func ack(to request: NetlinkMessage) -> [UInt8] {
        error(0, to: request)
    }

    /// NLMSG_ERROR with `-errno`, capped, with an extended-ACK message when given.
    static func error(_ errno: Int32, to request: NetlinkMessage, extack: String? = nil) -> [UInt8] {
        var writer = ByteWriter()
        writer.appendHost(Int32(-errno))
        writer.appendHost(UInt32(NetlinkLayout.headerSize + request.payload.count))  // echoed nlmsg_len
        writer.appendHost(request.type.rawValue)
        writer.appendHost(request.flags.rawValue)
        writer.appendHost(request.sequence)
        writer.appendHost(request.portID)
        var flags: NetlinkFlags = .capped
        if let extack {
            flags.insert(.ackTLVs)
            NetlinkAttribute.string(ExtendedAckAttribute.message, extack).encode(into: &writer)
        }
        return message(.error, flags: flags, sequence: request.sequence, portID: request.portID, payload: writer.bytes)
    }

    /// An RTM_NEWLINK payload: ifinfomsg + IFLA_IFNAME, IFLA_MTU, IFLA_ADDRESS.
    static func linkPayload(_ link: LinkInfo) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(contentsOf: [NetlinkFamily.unspecified, 0])  // ifi_family, __ifi_pad
        writer.appendHost(link.hardwareType)  // ifi_type
        writer.appendHost(link.index)  // ifi_index
        writer.appendHost(link.flags.rawValue)  // ifi_flags
        writer.appendHost(UInt32(0))  // ifi_change
        NetlinkAttribute.string(LinkAttribute.name, link.name).encode(into: &writer)
        NetlinkAttribute.uint32(LinkAttribute.mtu, link.mtu).encode(into: &writer)
        if let mac = link.mac { NetlinkAttribute.mac(LinkAttribute.address, mac).encode(into: &writer) }
        return writer.bytes
    }

    /// The answer to a GETLINK by name or index: the link, then the ACK, in one datagram.
    static func link(_ link: LinkInfo, to request: NetlinkMessage) -> [UInt8] {
        message(.newLink, sequence: request.sequence, portID: request.portID, payload: linkPayload(link))
            + ack(to: request)
    }

    /// NLMSG_DONE with error 0 (or `-errno`).
    static func done(to request: NetlinkMessage, errno: Int32 = 0) -> [UInt8] {
        var writer = ByteWriter()
        writer.appendHost(Int32(-errno))
        return message(.done, flags: .multi, sequence: request.sequence, portID: request.portID, payload: writer.bytes)
    }
}

extension Array where Element == UInt8 {
    /// Bytes from hex text; spaces are ignored, so fixtures can be grouped by field.
    init(hex: String) {
        let digits = hex.filter { !$0.isWhitespace }
        precondition(digits.count % 2 == 0, "odd number of hex digits")
        var bytes: [UInt8] = []
        var index = digits.startIndex
        while index != digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            bytes.append(UInt8(digits[index..<next], radix: 16)!)
            index = next
        }
        self = bytes
    }

    /// Lowercase hex, no separators.
    var hex: String {
        map { byte in
            let text = String(byte, radix: 16)
            return text.count == 1 ? "0" + text : text
        }.joined()
    }
}

/// Removes the spaces of a grouped hex fixture.
func compact(_ hex: String) -> String { hex.filter { !$0.isWhitespace } }

/// The fixtures are written for a little-endian host (x86_64 and arm64 Linux, where this runs).
let isLittleEndianHost: Bool = {
    #if _endian(little)
    return true
    #else
    return false
    #endif
}()
