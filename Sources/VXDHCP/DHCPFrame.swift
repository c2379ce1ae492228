// DHCP frames on a local port: recognising a client's frame, and building the server's reply frame.
//
// Flow: the dataplane calls `DHCPClientFrame.isClientToServer` on frames that arrive on a local port (cheap, no
// allocation; it reads four header fields). For a match it hands the frame to the daemon's `DHCPServer` for that
// network (`handle(frame:now:)`), which classifies it fully (`DHCPClientFrame.classify`), decides, and returns a
// `DHCPReply`; the daemon writes `reply.write(into:)` (or `reply.frame`) and sends it out of the same port. The
// frame is consumed either way: DHCP to port 67 on a `--dhcp` network is never flooded, so servers on other
// hosts (each with its own range) never see it.

import VXPacket

/// The BOOTP/DHCP UDP ports (RFC 2131 §4.1).
public enum DHCPPort {
    /// The server port: clients send to it.
    public static let server: UInt16 = 67
    /// The client port: servers send to it.
    public static let client: UInt16 = 68
}

/// What `DHCPClientFrame.classify` made of a frame.
public enum DHCPFrameClassification: Hashable, Sendable {
    /// Not IPv4/UDP from port 68 to port 67 (or not even a valid IPv4 header): switch it as usual.
    case notDHCP
    /// A DHCP client datagram that cannot be used; drop it and count the reason.
    case malformed(DHCPDropReason)
    /// A parsed DHCP client frame.
    case client(DHCPClientFrame)
}

/// A DHCP message from a client, with the headers it arrived in.
public struct DHCPClientFrame: Hashable, Sendable {
    /// The Ethernet header (its VLAN tag, if any, is copied to the reply).
    public var ethernet: EthernetHeader
    /// The IPv4 header.
    public var ipv4: IPv4Header
    /// The DHCP message.
    public var message: DHCPMessage

    /// - Parameters: the frame's parts.
    public init(ethernet: EthernetHeader, ipv4: IPv4Header, message: DHCPMessage) {
        self.ethernet = ethernet
        self.ipv4 = ipv4
        self.message = message
    }

    /// The dataplane's test: Ethernet II (one optional 802.1Q tag), IPv4, UDP, source port 68, destination port
    /// 67. Reads fixed offsets only; checks nothing else (`classify` does).
    /// - Parameter frame: a frame from the destination MAC on.
    /// - Returns: true when the frame should go to the DHCP server instead of the switch.
    public static func isClientToServer(_ frame: RawSpan) -> Bool {
        guard frame.byteCount >= EthernetHeader.size else { return false }
        var l3 = EthernetHeader.size
        var etherType = frame.vxBE16(12)
        if etherType == EtherType.vlan.rawValue {
            guard frame.byteCount >= EthernetHeader.taggedSize else { return false }
            etherType = frame.vxBE16(16)
            l3 = EthernetHeader.taggedSize
        }
        guard etherType == EtherType.ipv4.rawValue, frame.byteCount >= l3 + IPv4Header.minimumSize else {
            return false
        }
        let versionIHL = frame.vxU8(l3)
        let headerLength = Int(versionIHL & 0x0F) * 4
        guard versionIHL >> 4 == 4, headerLength >= IPv4Header.minimumSize,
            frame.vxU8(l3 + 9) == IPProtocol.udp.rawValue,
            frame.vxBE16(l3 + 6) & 0x1FFF == 0,  // the first (or only) fragment carries the UDP header
            frame.byteCount >= l3 + headerLength + 4
        else { return false }
        return frame.vxBE16(l3 + headerLength) == DHCPPort.client && frame.vxBE16(l3 + headerLength + 2) == DHCPPort.server
    }

    /// Parses a frame completely: Ethernet, IPv4 (header checksum verified), UDP 68 → 67 (length checked,
    /// checksum verified unless zero, RFC 768), then the DHCP message.
    /// - Parameter frame: a frame from the destination MAC on; Ethernet padding after the datagram is ignored.
    /// - Returns: `.notDHCP`, `.malformed(reason)` or `.client(frame)`.
    public static func classify(_ frame: RawSpan) -> DHCPFrameClassification {
        guard case .success(let ethernet) = EthernetHeader.parse(frame), ethernet.etherType == .ipv4 else {
            return .notDHCP
        }
        let l3 = frame.extracting(ethernet.length...)
        guard case .success(let ipv4) = IPv4Header.parse(l3), ipv4.protocol == .udp, ipv4.hasTransportHeader else {
            return .notDHCP
        }
        let datagram = l3.extracting(ipv4.headerLength..<Int(ipv4.totalLength))
        guard datagram.byteCount >= 4, datagram.vxBE16(0) == DHCPPort.client, datagram.vxBE16(2) == DHCPPort.server else {
            return .notDHCP
        }
        guard !ipv4.isFragment else { return .malformed(.fragmented) }
        guard case .success(let udp) = UDPHeader.parse(datagram) else { return .malformed(.badUDPLength) }
        let segment = datagram.extracting(0..<Int(udp.length))
        if UDPHeader.verifyChecksum(segment: segment, source: ipv4.source, destination: ipv4.destination) != nil {
            return .malformed(.badUDPChecksum)
        }
        switch DHCPMessage.parse(segment.extracting(UDPHeader.size...)) {
        case .failure(let reason): return .malformed(reason)
        case .success(let message): return .client(DHCPClientFrame(ethernet: ethernet, ipv4: ipv4, message: message))
        }
    }
}

