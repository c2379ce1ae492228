// Punting: frames the switch answers itself instead of switching them.
//
// A port of a `--dhcp` network sends DHCP requests to the switch's own DHCP server, and (when the network has no
// gateway, so the server identifier is an address of the switch) ARP requests for the server's address. The
// worker recognises those with a few fixed-offset reads, copies them into the `PuntQueue`, and does not switch
// them. A control-plane thread drains the queue, builds the answers, and hands each back to the worker with
// `WorkerCommand.transmitFrame`, which sends it out of the port the request came from.
//
// The copy (an Array per punted frame) is the one allocation on the data path, and only for this slow path: DHCP
// and ARP for the server are a handful of frames per container per lease.

import Synchronization
import VXDHCP
import VXForwarding
import VXPacket

/// What a port punts, as published in the worker config.
public struct PuntRule: Sendable, Hashable {
    /// Punt DHCP client-to-server frames (UDP 68 → 67).
    public var dhcp: Bool
    /// Punt ARP requests for this address (the DHCP server identifier when the switch owns it).
    public var arpTarget: IPv4Address?

    public init(dhcp: Bool, arpTarget: IPv4Address?) {
        self.dhcp = dhcp
        self.arpTarget = arpTarget
    }

    /// Whether `frame` (an Ethernet frame from the port) is for the control plane.
    @inlinable
    public func matches(_ frame: RawSpan) -> Bool {
        if dhcp && DHCPClientFrame.isClientToServer(frame) { return true }
        guard let arpTarget else { return false }
        guard case .success(let ethernet) = EthernetHeader.parse(frame), ethernet.etherType == .arp,
            case .success(let arp) = ARPPacket.parse(frame.extracting(ethernet.length..<frame.byteCount))
        else { return false }
        return arp.operation == ARPPacket.request && arp.targetIP == arpTarget
    }
}

/// A frame taken off the data path for the control plane.
public struct PuntedFrame: Sendable {
    /// The port it arrived on; nil for the underlay TAP (ARP for the switch's VTEP address).
    public var port: PortID?
    /// The Ethernet frame.
    public var bytes: [UInt8]
}

/// Punted frames, from the workers to the one control-plane consumer. Bounded: when full, frames are dropped
/// (and counted by the worker), so a client flooding DHCP cannot grow the daemon's memory.
public final class PuntQueue: Sendable {
    /// The most frames waiting at once.
    public let capacity: Int
    private let frames = Mutex<[PuntedFrame]>([])
    private let onPush: @Sendable () -> Void

    /// - Parameters:
    ///   - capacity: the most frames waiting at once.
    ///   - onPush: called (on the worker thread) after each accepted frame, to wake the consumer.
    public init(capacity: Int = 256, onPush: @escaping @Sendable () -> Void) {
        self.capacity = capacity
        self.onPush = onPush
    }

    /// Queues a frame. Returns false when the queue is full.
    public func push(_ frame: PuntedFrame) -> Bool {
        let accepted = frames.withLock { frames -> Bool in
            guard frames.count < capacity else { return false }
            frames.append(frame)
            return true
        }
        if accepted { onPush() }
        return accepted
    }

    /// Takes every waiting frame, oldest first.
    public func drain() -> [PuntedFrame] {
        frames.withLock { frames in
            defer { frames.removeAll(keepingCapacity: true) }
            return frames
        }
    }
}
