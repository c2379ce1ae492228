import Foundation
import Testing
import VXDHCP
import VXPacket
import VXTestSupport

extension DHCPFrameOutcome {
    /// The reply, or nil.
    var reply: DHCPReply? {
        if case .reply(let r) = self { return r }
        return nil
    }
    /// The drop reason, or nil.
    var dropReason: DHCPDropReason? {
        if case .dropped(let r) = self { return r }
        return nil
    }
}

/// One scapy-made frame: bytes plus the `// @key value` expectations (see tools/fixtures/make_dhcp_fixtures.py).
typealias Fixture = HexFixture

extension HexFixture {
    /// Tests/VXDHCPTests/Fixtures.
    static let directory = resourceDirectory(in: .module)
    static let all = loadAll(from: directory)
    static func load(_ name: String) -> HexFixture { load(name, from: directory) }

    var scenario: String { expect["scenario"]! }
    var step: Int { Int(expect["step"]!)! }
    var role: String { expect["role"]! }
    var now: LeaseInstant { LeaseInstant(seconds: Int64(expect["now"]!)!) }

    static var clients: [Fixture] { all.filter { $0.role == "client" } }
    static var scenarios: [String] { Array(Set(all.map(\.scenario))).sorted() }
}

/// The test network: 10.20.0.0/24, gateway .1 (also the server identifier), this host's range .100 ... .199.
/// The fixture generator uses the same values.
enum Net {
    static let subnet = IPv4Subnet("10.20.0.0/24")!
    static let gateway = IPv4Address(10, 20, 0, 1)
    static let serverMAC = MACAddress("02:00:5e:10:00:01")!
    static let dns = IPv4Address(10, 20, 0, 53)
    static func ip(_ last: UInt8) -> IPv4Address { IPv4Address(10, 20, 0, last) }

    static func configuration(
        first: UInt8 = 100,
        last: UInt8 = 199,
        gateway: IPv4Address? = Net.gateway,
        leaseTime: UInt32 = 3600
    ) -> DHCPServerConfiguration {
        try! DHCPServerConfiguration(
            subnet: subnet,
            range: ip(first)...ip(last),
            gateway: gateway,
            serverMAC: serverMAC,
            leaseTime: leaseTime,
            dnsServers: [dns]
        )
    }

    static func server(first: UInt8 = 100, last: UInt8 = 199, leaseTime: UInt32 = 3600) -> DHCPServer {
        DHCPServer(configuration: configuration(first: first, last: last, leaseTime: leaseTime))
    }
}

/// A DHCP client for tests: builds its frames with VXDHCP's encoder and VXTestSupport's header builders.
struct TestClient {
    var mac: MACAddress
    var clientID: [UInt8]?
    var hostName: String?
    var broadcastFlag = false
    var xid: UInt32 = 0x1000

    init(_ n: UInt8, clientID: Bool = true, hostName: String? = nil) {
        mac = MACAddress(0x02, 0x42, 0xAC, 0x14, 0x00, n)
        self.clientID = clientID ? [0x01, 0x02, 0x42, 0xAC, 0x14, 0x00, n] : nil
        self.hostName = hostName
        xid = 0x1000 + UInt32(n) << 16
    }

    var owner: LeaseOwner { LeaseOwner(clientIdentifier: clientID, hardwareAddress: mac) }

    func message(
        _ type: DHCPMessageType,
        ciaddr: IPv4Address = .any,
        requested: IPv4Address? = nil,
        serverID: IPv4Address? = nil
    ) -> DHCPMessage {
        var options = DHCPOptions(
            hostName: hostName.map { Array($0.utf8) },
            requestedIPAddress: requested,
            serverIdentifier: serverID,
            parameterRequestList: [1, 3, 6, 12, 15, 28, 42],
            maximumMessageSize: 576,
            clientIdentifier: clientID
        )
        if type == .release || type == .decline { options.parameterRequestList = nil }
        return DHCPMessage(
            operation: .request,
            messageType: type,
            transactionID: xid,
            clientMAC: mac,
            flags: broadcastFlag ? DHCPMessage.broadcastFlag : 0,
            clientIPAddress: ciaddr,
            options: options
        )
    }

