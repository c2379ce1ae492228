// The switching decision, one table-driven case per rule, over a small fabric:
//
//   domain A (VNI 100): ports p1 p2 p3, peers X Y      domain B (VNI 200): port p4, peer X
//   stalePort: a port of A that was removed (its index's generation moved on)

import Testing
import VXPacket

@testable import VXForwarding

/// A port or peer of the test fabric, by role.
enum Role: String, Sendable {
    case p1, p2, p3, p4, stalePort, peerX, peerY
}

/// A domain of the test fabric.
enum Dom: String, Sendable {
    case a, b
}

/// The expected outcome.
enum Expect: Sendable {
    case forward(Role)
    case flood([Role])
    case drop(ForwardingDropReason)
}

/// An entry in the table before the frame arrives.
struct Preset: Sendable {
    var domain: Dom
    var mac: MACAddress
    var at: Role
}

struct DecisionCase: Sendable, CustomTestStringConvertible {
    var name: String
    var domain: Dom
    var ingress: Role
    var source: MACAddress
    var destination: MACAddress
    var preset: [Preset] = []
    var expect: Expect
    var testDescription: String { name }
}

/// The fabric in the header comment, built through the real builder.
struct Fabric {
    let topology: SwitchTopology
    let domains: [Dom: BridgeDomain]
    let roles: [Role: Destination]

    init() {
        var builder = TopologyBuilder()
        let a = builder.addDomain(vni: VNI(100)!)!
        let b = builder.addDomain(vni: VNI(200)!)!
        let stale = builder.addPort(domain: a)!
        let p1 = builder.addPort(domain: a)!
        let p2 = builder.addPort(domain: a)!
        let p3 = builder.addPort(domain: a)!
        let p4 = builder.addPort(domain: b)!
        builder.removePort(stale)
        let x = builder.addPeer(UnderlayAddress(192, 0, 2, 1), to: a)!
        _ = builder.addPeer(UnderlayAddress(192, 0, 2, 1), to: b)!
        let y = builder.addPeer(UnderlayAddress(192, 0, 2, 2), to: a)!
        topology = builder.build()
        domains = [.a: a, .b: b]
        roles = [
            .p1: .port(p1), .p2: .port(p2), .p3: .port(p3), .p4: .port(p4), .stalePort: .port(stale),
            .peerX: .peer(x), .peerY: .peer(y),
        ]
    }

    func ingress(_ role: Role) -> Ingress {
        switch roles[role]! {
        case .port(let id): return .port(id)
        case .peer(let id): return .tunnel(id)
        }
    }
}

let h2 = host(2)
let h3 = host(3)
let h4 = host(4)
let h5 = host(5)
let newHost = host(10)
let multicastMAC = MACAddress(0x01, 0x00, 0x5E, 0x00, 0x00, 0x01)

let decisionCases: [DecisionCase] = [
    DecisionCase(
        name: "known unicast, port to port",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .p2)],
        expect: .forward(.p2)
    ),
    DecisionCase(
        name: "known unicast, port to peer",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: h3,
        preset: [Preset(domain: .a, mac: h3, at: .peerX)],
        expect: .forward(.peerX)
    ),
    DecisionCase(
        name: "known unicast, tunnel to port",
        domain: .a,
        ingress: .peerX,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .p2)],
        expect: .forward(.p2)
    ),
    DecisionCase(
        name: "destination behind the ingress port",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .p1)],
        expect: .drop(.sameAsIngress)
    ),
    DecisionCase(
        name: "destination behind the ingress peer",
        domain: .a,
        ingress: .peerX,
        source: newHost,
        destination: h3,
        preset: [Preset(domain: .a, mac: h3, at: .peerX)],
        expect: .drop(.sameAsIngress)
    ),
    DecisionCase(
        name: "tunnel to another peer (split horizon)",
        domain: .a,
        ingress: .peerX,
        source: newHost,
        destination: h4,
        preset: [Preset(domain: .a, mac: h4, at: .peerY)],
        expect: .drop(.splitHorizon)
    ),
    DecisionCase(
        name: "broadcast from a port: other ports and every peer",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: .broadcast,
        expect: .flood([.p2, .p3, .peerX, .peerY])
    ),
    DecisionCase(
        name: "broadcast from a tunnel: local ports only",
        domain: .a,
        ingress: .peerX,
        source: newHost,
        destination: .broadcast,
        expect: .flood([.p1, .p2, .p3])
    ),
    DecisionCase(
        name: "unknown unicast floods",
        domain: .a,
        ingress: .p2,
        source: newHost,
        destination: host(99),
        expect: .flood([.p1, .p3, .peerX, .peerY])
    ),
    DecisionCase(
        name: "multicast floods",
        domain: .a,
        ingress: .p3,
        source: newHost,
        destination: multicastMAC,
        expect: .flood([.p1, .p2, .peerX, .peerY])
    ),
    DecisionCase(
        name: "multicast source",
        domain: .a,
        ingress: .p1,
        source: multicastMAC,
        destination: h2,
        expect: .drop(.invalidSourceMAC)
    ),
    DecisionCase(
        name: "broadcast source",
        domain: .a,
        ingress: .p1,
        source: .broadcast,
        destination: h2,
        expect: .drop(.invalidSourceMAC)
    ),
    DecisionCase(
        name: "zero source",
        domain: .a,
        ingress: .p1,
        source: .zero,
        destination: h2,
        expect: .drop(.invalidSourceMAC)
    ),
    DecisionCase(
        name: "destination on a removed port floods",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .stalePort)],
        expect: .flood([.p2, .p3, .peerX, .peerY])
    ),
    DecisionCase(
        name: "destination on a peer outside the domain floods",
        domain: .b,
        ingress: .p4,
        source: newHost,
        destination: h5,
        preset: [Preset(domain: .b, mac: h5, at: .peerY)],
        expect: .flood([.peerX])
    ),
    DecisionCase(
        name: "same MAC learned in another domain is unknown here",
        domain: .b,
        ingress: .p4,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .p2)],
        expect: .flood([.peerX])
    ),
    DecisionCase(
        name: "same MAC in two domains resolves per domain",
        domain: .a,
        ingress: .p1,
        source: newHost,
        destination: h2,
        preset: [Preset(domain: .a, mac: h2, at: .p2), Preset(domain: .b, mac: h2, at: .peerX)],
        expect: .forward(.p2)
    ),
    DecisionCase(
        name: "frame from a removed port",
        domain: .a,
        ingress: .stalePort,
        source: newHost,
        destination: h2,
        expect: .drop(.staleIngress)
    ),
    DecisionCase(
        name: "frame from a peer that does not serve the domain",
        domain: .b,
        ingress: .peerY,
        source: newHost,
        destination: .broadcast,
        expect: .drop(.staleIngress)
    ),
    DecisionCase(
        name: "frame from a port of another domain",
        domain: .b,
        ingress: .p1,
        source: newHost,
        destination: .broadcast,
        expect: .drop(.staleIngress)
    ),
]

