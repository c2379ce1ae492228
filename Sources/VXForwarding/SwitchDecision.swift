// The switching decision ("l2-learn" then "l2-fwd"): for one frame of a bridge domain, learn its source and decide
// where it goes. Pure: no I/O, no allocation, no locks; the only shared state touched is the forwarding table.
//
// Within a batch the dataplane calls `learn` for every frame first and `decide` for every frame second, as VPP's
// l2-learn node runs before l2-fwd. Consequence (VPP, src/vnet/l2/l2_learn.c): "forwarding is done based on the
// end-state of the mac table". A reply in the same batch as the frame that taught its destination is already
// forwarded as known unicast, and a host that moved mid-batch has all its batch's frames sent to the new place.
// `process` does both steps for a single frame, for callers that do not batch.
//
// Rules, in order
//   1. ingress stale or not in the domain  -> drop .staleIngress (nothing learned: domains never leak)
//   2. source MAC multicast or zero        -> drop .invalidSourceMAC (nothing learned)
//   3. learn source -> ingress
//   4. destination multicast/broadcast     -> flood
//   5. destination unknown, or its entry points at a stale port or at a peer no longer in this domain -> flood
//   6. destination is where the frame came from -> drop .sameAsIngress
//   7. tunnel in, known peer out            -> drop .splitHorizon (VXLAN full mesh: peers reach each other
//                                              directly, never through us)
//   8. otherwise                           -> forward to the one destination
// A flood sends to every local port of the domain except the ingress, plus, when the frame came from a local port,
// every peer of the domain (head-end replication). A frame from a tunnel is never flooded into a tunnel.
// Every lookup is keyed by (domain, MAC), so the same MAC in two domains is two independent entries.

public import VXPacket

/// Why the switching decision dropped a frame: the one table of forwarding drop reasons (VPP `l2_fwd_error.def`).
/// Counted per worker by the dataplane, indexed by `rawValue` (see `ForwardingDropCounters`).
public enum ForwardingDropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// The source MAC is multicast, broadcast or zero: never a host, never learned.
    case invalidSourceMAC
    /// The destination is learned behind the port or peer the frame came from.
    case sameAsIngress
    /// A frame from a tunnel whose destination is behind another tunnel peer (split horizon).
    case splitHorizon
    /// The ingress port was removed, or the peer does not serve this domain (stale, or never configured).
    case staleIngress

    /// The case name, a stable identifier for machine-readable output (JSON stats).
    public var name: String {
        switch self {
        case .invalidSourceMAC: "invalidSourceMAC"
        case .sameAsIngress: "sameAsIngress"
        case .splitHorizon: "splitHorizon"
        case .staleIngress: "staleIngress"
        }
    }

    public var description: String {
        switch self {
        case .invalidSourceMAC: return "invalid source MAC (multicast or zero)"
        case .sameAsIngress: return "destination is behind the ingress"
        case .splitHorizon: return "tunnel to tunnel (split horizon)"
        case .staleIngress: return "ingress not in this bridge domain"
        }
    }
}

/// A flood, described without allocating: the caller walks the topology's flood lists
/// (`SwitchTopology.forEachDestination(of:_:)`, or `floodPorts(of:)` and `floodPeers(of:)` itself).
public struct FloodSet: Hashable, Sendable {
    /// The domain whose flood lists to use.
    public var domain: BridgeDomain
    /// The local port the frame came from, skipped; nil when it came from a tunnel.
    public var excludedPort: PortID?
    /// Whether to replicate to the domain's peers: false for frames from a tunnel (split horizon).
    public var includePeers: Bool

    /// - Parameters:
    ///   - domain: the domain whose flood lists to use.
    ///   - excludedPort: the ingress port, skipped.
    ///   - includePeers: whether to replicate to peers.
    @inlinable
    public init(domain: BridgeDomain, excludedPort: PortID?, includePeers: Bool) {
        self.domain = domain
        self.excludedPort = excludedPort
        self.includePeers = includePeers
    }
}

/// What to do with a frame.
public enum ForwardingAction: Hashable, Sendable {
    /// Send to exactly this destination.
    case forward(Destination)
    /// Send to every destination of the flood set.
    case flood(FloodSet)
    /// Drop, counting the reason.
    case drop(ForwardingDropReason)
}

