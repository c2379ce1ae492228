// UnderlayNeighbors: the TAP underlay's ARP table. Pure: frames in, frames out, time passed in. Test frames are built
// byte by byte here (not with the type's own builder), and the type's frames are read back with VXPacket's parsers,
// so a wrong offset in either direction shows.

import Testing
import VXPacket
import VXTestSupport

@testable import VXDaemon

/// Addresses of a small underlay: us at 192.0.2.10/24, the gateway at .1, peers on-link and beyond.
enum NeighborFixture {
    static let local = IPv4Address(192, 0, 2, 10)
    static let localMAC = MACAddress(0x02, 0x76, 0x78, 0x00, 0x02, 0x0A)
    static let gateway = IPv4Address(192, 0, 2, 1)
    static let gatewayMAC = MACAddress(0x52, 0x54, 0x00, 0x00, 0x00, 0x01)
    static let peer = IPv4Address(192, 0, 2, 20)
    static let peerMAC = MACAddress(0x52, 0x54, 0x00, 0x00, 0x00, 0x14)
    static let farPeer = IPv4Address(198, 51, 100, 7)
    static let otherFarPeer = IPv4Address(203, 0, 113, 9)
    static let t0 = ContinuousClock.now

    static func table(gateway: IPv4Address? = gateway, capacity: Int = 1024) -> UnderlayNeighbors {
        UnderlayNeighbors(
            localAddress: local,
            localMAC: localMAC,
            prefixLength: 24,
            gateway: gateway,
            capacity: capacity
        )
    }

    /// An untagged Ethernet + ARP frame, written out field by field.
    static func arp(
        operation: UInt16,
        senderMAC: MACAddress,
        senderIP: IPv4Address,
        targetMAC: MACAddress = .zero,
        targetIP: IPv4Address
    ) -> [UInt8] {
        func mac(_ m: MACAddress) -> [UInt8] { (0..<6).map { m[octet: $0] } }
        func ip(_ a: IPv4Address) -> [UInt8] { withUnsafeBytes(of: a.value.bigEndian, Array.init) }
        let to: MACAddress = operation == ARPPacket.request ? .broadcast : targetMAC
        return mac(to) + mac(senderMAC) + [0x08, 0x06]  // Ethernet: destination, source, EtherType ARP
            + [0x00, 0x01, 0x08, 0x00, 6, 4]  // ARP: HTYPE Ethernet, PTYPE IPv4, HLEN, PLEN
            + [UInt8(operation >> 8), UInt8(operation & 0xFF)] + mac(senderMAC) + ip(senderIP) + mac(targetMAC)
            + ip(targetIP)
    }

    static func request(from senderMAC: MACAddress, _ senderIP: IPv4Address, for target: IPv4Address) -> [UInt8] {
        arp(operation: ARPPacket.request, senderMAC: senderMAC, senderIP: senderIP, targetIP: target)
    }

    /// A reply from `senderIP` at `senderMAC`, addressed to us.
    static func reply(from senderMAC: MACAddress, _ senderIP: IPv4Address) -> [UInt8] {
        arp(operation: ARPPacket.reply, senderMAC: senderMAC, senderIP: senderIP, targetMAC: localMAC, targetIP: local)
    }

    /// The Ethernet header and ARP packet of a frame the table built; nil if they do not parse.
    static func parse(_ frame: [UInt8]) -> (EthernetHeader, ARPPacket)? {
        let bytes = frame.span.bytes
        guard case .success(let ethernet) = EthernetHeader.parse(bytes),
            case .success(let arp) = ARPPacket.parse(bytes.extracting(ethernet.length..<bytes.byteCount))
        else { return nil }
        return (ethernet, arp)
    }
}

@Suite("UnderlayNeighbors: the TAP underlay's ARP table")
struct UnderlayNeighborsTests {
    typealias U = NeighborFixture

    // MARK: Next hops

