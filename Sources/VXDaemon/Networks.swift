// Networks, container attachments, leases and the built-in DHCP server.
//
// A network is a VNI plus an IPv4 subnet, this host's share of it (the range), an optional gateway and an optional
// DHCP server. `attach` does what `ovs-docker add-port` / `pipework` do by hand: it creates a TAP port directly
// inside the container's network namespace (a helper thread setns()es, so no interface move is needed — the move
// is the slow part, 12-40 ms here), names it, sets MAC, MTU, address and default route over rtnetlink, and
// registers it with the switch. Addresses come from the network's lease table, which `--ip auto`, static
// addresses and the DHCP server share, so no two containers get one address.
//
// Threads: everything here runs on the control thread under the daemon's state lock, except `runPuntService`,
// which answers punted DHCP and ARP frames on its own thread (taking the lock per frame), and
// `checkAttachedNamespaces`, which the maintenance thread calls once a second.

import Dispatch
import Foundation
import Logging
import VXControl
import VXDHCP
import VXDataplane
import VXDocker
import VXForwarding
import VXIO
import VXNetlink
import VXPacket

/// A network as configured.
struct NetworkState {
    var name: String
    var vni: VNI
    var subnet: IPv4Subnet
    var range: ClosedRange<IPv4Address>
    var gateway: IPv4Address?
    /// Where the network's one lease table lives: in its DHCP server (`--dhcp`), or on its own.
    var addresses: Addresses

    enum Addresses {
        case leases(LeaseTable)
        case dhcp(DHCPServer)
    }

    /// The DHCP server, if the network has one.
    var dhcp: DHCPServer? {
        get {
            if case .dhcp(let server) = addresses { return server }
            return nil
        }
        set { if let newValue { addresses = .dhcp(newValue) } }
    }

    /// The network's lease table, wherever it lives.
    var leases: LeaseTable {
        get {
            switch addresses {
            case .leases(let table): table
            case .dhcp(let server): server.leases
            }
        }
        set {
            switch addresses {
            case .leases: addresses = .leases(newValue)
            case .dhcp(var server):
                server.leases = newValue
                addresses = .dhcp(server)
            }
        }
    }

    /// The address the switch answers ARP for: the DHCP server identifier when no gateway owns it.
    var switchOwnedAddress: IPv4Address? {
        guard let dhcp, gateway == nil else { return nil }
        return dhcp.configuration.serverIdentifier
    }
}

/// Where an attached port's interface lives.
struct AttachmentState {
    var container: VXControl.ContainerReference
    var namespace: NamespaceLocator
    var watch: NamespaceWatch
    var ifname: String
    var address: InterfaceAddress?
    var mac: MACAddress
    var gateway: IPv4Address?
}

extension SwitchDaemon {
    /// Wall-clock seconds for lease times (leases are persisted, so a monotonic clock would not do).
    static var now: LeaseInstant { LeaseInstant(seconds: Int64(Date().timeIntervalSince1970)) }

    // MARK: Networks

    /// `network create`.
    func createNetwork(
        named name: String, vni: VNI, subnet: IPv4Subnet, range: ClosedRange<IPv4Address>?, gateway: IPv4Address?,
        dhcp: Bool
    ) throws(ControlError) -> NetworkInfo {
        try state.withLock { state throws(ControlError) -> NetworkInfo in
            try requireRunning(state)
            guard state.networks[name] == nil else { throw ControlError(.alreadyExists, "network \"\(name)\" already exists") }
            if let other = state.networks.values.first(where: { $0.vni == vni }) {
                throw ControlError(.alreadyExists, "VNI \(vni) already belongs to network \"\(other.name)\"")
            }
            let network = try Self.makeNetwork(
                name: name, vni: vni, subnet: subnet, range: range, gateway: gateway, dhcp: dhcp,
                serverMAC: serverMAC(for: name))
            var next = state
            next.networks[name] = network
            try save(next)
            state = next
            logger.info("network \(name) created: VNI \(vni), \(subnet), range \(network.range.lowerBound)-\(network.range.upperBound)\(dhcp ? ", DHCP" : "")")
            return try info(of: network, in: state)
        }
    }

