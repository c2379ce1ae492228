// `add-port` ports that were moved into another network namespace by hand.
//
// `add-port` creates a TAP in the switch's own namespace; the README's walkthrough (like pipework and ovs-docker)
// then moves it into a container and renames it. The switch keeps reading it through its descriptor, but its record
// said "tap1, here": a restarted vxswitchd found no tap1, created a new one at home, and the container's interface
// was left with no reader, for good. Now the maintenance thread asks once a second where each such TAP is
// (TUNGETIFF for its name, TUNGETDEVNETNS for its namespace). When it has moved, the switch
//   - finds a path back into that namespace (NamespaceSearch: an `ip netns` name, a Docker sandbox's bind mount, or
//     a process in it) and records it, with the namespace's identity and cookie, in the state file;
//   - gives the interface the noqueue qdisc again (a move resets it to the default, 6.6 MB of kernel memory for a
//     multi-queue TAP: docs/networks-and-attach.md, "Why noqueue");
//   - removes the port once the interface is gone with its namespace (the container stopped), as for `attach`: the
//     kernel deletes the interface, or, for a TAP the switch reopened inside the namespace after a restart (whose
//     descriptors then hold the namespace), nothing but the switch leads there any more.
// A restart reopens the TAP where it was last seen, as `attach`'s ports are reopened (restoreAttachedPort).

import VXControl
import VXForwarding
import VXIO
import VXNetlink
import VXPacket

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where a port's TAP interface is now, as the host sees it.
public enum PortWhereabouts: Hashable, Sendable {
    /// In the switch's own network namespace, named `ifname`.
    case here(ifname: String)
    /// In another network namespace, named `ifname` there.
    case away(ifname: String, namespace: NamespaceIdentity)
    /// Deleted (`ip link del`, or its namespace went away with the container).
    case gone
}

/// Where an `add-port` port's interface was last seen, when that is not "in the switch's namespace under the port's
/// own name".
struct MovedPort: Equatable, Sendable {
    /// Its name there.
    var ifname: String
    /// Its namespace, or nil for the switch's own (renamed at home).
    var namespace: NamespaceIdentity?
    /// How a restarted switch gets back into `namespace`; nil when nothing led there when the move was seen.
    var watch: NamespaceWatch?
}

extension SwitchDaemon {
    /// Follows `add-port` ports that users move between namespaces (maintenance thread, once a second). See the
    /// file comment.
    func trackMovedPorts() {
        movedPortPass.withLock { _ in trackMovedPortsOnce() }
    }

    private func trackMovedPortsOnce() {
        // The host is asked outside the state lock (a namespace search reads /proc); the lock is taken again to
        // record what changed, for the same port (not removed and re-added meanwhile).
        let plain = state.withLock { state in
            state.ports.compactMap { name, port in
                port.attachment == nil ? (name, port.id, port.descriptor, port.moved) : nil
            }
        }
        for (name, id, descriptor, last) in plain {
            guard let now = host.whereabouts(of: descriptor) else { continue }
            let next: MovedPort?
            switch now {
            case .gone:
                // A port still at home that was deleted is a port failure (PortFailures.swift): the user deleted
                // what the switch created. One that was moved away went with its container.
                guard let last, last.namespace != nil else { continue }
                removeMovedPort(named: name, id: id, last: last)
                continue
            case .here(let ifname):
                next = ifname == name ? nil : MovedPort(ifname: ifname, namespace: nil, watch: nil)
            case .away(let ifname, let identity):
                if let last, last.namespace == identity {
                    var watch = last.watch
                    if let current = watch, case .gone = current.status() {
                        // The name or process that led there is gone. A TAP the switch reopened inside the
                        // namespace (after a restart) holds the namespace itself, so the interface does not go with
                        // it; if nothing else leads there any more, only the switch keeps the container's network
                        // alive, and the container is gone.
                        watch = host.findNamespace(identity)
                        if watch == nil {
                            removeMovedPort(named: name, id: id, last: last)
                            continue
                        }
                    }
                    next = MovedPort(ifname: ifname, namespace: identity, watch: watch)
                } else {
                    let watch = host.findNamespace(identity)
                    if let watch {
                        if let refusal = host.settleMovedInterface(ifname, in: watch) {
                            logQdiscRefusal(refusal, interface: "\(ifname) in \(watch.locator)")
                        }
                    } else {
                        logger.warning(
                            "port \(name) moved to namespace \(identity) as \(ifname), but no name under /run/netns, bind mount under /run/docker/netns or process leads there: a restarted vxswitchd will not find it")
                    }
                    next = MovedPort(ifname: ifname, namespace: identity, watch: watch)
                }
            }
            guard next != last else { continue }
            state.withLock { state in
                guard state.ports[name]?.id == id else { return }
                let previous = state
                state.ports[name]?.moved = next
                do throws(ControlError) {
                    try save(state)
                } catch {
                    state = previous
                    logger.error("port \(name) moved, but the state file could not record it: \(error.message)")
                    return
                }
                logger.info("port \(name) is \(Self.describe(next, port: name))")
            }
        }
    }

