// What a worker needs to know about the switch, as one immutable snapshot.
//
// The control plane is the only writer: it builds a new `DataplaneConfig` for every change (a port or peer
// added or removed) and publishes it; each worker picks it up at the start of its next batch with one relaxed
// load of a generation counter (`ConfigReader.refresh`), and only takes the publisher's lock when the
// generation moved. A worker therefore switches a whole batch with one consistent view, never half of a change.
//
// Per-frame lookups (peer by outer source address, bridge domain by VNI, outer header by peer and domain) go
// through flat tables built here once per snapshot: `FlatMap32` (open addressing on UInt32 keys, one multiply to
// hash) and `PeerAddressMap` (the same on 128-bit underlay addresses) over arrays of trivial values. A
// `Dictionary` or `Set` lookup costs a SipHash (`Hasher` seed, combine and finalize, ~15-20 ns each), and copying
// a `PeerTunnel` out of its array retains and releases the dictionary inside it; with four such lookups per frame
// they made up more than half of the per-frame cost (docs/performance.md). The `PeerTunnel` values and `topology`
// stay as the source of truth and for callers off the hot path; the flat tables are derived from them in `init`
// and answer the same questions.

import Synchronization
import VXForwarding
import VXPacket

/// How to reach one peer: its address, its one encapsulation, and a prebuilt outer header per VNI it serves.
public struct PeerTunnel: Sendable {
    public let peer: PeerID
    public let address: UnderlayAddress
    public let encapsulation: TunnelEncapsulation
    /// How the GRE key carries the VNI; `.vni` for VXLAN peers (unused).
    public let greKeyLayout: GREKeyLayout
    /// For GRE peers without a key: the one VNI their frames belong to.
    public let unkeyedVNI: VNI?
    /// The outer header for each bridge domain this peer serves (STYLE §4: built once, patched per frame).
    let templates: [BridgeDomain: EncapTemplate]
    /// With an underlay TAP: the MAC address of the peer's next hop on the underlay (the peer itself, or the
    /// gateway), as ARP resolved it; nil until it is resolved, and always without an underlay TAP.
    public let nextHopMAC: MACAddress?

    public init(
        peer: PeerID, address: UnderlayAddress, encapsulation: TunnelEncapsulation, greKeyLayout: GREKeyLayout,
        unkeyedVNI: VNI?, templates: [BridgeDomain: EncapTemplate], nextHopMAC: MACAddress? = nil
    ) {
        self.peer = peer
        self.address = address
        self.encapsulation = encapsulation
        self.greKeyLayout = greKeyLayout
        self.unkeyedVNI = unkeyedVNI
        self.templates = templates
        self.nextHopMAC = nextHopMAC
    }

}

/// What classifying a frame from a peer needs, as a trivial value (copying it costs no reference counting).
public struct PeerEndpoint: Sendable, Equatable {
    /// The peer, with the generation this snapshot knows.
    public let peer: PeerID
    /// Its one encapsulation: frames arriving on the other kind of socket are dropped.
    public let encapsulation: TunnelEncapsulation
    /// How its GRE key carries the VNI.
    public let greKeyLayout: GREKeyLayout
    /// For GRE peers without a key: the one VNI their frames belong to.
    public let unkeyedVNI: VNI?
    /// The MAC of its underlay next hop (underlay TAP only; nil: unresolved).
    public let nextHopMAC: MACAddress?

    init(_ tunnel: PeerTunnel) {
        peer = tunnel.peer
        encapsulation = tunnel.encapsulation
        greKeyLayout = tunnel.greKeyLayout
        unkeyedVNI = tunnel.unkeyedVNI
        nextHopMAC = tunnel.nextHopMAC
    }
}

/// Who the switch is on the underlay segment when it owns its VTEP address on an underlay TAP
/// (`vxswitchd --underlay-tap`): the outer source of every frame it writes there, and the destination of the
/// frames it takes from there.
public struct UnderlayIdentity: Sendable, Hashable {
    /// The switch's MAC address on the segment.
    public var mac: MACAddress
    /// The VTEP address (the outer IPv4 source).
    public var address: IPv4Address
    /// The VXLAN UDP port it listens on.
    public var udpPort: UInt16

    public init(mac: MACAddress, address: IPv4Address, udpPort: UInt16) {
        self.mac = mac
        self.address = address
        self.udpPort = udpPort
    }
}

/// An immutable open-addressing map from `UInt32` keys to non-zero `UInt32` values, for the per-frame lookups of
/// `DataplaneConfig`. Slot = `key << 32 | value`, 0 = empty (values are never 0, so no used slot is 0). At most
/// half full, linear probing, Fibonacci hashing (one multiply, the top bits pick the slot), so a lookup is a
/// multiply, one or two loads and compares. Built once per config snapshot; never mutated.
@usableFromInline
struct FlatMap32: Sendable {
    /// `key << 32 | value`, or 0; a power-of-two count of at least twice the entries.
    @usableFromInline let slots: [UInt64]
    /// 64 - log2(slots.count): the hash's top bits index the slots.
    @usableFromInline let shift: UInt64

