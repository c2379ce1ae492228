import Testing
import VXDHCP
import VXPacket
import VXTestSupport

/// Frames made by scapy (tools/fixtures/make_dhcp_fixtures.py): client frames decode field by field; each
/// scenario's client frames, replayed into one fresh server, produce scapy's reply frames byte for byte.
@Suite("Fixtures from scapy")
struct FixtureTests {
    @Test func everyFixtureIsPresent() {
        #expect(Fixture.all.count >= 17, "fixtures missing: run tools/fixtures/make_dhcp_fixtures.py")
        #expect(Fixture.scenarios == ["dhclient", "inform", "initreboot", "udhcpc"])
    }

    @Test(arguments: Fixture.clients)
    func decodesEveryClientField(_ fixture: Fixture) throws {
        #expect(fixture.bytes.count == Int(fixture.expect["length"]!))
        #expect(isClientToServer(fixture.bytes))
        guard case .client(let frame) = classify(fixture.bytes) else {
            Issue.record("\(fixture.name): not classified as a DHCP client frame")
            return
        }
        let m = frame.message
        let o = m.options
        func hex(_ b: [UInt8]) -> String { b.hexString }
        let fields: [String: String] = [
            "eth.src": frame.ethernet.source.description,
            "eth.dst": frame.ethernet.destination.description,
            "eth.vlan": frame.ethernet.vlan.map { String($0.id) } ?? "none",
            "ipv4.src": frame.ipv4.source.description,
            "ipv4.dst": frame.ipv4.destination.description,
            "op": String(m.operation.rawValue),
            "htype": String(m.hardwareType),
            "hlen": String(m.hardwareAddressLength),
            "hops": String(m.hops),
            "xid": String(m.transactionID),
            "secs": String(m.seconds),
            "flags": String(m.flags),
            "ciaddr": m.clientIPAddress.description,
            "yiaddr": m.yourIPAddress.description,
            "siaddr": m.serverIPAddress.description,
            "giaddr": m.relayAgentIPAddress.description,
            "chaddr": hex(Array(m.clientHardwareAddress.prefix(Int(m.hardwareAddressLength)))),
            "msgtype": String(m.messageType.rawValue),
            "requested": o.requestedIPAddress?.description ?? "none",
            "serverid": o.serverIdentifier?.description ?? "none",
            "clientid": o.clientIdentifier.map(hex) ?? "none",
            "hostname": o.hostNameText ?? "none",
            "prl": o.parameterRequestList.map { $0.map(String.init).joined(separator: ",") } ?? "none",
            "maxsize": o.maximumMessageSize.map { String($0) } ?? "none",
            "other": o.other.isEmpty ? "none" : o.other.map { String($0.code) }.joined(separator: ","),
        ]
        // The UDP checksum scapy computed is what the frame carries, and classify verified it.
        let udpChecksum =
            UInt16(fixture.bytes[frame.ethernet.length + 26]) << 8
            | UInt16(fixture.bytes[frame.ethernet.length + 27])
        #expect(String(udpChecksum) == fixture.expect["udp.csum"])
        for (key, value) in fields {
            #expect(
                fixture.expect[key] == value,
                "\(fixture.name): \(key) decoded \(value), scapy says \(fixture.expect[key] ?? "nil")"
            )
        }
        #expect(m.clientMAC == frame.ethernet.source)
    }

    @Test(arguments: Fixture.scenarios)
    func repliesMatchScapyByteForByte(_ scenario: String) {
        var server = Net.server()
        let frames = Fixture.all.filter { $0.scenario == scenario }
        for step in Set(frames.map(\.step)).sorted() {
            let client = frames.first { $0.step == step && $0.role == "client" }!
            let expected = frames.first { $0.step == step && $0.role == "server" }
            let outcome = server.handle(frame: client.bytes.span.bytes, now: client.now)
            guard let expected else {
                #expect(outcome.reply == nil, "\(client.name): expected no reply, got \(outcome)")
                continue
            }
            guard let reply = outcome.reply else {
                Issue.record("\(client.name): expected \(expected.name), got \(outcome)")
                continue
            }
            let ours = reply.frame
            #expect(ours.count == reply.frameLength)
            #expect(
                ours == expected.bytes,
                "\(expected.name) differs:\nours\n\(ours.hexDump)\nscapy\n\(expected.bytes.hexDump)"
            )
        }
    }

    /// The reply written into a caller's buffer (the dataplane's packet buffer) at an offset is the same bytes.
    @Test func writesIntoAPacketBufferAtAnOffset() {
        let discover = Fixture.load("udhcpc_1_client")
        var server = Net.server()
        guard let reply = server.handle(frame: discover.bytes.span.bytes, now: discover.now).reply else {
            Issue.record("no reply")
            return
        }
        var buffer = [UInt8](repeating: 0xEE, count: 64 + reply.frameLength + 16)
        var written = 0
        var span = buffer.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        written = reply.write(into: &bytes, at: 64)
        #expect(written == reply.frameLength)
        #expect(Array(buffer[64..<(64 + written)]) == Fixture.load("udhcpc_1_server").bytes)
        #expect(buffer[..<64].allSatisfy { $0 == 0xEE } && buffer[(64 + written)...].allSatisfy { $0 == 0xEE })
    }
}
