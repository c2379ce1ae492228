// The switch's configuration as the data path sees it: bridge domains, local ports, tunnel peers, flood lists.
//
// Who writes what
//   control thread   owns a `TopologyBuilder`, edits it (add/remove domain, port, peer-in-domain), calls
//                    `build()` and hands the immutable `SwitchTopology` to `TopologyPublisher.publish(_:)`.
//   workers          read a `SwitchTopology` they fetched through a `TopologyReader`, once per batch. A snapshot
//                    never changes after `build()`, so reading it needs no synchronisation at all.
// Indices are dense and reused. Removing a port or a peer bumps the generation at its index, so identifiers
// still held elsewhere (the forwarding table, an in-flight batch) stop matching: `isLive(_:in:)` and
// `admits(_:into:)` say no.

public import VXPacket

/// One local port slot of a topology.
@usableFromInline
struct PortRecord: Sendable, Hashable {
    /// Generation of the port at this index (bumped when the port is removed).
    @usableFromInline var generation: UInt8
    /// The domain the port is attached to; 0 when the index is free.
    @usableFromInline var domain: UInt16

    @inlinable init(generation: UInt8, domain: UInt16) {
        self.generation = generation
        self.domain = domain
    }
}

/// One tunnel peer slot of a topology.
@usableFromInline
struct PeerRecord: Sendable, Hashable {
    /// Generation of the peer at this index (bumped when the peer is removed).
    @usableFromInline var generation: UInt8
    /// Underlay address of the peer's VTEP.
    @usableFromInline var address: UnderlayAddress
    /// Domains this peer serves (receives head-end replicated floods for); empty when the index is free.
    @usableFromInline var domains: DomainSet

    @inlinable init(generation: UInt8, address: UnderlayAddress, domains: DomainSet) {
        self.generation = generation
        self.address = address
        self.domains = domains
    }
}

/// An immutable snapshot of the switch's topology, built by the control plane and read by workers.
///
/// Written only by `TopologyBuilder.build()`; read concurrently by any number of workers without synchronisation.
public final class SwitchTopology: Sendable {
    /// Port slots by index.
    @usableFromInline let ports: [PortRecord]
    /// Peer slots by index.
    @usableFromInline let peers: [PeerRecord]
    /// VNI of each domain, by domain index; nil for free indices (index 0 is always nil).
    @usableFromInline let domainVNIs: [VNI?]
    /// Domain of each VNI in use.
    @usableFromInline let domainsByVNI: [VNI: BridgeDomain]
    /// Per-domain flood list of local ports, by domain index, in port-index order.
    @usableFromInline let domainPorts: [[PortID]]
    /// Per-domain flood list of peers (head-end replication), by domain index, in peer-index order.
    @usableFromInline let domainPeers: [[PeerID]]

    init(ports: [PortRecord], peers: [PeerRecord], domainVNIs: [VNI?]) {
        self.ports = ports
        self.peers = peers
        self.domainVNIs = domainVNIs
        var byVNI: [VNI: BridgeDomain] = [:]
        var floodPorts = [[PortID]](repeating: [], count: domainVNIs.count)
        var floodPeers = [[PeerID]](repeating: [], count: domainVNIs.count)
        for (index, vni) in domainVNIs.enumerated() {
            if let vni { byVNI[vni] = BridgeDomain(uncheckedNonZero: UInt16(index)) }
        }
        for (index, port) in ports.enumerated() where port.domain != 0 {
            floodPorts[Int(port.domain)].append(PortID(index: UInt16(index), generation: port.generation))
        }
        for (index, peer) in peers.enumerated() {
            for domain in peer.domains {
                floodPeers[Int(domain.rawValue)].append(PeerID(index: UInt16(index), generation: peer.generation))
            }
        }
        self.domainsByVNI = byVNI
        self.domainPorts = floodPorts
        self.domainPeers = floodPeers
    }

    /// A topology with no domains, ports or peers.
    public convenience init() {
        self.init(ports: [], peers: [], domainVNIs: [nil])
    }

    /// The domain carrying `vni`, or nil when the switch does not serve it.
    /// - Parameter vni: from a decapsulated VXLAN header or GRE key.
    /// - Returns: the domain, or nil.
    @inlinable
    public func domain(for vni: VNI) -> BridgeDomain? { domainsByVNI[vni] }

