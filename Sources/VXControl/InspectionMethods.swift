import VXPacket

/// A VNI as `show` reports it: which ports and peers carry it.
public struct VNIInfo: Codable, Sendable, Hashable {
    /// The VNI.
    public var vni: VNI
    /// The local ports on this VNI.
    public var ports: [InterfaceName]
    /// The peers that carry this VNI.
    public var peers: [UnderlayAddress]

    /// - Parameters:
    ///   - vni: the VNI.
    ///   - ports: its local ports.
    ///   - peers: its peers.
    public init(vni: VNI, ports: [InterfaceName], peers: [UnderlayAddress]) {
        self.vni = vni
        self.ports = ports
        self.peers = peers
    }

    private enum CodingKeys: String, CodingKey {
        case vni, ports, peers
    }

    /// Decodes a VNI summary.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let peerTexts = try container.decode([String].self, forKey: .peers)
        self.init(
            vni: try container.decodeVNI(forKey: .vni),
            ports: try container.decode([InterfaceName].self, forKey: .ports),
            peers: try peerTexts.map { text throws(ControlError) in
                guard let address = UnderlayAddress(text) else {
                    throw ControlError.invalidParams("\"\(text)\" is not an IPv4 or IPv6 address")
                }
                return address
            }
        )
    }

    /// Encodes the summary.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(vni, forKey: .vni)
        try container.encode(ports, forKey: .ports)
        try container.encode(peers.map(\.description), forKey: .peers)
    }
}

/// The result of `show`: `{"ports": [...], "peers": [...], "vnis": [...]}`.
public struct ShowResult: Codable, Sendable, Hashable {
    /// The ports, by name.
    public var ports: [PortInfo]
    /// The peers, by address.
    public var peers: [PeerInfo]
    /// Every VNI that has a port or a peer, ascending.
    public var vnis: [VNIInfo]
    /// With an underlay TAP (`vxswitchd --underlay-tap`), the switch's ARP table on the underlay, by address; nil
    /// (left out of the JSON) on the socket underlay, where the kernel resolves next hops (`ip neigh`).
    public var underlayNeighbors: [UnderlayNeighborInfo]?

    /// - Parameters:
    ///   - ports: the ports.
    ///   - peers: the peers.
    ///   - vnis: the VNI summaries.
    ///   - underlayNeighbors: the underlay TAP's ARP table, or nil without one.
    public init(
        ports: [PortInfo], peers: [PeerInfo], vnis: [VNIInfo], underlayNeighbors: [UnderlayNeighborInfo]? = nil
    ) {
        self.ports = ports
        self.peers = peers
        self.vnis = vnis
        self.underlayNeighbors = underlayNeighbors
    }
}

/// One entry of the underlay TAP's ARP table, as `show` reports it:
/// `{"age":3,"ip":"192.0.2.12","mac":"02:76:78:00:02:0c","nextHop":true}`. `mac` and `age` are left out while the
/// address is unresolved.
public struct UnderlayNeighborInfo: Codable, Sendable, Hashable {
    /// The neighbour's address on the underlay.
    public var ip: IPv4Address
    /// Its MAC, or nil while unresolved.
    public var mac: MACAddress?
    /// Whether a peer's tunnel goes through it (the peer itself when on-link, else the `--underlay-gateway`).
    public var isNextHop: Bool
    /// Seconds since its MAC was learned or last confirmed, or nil while unresolved.
    public var age: Int?

    /// - Parameters:
    ///   - ip: the neighbour's address.
    ///   - mac: its MAC, nil while unresolved.
    ///   - isNextHop: whether a peer's tunnel goes through it.
    ///   - age: seconds since its MAC was confirmed, nil while unresolved.
    public init(ip: IPv4Address, mac: MACAddress?, isNextHop: Bool, age: Int?) {
        self.ip = ip
        self.mac = mac
        self.isNextHop = isNextHop
        self.age = age
    }

    private enum CodingKeys: String, CodingKey {
        case ip, mac, nextHop, age
    }

    /// Decodes a neighbour.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            ip: try container.decodeIPv4(forKey: .ip),
            mac: try container.contains(.mac) ? container.decodeMAC(forKey: .mac) : nil,
            isNextHop: try container.decode(Bool.self, forKey: .nextHop),
            age: try container.decodeIfPresent(Int.self, forKey: .age)
        )
    }

    /// Encodes the neighbour; `mac` and `age` only when resolved.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        if let mac { try container.encode(mac, forKey: .mac) }
        try container.encode(isNextHop, forKey: .nextHop)
        try container.encodeIfPresent(age, forKey: .age)
    }
}

/// Params of `fdb`: `{}` for every VNI, `{"vni": 100}` for one.
public struct FDBParams: Codable, Sendable, Hashable {
    /// The VNI to list, or nil for all.
    public var vni: VNI?