/// The switching decision: stateless functions over a table and a topology snapshot.
public enum SwitchDecision {
    /// Step one for a frame: validate the ingress and the source MAC, then learn the source.
    /// - Parameters:
    ///   - domain: the frame's bridge domain (from the ingress port, or the VNI of a tunnel).
    ///   - ingress: where the frame came from.
    ///   - source: the frame's source MAC.
    ///   - table: the shared forwarding table.
    ///   - topology: this batch's topology snapshot.
    /// - Returns: nil when the frame may go on to `decide`, or the reason to drop it.
    @inlinable
    public static func learn(
        domain: BridgeDomain,
        ingress: Ingress,
        source: MACAddress,
        table: ForwardingTable,
        topology: SwitchTopology
    ) -> ForwardingDropReason? {
        guard topology.admits(ingress, into: domain) else { return .staleIngress }
        guard source.isLearnableSource else { return .invalidSourceMAC }
        table.learn(MACKey(domain: domain, mac: source), destination: ingress.destination)
        return nil
    }

    /// Step two for a frame that passed `learn`: where it goes.
    /// - Parameters:
    ///   - domain: the frame's bridge domain.
    ///   - ingress: where the frame came from.
    ///   - destination: the frame's destination MAC.
    ///   - table: the shared forwarding table.
    ///   - topology: this batch's topology snapshot.
    /// - Returns: forward, flood or drop.
    @inlinable
    public static func decide(
        domain: BridgeDomain,
        ingress: Ingress,
        destination: MACAddress,
        table: ForwardingTable,
        topology: SwitchTopology
    ) -> ForwardingAction {
        let flood: ForwardingAction
        switch ingress {
        case .port(let port): flood = .flood(FloodSet(domain: domain, excludedPort: port, includePeers: true))
        case .tunnel: flood = .flood(FloodSet(domain: domain, excludedPort: nil, includePeers: false))
        }
        if destination.isMulticast { return flood }
        guard let target = table.lookup(MACKey(domain: domain, mac: destination)),
            topology.isLive(target, in: domain)
        else { return flood }
        if target == ingress.destination { return .drop(.sameAsIngress) }
        if case .tunnel = ingress, case .peer = target { return .drop(.splitHorizon) }
        return .forward(target)
    }

    /// Both steps for a single frame (`learn`, then `decide` when it was not dropped).
    /// - Parameters:
    ///   - domain: the frame's bridge domain.
    ///   - ingress: where the frame came from.
    ///   - destination: the frame's destination MAC.
    ///   - source: the frame's source MAC.
    ///   - table: the shared forwarding table.
    ///   - topology: the topology snapshot.
    /// - Returns: forward, flood or drop.
    @inlinable
    public static func process(
        domain: BridgeDomain,
        ingress: Ingress,
        destination: MACAddress,
        source: MACAddress,
        table: ForwardingTable,
        topology: SwitchTopology
    ) -> ForwardingAction {
        if let reason = learn(domain: domain, ingress: ingress, source: source, table: table, topology: topology) {
            return .drop(reason)
        }
        return decide(domain: domain, ingress: ingress, destination: destination, table: table, topology: topology)
    }
}

/// Per-worker drop counters, one per `ForwardingDropReason`. Plain (non-atomic) integers: a worker owns its
/// counters, and a reader on another thread gets them through whatever handoff the dataplane uses for stats.
public struct ForwardingDropCounters: Sendable, Equatable {
    /// Counts indexed by `ForwardingDropReason.rawValue`.
    @usableFromInline var counts: [UInt64]

    /// All zero. Allocates once, at worker start.
    public init() {
        counts = [UInt64](repeating: 0, count: ForwardingDropReason.allCases.count)
    }

    /// Counts one drop.
    /// - Parameter reason: why.
    @inlinable
    public mutating func count(_ reason: ForwardingDropReason) {
        counts[Int(reason.rawValue)] &+= 1
    }

    /// The count for `reason`.
    @inlinable
    public subscript(reason: ForwardingDropReason) -> UInt64 {
        counts[Int(reason.rawValue)]
    }
}
