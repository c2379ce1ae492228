// The switch: control-plane state, the control methods, and the threads that run the dataplane.
//
// Threads:
//   - control   the control server's connection threads call the `ControlService` methods. All mutable state is
//               in `state` behind one Mutex, so requests from several connections are serialized (wireguard-go's
//               ipcMutex does the same for its UAPI).
//   - workers   N `DataplaneWorker`s (`--workers`), each on its own thread with its own engine and buffer pool;
//               all share the MAC table and the published config. Each has its own queue of every TAP and its own
//               VXLAN socket (SO_REUSEPORT), so the kernel keeps one flow on one worker; worker 0 also receives
//               GRE and sends the control plane's frames (DHCP and ARP replies). Control requests that involve
//               file descriptors are posted to every worker's mailbox and acknowledged before the request is
//               answered, so a port is live on every worker when `add-port` returns.
//   - maintenance   advances the MAC table's clock once a second and expires old entries (bulk aging).
//
// Order of a change, chosen so a worker never forwards to something that is not there:
//   add:    create the descriptor → publish the config with it → attach it on every worker (until then a
//           worker's floods skip it, and its unicast to it is counted as `portNotAttached`);
//   remove: publish the config without it → detach on every worker → flush the table → close the descriptor.

import Foundation
import Logging
import Synchronization
import VXControl
import VXDHCP
import VXDataplane
import VXDocker
import VXForwarding
import VXIO
import VXPacket

/// What a switch is configured with at start.
public struct DaemonOptions: Sendable {
    /// This host's VTEP address: the source of every tunnel packet. IPv4 or IPv6; every peer must be of its
    /// family, and an IPv6 VTEP carries its tunnels through sockets only (no underlay TAP).
    public var local: UnderlayAddress
    /// The VXLAN UDP port, for receiving and as every peer's destination port.
    public var udpPort: UInt16 = VXLANHeader.udpPort
    /// MAC table capacity (entries).
    public var tableCapacity = ForwardingTable.defaultCapacity
    /// Seconds an unrefreshed MAC entry lives (300, like the Linux bridge and OVS).
    public var agingSeconds = 300
    /// MTU for ports created without one when their VNI has no GRE-only peers: 1450 fits VXLAN over a 1500-byte
    /// IPv4 underlay (20 + 8 + 8 + 14 bytes of overhead), and so also GRE; 1430 over IPv6 (40 + 8 + 8 + 14); see
    /// `defaultMTU(for:in:)`.
    public var defaultMTU: Int
    /// The largest inner IP packet the workers cut offloaded TCP into (`DataplaneWorker.overlayMTU`): what fits
    /// VXLAN over a 1500-byte underlay of `local`'s family, 1450 or 1430.
    public var overlayMTU: Int
    /// The largest port MTU the switch carries. Receive paths read a frame into one packet buffer past its
    /// headroom (2048 - 64 = 1984 bytes), and the most they put there for one frame is io_uring's multishot
    /// recvmsg on the raw GRE socket: its io_uring_recvmsg_out header (16) and the sender's sockaddr_in (16), then
    /// the IPv4 header (20), GRE with key (8), the Ethernet header with an 802.1Q tag (18) and the payload. So
    /// 1906. (The raw IPv6 GRE socket's read puts 4 bytes less there: a 32-byte name, but no IP header.) A
    /// larger MTU let containers send frames that TAP reads truncated and forwarded, and that tunnel reads dropped
    /// (MSG_TRUNC) without a counter in `stats`.
    public var maxMTU = PacketBufferPool.defaultBufferSize - PacketBufferPool.defaultHeadroom - 16 - 16 - 20 - 8 - 18
    /// Most ports and peers the switch will hold (counter rows are allocated for them up front).
    public var maxPorts = 1024
    public var maxPeers = 1024
    /// Packet buffers for all workers together, each worker's pool a share of them
    /// (`PacketBufferPool.workerShare`, never below `DataplaneWorker.minimumPool`). 4096 standard (2 KiB) and 192
    /// large (64 KiB + 256) buffers per worker served 2 workers well; as a per-worker amount, 4 workers peaked at
    /// up to 80 MB RSS under one TCP stream each way, past the 64 MB target (docs/performance-history.md,
    /// "Multi-core workers").
    public var bufferBudget = defaultBufferBudget
    public static let defaultBufferBudget = PacketBufferPool.Counts(standard: 8192, large: 384)
    /// The most buffers one worker gets (`PacketBufferPool.workerShare`): the 2-worker share, so one worker
    /// costs no more than it did before the budget.
    public var bufferCeiling = defaultBufferCeiling
    public static let defaultBufferCeiling = PacketBufferPool.Counts(standard: 4096, large: 192)
    /// The most workers a switch runs (`--workers`): a TAP takes at most 256 queues, and past the core count
    /// more workers only add context switches.
    public static let maxWorkers = 64
    /// Where the configuration is kept across restarts; nil runs without one (nothing persisted, and the TAPs
    /// are removed when the switch stops).
    public var statePath: String? = nil
    /// The Docker engine's API socket, for `attach --docker`.
    public var dockerSocket = DockerEngineClient.defaultSocketPath
    /// How long a worker keeps polling after traffic before it sleeps (`DataplaneWorker.busyPollWindow`).
    public var busyPoll: Duration = .microseconds(defaultBusyPollMicroseconds)
    /// See docs/performance.md, "Why the misses remain" (ping), for how it was chosen.
    public static let defaultBusyPollMicroseconds = 0

    /// Owns `local` on an underlay TAP instead of sending and receiving through sockets (`--underlay-tap`); nil:
    /// sockets.
    public var underlay: UnderlayOptions? = nil

    public init(local: UnderlayAddress) {
        self.local = local
        self.overlayMTU = DaemonOptions.underlayMTU - local.vxlanOverhead - EthernetHeader.size
        self.defaultMTU = overlayMTU
    }