    /// The VNI of `domain`, or nil when the index is free.
    /// - Parameter domain: a domain index.
    /// - Returns: the VNI, or nil.
    @inlinable
    public func vni(of domain: BridgeDomain) -> VNI? {
        let index = Int(domain.rawValue)
        return index < domainVNIs.count ? domainVNIs[index] : nil
    }

    /// The domain `port` is attached to, or nil when the port is stale (removed, or its index reused).
    /// - Parameter port: a port identifier.
    /// - Returns: the domain, or nil.
    @inlinable
    public func domain(of port: PortID) -> BridgeDomain? {
        let index = Int(port.index)
        guard index < ports.count else { return nil }
        let record = ports[index]
        guard record.generation == port.generation, record.domain != 0 else { return nil }
        return BridgeDomain(uncheckedNonZero: record.domain)
    }

    /// The underlay address of `peer`, or nil when the peer is stale.
    /// - Parameter peer: a peer identifier.
    /// - Returns: the address, or nil.
    @inlinable
    public func address(of peer: PeerID) -> UnderlayAddress? {
        let index = Int(peer.index)
        guard index < peers.count else { return nil }
        let record = peers[index]
        guard record.generation == peer.generation, !record.domains.isEmpty else { return nil }
        return record.address
    }

    /// Whether `peer` exists and serves `domain`.
    /// - Parameters:
    ///   - peer: a peer identifier.
    ///   - domain: a domain.
    /// - Returns: false for stale peers and for peers outside `domain`.
    @inlinable
    public func peer(_ peer: PeerID, serves domain: BridgeDomain) -> Bool {
        let index = Int(peer.index)
        guard index < peers.count else { return false }
        let record = peers[index]
        return record.generation == peer.generation && record.domains.contains(domain)
    }

    /// Whether `destination` is still valid in `domain`: a port attached to it, or a peer serving it. A forwarding
    /// table entry that fails this is stale and is treated as unknown.
    /// - Parameters:
    ///   - destination: from the forwarding table.
    ///   - domain: the frame's domain.
    /// - Returns: true when frames of `domain` may go to `destination`.
    @inlinable
    public func isLive(_ destination: Destination, in domain: BridgeDomain) -> Bool {
        switch destination {
        case .port(let port): return self.domain(of: port) == domain
        case .peer(let peer): return self.peer(peer, serves: domain)
        }
    }

    /// Whether a frame may enter `domain` through `ingress`.
    /// - Parameters:
    ///   - ingress: where the frame came from.
    ///   - domain: the domain it was classified into.
    /// - Returns: false for stale ports and peers, and for ones outside `domain`.
    @inlinable
    public func admits(_ ingress: Ingress, into domain: BridgeDomain) -> Bool {
        isLive(ingress.destination, in: domain)
    }

    /// The local ports of `domain`, in port-index order; empty for unknown domains.
    /// - Parameter domain: a domain.
    /// - Returns: the flood list (a shared array: no copy, no allocation).
    @inlinable
    public func floodPorts(of domain: BridgeDomain) -> [PortID] {
        let index = Int(domain.rawValue)
        return index < domainPorts.count ? domainPorts[index] : []
    }

    /// The peers serving `domain` (head-end replication list), in peer-index order; empty for unknown domains.
    /// - Parameter domain: a domain.
    /// - Returns: the flood list (a shared array: no copy, no allocation).
    @inlinable
    public func floodPeers(of domain: BridgeDomain) -> [PeerID] {
        let index = Int(domain.rawValue)
        return index < domainPeers.count ? domainPeers[index] : []
    }

    /// Calls `body` for every destination of a flood, in order: local ports first, then peers.
    /// - Parameters:
    ///   - flood: from `SwitchDecision.decide`.
    ///   - body: called once per destination; not escaping, so nothing is allocated.
    @inlinable
    public func forEachDestination(of flood: FloodSet, _ body: (Destination) -> Void) {
        for port in floodPorts(of: flood.domain) where port != flood.excludedPort {
            body(.port(port))
        }
        guard flood.includePeers else { return }
        for peer in floodPeers(of: flood.domain) {
            body(.peer(peer))
        }
    }

    /// Every domain in use with its VNI, in domain order. Control path (allocates).
    public var domains: [(domain: BridgeDomain, vni: VNI)] {
        domainVNIs.enumerated().compactMap { index, vni in
            vni.map { (BridgeDomain(uncheckedNonZero: UInt16(index)), $0) }
        }
    }
}

