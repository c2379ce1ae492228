// InterfacePlacement's sequence and its cleanup, without a kernel: two fake namespaces, each behind a mock socket,
// keep a table of links and answer rtnetlink requests the way the kernel does (lookups, moves between the two by
// IFLA_NET_NS_FD, renames with EEXIST, MAC/MTU/up/down, addresses, routes, deletes). A test makes exactly one
// request fail and checks the error and where the interface ends up.

import SystemPackage
import Testing
import VXPacket

@testable import VXNetlink

/// A namespace's link table behind a mock socket.
final class FakeNamespace {
    let socket = MockNetlinkSocket()
    /// The link table, by ifindex.
    var links: [Int32: LinkInfo] = [:]
    /// Addresses added, by ifindex.
    var addresses: [Int32: [InterfaceAddress]] = [:]
    /// Default routes added.
    var defaultRoutes: [IPv4Address] = []
    /// Namespaces reachable by IFLA_NET_NS_FD value.
    var peers: [Int32: FakeNamespace] = [:]
    /// Fails the first request for which this returns an errno.
    var failure: ((NetlinkMessage) -> Int32?)?
    private var nextIndex: Int32

    init(firstIndex: Int32) {
        nextIndex = firstIndex
        socket.responder = { [unowned self] request in [self.answer(request)] }
    }

    func add(_ link: LinkInfo) { links[link.index] = link }
    func named(_ name: String) -> LinkInfo? { links.values.first { $0.name == name } }

    private func answer(_ request: NetlinkMessage) -> [UInt8] {
        if let errno = failure?(request) {
            failure = nil
            return KernelReply.error(errno, to: request)
        }
        let reader = ByteReader(bytes: request.payload)
        switch request.type {
        case .getLink:
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 16..<request.payload.count) ?? []
            let index = reader.host(Int32.self, at: 4)!
            let link =
                index != 0 ? links[index] : attributes.attribute(LinkAttribute.name).flatMap { named($0.stringValue) }
            guard let link else { return KernelReply.error(19, to: request) }  // ENODEV
            return KernelReply.link(link, to: request)
        case .newLink:
            let index = reader.host(Int32.self, at: 4)!
            let flags = reader.host(UInt32.self, at: 8)!
            let change = reader.host(UInt32.self, at: 12)!
            guard var link = links[index] else { return KernelReply.error(19, to: request) }
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 16..<request.payload.count) ?? []
            if let fd = attributes.attribute(LinkAttribute.netnsFD)?.uint32Value {
                let peer = peers[Int32(bitPattern: fd)]!
                if peer.named(link.name) != nil { return KernelReply.error(17, to: request) }
                links[index] = nil
                link.flags.remove(.up)  // a move brings the link down
                link.index = peer.links[link.index] == nil ? link.index : peer.allocateIndex()
                peer.add(link)
                return KernelReply.ack(to: request)
            }
            if let name = attributes.attribute(LinkAttribute.name)?.stringValue {
                if link.isUp { return KernelReply.error(16, to: request) }  // EBUSY
                if let other = named(name), other.index != index { return KernelReply.error(17, to: request) }
                link.name = name
            }
            if let mac = attributes.attribute(LinkAttribute.address)?.macValue { link.mac = mac }
            if let mtu = attributes.attribute(LinkAttribute.mtu)?.uint32Value { link.mtu = mtu }
            if change & LinkFlags.up.rawValue != 0 {
                if flags & LinkFlags.up.rawValue != 0 { link.flags.insert(.up) } else { link.flags.remove(.up) }
            }
            links[index] = link
            return KernelReply.ack(to: request)
        case .deleteLink:
            let index = reader.host(Int32.self, at: 4)!
            guard links.removeValue(forKey: index) != nil else { return KernelReply.error(19, to: request) }
            return KernelReply.ack(to: request)
        case .newAddress:
            let index = Int32(bitPattern: reader.host(UInt32.self, at: 4)!)
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 8..<request.payload.count) ?? []
            let address = InterfaceAddress(
                address: attributes.attribute(AddressAttribute.local)!.ipv4Value!,
                prefixLength: request.payload[1]
            )!
            addresses[index, default: []].append(address)
            return KernelReply.ack(to: request)
        case .newRoute:
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 12..<request.payload.count) ?? []
            defaultRoutes.append(attributes.attribute(RouteAttribute.gateway)!.ipv4Value!)
            return KernelReply.ack(to: request)
        default:
            return KernelReply.error(95, to: request)  // EOPNOTSUPP
        }
    }

    func allocateIndex() -> Int32 {
        defer { nextIndex += 1 }
        return nextIndex
    }
}