    /// The underlay MTU the defaults are sized for (Ethernet's).
    public static let underlayMTU = 1500

    /// The underlay TAP's VTEP address: `local`, which `--underlay-tap` requires to be IPv4 (vxswitchd refuses
    /// it otherwise); `.any` if it is not.
    public var underlayTAPAddress: IPv4Address { local.ipv4 ?? .any }
}

/// How a switch with an underlay TAP sits on the underlay segment (docs/offload.md, "The TAP underlay").
///
/// The switch creates the TAP and, given `bridge`, makes it a port of that bridge (else the operator runs
/// `ip link set NAME master BRIDGE` after every start); the operator bridges the uplink and does not give the
/// kernel the VTEP address: the switch answers ARP for it with `mac` and writes whole VXLAN
/// frames, TCP bursts included, which the kernel carries to the peer unsegmented (GSO over the UDP tunnel).
public struct UnderlayOptions: Sendable, Equatable {
    /// The TAP's name.
    public var tapName: String
    /// The switch's MAC address on the segment.
    public var mac: MACAddress
    /// The prefix length of the VTEP address's subnet: peers inside it are resolved directly.
    public var prefixLength: Int
    /// Where peers outside the subnet are sent; nil: only on-link peers are reachable.
    public var gateway: IPv4Address?
    /// The bridge (with the uplink in it) the TAP joins as soon as it exists; nil: the operator joins it.
    public var bridge: String?

    /// - Parameters:
    ///   - tapName: the TAP to create.
    ///   - mac: the switch's MAC; by default one derived from `local` (`UnderlayNeighbors.defaultMAC(for:)`).
    ///   - local: the VTEP address.
    ///   - prefixLength: 1-32.
    ///   - gateway: the next hop for off-link peers.
    ///   - bridge: the bridge the TAP joins.
    public init(tapName: String, mac: MACAddress? = nil, local: IPv4Address, prefixLength: Int = 24,
                gateway: IPv4Address? = nil, bridge: String? = nil) {
        self.tapName = tapName
        self.mac = mac ?? UnderlayNeighbors.defaultMAC(for: local)
        self.prefixLength = prefixLength
        self.gateway = gateway
        self.bridge = bridge
    }
}

/// The control plane's record of one port.
struct PortState {
    var id: PortID
    var vni: VNI
    var mtu: Int
    var descriptor: OwnedDescriptor
    /// The network the port was attached to with `attach` (nil for `add-port` ports).
    var network: String? = nil
    /// Where `attach` put the port's interface (nil for `add-port` ports).
    var attachment: AttachmentState? = nil
    /// Where a user moved an `add-port` port's interface (MovedPorts.swift); nil while it is at home.
    var moved: MovedPort? = nil
}

/// The control plane's record of one peer (one underlay address, one encapsulation, one or more VNIs).
struct PeerState {
    var id: PeerID
    var encapsulation: PeerEncapsulation
    var vnis: Set<VNI>
}

/// One switch. Generic over the engine type so the worker loop is specialized for it.
public final class SwitchDaemon<Engine: PacketEngine>: ControlService, @unchecked Sendable {
    // @unchecked: the mutable control state is in `state` (a Mutex); the workers are used only through their
    // thread-safe mailboxes and counters once their threads run; everything else is immutable or itself Sendable.

    public let options: DaemonOptions
    public let table: ForwardingTable
    let publisher = ConfigPublisher()
    /// The dataplane workers; worker `k` runs on thread `vxswitch-worker-k`.
    let workers: [DataplaneWorker<Engine>]
    /// Worker 0: it receives GRE and sends the control plane's frames.
    var worker: DataplaneWorker<Engine> { workers[0] }
    let host: any SwitchHost
    let logger: Logger
    let state = Mutex(State())
    let stopMaintenance = Atomic<Bool>(false)
    let store: StateStore?
    /// Held from `start` to `shutdown` when there is a state file, so no second switch uses it meanwhile.
    let stateLock = Mutex<StateFileLock?>(nil)
    /// Wakes the DHCP/ARP service thread when a worker punts a frame.
    let puntSignal: DispatchSemaphore
    /// Ports whose descriptor failed under the switch (recorded by the workers, see PortFailures.swift).
    let portFailures = PortFailures()
    /// Held for one pass of `trackMovedPorts`, so two passes (the maintenance thread's and a test's) never both
    /// act on one move.
    let movedPortPass = Mutex(())
    /// ARP on the underlay TAP (holding nil without one). Lock order: `state`, then this. A Mutex around an
    /// optional, not an optional Mutex: `neighbors?.withLock` on an `Optional<Mutex>` that was nil crashed in
    /// `_lockSlow` ("Unknown error occurred while attempting to acquire a Mutex", Swift 6.3), as if the empty
    /// optional's bytes were locked.
    let neighbors: Mutex<UnderlayNeighbors?>

    struct State {
        var builder = TopologyBuilder()
        var ports: [String: PortState] = [:]
        var peers: [UnderlayAddress: PeerState] = [:]
        var networks: [String: NetworkState] = [:]
        var tunnels: [OwnedDescriptor] = []
        var started = false
        var stopped = false
    }

    /// A switch with one worker.
    /// - Parameters:
    ///   - options: addresses and sizes.
    ///   - engine: the worker's engine; from here on only the worker thread uses it.
    ///   - host: where TAPs and sockets come from.
    public convenience init(options: DaemonOptions, engine: Engine, host: any SwitchHost, logger: Logger) {
        self.init(options: options, engines: [engine], host: host, logger: logger)
    }