    /// The frame a client sends: broadcast from 0.0.0.0 (or from `ciaddr`), or unicast to `unicastTo`.
    func frame(_ message: DHCPMessage, unicastTo server: IPv4Address? = nil) -> [UInt8] {
        PacketBuilder.ethernetIPv4UDP(
            destination: server == nil ? .broadcast : Net.serverMAC,
            source: mac,
            sourceIP: message.clientIPAddress,
            destinationIP: server ?? IPv4Address(value: 0xFFFF_FFFF),
            sourcePort: DHCPPort.client,
            destinationPort: DHCPPort.server,
            payload: message.encoded(minimumSize: 0)
        )
    }

    func discover(requested: IPv4Address? = nil) -> [UInt8] {
        frame(message(.discover, requested: requested))
    }

    func select(_ offered: IPv4Address, serverID: IPv4Address = Net.gateway) -> [UInt8] {
        frame(message(.request, requested: offered, serverID: serverID))
    }

    func initReboot(_ address: IPv4Address) -> [UInt8] {
        frame(message(.request, requested: address))
    }

    func renew(_ address: IPv4Address) -> [UInt8] {
        frame(message(.request, ciaddr: address), unicastTo: Net.gateway)
    }

    func rebind(_ address: IPv4Address) -> [UInt8] {
        frame(message(.request, ciaddr: address))
    }

    func release(_ address: IPv4Address) -> [UInt8] {
        frame(message(.release, ciaddr: address, serverID: Net.gateway), unicastTo: Net.gateway)
    }

    func decline(_ address: IPv4Address) -> [UInt8] {
        frame(message(.decline, requested: address, serverID: Net.gateway))
    }
}

extension DHCPServer {
    /// Feeds `frame` at `now` (seconds).
    mutating func handle(_ frame: [UInt8], at now: Int64) -> DHCPFrameOutcome {
        handle(frame: frame.span.bytes, now: LeaseInstant(seconds: now))
    }

    /// DISCOVER then REQUEST; returns the address ACKed, or nil.
    mutating func dora(_ client: TestClient, at now: Int64) -> IPv4Address? {
        guard let offer = handle(client.discover(), at: now).reply, offer.message.messageType == .offer else {
            return nil
        }
        guard let ack = handle(client.select(offer.message.yourIPAddress), at: now).reply,
            ack.message.messageType == .ack
        else { return nil }
        return ack.message.yourIPAddress
    }
}

/// Decodes a reply frame with VXPacket and VXDHCP parsers: the Ethernet, IPv4 and UDP headers and the message.
/// Verifies both checksums.
func decodeReply(_ frame: [UInt8]) -> (EthernetHeader, IPv4Header, UDPHeader, DHCPMessage)? {
    let span = frame.span.bytes
    guard let eth = EthernetHeader.parse(span).successValue else { return nil }
    let l3 = span.extracting(eth.length...)
    guard let ip = IPv4Header.parse(l3).successValue else { return nil }
    let segment = l3.extracting(ip.headerLength..<Int(ip.totalLength))
    guard let udp = UDPHeader.parse(segment).successValue, udp.checksum != 0,
        UDPHeader.verifyChecksum(segment: segment, source: ip.source, destination: ip.destination) == nil,
        let message = DHCPMessage.parse(segment.extracting(8...)).successValue
    else { return nil }
    return (eth, ip, udp, message)
}

// Array front ends for the span-taking APIs: `#expect` cannot capture a `RawSpan` (it is non-escapable).

func parse(_ bytes: [UInt8]) -> Result<DHCPMessage, DHCPDropReason> {
    DHCPMessage.parse(bytes.span.bytes)
}

func classify(_ frame: [UInt8]) -> DHCPFrameClassification {
    DHCPClientFrame.classify(frame.span.bytes)
}

func isClientToServer(_ frame: [UInt8]) -> Bool {
    DHCPClientFrame.isClientToServer(frame.span.bytes)
}

/// Deterministic values drawn from random bytes (wrapping around), so property tests can build structured
/// values from one generated byte array.
struct ByteSource {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes.isEmpty ? [0] : bytes
    }

    mutating func u8() -> UInt8 {
        defer { index += 1 }
        return bytes[index % bytes.count]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
    mutating func bool() -> Bool { u8() & 1 == 1 }
    mutating func address() -> IPv4Address { IPv4Address(value: u32()) }
    mutating func array(_ range: ClosedRange<Int>) -> [UInt8] {
        let count = range.lowerBound + Int(u16()) % (range.count)
        return (0..<count).map { _ in u8() }
    }
    mutating func maybe<T>(_ make: (inout ByteSource) -> T) -> T? {
        bool() ? make(&self) : nil
    }
}