    static func makeNetwork(
        name: String, vni: VNI, subnet: IPv4Subnet, range: ClosedRange<IPv4Address>?, gateway: IPv4Address?,
        dhcp: Bool, serverMAC: MACAddress, leases: LeaseTable? = nil
    ) throws(ControlError) -> NetworkState {
        guard subnet.prefixLength <= 30 else {
            throw ControlError(.invalidArgument, "subnet \(subnet) is too small: a network needs at least a /30")
        }
        if let gateway, !subnet.containsHost(gateway) {
            throw ControlError(.invalidArgument, "gateway \(gateway) is not a host address of \(subnet)")
        }
        let whole = IPv4Address(value: subnet.network.value + 1)...IPv4Address(value: subnet.broadcast.value - 1)
        let effective = range ?? whole
        guard subnet.containsHost(effective.lowerBound), subnet.containsHost(effective.upperBound) else {
            throw ControlError(
                .invalidArgument, "range \(effective.lowerBound)-\(effective.upperBound) is not inside \(subnet)")
        }
        let excluded = gateway.map { [$0] } ?? []
        do {
            let addresses: NetworkState.Addresses
            if dhcp {
                let configuration = try DHCPServerConfiguration(
                    subnet: subnet, range: effective, gateway: gateway, serverMAC: serverMAC)
                addresses = .dhcp(
                    try leases.map { try DHCPServer(configuration: configuration, leases: $0) }
                        ?? DHCPServer(configuration: configuration))
            } else {
                addresses = .leases(try leases ?? LeaseTable(subnet: subnet, range: effective, excluding: excluded))
            }
            return NetworkState(
                name: name, vni: vni, subnet: subnet, range: effective, gateway: gateway, addresses: addresses)
        } catch {
            throw ControlError(.invalidArgument, "network \(name): \(error)")
        }
    }

    /// `network ls`.
    func networkInfos() throws(ControlError) -> [NetworkInfo] {
        try state.withLock { state throws(ControlError) -> [NetworkInfo] in
            var infos: [NetworkInfo] = []
            for network in state.networks.values.sorted(by: { $0.name < $1.name }) {
                infos.append(try info(of: network, in: state))
            }
            return infos
        }
    }

    /// `network rm`: refused while ports use the network.
    func removeNetwork(named name: String) throws(ControlError) {
        try state.withLock { state throws(ControlError) in
            try requireRunning(state)
            guard state.networks[name] != nil else { throw ControlError(.notFound, "no network named \"\(name)\"") }
            let users = state.ports.filter { $0.value.network == name }.keys.sorted()
            guard users.isEmpty else {
                throw ControlError(
                    .resourceBusy, "network \"\(name)\" is in use by port(s) \(users.joined(separator: ", ")); detach them first")
            }
            var next = state
            let vni = next.networks.removeValue(forKey: name)!.vni
            try save(next)
            state = next
            releaseDomainIfUnused(vni, in: &state)
            publish(state)
            logger.info("network \(name) removed")
        }
    }

    /// A network as `network-create` and `network-ls` report it.
    func info(of network: NetworkState, in state: State) throws(ControlError) -> NetworkInfo {
        let now = Self.now
        return NetworkInfo(
            name: network.name, vni: network.vni,
            subnet: try IPv4CIDR(address: network.subnet.network, prefixLength: network.subnet.prefixLength),
            range: try IPv4Range(first: network.range.lowerBound, last: network.range.upperBound),
            gateway: network.gateway, dhcp: network.dhcp != nil,
            ports: state.ports.filter { $0.value.network == network.name }.keys.sorted().map(interfaceName),
            leases: network.leases.leases.filter { $0.isActive(at: now) }.count)
    }