    /// - Parameter vni: the VNI to list, or nil for all.
    public init(vni: VNI? = nil) {
        self.vni = vni
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case vni
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(vni: try container.decodeVNIIfPresent(forKey: .vni))
    }

    /// Encodes the params; `vni` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let vni { try container.encode(vni, forKey: .vni) }
    }
}

/// Where the forwarding database sends a MAC: a local port or a tunnel peer. On the wire it is the string
/// `port tap0` or `peer 192.0.2.2` (`peer 2001:db8::2` over IPv6), as `bridge fdb` prints `dev tap0` /
/// `dst 192.0.2.2`.
public enum FDBDestination: Hashable, Sendable, CustomStringConvertible, Codable {
    /// A local port.
    case port(InterfaceName)
    /// A tunnel peer.
    case peer(UnderlayAddress)

    /// Parses `port NAME` or `peer IP`.
    /// - Parameter text: the wire form.
    /// - Throws: `invalidParams` for anything else.
    public init(parsing text: String) throws(ControlError) {
        if text.hasPrefix("port ") {
            self = .port(try InterfaceName(validating: String(text.dropFirst(5))))
        } else if text.hasPrefix("peer "), let address = UnderlayAddress(text.dropFirst(5)) {
            self = .peer(address)
        } else {
            throw .invalidParams("FDB destination \"\(text)\" is neither \"port NAME\" nor \"peer IP\"")
        }
    }

    /// Decodes the wire form.
    /// - Parameter decoder: the decoder positioned at the string.
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes the wire form.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// `port tap0` or `peer 192.0.2.2`.
    public var description: String {
        switch self {
        case .port(let name): "port \(name)"
        case .peer(let address): "peer \(address)"
        }
    }
}

/// One forwarding-database entry:
/// `{"vni": 100, "mac": "02:00:00:00:00:01", "destination": "port tap0", "age": 12, "static": false}`.
public struct FDBEntry: Codable, Sendable, Hashable {
    /// The entry's VNI.
    public var vni: VNI
    /// The MAC address.
    public var mac: MACAddress
    /// Where frames to `mac` go.
    public var destination: FDBDestination
    /// Seconds since the entry was last refreshed by a frame; 0 for static entries.
    public var age: Int
    /// Whether the entry was configured rather than learned (it never ages out).
    public var isStatic: Bool

    /// - Parameters:
    ///   - vni: the VNI.
    ///   - mac: the MAC address.
    ///   - destination: the port or peer.
    ///   - age: seconds since last seen.
    ///   - isStatic: configured rather than learned.
    public init(vni: VNI, mac: MACAddress, destination: FDBDestination, age: Int, isStatic: Bool = false) {
        self.vni = vni
        self.mac = mac
        self.destination = destination
        self.age = age
        self.isStatic = isStatic
    }

    private enum CodingKeys: String, CodingKey {
        case vni, mac, destination, age
        case isStatic = "static"
    }

    /// Decodes an entry.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            vni: try container.decodeVNI(forKey: .vni),
            mac: try container.decodeMAC(forKey: .mac),
            destination: try container.decode(FDBDestination.self, forKey: .destination),
            age: try container.decode(Int.self, forKey: .age),
            isStatic: try container.decode(Bool.self, forKey: .isStatic)
        )
    }

    /// Encodes the entry.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(vni, forKey: .vni)
        try container.encode(mac, forKey: .mac)
        try container.encode(destination, forKey: .destination)
        try container.encode(age, forKey: .age)
        try container.encode(isStatic, forKey: .isStatic)
    }
}

/// The result of `fdb`: `{"entries": [...]}`.
public struct FDBResult: Codable, Sendable, Hashable {
    /// The entries, by VNI then MAC.
    public var entries: [FDBEntry]

    /// - Parameter entries: the entries.
    public init(entries: [FDBEntry]) {
        self.entries = entries
    }
}

/// Frame and byte counters of one port or peer, with its drops by reason. On the wire the members sit directly
/// in the port's or peer's object: `{"name": "tap0", "rxFrames": 10, ..., "drops": {"no-fdb-entry": 2}}`.
public struct TrafficCounters: Codable, Sendable, Hashable {
    /// Frames received.
    public var rxFrames: UInt64
    /// Bytes received (inner Ethernet frames, without tunnel headers).
    public var rxBytes: UInt64
    /// Frames sent.
    public var txFrames: UInt64
    /// Bytes sent (inner Ethernet frames, without tunnel headers).
    public var txBytes: UInt64
    /// Dropped frames by reason, keyed by the dataplane's drop-reason name; reasons with no drops may be left out.
    public var drops: [String: UInt64]

