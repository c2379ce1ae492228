import Foundation
import Testing
import VXDHCP
import VXPacket
import VXTestSupport

@Suite("DHCPServer")
struct ServerTests {
    let t0: Int64 = 1_700_000_000

    // MARK: DORA

    @Test func doraAssignsTheFirstAddressWithMaskRouterDNSAndLeaseTimes() throws {
        var server = Net.server()
        let client = TestClient(10, hostName: "web-1")
        let offer = try #require(server.handle(client.discover(), at: t0).reply)
        #expect(offer.message.messageType == .offer)
        #expect(offer.message.yourIPAddress == Net.ip(100))
        #expect(server.leases.lease(at: Net.ip(100))?.state == .offered)

        let ack = try #require(server.handle(client.select(Net.ip(100)), at: t0 + 1).reply)
        let m = ack.message
        #expect(m.messageType == .ack && m.operation == .reply)
        #expect(m.yourIPAddress == Net.ip(100) && m.clientIPAddress == .any && m.transactionID == client.xid)
        #expect(m.clientMAC == client.mac)
        #expect(m.options.serverIdentifier == Net.gateway)
        #expect(m.options.leaseTime == 3600 && m.options.renewalTime == 1800 && m.options.rebindingTime == 3150)
        #expect(m.options.subnetMask == IPv4Address(255, 255, 255, 0))
        #expect(m.options.routers == [Net.gateway] && m.options.domainNameServers == [Net.dns])
        #expect(m.options.clientIdentifier == client.clientID, "RFC 6842: the client identifier is echoed")

        let lease = try #require(server.leases.lease(for: client.owner))
        #expect(lease.address == Net.ip(100) && lease.state == .bound)
        #expect(lease.expires == LeaseInstant(seconds: t0 + 1 + 3600))
        #expect(lease.hostName == "web-1")
    }

    @Test func repliesToAClientWithoutAnAddressAreUnicastToYiaddrUnlessItAsksForBroadcast() throws {
        var server = Net.server()
        var client = TestClient(10)
        let offer = try #require(server.handle(client.discover(), at: t0).reply)
        let (eth, ip, udp, _) = try #require(decodeReply(offer.frame))
        #expect(eth.destination == client.mac && eth.source == Net.serverMAC)
        #expect(ip.destination == Net.ip(100) && ip.source == Net.gateway)
        #expect(udp.sourcePort == 67 && udp.destinationPort == 68)

        client.broadcastFlag = true
        let reply = try #require(server.handle(client.discover(), at: t0).reply)
        #expect(reply.message.broadcast)
        #expect(reply.ethernet.destination == .broadcast && reply.destination == IPv4Address(value: 0xFFFF_FFFF))
    }

    @Test func twoClientsGetDifferentAddresses() {
        var server = Net.server()
        let a = TestClient(1)
        let b = TestClient(2)
        // Both DISCOVER before either REQUESTs: the first offer is held for A.
        let offerA = server.handle(a.discover(), at: t0).reply?.message.yourIPAddress
        let offerB = server.handle(b.discover(), at: t0).reply?.message.yourIPAddress
        #expect(offerA == Net.ip(100) && offerB == Net.ip(101))
        #expect(server.handle(b.select(Net.ip(101)), at: t0).reply?.message.messageType == .ack)
        #expect(server.handle(a.select(Net.ip(100)), at: t0).reply?.message.messageType == .ack)
        #expect(server.dora(TestClient(3), at: t0 + 5) == Net.ip(102))
    }

    @Test func discoverReusesTheClientsBindingAndLeavesItBound() {
        var server = Net.server()
        let a = TestClient(1)
        #expect(server.dora(TestClient(9), at: t0) == Net.ip(100))
        #expect(server.dora(a, at: t0) == Net.ip(101))
        let offer = server.handle(a.discover(requested: Net.ip(150)), at: t0 + 10).reply
        #expect(offer?.message.yourIPAddress == Net.ip(101))
        #expect(server.leases.lease(for: a.owner)?.state == .bound)
    }

