// InterfacePlacement's sequence and its cleanup, without a kernel: a fake namespace behind a mock socket keeps a
// table of links and answers rtnetlink requests the way the kernel does (lookups, renames with EEXIST,
// MAC/MTU/up/down, root qdiscs, addresses, routes, deletes). A test makes exactly one request fail and checks the error and
// what is left of the interface.

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
    /// Root queueing disciplines set, by ifindex.
    var rootQdiscs: [Int32: String] = [:]
    /// Fails the first request for which this returns an errno.
    var failure: ((NetlinkMessage) -> Int32?)?

    init() {
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
            if attributes.attribute(LinkAttribute.netnsFD) != nil { return KernelReply.error(95, to: request) }
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
        case .newQdisc:
            let index = reader.host(Int32.self, at: 4)!
            guard links[index] != nil else { return KernelReply.error(19, to: request) }
            #expect(reader.host(UInt32.self, at: 12) == QdiscAttribute.rootParent)
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 20..<request.payload.count) ?? []
            rootQdiscs[index] = attributes.attribute(QdiscAttribute.kind)!.stringValue
            return KernelReply.ack(to: request)
        case .newRoute:
            let attributes = NetlinkAttribute.decodeAll(request.payload, in: 12..<request.payload.count) ?? []
            defaultRoutes.append(attributes.attribute(RouteAttribute.gateway)!.ipv4Value!)
            return KernelReply.ack(to: request)
        default:
            return KernelReply.error(95, to: request)  // EOPNOTSUPP
        }
    }
}

@Suite("Placement sequence and cleanup (mock kernel)")
struct PlacementSequenceTests {
    static let tapMAC = MACAddress(0x02, 0x00, 0x00, 0x00, 0x00, 0x05)
    static let configuration = PlacementConfiguration(
        name: "eth0",
        mac: MACAddress(0x02, 0x42, 0xAC, 0x11, 0x00, 0x02),
        mtu: 1400,
        address: InterfaceAddress("172.17.0.2/16"),
        gateway: IPv4Address(172, 17, 0, 1)
    )

    /// A container namespace holding lo and the TAP vxt7 (ifindex 7) that the daemon just created there.
    static func world() -> FakeNamespace {
        let namespace = FakeNamespace()
        namespace.add(LinkInfo(index: 1, name: "lo", mac: .zero, mtu: 65536, flags: [.up, .loopback]))
        namespace.add(LinkInfo(index: 7, name: "vxt7", mac: tapMAC, mtu: 1500, flags: []))
        return namespace
    }

    static func configure(
        _ namespace: FakeNamespace,
        _ configuration: PlacementConfiguration = configuration
    ) throws(PlacementError) -> PlacedInterface {
        try InterfacePlacement.configure(
            interface: "vxt7", configuration: configuration, target: NetlinkSession(socket: namespace.socket))
    }