    /// Removes a moved port whose interface went away with its namespace. Maintenance thread.
    private func removeMovedPort(named name: String, id: PortID, last: MovedPort) {
        state.withLock { state in
            guard state.ports[name]?.id == id else { return }
            do throws(ControlError) {
                try removePort(named: name, state: &state)
                logger.notice("port \(name) (\(Self.describe(last, port: name))) is gone with its namespace: removed")
            } catch {
                logger.error("port \(name) is gone with its namespace, but removing it failed: \(error.message)")
            }
        }
    }

    /// `show`'s `location`: where the port's interface is, when not at home under the port's name.
    static func location(of port: PortState) -> String? {
        if let attachment = port.attachment { return "\(attachment.ifname) in \(attachment.namespace)" }
        return port.moved.map { describe($0, port: "") }
    }

    static func describe(_ moved: MovedPort?, port name: String) -> String {
        guard let moved else { return "\(name) in the switch's namespace" }
        guard moved.namespace != nil else { return "\(moved.ifname) in the switch's namespace" }
        return "\(moved.ifname) in \(moved.watch.map { "\($0.locator)" } ?? "an unnamed namespace")"
    }

    // MARK: Persistence

    static func persisted(_ moved: MovedPort) -> PersistedMove {
        var record = PersistedMove(ifname: moved.ifname)
        if let identity = moved.namespace {
            record.namespaceDevice = identity.device
            record.namespaceInode = identity.inode
        }
        if let watch = moved.watch {
            (record.namespaceName, record.namespacePID, record.namespacePath) = persistedFields(watch.locator)
            record.namespaceCookie = watch.cookie
        }
        return record
    }

    /// Reopens a moved `add-port` port where it was last seen: in the recorded namespace if its locator still leads
    /// there (else wherever a new search finds that namespace, say a process that replaced the recorded one), under
    /// its name there. Throws when the namespace or the interface is gone; the restore then drops the port.
    func restoreMovedPort(_ saved: PersistedPort, vni: VNI, moved record: PersistedMove) throws(ControlError) {
        var moved = MovedPort(ifname: record.ifname, namespace: nil, watch: nil)
        // Renamed in the switch's own namespace: this thread's.
        var locator = NamespaceLocator.path("/proc/thread-self/ns/net")
        if let device = record.namespaceDevice, let inode = record.namespaceInode {
            let identity = NamespaceIdentity(device: device, inode: inode)
            let recorded = Self.locator(
                name: record.namespaceName, pid: record.namespacePID, path: record.namespacePath)
            let watch = recorded.map { NamespaceWatch(locator: $0, identity: identity, cookie: record.namespaceCookie) }
            // Else a new search (the recorded process exited); the cookie tells a namespace that reused the inode.
            var alive = watch?.isAlive == true ? watch : host.findNamespace(identity)
            if let found = alive, let cookie = record.namespaceCookie, found.cookie != cookie { alive = nil }
            guard let alive else {
                throw ControlError(
                    .notFound, "\(record.ifname) was in \(recorded.map { "\($0)" } ?? "namespace \(identity)"), which is gone")
            }
            moved.namespace = identity
            moved.watch = alive
            locator = alive.locator
        }
        let descriptor = try reopenTAP(named: record.ifname, in: locator)
        try state.withLock { state throws(ControlError) in
            try installPort(
                name: saved.name, vni: vni, mtu: saved.mtu, descriptor: descriptor, network: nil, attachment: nil,
                persist: false, state: &state)
            state.ports[saved.name]?.moved = moved
        }
        logger.info("re-attached port \(saved.name) (\(Self.describe(moved, port: saved.name)))")
    }

    /// Opens the queues of existing TAP `ifname` inside the namespace `locator` leads to, with the virtio header
    /// and offloads a port needs.
    func reopenTAP(named ifname: String, in locator: NamespaceLocator) throws(ControlError) -> OwnedDescriptor {
        let namespace: NetworkNamespace
        do {
            namespace = try NetworkNamespace(locator)
        } catch {
            throw ControlError(.notFound, "\(locator): \(error)")
        }
        let exists = (try? namespace.withSession { session throws(NetlinkError) in
            try Self.linkIndex(named: ifname, in: session)
        }) ?? nil
        guard let ifindex = exists else {
            throw ControlError(.notFound, "\(ifname) no longer exists in \(locator)")
        }
        let fds: [Int32]
        do {
            fds = try Self.openTAPQueues(named: ifname, in: namespace, count: workers.count).queues
        } catch {
            throw ControlError(.systemError, "cannot reopen \(ifname) in \(locator): \(error)")
        }
        do {
            for fd in fds { try TAPDevice.enableVirtioOffloads(descriptor: fd) }
        } catch {
            for fd in fds { close(fd) }  // the TAP is persistent: closing only lets go of it
            throw ControlError(.systemError, "cannot set up offloads on \(ifname) in \(locator): \(error)")
        }
        return Self.ownedTAP(fds: fds, ifindex: Int(ifindex))
    }
}