    /// A switch with one worker per engine.
    /// - Parameters:
    ///   - options: addresses and sizes.
    ///   - engines: one engine per worker (1 ... `DaemonOptions.maxWorkers`), each with its own pool; from here on
    ///     only its worker's thread uses it.
    ///   - host: where TAPs and sockets come from.
    public init(options: DaemonOptions, engines: [Engine], host: any SwitchHost, logger: Logger) {
        precondition((1...DaemonOptions.maxWorkers).contains(engines.count), "a switch runs 1-64 workers")
        self.options = options
        self.host = host
        self.logger = logger
        self.store = options.statePath.map(StateStore.init(path:))
        self.neighbors = Mutex(
            options.underlay.map { underlay in
                UnderlayNeighbors(
                    localAddress: options.underlayTAPAddress, localMAC: underlay.mac,
                    prefixLength: underlay.prefixLength,
                    gateway: underlay.gateway)
            })
        let agingTicks = UInt16(clamping: options.agingSeconds)
        self.table = ForwardingTable(capacity: options.tableCapacity, agingTicks: max(agingTicks, 1))
        let puntSignal = DispatchSemaphore(value: 0)
        self.puntSignal = puntSignal
        // One punt queue for all workers: it is a Mutex-guarded array, so several producers are safe, and the
        // one consumer (the DHCP thread) drains them all at once.
        let punt = PuntQueue { puntSignal.signal() }
        // Locals: the closure must not capture `self` before every stored property is set.
        let (table, publisher) = (self.table, self.publisher)
        self.workers = engines.enumerated().map { index, engine in
            var workerLogger = logger
            workerLogger[metadataKey: "worker"] = "\(index)"
            return DataplaneWorker(
                engine: engine, table: table, publisher: publisher,
                counters: WorkerCounters(maxPorts: options.maxPorts, maxPeers: options.maxPeers),
                punt: punt, overlayMTU: options.overlayMTU, logger: workerLogger)
        }
        for worker in workers { worker.busyPollWindow = options.busyPoll }
        for (index, worker) in workers.enumerated() {
            worker.onPortFailure = { [portFailures] port, error in portFailures.record(port, worker: index, error: error) }
        }
    }

    /// Worker 0's engine, for tests that inject frames into a `MemoryEngine`. Thread-safety is the engine's.
    public var engine: Engine { worker.engine }

    /// Every worker's engine, in worker order.
    public var engines: [Engine] { workers.map(\.engine) }

    // MARK: Life cycle

    /// Opens the tunnel sockets and starts the worker and maintenance threads.
    public func start() throws(ControlError) {
        if let store {
            let lock = try StateFileLock.acquire(statePath: store.path)
            stateLock.withLock { $0 = lock }
        }
        // Every worker's sockets first: SO_REUSEPORT spreads datagrams only over sockets already bound.
        var tunnels: [OwnedDescriptor] = []
        var tunnelsByWorker: [[OwnedDescriptor]] = []
        do throws(ControlError) {
            if let underlay = options.underlay {
                // One TAP, a queue per worker; no sockets: VXLAN leaves and arrives through it (GRE peers refused).
                let tap = try host.openUnderlay(name: underlay.tapName, queues: workers.count, bridge: underlay.bridge)
                logQdiscRefusal(tap.qdiscRefusal, interface: underlay.tapName)
                tunnels = [tap]
            } else {
                for index in workers.indices {
                    let opened = try host.openTunnels(local: options.local, udpPort: options.udpPort, worker: index)
                    tunnelsByWorker.append(opened)
                    tunnels += opened
                }
            }
        } catch {
            for tunnel in tunnels { tunnel.release() }
            throw error
        }
        for (index, worker) in workers.enumerated() {
            let handoff = WorkerHandoff(worker: worker)
            let workerThread = Thread { handoff.worker.run() }
            workerThread.name = "vxswitch-worker-\(index)"
            workerThread.start()
        }
        let maintenance = Thread { [self] in runMaintenance() }
        maintenance.name = "vxswitch-maintenance"
        maintenance.start()
        let puntService = Thread { [self] in runPuntService() }
        puntService.name = "vxswitch-dhcp"
        puntService.start()
        var attachments: [(DataplaneWorker<Engine>, WorkerCommand)] = []
        if options.underlay != nil, let tap = tunnels.first {
            for (index, worker) in workers.enumerated() {
                attachments.append((worker, .attachUnderlay(fd: tap.fd(forWorker: index))))
            }
        }
        for (worker, opened) in zip(workers, tunnelsByWorker) {
            for tunnel in opened { attachments.append((worker, .attachTunnel(fd: tunnel.fd, kind: tunnel.kind))) }
        }
        for (worker, command) in attachments {
            do {
                try worker.mailbox.run(command)
            } catch {
                // Stop the threads before closing descriptors the engines may already be reading.
                stopMaintenance.store(true, ordering: .relaxed)
                for worker in workers { _ = try? worker.mailbox.run(.stop) }
                for tunnel in tunnels { tunnel.release() }
                throw ControlError(
                    .systemError, "cannot attach a tunnel socket or the underlay TAP to a worker: \(error)", cause: error)
            }
        }
        state.withLock {
            $0.tunnels = tunnels
            $0.started = true
            // The underlay identity goes out now: the underlay TAP carries frames (ARP for us) before any peer.
            if options.underlay != nil { publish($0) }
        }
        logger.info(
            "switch started: local VTEP \(options.local), VXLAN UDP port \(options.udpPort), engine \(Engine.self), \(workers.count) worker(s)")
        if let underlay = options.underlay {
            let gateway = underlay.gateway.map { ", gateway \($0)" } ?? ""
            let bridging = underlay.bridge.map { "a port of bridge \($0)" } ?? "bridge it to the uplink"
            logger.info(
                "underlay TAP \(underlay.tapName): VTEP \(options.local)/\(underlay.prefixLength) at \(underlay.mac)\(gateway); \(bridging)")
        }
        if let store {
            try restore(from: store.load(), path: store.path)
        }
    }

