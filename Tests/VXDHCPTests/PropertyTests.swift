import PropertyBased
import Testing
import VXDHCP
import VXPacket
import VXTestSupport

@Suite("Properties")
struct PropertyTests {
    static let byte = Gen<UInt8>.value(in: 0...255)

    @Test func parseNeverTrapsOnRandomBytes() async {
        await propertyCheck(count: 500, input: Self.byte.array(of: 0...700)) { bytes in
            _ = parse(bytes)
        }
    }

    /// Random option areas behind a valid header and cookie, so the option walker is what gets exercised.
    @Test func parseNeverTrapsOnRandomOptions() async {
        let header = CodecTests.base
        await propertyCheck(count: 500, input: Self.byte.array(of: 0...400)) { options in
            _ = parse(header + options)
        }
    }

    @Test func everyTruncationOfEveryFixtureIsHandled() {
        for fixture in Fixture.all {
            for length in 0...fixture.bytes.count {
                let frame = Array(fixture.bytes[..<length])
                let classification = classify(frame)
                _ = isClientToServer(frame)
                var server = Net.server()
                _ = server.handle(frame: frame.span.bytes, now: fixture.now)
                if length < fixture.bytes.count, fixture.role == "client", case .client = classification {
                    // A shorter frame disagrees with its IPv4 total length: never a client frame.
                    Issue.record("\(fixture.name) cut to \(length) bytes was accepted")
                }
            }
        }
    }

    @Test func classifyNeverTrapsOnCorruptedFixtures() async {
        let frames = Fixture.clients.map(\.bytes)
        await propertyCheck(
            count: 500,
            input: Gen<Int>.value(in: 0...(frames.count - 1)),
            Gen<Int>.value(in: 0...400),
            Self.byte
        ) { index, position, value in
            var frame = frames[index]
            frame[position % frame.count] = value
            var server = Net.server()
            let outcome = server.handle(frame, at: 0)
            // isClientToServer is the dataplane's gate: whatever it rejects, the server must call not-DHCP too.
            if !isClientToServer(frame) { #expect(outcome == .notDHCP) }
        }
    }

    /// A valid message built from random bytes: every header field, every typed option present or not, long
    /// values (split on encoding), and unknown options.
    static func message(from seed: [UInt8]) -> DHCPMessage {
        var s = ByteSource(seed)
        let typed: Set<UInt8> = [1, 3, 6, 12, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 61]
        var options = DHCPOptions()
        options.subnetMask = s.maybe { $0.address() }
        options.routers = (0..<Int(s.u8() % 3)).map { _ in s.address() }
        options.domainNameServers = (0..<Int(s.u8() % 4)).map { _ in s.address() }
        options.hostName = s.maybe { $0.array(1...300) }
        options.requestedIPAddress = s.maybe { $0.address() }
        options.leaseTime = s.maybe { $0.u32() }
        options.serverIdentifier = s.maybe { $0.address() }
        options.parameterRequestList = s.maybe { $0.array(1...40) }
        options.message = s.maybe { $0.array(1...60) }
        options.maximumMessageSize = s.maybe { $0.u16() }
        options.renewalTime = s.maybe { $0.u32() }
        options.rebindingTime = s.maybe { $0.u32() }
        options.clientIdentifier = s.maybe { $0.array(2...20) }
        var codes = Set<UInt8>()
        for _ in 0..<Int(s.u8() % 3) {
            let code = s.u8()
            if code != 0 && code != 255 && !typed.contains(code) && codes.insert(code).inserted {
                options.other.append(DHCPOption(code: code, data: s.array(1...20)))
            }
        }
        var m = DHCPMessage(
            operation: s.bool() ? .request : .reply,
            messageType: DHCPMessageType(rawValue: 1 + s.u8() % 8)!,
            transactionID: s.u32(),
            clientMAC: .zero,
            flags: s.u16(),
            seconds: s.u16(),
            clientIPAddress: s.address(),
            yourIPAddress: s.address(),
            serverIPAddress: s.address(),
            relayAgentIPAddress: s.address(),
            options: options
        )
        m.hardwareType = s.u8()
        m.hardwareAddressLength = s.u8() % 17
        m.hops = s.u8()
        m.clientHardwareAddress = (0..<16).map { _ in s.u8() }
        // sname and file are kept without trailing zeros (the wire field is zero-padded).
        m.serverName = Array(s.array(0...64).reversed().drop { $0 == 0 }.reversed())
        m.bootFileName = Array(s.array(0...128).reversed().drop { $0 == 0 }.reversed())
        return m
    }

    @Test func encodeThenParseIsTheIdentity() async {
        await propertyCheck(count: 300, input: Self.byte.array(of: 1...800)) { seed in
            let m = Self.message(from: seed)
            for minimumSize in [0, DHCPMessage.minimumReplySize] {
                let bytes = m.encoded(minimumSize: minimumSize)
                #expect(bytes.count == m.encodedLength(minimumSize: minimumSize))
                #expect(bytes.count >= minimumSize)
                #expect(parse(bytes).successValue == m)
            }
        }
    }

    @Test func everyReplyFrameDecodesWithValidChecksums() async {
        await propertyCheck(
            count: 200,
            input: Gen<UInt8>.value(in: 1...60),
            Gen<Int>.value(in: 0...3),
            Gen<Bool>.bool(),
            Gen<UInt16>.value(in: 0...4095).optional()
        ) { n, action, broadcast, vlan in
            var server = Net.server(first: 100, last: 120)
            var client = TestClient(n, clientID: n % 2 == 0)
            client.broadcastFlag = broadcast
            let frames = [
                client.discover(), client.select(Net.ip(100)), client.initReboot(Net.ip(n)), client.renew(Net.ip(100)),
            ]
            var frame = frames[action]
            if let vlan {
                frame = Array(frame[..<12]) + [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF)] + Array(frame[12...])
            }
            guard let reply = server.handle(frame, at: 1_000).reply else { return }
            guard let (eth, ip, udp, message) = decodeReply(reply.frame) else {
                Issue.record("reply does not decode")
                return
            }
            #expect(eth.vlan?.id == vlan)
            #expect(ip.dontFragment && ip.timeToLive == 64 && ip.source == Net.gateway)
            #expect(Int(udp.length) == 8 + DHCPMessage.minimumReplySize)
            #expect(message == reply.message && message.transactionID == client.xid)
        }
    }
}