@Suite("Placement sequence and cleanup (mock kernel)")
struct PlacementSequenceTests {
    static let originFD: Int32 = 40
    static let targetFD: Int32 = 41
    static let tapMAC = MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x05)
    static let configuration = PlacementConfiguration(
        name: "eth0",
        mac: MACAddress(0x02, 0x42, 0xAC, 0x11, 0x00, 0x02),
        mtu: 1400,
        address: InterfaceAddress("172.17.0.2/16"),
        gateway: IPv4Address(172, 17, 0, 1)
    )

    /// An origin namespace holding TAP vxt5 (ifindex 5) and an empty target namespace whose index 5 is taken by
    /// lo's neighbour, so the move renumbers the TAP (as the kernel does on a clash).
    static func world() -> (origin: FakeNamespace, target: FakeNamespace) {
        let origin = FakeNamespace(firstIndex: 100)
        let target = FakeNamespace(firstIndex: 2)
        origin.add(LinkInfo(index: 5, name: "vxt5", mac: tapMAC, mtu: 1500, flags: [.broadcast, .multicast]))
        target.add(LinkInfo(index: 1, name: "lo", mac: .zero, mtu: 65536, flags: [.up, .loopback]))
        target.add(LinkInfo(index: 5, name: "blocker", mac: nil, mtu: 1500, flags: []))
        origin.peers[targetFD] = target
        target.peers[originFD] = origin
        return (origin, target)
    }

    static func place(
        _ world: (origin: FakeNamespace, target: FakeNamespace),
        _ configuration: PlacementConfiguration = configuration
    ) throws(PlacementError) -> PlacedInterface {
        try InterfacePlacement.place(
            interface: "vxt5",
            configuration: configuration,
            origin: NetlinkSession(socket: world.origin.socket),
            originNamespace: .fileDescriptor(originFD),
            target: NetlinkSession(socket: world.target.socket),
            targetNamespace: .fileDescriptor(targetFD)
        )
    }

    @Test func sendsEachStepAsOneRequestInOrder() throws {
        let world = Self.world()
        let placed = try Self.place(world)
        #expect(placed.index == 2 && placed.name == "eth0" && placed.mtu == 1400)
        #expect(placed.mac == Self.configuration.mac)

        let origin = world.origin.socket
        #expect(
            origin.sent == [
                RouteRequest.getLink(name: "vxt5").encoded(sequence: 1, portID: origin.portID),
                RouteRequest.setLinkNamespace(index: 5, to: .fileDescriptor(Self.targetFD))
                    .encoded(sequence: 2, portID: origin.portID),
            ]
        )
        let target = world.target.socket
        let expected: [NetlinkRequest] = [
            RouteRequest.getLink(name: "vxt5"),
            RouteRequest.setLinkUp(index: 2, false),
            RouteRequest.renameLink(index: 2, to: "eth0"),
            RouteRequest.setLinkAddress(index: 2, Self.configuration.mac!),
            RouteRequest.setLinkMTU(index: 2, 1400),
            RouteRequest.addAddress(index: 2, Self.configuration.address!),
            RouteRequest.setLinkUp(index: 2, true),
            RouteRequest.addDefaultRoute(via: IPv4Address(172, 17, 0, 1), index: 2),
        ]
        #expect(
            target.sent == expected.enumerated().map { $1.encoded(sequence: UInt32($0 + 1), portID: target.portID) }
        )

        let eth0 = try #require(world.target.named("eth0"))
        #expect(eth0.isUp && eth0.mtu == 1400 && eth0.mac == Self.configuration.mac)
        #expect(world.target.addresses[2] == [InterfaceAddress("172.17.0.2/16")!])
        #expect(world.target.defaultRoutes == [IPv4Address(172, 17, 0, 1)])
        #expect(world.origin.links.isEmpty)
    }

    @Test func renameCollisionMovesTheInterfaceBackUnderItsOwnName() {
        let world = Self.world()
        world.target.add(LinkInfo(index: 3, name: "eth0", mac: nil, mtu: 1500, flags: []))
        do {
            _ = try Self.place(world)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .nameTaken && error.step == .rename)
            #expect(error.cause?.errno == .fileExists)
            #expect(error.cleanup == .movedBack(name: "vxt5", restored: true))
            #expect(error.description.contains("eth0 already exists"))
            #expect(error.description.contains("moved back"))
        }
        #expect(world.target.named("vxt5") == nil, "no stray interface in the target")
        #expect(world.target.links.count == 3)
        let home = world.origin.named("vxt5")
        #expect(home?.mac == Self.tapMAC && home?.mtu == 1500 && home?.isUp == false)
    }

    @Test func failureAfterConfiguringRestoresNameMACAndMTUAtHome() {
        let world = Self.world()
        world.target.failure = { $0.type == .newRoute ? 17 : nil }  // a default route already exists
        do {
            _ = try Self.place(world)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .defaultRouteExists && error.step == .addRoute)
            #expect(error.cleanup == .movedBack(name: "vxt5", restored: true))
        }
        #expect(world.target.links.count == 2)
        let home = world.origin.named("vxt5")
        #expect(home?.mac == Self.tapMAC && home?.mtu == 1500)
        // Home again: down, renamed back, moved, then looked up and restored through the origin session.
        let targetTail = world.target.socket.requests.suffix(3).map(\.type)
        #expect(targetTail == [.newLink, .newLink, .newLink])
        #expect(world.origin.socket.requests.map(\.type) == [.getLink, .newLink, .getLink, .newLink, .newLink])
    }

    @Test func deletesTheInterfaceWhenItCannotGoBack() {
        let world = Self.world()
        world.target.failure = { request in
            guard request.type == .newAddress else { return nil }
            // Meanwhile another vxt5 appeared at home, so the way back is blocked (EEXIST).
            world.origin.add(LinkInfo(index: 9, name: "vxt5", mac: nil, mtu: 1500, flags: []))
            return 17
        }
        do {
            _ = try Self.place(world)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .addressExists && error.step == .addAddress)
            #expect(error.cleanup == .deleted)
        }
        #expect(world.target.links.count == 2, "only lo and blocker remain")
    }

    @Test func deletePolicyDeletes() {
        let world = Self.world()
        world.target.failure = { $0.type == .newRoute ? 101 : nil }  // ENETUNREACH
        var configuration = Self.configuration
        configuration.onFailure = .delete
        do {
            _ = try Self.place(world, configuration)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .gatewayUnreachable && error.cleanup == .deleted)
        }
        #expect(world.target.links.count == 2 && world.origin.links.isEmpty)
    }

    @Test func moveCollisionChangesNothing() {
        let world = Self.world()
        world.target.add(LinkInfo(index: 3, name: "vxt5", mac: nil, mtu: 1500, flags: []))
        do {
            _ = try Self.place(world)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .nameTaken && error.step == .move && error.cleanup == .notNeeded)
        }
        #expect(world.origin.named("vxt5") != nil)
        #expect(world.target.socket.sent.isEmpty)
    }

    @Test func missingInterfaceIsReportedBeforeAnythingMoves() {
        let world = Self.world()
        world.origin.links = [:]
        do {
            _ = try Self.place(world)
            Issue.record("placement succeeded")
        } catch {
            #expect(error.code == .interfaceNotFound && error.step == .lookup && error.cleanup == .notNeeded)
        }
        #expect(world.origin.socket.sent.count == 1 && world.target.socket.sent.isEmpty)
    }

    @Test func configuringInPlaceSkipsTheMove() throws {
        let world = Self.world()
        world.target.add(LinkInfo(index: 7, name: "eth0", mac: Self.tapMAC, mtu: 1500, flags: []))
        let placed = try InterfacePlacement.configure(
            interface: "eth0",
            configuration: Self.configuration,
            target: NetlinkSession(socket: world.target.socket)
        )
        #expect(placed.index == 7 && placed.name == "eth0" && placed.mtu == 1400)
        #expect(
            !world.target.socket.requests.contains { request in
                NetlinkAttribute.decodeAll(request.payload, in: 16..<request.payload.count)?
                    .attribute(LinkAttribute.netnsFD) != nil
            }
        )
        #expect(world.target.named("eth0")?.isUp == true && world.target.defaultRoutes.count == 1)
        #expect(
            placed.timings.map(\.step) == [
                .lookupInTarget, .setDown, .setMAC, .setMTU, .addAddress, .setUp, .addRoute,
            ]
        )
    }

    @Test func configuringInPlaceDeletesOnFailure() {
        let world = Self.world()
        world.target.add(LinkInfo(index: 7, name: "eth0", mac: Self.tapMAC, mtu: 1500, flags: []))
        world.target.failure = { $0.type == .newAddress ? 17 : nil }
        do {
            _ = try InterfacePlacement.configure(
                interface: "eth0",
                configuration: Self.configuration,
                target: NetlinkSession(socket: world.target.socket)
            )
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.code == .addressExists && error.cleanup == .deleted)
        }
        #expect(world.target.named("eth0") == nil)
    }

    static let invalidConfigurations: [(String, PlacementConfiguration)] = [
        ("name too long", PlacementConfiguration(name: "eth0-much-too-long")),
        ("name with slash", PlacementConfiguration(name: "eth/0")),
        ("multicast MAC", PlacementConfiguration(name: "eth0", mac: MACAddress(0x01, 0, 0x5E, 0, 0, 1))),
        ("zero MAC", PlacementConfiguration(name: "eth0", mac: .zero)),
        ("MTU below 68", PlacementConfiguration(name: "eth0", mtu: 60)),
        ("network address", PlacementConfiguration(name: "eth0", address: InterfaceAddress("10.0.0.0/24"))),
        ("broadcast address", PlacementConfiguration(name: "eth0", address: InterfaceAddress("10.0.0.255/24"))),
        ("multicast address", PlacementConfiguration(name: "eth0", address: InterfaceAddress("224.0.0.5/24"))),
        ("prefix 0", PlacementConfiguration(name: "eth0", address: InterfaceAddress("10.0.0.5/0"))),
        ("gateway without address", PlacementConfiguration(name: "eth0", gateway: IPv4Address(10, 0, 0, 1))),
        (
            "gateway outside the subnet",
            PlacementConfiguration(
                name: "eth0",
                address: InterfaceAddress("10.0.0.5/24"),
                gateway: IPv4Address(10, 0, 1, 1)
            )
        ),
        (
            "gateway is the address",
            PlacementConfiguration(
                name: "eth0",
                address: InterfaceAddress("10.0.0.5/24"),
                gateway: IPv4Address(10, 0, 0, 5)
            )
        ),
    ]

    @Test(arguments: invalidConfigurations)
    func invalidConfigurationChangesNothing(_ label: String, _ configuration: PlacementConfiguration) {
        let world = Self.world()
        do {
            _ = try Self.place(world, configuration)
            Issue.record("\(label) accepted")
        } catch {
            #expect(error.code == .invalidConfiguration && error.step == .validate, "\(label)")
        }
        #expect(world.origin.socket.sent.isEmpty && world.target.socket.sent.isEmpty)
    }
}