    /// Re-creates the saved ports (attaching to their persistent TAPs) and peers.
    private func restore(from saved: PersistedState, path: String) throws(ControlError) {
        // A network that cannot be restored stops the start: skipping it would lose it, its leases and its ports
        // for good with the save at the end of the restore. (Ports are different: one whose container went away
        // while the switch was down is meant to be dropped.)
        for network in saved.networks {
            do throws(ControlError) {
                try restoreNetwork(network)
            } catch {
                throw ControlError(
                    error.code,
                    "state file \(path): cannot restore network \"\(network.name)\": \(error.message); "
                        + "fix or remove that record, or move the file away to start empty")
            }
        }
        var restoredPorts = 0
        for port in saved.ports {
            do throws(ControlError) {
                guard let vni = VNI(port.vni) else { throw ControlError(.invalidArgument, "VNI \(port.vni) out of range") }
                if let attachment = port.attachment, let network = port.network {
                    try restoreAttachedPort(port, vni: vni, network: network, attachment: attachment)
                } else if let moved = port.moved {
                    try restoreMovedPort(port, vni: vni, moved: moved)
                } else {
                    _ = try addPortLocked(name: port.name, vni: vni, mtu: port.mtu, persist: false)
                }
                restoredPorts += 1
            } catch {
                logger.error("state \(path): cannot restore port \(port.name): \(error.message)")
            }
        }
        var restoredPeers = 0
        for peer in saved.peers {
            for vniValue in peer.vnis {
                do throws(ControlError) {
                    guard let address = UnderlayAddress(peer.ip), let vni = VNI(vniValue) else {
                        throw ControlError(.invalidArgument, "bad address or VNI")
                    }
                    let encapsulation = try PeerEncapsulation(encap: peer.encap, greKey: peer.greKey)
                    _ = try addPeerLocked(address: address, vni: vni, encapsulation: encapsulation, persist: false)
                } catch {
                    logger.error("state \(path): cannot restore peer \(peer.ip) VNI \(vniValue): \(error.message)")
                }
            }
            restoredPeers += 1
        }
        logger.info(
            "restored \(saved.networks.count) network(s), \(restoredPorts) port(s) and \(restoredPeers) peer(s) from \(path)")
        // Leases of ports that could not be restored are released by this save.
        try state.withLock { state throws(ControlError) in
            for port in saved.ports where state.ports[port.name] == nil {
                guard let network = port.network else { continue }
                for owner in Self.leaseOwners(ofPort: port.name, mac: port.attachment.flatMap { MACAddress($0.mac) }) {
                    _ = state.networks[network]?.leases.release(owner)
                }
            }
            try save(state)
        }
    }

    /// Stops the threads and closes every port (removing the TAPs this switch created) and socket.
    public func shutdown() {
        let stopping = state.withLock { state -> (ports: [PortState], tunnels: [OwnedDescriptor], started: Bool)? in
            // Only the first call stops anything: a second `.stop` would wait forever for a worker that has left.
            guard !state.stopped else { return nil }
            state.stopped = true
            defer {
                state.ports.removeAll()
                state.tunnels.removeAll()
            }
            return (Array(state.ports.values), state.tunnels, state.started)
        }
        guard let (ports, tunnels, started) = stopping else { return }
        stopMaintenance.store(true, ordering: .relaxed)
        if started {
            // Detach every port first, as del-port does: an engine may hold its own reference to a TAP (an
            // in-flight io_uring read does), and a TAP is removed only when the last reference goes. Without
            // this, the ring's references outlived the process by up to ~100 ms (the kernel tears a ring down
            // asynchronously), so the TAPs were still there when vxswitchd had already exited.
            for worker in workers {
                for port in ports { _ = try? worker.mailbox.run(.detachPort(port.id)) }
                _ = try? worker.mailbox.run(.stop)
            }
        }
        // Each worker stopped using its engine (and so every descriptor) when it acknowledged `.stop`.
        for tunnel in tunnels { tunnel.release() }
        if store == nil {
            for port in ports { port.descriptor.destroy() }
            if !ports.isEmpty { logger.info("removed \(ports.count) port(s)") }
        } else {
            // With a state file the TAPs stay (persistent), so containers keep their interfaces and the next
            // vxswitchd attaches to them again.
            for port in ports { port.descriptor.release() }
            if !ports.isEmpty { logger.info("left \(ports.count) persistent port(s) for the next start") }
        }
        // Last: the next switch may take the state file over only once this one stopped writing it.
        stateLock.withLock { $0 = nil }
    }

    private func runMaintenance() {
        var elapsed = Duration.zero
        while !stopMaintenance.load(ordering: .relaxed) {
            // Sleep in short steps so shutdown is prompt, but tick once per second.
            Thread.sleep(forTimeInterval: 0.1)
            elapsed += .milliseconds(100)
            guard elapsed >= .seconds(1) else { continue }
            elapsed = .zero
            table.advanceClock()
            sendNeighborRequests()
            let expired = table.expire()
            if expired > 0 { logger.debug("aged out \(expired) MAC entries") }
            logPortFailures()
            checkAttachedNamespaces()
            trackMovedPorts()
        }
    }

    /// Logs each port that failed since the last call, once, with its name and descriptor. Maintenance thread.
    func logPortFailures() {
        let new = portFailures.takeUnlogged()
        guard !new.isEmpty else { return }
        let known = state.withLock { state in
            Dictionary(uniqueKeysWithValues: state.ports.map { name, port in (port.id, (name, port)) })
        }
        for (id, failure) in new {
            guard let (name, port) = known[id] else { continue }  // removed meanwhile
            let interface = port.attachment.map { " (\($0.ifname) in \($0.container))" } ?? ""
            logger.error(
                "port \(name)\(interface) failed: fd \(port.descriptor.fd(forWorker: failure.worker)) of worker \(failure.worker): \(failure.error.summary); it switches nothing from now on, remove it with `vxctl del-port \(name)`")
        }
    }

    // MARK: Publishing

