// SwitchNode: one vxswitchd running in a host namespace of a NetnsTopology, and vxctl pointed at it. The daemon
// system tests build everything through it: start the daemon with an I/O engine, peer it with other hosts, add a
// TAP port and move it into a fresh container in one call, and read `show`, `fdb` and `stats` back as JSON.
//
// The binaries are the ones `swift build --build-tests` puts next to the test bundle. The daemon is spawned
// through the topology, so teardown stops it by PID (SIGTERM, then SIGKILL) on every exit path; its control
// socket lives in the topology's work directory, which teardown removes. vxctl runs in the root namespace: it
// only opens the socket file, and the daemon creates TAPs in its own namespace whoever asks.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's I/O engine (`vxswitchd --io`).
enum IOBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case uring, epoll

    var testDescription: String { "--io \(rawValue)" }
}

/// The built vxswitchd and vxctl executables.
enum SwitchBinaries {
    /// Where to look, in order: `$VX_BIN_DIR`, the test bundle's directory (`.build/<triple>/debug/`), then
    /// `<package root>/.build/debug/`.
    static let searchDirectories: [String] = {
        var directories: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["VX_BIN_DIR"] { directories.append(explicit) }
        var bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        bundle.deleteLastPathComponent()
        directories.append(bundle.path)
        directories.append(Bundle.main.bundleURL.path)
        var root = URL(fileURLWithPath: #filePath)  // <root>/Tests/VXSystemTests/SwitchNode.swift
        for _ in 0..<3 { root.deleteLastPathComponent() }
        directories.append(root.appendingPathComponent(".build/debug").path)
        return directories
    }()

    /// The absolute path of `name`, or nil when it was not built.
    static func find(_ name: String) -> String? {
        searchDirectories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// vxswitchd's path; a missing binary fails the test with what to do about it.
    static func vxswitchd() throws -> String { try require("vxswitchd") }

    /// vxctl's path; a missing binary fails the test with what to do about it.
    static func vxctl() throws -> String { try require("vxctl") }

    private static func require(_ name: String) throws -> String {
        guard let path = find(name) else {
            throw NetnsError.missingTool(
                "\(name) not found in \(searchDirectories.joined(separator: ", ")); "
                    + "run `swift build --build-tests` (or set VX_BIN_DIR)"
            )
        }
        return path
    }
}

/// How one host tunnels to its peers (`vxctl add-peer --encap/--gre-key`).
enum Tunnel: Sendable, Hashable, CustomTestStringConvertible {
    case vxlan
    case gre(key: String)  // "vni", "nvgre" or "none"

    /// The `add-peer` options selecting it.
    var arguments: [String] {
        switch self {
        case .vxlan: ["--encap", "vxlan"]
        case .gre(let key): ["--encap", "gre", "--gre-key", key]
        }
    }

    var testDescription: String {
        switch self {
        case .vxlan: "vxlan"
        case .gre(let key): "gre key=\(key)"
        }
    }
}

/// One running vxswitchd in `topology.hosts[host]`.
final class SwitchNode: Sendable {
    let topology: NetnsTopology
    let host: NetnsTopology.Host
    let backend: IOBackend
    /// The control socket (a file under the topology's work directory).
    let controlPath: String
    /// The daemon process; its stderr is the daemon's log.
    let process: SpawnedProcess
    private let vxctlPath: String

    private init(
        topology: NetnsTopology,
        host: NetnsTopology.Host,
        backend: IOBackend,
        controlPath: String,
        process: SpawnedProcess,
        vxctlPath: String
    ) {
        self.topology = topology
        self.host = host
        self.backend = backend
        self.controlPath = controlPath
        self.process = process
        self.vxctlPath = vxctlPath
    }

    /// Starts vxswitchd in host `index` (`--local` = `local`, by default the host's IPv4 underlay address; a test
    /// of the IPv6 underlay passes `Host.underlayIPv6Address`) and waits until its control socket exists and accepts
    /// a connection (a killed daemon may have left a stale socket file at the same path).
    /// `statePath` nil runs it with `--state none` (nothing persisted, TAPs removed at exit); tests of restarts
    /// give a path inside the topology's work directory, never the system default. `logName` names the log files
    /// (default `vxswitchd-h<index>`); a restarted daemon gets its own, so the first one's log is kept. `launcher`
    /// goes in front of the daemon's command (e.g. `taskset -c 0`).
    /// - Throws: when a binary is missing, or the daemon exits or is not ready within `timeout` (with its log).
    static func start(
        in topology: NetnsTopology,
        host index: Int,
        io backend: IOBackend,
        local: String? = nil,
        logLevel: String = "info",
        statePath: String? = nil,
        extraArguments: [String] = [],
        logName: String? = nil,
        launcher: [String] = [],
        timeout: Duration = .seconds(15)
    ) async throws -> SwitchNode {
        let daemon = try SwitchBinaries.vxswitchd()
        let vxctl = try SwitchBinaries.vxctl()
        let host = topology.hosts[index]
        let controlPath = "\(topology.workDirectory)/h\(index).sock"
        let process = try topology.spawn(
            launcher + [
                daemon, "--local", local ?? host.underlayAddress, "--control", controlPath, "--io", backend.rawValue,
                "--log-level", logLevel, "--state", statePath ?? "none",
            ] + extraArguments,
            in: host,
            name: logName ?? "vxswitchd-h\(index)"
        )
        let deadline = ContinuousClock.now + timeout
        while !acceptsConnections(controlPath) {
            if let status = process.exitStatus {
                throw NetnsError.unexpectedOutput(
                    "vxswitchd in \(host.namespace) exited with status \(status) before it was ready; "
                        + "stderr: \(process.stderr())"
                )
            }
            guard ContinuousClock.now < deadline else {
                throw NetnsError.timedOut(
                    "vxswitchd in \(host.namespace) not ready within \(timeout); stderr: \(process.stderr())"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return SwitchNode(
            topology: topology,
            host: host,
            backend: backend,
            controlPath: controlPath,
            process: process,
            vxctlPath: vxctl
        )
    }

    /// Starts one vxswitchd per host (with `extraArguments`, e.g. `--aging 2`) and peers every host with every
    /// other on `vni` (a full mesh).
    static func startMesh(
        in topology: NetnsTopology,
        io backend: IOBackend,
        vni: UInt32 = 42,
        tunnel: Tunnel = .vxlan,
        extraArguments: [String] = []
    ) async throws -> [SwitchNode] {
        var nodes: [SwitchNode] = []
        for host in topology.hosts {
            nodes.append(try await start(in: topology, host: host.index, io: backend, extraArguments: extraArguments))
        }
        for node in nodes {
            for other in topology.hosts where other.index != node.host.index {
                try await node.addPeer(other.underlayAddress, vni: vni, tunnel: tunnel)
            }
        }
        return nodes
    }

    /// True when a Unix stream socket at `path` accepts a connection (closed again at once).
    static func acceptsConnections(_ path: String) -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                connect(fd, generic, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    // MARK: vxctl

    /// Runs `vxctl --control <socket> <arguments>`; a non-zero exit is a result, not an error.
    func vxctl(_ arguments: [String], timeout: Duration = .seconds(20)) async throws -> CommandResult {
        try await ProcessRunner.run([vxctlPath, "--control", controlPath] + arguments, timeout: timeout)
    }

    /// Runs vxctl and requires success.
    /// - Returns: its standard output.
    @discardableResult
    func ctl(_ arguments: String...) async throws -> String {
        try await ctl(arguments)
    }

    @discardableResult
    func ctl(_ arguments: [String]) async throws -> String {
        let result = try await vxctl(arguments)
        guard result.succeeded else {
            throw NetnsError.unexpectedOutput("\(result)\nvxswitchd log (\(host.namespace)):\n\(process.stderr())")
        }
        return result.stdout
    }

    /// `vxctl add-peer ADDRESS --vni VNI` with the tunnel's options.
    func addPeer(_ address: String, vni: UInt32, tunnel: Tunnel = .vxlan) async throws {
        try await ctl(["add-peer", address, "--vni", "\(vni)"] + tunnel.arguments)
    }

    /// `vxctl add-port TAP --vni VNI`, then moves the TAP into a new container of this host as `eth0` with
    /// `address`/24.
    /// - Parameters:
    ///   - tap: the TAP's name in the host namespace.
    ///   - vni: the port's VNI.
    ///   - address: the container's IPv4 address.
    ///   - mtu: `--mtu` for the port, and the container interface's MTU (nil: the daemon's default, 1450).
    /// - Returns: the container interface, its MAC read back from the kernel.
    func addContainerPort(
        _ tap: String,
        vni: UInt32,
        address: String,
        mtu: Int? = nil
    ) async throws -> NetnsTopology.ContainerInterface {
        var arguments = ["add-port", tap, "--vni", "\(vni)"]
        if let mtu { arguments += ["--mtu", "\(mtu)"] }
        try await ctl(arguments)
        let container = try await topology.addContainer(host: host.index)
        let interface = try await topology.plugInterface(tap, into: container, address: address, mtu: mtu)
        // The switch notices the move within a second and swaps the interface's qdisc for noqueue, which drops
        // what is sent in that instant (docs/networks-and-attach.md, "Ports moved by hand"): wait for it, so no
        // test's first packets race the swap.
        let settled = try await waitUntil(timeout: .seconds(5)) {
            try await self.show().ports.first { $0.name.value == tap }?.location != nil
        }
        try #require(settled != nil, "the switch did not notice \(tap) moving into \(container.namespace): \(log)")
        return interface
    }

    /// `vxctl show --json`, as printed.
    func showJSON() async throws -> String {
        try await ctl("show", "--json")
    }

    /// `vxctl fdb [--vni VNI] --json`, decoded.
    func fdb(vni: UInt32? = nil) async throws -> [FDBEntry] {
        var arguments = ["fdb", "--json"]
        if let vni { arguments += ["--vni", "\(vni)"] }
        let text = try await ctl(arguments)
        return try JSONDecoder().decode(FDBResult.self, from: Data(text.utf8)).entries
    }

    /// `vxctl stats --json`, decoded.
    func stats() async throws -> StatsResult {
        let text = try await ctl("stats", "--json")
        return try JSONDecoder().decode(StatsResult.self, from: Data(text.utf8))
    }

    /// The FDB as `MAC -> destination` text (`port tap0`, `peer 192.0.2.11`) for one VNI, MACs lowercase.
    func destinations(vni: UInt32) async throws -> [String: String] {
        var map: [String: String] = [:]
        for entry in try await fdb(vni: vni) { map["\(entry.mac)".lowercased()] = "\(entry.destination)" }
        return map
    }

    /// The daemon's log so far (stderr), for failure messages.
    var log: String { process.stderr() }
}

// MARK: Checks shared by the suites

extension NetnsTopology {
    /// Pings `address` from `source` and records an issue naming both ends unless every reply came back.
    func expectPing(
        from source: NetnsTopology.ContainerInterface,
        to address: String,
        count: Int = 3,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let result = try await ping(from: source, to: address, count: count)
        #expect(
            result.allReceived,
            "\(source.address ?? source.namespace) -> \(address): \(result.output)",
            sourceLocation: sourceLocation
        )
    }

    /// A counter of the host's IPv4 stack from `/proc/net/snmp` (per namespace), e.g. `("Udp", "InDatagrams")`.
    func snmpCounter(_ group: String, _ name: String, in place: some NetnsPlace) async throws -> Int {
        let text = try await check(["cat", "/proc/net/snmp"], in: place)
        // Two lines per group: "Udp: InDatagrams NoPorts ..." then "Udp: 12 0 ...".
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("\(group): ") }
        guard lines.count == 2 else { throw NetnsError.unexpectedOutput("/proc/net/snmp has no \(group) lines") }
        let names = lines[0].split(separator: " ").dropFirst()
        let values = lines[1].split(separator: " ").dropFirst()
        guard let index = names.firstIndex(of: Substring(name)), let value = Int(values[index]) else {
            throw NetnsError.unexpectedOutput("/proc/net/snmp has no \(group) \(name)")
        }
        return value
    }
}
