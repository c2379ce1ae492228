// Where the daemon's file descriptors come from.
//
// The daemon asks a `SwitchHost` for TAP devices and tunnel sockets. `KernelHost` makes real ones (needs
// CAP_NET_ADMIN); tests hand the daemon a host that makes fake descriptors for a `MemoryEngine`, so the whole
// switch — control methods, state, worker — runs in-process without root (STYLE §11, like OVS's netdev-dummy).

import Synchronization
import VXControl
import VXIO
import VXNetlink
import VXOffload
import VXPacket

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A descriptor the daemon owns: a TAP port or a tunnel socket.
///
/// Two ways to let go of it: `destroy()` removes what it stands for (deletes the TAP interface, as `del-port`
/// must), `release()` only closes the descriptor (a persistent TAP stays, for the next vxswitchd to attach to).
/// Whichever comes first wins; later calls do nothing.
public final class OwnedDescriptor: Sendable {
    /// The descriptors to register with the engines: a multi-queue TAP has one queue per worker; a socket, or a
    /// TAP that exists without IFF_MULTI_QUEUE, has one, which every worker that needs it shares.
    public let fds: [Int32]
    /// The first descriptor (worker 0's).
    public var fd: Int32 { fds[0] }
    /// How the engine reads and writes it.
    public let kind: PortKind
    /// The interface index, for TAPs.
    public let ifindex: Int?
    /// For a TAP the host created: why the kernel kept its default queueing discipline instead of noqueue (see
    /// `KernelHost.createPort`), or nil. Only memory is at stake; the daemon logs it.
    public let qdiscRefusal: String?
    private let actions: Mutex<(release: @Sendable () -> Void, destroy: @Sendable () -> Void)?>

    /// - Parameters:
    ///   - fds: the descriptors (TAP queues), at least one.
    ///   - kind: their port kind.
    ///   - ifindex: the interface index, for TAPs.
    ///   - qdiscRefusal: why a TAP kept the default queueing discipline.
    ///   - release: closes the descriptors only.
    ///   - destroy: removes the interface (or, for a socket, just closes it).
    public init(
        fds: [Int32], kind: PortKind, ifindex: Int? = nil, qdiscRefusal: String? = nil,
        release: @escaping @Sendable () -> Void, destroy: @escaping @Sendable () -> Void
    ) {
        precondition(!fds.isEmpty, "an OwnedDescriptor needs a descriptor")
        self.fds = fds
        self.kind = kind
        self.ifindex = ifindex
        self.qdiscRefusal = qdiscRefusal
        self.actions = Mutex((release, destroy))
    }

    /// One descriptor.
    public convenience init(
        fd: Int32, kind: PortKind, ifindex: Int? = nil, release: @escaping @Sendable () -> Void,
        destroy: @escaping @Sendable () -> Void
    ) {
        self.init(fds: [fd], kind: kind, ifindex: ifindex, release: release, destroy: destroy)
    }

    /// A descriptor for which closing is all there is (sockets).
    public convenience init(fd: Int32, kind: PortKind, close: @escaping @Sendable () -> Void) {
        self.init(fd: fd, kind: kind, release: close, destroy: close)
    }

    /// The descriptor worker `worker` registers: its own queue, or the shared one of a single-queue TAP.
    public func fd(forWorker worker: Int) -> Int32 {
        fds[worker % fds.count]
    }