    /// Builds and publishes the worker config from `state`. Called with the state lock held.
    func publish(_ state: State) {
        let topology = state.builder.build()
        var tunnels: [PeerTunnel] = []
        // With an underlay TAP: the next hops' MACs as ARP has them, and the peers it should resolve.
        let nextHopMACs = neighbors.withLock { neighbors -> [IPv4Address: MACAddress]? in
            neighbors?.setWanted(state.peers.keys.compactMap(\.ipv4))
            return neighbors?.macsByRemote()
        }
        for (address, peer) in state.peers {
            var templates: [BridgeDomain: EncapTemplate] = [:]
            for vni in peer.vnis {
                guard let domain = topology.domain(for: vni) else { continue }
                templates[domain] = EncapTemplate(
                    encapsulation: peer.encapsulation.tunnel, local: options.local, remote: address, vni: vni,
                    greKeyLayout: peer.encapsulation.keyLayout, udpDestinationPort: options.udpPort)
            }
            let unkeyed = peer.encapsulation.keyLayout == .none ? peer.vnis.first : nil
            tunnels.append(
                PeerTunnel(
                    peer: peer.id, address: address, encapsulation: peer.encapsulation.tunnel,
                    greKeyLayout: peer.encapsulation.keyLayout, unkeyedVNI: unkeyed, templates: templates,
                    nextHopMAC: address.ipv4.flatMap { nextHopMACs?[$0] }))
        }
        let identity = options.underlay.map {
            UnderlayIdentity(mac: $0.mac, address: options.underlayTAPAddress, udpPort: options.udpPort)
        }
        publisher.publish(
            DataplaneConfig(topology: topology, peers: tunnels, punt: puntRules(state), underlay: identity))
    }

    /// Removes the VNI's bridge domain when no port or peer uses it any more. State lock held.
    func releaseDomainIfUnused(_ vni: VNI, in state: inout State) {
        let used = state.ports.values.contains { $0.vni == vni } || state.peers.values.contains { $0.vnis.contains(vni) }
            || state.networks.values.contains { $0.vni == vni }
        guard !used, let domain = state.builder.removeDomain(vni: vni) else { return }
        table.flush(domain: domain, includingStatic: true)
    }

    // MARK: ControlService: ports

    public func addPort(_ params: AddPortParams) async throws(ControlError) -> PortInfo {
        let mtu = params.mtu ?? state.withLock { defaultMTU(for: params.vni, in: $0) }
        return try addPortLocked(name: params.name.value, vni: params.vni, mtu: mtu, persist: true)
    }

    /// The MTU a new port of `vni` gets when none is asked for: the largest inner MTU that every peer of the VNI
    /// carries over a 1500-byte underlay. VXLAN costs 50 bytes (IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14;
    /// 70 over IPv6), GRE with a key 42 (20 + 8 + 14; 62 over IPv6), GRE without 38 (58); a VNI with no peers yet
    /// gets the VXLAN figure, which fits every encapsulation.
    func defaultMTU(for vni: VNI, in state: State) -> Int {
        let encapsulations = state.peers.values.filter { $0.vnis.contains(vni) }.map(\.encapsulation)
        guard !encapsulations.isEmpty else { return options.defaultMTU }
        let vxlanOverhead = options.local.vxlanOverhead + EthernetHeader.size
        let underlay = options.defaultMTU + vxlanOverhead
        return encapsulations.map { encapsulation in
            switch encapsulation {
            case .vxlan: underlay - vxlanOverhead
            case .gre(let key):
                underlay - options.local.ipHeaderLength - EthernetHeader.size
                    - (key == .none ? GREHeader.baseSize : GREHeader.baseSize + 4)
            }
        }.min()!
    }

    /// Adds a port (a new or existing TAP named `name` in this namespace); with `persist`, the new configuration
    /// is saved before this returns.
    func addPortLocked(name: String, vni: VNI, mtu: Int, persist: Bool) throws(ControlError) -> PortInfo {
        try state.withLock { state throws(ControlError) -> PortInfo in
            try requireRunning(state)
            guard state.ports[name] == nil else {
                throw ControlError(.alreadyExists, "port \"\(name)\" already exists")
            }
            try checkMTU(mtu)
            let descriptor = try host.createPort(
                name: name, mtu: mtu, persistent: store != nil, queues: workers.count)
            logQdiscRefusal(descriptor.qdiscRefusal, interface: name)
            try installPort(
                name: name, vni: vni, mtu: mtu, descriptor: descriptor, network: nil, attachment: nil, persist: persist,
                state: &state)
            logger.info("port \(name) added in VNI \(vni) (MTU \(mtu))")
            return PortInfo(name: interfaceName(name), vni: vni, mtu: mtu, ifindex: descriptor.ifindex)
        }
    }

    /// Warns that a TAP kept the kernel's default queueing discipline: it works, but costs kernel memory per TAP.
    func logQdiscRefusal(_ refusal: String?, interface: String) {
        guard let refusal else { return }
        logger.warning(
            "\(interface) keeps the kernel's default queueing discipline (about 6.6 MB of kernel memory for a multi-queue TAP): \(refusal)")
    }

    /// Makes `descriptor` port `name` of the switch: topology, worker, and (with `persist`) the state file. On
    /// failure everything is undone and the descriptor destroyed. State lock held.
    func installPort(
        name: String, vni: VNI, mtu: Int, descriptor: OwnedDescriptor, network: String?,
        attachment: AttachmentState?, persist: Bool, state: inout State
    ) throws(ControlError) {
        guard state.ports.count < options.maxPorts else {
            descriptor.destroy()
            throw ControlError(.resourceBusy, "this switch already has the most ports it allows (\(options.maxPorts))")
        }
        var builder = state.builder
        guard let domain = builder.addDomain(vni: vni), let port = builder.addPort(domain: domain),
            Int(port.index) < options.maxPorts
        else {
            descriptor.destroy()
            throw ControlError(.resourceBusy, "no free port index for \"\(name)\"")
        }
        for worker in workers { worker.counters.reset(.port(index: Int(port.index))) }
        // Publish before attaching: the port's first frames (an IPv6 router solicitation as the link comes
        // up) then find it in the workers' config; until a worker has attached it, that worker's floods skip it.
        let previous = state
        state.builder = builder
        state.ports[name] = PortState(
            id: port, vni: vni, mtu: mtu, descriptor: descriptor, network: network, attachment: attachment)
        publish(state)
        do throws(ControlError) {
            for (index, worker) in workers.enumerated() {
                do {
                    try worker.mailbox.run(.attachPort(port, fd: descriptor.fd(forWorker: index), kind: descriptor.kind))
                } catch {
                    throw ControlError(
                        .systemError, "cannot attach \"\(name)\" to dataplane worker \(index): \(error)", cause: error)
                }
            }
            if persist { try save(state) }
        } catch {
            state = previous
            publish(state)
            detachEverywhere(port)
            descriptor.destroy()
            throw error
        }
        if descriptor.sharesQueues(amongWorkers: workers.count) {
            logger.warning(
                "\(TAPQueues.singleQueueWarning(port: name, interface: attachment?.ifname ?? name, workers: workers.count))")
        }
    }