    @Test(
        "the next hop is the remote when on-link, else the gateway; nil when unreachable or not a unicast host",
        arguments: [
            (
                IPv4Address(192, 0, 2, 20), IPv4Address(192, 0, 2, 1) as IPv4Address?,
                IPv4Address(192, 0, 2, 20) as IPv4Address?
            ),
            (IPv4Address(192, 0, 2, 1), IPv4Address(192, 0, 2, 1), IPv4Address(192, 0, 2, 1)),
            (IPv4Address(198, 51, 100, 7), IPv4Address(192, 0, 2, 1), IPv4Address(192, 0, 2, 1)),
            (IPv4Address(198, 51, 100, 7), nil, nil),  // off-link, no gateway: unreachable
            (IPv4Address(192, 0, 2, 20), nil, IPv4Address(192, 0, 2, 20)),  // on-link needs no gateway
            (IPv4Address(192, 0, 2, 10), IPv4Address(192, 0, 2, 1), nil),  // ourselves
            (IPv4Address(192, 0, 2, 0), IPv4Address(192, 0, 2, 1), nil),  // the prefix's network address
            (IPv4Address(192, 0, 2, 255), IPv4Address(192, 0, 2, 1), nil),  // the prefix's broadcast address
            (IPv4Address(239, 1, 1, 1), IPv4Address(192, 0, 2, 1), nil),  // a multicast group: no ARP
            (IPv4Address(255, 255, 255, 255), IPv4Address(192, 0, 2, 1), nil),
            (IPv4Address.any, IPv4Address(192, 0, 2, 1), nil),
        ]
    )
    func nextHop(remote: IPv4Address, gateway: IPv4Address?, expected: IPv4Address?) {
        #expect(U.table(gateway: gateway).nextHop(for: remote) == expected)
    }

    @Test("a /32 address reaches everything through an off-prefix gateway, and learns the gateway's replies")
    func slash32WithOnLinkRouteToGateway() {
        let gateway = IPv4Address(10, 128, 0, 1)
        var table = UnderlayNeighbors(
            localAddress: IPv4Address(10, 128, 0, 5),
            localMAC: U.localMAC,
            prefixLength: 32,
            gateway: gateway
        )
        #expect(table.nextHop(for: IPv4Address(10, 128, 0, 6)) == gateway)
        table.setWanted([IPv4Address(10, 128, 0, 6)])
        let reply = U.arp(
            operation: ARPPacket.reply,
            senderMAC: U.gatewayMAC,
            senderIP: gateway,
            targetMAC: U.localMAC,
            targetIP: IPv4Address(10, 128, 0, 5)
        )
        #expect(table.handle(frame: reply, now: U.t0).wantedChanged)
        #expect(table.macsByRemote() == [IPv4Address(10, 128, 0, 6): U.gatewayMAC])
    }

    // MARK: Requests for our address

    @Test("a request for our address gets a unicast reply from our MAC, and teaches us the requester")
    func requestForUsIsAnsweredAndLearned() throws {
        var table = U.table()
        let update = table.handle(frame: U.request(from: U.peerMAC, U.peer, for: U.local), now: U.t0)
        let reply = try #require(update.reply)
        #expect(reply.count == 42)
        let (ethernet, arp) = try #require(U.parse(reply))
        #expect(ethernet.destination == U.peerMAC)
        #expect(ethernet.source == U.localMAC)
        #expect(ethernet.vlan == nil)
        #expect(ethernet.etherType == .arp)
        #expect(arp.operation == ARPPacket.reply)
        #expect(arp.senderMAC == U.localMAC)
        #expect(arp.senderIP == U.local)
        #expect(arp.targetMAC == U.peerMAC)
        #expect(arp.targetIP == U.peer)
        #expect(table.mac(forNextHop: U.peer) == U.peerMAC)
        #expect(!update.wantedChanged, "the requester is not a wanted next hop")
        #expect(table.entries() == [.init(address: U.peer, mac: U.peerMAC, wanted: false, confirmed: U.t0)])
    }

    @Test("a request from a wanted next hop for our address resolves it and says so")
    func requestFromWantedHopResolvesIt() {
        var table = U.table()
        table.setWanted([U.peer])
        let update = table.handle(frame: U.request(from: U.peerMAC, U.peer, for: U.local), now: U.t0)
        #expect(update.reply != nil)
        #expect(update.wantedChanged)
        #expect(table.macsByRemote() == [U.peer: U.peerMAC])
    }