/// Mutable copy of a topology, owned by the control thread: edit, then `build()` a snapshot to publish.
///
/// Not shared: the control plane serialises its edits (one builder, one thread or one lock of its own).
public struct TopologyBuilder: Sendable {
    /// Port slots by index; a slot with domain 0 is free.
    var ports: [PortRecord]
    /// Peer slots by index; a slot with no domains is free.
    var peers: [PeerRecord]
    /// VNI by domain index; index 0 is reserved and always nil.
    var domainVNIs: [VNI?]

    /// The most ports, peers or domains: indices are 16 bits (domain 0 is reserved).
    public static let maxIndices = 65_535

    /// An empty builder.
    public init() {
        self.ports = []
        self.peers = []
        self.domainVNIs = [nil]
    }

    /// A builder holding a copy of `topology`, for incremental edits.
    /// - Parameter topology: the snapshot to start from.
    public init(_ topology: SwitchTopology) {
        self.ports = topology.ports
        self.peers = topology.peers
        self.domainVNIs = topology.domainVNIs
    }

    /// An immutable snapshot of the current state.
    /// - Returns: a topology to hand to `TopologyPublisher.publish(_:)`.
    public func build() -> SwitchTopology {
        SwitchTopology(ports: ports, peers: peers, domainVNIs: domainVNIs)
    }

    // MARK: Domains

    /// The domain of `vni`, allocating the lowest free domain index when the VNI is new.
    /// - Parameter vni: the VNI to serve.
    /// - Returns: its domain, or nil when all 65,535 indices are in use.
    public mutating func addDomain(vni: VNI) -> BridgeDomain? {
        if let index = domainVNIs.firstIndex(of: vni) { return BridgeDomain(uncheckedNonZero: UInt16(index)) }
        if let free = domainVNIs.indices.dropFirst().first(where: { domainVNIs[$0] == nil }) {
            domainVNIs[free] = vni
            return BridgeDomain(uncheckedNonZero: UInt16(free))
        }
        guard domainVNIs.count <= TopologyBuilder.maxIndices else { return nil }
        domainVNIs.append(vni)
        return BridgeDomain(uncheckedNonZero: UInt16(domainVNIs.count - 1))
    }

    /// Stops serving `vni`: removes its domain, the ports attached to it, and its membership in every peer.
    /// The caller then flushes the domain from the forwarding table.
    /// - Parameter vni: the VNI.
    /// - Returns: the removed domain, or nil when the VNI was not served.
    @discardableResult
    public mutating func removeDomain(vni: VNI) -> BridgeDomain? {
        guard let index = domainVNIs.firstIndex(of: vni) else { return nil }
        let domain = BridgeDomain(uncheckedNonZero: UInt16(index))
        for portIndex in ports.indices where ports[portIndex].domain == domain.rawValue {
            ports[portIndex].domain = 0
            ports[portIndex].generation &+= 1
        }
        for peerIndex in peers.indices where peers[peerIndex].domains.contains(domain) {
            removeMembership(peerIndex: peerIndex, domain: domain)
        }
        domainVNIs[index] = nil
        return domain
    }

    // MARK: Ports

    /// Attaches a new local port to `domain`, reusing the lowest free port index.
    /// - Parameter domain: a domain returned by `addDomain(vni:)`.
    /// - Returns: the new port, or nil when `domain` is not in use or all indices are taken.
    public mutating func addPort(domain: BridgeDomain) -> PortID? {
        guard isInUse(domain) else { return nil }
        if let free = ports.firstIndex(where: { $0.domain == 0 }) {
            ports[free].domain = domain.rawValue
            return PortID(index: UInt16(free), generation: ports[free].generation)
        }
        guard ports.count < TopologyBuilder.maxIndices else { return nil }
        ports.append(PortRecord(generation: 0, domain: domain.rawValue))
        return PortID(index: UInt16(ports.count - 1), generation: 0)
    }

    /// Removes `port` and bumps the generation at its index, so copies of `port` held elsewhere become stale.
    /// The caller then flushes the port from the forwarding table.
    /// - Parameter port: a live port.
    /// - Returns: false when `port` was already stale.
    @discardableResult
    public mutating func removePort(_ port: PortID) -> Bool {
        let index = Int(port.index)
        guard index < ports.count, ports[index].generation == port.generation, ports[index].domain != 0 else {
            return false
        }
        ports[index].domain = 0
        ports[index].generation &+= 1
        return true
    }

    // MARK: Peers