    @Test func sendsEachStepAsOneRequestInOrderWithoutAMove() throws {
        let namespace = Self.world()
        let placed = try Self.configure(namespace)
        #expect(placed.index == 7 && placed.name == "eth0" && placed.mtu == 1400)
        #expect(placed.mac == Self.configuration.mac)
        let expected: [NetlinkRequest] = [
            RouteRequest.getLink(name: "vxt7"),
            RouteRequest.setLinkUp(index: 7, false),
            RouteRequest.renameLink(index: 7, to: "eth0"),
            RouteRequest.setLinkAddress(index: 7, Self.configuration.mac!),
            RouteRequest.setLinkMTU(index: 7, 1400),
            RouteRequest.addAddress(index: 7, Self.configuration.address!),
            RouteRequest.replaceRootQdisc(index: 7, kind: "noqueue"),
            RouteRequest.setLinkUp(index: 7, true),
            RouteRequest.addDefaultRoute(via: IPv4Address(172, 17, 0, 1), index: 7),
            RouteRequest.getLink(index: 7),
        ]
        let socket = namespace.socket
        #expect(socket.sent == expected.enumerated().map { $1.encoded(sequence: UInt32($0 + 1), portID: socket.portID) })
        #expect(
            placed.timings.map(\.step) == [
                .lookupInTarget, .setDown, .rename, .setMAC, .setMTU, .addAddress, .setNoqueue, .setUp, .addRoute,
            ]
        )
        let eth0 = try #require(namespace.named("eth0"))
        #expect(eth0.isUp && eth0.mtu == 1400 && eth0.mac == Self.configuration.mac)
        #expect(namespace.addresses[7] == [InterfaceAddress("172.17.0.2/16")!])
        #expect(namespace.defaultRoutes == [IPv4Address(172, 17, 0, 1)])
        #expect(namespace.rootQdiscs == [7: "noqueue"] && placed.qdiscRefusal == nil)
    }

    /// A kernel without traffic control refuses the qdisc: the placement goes on, the interface keeps its default
    /// discipline, and the result says why.
    @Test func aRefusedQdiscIsReportedAndTheRestGoesOn() throws {
        let namespace = Self.world()
        namespace.failure = { $0.type == .newQdisc ? 95 : nil }  // EOPNOTSUPP
        let placed = try Self.configure(namespace)
        #expect(placed.qdiscRefusal?.errno == .notSupported)
        #expect(!placed.timings.map(\.step).contains(.setNoqueue))
        #expect(placed.timings.map(\.step).suffix(2) == [.setUp, .addRoute])
        #expect(try #require(namespace.named("eth0")).isUp && namespace.rootQdiscs.isEmpty)
    }

    @Test func renameCollisionDeletesTheInterface() {
        let namespace = Self.world()
        namespace.add(LinkInfo(index: 3, name: "eth0", mac: nil, mtu: 1500, flags: []))
        do {
            _ = try Self.configure(namespace)
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.code == .nameTaken && error.step == .rename)
            #expect(error.cause?.errno == .fileExists)
            #expect(error.cleanup == .deleted)
            #expect(error.description.contains("eth0 already exists"))
            #expect(error.description.contains("deleted"))
        }
        #expect(namespace.named("vxt7") == nil, "no stray interface")
        #expect(namespace.links.keys.sorted() == [1, 3])
    }

    @Test func failedStepDeletesTheInterface() {
        let namespace = Self.world()
        namespace.failure = { $0.type == .newAddress ? 17 : nil }
        do {
            _ = try Self.configure(namespace)
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.code == .addressExists && error.cleanup == .deleted)
        }
        #expect(namespace.named("eth0") == nil && namespace.links.keys.sorted() == [1])
    }

    @Test func unreachableGatewayIsNamedAndTheInterfaceDeleted() {
        let namespace = Self.world()
        namespace.failure = { $0.type == .newRoute ? 101 : nil }  // ENETUNREACH
        do {
            _ = try Self.configure(namespace)
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.code == .gatewayUnreachable && error.step == .addRoute && error.cleanup == .deleted)
            #expect(error.description.contains("no route to the gateway 172.17.0.1"))
        }
        #expect(namespace.links.keys.sorted() == [1])
    }

    @Test func failedDeleteIsReported() {
        let namespace = Self.world()
        namespace.failure = { request in
            guard request.type == .newLink, namespace.named("eth0") != nil else { return nil }
            // The MAC is refused; then the delete finds the link gone already (someone else removed it).
            namespace.links[7] = nil
            return 99  // EADDRNOTAVAIL
        }
        do {
            _ = try Self.configure(namespace)
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.step == .setMAC && error.code == .failed)
            guard case .failed(let cleanupError) = error.cleanup else {
                Issue.record("cleanup should have failed: \(error.cleanup)")
                return
            }
            #expect(cleanupError.errno == .operationNotSupportedByDevice)  // ENODEV
        }
    }

    @Test func missingInterfaceIsReportedAndNothingChanges() {
        let namespace = Self.world()
        namespace.links[7] = nil
        do {
            _ = try Self.configure(namespace)
            Issue.record("configuration succeeded")
        } catch {
            #expect(error.code == .interfaceNotFound && error.step == .lookupInTarget && error.cleanup == .notNeeded)
        }
        #expect(namespace.socket.sent.count == 1)
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
        let namespace = Self.world()
        do {
            _ = try Self.configure(namespace, configuration)
            Issue.record("\(label) accepted")
        } catch {
            #expect(error.code == .invalidConfiguration && error.step == .validate, "\(label)")
        }
        #expect(namespace.socket.sent.isEmpty)
    }
}