@Suite("SwitchDecision")
struct SwitchDecisionTests {
    @Test(arguments: decisionCases)
    func decides(_ c: DecisionCase) {
        let fabric = Fabric()
        let table = ForwardingTable(capacity: 1_000)
        for p in c.preset {
            table.learn(MACKey(domain: fabric.domains[p.domain]!, mac: p.mac), destination: fabric.roles[p.at]!)
        }
        let domain = fabric.domains[c.domain]!
        let ingress = fabric.ingress(c.ingress)
        let action = SwitchDecision.process(
            domain: domain,
            ingress: ingress,
            destination: c.destination,
            source: c.source,
            table: table,
            topology: fabric.topology
        )

        switch c.expect {
        case .forward(let role):
            #expect(action == .forward(fabric.roles[role]!))
        case .drop(let reason):
            #expect(action == .drop(reason))
        case .flood(let roles):
            guard case .flood(let set) = action else {
                Issue.record("expected a flood, got \(action)")
                return
            }
            #expect(set.domain == domain)
            var targets: [Destination] = []
            fabric.topology.forEachDestination(of: set) { targets.append($0) }
            #expect(targets == roles.map { fabric.roles[$0]! })
        }

        // The source is learned behind the ingress exactly when the frame was not refused at the door.
        let learnedSource = table.lookup(MACKey(domain: domain, mac: c.source))
        switch action {
        case .drop(.invalidSourceMAC), .drop(.staleIngress): #expect(learnedSource == nil)
        default: #expect(learnedSource == ingress.destination)
        }
    }

    @Test func withinABatchForwardingUsesTheEndStateOfTheTable() {
        // Frame 1: h2 -> h5 from p1 (h5 unknown so far). Frame 2: h5 -> h2 from p3.
        // Learning both first, frame 1 already knows h5 is behind p3.
        let fabric = Fabric()
        let table = ForwardingTable(capacity: 1_000)
        let a = fabric.domains[.a]!
        let frames = [(fabric.ingress(.p1), h2, h5), (fabric.ingress(.p3), h5, h2)]
        for (ingress, source, _) in frames {
            #expect(
                SwitchDecision.learn(
                    domain: a,
                    ingress: ingress,
                    source: source,
                    table: table,
                    topology: fabric.topology
                ) == nil
            )
        }
        let actions = frames.map { ingress, _, destination in
            SwitchDecision.decide(
                domain: a,
                ingress: ingress,
                destination: destination,
                table: table,
                topology: fabric.topology
            )
        }
        #expect(actions == [.forward(fabric.roles[.p3]!), .forward(fabric.roles[.p1]!)])
    }

    @Test func dropReasonsHaveDistinctDescriptionsAndCounters() {
        let reasons = ForwardingDropReason.allCases
        #expect(Set(reasons.map(\.description)).count == reasons.count)
        var counters = ForwardingDropCounters()
        counters.count(.splitHorizon)
        counters.count(.splitHorizon)
        counters.count(.invalidSourceMAC)
        #expect(counters[.splitHorizon] == 2 && counters[.invalidSourceMAC] == 1 && counters[.sameAsIngress] == 0)
    }
}
