// Where the daemon's file descriptors come from.
//
// The daemon asks a `SwitchHost` for TAP devices and tunnel sockets. `KernelHost` makes real ones (needs
// CAP_NET_ADMIN); tests hand the daemon a host that makes fake descriptors for a `MemoryEngine`, so the whole
// switch — control methods, state, worker — runs in-process without root (STYLE §11, like OVS's netdev-dummy).

import Synchronization
import VXControl
import VXIO
import VXPacket

/// A descriptor the daemon owns: a TAP port or a tunnel socket.
///
/// Two ways to let go of it: `destroy()` removes what it stands for (deletes the TAP interface, as `del-port`
/// must), `release()` only closes the descriptor (a persistent TAP stays, for the next vxswitchd to attach to).
/// Whichever comes first wins; later calls do nothing.
public final class OwnedDescriptor: Sendable {
    /// The descriptor to register with the engine.
    public let fd: Int32
    /// How the engine reads and writes it.
    public let kind: PortKind
    /// The interface index, for TAPs.
    public let ifindex: Int?
    private let actions: Mutex<(release: @Sendable () -> Void, destroy: @Sendable () -> Void)?>

    /// - Parameters:
    ///   - fd: the descriptor.
    ///   - kind: its port kind.
    ///   - ifindex: the interface index, for TAPs.
    ///   - release: closes the descriptor only.
    ///   - destroy: removes the interface (or, for a socket, just closes it).
    public init(
        fd: Int32, kind: PortKind, ifindex: Int? = nil, release: @escaping @Sendable () -> Void,
        destroy: @escaping @Sendable () -> Void
    ) {
        self.fd = fd
        self.kind = kind
        self.ifindex = ifindex
        self.actions = Mutex((release, destroy))
    }

    /// A descriptor for which closing is all there is (sockets).
    public convenience init(fd: Int32, kind: PortKind, close: @escaping @Sendable () -> Void) {
        self.init(fd: fd, kind: kind, release: close, destroy: close)
    }

    /// Closes the descriptor; a persistent TAP stays.
    public func release() {
        takeActions()?.release()
    }

    /// Removes the interface and closes the descriptor.
    public func destroy() {
        takeActions()?.destroy()
    }

    private func takeActions() -> (release: @Sendable () -> Void, destroy: @Sendable () -> Void)? {
        actions.withLock { actions in
            defer { actions = nil }
            return actions
        }
    }

    deinit {
        release()
    }
}

/// The descriptors a switch needs from its host.
public protocol SwitchHost: Sendable {
    /// Creates (or attaches to) TAP interface `name`, sets its MTU and brings it up.
    /// - Parameter persistent: keep the interface when the descriptor closes (so a restarted vxswitchd can
    ///   attach to it again); `OwnedDescriptor.destroy()` still removes it.
    /// - Throws: `ControlError` with a message a person understands (name taken by another kind of interface...).
    func createPort(name: String, mtu: Int, persistent: Bool) throws(ControlError) -> OwnedDescriptor

    /// Opens the tunnel sockets: a UDP socket bound to `local:udpPort` for receiving VXLAN, a raw GRE socket, the
    /// raw IPv4 sender (GRE), and the UDP senders VXLAN leaves through (`.udpSender`, any number, none for VXLAN
    /// through the raw sender), in that order.
    func openTunnels(local: IPv4Address, udpPort: UInt16) throws(ControlError) -> [OwnedDescriptor]
}

/// Real TAP devices and sockets.
public struct KernelHost: SwitchHost {
    public init() {}

    /// Creates the TAP with a virtio-net header and TCP offloads (checksum, TSO4, TSO6), so the container's TCP
    /// stack hands the switch up to 64 KiB at a time and takes coalesced frames back (docs/offload.md).
    public func createPort(name: String, mtu: Int, persistent: Bool) throws(ControlError) -> OwnedDescriptor {
        do throws(IOError) {
            let tap = try TAPDevice(name: name, options: [.virtioHeader])
            try tap.setOffloads(.tcp)
            try tap.setPersistent(persistent)
            try tap.setMTU(mtu)
            try tap.setUp(true)
            let ifindex = try tap.interfaceIndex()
            let kind = tap.portKind
            let box = TAPBox(tap)
            return OwnedDescriptor(
                fd: box.fd, kind: kind, ifindex: Int(ifindex), release: { box.close() }, destroy: { box.delete() })
        } catch {
            throw ControlError(.systemError, "cannot create TAP interface \"\(name)\": \(error)", cause: error)
        }
    }

    public func openTunnels(local: IPv4Address, udpPort: UInt16) throws(ControlError) -> [OwnedDescriptor] {
        var sockets: [OwnedDescriptor] = []
        do throws(IOError) {
            sockets.append(SocketBox(try TunnelSockets.openUDP(local: local, port: udpPort)).owned(kind: .udpTunnel))
            sockets.append(SocketBox(try TunnelSockets.openRawGRE(local: local)).owned(kind: .rawGRE))
            sockets.append(SocketBox(try TunnelSockets.openRawSender()).owned(kind: .rawIPv4Sender))
            // Several sockets, one per group of flows: each pins its UDP source port (docs/offload.md).
            for _ in 0..<TunnelSockets.defaultUDPSenderCount {
                sockets.append(SocketBox(try TunnelSockets.openUDPSender(local: local)).owned(kind: .udpSender))
            }
            return sockets
        } catch {
            for socket in sockets { socket.release() }
            throw ControlError(
                .systemError, "cannot open the tunnel sockets on \(local) (UDP port \(udpPort)): \(error)",
                cause: error)
        }
    }
}

/// Holds a noncopyable `TAPDevice` so a closure can delete it later.
private final class TAPBox: Sendable {
    let fd: Int32
    private let device: Mutex<TAPDevice?>

    init(_ tap: consuming TAPDevice) {
        fd = tap.fileDescriptor.rawValue
        device = Mutex(tap)
    }

    func delete() {
        device.withLock { device in
            guard let tap = device.take() else { return }
            // A failed TUNSETPERSIST(0) still closes the descriptor, which is what removes a non-persistent TAP.
            try? tap.delete()
        }
    }

    func close() {
        device.withLock { device in
            guard let tap = device.take() else { return }
            tap.close()
        }
    }
}

/// Holds a noncopyable `TunnelSocket` until it is closed.
private final class SocketBox: Sendable {
    let fd: Int32
    private let socket: Mutex<TunnelSocket?>

    init(_ socket: consuming TunnelSocket) {
        fd = socket.fileDescriptor.rawValue
        self.socket = Mutex(socket)
    }

    func owned(kind: PortKind) -> OwnedDescriptor {
        OwnedDescriptor(fd: fd, kind: kind) { self.close() }
    }

    func close() {
        socket.withLock { socket in
            // Dropping the value closes the descriptor (TunnelSocket's deinit).
            _ = socket.take()
        }
    }
}