    /// A TAP with fewer queues than there are workers: some workers share a queue (see TAPQueues.swift).
    public func sharesQueues(amongWorkers workers: Int) -> Bool {
        fds.count < workers
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
    /// - Parameters:
    ///   - persistent: keep the interface when the descriptors close (so a restarted vxswitchd can attach to it
    ///     again); `OwnedDescriptor.destroy()` still removes it.
    ///   - queues: how many queues to open (one per worker); a TAP that exists without IFF_MULTI_QUEUE has one.
    /// - Throws: `ControlError` with a message a person understands (name taken by another kind of interface...).
    func createPort(name: String, mtu: Int, persistent: Bool, queues: Int) throws(ControlError) -> OwnedDescriptor

    /// Opens worker `worker`'s tunnel sockets, in this order: a UDP socket bound to `local:udpPort` with
    /// SO_REUSEPORT and UDP_GRO for receiving VXLAN (every worker has one; the kernel spreads datagrams over them
    /// by 4-tuple hash), a raw GRE socket (worker 0 only: every raw socket gets a copy of every GRE packet, so a
    /// second one would switch each packet twice), the raw IPv4 sender (GRE), and the UDP senders VXLAN leaves
    /// through (`.udpSender`, any number, none for VXLAN through the raw sender). An IPv6 `local` gets the UDP
    /// sockets only: GRE is IPv4 only here.
    func openTunnels(local: UnderlayAddress, udpPort: UInt16, worker: Int) throws(ControlError) -> [OwnedDescriptor]

    /// Creates the underlay TAP `name` (`vxswitchd --underlay-tap`): not persistent, up, with the 24-byte tunnel
    /// virtio-net header and GSO over UDP tunnels, one queue per worker, a port of `bridge` when given (else the
    /// operator bridges it to the uplink).
    /// - Throws: `ControlError` when the kernel lacks TUN_F_UDP_TUNNEL_GSO (before 6.17), the name is taken, or
    ///   `bridge` is missing or takes no ports; no TAP is left behind.
    func openUnderlay(name: String, queues: Int, bridge: String?) throws(ControlError) -> OwnedDescriptor

    /// Where the interface of TAP port `descriptor` is now (a user may move it into a container and rename it:
    /// MovedPorts.swift), or nil when this host cannot tell.
    func whereabouts(of descriptor: OwnedDescriptor) -> PortWhereabouts?

    /// A way back into the network namespace with `identity` that a restarted switch can use (a name under
    /// /run/netns, a Docker sandbox's bind mount, a process in it), with the namespace's cookie; nil when none
    /// leads there.
    func findNamespace(_ identity: NamespaceIdentity) -> NamespaceWatch?

    /// Gives interface `ifname` in `namespace` the noqueue root qdisc again (a move between namespaces resets it to
    /// the default); returns why the kernel refused, or nil.
    func settleMovedInterface(_ ifname: String, in namespace: NamespaceWatch) -> String?
}

extension SwitchHost {
    public func openUnderlay(name: String, queues: Int, bridge: String?) throws(ControlError) -> OwnedDescriptor {
        throw ControlError(.invalidParams, "this switch host has no underlay TAPs")
    }

    public func whereabouts(of descriptor: OwnedDescriptor) -> PortWhereabouts? { nil }

    public func findNamespace(_ identity: NamespaceIdentity) -> NamespaceWatch? { nil }

    public func settleMovedInterface(_ ifname: String, in namespace: NamespaceWatch) -> String? { nil }
}

/// Real TAP devices and sockets.
public struct KernelHost: SwitchHost {
    public init() {}

    /// Creates the TAP with a virtio-net header and TCP offloads (checksum, TSO4, TSO6), so the container's TCP
    /// stack hands the switch up to 64 KiB at a time and takes coalesced frames back (docs/offload.md), and with
    /// IFF_MULTI_QUEUE, one queue per worker (TAPQueues.swift; an existing single-queue TAP gets one queue). Its
    /// root queueing discipline is noqueue, set before it goes up: the default would cost about 6.6 MB of kernel
    /// memory per TAP for nothing (VXNetlink's InterfacePlacement.swift says why); a refusal is only reported.
    public func createPort(name: String, mtu: Int, persistent: Bool, queues: Int) throws(ControlError)
        -> OwnedDescriptor
    {
        do throws(IOError) {
            let set = try TAPQueues.open(
                name: name, count: queues, isFlagMismatch: { $0.errno == EINVAL }, discard: { $0.close() }
            ) { name, multiQueue throws(IOError) in
                let tap = try TAPDevice(name: name, options: multiQueue ? [.virtioHeader, .multiQueue] : [.virtioHeader])
                // Per queue: the offload flags are the device's, but TUNSETOFFLOAD is accepted on any queue and
                // setting them on each keeps every descriptor's view the same.
                try tap.setOffloads(.tcp)
                let settled = tap.name
                return (TAPBox(tap), settled)
            }
            let boxes = set.queues
            let (ifindex, kind, qdiscRefusal) = try boxes[0].configure(persistent: persistent, mtu: mtu)
            return OwnedDescriptor(
                fds: boxes.map(\.fd), kind: kind, ifindex: Int(ifindex), qdiscRefusal: qdiscRefusal,
                release: { for box in boxes { box.close() } },
                destroy: {
                    // Clearing persist on one queue is enough: the interface goes with the last descriptor.
                    boxes[0].delete()
                    for box in boxes.dropFirst() { box.close() }
                })
        } catch {
            throw ControlError(.systemError, "cannot create TAP interface \"\(name)\": \(error)", cause: error)
        }
    }