    /// Detaches port `port` from every worker (a worker that never attached it does nothing).
    func detachEverywhere(_ port: PortID) {
        for worker in workers { _ = try? worker.mailbox.run(.detachPort(port)) }
    }

    /// Removes port `name`: saved first (once the TAP is deleted there is no going back), then taken out of the
    /// topology and the worker, its MAC entries flushed, its lease released, its TAP deleted. State lock held.
    func removePort(named name: String, state: inout State) throws(ControlError) {
        guard let port = state.ports[name] else {
            throw ControlError(.notFound, "no port named \"\(name)\"")
        }
        var next = state
        next.ports[name] = nil
        if let network = port.network {
            for owner in Self.leaseOwners(ofPort: name, attachment: port.attachment) {
                _ = next.networks[network]?.leases.release(owner)
            }
        }
        try save(next)
        state = next
        state.builder.removePort(port.id)
        publish(state)
        detachEverywhere(port.id)
        portFailures.forget(port.id)
        table.flush(port: port.id, includingStatic: true)
        releaseDomainIfUnused(port.vni, in: &state)
        publish(state)
        port.descriptor.destroy()
        logger.info("port \(name) removed")
    }

    public func deletePort(_ params: DeletePortParams) async throws(ControlError) -> EmptyResult {
        try state.withLock { state throws(ControlError) in
            try requireRunning(state)
            try removePort(named: params.name.value, state: &state)
        }
        return EmptyResult()
    }

    // MARK: ControlService: peers

    public func addPeer(_ params: AddPeerParams) async throws(ControlError) -> PeerInfo {
        try addPeerLocked(address: params.ip, vni: params.vni, encapsulation: params.encapsulation, persist: true)
    }

    private func addPeerLocked(
        address: UnderlayAddress, vni: VNI, encapsulation: PeerEncapsulation, persist: Bool
    ) throws(ControlError) -> PeerInfo {
        guard address != options.local else {
            throw ControlError(.invalidArgument, "\(address) is this switch's own VTEP address, not a peer")
        }
        guard address.isIPv4 == options.local.isIPv4 else {
            throw ControlError(
                .invalidArgument,
                "\(address) is an \(address.familyName) address, but this switch's VTEP address \(options.local) is "
                    + "\(options.local.familyName): a peer must be of the same address family")
        }
        guard address.isUnicast, !address.isLoopback else {
            throw ControlError(.invalidArgument, "\(address) cannot be a peer: use the peer's unicast underlay address")
        }
        if options.underlay != nil {
            guard encapsulation.tunnel == .vxlan else {
                throw ControlError(
                    .invalidArgument,
                    "this switch runs with an underlay TAP (--underlay-tap), which carries VXLAN only: "
                        + "\(encapsulation) peers need the socket underlay")
            }
            guard let v4 = address.ipv4, neighbors.withLock({ $0?.nextHop(for: v4) }) != nil else {
                throw ControlError(
                    .invalidArgument,
                    "\(address) is outside this switch's underlay subnet and there is no --underlay-gateway")
            }
        }
        return try state.withLock { state throws(ControlError) -> PeerInfo in
            try requireRunning(state)
            if let existing = state.peers[address] {
                guard existing.encapsulation == encapsulation else {
                    throw ControlError(
                        .invalidArgument,
                        "peer \(address) already uses \(existing.encapsulation); each peer has one encapsulation "
                            + "(del-peer \(address) first to change it)")
                }
                guard !existing.vnis.contains(vni) else {
                    throw ControlError(.alreadyExists, "peer \(address) is already in VNI \(vni)")
                }
                if encapsulation.keyLayout == .none {
                    throw ControlError(
                        .invalidArgument,
                        "peer \(address) is a GRE peer without a key, which carries exactly one VNI "
                            + "(it already carries \(existing.vnis.map(\.description).sorted().joined(separator: ", ")))")
                }
            } else if state.peers.count >= options.maxPeers {
                throw ControlError(.resourceBusy, "this switch already has the most peers it allows (\(options.maxPeers))")
            }
            var builder = state.builder
            guard let domain = builder.addDomain(vni: vni), let peer = builder.addPeer(address, to: domain),
                Int(peer.index) < options.maxPeers
            else {
                throw ControlError(.resourceBusy, "no free peer index for \(address)")
            }
            var next = state
            next.builder = builder
            next.peers[address, default: PeerState(id: peer, encapsulation: encapsulation, vnis: [])].vnis.insert(vni)
            if persist { try save(next) }
            if state.peers[address] == nil {
                for worker in workers { worker.counters.reset(.peer(index: Int(peer.index))) }
            }
            state = next
            publish(state)
            sendNeighborRequests()
            let vnis = state.peers[address]!.vnis.sorted()
            logger.info("peer \(address) (\(encapsulation)) added in VNI \(vni)")
            return PeerInfo(ip: address, encapsulation: encapsulation, vnis: vnis)
        }
    }

