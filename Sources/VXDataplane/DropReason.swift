// Every reason a frame can be dropped, in one numbered table (VPP's vxlan_error.def, STYLE §4).
//
// Drops are counted by a dense `DropCode`: first VXPacket's decoder reasons, then VXForwarding's switching
// reasons, then the dataplane's own, then VXOffload's (TSO frames and partial checksums from TAPs with a virtio
// header). Counter arrays are indexed by the code, and `vxctl stats` prints the description. Codes are stable:
// each sub-table only ever appends, and new sub-tables go after the last one.

import VXForwarding
import VXOffload
import VXPacket

/// Drops only the dataplane itself can see: the frame parsed fine, but the switch has nowhere to take it.
public enum DataplaneDropReason: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// A frame arrived on a port handle this worker no longer maps to a port (the port is being deleted).
    case unknownPort = 0
    /// A tunnel frame came from an underlay address that is not a configured peer.
    case unknownPeer = 1
    /// A VXLAN frame from a GRE peer, or a GRE frame from a VXLAN peer.
    case wrongEncapsulation = 2
    /// The tunnel header named a VNI this switch has no ports or peers in.
    case unknownVNI = 3
    /// The destination port has no file descriptor on this worker (it is being added or deleted).
    case portNotAttached = 4
    /// No tunnel sender is attached, so nothing can go to peers.
    case noTunnelSender = 5
    /// The kernel had no room for the frame (EAGAIN, ENOBUFS on send).
    case transmitNoBuffer = 6
    /// The kernel refused the frame (the target is gone, unreachable...).
    case transmitError = 7
    /// The outer header plus the frame would exceed 65,535 bytes, or a TSO segment would not fit a standard buffer.
    case frameTooLong = 8
    /// A TSO frame's segments found no free standard buffer, even after a flush (the pool's reserve is empty).
    case segmentBufferExhausted = 9
    /// A frame for the control plane (DHCP, ARP for the switch) found the punt queue full.
    case puntQueueFull = 10
    /// A frame from the underlay TAP not addressed to this VTEP (another host's, IPv6, another UDP port...).
    case underlayNotForThisVTEP = 11
    /// A frame for a peer whose underlay next hop has no MAC address yet (ARP still asking).
    case underlayNextHopUnresolved = 12

    /// The case name, a stable identifier for machine-readable output (JSON stats).
    public var name: String {
        switch self {
        case .unknownPort: "unknownPort"
        case .unknownPeer: "unknownPeer"
        case .wrongEncapsulation: "wrongEncapsulation"
        case .unknownVNI: "unknownVNI"
        case .portNotAttached: "portNotAttached"
        case .noTunnelSender: "noTunnelSender"
        case .transmitNoBuffer: "transmitNoBuffer"
        case .transmitError: "transmitError"
        case .frameTooLong: "frameTooLong"
        case .segmentBufferExhausted: "segmentBufferExhausted"
        case .puntQueueFull: "puntQueueFull"
        case .underlayNotForThisVTEP: "underlayNotForThisVTEP"
        case .underlayNextHopUnresolved: "underlayNextHopUnresolved"
        }
    }

    public var description: String {
        switch self {
        case .unknownPort: "received on a port that is being removed"
        case .unknownPeer: "tunnel frame from an address that is not a peer"
        case .wrongEncapsulation: "encapsulation does not match the peer's"
        case .unknownVNI: "VNI not configured on this switch"
        case .portNotAttached: "destination port not attached to this worker"
        case .noTunnelSender: "no tunnel sender"
        case .transmitNoBuffer: "kernel send buffer full"
        case .transmitError: "kernel refused the send"
        case .frameTooLong: "encapsulated frame longer than 65535 bytes, or TSO segment larger than a buffer"
        case .segmentBufferExhausted: "no free buffer for a TSO segment"
        case .puntQueueFull: "control-plane queue full (DHCP/ARP for the switch)"
        case .underlayNotForThisVTEP: "underlay frame not addressed to this VTEP"
        case .underlayNextHopUnresolved: "underlay next hop of the peer not resolved yet (ARP)"
        }
    }
}

/// A dense index over all four drop tables, for counter arrays.
public struct DropCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int

    @usableFromInline static let forwardingBase = PacketDropReason.count
    @usableFromInline static let dataplaneBase = forwardingBase + ForwardingDropReason.allCases.count
    @usableFromInline static let offloadBase = dataplaneBase + DataplaneDropReason.allCases.count
    /// The number of codes: the size of a counter array indexed by `rawValue`.
    public static let count = offloadBase + OffloadDropReason.count

    @inlinable
    public init(_ reason: PacketDropReason) {
        rawValue = Int(reason.rawValue)
    }

    @inlinable
    public init(_ reason: ForwardingDropReason) {
        rawValue = DropCode.forwardingBase + Int(reason.rawValue)
    }

    @inlinable
    public init(_ reason: DataplaneDropReason) {
        rawValue = DropCode.dataplaneBase + Int(reason.rawValue)
    }

    @inlinable
    public init(_ reason: OffloadDropReason) {
        rawValue = DropCode.offloadBase + Int(reason.rawValue)
    }

    /// Every code, in order.
    public static var all: [DropCode] {
        PacketDropReason.allCases.map(DropCode.init) + ForwardingDropReason.allCases.map(DropCode.init)
            + DataplaneDropReason.allCases.map(DropCode.init) + OffloadDropReason.allCases.map(DropCode.init)
    }

    /// A stable machine name (the enum case), for JSON output: `vxlanIFlagClear`, `splitHorizon`...
    /// VXOffload's reasons carry the prefix `offload` (`offloadMalformedIPv4`), since names such as
    /// `malformedIPv4` or `fragment` would read as the tunnel decoder's.
    public var name: String {
        if rawValue < DropCode.forwardingBase { return PacketDropReason.allCases[rawValue].name }
        if rawValue < DropCode.dataplaneBase {
            return ForwardingDropReason.allCases[rawValue - DropCode.forwardingBase].name
        }
        if rawValue < DropCode.offloadBase {
            return DataplaneDropReason.allCases[rawValue - DropCode.dataplaneBase].name
        }
        let name = OffloadDropReason.allCases[rawValue - DropCode.offloadBase].name
        return "offload" + name.prefix(1).uppercased() + name.dropFirst()
    }

    /// The human description.
    public var description: String {
        if rawValue < DropCode.forwardingBase { return PacketDropReason.allCases[rawValue].description }
        if rawValue < DropCode.dataplaneBase {
            return ForwardingDropReason.allCases[rawValue - DropCode.forwardingBase].description
        }
        if rawValue < DropCode.offloadBase {
            return DataplaneDropReason.allCases[rawValue - DropCode.dataplaneBase].description
        }
        return OffloadDropReason.allCases[rawValue - DropCode.offloadBase].description
    }
}