    public func openTunnels(local: UnderlayAddress, udpPort: UInt16, worker: Int) throws(ControlError)
        -> [OwnedDescriptor]
    {
        var sockets: [OwnedDescriptor] = []
        do throws(IOError) {
            // Port 0 would bind each worker's socket to a different kernel-chosen port.
            guard worker == 0 || udpPort != 0 else {
                throw IOError(errno: EINVAL, operation: "bind", hint: "several workers need a fixed VXLAN port")
            }
            sockets.append(
                SocketBox(try TunnelSockets.openUDP(local: local, port: udpPort, reusePort: true)).owned(kind: .udpTunnel))
            // Every raw GRE socket gets a copy of every GRE packet, so only the first worker receives GRE.
            if worker == 0 {
                let gre = try TunnelSockets.openRawGRE(local: local)
                let kind = gre.kind
                sockets.append(SocketBox(gre).owned(kind: kind))
            }
            sockets.append(SocketBox(try TunnelSockets.openRawSender(local: local)).owned(kind: .rawSender))
            // Several sockets, one per group of flows: each pins its UDP source port (docs/offload.md).
            for _ in 0..<TunnelSockets.defaultUDPSenderCount {
                sockets.append(SocketBox(try TunnelSockets.openUDPSender(local: local)).owned(kind: .udpSender))
            }
            return sockets
        } catch {
            for socket in sockets { socket.release() }
            throw ControlError(
                .systemError,
                "cannot open the tunnel sockets of worker \(worker) on \(local) (UDP port \(udpPort)): \(error)"
                    + (local.isIPv4 ? "" : " (is \(local) an address of this host, and IPv6 enabled?)"),
                cause: error)
        }
    }
}

extension KernelHost {
    public func openUnderlay(name: String, queues: Int, bridge: String?) throws(ControlError) -> OwnedDescriptor {
        let boxes: [TAPBox]
        let configured: TAPBox.Configured
        do throws(IOError) {
            let set = try TAPQueues.open(
                name: name, count: queues, isFlagMismatch: { $0.errno == EINVAL }, discard: { $0.close() }
            ) { name, multiQueue throws(IOError) in
                let tap = try TAPDevice(name: name, options: multiQueue ? [.virtioHeader, .multiQueue] : [.virtioHeader])
                try tap.setVirtioHeaderSize(VirtioNetTunnelHeader.size)
                do throws(IOError) {
                    try tap.setOffloads(.underlay)
                } catch {
                    throw IOError(
                        errno: error.errno, operation: error.operation,
                        hint: "this kernel's TAPs lack GSO over UDP tunnels (TUN_F_UDP_TUNNEL_GSO, Linux 6.17+): "
                            + "run without --underlay-tap")
                }
                let settled = tap.name
                return (TAPBox(tap), settled)
            }
            boxes = set.queues
            // 1500: the underlay's frames; the kernel takes the GSO bursts whatever the MTU.
            configured = try boxes[0].configure(persistent: false, mtu: 1500)
        } catch {
            throw ControlError(.systemError, "cannot create the underlay TAP \"\(name)\": \(error)", cause: error)
        }
        if let bridge {
            do throws(NetlinkError) {
                let session = NetlinkSession(socket: try KernelNetlinkSocket())
                try session.setLinkMaster(index: configured.ifindex, master: try session.linkIndex(named: bridge))
            } catch {
                // Closing the queues removes the TAP (not persistent): a failed start leaves nothing behind.
                for box in boxes { box.close() }
                throw ControlError(
                    .systemError,
                    "cannot make the underlay TAP \"\(name)\" a port of bridge \"\(bridge)\": \(error) "
                        + "(--underlay-bridge must name an existing bridge, the one the uplink is in)",
                    cause: error)
            }
        }
        return OwnedDescriptor(
            fds: boxes.map(\.fd), kind: .tap(virtioHeader: true), ifindex: Int(configured.ifindex),
            qdiscRefusal: configured.qdiscRefusal,
            release: { for box in boxes { box.close() } },
            destroy: { for box in boxes { box.close() } })
    }
}

extension KernelHost {
    /// TUNGETIFF for the name and TUNGETDEVNETNS for the namespace, both through the port's first descriptor; EBADFD
    /// from either means the interface was deleted.
    public func whereabouts(of descriptor: OwnedDescriptor) -> PortWhereabouts? {
        guard case .tap = descriptor.kind else { return nil }
        let ifname: String
        let namespaceFD: Int32
        do throws(IOError) {
            ifname = try TAPDevice.currentName(descriptor: descriptor.fd)
            namespaceFD = try TAPDevice.deviceNamespace(descriptor: descriptor.fd)
        } catch {
            return error.errno == EBADFD ? .gone : nil
        }
        // Closed at once: an open namespace descriptor keeps the namespace (and the interface in it) alive.
        defer { close(namespaceFD) }
        guard case .success(let there) = NamespaceSearch.identity(ofDescriptor: namespaceFD),
            case .success(let here) = NamespaceSearch.currentIdentity()
        else { return nil }
        return there == here ? .here(ifname: ifname) : .away(ifname: ifname, namespace: there)
    }

