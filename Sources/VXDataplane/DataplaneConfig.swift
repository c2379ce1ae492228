// What a worker needs to know about the switch, as one immutable snapshot.
//
// The control plane is the only writer: it builds a new `DataplaneConfig` for every change (a port or peer
// added or removed) and publishes it; each worker picks it up at the start of its next batch with one relaxed
// load of a generation counter (`ConfigReader.refresh`), and only takes the publisher's lock when the
// generation moved. A worker therefore switches a whole batch with one consistent view, never half of a change.

import Synchronization
import VXForwarding
import VXPacket

/// How to reach one peer: its address, its one encapsulation, and a prebuilt outer header per VNI it serves.
public struct PeerTunnel: Sendable {
    public let peer: PeerID
    public let address: IPv4Address
    public let encapsulation: TunnelEncapsulation
    /// How the GRE key carries the VNI; `.vni` for VXLAN peers (unused).
    public let greKeyLayout: GREKeyLayout
    /// For GRE peers without a key: the one VNI their frames belong to.
    public let unkeyedVNI: VNI?
    /// The outer header for each bridge domain this peer serves (STYLE §4: built once, patched per frame).
    @usableFromInline let templates: [BridgeDomain: EncapTemplate]

    public init(
        peer: PeerID, address: IPv4Address, encapsulation: TunnelEncapsulation, greKeyLayout: GREKeyLayout,
        unkeyedVNI: VNI?, templates: [BridgeDomain: EncapTemplate]
    ) {
        self.peer = peer
        self.address = address
        self.encapsulation = encapsulation
        self.greKeyLayout = greKeyLayout
        self.unkeyedVNI = unkeyedVNI
        self.templates = templates
    }

    /// The outer header for frames of `domain`, or nil if this peer does not serve it.
    @inlinable
    public func template(for domain: BridgeDomain) -> EncapTemplate? { templates[domain] }
}

/// One consistent view of the switch for the workers.
public final class DataplaneConfig: Sendable {
    /// Ports, peers and flood lists per bridge domain.
    public let topology: SwitchTopology
    /// Peers by PeerID index (nil where the index is free).
    @usableFromInline let peers: [PeerTunnel?]
    /// Peers by underlay address, for classifying received tunnel frames.
    @usableFromInline let peersByAddress: [IPv4Address: Int]
    /// What each port punts to the control plane, by PortID index (nil: nothing).
    @usableFromInline let puntRules: [PuntRule?]

    public init(topology: SwitchTopology, peers: [PeerTunnel], punt: [PortID: PuntRule] = [:]) {
        self.topology = topology
        var rules = [PuntRule?](repeating: nil, count: (punt.keys.map { Int($0.index) }.max() ?? -1) + 1)
        for (port, rule) in punt { rules[Int(port.index)] = rule }
        self.puntRules = rules
        var byIndex = [PeerTunnel?](repeating: nil, count: (peers.map { Int($0.peer.index) }.max() ?? -1) + 1)
        var byAddress: [IPv4Address: Int] = [:]
        for peer in peers {
            byIndex[Int(peer.peer.index)] = peer
            byAddress[peer.address] = Int(peer.peer.index)
        }
        self.peers = byIndex
        self.peersByAddress = byAddress
    }

    /// An empty switch.
    public convenience init() {
        self.init(topology: SwitchTopology(), peers: [])
    }

    /// The peer at underlay address `address`, if any.
    @inlinable
    public func peer(at address: IPv4Address) -> PeerTunnel? {
        guard let index = peersByAddress[address] else { return nil }
        return peers[index]
    }

    /// What `port` punts, if anything.
    @inlinable
    public func puntRule(for port: PortID) -> PuntRule? {
        let index = Int(port.index)
        return index < puntRules.count ? puntRules[index] : nil
    }

    /// The tunnel of `peer`, if it is still that peer (same generation).
    @inlinable
    public func tunnel(of peer: PeerID) -> PeerTunnel? {
        let index = Int(peer.index)
        guard index < peers.count, let tunnel = peers[index], tunnel.peer == peer else { return nil }
        return tunnel
    }
}

/// Hands new `DataplaneConfig` snapshots from the control thread to the workers.
public final class ConfigPublisher: Sendable {
    /// Bumped by every publish; workers compare it with the generation they hold.
    @usableFromInline let generation: Atomic<UInt64>
    private let current: Mutex<(config: DataplaneConfig, generation: UInt64)>

    public init(_ initial: DataplaneConfig = DataplaneConfig()) {
        generation = Atomic(0)
        current = Mutex((initial, 0))
    }

    /// Publishes `config` to every worker's next batch. Control thread only.
    public func publish(_ config: DataplaneConfig) {
        current.withLock { state in
            state.generation &+= 1
            state.config = config
            // Stored inside the lock: a worker that sees the new generation and then takes the lock gets this
            // snapshot or a newer one, so relaxed ordering suffices (the snapshot itself is read under the lock).
            generation.store(state.generation, ordering: .relaxed)
        }
    }

    /// The latest snapshot (takes the lock).
    public var latest: DataplaneConfig { current.withLock { $0.config } }

    func snapshot() -> (config: DataplaneConfig, generation: UInt64) { current.withLock { $0 } }
}

/// One worker's view of the published config. Worker thread only.
public struct ConfigReader {
    @usableFromInline let publisher: ConfigPublisher
    public private(set) var config: DataplaneConfig
    @usableFromInline private(set) var generation: UInt64

    public init(publisher: ConfigPublisher) {
        self.publisher = publisher
        (config, generation) = publisher.snapshot()
    }

    /// Picks up a newer snapshot if one was published. Call once per batch.
    @inlinable
    @discardableResult
    public mutating func refresh() -> DataplaneConfig {
        if publisher.generation.load(ordering: .relaxed) != generation { refreshSlow() }
        return config
    }

    @usableFromInline
    mutating func refreshSlow() {
        (config, generation) = publisher.snapshot()
    }
}