    /// A stable, locally administered MAC for a network's DHCP server (the same across restarts).
    func serverMAC(for network: String) -> MACAddress {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(network)/\(options.local)".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        // Locally administered (bit 1 of the first octet), unicast (bit 0 clear).
        return MACAddress(raw: (hash & 0xFEFF_FFFF_FFFF) | 0x0200_0000_0000)
    }

    // MARK: Attach and detach

    /// `attach`: a new port in `network`'s VNI whose interface is `ifname` inside the container.
    ///
    /// Three steps, so the netlink work runs outside the state lock: (1) under the lock, check the request and
    /// reserve the address; (2) create and configure the interface in the container; (3) under the lock, install
    /// the port and save — or, if anything failed, give the address back.
    func attachContainer(
        network networkName: String, container: VXControl.ContainerReference, ifname: String, address: VXControl.AttachAddress?,
        mac: MACAddress?, mtu: Int?, gateway: IPv4Address?
    ) throws(ControlError) -> AttachmentInfo {
        let locator = try resolve(container)
        let namespace: NetworkNamespace
        do {
            namespace = try NetworkNamespace(locator)
        } catch {
            throw ControlError(.notFound, "cannot find the network namespace of \(container): \(error.detail ?? "\(error)")")
        }
        if let mtu { try checkMTU(mtu) }
        let watch = NamespaceWatch(namespace)
        let portName = Self.portName(identity: watch.identity, ifname: ifname)
        let owner = LeaseOwner.named(portName)

        // 1. Check and reserve.
        let reservation = try state.withLock {
            state throws(ControlError) -> (VNI, InterfaceAddress?, IPv4Address?, Int) in
            try requireRunning(state)
            guard var network = state.networks[networkName] else {
                throw ControlError(.notFound, "no network named \"\(networkName)\"")
            }
            guard state.ports[portName] == nil else {
                throw ControlError(.alreadyExists, "\(container) already has \(ifname) from this switch (port \(portName))")
            }
            var interfaceAddress: InterfaceAddress? = nil
            switch address {
            case nil:
                break
            case .auto:
                switch network.leases.allocate(for: owner, now: Self.now) {
                case .success(let ip):
                    interfaceAddress = InterfaceAddress(address: ip, prefixLength: UInt8(network.subnet.prefixLength))
                case .failure(let error):
                    throw ControlError(.resourceBusy, "network \(networkName) has no free address: \(error)")
                }
            case .address(let cidr):
                let (ip, prefixLength) = (cidr.address, cidr.prefixLength)
                guard network.subnet.containsHost(ip), prefixLength == network.subnet.prefixLength else {
                    throw ControlError(
                        .invalidArgument,
                        "\(ip)/\(prefixLength) is not a host address of network \(networkName) (\(network.subnet))")
                }
                if case .failure(let error) = network.leases.reserve(ip, for: owner, now: Self.now) {
                    throw ControlError(.alreadyExists, "\(ip) cannot be assigned in \(networkName): \(error)")
                }
                interfaceAddress = InterfaceAddress(address: ip, prefixLength: UInt8(prefixLength))
            }
            state.networks[networkName] = network
            // A container has one default route: the network's gateway is installed with its first interface from
            // this switch only (an explicit --gateway is always honoured, and fails clearly if one exists).
            let alreadyAttached = state.ports.values.contains { $0.attachment?.watch.identity == watch.identity }
            let networkGateway = interfaceAddress != nil && !alreadyAttached ? network.gateway : nil
            // The same default as add-port: what every peer of the VNI carries.
            return (network.vni, interfaceAddress, gateway ?? networkGateway, mtu ?? defaultMTU(for: network.vni, in: state))
        }
        let (vni, interfaceAddress, effectiveGateway, effectiveMTU) = reservation
        let chosenMAC = mac ?? Self.randomMAC()
        let releaseReservation = { [self] in
            state.withLock { state in _ = state.networks[networkName]?.leases.release(owner) }
        }

        // 2. Create the TAP inside the namespace (no interface move: the move is the slow part), configure it, and
        //    only then make it persistent, so a failure leaves nothing behind when the descriptor closes.
        let placedIndex: Int32
        let fds: [Int32]
        do throws(ControlError) {
            let existing: Int32?
            do {
                existing = try namespace.withSession { session throws(NetlinkError) in
                    try Self.linkIndex(named: ifname, in: session)
                }
            } catch {
                throw ControlError(.systemError, "cannot look at the interfaces of \(container): \(error)")
            }
            guard existing == nil else {
                throw ControlError(.alreadyExists, "interface name \"\(ifname)\" is already taken in \(container)")
            }
            do {
                fds = try Self.openTAPQueues(named: ifname, in: namespace, count: workers.count).queues
            } catch {
                throw ControlError(.systemError, "cannot create \(ifname) in \(container): \(error)")
            }
            let configuration = PlacementConfiguration(
                name: ifname, mac: chosenMAC, mtu: UInt32(effectiveMTU), address: interfaceAddress,
                gateway: effectiveGateway)
            do {
                let placed = try InterfacePlacement.configure(
                    interface: ifname, in: namespace, configuration: configuration)
                placedIndex = placed.index
                logQdiscRefusal(placed.qdiscRefusal.map { "\($0)" }, interface: "\(ifname) in \(container)")
                for fd in fds { try TAPDevice.enableVirtioOffloads(descriptor: fd) }
                try TAPDevice.setPersistent(descriptor: fds[0], store != nil)
            } catch {
                for fd in fds { close(fd) }  // not persistent yet: closing the last queue removes the interface
                throw ControlError(.systemError, "cannot configure \(ifname) in \(container): \(error)")
            }
        } catch {
            releaseReservation()
            throw error
        }

        // 3. Install.
        let attachment = AttachmentState(
            container: container, namespace: locator, watch: watch, ifname: ifname, address: interfaceAddress,
            mac: chosenMAC, gateway: effectiveGateway)
        let descriptor = Self.ownedTAP(fds: fds, ifindex: Int(placedIndex))
        return try state.withLock { state throws(ControlError) -> AttachmentInfo in
            do throws(ControlError) {
                try requireRunning(state)
                try installPort(
                    name: portName, vni: vni, mtu: effectiveMTU, descriptor: descriptor, network: networkName,
                    attachment: attachment, persist: true, state: &state)
            } catch {
                descriptor.destroy()
                _ = state.networks[networkName]?.leases.release(owner)
                throw error
            }
            logger.info(
                "attached \(ifname) (port \(portName)) to \(networkName) in \(container): \(interfaceAddress?.description ?? "no address"), mac \(chosenMAC)")
            return attachmentInfo(port: portName, in: state)!
        }
    }

