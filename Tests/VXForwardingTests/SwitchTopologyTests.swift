// Topology snapshots: index allocation, generations, flood lists, and publishing to workers.

import Testing
import VXPacket

@testable import VXForwarding

/// `#require` for results of mutating calls, which the macro cannot capture.
func required<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}

@Suite("SwitchTopology")
struct SwitchTopologyTests {
    let vniA = VNI(100)!
    let vniB = VNI(200)!

    @Test func domainsAreDenseIndicesFromOneAndMapBothWays() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let b = try required(builder.addDomain(vni: vniB))
        #expect(a.rawValue == 1 && b.rawValue == 2)
        let again = builder.addDomain(vni: vniA)
        #expect(again == a)
        let topology = builder.build()
        #expect(topology.domain(for: vniB) == b)
        #expect(topology.vni(of: a) == vniA)
        #expect(topology.domain(for: VNI(300)!) == nil)
        #expect(topology.domains.map(\.vni) == [vniA, vniB])
        #expect(BridgeDomain(0) == nil)
    }

    @Test func removingAPortBumpsTheGenerationSoOldIDsGoStale() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let p0 = try required(builder.addPort(domain: a))
        let p1 = try required(builder.addPort(domain: a))
        let removed = builder.removePort(p0)
        #expect(removed)
        let removedTwice = builder.removePort(p0)
        #expect(!removedTwice)
        let reused = try required(builder.addPort(domain: a))
        #expect(reused.index == p0.index && reused.generation == p0.generation &+ 1)
        let topology = builder.build()
        #expect(topology.domain(of: p0) == nil)
        #expect(topology.domain(of: reused) == a)
        #expect(!topology.isLive(.port(p0), in: a))
        #expect(topology.floodPorts(of: a) == [reused, p1])
    }

    @Test func peersServeASetOfDomainsAndGoStaleWhenTheyServeNone() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let b = try required(builder.addDomain(vni: vniB))
        let address = UnderlayAddress(192, 0, 2, 1)
        let x = try required(builder.addPeer(address, to: a))
        let sameAddress = builder.addPeer(address, to: b)
        #expect(sameAddress == x)
        #expect(builder.peer(at: address) == x)
        let leftA = builder.removePeer(x, from: a)
        #expect(leftA)
        var topology = builder.build()
        #expect(!topology.peer(x, serves: a))
        #expect(topology.peer(x, serves: b))
        #expect(topology.floodPeers(of: a).isEmpty && topology.floodPeers(of: b) == [x])
        #expect(topology.address(of: x) == address)

        let leftB = builder.removePeer(x, from: b)
        #expect(leftB)
        topology = builder.build()
        #expect(topology.address(of: x) == nil)
        let y = try required(builder.addPeer(UnderlayAddress(192, 0, 2, 2), to: a))
        #expect(y.index == x.index && y.generation == x.generation &+ 1)
    }

    @Test func removingADomainDetachesItsPortsAndPeers() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let b = try required(builder.addDomain(vni: vniB))
        let pa = try required(builder.addPort(domain: a))
        let pb = try required(builder.addPort(domain: b))
        let x = try required(builder.addPeer(UnderlayAddress(192, 0, 2, 1), to: a))
        let removedDomain = builder.removeDomain(vni: vniA)
        #expect(removedDomain == a)
        let topology = builder.build()
        #expect(topology.domain(for: vniA) == nil)
        #expect(topology.domain(of: pa) == nil && topology.domain(of: pb) == b)
        #expect(topology.address(of: x) == nil)
        let portInRemoved = builder.addPort(domain: a)
        #expect(portInRemoved == nil)
        // The freed index is reused by the next new VNI.
        let reusedDomain = builder.addDomain(vni: VNI(300)!)
        #expect(reusedDomain == a)
    }

    @Test func workersSeeANewSnapshotOnlyAfterItIsPublished() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let publisher = TopologyPublisher(builder.build())
        var reader = publisher.makeReader()
        let first = reader.refresh()
        #expect(reader.generation == 0)
        let p = try required(builder.addPort(domain: a))
        #expect(reader.refresh() === first)
        publisher.publish(builder.build())
        let second = reader.refresh()
        #expect(second !== first)
        #expect(reader.generation == 1)
        #expect(second.domain(of: p) == a)
        #expect(reader.refresh() === second)
    }

    @Test func floodIteratesPortsExceptTheIngressThenPeersWhenAllowed() throws {
        var builder = TopologyBuilder()
        let a = try required(builder.addDomain(vni: vniA))
        let p0 = try required(builder.addPort(domain: a))
        let p1 = try required(builder.addPort(domain: a))
        let x = try required(builder.addPeer(UnderlayAddress(192, 0, 2, 1), to: a))
        let topology = builder.build()
        var seen: [Destination] = []
        topology.forEachDestination(of: FloodSet(domain: a, excludedPort: p0, includePeers: true)) { seen.append($0) }
        #expect(seen == [.port(p1), .peer(x)])
        seen = []
        topology.forEachDestination(of: FloodSet(domain: a, excludedPort: nil, includePeers: false)) { seen.append($0) }
        #expect(seen == [.port(p0), .port(p1)])
    }
}

@Suite("DomainSet")
struct DomainSetTests {
    @Test("insert, remove and contains keep a sorted set without duplicates")
    func behavesAsASet() {
        var set: DomainSet = []
        #expect(set.isEmpty)
        for raw: UInt16 in [5, 2, 9, 2, 5] { set.insert(BridgeDomain(raw)!) }
        #expect(set.values == [2, 5, 9])
        #expect(set.contains(BridgeDomain(9)!) && !set.contains(BridgeDomain(3)!))
        set.remove(BridgeDomain(5)!)
        #expect(Array(set).map(\.rawValue) == [2, 9])
        set.remove(BridgeDomain(2)!)
        set.remove(BridgeDomain(9)!)
        #expect(set.isEmpty)
        let literal: DomainSet = [BridgeDomain(7)!, BridgeDomain(1)!, BridgeDomain(7)!]
        #expect(literal.values == [1, 7])
    }
}