    /// Adds `domain` to the domains served by the peer at `address`, creating the peer (lowest free index) when
    /// the address is new.
    /// - Parameters:
    ///   - address: the peer VTEP's underlay address.
    ///   - domain: a domain returned by `addDomain(vni:)`.
    /// - Returns: the peer, or nil when `domain` is not in use or all indices are taken.
    public mutating func addPeer(_ address: UnderlayAddress, to domain: BridgeDomain) -> PeerID? {
        guard isInUse(domain) else { return nil }
        if let existing = peers.firstIndex(where: { $0.address == address && !$0.domains.isEmpty }) {
            peers[existing].domains.insert(domain)
            return PeerID(index: UInt16(existing), generation: peers[existing].generation)
        }
        if let free = peers.firstIndex(where: { $0.domains.isEmpty }) {
            peers[free].address = address
            peers[free].domains = [domain]
            return PeerID(index: UInt16(free), generation: peers[free].generation)
        }
        guard peers.count < TopologyBuilder.maxIndices else { return nil }
        peers.append(PeerRecord(generation: 0, address: address, domains: [domain]))
        return PeerID(index: UInt16(peers.count - 1), generation: 0)
    }

    /// Removes `domain` from the domains `peer` serves; a peer left with no domain is removed and its index's
    /// generation bumped. The caller then flushes `(peer, domain)` from the forwarding table.
    /// - Parameters:
    ///   - peer: a live peer.
    ///   - domain: a domain it serves.
    /// - Returns: false when `peer` was stale or did not serve `domain`.
    @discardableResult
    public mutating func removePeer(_ peer: PeerID, from domain: BridgeDomain) -> Bool {
        let index = Int(peer.index)
        guard index < peers.count, peers[index].generation == peer.generation,
            peers[index].domains.contains(domain)
        else { return false }
        removeMembership(peerIndex: index, domain: domain)
        return true
    }

    /// The live peer at `address`, if any.
    /// - Parameter address: an underlay address.
    /// - Returns: the peer, or nil.
    public func peer(at address: UnderlayAddress) -> PeerID? {
        guard let index = peers.firstIndex(where: { $0.address == address && !$0.domains.isEmpty }) else {
            return nil
        }
        return PeerID(index: UInt16(index), generation: peers[index].generation)
    }

    mutating func removeMembership(peerIndex: Int, domain: BridgeDomain) {
        peers[peerIndex].domains.remove(domain)
        if peers[peerIndex].domains.isEmpty {
            peers[peerIndex].generation &+= 1
        }
    }

    func isInUse(_ domain: BridgeDomain) -> Bool {
        let index = Int(domain.rawValue)
        return index < domainVNIs.count && domainVNIs[index] != nil
    }
}

/// Hands `SwitchTopology` snapshots from the control thread to the workers (see `SnapshotPublisher`).
public typealias TopologyPublisher = SnapshotPublisher<SwitchTopology>
/// One worker's view of the published topology.
public typealias TopologyReader = SnapshotReader<SwitchTopology>

/// The bridge domains one peer serves: a sorted array, because a peer serves a handful of VNIs and `contains` runs
/// for every frame from a tunnel (`SwitchTopology.peer(_:serves:)`). A linear scan of a few 16-bit values beats
/// hashing a `Set` there (the Set's hashing was ~15 % of the tunnel-to-port path in the PacketPath benchmarks).
@usableFromInline
struct DomainSet: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral {
    /// Raw domain values, ascending, without duplicates.
    @usableFromInline var values: [UInt16]

    @inlinable
    init(arrayLiteral elements: BridgeDomain...) {
        values = Array(Set(elements.map(\.rawValue))).sorted()
    }

    @inlinable var isEmpty: Bool { values.isEmpty }

    @inlinable
    func contains(_ domain: BridgeDomain) -> Bool {
        // Indexed, not `for value in values`: an unspecialized (debug) array iterator allocates per call, and this
        // runs per frame (learning, decisions); OffloadAllocationTests under heaptrack counts it.
        var index = 0
        while index < values.count {
            if values[index] == domain.rawValue { return true }
            index += 1
        }
        return false
    }

    @inlinable
    mutating func insert(_ domain: BridgeDomain) {
        guard !contains(domain) else { return }
        values.insert(domain.rawValue, at: values.firstIndex { $0 > domain.rawValue } ?? values.count)
    }

    @inlinable
    mutating func remove(_ domain: BridgeDomain) {
        values.removeAll { $0 == domain.rawValue }
    }

    @inlinable
    func makeIterator() -> some IteratorProtocol<BridgeDomain> {
        values.lazy.map { BridgeDomain(uncheckedNonZero: $0) }.makeIterator()
    }
}