    /// - Parameters:
    ///   - rxFrames: frames received.
    ///   - rxBytes: bytes received.
    ///   - txFrames: frames sent.
    ///   - txBytes: bytes sent.
    ///   - drops: drops by reason.
    public init(rxFrames: UInt64 = 0, rxBytes: UInt64 = 0, txFrames: UInt64 = 0, txBytes: UInt64 = 0,
                drops: [String: UInt64] = [:]) {
        self.rxFrames = rxFrames
        self.rxBytes = rxBytes
        self.txFrames = txFrames
        self.txBytes = txBytes
        self.drops = drops
    }

    /// The sum of all drop reasons.
    public var totalDrops: UInt64 { drops.values.reduce(0, &+) }
}

/// One port's counters in `stats`.
public struct PortStats: Codable, Sendable, Hashable {
    /// The port.
    public var name: InterfaceName
    /// Its counters.
    public var counters: TrafficCounters

    /// - Parameters:
    ///   - name: the port.
    ///   - counters: its counters.
    public init(name: InterfaceName, counters: TrafficCounters) {
        self.name = name
        self.counters = counters
    }

    private enum CodingKeys: String, CodingKey {
        case name
    }

    /// Decodes the name and the counters from the same object.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(InterfaceName.self, forKey: .name),
                  counters: try TrafficCounters(from: decoder))
    }

    /// Encodes the name and the counters into the same object.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        try counters.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
    }
}

/// One peer's counters in `stats`.
public struct PeerStats: Codable, Sendable, Hashable {
    /// The peer's underlay address.
    public var ip: UnderlayAddress
    /// Its counters.
    public var counters: TrafficCounters

    /// - Parameters:
    ///   - ip: the peer.
    ///   - counters: its counters.
    public init(ip: UnderlayAddress, counters: TrafficCounters) {
        self.ip = ip
        self.counters = counters
    }

    private enum CodingKeys: String, CodingKey {
        case ip
    }

    /// Decodes the address and the counters from the same object.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(ip: try container.decodeUnderlayAddress(forKey: .ip), counters: try TrafficCounters(from: decoder))
    }

    /// Encodes the address and the counters into the same object.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        try counters.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
    }
}

/// The result of `stats`: `{"ports": [...], "peers": [...], "drops": {"bad-vxlan-header": 3}}`.
public struct StatsResult: Codable, Sendable, Hashable {
    /// Per-port counters.
    public var ports: [PortStats]
    /// Per-peer counters.
    public var peers: [PeerStats]
    /// Drops not attributable to a port or peer (e.g. a tunnel packet from an unknown source), by reason.
    public var drops: [String: UInt64]
    /// What each dataplane worker carried (the rows above are sums over all workers); nil from a switch that
    /// does not report it.
    public var workers: [WorkerStats]?
    /// What the offload paths did, summed over the workers; nil from a switch that does not report it.
    public var offloads: OffloadStats?

    /// - Parameters:
    ///   - ports: per-port counters.
    ///   - peers: per-peer counters.
    ///   - drops: switch-wide drops by reason.
    ///   - workers: per-worker totals.
    ///   - offloads: offload counters summed over the workers.
    public init(
        ports: [PortStats], peers: [PeerStats], drops: [String: UInt64], workers: [WorkerStats]? = nil,
        offloads: OffloadStats? = nil
    ) {
        self.ports = ports
        self.peers = peers
        self.drops = drops
        self.workers = workers
        self.offloads = offloads
    }
}

/// What the dataplane's offload paths did (docs/offload.md), summed over the workers:
/// `{"tsoFramesReceived": 14000, "segments": 620000, "udpGSOSends": 15000, ...}`.
public struct OffloadStats: Codable, Sendable, Hashable {
    /// TSO frames (up to 64 KiB of one TCP flow) read from TAPs with a virtio header.
    public var tsoFramesReceived: UInt64 = 0
    /// Partial checksums (NEEDS_CSUM) completed on frames read from TAPs.
    public var checksumsCompleted: UInt64 = 0
    /// TSO frames cut into segments (once per destination that needed it).
    public var tsoFramesSegmented: UInt64 = 0
    /// Segments those frames were cut into.
    public var segments: UInt64 = 0
    /// TSO frames written whole to a TAP with a virtio header.
    public var tsoFramesPassedThrough: UInt64 = 0
    /// Writes of coalesced TCP segments (one GSO frame each) to TAPs with a virtio header.
    public var coalescedWrites: UInt64 = 0
    /// Frames merged into those writes.
    public var coalescedFrames: UInt64 = 0
    /// Writes of coalesced UDP datagrams (one USO frame each) to TAPs with a virtio header. Absent from older
    /// switches' replies: decodes as 0.
    public var udpCoalescedWrites: UInt64 = 0
    /// Datagrams merged into those writes (absent from older replies: 0).
    public var udpCoalescedFrames: UInt64 = 0
    /// Merged items written as their separate frames because a member's TCP or UDP checksum failed (the kernel
    /// then drops the corrupt frame). Absent from older replies: 0.
    public var coalesceChecksumFallbacks: UInt64 = 0
    /// UDP GSO sends carrying more than one VXLAN datagram (on an underlay TAP: UDP_L4 writes).
    public var udpGSOSends: UInt64 = 0
    /// VXLAN datagrams in those sends.
    public var udpGSODatagrams: UInt64 = 0
    /// GRO reads (several VXLAN datagrams in one read) from the UDP tunnel socket, or UDP_L4 reads from the
    /// underlay TAP.
    public var groFramesReceived: UInt64 = 0
    /// Datagrams in those reads.
    public var groDatagrams: UInt64 = 0