    public func deletePeer(_ params: DeletePeerParams) async throws(ControlError) -> EmptyResult {
        let address = params.ip
        try state.withLock { state throws(ControlError) in
            try requireRunning(state)
            guard var peer = state.peers[address] else {
                throw ControlError(.notFound, "no peer \(address)")
            }
            let removing: [VNI]
            if let vni = params.vni {
                guard peer.vnis.contains(vni) else {
                    throw ControlError(.notFound, "peer \(address) is not in VNI \(vni)")
                }
                removing = [vni]
            } else {
                removing = peer.vnis.sorted()
            }
            let topology = state.builder.build()
            for vni in removing { peer.vnis.remove(vni) }
            var next = state
            next.peers[address] = peer.vnis.isEmpty ? nil : peer
            try save(next)
            for vni in removing {
                guard let domain = topology.domain(for: vni) else { continue }
                next.builder.removePeer(peer.id, from: domain)
            }
            state = next
            publish(state)
            for vni in removing {
                if let domain = topology.domain(for: vni) {
                    table.flush(peer: peer.id, in: domain, includingStatic: true)
                }
                releaseDomainIfUnused(vni, in: &state)
            }
            publish(state)
            logger.info("peer \(address) removed from VNI \(removing.map(\.description).joined(separator: ", "))")
        }
        return EmptyResult()
    }

    // MARK: ControlService: inspection

    public func show() async throws(ControlError) -> ShowResult {
        let now = ContinuousClock.now
        let underlayNeighbors = neighbors.withLock { neighbors in
            neighbors?.entries().map { entry in
                UnderlayNeighborInfo(
                    ip: entry.address, mac: entry.mac, isNextHop: entry.wanted,
                    age: entry.confirmed.map { Int((now - $0).components.seconds) })
            }
        }
        return state.withLock { state in
            let ports = state.ports.map { name, port in
                PortInfo(
                    name: interfaceName(name), vni: port.vni, mtu: port.mtu, ifindex: port.descriptor.ifindex,
                    failure: portFailures.failure(of: port.id)?.summary, location: Self.location(of: port))
            }.sorted { $0.name < $1.name }
            let peers = state.peers.map { address, peer in
                PeerInfo(ip: address, encapsulation: peer.encapsulation, vnis: peer.vnis.sorted())
            }.sorted { $0.ip < $1.ip }
            var vnis: Set<VNI> = Set(state.ports.values.map(\.vni))
            for peer in state.peers.values { vnis.formUnion(peer.vnis) }
            let vniInfos = vnis.sorted().map { vni in
                VNIInfo(
                    vni: vni,
                    ports: ports.filter { $0.vni == vni }.map(\.name),
                    peers: peers.filter { $0.vnis.contains(vni) }.map(\.ip))
            }
            return ShowResult(ports: ports, peers: peers, vnis: vniInfos, underlayNeighbors: underlayNeighbors)
        }
    }

    public func fdb(_ params: FDBParams) async throws(ControlError) -> FDBResult {
        let (topology, portNames, peerAddresses) = state.withLock { state in
            (
                state.builder.build(),
                Dictionary(uniqueKeysWithValues: state.ports.map { ($0.value.id, $0.key) }),
                Dictionary(uniqueKeysWithValues: state.peers.map { ($0.value.id, $0.key) })
            )
        }
        var entries: [FDBEntry] = []
        for entry in table.entries() {
            guard let vni = topology.vni(of: entry.key.domain) else { continue }
            if let wanted = params.vni, wanted != vni { continue }
            let destination: FDBDestination
            switch entry.destination {
            case .port(let port):
                guard let name = portNames[port] else { continue }
                destination = .port(interfaceName(name))
            case .peer(let peer):
                guard let address = peerAddresses[peer] else { continue }
                destination = .peer(address)
            }
            // One tick is one second (the maintenance thread's period).
            entries.append(
                FDBEntry(vni: vni, mac: entry.key.mac, destination: destination, age: Int(entry.age),
                         isStatic: entry.isStatic))
        }
        entries.sort { ($0.vni, $0.mac) < ($1.vni, $1.mac) }
        return FDBResult(entries: entries)
    }

    public func stats() async throws(ControlError) -> StatsResult {
        let (ports, peers) = state.withLock { state in
            (state.ports.map { ($0.key, $0.value.id) }, state.peers.map { ($0.key, $0.value.id) })
        }
        // One snapshot per worker and counter row, so the sums and each worker's share (`workers`) come from the
        // same reading and add up exactly.
        let entities = ports.map { CounterEntity.port(index: Int($0.1.index)) }
            + peers.map { CounterEntity.peer(index: Int($0.1.index)) } + [.unattributed]
        let rows = workers.map { worker in entities.map { worker.counters.snapshot(of: $0) } }
        func summed(_ position: Int) -> CounterRow {
            rows.reduce(into: CounterRow()) { $0 += $1[position] }
        }
        let portStats = ports.enumerated().map { position, port in
            PortStats(name: interfaceName(port.0), counters: TrafficCounters(summed(position)))
        }.sorted { $0.name < $1.name }
        let peerStats = peers.enumerated().map { position, peer in
            PeerStats(ip: peer.0, counters: TrafficCounters(summed(ports.count + position)))
        }.sorted { $0.ip < $1.ip }
        let total = entities.indices.reduce(into: CounterRow()) { $0 += summed($1) }
        let shares = rows.enumerated().map { index, workerRows in
            WorkerStats(
                worker: index, rxFrames: workerRows.reduce(0) { $0 &+ $1.rxFrames },
                txFrames: workerRows.reduce(0) { $0 &+ $1.txFrames })
        }
        var drops = TrafficCounters(total).drops
        let tunnels = state.withLock { $0.tunnels }
        var kernelDrops: UInt64 = 0
        for tunnel in tunnels {
            switch tunnel.kind {
            case .udpTunnel: kernelDrops += KernelSocketDrops.count(fd: tunnel.fd, table: "udp") ?? 0
            case .rawGRE, .rawGREIPv6: kernelDrops += KernelSocketDrops.count(fd: tunnel.fd, table: "raw") ?? 0
            default: break
            }
        }
        if kernelDrops > 0 { drops[Self.kernelReceiveQueueDrops] = kernelDrops }
        let offloads = workers.reduce(into: WorkerOffloadStatistics()) { $0 += $1.counters.offloads.snapshot() }
        return StatsResult(
            ports: portStats, peers: peerStats, drops: drops, workers: shares, offloads: OffloadStats(offloads))
    }

