// vxswitchd: parses options, picks the I/O engine, runs the switch, and serves the control socket until SIGINT or
// SIGTERM. Everything else lives in VXDaemon so tests can run a switch in-process.

import ArgumentParser
import Dispatch
import Foundation
import Logging
import VXControl
import VXControlSocket
import VXDaemon
import VXDataplane
import VXIO
import VXPacket

@main
struct VXSwitchd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vxswitchd",
        abstract: "A user-space VXLAN/GRE switch: TAP ports, MAC learning per VNI, tunnels to peer VTEPs.",
        discussion: """
            Runs in the foreground and logs to stderr. It is ready when its control socket exists; drive it with \
            vxctl. SIGINT or SIGTERM stops it and removes the TAP interfaces it created.
            The control socket is --control PATH, else $\(ControlSocketPath.environmentVariable), \
            else \(ControlSocketPath.defaultPath).
            """
    )

    enum IOBackend: String, ExpressibleByArgument, CaseIterable {
        case auto, uring, epoll
    }

    @Option(
        name: .long,
        help: ArgumentHelp(
            "This host's VTEP address (IPv4 or IPv6; every peer is of its family): the source of tunnel packets.",
            valueName: "ip"))
    var local: String

    @Option(name: .long, help: ArgumentHelp("The control socket path.", valueName: "path"))
    var control: String?

    @Option(name: .customLong("udp-port"), help: ArgumentHelp("The VXLAN UDP port.", valueName: "port"))
    var udpPort: Int = Int(VXLANHeader.udpPort)

    @Option(name: .long, help: "The I/O engine: uring (io_uring), epoll, or auto (io_uring where the kernel has it).")
    var io: IOBackend = .auto

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The state file (networks, ports, peers, attachments, leases), or none to keep nothing and remove the "
                + "TAPs at exit.", valueName: "path|none"))
    var state: String = StateStore.defaultPath

    @Option(name: .customLong("docker-socket"), help: ArgumentHelp("The Docker engine API socket, for attach --docker.", valueName: "path"))
    var dockerSocket: String = "/var/run/docker.sock"

    @Option(name: .customLong("table-size"), help: ArgumentHelp("MAC table capacity.", valueName: "entries"))
    var tableSize: Int = 65_536

    @Option(name: .customLong("aging"), help: ArgumentHelp("Seconds before an unrefreshed MAC entry ages out.", valueName: "seconds"))
    var agingSeconds: Int = 300

    @Option(
        name: .customLong("busy-poll"),
        help: ArgumentHelp(
            "Microseconds a worker keeps polling (yielding the CPU between polls) after traffic before it sleeps (0: never poll). Trades CPU for round-trip latency: up to a core per polling worker while traffic lasts; a window longer than the gaps between packets (e.g. 2000) keeps request/response exchanges awake.",
            valueName: "us"))
    var busyPollMicroseconds: Int = DaemonOptions.defaultBusyPollMicroseconds

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Dataplane worker threads, 1-\(DaemonOptions.maxWorkers) (default: the number of cores this process may run on, as taskset or a cpuset leave it). Each has "
                + "its own engine, its own queue of every TAP, its own VXLAN socket and its share of the packet "
                + "buffers (\(DaemonOptions.defaultBufferBudget) for the switch; per worker at most "
                + "\(DaemonOptions.defaultBufferCeiling) and at least \(DataplaneWorker<URingEngine>.minimumPool)).",
            valueName: "count"))
    var workers: Int?

    @Option(
        name: .customLong("underlay-tap"),
        help: ArgumentHelp(
            "Own --local on a TAP of this name instead of using the kernel's sockets: bridge the TAP to the uplink and "
                + "keep --local off the kernel's interfaces. VXLAN TCP bursts then cross the underlay whole (GSO over "
                + "the UDP tunnel, Linux 6.17+); VXLAN peers only.", valueName: "name"))
    var underlayTap: String?

    @Option(
        name: .customLong("underlay-bridge"),
        help: ArgumentHelp(
            "With --underlay-tap: the bridge (with the uplink in it) the TAP joins as soon as it exists, at every "
                + "start; without it, run `ip link set NAME master BRIDGE` yourself after each start.",
            valueName: "bridge"))
    var underlayBridge: String?

    @Option(
        name: .customLong("underlay-prefix-length"),
        help: ArgumentHelp(
            "With --underlay-tap: the prefix length of --local's subnet (peers in it are on-link; default 24).",
                           valueName: "bits"))
    var underlayPrefixLength: Int?

    @Option(
        name: .customLong("underlay-gateway"),
        help: ArgumentHelp("With --underlay-tap: the next hop for peers outside --local's subnet.", valueName: "ip"))
    var underlayGateway: String?

    @Option(
        name: .customLong("underlay-mac"),
        help: ArgumentHelp("With --underlay-tap: the switch's MAC address (default 02:76:78 and --local's last 3 bytes).",
                           valueName: "mac"))
    var underlayMAC: String?

    /// The default `--workers`: one per core this process may run on (its CPU affinity, which taskset, a cpuset
    /// or systemd's CPUAffinity= narrow), else per online core, within 1 ... maxWorkers.
    static var usableCores: Int {
        let cores = CPUAffinity.usableCPUCount() ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return min(max(cores, 1), DaemonOptions.maxWorkers)
    }

    mutating func validate() throws {
        guard let address = UnderlayAddress(local), address.isUnicast else {
            throw ValidationError("--local must be this host's unicast IPv4 or IPv6 address, not \"\(local)\"")
        }
        guard (1...65_535).contains(udpPort) else { throw ValidationError("--udp-port must be 1-65535, not \(udpPort)") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard (1_024...16_777_216).contains(tableSize) else {
            throw ValidationError("--table-size must be 1024-16777216 entries")
        }
        guard (1...65_000).contains(agingSeconds) else { throw ValidationError("--aging must be 1-65000 seconds") }
        guard (0...10_000).contains(busyPollMicroseconds) else {
            throw ValidationError("--busy-poll must be 0-10000 microseconds, not \(busyPollMicroseconds)")
        }
        guard !state.isEmpty else { throw ValidationError("--state needs a path, or none") }
        if let workers, !(1...DaemonOptions.maxWorkers).contains(workers) {
            throw ValidationError("--workers must be 1-\(DaemonOptions.maxWorkers), not \(workers)")
        }
        guard let underlayTap else {
            guard underlayGateway == nil, underlayMAC == nil else {
                throw ValidationError("--underlay-gateway and --underlay-mac need --underlay-tap")
            }
            guard underlayBridge == nil else { throw ValidationError("--underlay-bridge needs --underlay-tap") }
            guard underlayPrefixLength == nil else {
                throw ValidationError("--underlay-prefix-length needs --underlay-tap")
            }
            return
        }
        guard address.isIPv4 else {
            throw ValidationError(
                "--underlay-tap needs an IPv4 --local (the underlay TAP carries VXLAN over IPv4 only), not \(address); "
                    + "run without --underlay-tap for an IPv6 underlay")
        }
        do throws(ControlError) {
            _ = try InterfaceName(validating: underlayTap)
        } catch {
            throw ValidationError(
                "--underlay-tap must be an interface name of 1-15 bytes, not \"\(underlayTap)\": \(error.message)")
        }
        if let underlayBridge {
            do throws(ControlError) {
                _ = try InterfaceName(validating: underlayBridge)
            } catch {
                throw ValidationError(
                    "--underlay-bridge must be an interface name of 1-15 bytes, not \"\(underlayBridge)\": "
                        + error.message)
            }
        }
        // /31 and /32 (with --underlay-gateway, as cloud VMs are set up) are real set-ups; the table handles them.
        if let underlayPrefixLength, !(1...32).contains(underlayPrefixLength) {
            throw ValidationError("--underlay-prefix-length must be 1-32, not \(underlayPrefixLength)")
        }
        if let underlayGateway {
            // The same rule as the neighbour table's (UnderlayNeighbors.init), which traps on anything else.
            guard let gateway = IPv4Address(underlayGateway), gateway.isUnicast, UnderlayAddress(gateway) != address else {
                throw ValidationError("--underlay-gateway must be a unicast IPv4 address, not \"\(underlayGateway)\"")
            }
        }
        if let underlayMAC {
            guard let mac = MACAddress(underlayMAC), !mac.isMulticast, !mac.isZero else {
                throw ValidationError("--underlay-mac must be a unicast MAC address, not \"\(underlayMAC)\"")
            }
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "vxswitchd")
        var options = DaemonOptions(local: UnderlayAddress(local)!)
        options.udpPort = UInt16(udpPort)
        options.tableCapacity = tableSize
        options.agingSeconds = agingSeconds
        options.busyPoll = .microseconds(busyPollMicroseconds)
        options.statePath = state == "none" ? nil : state
        options.dockerSocket = dockerSocket
        if let underlayTap {
            options.underlay = UnderlayOptions(
                tapName: underlayTap, mac: underlayMAC.flatMap { MACAddress($0) }, local: options.underlayTAPAddress,
                prefixLength: underlayPrefixLength ?? 24, gateway: underlayGateway.flatMap { IPv4Address($0) },
                bridge: underlayBridge)
        }
        let path = ControlSocketPath.resolve(explicit: control, environment: ProcessInfo.processInfo.environment)

        let workerCount = workers ?? Self.usableCores

        // One pool per worker (a pool belongs to one engine), each a share of the switch's budget so more workers
        // do not mean more memory. Standard buffers for tunnels and the worker's TSO segments, large ones for TAP
        // reads with TSO (KernelHost opens TAPs with a virtio header and offloads), GRO reads, the worker's
        // coalescing scratch and its GSO sends. The floor is the same for both engines.
        let share = PacketBufferPool.workerShare(
            of: options.bufferBudget, workers: workerCount, floor: DataplaneWorker<URingEngine>.minimumPool,
            ceiling: options.bufferCeiling)
        let makePool = { PacketBufferPool(count: share.standard, largeCount: share.large) }
        // io_uring hands free buffers to the kernel; keep what the worker takes itself.
        let makeURing = { () throws(IOError) -> URingEngine in
            try URingEngine(
                pool: makePool(), poolReserve: DataplaneWorker<URingEngine>.segmentBufferReserve,
                largePoolReserve: DataplaneWorker<URingEngine>.scratchBufferReserve)
        }
        let makeEpoll = { () throws(IOError) -> EpollEngine in try EpollEngine(pool: makePool()) }
        func engines<Engine>(_ make: () throws(IOError) -> Engine) throws(IOError) -> [Engine] {
            var engines: [Engine] = []
            for _ in 0..<workerCount { engines.append(try make()) }
            return engines
        }
        switch io {
        case .uring:
            guard URingEngine.isSupported else {
                throw VXSwitchdError("io_uring is not usable here (\(URingEngine.support)); use --io epoll")
            }
            try serve(engines: try engines(makeURing), options: options, path: path, logger: logger)
        case .epoll:
            try serve(engines: try engines(makeEpoll), options: options, path: path, logger: logger)
        case .auto:
            if URingEngine.isSupported {
                try serve(engines: try engines(makeURing), options: options, path: path, logger: logger)
            } else {
                logger.notice("falling back to the epoll engine: \(URingEngine.support)")
                try serve(engines: try engines(makeEpoll), options: options, path: path, logger: logger)
            }
        }
    }

    /// Runs the switch with one worker per engine until SIGINT or SIGTERM.
    private func serve<Engine: PacketEngine>(engines: [Engine], options: DaemonOptions, path: String, logger: Logger)
        throws
    {
        let daemon = SwitchDaemon(options: options, engines: engines, host: KernelHost(), logger: logger)
        do {
            try daemon.start()
        } catch {
            // start() may fail after its threads are running (a tunnel socket, the state file's restore).
            daemon.shutdown()
            throw error
        }
        let server: ControlServer
        do {
            var serverOptions = ControlServer.Options()
            serverOptions.log = { line in logger.notice("\(line)") }
            server = try ControlServer.start(path: path, service: daemon, options: serverOptions)
        } catch {
            daemon.shutdown()
            throw error
        }
        let pool = engines[0].pool
        let workers = "\(engines.count) worker(s), \(pool.standardCount) standard + \(pool.largeCount) large packet buffers each"
        logger.info("ready: control socket \(path), engine \(Engine.self), \(workers)")

        let stop = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                logger.info("signal \(signalNumber): shutting down")
                stop.signal()
            }
            source.resume()
            sources.append(source)
        }
        stop.wait()
        server.stop()
        daemon.shutdown()
        logger.info("stopped")
    }
}

/// A startup failure with a message for the person who ran the command.
struct VXSwitchdError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