    /// `detach`: removes the ports this switch attached to `container` (only `ifname`, if given).
    func detachContainer(_ container: VXControl.ContainerReference, ifname: String?) throws(ControlError) -> [AttachmentInfo] {
        // The namespace may already be gone; then match the reference as the user gave it at attach time.
        var identity: NamespaceIdentity? = nil
        if let locator = try? resolve(container), let namespace = try? NetworkNamespace(locator) {
            identity = namespace.identity
        }
        return try state.withLock { state throws(ControlError) -> [AttachmentInfo] in
            try requireRunning(state)
            let matching = state.ports.filter { _, port in
                guard let attachment = port.attachment else { return false }
                let sameContainer = attachment.container == container || attachment.watch.identity == identity
                return sameContainer && (ifname == nil || attachment.ifname == ifname)
            }.keys.sorted()
            guard !matching.isEmpty else {
                throw ControlError(
                    .notFound, "\(container) has no interface\(ifname.map { " \($0)" } ?? "") attached by this switch")
            }
            var removed: [AttachmentInfo] = []
            for name in matching {
                if let info = attachmentInfo(port: name, in: state) { removed.append(info) }
                try removePort(named: name, state: &state)
            }
            return removed
        }
    }

    /// `leases`.
    func leaseInfos(network: String?) throws(ControlError) -> [LeaseInfo] {
        try state.withLock { state throws(ControlError) -> [LeaseInfo] in
            if let network, state.networks[network] == nil { throw ControlError(.notFound, "no network named \"\(network)\"") }
            let now = Self.now
            return state.networks.values.filter { network == nil || $0.name == network }.flatMap { net in
                net.leases.leases.filter { $0.isActive(at: now) }.map { lease in
                    LeaseInfo(
                        network: net.name, ip: lease.address, owner: Self.ownerText(lease.owner),
                        kind: lease.expires != nil ? .dhcp : .static, expires: lease.expires.map { Int($0.seconds) })
                }
            }.sorted { ($0.network, $0.ip) < ($1.network, $1.ip) }
        }
    }