    // MARK: Persistence

    /// Saves `state` to the state file, if there is one. State lock held.
    func save(_ state: State) throws(ControlError) {
        guard let store else { return }
        var persisted = PersistedState()
        persisted.ports = state.ports.map { name, port in
            PersistedPort(
                name: name, vni: port.vni.value, mtu: port.mtu, network: port.network,
                attachment: port.attachment.map(Self.persisted), moved: port.moved.map(Self.persisted))
        }.sorted { $0.name < $1.name }
        persisted.networks = state.networks.values.map { network in
            PersistedNetwork(
                name: network.name, vni: network.vni.value, subnet: network.subnet.description,
                rangeFirst: network.range.lowerBound.description, rangeLast: network.range.upperBound.description,
                gateway: network.gateway?.description, dhcp: network.dhcp != nil, leases: network.leases)
        }.sorted { $0.name < $1.name }
        persisted.peers = state.peers.map { address, peer in
            PersistedPeer(
                ip: address.description, encap: peer.encapsulation.name, greKey: peer.encapsulation.greKey?.rawValue,
                vnis: peer.vnis.map(\.value).sorted())
        }.sorted { $0.ip < $1.ip }
        try store.save(persisted)
    }

    // MARK: Helpers

    /// Who may hold a lease for a port: the port itself (static and `--ip auto` addresses) and, for an attached
    /// interface, a DHCP client on it — identified by its MAC, or by the client identifier most clients send
    /// (type 1, Ethernet, followed by the MAC; RFC 2132 §9.14).
    static func leaseOwners(ofPort name: String, attachment: AttachmentState?) -> [LeaseOwner] {
        leaseOwners(ofPort: name, mac: attachment?.mac)
    }

    static func leaseOwners(ofPort name: String, mac: MACAddress?) -> [LeaseOwner] {
        var owners: [LeaseOwner] = [.named(name)]
        if let mac {
            owners.append(.hardwareAddress(mac))
            owners.append(.clientIdentifier([1] + (0..<6).map { mac[octet: $0] }))
        }
        return owners
    }

    /// The `stats` drop reason for datagrams the kernel dropped because a tunnel socket's receive queue was full.
    public static var kernelReceiveQueueDrops: String { "kernelReceiveQueueOverflow" }

    /// Refuses an MTU whose frames would not fit a packet buffer with their tunnel headers.
    func checkMTU(_ mtu: Int) throws(ControlError) {
        guard mtu <= options.maxMTU else {
            throw ControlError(
                .invalidArgument,
                "MTU \(mtu) is more than this switch carries (at most \(options.maxMTU): a frame and its tunnel "
                    + "headers must fit one \(PacketBufferPool.defaultBufferSize)-byte packet buffer)")
        }
    }

    func requireRunning(_ state: State) throws(ControlError) {
        guard state.started, !state.stopped else {
            throw ControlError(.unavailable, "the switch is not running")
        }
    }

    func interfaceName(_ name: String) -> InterfaceName {
        // Names in `state` were validated when the port was added.
        (try? InterfaceName(validating: name))!
    }
}

/// Moves the worker to its thread.
private struct WorkerHandoff<Engine: PacketEngine>: @unchecked Sendable {
    // @unchecked: the worker is handed over exactly once, to the thread that calls `run()`; other threads only
    // use its mailbox and counters, which are Sendable.
    let worker: DataplaneWorker<Engine>
}

extension PeerEncapsulation {
    /// The dataplane's encapsulation.
    var tunnel: TunnelEncapsulation {
        switch self {
        case .vxlan: .vxlan
        case .gre: .gre
        }
    }

    /// The dataplane's GRE key layout (`.vni` for VXLAN, where it is unused).
    var keyLayout: GREKeyLayout {
        switch self {
        case .vxlan: .vni
        case .gre(let key):
            switch key {
            case .vni: .vni
            case .nvgre: .nvgre
            case .none: .none
            }
        }
    }
}

extension OffloadStats {
    /// The control-protocol form of the dataplane's offload counters.
    init(_ statistics: WorkerOffloadStatistics) {
        self.init()
        tsoFramesReceived = statistics.tsoFramesReceived
        checksumsCompleted = statistics.checksumsCompleted
        tsoFramesSegmented = statistics.tsoFramesSegmented
        segments = statistics.segments
        tsoFramesPassedThrough = statistics.tsoFramesPassedThrough
        coalescedWrites = statistics.coalescedWrites
        coalescedFrames = statistics.coalescedFrames
        udpCoalescedWrites = statistics.udpCoalescedWrites
        udpCoalescedFrames = statistics.udpCoalescedFrames
        coalesceChecksumFallbacks = statistics.coalesceChecksumFallbacks
        udpGSOSends = statistics.udpGSOSends
        udpGSODatagrams = statistics.udpGSODatagrams
        groFramesReceived = statistics.groFramesReceived
        groDatagrams = statistics.groDatagrams
    }
}

extension TrafficCounters {
    /// A control-protocol counter set from a dataplane counter row, drops keyed by their stable names.
    init(_ row: CounterRow) {
        var drops: [String: UInt64] = [:]
        for (code, count) in row.drops { drops[code.name] = count }
        self.init(rxFrames: row.rxFrames, rxBytes: row.rxBytes, txFrames: row.txFrames, txBytes: row.txBytes, drops: drops)
    }
}