    public init() {}

    /// Every counter with its JSON name, in the order `vxctl stats` prints them.
    public var named: [(name: String, count: UInt64)] {
        [
            ("tsoFramesReceived", tsoFramesReceived), ("checksumsCompleted", checksumsCompleted),
            ("tsoFramesSegmented", tsoFramesSegmented), ("segments", segments),
            ("tsoFramesPassedThrough", tsoFramesPassedThrough), ("coalescedWrites", coalescedWrites),
            ("coalescedFrames", coalescedFrames), ("udpCoalescedWrites", udpCoalescedWrites),
            ("udpCoalescedFrames", udpCoalescedFrames), ("coalesceChecksumFallbacks", coalesceChecksumFallbacks),
            ("udpGSOSends", udpGSOSends),
            ("udpGSODatagrams", udpGSODatagrams), ("groFramesReceived", groFramesReceived),
            ("groDatagrams", groDatagrams),
        ]
    }

    private enum CodingKeys: String, CodingKey {
        case tsoFramesReceived, checksumsCompleted, tsoFramesSegmented, segments, tsoFramesPassedThrough
        case coalescedWrites, coalescedFrames, udpCoalescedWrites, udpCoalescedFrames, coalesceChecksumFallbacks
        case udpGSOSends, udpGSODatagrams, groFramesReceived, groDatagrams
    }

    /// Decodes every counter; the UDP coalescing ones and `coalesceChecksumFallbacks` may be missing (switches
    /// before them), the rest may not.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tsoFramesReceived = try container.decode(UInt64.self, forKey: .tsoFramesReceived)
        checksumsCompleted = try container.decode(UInt64.self, forKey: .checksumsCompleted)
        tsoFramesSegmented = try container.decode(UInt64.self, forKey: .tsoFramesSegmented)
        segments = try container.decode(UInt64.self, forKey: .segments)
        tsoFramesPassedThrough = try container.decode(UInt64.self, forKey: .tsoFramesPassedThrough)
        coalescedWrites = try container.decode(UInt64.self, forKey: .coalescedWrites)
        coalescedFrames = try container.decode(UInt64.self, forKey: .coalescedFrames)
        udpCoalescedWrites = try container.decodeIfPresent(UInt64.self, forKey: .udpCoalescedWrites) ?? 0
        udpCoalescedFrames = try container.decodeIfPresent(UInt64.self, forKey: .udpCoalescedFrames) ?? 0
        coalesceChecksumFallbacks =
            try container.decodeIfPresent(UInt64.self, forKey: .coalesceChecksumFallbacks) ?? 0
        udpGSOSends = try container.decode(UInt64.self, forKey: .udpGSOSends)
        udpGSODatagrams = try container.decode(UInt64.self, forKey: .udpGSODatagrams)
        groFramesReceived = try container.decode(UInt64.self, forKey: .groFramesReceived)
        groDatagrams = try container.decode(UInt64.self, forKey: .groDatagrams)
    }
}

/// One dataplane worker's share of the traffic: `{"worker": 0, "rxFrames": 10, "txFrames": 12}`. Frames are
/// counted as in the port and peer rows (a frame received on a port and sent to a peer is one rx and one tx).
public struct WorkerStats: Codable, Sendable, Hashable {
    /// The worker's index (its thread is `vxswitch-worker-<index>`).
    public var worker: Int
    /// Frames this worker received, over all ports and peers.
    public var rxFrames: UInt64
    /// Frames this worker sent, over all ports and peers.
    public var txFrames: UInt64

    /// - Parameters:
    ///   - worker: the worker's index.
    ///   - rxFrames: frames received.
    ///   - txFrames: frames sent.
    public init(worker: Int, rxFrames: UInt64, txFrames: UInt64) {
        self.worker = worker
        self.rxFrames = rxFrames
        self.txFrames = txFrames
    }
}