    /// The table shape for `entries` entries: a power-of-two slot count of at least twice as many (and at least
    /// 2), and the shift that makes a 64-bit hash's top bits index it. Shared with `PeerAddressMap`.
    static func shape(entries: Int) -> (count: Int, shift: UInt64) {
        var count = 2
        var bits: UInt64 = 1
        while count < 2 * entries {
            count <<= 1
            bits += 1
        }
        return (count, 64 - bits)
    }

    /// - Parameter pairs: keys with their values (each non-zero); a repeated key keeps its last value.
    init(_ pairs: [(key: UInt32, value: UInt32)]) {
        let (count, shift) = FlatMap32.shape(entries: pairs.count)
        var slots = [UInt64](repeating: 0, count: count)
        for (key, value) in pairs {
            precondition(value != 0, "FlatMap32 values must be non-zero")
            var index = FlatMap32.home(key, shift: shift)
            while slots[index] != 0 && UInt32(truncatingIfNeeded: slots[index] >> 32) != key {
                index = (index + 1) & (count - 1)
            }
            slots[index] = UInt64(key) << 32 | UInt64(value)
        }
        self.slots = slots
        self.shift = shift
    }

    @inlinable @inline(__always)
    static func home(_ key: UInt32, shift: UInt64) -> Int {
        Int(truncatingIfNeeded: (UInt64(key) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The value stored for `key`, or nil. Terminates: at least half the slots are empty.
    @inlinable @inline(__always)
    func value(for key: UInt32) -> UInt32? {
        let mask = slots.count &- 1
        var index = FlatMap32.home(key, shift: shift)
        while true {
            let slot = slots[index]
            if slot == 0 { return nil }
            if UInt32(truncatingIfNeeded: slot >> 32) == key { return UInt32(truncatingIfNeeded: slot) }
            index = (index &+ 1) & mask
        }
    }
}

/// `FlatMap32` for underlay addresses: peer index + 1 by the peer's address (IPv4 in its mapped form, so one
/// table serves both families). Keys and values in two arrays, value 0 = empty slot; at most half full, linear
/// probing, the two halves of the address mixed by multiplies. Built once per config snapshot; never mutated.
@usableFromInline
struct PeerAddressMap: Sendable {
    @usableFromInline let keys: [UnderlayAddress]
    /// Peer index + 1, or 0 where the slot is empty.
    @usableFromInline let values: [UInt32]
    @usableFromInline let shift: UInt64

    /// - Parameter pairs: addresses with their values (each non-zero); a repeated address keeps its last value.
    init(_ pairs: [(key: UnderlayAddress, value: UInt32)]) {
        let (count, shift) = FlatMap32.shape(entries: pairs.count)
        var keys = [UnderlayAddress](repeating: .any, count: count)
        var values = [UInt32](repeating: 0, count: count)
        for (key, value) in pairs {
            precondition(value != 0, "PeerAddressMap values must be non-zero")
            var index = PeerAddressMap.home(key, shift: shift)
            while values[index] != 0 && keys[index] != key {
                index = (index + 1) & (count - 1)
            }
            keys[index] = key
            values[index] = value
        }
        self.keys = keys
        self.values = values
        self.shift = shift
    }

    @inlinable @inline(__always)
    static func home(_ key: UnderlayAddress, shift: UInt64) -> Int {
        let mixed = (key.high &* 0x9E37_79B9_7F4A_7C15) ^ key.low
        return Int(truncatingIfNeeded: (mixed &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The value stored for `key`, or nil. Terminates: at least half the slots are empty.
    @inlinable @inline(__always)
    func value(for key: UnderlayAddress) -> UInt32? {
        let mask = values.count &- 1
        var index = PeerAddressMap.home(key, shift: shift)
        while true {
            let value = values[index]
            if value == 0 { return nil }
            if keys[index] == key { return value }
            index = (index &+ 1) & mask
        }
    }
}

/// One consistent view of the switch for the workers.
public final class DataplaneConfig: Sendable {
    /// Ports, peers and flood lists per bridge domain.
    public let topology: SwitchTopology
    /// What each port punts to the control plane, by PortID index (nil: nothing).
    @usableFromInline let puntRules: [PuntRule?]
    /// Peer index + 1 by underlay address.
    @usableFromInline let peerIndexByAddress: PeerAddressMap
    /// `PeerEndpoint` of each peer by PeerID index (nil where the index is free).
    @usableFromInline let endpoints: [PeerEndpoint?]
    /// Domain index by VNI value; mirrors `topology.domain(for:)`.
    @usableFromInline let domainByVNI: FlatMap32
    /// Every peer's templates in one array, with the peer's address beside each.
    @usableFromInline let outerHeaders: [(address: UnderlayAddress, template: EncapTemplate)]
    /// Index + 1 into `outerHeaders` by `peer index << 16 | domain index`.
    @usableFromInline let outerHeaderIndex: FlatMap32
    /// The switch's identity on the underlay TAP; nil when tunnels go through sockets.
    public let underlay: UnderlayIdentity?

    public init(
        topology: SwitchTopology, peers: [PeerTunnel], punt: [PortID: PuntRule] = [:],
        underlay: UnderlayIdentity? = nil
    ) {
        self.topology = topology
        self.underlay = underlay
        var rules = [PuntRule?](repeating: nil, count: (punt.keys.map { Int($0.index) }.max() ?? -1) + 1)
        for (port, rule) in punt { rules[Int(port.index)] = rule }
        self.puntRules = rules
        var byIndex = [PeerTunnel?](repeating: nil, count: (peers.map { Int($0.peer.index) }.max() ?? -1) + 1)
        var byAddress: [(key: UnderlayAddress, value: UInt32)] = []
        for peer in peers {
            byIndex[Int(peer.peer.index)] = peer
            byAddress.append((peer.address, UInt32(peer.peer.index) + 1))
        }
        self.peerIndexByAddress = PeerAddressMap(byAddress)
        self.endpoints = byIndex.map { $0.map(PeerEndpoint.init) }
        self.domainByVNI = FlatMap32(topology.domains.map { (key: $0.vni.value, value: UInt32($0.domain.rawValue)) })
        var headers: [(address: UnderlayAddress, template: EncapTemplate)] = []
        var headerIndex: [(key: UInt32, value: UInt32)] = []
        for case let tunnel? in byIndex {
            for (domain, template) in tunnel.templates {
                headers.append((tunnel.address, template))
                headerIndex.append((UInt32(tunnel.peer.index) << 16 | UInt32(domain.rawValue), UInt32(headers.count)))
            }
        }
        self.outerHeaders = headers
        self.outerHeaderIndex = FlatMap32(headerIndex)
    }

    /// An empty switch.
    public convenience init() {
        self.init(topology: SwitchTopology(), peers: [])
    }

    /// What `port` punts, if anything.
    @inlinable
    public func puntRule(for port: PortID) -> PuntRule? {
        let index = Int(port.index)
        return index < puntRules.count ? puntRules[index] : nil
    }

    // MARK: Per-frame lookups (flat tables, no hashing through `Hasher`, no reference counting)

    /// What classifying a frame from underlay address `address` needs.
    /// - Parameter address: the outer source address of a received tunnel packet.
    /// - Returns: the peer's endpoint, or nil when no peer has that address.
    @inlinable
    public func endpoint(at address: UnderlayAddress) -> PeerEndpoint? {
        guard let index = peerIndexByAddress.value(for: address) else { return nil }
        return endpoints[Int(index) &- 1]
    }

    /// The bridge domain carrying `vni`: the same answer as `topology.domain(for:)`.
    /// - Parameter vni: from a decapsulated VXLAN header or GRE key.
    /// - Returns: the domain, or nil when the switch does not serve the VNI.
    @inlinable
    public func domain(for vni: VNI) -> BridgeDomain? {
        guard let domain = domainByVNI.value(for: vni.value) else { return nil }
        return BridgeDomain(UInt16(truncatingIfNeeded: domain))
    }

    /// The outer header of frames of `domain` for `peer` (the peer's template for that domain), and the peer's
    /// address.
    /// - Parameters:
    ///   - peer: a destination peer (its generation must match this snapshot's).
    ///   - domain: the frame's domain.
    /// - Returns: address and template, or nil when the peer is stale or does not serve `domain`.
    @inlinable
    public func outerHeader(
        to peer: PeerID,
        in domain: BridgeDomain
    ) -> (address: UnderlayAddress, template: EncapTemplate)? {
        guard liveEndpoint(of: peer) != nil,
            let header = outerHeaderIndex.value(for: UInt32(peer.index) << 16 | UInt32(domain.rawValue))
        else { return nil }
        return outerHeaders[Int(header) &- 1]
    }

    /// The MAC address of `peer`'s underlay next hop (underlay TAP only).
    /// - Returns: the MAC, or nil when the peer is stale or its next hop is not resolved yet.
    @inlinable
    public func nextHopMAC(of peer: PeerID) -> MACAddress? {
        liveEndpoint(of: peer)?.nextHopMAC
    }

    /// `peer`'s endpoint, or nil when its slot is empty or holds a newer peer (a stale `PeerID`).
    @inlinable
    func liveEndpoint(of peer: PeerID) -> PeerEndpoint? {
        let index = Int(peer.index)
        guard index < endpoints.count, let endpoint = endpoints[index], endpoint.peer == peer else { return nil }
        return endpoint
    }
}

/// Hands new `DataplaneConfig` snapshots from the control thread to the workers (VXForwarding's
/// `SnapshotPublisher`: one relaxed load per batch, the lock only after a publish).
public typealias ConfigPublisher = SnapshotPublisher<DataplaneConfig>
/// One worker's view of the published config.
public typealias ConfigReader = SnapshotReader<DataplaneConfig>

extension SnapshotPublisher where Snapshot == DataplaneConfig {
    /// A publisher whose first snapshot is an empty switch.
    public convenience init() {
        self.init(DataplaneConfig())
    }
}