    /// The index of interface `name`, or nil when the namespace has none (the kernel answers ENODEV).
    static func linkIndex(named name: String, in session: NetlinkSession) throws(NetlinkError) -> Int32? {
        do {
            return try session.linkIndex(named: name)
        } catch {
            if error.errno?.rawValue == ENODEV { return nil }
            throw error
        }
    }

    static func ownerText(_ owner: LeaseOwner) -> String {
        switch owner {
        case .named(let name): name
        case .hardwareAddress(let mac): mac.description
        case .clientIdentifier: owner.description
        }
    }

    /// An attached port as `attach` and `detach` report it, or nil when `name` is not an attached port.
    func attachmentInfo(port name: String, in state: State) -> AttachmentInfo? {
        guard let port = state.ports[name], let attachment = port.attachment, let network = port.network else { return nil }
        return AttachmentInfo(
            port: interfaceName(name), network: network, vni: port.vni, container: attachment.container,
            namespace: attachment.namespace.path, ifname: interfaceName(attachment.ifname),
            ip: attachment.address?.description, mac: attachment.mac, mtu: port.mtu, gateway: attachment.gateway)
    }

    /// Resolves what the user named to a namespace locator (asking the Docker engine for a container's PID).
    func resolve(_ container: VXControl.ContainerReference) throws(ControlError) -> NamespaceLocator {
        switch container {
        case .netns(let name):
            // Checked when the request was decoded (ControlValidation.namespaceName).
            return .name(name)
        case .pid(let pid):
            guard pid > 0 else { throw ControlError(.invalidArgument, "\(pid) is not a process id") }
            return .pid(pid)
        case .docker(let reference):
            do throws(DockerError) {
                let info = try DockerEngineClient(socketPath: options.dockerSocket).inspectContainer(reference)
                return .pid(info.pid)
            } catch {
                // Not `unavailable`: that code is the client's own "cannot reach vxswitchd" (vxctl exits 69 for
                // it), so a stopped container or an unreachable engine looked like a dead switch.
                switch error.code {
                case .notFound, .notRunning: throw ControlError(.notFound, error.message)
                case .invalidReference: throw ControlError(.invalidArgument, error.message)
                default: throw ControlError(.systemError, error.message, cause: error.cause)
                }
            }
        }
    }

    /// The switch's name for an attached port: short enough for an interface name, stable for a namespace and
    /// interface (so a restart finds the same port).
    static func portName(identity: NamespaceIdentity, ifname: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(identity.device):\(identity.inode):\(ifname)".utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash & 0xFFFF_FFFF, radix: 16)
        return "vx" + String(repeating: "0", count: 8 - hex.count) + hex
    }

    static func randomMAC() -> MACAddress {
        MACAddress(raw: (UInt64.random(in: 0...0xFFFF_FFFF_FFFF) & 0xFEFF_FFFF_FFFF) | 0x0200_0000_0000)
    }