    public func findNamespace(_ identity: NamespaceIdentity) -> NamespaceWatch? {
        guard let locator = NamespaceSearch().locator(for: identity), let namespace = try? NetworkNamespace(locator),
            namespace.identity == identity
        else { return nil }
        return NamespaceWatch(namespace)
    }

    public func settleMovedInterface(_ ifname: String, in watch: NamespaceWatch) -> String? {
        do throws(NetlinkError) {
            let namespace = try NetworkNamespace(watch.locator)
            guard namespace.identity == watch.identity else { return "\(watch.locator) is another namespace now" }
            try namespace.withSession { session throws(NetlinkError) in
                try session.setNoqueue(index: try session.linkIndex(named: ifname))
            }
            return nil
        } catch {
            return "\(error)"
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

    typealias Configured = (ifindex: Int32, kind: PortKind, qdiscRefusal: String?)

    /// Sets persistence, the MTU and the noqueue root discipline, brings the interface up; returns its ifindex, the
    /// port kind, and why the kernel refused noqueue (nil when it did not).
    func configure(persistent: Bool, mtu: Int) throws(IOError) -> Configured {
        try device.withLock { device throws(IOError) -> Configured in
            guard let tap = device.take() else { throw IOError(errno: EBADF, operation: "configure a closed TAP") }
            let outcome: Result<Configured, IOError>
            do throws(IOError) {
                outcome = .success(try Self.configure(tap, persistent: persistent, mtu: mtu))
            } catch {
                outcome = .failure(error)
            }
            device = consume tap
            return try outcome.get()
        }
    }

    private static func configure(_ tap: borrowing TAPDevice, persistent: Bool, mtu: Int) throws(IOError)
        -> Configured
    {
        try tap.setPersistent(persistent)
        try tap.setMTU(mtu)
        let ifindex = try tap.interfaceIndex()
        // Before up, so the default discipline is never built (an existing TAP that is up already loses it here).
        var qdiscRefusal: String? = nil
        do throws(NetlinkError) {
            try NetlinkSession(socket: try KernelNetlinkSocket()).setNoqueue(index: ifindex)
        } catch {
            qdiscRefusal = "\(error)"
        }
        try tap.setUp(true)
        return (ifindex, tap.portKind, qdiscRefusal)
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