    @Test("a request for another address gets no reply and teaches nothing about an unknown sender")
    func requestForSomeoneElseIsIgnored() {
        var table = U.table()
        let update = table.handle(frame: U.request(from: U.peerMAC, U.peer, for: IPv4Address(192, 0, 2, 11)), now: U.t0)
        #expect(update == NeighborUpdate(reply: nil, wantedChanged: false))
        #expect(table.entries().isEmpty)
    }

    @Test("a probe for our address (sender 0.0.0.0) is answered with target 0.0.0.0, and nothing is learned")
    func probeIsAnsweredNotLearned() throws {
        var table = U.table()
        let update = table.handle(frame: U.request(from: U.peerMAC, .any, for: U.local), now: U.t0)
        let reply = try #require(update.reply)
        let (ethernet, arp) = try #require(U.parse(reply))
        #expect(ethernet.destination == U.peerMAC)
        #expect(arp.targetIP == .any)
        #expect(arp.targetMAC == U.peerMAC)
        #expect(table.entries().isEmpty)
    }

    // MARK: Replies

    @Test("a reply resolves a wanted next hop; the same MAC again is no change; a new MAC is")
    func replyResolvesAndMoves() {
        var table = U.table()
        table.setWanted([U.peer])
        #expect(table.mac(forNextHop: U.peer) == nil)
        #expect(table.macsByRemote().isEmpty)

        let first = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        #expect(first == NeighborUpdate(reply: nil, wantedChanged: true))
        #expect(table.mac(forNextHop: U.peer) == U.peerMAC)
        #expect(table.macsByRemote() == [U.peer: U.peerMAC])

        let again = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0 + .seconds(1))
        #expect(again == NeighborUpdate(reply: nil, wantedChanged: false))