    /// An owned TAP (its queues opened with a virtio header and offloads): `release` closes them (a persistent
    /// TAP stays), `destroy` clears persist first, so the interface goes with the last queue.
    static func ownedTAP(fds: [Int32], ifindex: Int?) -> OwnedDescriptor {
        OwnedDescriptor(
            fds: fds, kind: .tap(virtioHeader: true), ifindex: ifindex,
            release: { for fd in fds { close(fd) } },
            destroy: {
                try? TAPDevice.setPersistent(descriptor: fds[0], false)
                for fd in fds { close(fd) }
            })
    }

    /// Opens `count` queues of TAP `name` inside `namespace` (creating it multi-queue), with a virtio header; one
    /// queue when the TAP exists without IFF_MULTI_QUEUE (TAPQueues.swift).
    static func openTAPQueues(named name: String, in namespace: borrowing NetworkNamespace, count: Int) throws(NetlinkError)
        -> TAPQueueSet<Int32>
    {
        try TAPQueues.open(
            name: name, count: count, isFlagMismatch: { $0.errno?.rawValue == EINVAL }, discard: { close($0) }
        ) { name, multiQueue throws(NetlinkError) in
            let opened = try namespace.createTAP(named: name, virtioHeader: true, multiQueue: multiQueue)
            return (opened.fileDescriptor.rawValue, opened.name)
        }
    }

    // MARK: The punt service (DHCP and ARP for the switch)

    /// Answers punted frames until the daemon stops. Runs on its own thread.
    func runPuntService() {
        // Every worker pushes into the same queue (see init).
        guard let queue = worker.punt else { return }
        while !stopMaintenance.load(ordering: .relaxed) {
            _ = puntSignal.wait(timeout: .now() + .milliseconds(500))
            for frame in queue.drain() { answer(frame) }
        }
    }

    private func answer(_ punted: PuntedFrame) {
        guard let puntedPort = punted.port else {
            answerUnderlay(punted)
            return
        }
        let reply: [UInt8]? = state.withLock { state -> [UInt8]? in
            guard let (name, port) = state.ports.first(where: { $0.value.id == puntedPort }),
                let networkName = port.network, var network = state.networks[networkName]
            else { return nil }
            let before = network.leases
            var reply: [UInt8]? = nil
            if var server = network.dhcp {
                let outcome = punted.bytes.withUnsafeBytes { raw in
                    server.handle(frame: RawSpan(_unsafeBytes: raw), now: Self.now)
                }
                network.dhcp = server
                switch outcome {
                case .reply(let answer): reply = answer.frame
                case .dropped(let reason): logger.debug("DHCP from port \(name) dropped: \(reason)")
                case .accepted, .notDHCP: break
                }
            }
            if reply == nil, let address = network.switchOwnedAddress {
                reply = Self.arpReply(to: punted.bytes, for: address, mac: network.dhcp!.configuration.serverMAC)
            }
            state.networks[networkName] = network
            if network.leases != before {
                do throws(ControlError) { try save(state) } catch { logger.error("cannot save leases: \(error.message)") }
            }
            return reply
        }
        if let reply {
            // Worker 0 sends it: it has the port attached (its own queue, or the shared one), like every worker.
            worker.mailbox.post(.transmitFrame(puntedPort, bytes: reply)) { _ in }
        }
    }

    /// The ARP reply to `request` when it asks for `address`.
    static func arpReply(to request: [UInt8], for address: IPv4Address, mac: MACAddress) -> [UInt8]? {
        request.withUnsafeBytes { raw -> [UInt8]? in
            let frame = RawSpan(_unsafeBytes: raw)
            guard case .success(let ethernet) = EthernetHeader.parse(frame),
                case .success(let arp) = ARPPacket.parse(frame.extracting(ethernet.length..<frame.byteCount)),
                arp.operation == ARPPacket.request, arp.targetIP == address
            else { return nil }
            let answer = ARPPacket(
                operation: ARPPacket.reply, senderMAC: mac, senderIP: address, targetMAC: arp.senderMAC,
                targetIP: arp.senderIP)
            return answer.ethernetFrame(to: arp.senderMAC, vlan: ethernet.vlan)
        }
    }