/// A reply the server built: the DHCP message and where it goes, ready to encode as a frame.
///
/// Addressing follows RFC 2131 §4.1 for a directly attached client (`giaddr` zero; relayed requests are not
/// served):
/// - DHCPNAK: broadcast, IPv4 255.255.255.255 and Ethernet ff:ff:ff:ff:ff:ff;
/// - the request had `ciaddr` (RENEWING, REBINDING, INFORM): unicast to `ciaddr` and `chaddr`;
/// - else, the client set the BROADCAST flag: broadcast;
/// - else: unicast to `yiaddr` at `chaddr` (the client accepts it before configuring the address).
///
/// The frame: Ethernet from the server MAC (with the request's VLAN tag, if any), IPv4 from the server
/// identifier (TTL 64, ID 0, DF set: an atomic datagram, RFC 6864 §4.1; DHCP replies are far below any MTU), UDP
/// 67 → 68 with the checksum computed, then the message padded to 300 bytes.
public struct DHCPReply: Hashable, Sendable {
    /// The reply's Ethernet header.
    public var ethernet: EthernetHeader
    /// IPv4 source: the server identifier.
    public var source: IPv4Address
    /// IPv4 destination, per RFC 2131 §4.1.
    public var destination: IPv4Address
    /// The DHCP message (OFFER, ACK or NAK).
    public var message: DHCPMessage
    /// Why the server refused, when `message` is a DHCPNAK.
    public var nakReason: DHCPNakReason?

    /// IPv4 time to live of replies.
    public static let timeToLive: UInt8 = 64

    /// - Parameters: the reply's parts.
    public init(
        ethernet: EthernetHeader,
        source: IPv4Address,
        destination: IPv4Address,
        message: DHCPMessage,
        nakReason: DHCPNakReason? = nil
    ) {
        self.ethernet = ethernet
        self.source = source
        self.destination = destination
        self.message = message
        self.nakReason = nakReason
    }

    /// Addresses `message` to the client that sent `request` (RFC 2131 §4.1; see the type's doc).
    /// - Parameters:
    ///   - message: the reply message (its type decides NAK broadcasting).
    ///   - request: the client's frame.
    ///   - serverMAC: the Ethernet source.
    ///   - serverIdentifier: the IPv4 source.
    ///   - nakReason: why, for a NAK.
    public init(
        message: DHCPMessage,
        answering request: DHCPClientFrame,
        serverMAC: MACAddress,
        serverIdentifier: IPv4Address,
        nakReason: DHCPNakReason? = nil
    ) {
        let client = request.message
        let clientMAC = client.clientMAC ?? request.ethernet.source
        let broadcastIP = IPv4Address(value: 0xFFFF_FFFF)
        let destinationIP: IPv4Address
        let destinationMAC: MACAddress
        if message.messageType == .nak {
            (destinationIP, destinationMAC) = (broadcastIP, .broadcast)
        } else if !client.clientIPAddress.isUnspecified {
            (destinationIP, destinationMAC) = (client.clientIPAddress, clientMAC)
        } else if client.broadcast || message.yourIPAddress.isUnspecified {
            (destinationIP, destinationMAC) = (broadcastIP, .broadcast)
        } else {
            (destinationIP, destinationMAC) = (message.yourIPAddress, clientMAC)
        }
        self.init(
            ethernet: EthernetHeader(
                destination: destinationMAC,
                source: serverMAC,
                vlan: request.ethernet.vlan,
                etherType: .ipv4
            ),
            source: serverIdentifier,
            destination: destinationIP,
            message: message,
            nakReason: nakReason
        )
    }

    /// The frame length in bytes.
    public var frameLength: Int {
        ethernet.length + IPv4Header.minimumSize + UDPHeader.size + message.encodedLength()
    }

    /// Encodes the whole frame at `offset`.
    /// - Parameters:
    ///   - bytes: destination; must hold `frameLength` bytes from `offset` (traps otherwise).
    ///   - offset: where the destination MAC goes.
    /// - Returns: bytes written (`frameLength`).
    @discardableResult
    public func write(into bytes: inout MutableRawSpan, at offset: Int = 0) -> Int {
        let messageLength = message.encodedLength()
        let udpLength = UDPHeader.size + messageLength
        let ipOffset = offset + ethernet.length
        let udpOffset = ipOffset + IPv4Header.minimumSize
        precondition(
            bytes.byteCount - offset >= ethernet.length + IPv4Header.minimumSize + udpLength,
            "buffer too small"
        )
        ethernet.write(into: &bytes, at: offset)
        IPv4Header(
            totalLength: UInt16(IPv4Header.minimumSize + udpLength),
            identification: 0,
            dontFragment: true,
            timeToLive: DHCPReply.timeToLive,
            protocol: .udp,
            source: source,
            destination: destination
        ).write(into: &bytes, at: ipOffset)
        IPv4Header.updateChecksum(in: &bytes, at: ipOffset)
        UDPHeader(sourcePort: DHCPPort.server, destinationPort: DHCPPort.client, length: UInt16(udpLength))
            .write(into: &bytes, at: udpOffset)
        message.write(into: &bytes, at: udpOffset + UDPHeader.size)
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source,
            destination: destination,
            protocol: .udp,
            length: udpLength
        )
        let checksum = UDPHeader.computeChecksum(
            segment: bytes.bytes.extracting(udpOffset..<udpOffset + udpLength),
            pseudoHeaderSum: pseudo
        )
        bytes.vxStoreBE16(checksum, at: udpOffset + 6)
        return ethernet.length + IPv4Header.minimumSize + udpLength
    }

    /// The encoded frame as an array.
    public var frame: [UInt8] {
        var storage = [UInt8](repeating: 0, count: frameLength)
        var span = storage.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        write(into: &bytes)
        return storage
    }
}
