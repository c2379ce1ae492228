// Identifiers shared by the forwarding table, the topology snapshot and the switching decision.
//
// Everything here is a small value type that packs into a few bits, because the forwarding table stores a key and
// a value in one 64-bit word each (see docs/forwarding-table.md for the bit diagrams). Indices are dense and
// reused; the generation next to each index is what tells a reused index from the one a table entry remembers.

public import VXPacket

/// The dense index the switch assigns to each VNI in use (1 ... 65,535; 0 is reserved and never names a domain).
///
/// A VNI (24 bits) and a MAC (48 bits) do not fit together in a 64-bit key, so the table is keyed by this 16-bit
/// index instead, as VPP keys its L2 FIB by `bd_index` (`src/vnet/l2/l2_fib.h`). `SwitchTopology` maps VNIs to
/// domains and back.
public struct BridgeDomain: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The index, never 0.
    public let rawValue: UInt16

    /// Returns nil for 0, the reserved index.
    @inlinable
    public init?(_ rawValue: UInt16) {
        guard rawValue != 0 else { return nil }
        self.rawValue = rawValue
    }

    /// For indices already known to be non-zero (decoded from a table key). Traps on 0.
    @inlinable
    public init(uncheckedNonZero rawValue: UInt16) {
        precondition(rawValue != 0, "bridge domain 0 is reserved")
        self.rawValue = rawValue
    }

    public var description: String { "bd\(rawValue)" }
    public static func < (lhs: BridgeDomain, rhs: BridgeDomain) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A local port (TAP or other attachment circuit): a reusable index plus the generation it was allocated with.
///
/// `SwitchTopology` bumps the generation at an index each time the port there is removed, so a `PortID` kept in
/// the forwarding table after its port was deleted no longer matches and is treated as unknown. The generation is
/// 8 bits: it wraps after 256 reuses of one index, which is why the control plane also flushes the table when it
/// deletes a port; the generation covers the window between the delete and the flush.
public struct PortID: Hashable, Sendable, CustomStringConvertible {
    /// Dense index into the topology's port array.
    public let index: UInt16
    /// Generation of the port at `index` when this ID was handed out.
    public let generation: UInt8

    /// - Parameters:
    ///   - index: dense index into the topology's port array.
    ///   - generation: generation of that index when the port was created.
    @inlinable
    public init(index: UInt16, generation: UInt8) {
        self.index = index
        self.generation = generation
    }

    public var description: String { "port\(index).\(generation)" }
}

/// A tunnel peer (remote VTEP): a reusable index plus its generation, with the same staleness rule as `PortID`.
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    /// Dense index into the topology's peer array.
    public let index: UInt16
    /// Generation of the peer at `index` when this ID was handed out.
    public let generation: UInt8

    /// - Parameters:
    ///   - index: dense index into the topology's peer array.
    ///   - generation: generation of that index when the peer was created.
    @inlinable
    public init(index: UInt16, generation: UInt8) {
        self.index = index
        self.generation = generation
    }

    public var description: String { "peer\(index).\(generation)" }
}

/// Where a frame for a learned MAC goes: out of a local port, or into a tunnel towards one peer.
///
/// Packs into 25 bits (`packed`): index in bits 0...15, generation in bits 16...23, kind in bit 24
/// (0 = port, 1 = peer). The table stores exactly these bits in its value word.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    /// Out of a local port.
    case port(PortID)
    /// Encapsulated towards a tunnel peer.
    case peer(PeerID)

    /// Bit 24 of `packed`: set for `.peer`.
    @usableFromInline static let peerBit: UInt32 = 1 << 24
    /// Mask of the bits `packed` uses.
    @usableFromInline static let packedMask: UInt32 = (1 << 25) - 1

    /// The 25-bit encoding stored in the forwarding table.
    @inlinable
    public var packed: UInt32 {
        switch self {
        case .port(let id): return UInt32(id.index) | UInt32(id.generation) << 16
        case .peer(let id): return UInt32(id.index) | UInt32(id.generation) << 16 | Destination.peerBit
        }
    }

    /// Decodes `packed`; bits above 24 are ignored.
    /// - Parameter packed: a value produced by `packed`.
    @inlinable
    public init(packed: UInt32) {
        let index = UInt16(truncatingIfNeeded: packed)
        let generation = UInt8(truncatingIfNeeded: packed >> 16)
        if packed & Destination.peerBit != 0 {
            self = .peer(PeerID(index: index, generation: generation))
        } else {
            self = .port(PortID(index: index, generation: generation))
        }
    }

    public var description: String {
        switch self {
        case .port(let id): return id.description
        case .peer(let id): return id.description
        }
    }
}

/// Where a frame entered the switch.
public enum Ingress: Hashable, Sendable, CustomStringConvertible {
    /// From a local port.
    case port(PortID)
    /// Decapsulated from a tunnel; the peer is the outer source VTEP.
    case tunnel(PeerID)

    /// The destination that sends a frame back where this one came from; what the source MAC is learned as.
    @inlinable
    public var destination: Destination {
        switch self {
        case .port(let id): return .port(id)
        case .tunnel(let id): return .peer(id)
        }
    }

    public var description: String {
        switch self {
        case .port(let id): return id.description
        case .tunnel(let id): return "tunnel(\(id))"
        }
    }
}

/// A forwarding-table key: bridge domain and MAC packed into one word.
///
/// ```
///  63            48 47                                              0
/// +----------------+-------------------------------------------------+
/// | bridge domain  | MAC address (first octet on the wire in 47...40) |
/// +----------------+-------------------------------------------------+
/// ```
/// The domain is never 0, so a real key is never 0 (the empty slot) nor 1 (the tombstone). This is VPP's
/// `l2fib_entry_key_t` (`u16 bd_index; u8 mac[6]` over `u64 raw`).
public struct MACKey: Hashable, Sendable, CustomStringConvertible {
    /// The packed key.
    public var raw: UInt64

    /// - Parameters:
    ///   - domain: the bridge domain the MAC lives in.
    ///   - mac: the address.
    @inlinable
    public init(domain: BridgeDomain, mac: MACAddress) {
        self.raw = UInt64(domain.rawValue) << 48 | mac.raw
    }

    /// The bridge domain in bits 48...63.
    @inlinable
    public var domain: BridgeDomain { BridgeDomain(uncheckedNonZero: UInt16(truncatingIfNeeded: raw >> 48)) }

    /// The MAC in bits 0...47.
    @inlinable
    public var mac: MACAddress { MACAddress(raw: raw) }

    public var description: String { "\(domain)/\(mac)" }
}