    /// Punt rules for the worker config: ports of DHCP networks.
    func puntRules(_ state: State) -> [PortID: PuntRule] {
        var rules: [PortID: PuntRule] = [:]
        for port in state.ports.values {
            guard let name = port.network, let network = state.networks[name], network.dhcp != nil else { continue }
            rules[port.id] = PuntRule(dhcp: true, arpTarget: network.switchOwnedAddress)
        }
        return rules
    }

    // MARK: Containers that went away

    /// Removes ports whose container namespace is gone (maintenance thread, once a second).
    func checkAttachedNamespaces() {
        // Checked outside the state lock: a watch with a cookie opens the namespace on a helper thread, and control
        // requests and DHCP answers must not wait for that once per port every second.
        let watched = state.withLock { state in
            state.ports.compactMap { name, port in port.attachment.map { (name, $0.watch, $0.container) } }
        }
        let gone = watched.compactMap { name, watch, container -> (String, NamespaceIdentity, String)? in
            guard case .gone(let reason) = watch.status() else { return nil }
            return (name, watch.identity, "\(container) is gone (\(reason))")
        }
        for (name, identity, why) in gone {
            state.withLock { state in
                // Still the same attachment (not detached and re-attached while we looked).
                guard state.ports[name]?.attachment?.watch.identity == identity else { return }
                do throws(ControlError) {
                    let info = attachmentInfo(port: name, in: state)
                    try removePort(named: name, state: &state)
                    logger.notice(
                        "\(why): removed port \(name) (\(info.map { "\($0.ifname)" } ?? "?"))\(info?.ip.map { " and its lease \($0)" } ?? "")")
                } catch {
                    logger.error("\(why), but removing port \(name) failed: \(error.message)")
                }
            }
        }
    }
}


// MARK: Persistence of networks and attachments

extension SwitchDaemon {
    /// A namespace locator as the state file keeps it: one of a name under /run/netns, a pid, or another path.
    static func persistedFields(_ locator: NamespaceLocator) -> (name: String?, pid: Int32?, path: String?) {
        switch locator {
        case .name(let name): (name, nil, nil)
        case .pid(let pid): (nil, pid, nil)
        case .path(let path): (nil, nil, path)
        }
    }

    /// The locator `persistedFields` saved, or nil when none was.
    static func locator(name: String?, pid: Int32?, path: String?) -> NamespaceLocator? {
        name.map { .name($0) } ?? pid.map { .pid($0) } ?? path.map { .path($0) }
    }

    static func persisted(_ attachment: AttachmentState) -> PersistedAttachment {
        let (kind, value): (String, String)
        switch attachment.container {
        case .netns(let name): (kind, value) = ("netns", name)
        case .pid(let pid): (kind, value) = ("pid", String(pid))
        case .docker(let reference): (kind, value) = ("docker", reference)
        }
        // `attach` resolves every container to a name or a pid (`resolve`), never to another path.
        let (name, pid, _) = persistedFields(attachment.namespace)
        return PersistedAttachment(
            containerKind: kind, containerValue: value, namespaceName: name, namespacePID: pid,
            namespaceDevice: attachment.watch.identity.device, namespaceInode: attachment.watch.identity.inode,
            namespaceCookie: attachment.watch.cookie, ifname: attachment.ifname,
            address: attachment.address?.description, mac: attachment.mac.description,
            gateway: attachment.gateway?.description)
    }