    @Test func discoverHonoursARequestedAddressOnlyWhenItIsFreeAndInThePool() {
        var server = Net.server()
        #expect(
            server.handle(TestClient(1).discover(requested: Net.ip(150)), at: t0).reply?.message.yourIPAddress
                == Net.ip(150)
        )
        // Held for client 1: client 2 gets the next free one.
        #expect(
            server.handle(TestClient(2).discover(requested: Net.ip(150)), at: t0).reply?.message.yourIPAddress
                == Net.ip(100)
        )
        // Outside the range, the gateway, another network: ignored.
        for requested in [Net.ip(50), Net.gateway, IPv4Address(192, 168, 0, 5)] {
            let offered = server.handle(TestClient(3).discover(requested: requested), at: t0).reply?.message
                .yourIPAddress
            #expect(offered == Net.ip(101))
        }
    }

    @Test func aClientThatAddsAClientIdentifierKeepsTheLeaseItGotByMAC() {
        var server = Net.server()
        let plain = TestClient(7, clientID: false)
        #expect(server.dora(plain, at: t0) == Net.ip(100))
        let withID = TestClient(7, clientID: true)
        #expect(server.handle(withID.renew(Net.ip(100)), at: t0 + 1800).reply?.message.messageType == .ack)
        #expect(server.leases.lease(for: withID.owner)?.address == Net.ip(100))
        #expect(server.leases.lease(for: plain.owner) == nil)
    }

    // MARK: RENEWING, REBINDING, INIT-REBOOT

    @Test func renewAtT1IsUnicastAndExtendsTheLease() throws {
        var server = Net.server()
        let a = TestClient(1)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        let reply = try #require(server.handle(a.renew(Net.ip(100)), at: t0 + 1800).reply)
        #expect(reply.message.messageType == .ack)
        #expect(reply.message.clientIPAddress == Net.ip(100) && reply.message.yourIPAddress == Net.ip(100))
        #expect(reply.destination == Net.ip(100) && reply.ethernet.destination == a.mac)
        #expect(server.leases.lease(for: a.owner)?.expires == LeaseInstant(seconds: t0 + 1800 + 3600))
    }

    @Test func rebindAtT2IsAnsweredToCiaddr() throws {
        var server = Net.server()
        var a = TestClient(1)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        a.broadcastFlag = true  // ciaddr wins over the flag (RFC 2131 §4.1)
        let reply = try #require(server.handle(a.rebind(Net.ip(100)), at: t0 + 3150).reply)
        #expect(reply.message.messageType == .ack)
        #expect(reply.destination == Net.ip(100) && reply.ethernet.destination == a.mac)
    }

    @Test func anExpiredLeaseIsRenewedWhileNobodyElseHasTakenIt() {
        var server = Net.server(first: 100, last: 100)
        let a = TestClient(1)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        // The client was suspended past its lease; the address is still free.
        #expect(server.handle(a.initReboot(Net.ip(100)), at: t0 + 10_000).reply?.message.messageType == .ack)
        // Expired again, and this time B takes it first.
        let b = TestClient(2)
        #expect(server.dora(b, at: t0 + 20_000) == Net.ip(100))
        let nak = server.handle(a.renew(Net.ip(100)), at: t0 + 20_001).reply
        #expect(nak?.message.messageType == .nak && nak?.nakReason == .addressInUse)
    }

    // MARK: NAK

    @Test func nakIsBroadcastAndSaysWhy() throws {
        var server = Net.server()
        let reply = try #require(server.handle(TestClient(1).initReboot(Net.ip(50)), at: t0).reply)
        #expect(reply.message.messageType == .nak && reply.nakReason == .notInPool)
        #expect(reply.ethernet.destination == .broadcast && reply.destination == IPv4Address(value: 0xFFFF_FFFF))
        #expect(reply.message.yourIPAddress == .any && reply.message.clientIPAddress == .any)
        #expect(reply.message.options.serverIdentifier == Net.gateway)
        #expect(reply.message.options.message == Array("address not in this server's range".utf8))
        #expect(reply.message.options.leaseTime == nil && reply.message.options.subnetMask == nil)
    }

    @Test(arguments: [
        (Net.ip(50), DHCPNakReason.notInPool),  // in the subnet, outside this host's range
        (Net.gateway, .notInPool),  // excluded: the gateway and server identifier
        (IPv4Address(192, 168, 1, 5), .wrongNetwork),
        (Net.subnet.broadcast, .wrongNetwork),
        (Net.ip(120), .noBinding),  // free and in range, but this client holds no lease on it
    ])
    func initRebootIsRefusedFor(_ address: IPv4Address, _ reason: DHCPNakReason) {
        var server = Net.server()
        let reply = server.handle(TestClient(1).initReboot(address), at: t0).reply
        #expect(reply?.message.messageType == .nak)
        #expect(reply?.nakReason == reason)
    }

    @Test func anotherClientsLeaseIsRefusedInEveryState() {
        var server = Net.server()
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(100))
        let b = TestClient(2)
        for frame in [b.initReboot(Net.ip(100)), b.renew(Net.ip(100)), b.rebind(Net.ip(100)), b.select(Net.ip(100))] {
            let reply = server.handle(frame, at: t0 + 10).reply
            #expect(reply?.message.messageType == .nak && reply?.nakReason == .addressInUse)
        }
        #expect(server.leases.lease(at: Net.ip(100))?.owner == TestClient(1).owner)
    }

    @Test func selectingAnotherServerDropsOurOfferWithoutReply() {
        var server = Net.server(first: 100, last: 100)
        let a = TestClient(1)
        #expect(server.handle(a.discover(), at: t0).reply?.message.yourIPAddress == Net.ip(100))
        let outcome = server.handle(a.select(IPv4Address(10, 20, 0, 77), serverID: Net.ip(2)), at: t0 + 1)
        #expect(outcome == .dropped(.otherServerSelected))
        #expect(server.leases.lease(at: Net.ip(100)) == nil)
        #expect(server.handle(TestClient(2).discover(), at: t0 + 2).reply?.message.yourIPAddress == Net.ip(100))
    }

    @Test func selectingWithoutARequestedAddressIsRefused() {
        var server = Net.server()
        let a = TestClient(1)
        let frame = a.frame(a.message(.request, serverID: Net.gateway))
        #expect(server.handle(frame, at: t0).reply?.nakReason == .missingRequestedAddress)
        #expect(server.handle(a.frame(a.message(.request)), at: t0) == .dropped(.requestWithoutAddress))
    }

    @Test func selectingAFreeAddressAfterTheOfferExpiredIsGranted() {
        var server = Net.server()
        let a = TestClient(1)
        _ = server.handle(a.discover(), at: t0)
        #expect(server.handle(a.select(Net.ip(100)), at: t0 + 120).reply?.message.messageType == .ack)
    }

    // MARK: RELEASE, DECLINE, INFORM

    @Test func releaseFreesTheAddressAndTheClientGetsItBackLater() {
        var server = Net.server(first: 100, last: 101)
        let a = TestClient(1)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        #expect(server.handle(a.release(Net.ip(100)), at: t0 + 5) == .accepted(.release))
        #expect(server.leases.lease(at: Net.ip(100))?.isActive(at: LeaseInstant(seconds: t0 + 5)) == false)
        // B gets the never-used address first; A comes back to its old one.
        #expect(server.dora(TestClient(2), at: t0 + 6) == Net.ip(101))
        #expect(server.dora(a, at: t0 + 7) == Net.ip(100))
    }

    @Test func releasedAddressGoesToOthersWhenNothingElseIsFree() {
        var server = Net.server(first: 100, last: 100)
        let a = TestClient(1)
        let b = TestClient(2)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        #expect(server.handle(b.discover(), at: t0 + 1) == .dropped(.poolExhausted))
        #expect(server.handle(a.release(Net.ip(100)), at: t0 + 2) == .accepted(.release))
        #expect(server.dora(b, at: t0 + 3) == Net.ip(100))
    }

    @Test func releaseOfAnAddressTheClientDoesNotHoldIsIgnored() {
        var server = Net.server()
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(100))
        #expect(server.handle(TestClient(2).release(Net.ip(100)), at: t0 + 1) == .dropped(.notClientsLease))
        #expect(server.leases.lease(at: Net.ip(100))?.state == .bound)
    }

    @Test func declineQuarantinesTheAddressForTheHoldTime() {
        var server = Net.server(first: 100, last: 102)
        let a = TestClient(1)
        #expect(server.dora(a, at: t0) == Net.ip(100))
        #expect(server.handle(a.decline(Net.ip(100)), at: t0 + 1) == .accepted(.decline))
        #expect(server.leases.lease(at: Net.ip(100))?.state == .declined)
        #expect(server.dora(a, at: t0 + 2) == Net.ip(101))
        #expect(server.dora(TestClient(2), at: t0 + 3) == Net.ip(102))
        #expect(server.handle(TestClient(3).discover(), at: t0 + 4) == .dropped(.poolExhausted))
        // Ten minutes later the address is usable again.
        #expect(server.dora(TestClient(3), at: t0 + 1 + 600) == Net.ip(100))
    }

    @Test func declineOfAnotherClientsAddressIsIgnored() {
        var server = Net.server()
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(100))
        #expect(server.handle(TestClient(2).decline(Net.ip(100)), at: t0) == .dropped(.notClientsLease))
        #expect(server.leases.lease(at: Net.ip(100))?.state == .bound)
    }

    @Test func informFromAnotherNetworkIsDropped() {
        var server = Net.server()
        let a = TestClient(1)
        let frame = a.frame(a.message(.inform, ciaddr: IPv4Address(192, 168, 0, 9)))
        #expect(server.handle(frame, at: t0) == .dropped(.informFromOtherNetwork))
    }

    // MARK: Pool

    @Test func rangeExhaustionOffersNothingAndSaysWhy() {
        var server = Net.server(first: 100, last: 101)
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(100))
        #expect(server.dora(TestClient(2), at: t0) == Net.ip(101))
        let outcome = server.handle(TestClient(3).discover(), at: t0)
        #expect(outcome == .dropped(.poolExhausted))
        #expect(DHCPDropReason.poolExhausted.name == "poolExhausted")
        #expect(DHCPDropReason.poolExhausted.description == "no free address in this host's range")
    }

    @Test func expiryFreesAddresses() {
        var server = Net.server(first: 100, last: 100)
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(100))
        #expect(server.handle(TestClient(2).discover(), at: t0 + 3599) == .dropped(.poolExhausted))
        #expect(server.dora(TestClient(2), at: t0 + 3600) == Net.ip(100))
    }

    @Test func unansweredOffersAreReleasedAfterTheHoldTime() {
        var server = Net.server(first: 100, last: 100)
        _ = server.handle(TestClient(1).discover(), at: t0)
        #expect(server.handle(TestClient(2).discover(), at: t0 + 29) == .dropped(.poolExhausted))
        #expect(server.handle(TestClient(2).discover(), at: t0 + 30).reply?.message.yourIPAddress == Net.ip(100))
        #expect(server.expireLeases(now: LeaseInstant(seconds: t0 + 100)).map(\.address) == [Net.ip(100)])
    }

    @Test func staticReservationsAreNeverOffered() {
        var server = Net.server(first: 100, last: 103)
        let now = LeaseInstant(seconds: t0)
        #expect(server.leases.reserve(Net.ip(100), for: .named("port-a"), now: now).successValue != nil)
        #expect(server.leases.allocate(for: .named("port-b"), now: now) == .success(Net.ip(101)))
        #expect(server.dora(TestClient(1), at: t0) == Net.ip(102))
        #expect(server.handle(TestClient(2).initReboot(Net.ip(100)), at: t0).reply?.nakReason == .addressInUse)
        #expect(
            server.handle(TestClient(2).discover(requested: Net.ip(101)), at: t0).reply?.message.yourIPAddress
                == Net.ip(103)
        )
        // The daemon unreserves when the port goes away; the address is then free for DHCP.
        #expect(server.leases.release(.named("port-a"))?.address == Net.ip(100))
        #expect(server.dora(TestClient(3), at: t0 + 1) == Net.ip(100))
    }

    @Test func aStaticLeaseOwnedByAClientIsAHostReservation() {
        var server = Net.server()
        let a = TestClient(5, clientID: false)
        #expect(server.leases.reserve(Net.ip(42), for: a.owner, now: LeaseInstant(seconds: t0)).successValue != nil)
        #expect(server.dora(a, at: t0) == Net.ip(42))
        #expect(server.leases.lease(for: a.owner)?.state == .static)
        #expect(server.handle(a.renew(Net.ip(42)), at: t0 + 1800).reply?.message.messageType == .ack)
    }

    @Test func theServerIdentifierAndGatewayAreExcluded() throws {
        // Without a gateway the server identifier defaults to the subnet's last host address.
        let config = try DHCPServerConfiguration(
            subnet: Net.subnet,
            range: Net.ip(253)...Net.ip(254),
            serverMAC: Net.serverMAC
        )
        #expect(config.serverIdentifier == Net.ip(254))
        var server = DHCPServer(configuration: config)
        let a = TestClient(1)
        let offer = server.handle(a.discover(), at: t0).reply
        #expect(offer?.message.yourIPAddress == Net.ip(253) && offer?.source == Net.ip(254))
        #expect(offer?.message.options.serverIdentifier == Net.ip(254) && offer?.message.options.routers == [])
        #expect(server.handle(a.select(Net.ip(253), serverID: Net.ip(254)), at: t0).reply?.message.messageType == .ack)
        #expect(server.handle(TestClient(2).discover(), at: t0) == .dropped(.poolExhausted))
        // With a gateway inside the range, it is skipped.
        var withGateway = DHCPServer(configuration: Net.configuration(first: 1, last: 3))
        #expect(withGateway.dora(TestClient(1), at: t0) == Net.ip(2))
        // And replacing the table keeps the exclusions.
        withGateway.leases = try LeaseTable(subnet: Net.subnet, range: Net.ip(1)...Net.ip(3))
        #expect(withGateway.leases.excluded == [Net.gateway])
    }

    @Test func persistedLeasesRoundTripAndAllocationContinuesConsistently() throws {
        var server = Net.server()
        let a = TestClient(1, hostName: "alpha")
        #expect(server.dora(a, at: t0) == Net.ip(100))
        #expect(server.dora(TestClient(2), at: t0) == Net.ip(101))
        #expect(
            server.leases.allocate(for: .named("port-static"), now: LeaseInstant(seconds: t0)) == .success(Net.ip(102))
        )
        _ = server.handle(TestClient(3).discover(), at: t0)  // an outstanding offer of .103
        #expect(server.handle(TestClient(2).release(Net.ip(101)), at: t0 + 1) == .accepted(.release))

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(server.leases)
        let decoded = try JSONDecoder().decode(LeaseTable.self, from: data)
        #expect(decoded == server.leases)
        #expect(try encoder.encode(decoded) == data, "the same table encodes to the same bytes")

        var restarted = try DHCPServer(configuration: Net.configuration(), leases: decoded)
        #expect(restarted.handle(a.renew(Net.ip(100)), at: t0 + 1800).reply?.message.messageType == .ack)
        #expect(restarted.leases.lease(for: a.owner)?.hostName == "alpha")
        // The expired offer to client 3 and the released .101 are remembered for their clients: a new client
        // gets the never-used .104, and 3 and 2 get their addresses back.
        #expect(restarted.dora(TestClient(4), at: t0 + 1801) == Net.ip(104))
        #expect(restarted.dora(TestClient(3), at: t0 + 1802) == Net.ip(103))
        #expect(restarted.dora(TestClient(2), at: t0 + 1803) == Net.ip(101))
        #expect(
            restarted.leases.allocate(for: .named("port-static"), now: LeaseInstant(seconds: t0))
                == .success(Net.ip(102))
        )
        #expect(throws: DHCPConfigurationError.leaseTableMismatch) {
            try DHCPServer(configuration: Net.configuration(first: 100, last: 150), leases: decoded)
        }
    }

    // MARK: What is not served

    @Test func framesThatAreNotDHCPClientFramesPassThrough() {
        var server = Net.server()
        let mac = MACAddress(2, 0, 0, 0, 0, 1)
        let frames = [
            PacketBuilder.arpRequest(senderMAC: mac, senderIP: Net.ip(5), targetIP: Net.ip(6)),
            PacketBuilder.ethernetIPv4UDP(
                destination: .broadcast,
                source: mac,
                sourceIP: Net.ip(5),
                destinationIP: Net.ip(6),
                sourcePort: 68,
                destinationPort: 53,
                payload: [1, 2, 3]
            ),
            // A server's reply (67 -> 68) seen on a local port is not ours to answer.
            PacketBuilder.ethernetIPv4UDP(
                destination: .broadcast,
                source: mac,
                sourceIP: Net.ip(5),
                destinationIP: Net.ip(6),
                sourcePort: 67,
                destinationPort: 68,
                payload: [1, 2, 3]
            ),
        ]
        for frame in frames {
            #expect(server.handle(frame, at: t0) == .notDHCP)
            #expect(!isClientToServer(frame))
        }
    }

    @Test func messagesTheServerDoesNotAnswerAreDroppedWithAReason() {
        var server = Net.server()
        let a = TestClient(1)
        var relayed = a.message(.discover)
        relayed.relayAgentIPAddress = IPv4Address(10, 9, 0, 1)
        var reply = a.message(.discover)
        reply.operation = .reply
        var tokenRing = a.message(.discover)
        tokenRing.hardwareType = 6
        let cases: [(DHCPMessage, DHCPDropReason)] = [
            (relayed, .relayedMessage), (reply, .notBootRequest), (tokenRing, .unsupportedHardwareType),
            (a.message(.offer), .unexpectedMessageType), (a.message(.ack), .unexpectedMessageType),
        ]
        for (message, reason) in cases {
            #expect(server.handle(a.frame(message), at: t0) == .dropped(reason))
        }
        #expect(server.leases.leases.isEmpty)
    }

    // MARK: Configuration

    @Test func configurationIsValidated() {
        func make(
            range: ClosedRange<IPv4Address> = Net.ip(100)...Net.ip(199),
            gateway: IPv4Address? = nil,
            serverIdentifier: IPv4Address? = nil,
            leaseTime: UInt32 = 3600,
            dns: Int = 0
        ) -> DHCPConfigurationError? {
            do {
                _ = try DHCPServerConfiguration(
                    subnet: Net.subnet,
                    range: range,
                    gateway: gateway,
                    serverIdentifier: serverIdentifier,
                    serverMAC: Net.serverMAC,
                    leaseTime: leaseTime,
                    dnsServers: Array(repeating: Net.dns, count: dns)
                )
                return nil
            } catch {
                return error
            }
        }
        #expect(make() == nil)
        #expect(make(range: Net.ip(0)...Net.ip(10)) == .leaseTable(.invalidRange(first: Net.ip(0), last: Net.ip(10))))
        #expect(make(range: Net.ip(10)...IPv4Address(10, 20, 1, 5)) != nil)
        #expect(make(gateway: IPv4Address(10, 21, 0, 1)) == .gatewayOutsideSubnet(IPv4Address(10, 21, 0, 1)))
        #expect(make(serverIdentifier: Net.subnet.broadcast) == .serverIdentifierOutsideSubnet(Net.subnet.broadcast))
        #expect(make(leaseTime: 59) == .leaseTimeOutOfBounds(59))
        #expect(make(leaseTime: .max) == .leaseTimeOutOfBounds(.max))
        #expect(make(dns: 9) == .tooManyDNSServers(9))
    }

    @Test func renewalAndRebindingTimesAreHalfAndSevenEighthsOfTheLease() {
        let config = Net.configuration(leaseTime: 1000)
        #expect(config.renewalTime == 500 && config.rebindingTime == 875)
        let big = Net.configuration(leaseTime: UInt32.max - 1)
        #expect(big.rebindingTime == UInt32((UInt64(UInt32.max - 1) * 7) / 8))
    }
}