        let moved = MACAddress(0x52, 0x54, 0x00, 0x00, 0x00, 0x99)
        let third = table.handle(frame: U.reply(from: moved, U.peer), now: U.t0 + .seconds(2))
        #expect(third.wantedChanged)
        #expect(table.macsByRemote() == [U.peer: moved])
    }

    @Test("a reply from a neighbour nobody wants is learned but reports no change")
    func unwantedReplyIsLearnedQuietly() {
        var table = U.table()
        table.setWanted([U.farPeer])
        #expect(!table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0).wantedChanged)
        #expect(table.mac(forNextHop: U.peer) == U.peerMAC)
        #expect(table.macsByRemote().isEmpty)
    }

    @Test("remotes behind the gateway all get the gateway's MAC, keyed by remote")
    func remotesBehindGatewayShareItsMAC() {
        var table = U.table()
        table.setWanted([U.farPeer, U.otherFarPeer, U.peer, IPv4Address(239, 1, 1, 1)])
        _ = table.handle(frame: U.reply(from: U.gatewayMAC, U.gateway), now: U.t0)
        #expect(table.macsByRemote() == [U.farPeer: U.gatewayMAC, U.otherFarPeer: U.gatewayMAC])
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        #expect(table.macsByRemote() == [U.farPeer: U.gatewayMAC, U.otherFarPeer: U.gatewayMAC, U.peer: U.peerMAC])
    }

    // MARK: Gratuitous ARP

    @Test("a gratuitous ARP request moves a known next hop, but does not create an entry for a stranger")
    func gratuitousRequestUpdatesKnownOnly() {
        var table = U.table()
        table.setWanted([U.peer])
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        let moved = MACAddress(0x52, 0x54, 0x00, 0x00, 0x00, 0x99)
        let announce = U.request(from: moved, U.peer, for: U.peer)
        let update = table.handle(frame: announce, now: U.t0 + .seconds(1))
        #expect(update == NeighborUpdate(reply: nil, wantedChanged: true))
        #expect(table.mac(forNextHop: U.peer) == moved)

        let stranger = IPv4Address(192, 0, 2, 30)
        _ = table.handle(frame: U.request(from: U.gatewayMAC, stranger, for: stranger), now: U.t0)
        #expect(table.mac(forNextHop: stranger) == nil)
    }

    @Test("a gratuitous ARP announce resolves a wanted next hop that had not answered yet")
    func gratuitousRequestResolvesWantedHop() {
        var table = U.table()
        table.setWanted([U.farPeer])
        let update = table.handle(frame: U.request(from: U.gatewayMAC, U.gateway, for: U.gateway), now: U.t0)
        #expect(update.wantedChanged)
        #expect(table.macsByRemote() == [U.farPeer: U.gatewayMAC])
    }

    // MARK: Bogus senders

    /// Frames whose sender must not be learned, and which must not be answered even when they ask for us.
    static let bogusSenders: [(String, MACAddress, IPv4Address)] = [
        ("claims our address", U.peerMAC, U.local),
        ("zero MAC", .zero, U.peer),
        ("broadcast MAC", .broadcast, U.peer),
        ("multicast MAC", MACAddress(0x01, 0x00, 0x5E, 0x00, 0x00, 0x01), U.peer),
        ("our own MAC (a loop)", U.localMAC, U.peer),
        ("multicast sender address", U.peerMAC, IPv4Address(224, 0, 0, 1)),
        ("limited broadcast sender address", U.peerMAC, IPv4Address(255, 255, 255, 255)),
    ]

    @Test("bogus senders are neither learned nor answered", arguments: bogusSenders)
    func bogusSendersIgnored(_ why: String, mac: MACAddress, ip: IPv4Address) {
        var table = U.table()
        table.setWanted([U.peer])
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        let before = table.entries()
        for frame in [
            U.reply(from: mac, ip), U.request(from: mac, ip, for: U.local), U.request(from: mac, ip, for: ip),
        ] {
            #expect(
                table.handle(frame: frame, now: U.t0 + .seconds(1)) == NeighborUpdate(reply: nil, wantedChanged: false)
            )
        }
        #expect(table.entries() == before, "\(why)")
    }

    @Test(
        "senders that are not neighbours are not learned (0.0.0.0, off-link, the prefix's broadcast address)",
        arguments: [IPv4Address.any, U.farPeer, IPv4Address(192, 0, 2, 255), IPv4Address(192, 0, 2, 0)]
    )
    func nonNeighboursNotLearned(sender: IPv4Address) {
        var table = U.table()
        table.setWanted([U.farPeer])
        #expect(!table.handle(frame: U.reply(from: U.peerMAC, sender), now: U.t0).wantedChanged)
        #expect(!table.handle(frame: U.request(from: U.peerMAC, sender, for: U.local), now: U.t0).wantedChanged)
        #expect(table.entries().allSatisfy { $0.mac == nil })
    }

    // MARK: Requests we send

    @Test("request(for:from:address:) is a 42-byte broadcast ARP request with a zero target MAC")
    func requestBytes() {
        let frame = UnderlayNeighbors.request(for: U.peer, from: U.localMAC, address: U.local)
        let expected: [UInt8] =
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]  // Ethernet destination: broadcast
            + [0x02, 0x76, 0x78, 0x00, 0x02, 0x0A]  // Ethernet source: our MAC
            + [0x08, 0x06]  // EtherType ARP
            + [0x00, 0x01, 0x08, 0x00, 0x06, 0x04]  // HTYPE 1, PTYPE IPv4, HLEN 6, PLEN 4
            + [0x00, 0x01]  // OPER request
            + [0x02, 0x76, 0x78, 0x00, 0x02, 0x0A, 192, 0, 2, 10]  // sender MAC, sender IP (ours)
            + [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 20]  // target MAC zero, target IP
        #expect(frame == expected)
    }

    @Test("an unresolved next hop is asked once per request interval")
    func unresolvedAskedOncePerInterval() throws {
        var table = U.table()
        table.setWanted([U.farPeer, U.peer])
        let first = table.requestsDue(now: U.t0)
        #expect(first.count == 2)
        let targets = try first.map { try #require(U.parse($0)).1.targetIP }
        #expect(targets == [U.gateway, U.peer])
        #expect(first[0] == UnderlayNeighbors.request(for: U.gateway, from: U.localMAC, address: U.local))
        #expect(table.requestsDue(now: U.t0).isEmpty)
        #expect(table.requestsDue(now: U.t0 + .milliseconds(999)).isEmpty)
        #expect(table.requestsDue(now: U.t0 + .seconds(1)).count == 2)
        #expect(table.requestsDue(now: U.t0 + .milliseconds(1500)).isEmpty)
    }

    @Test("a resolved next hop is not asked while fresh, is asked after the refresh interval, and keeps its MAC")
    func resolvedRefreshed() {
        var table = U.table()
        table.setWanted([U.peer])
        #expect(table.requestsDue(now: U.t0).count == 1)
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0 + .milliseconds(10))
        #expect(table.requestsDue(now: U.t0 + .seconds(2)).isEmpty)
        #expect(table.requestsDue(now: U.t0 + .seconds(30)).isEmpty)
        let stale = U.t0 + .milliseconds(30_010)
        #expect(
            table.requestsDue(now: stale) == [
                UnderlayNeighbors.request(for: U.peer, from: U.localMAC, address: U.local)
            ]
        )
        #expect(table.macsByRemote() == [U.peer: U.peerMAC], "the old MAC stays usable while asked again")
        #expect(table.requestsDue(now: stale + .milliseconds(500)).isEmpty, "re-asked at most once per interval")
        #expect(table.requestsDue(now: stale + .seconds(1)).count == 1)
        // An answer makes it fresh again.
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: stale + .seconds(1))
        #expect(table.requestsDue(now: stale + .seconds(5)).isEmpty)
    }

    @Test("only wanted next hops are asked for")
    func unwantedNotAsked() {
        var table = U.table()
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        #expect(table.requestsDue(now: U.t0 + .seconds(60)).isEmpty)
        table.setWanted([U.farPeer])
        table.setWanted([])
        #expect(table.requestsDue(now: U.t0 + .seconds(60)).isEmpty)
        #expect(table.entries().map(\.address) == [U.peer], "the unresolved gateway entry went with its remote")
    }

    // MARK: Malformed input

    @Test("every truncation of a valid frame is ignored without a trap")
    func truncatedFramesIgnored() {
        let valid = [
            U.request(from: U.peerMAC, U.peer, for: U.local), U.reply(from: U.gatewayMAC, U.gateway),
            U.request(from: U.peerMAC, U.peer, for: U.peer),
        ]
        var table = U.table()
        table.setWanted([U.peer, U.farPeer])
        for frame in valid {
            for length in 0..<frame.count {
                let update = table.handle(frame: Array(frame.prefix(length)), now: U.t0)
                #expect(update == NeighborUpdate(reply: nil, wantedChanged: false), "length \(length)")
            }
        }
        #expect(table.entries().allSatisfy { $0.mac == nil })
        // The full frames do count: the loop above is not vacuous.
        #expect(table.handle(frame: valid[0], now: U.t0).reply != nil)
    }

    /// One byte of a valid request for our address changed: each must make the frame ignored.
    static let corruptions: [(String, Int, UInt8)] = [
        ("EtherType IPv4", 12, 0x00), ("HTYPE 6", 15, 6), ("PTYPE IPv6 high", 16, 0x86), ("HLEN 8", 18, 8),
        ("PLEN 16", 19, 16), ("OPER 3", 21, 3), ("OPER 0", 21, 0),
    ]

    @Test("frames that are not Ethernet/IPv4 ARP requests or replies are ignored", arguments: corruptions)
    func corruptedFieldsIgnored(_ field: String, offset: Int, value: UInt8) {
        var frame = U.request(from: U.peerMAC, U.peer, for: U.local)
        frame[offset] = value
        var table = U.table()
        table.setWanted([U.peer])
        #expect(table.handle(frame: frame, now: U.t0) == NeighborUpdate(reply: nil, wantedChanged: false), "\(field)")
        #expect(table.mac(forNextHop: U.peer) == nil)
    }

    @Test("an 802.1Q-tagged ARP request for our address is ignored: our underlay is untagged")
    func taggedFrameIgnored() {
        var frame = U.request(from: U.peerMAC, U.peer, for: U.local)
        frame.insert(contentsOf: [0x81, 0x00, 0x00, 0x05], at: 12)
        var table = U.table()
        #expect(table.handle(frame: frame, now: U.t0) == NeighborUpdate(reply: nil, wantedChanged: false))
        #expect(table.entries().isEmpty)
    }

    @Test("random bytes never trap and change nothing")
    func randomBytesIgnored() {
        var random = SplitMix64(seed: 0x5EED_A4B0)
        var table = U.table()
        table.setWanted([U.peer, U.farPeer])
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        let before = table.entries()
        for round in 0..<5000 {
            let count = Int.random(in: 0..<80, using: &random)
            var frame = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            // Half the rounds carry the ARP EtherType, so the ARP parser sees random payloads too.
            if random.chance(50), frame.count >= 14 {
                frame[12] = 0x08
                frame[13] = 0x06
            }
            let update = table.handle(frame: frame, now: U.t0 + .seconds(1))
            #expect(update == NeighborUpdate(reply: nil, wantedChanged: false), "round \(round)")
        }
        #expect(table.entries() == before)
    }

    // MARK: Wanted set and capacity

    @Test("a next hop wanted again keeps the MAC it had, without asking")
    func rewantedKeepsMAC() {
        var table = U.table()
        table.setWanted([U.peer])
        _ = table.handle(frame: U.reply(from: U.peerMAC, U.peer), now: U.t0)
        table.setWanted([])
        #expect(table.macsByRemote().isEmpty)
        #expect(table.mac(forNextHop: U.peer) == U.peerMAC)
        table.setWanted([U.peer])
        #expect(table.macsByRemote() == [U.peer: U.peerMAC])
        #expect(table.requestsDue(now: U.t0 + .seconds(1)).isEmpty)
    }

    @Test("over capacity, the least recently learned unwanted entry goes first; wanted ones stay")
    func capacityEvictsOldestUnwanted() {
        var table = U.table(capacity: 3)
        table.setWanted([U.peer])
        let hosts = (30...33).map { IPv4Address(192, 0, 2, UInt8($0)) }
        func mac(_ i: Int) -> MACAddress { MACAddress(0x52, 0x54, 0x00, 0x00, 0x01, UInt8(i)) }
        _ = table.handle(frame: U.reply(from: mac(0), hosts[0]), now: U.t0)
        _ = table.handle(frame: U.reply(from: mac(1), hosts[1]), now: U.t0)
        #expect(table.entries().count == 3)
        // hosts[0] answers again, so hosts[1] is now the least recently learned.
        _ = table.handle(frame: U.reply(from: mac(0), hosts[0]), now: U.t0)
        _ = table.handle(frame: U.reply(from: mac(2), hosts[2]), now: U.t0)
        #expect(table.entries().map(\.address) == [U.peer, hosts[0], hosts[2]])
        _ = table.handle(frame: U.reply(from: mac(3), hosts[3]), now: U.t0)
        #expect(table.entries().map(\.address) == [U.peer, hosts[2], hosts[3]])
        #expect(table.entries().first?.wanted == true)
    }

    @Test("with more wanted next hops than capacity, all of them are kept and nothing else")
    func wantedBeyondCapacity() {
        var table = U.table(capacity: 2)
        _ = table.handle(frame: U.reply(from: U.gatewayMAC, U.gateway), now: U.t0)
        let peers = (20...23).map { IPv4Address(192, 0, 2, UInt8($0)) }
        table.setWanted(peers)
        #expect(table.entries().map(\.address) == peers)
        #expect(table.entries().allSatisfy { $0.wanted })
        _ = table.handle(frame: U.reply(from: U.gatewayMAC, U.gateway), now: U.t0)
        #expect(table.mac(forNextHop: U.gateway) == nil, "no room for an unwanted entry")
        #expect(table.requestsDue(now: U.t0).count == 4)
    }

    // MARK: Default MAC

    @Test("the default MAC is 02:76:78 and the address's last three octets: locally administered unicast")
    func defaultMAC() {
        let mac = UnderlayNeighbors.defaultMAC(for: IPv4Address(10, 1, 2, 3))
        #expect(mac == MACAddress(0x02, 0x76, 0x78, 0x01, 0x02, 0x03))
        #expect(mac.description == "02:76:78:01:02:03")
        #expect(mac[octet: 0] & 0x02 != 0 && mac.isLearnableSource)
    }
}