    func restoreNetwork(_ saved: PersistedNetwork) throws(ControlError) {
        guard let vni = VNI(saved.vni), let subnet = IPv4Subnet(saved.subnet), let first = IPv4Address(saved.rangeFirst),
            let last = IPv4Address(saved.rangeLast), first <= last
        else { throw ControlError(.invalidArgument, "malformed network record") }
        let gateway = saved.gateway.flatMap { IPv4Address($0) }
        let network = try Self.makeNetwork(
            name: saved.name, vni: vni, subnet: subnet, range: first...last, gateway: gateway, dhcp: saved.dhcp,
            serverMAC: serverMAC(for: saved.name), leases: saved.leases)
        state.withLock { $0.networks[saved.name] = network }
    }

    /// Re-attaches to an attached port's persistent TAP inside its container's namespace, if that namespace is
    /// still the one the port was attached to; otherwise the port is dropped (the container went away while
    /// vxswitchd was down) and its lease released by the save at the end of the restore.
    func restoreAttachedPort(
        _ saved: PersistedPort, vni: VNI, network: String, attachment saved_: PersistedAttachment
    ) throws(ControlError) {
        guard let locator = Self.locator(name: saved_.namespaceName, pid: saved_.namespacePID, path: nil) else {
            throw ControlError(.invalidArgument, "attachment without a namespace")
        }
        let watch = NamespaceWatch(
            locator: locator, identity: NamespaceIdentity(device: saved_.namespaceDevice, inode: saved_.namespaceInode),
            cookie: saved_.namespaceCookie)
        guard case .alive = watch.status() else {
            throw ControlError(.notFound, "\(locator) is gone; dropping the port and its lease")
        }
        let descriptor = try reopenTAP(named: saved_.ifname, in: locator)
        let container: VXControl.ContainerReference
        switch saved_.containerKind {
        case "pid": container = .pid(Int32(saved_.containerValue) ?? 0)
        case "docker": container = .docker(saved_.containerValue)
        default: container = .netns(saved_.containerValue)
        }
        let attachment = AttachmentState(
            container: container, namespace: locator, watch: watch, ifname: saved_.ifname,
            address: saved_.address.flatMap { InterfaceAddress($0) },
            mac: MACAddress(saved_.mac) ?? Self.randomMAC(), gateway: saved_.gateway.flatMap { IPv4Address($0) })
        try state.withLock { state throws(ControlError) in
            try installPort(
                name: saved.name, vni: vni, mtu: saved.mtu, descriptor: descriptor, network: network,
                attachment: attachment, persist: false, state: &state)
        }
        logger.info("re-attached port \(saved.name) (\(saved_.ifname) in \(locator))")
    }
}

// MARK: NetworkControlService: the control methods over the functions above

extension SwitchDaemon: NetworkControlService {
    public func createNetwork(_ params: NetworkCreateParams) async throws(ControlError) -> NetworkInfo {
        guard let subnet = IPv4Subnet(params.subnet.address, prefixLength: params.subnet.prefixLength) else {
            throw ControlError(.invalidArgument, "\(params.subnet) is not a subnet")
        }
        return try createNetwork(
            named: params.name, vni: params.vni, subnet: subnet, range: params.range?.addresses,
            gateway: params.gateway, dhcp: params.dhcp)
    }

    public func listNetworks() async throws(ControlError) -> NetworkListResult {
        NetworkListResult(networks: try networkInfos())
    }

    public func removeNetwork(_ params: NetworkRemoveParams) async throws(ControlError) -> EmptyResult {
        try removeNetwork(named: params.name)
        return EmptyResult()
    }

    public func attach(_ params: AttachParams) async throws(ControlError) -> AttachmentInfo {
        try attachContainer(
            network: params.network, container: params.container, ifname: params.ifname.value, address: params.ip,
            mac: params.mac, mtu: params.mtu, gateway: params.gateway)
    }

    public func detach(_ params: DetachParams) async throws(ControlError) -> DetachResult {
        DetachResult(detached: try detachContainer(params.container, ifname: params.ifname?.value))
    }

    public func leases(_ params: LeasesParams) async throws(ControlError) -> LeasesResult {
        LeasesResult(leases: try leaseInfos(network: params.network))
    }
}
