// NetnsTopology: hosts, an underlay and containers built from Linux network namespaces, for system tests of the
// daemon (and of the kernel's own VXLAN as the interop peer and baseline).
//
// Layout for run id R with N hosts (every name below is a namespace; nothing is created in the root namespace):
//
//     vx-R-ul            underlay segment: bridge br0, one veth port h<i> per host, underlay MTU on all of it
//       |  veth h<i> <-> ul0
//     vx-R-h<i>          host i: ul0 = 192.0.2.(10+i)/24 (and 2001:db8::(10+i)/64 with `underlayIPv6`), lo up;
//                        the daemon (or the kernel datapath) lives here
//       |  TAP moved in, or veth vc<m> <-> eth0
//     vx-R-h<i>-c<m>     container m of host i: eth0 = 10.x/24, lo up
//
// Traffic never leaves these namespaces: underlay addresses are TEST-NET-1, containers use 10.x, and there is no
// link to the root namespace. IPv6 is off in every namespace by default so that router solicitations and MLD
// reports do not show up as unexpected flooded frames in switch tests.
//
// An IPv6 underlay is opt-in (`underlayIPv6: true`): IPv6 is then turned back on for each host's `ul0` alone, which
// gets 2001:db8::(10+i)/64 (the documentation prefix, RFC 3849) next to its IPv4 address, without duplicate address
// detection so the address is usable at once. The containers, the hosts' other interfaces and the underlay bridge
// keep IPv6 off (unless `disableIPv6` is false): a bridge forwards IPv6 frames at layer 2 whatever its own IPv6
// setting. Its multicast snooping is turned off, so neighbour solicitations to solicited-node groups are flooded to
// every host rather than depend on the bridge having seen each host's MLD report in time.
//
// Lifetime: `teardown()` stops every process spawned through the topology (SIGTERM, then SIGKILL by PID), then
// deletes every namespace named `vx-R-*` (which deletes their interfaces, TAPs included). It is idempotent, and
// runs from `withNetnsTopology` on every exit path and from `deinit` as a last resort. If the test process itself
// dies, `tools/netns-cleanup.sh R` removes what is left; the run id is printed when the topology is created.
//
// Thread-safety: the topology is Sendable; its mutable bookkeeping sits behind one Mutex. Setup calls are meant to
// be made from one test task, in order.

import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Anything that names a network namespace: a host, a container, a container interface, or a raw name.
public protocol NetnsPlace: Sendable {
    /// The namespace name, as `ip netns` knows it.
    var namespace: String { get }
}

/// A test topology made of network namespaces. See the file header for the layout.
public final class NetnsTopology: Sendable {
    /// A namespace given by name, for namespaces a test creates itself under `namespacePrefix`.
    public struct Namespace: NetnsPlace, Hashable {
        public let namespace: String
        public init(_ name: String) { self.namespace = name }
    }

    /// One host: a namespace on the underlay segment.
    public struct Host: NetnsPlace, Hashable {
        /// Position in `hosts`, from 0.
        public let index: Int
        /// `vx-<run id>-h<index>`.
        public let namespace: String
        /// The host's underlay interface (`ul0`).
        public let underlayInterface: String
        /// The host's underlay IPv4 address, `192.0.2.(10+index)`.
        public let underlayAddress: String
        /// Prefix length of the underlay subnet (24).
        public let underlayPrefixLength: Int
        /// The host's underlay IPv6 address, `2001:db8::(10+index)` (the IPv4 address's last octet written as the
        /// last group, so host 0 is `2001:db8::10`; RFC 5952 form), or nil when the topology was built without
        /// `underlayIPv6`.
        public let underlayIPv6Address: String?
        /// Prefix length of the IPv6 underlay subnet (64).
        public let underlayIPv6PrefixLength: Int

        /// The host's underlay address in `family`.
        /// - Parameter family: IPv4 or IPv6.
        /// - Returns: `underlayAddress` or `underlayIPv6Address`; nil for IPv6 without `underlayIPv6`.
        public func underlayAddress(_ family: UnderlayFamily) -> String? {
            switch family {
            case .ipv4: underlayAddress
            case .ipv6: underlayIPv6Address
            }
        }
    }

    /// An address family of the underlay: what the hosts' underlay addresses, and tunnels between them, use.
    public enum UnderlayFamily: String, Sendable, Hashable, CaseIterable {
        case ipv4, ipv6
    }

    /// One container: a namespace that gets interfaces through `plugInterface` or `connectVeth`.
    public struct Container: NetnsPlace, Hashable {
        /// The host this container belongs to.
        public let host: Int
        /// Position among this host's containers, from 0.
        public let index: Int
        /// `vx-<run id>-h<host>-c<index>`.
        public let namespace: String
    }

    /// An interface inside a container, as configured.
    public struct ContainerInterface: NetnsPlace, Hashable {
        /// The container it lives in.
        public let container: Container
        /// Its name inside the container (`eth0` by default).
        public let name: String
        /// Its IPv4 address without prefix, or nil when it has none.
        public let address: String?
        /// Prefix length of `address`.
        public let prefixLength: Int
        /// Its MAC address as read back from the kernel (lowercase, colon-separated).
        public let mac: String
        /// Its MTU as read back from the kernel.
        public let mtu: Int
        /// For a veth: the peer's name in the host namespace; nil for a moved interface (TAP).
        public let hostInterface: String?

        public var namespace: String { container.namespace }
    }

    /// The Linux kernel's own VXLAN datapath on one host: `vxlan<vni>` enslaved to bridge `br<vni>`.
    public struct KernelVXLAN: Sendable, Hashable {
        /// The host it runs on.
        public let host: Int
        /// The VXLAN network identifier.
        public let vni: UInt32
        /// The vxlan device name (`vxlan<vni>`).
        public let device: String
        /// The bridge joining the vxlan device and container veths (`br<vni>`); pass to `connectVeth(bridge:)`.
        public let bridge: String
        /// Underlay addresses this host floods to (head-end replication list).
        public let remotes: [String]
        /// UDP destination port.
        public let dstPort: Int
        /// The underlay family of `local` and `remotes`.
        public let family: UnderlayFamily
    }

    /// Bookkeeping for teardown; guarded by `state`.
    private struct State {
        var namespaces: [String] = []  // every namespace we created, in creation order
        var processes: [SpawnedProcess] = []  // every process spawned through us
        var containersPerHost: [Int: Int] = [:]  // next container index per host
        var spawnCount = 0  // names log files uniquely
        var tornDown = false  // set by the first teardown()
    }

    /// Random per topology (see `NetnsEnvironment.newRunID()`).
    public let runID: String
    /// `vx-<run id>-`: every namespace of this topology starts with it.
    public let namespacePrefix: String
    /// The underlay segment's namespace, `vx-<run id>-ul`.
    public let underlayNamespace: String
    /// The bridge inside `underlayNamespace` (`br0`).
    public let underlayBridge = "br0"
    /// Underlay MTU on every underlay link.
    public let underlayMTU: Int
    /// Whether the hosts' `ul0` carry IPv6 too (`Host.underlayIPv6Address`; see the file header).
    public let underlayIPv6: Bool
    /// The hosts, index i at position i.
    public let hosts: [Host]
    /// Log files of spawned processes and scratch space; removed on teardown unless `VX_NETNS_KEEP=1`.
    public let workDirectory: String

    private let state = Mutex(State())
    private let trace = ProcessInfo.processInfo.environment["VX_NETNS_TRACE"] == "1"

    /// Builds the underlay and `hostCount` hosts. Prefer `withNetnsTopology`, which also tears down.
    /// - Parameters:
    ///   - hostCount: number of hosts, 1...200.
    ///   - underlayMTU: MTU of the underlay links (default 1500).
    ///   - disableIPv6: turn IPv6 off in every namespace this topology creates (default true; see file header).
    ///   - underlayIPv6: give each host's `ul0` IPv6 and the address `2001:db8::(10+i)/64` (default false; see
    ///     the file header).
    ///   - runID: override the random run id (tests of the helper itself only).
    /// - Throws: `NetnsError.missingTool` when the machine cannot run netns tests, or the first failing command;
    ///   everything already created is torn down before the error propagates.
    public init(
        hosts hostCount: Int,
        underlayMTU: Int = 1500,
        disableIPv6: Bool = true,
        underlayIPv6: Bool = false,
        runID: String? = nil
    ) async throws {
        guard (1...200).contains(hostCount) else {
            throw NetnsError.invalidArgument("hostCount \(hostCount) not in 1...200")
        }
        if let reason = NetnsEnvironment.unavailableReason { throw NetnsError.missingTool(reason) }
        let id = runID ?? NetnsEnvironment.newRunID()
        self.runID = id
        self.namespacePrefix = "vx-\(id)-"
        self.underlayNamespace = "vx-\(id)-ul"
        self.underlayMTU = underlayMTU
        self.underlayIPv6 = underlayIPv6
        self.hosts = (0..<hostCount).map { i in
            Host(
                index: i,
                namespace: "vx-\(id)-h\(i)",
                underlayInterface: "ul0",
                underlayAddress: "192.0.2.\(10 + i)",
                underlayPrefixLength: 24,
                underlayIPv6Address: underlayIPv6 ? "2001:db8::\(10 + i)" : nil,
                underlayIPv6PrefixLength: 64
            )
        }
        self.workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("vx-\(id)").path
        self.disableIPv6 = disableIPv6
        print("NetnsTopology: run id \(id), \(hostCount) host(s); after a hard kill: tools/netns-cleanup.sh \(id)")
        do {
            try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
            try await addNamespace(underlayNamespace)
            try await ip("-n", underlayNamespace, "link", "add", underlayBridge, "type", "bridge")
            try await ip("-n", underlayNamespace, "link", "set", underlayBridge, "mtu", "\(underlayMTU)", "up")
            if underlayIPv6 {
                try await ip(
                    "-n",
                    underlayNamespace,
                    "link",
                    "set",
                    underlayBridge,
                    "type",
                    "bridge",
                    "mcast_snooping",
                    "0"
                )
            }
            for host in hosts {
                try await addNamespace(host.namespace)
                let port = "h\(host.index)"
                try await ip(
                    "-n",
                    underlayNamespace,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    host.underlayInterface,
                    "netns",
                    host.namespace
                )
                try await ip(
                    "-n",
                    underlayNamespace,
                    "link",
                    "set",
                    port,
                    "master",
                    underlayBridge,
                    "mtu",
                    "\(underlayMTU)",
                    "up"
                )
                try await ip("-n", host.namespace, "link", "set", host.underlayInterface, "mtu", "\(underlayMTU)", "up")
                try await ip(
                    "-n",
                    host.namespace,
                    "addr",
                    "add",
                    "\(host.underlayAddress)/\(host.underlayPrefixLength)",
                    "dev",
                    host.underlayInterface
                )
                if let address = host.underlayIPv6Address {
                    try await enableIPv6(on: host.underlayInterface, in: host.namespace)
                    try await ip(
                        "-n",
                        host.namespace,
                        "-6",
                        "addr",
                        "add",
                        "\(address)/\(host.underlayIPv6PrefixLength)",
                        "dev",
                        host.underlayInterface,
                        "nodad"
                    )
                }
            }
        } catch {
            teardown()
            throw error
        }
    }

    private let disableIPv6: Bool

    deinit { teardown() }

    // MARK: Containers

    /// Creates an empty container namespace `vx-<run id>-h<host>-c<next index>` with loopback up.
    /// - Parameter host: the host index the container belongs to.
    /// - Returns: the container; give it interfaces with `plugInterface` or `connectVeth`.
    public func addContainer(host: Int) async throws -> Container {
        try checkHost(host)
        let index = state.withLock { state in
            let next = state.containersPerHost[host, default: 0]
            state.containersPerHost[host] = next + 1
            return next
        }
        let container = Container(host: host, index: index, namespace: "\(namespacePrefix)h\(host)-c\(index)")
        try await addNamespace(container.namespace)
        return container
    }

    /// Moves an existing interface (typically a TAP the daemon created in the host namespace; a TAP keeps
    /// working after it changes namespace) into `container`, renames and configures it, and brings it up.
    /// - Parameters:
    ///   - name: the interface's name in the host namespace.
    ///   - container: where it goes; must belong to the same host.
    ///   - newName: its name inside the container (default `eth0`; at most 15 bytes).
    ///   - address: IPv4 address without prefix, or nil for none.
    ///   - prefixLength: prefix length for `address` (default 24).
    ///   - mac: MAC address to set, or nil to keep the current one.
    ///   - mtu: MTU to set, or nil to keep the current one.
    /// - Returns: the configured interface, with MAC and MTU read back from the kernel.
    public func plugInterface(
        _ name: String,
        into container: Container,
        as newName: String = "eth0",
        address: String?,
        prefixLength: Int = 24,
        mac: String? = nil,
        mtu: Int? = nil
    ) async throws -> ContainerInterface {
        try checkInterfaceName(newName)
        let hostNS = hosts[container.host].namespace
        try await ip("-n", hostNS, "link", "set", name, "netns", container.namespace)
        if newName != name {
            try await ip("-n", container.namespace, "link", "set", name, "name", newName)
        }
        return try await configure(
            newName,
            in: container,
            address: address,
            prefixLength: prefixLength,
            mac: mac,
            mtu: mtu,
            hostInterface: nil
        )
    }

    /// Joins `container` to its host with a veth pair (for kernel-datapath hosts and other peers that attach
    /// to a bridge), configures the container end and brings both ends up.
    /// - Parameters:
    ///   - container: the container.
    ///   - newName: the container end's name (default `eth0`).
    ///   - hostInterface: the host end's name (default `vc<container index>`, plus the container end's name
    ///     when that is not `eth0`).
    ///   - address: IPv4 address of the container end without prefix, or nil for none.
    ///   - prefixLength: prefix length for `address` (default 24).
    ///   - mac: MAC address of the container end, or nil for a random one.
    ///   - mtu: MTU of both ends, or nil for the default (1500).
    ///   - bridge: a bridge in the host namespace to enslave the host end to (e.g. `KernelVXLAN.bridge`).
    /// - Returns: the configured interface, with MAC and MTU read back from the kernel.
    public func connectVeth(
        _ container: Container,
        as newName: String = "eth0",
        hostInterface: String? = nil,
        address: String?,
        prefixLength: Int = 24,
        mac: String? = nil,
        mtu: Int? = nil,
        bridge: String? = nil
    ) async throws -> ContainerInterface {
        let hostNS = hosts[container.host].namespace
        let hostEnd = hostInterface ?? (newName == "eth0" ? "vc\(container.index)" : "vc\(container.index)\(newName)")
        try checkInterfaceName(newName)
        try checkInterfaceName(hostEnd)
        try await ip(
            "-n",
            hostNS,
            "link",
            "add",
            hostEnd,
            "type",
            "veth",
            "peer",
            "name",
            newName,
            "netns",
            container.namespace
        )
        var hostArgs = ["-n", hostNS, "link", "set", hostEnd]
        if let mtu { hostArgs += ["mtu", "\(mtu)"] }
        if let bridge { hostArgs += ["master", bridge] }
        try await ip(hostArgs + ["up"])
        return try await configure(
            newName,
            in: container,
            address: address,
            prefixLength: prefixLength,
            mac: mac,
            mtu: mtu,
            hostInterface: hostEnd
        )
    }

    // MARK: Kernel VXLAN peer

    /// Makes `host` switch with the Linux kernel's own datapath: a `vxlan` device (VNI `vni`, `dstport`,
    /// `local` = this host's underlay address in `family`, over `ul0`) enslaved to a new bridge `br<vni>`. The
    /// first remote goes in `remote`; further remotes are appended to the all-zeros FDB entry (head-end
    /// replication). Attach containers with `connectVeth(_:bridge:)`. The kernel sizes the device from `ul0`: the
    /// underlay MTU minus 50 bytes over IPv4, minus 70 over IPv6. Its other options are the kernel's defaults; over
    /// IPv6 that means it sends and requires outer UDP checksums (`udp6zerocsumtx`/`udp6zerocsumrx` off).
    /// - Parameters:
    ///   - host: the host index.
    ///   - vni: the VXLAN network identifier (default 42).
    ///   - remoteHosts: host indices to tunnel to (default: every other host).
    ///   - dstPort: UDP destination port (default 4789).
    ///   - family: the underlay family of the tunnel (default IPv4); IPv6 needs a topology built with
    ///     `underlayIPv6`.
    /// - Returns: the device and bridge names.
    public func addKernelVXLAN(
        host: Int,
        vni: UInt32 = 42,
        remoteHosts: [Int]? = nil,
        dstPort: Int = 4789,
        family: UnderlayFamily = .ipv4
    ) async throws -> KernelVXLAN {
        try checkHost(host)
        let me = hosts[host]
        let remoteIndices = remoteHosts ?? hosts.map(\.index).filter { $0 != host }
        for index in remoteIndices { try checkHost(index) }
        guard let local = me.underlayAddress(family) else {
            throw NetnsError.invalidArgument("an \(family) kernel VXLAN needs a topology built with underlayIPv6")
        }
        let remotes = remoteIndices.compactMap { hosts[$0].underlayAddress(family) }
        let vxlan = KernelVXLAN(
            host: host,
            vni: vni,
            device: "vxlan\(vni)",
            bridge: "br\(vni)",
            remotes: remotes,
            dstPort: dstPort,
            family: family
        )
        var add = [
            "-n", me.namespace, "link", "add", vxlan.device, "type", "vxlan", "id", "\(vni)",
            "dstport", "\(dstPort)", "local", local, "dev", me.underlayInterface,
        ]
        if let first = remotes.first { add += ["remote", first] }
        try await ip(add)
        for remote in remotes.dropFirst() {
            guard let bridgeTool = NetnsEnvironment.bridgePath else {
                throw NetnsError.missingTool("bridge (iproute2)")
            }
            try await check(
                [
                    bridgeTool, "-n", me.namespace, "fdb", "append", "00:00:00:00:00:00",
                    "dev", vxlan.device, "dst", remote,
                ],
                timeout: .seconds(10)
            )
        }
        try await ip("-n", me.namespace, "link", "add", vxlan.bridge, "type", "bridge")
        try await ip("-n", me.namespace, "link", "set", vxlan.device, "master", vxlan.bridge, "up")
        try await ip("-n", me.namespace, "link", "set", vxlan.bridge, "up")
        return vxlan
    }

    // MARK: Commands and processes

    /// Runs `arguments` inside `place`'s namespace (`ip netns exec`) and waits at most `timeout`.
    /// - Returns: the result; a non-zero status is not thrown (use `check` for that).
    public func run(
        _ arguments: [String],
        in place: some NetnsPlace,
        timeout: Duration = .seconds(30)
    ) async throws -> CommandResult {
        try await run(netnsExec(place.namespace, arguments), timeout: timeout)
    }

    /// Runs `arguments` inside `place`'s namespace and requires success.
    /// - Returns: the command's standard output.
    /// - Throws: `NetnsError.commandFailed` on a non-zero status or timeout.
    @discardableResult
    public func check(
        _ arguments: [String],
        in place: some NetnsPlace,
        timeout: Duration = .seconds(30)
    ) async throws -> String {
        try await check(netnsExec(place.namespace, arguments), timeout: timeout)
    }

    /// Starts a long-running process inside `place`'s namespace. Teardown stops it (SIGTERM, then SIGKILL by
    /// PID) if the test has not; its output is in `workDirectory/<name>.out|.err`.
    /// - Parameters:
    ///   - arguments: the argument vector, executable first (a bare name is resolved in `PATH`).
    ///   - place: where to run it.
    ///   - name: log file base name (default: the executable's name plus a counter).
    /// - Returns: the handle, with its PID.
    public func spawn(_ arguments: [String], in place: some NetnsPlace, name: String? = nil) throws -> SpawnedProcess {
        precondition(!arguments.isEmpty, "empty argument vector")
        let serial = state.withLock { state in
            state.spawnCount += 1
            return state.spawnCount
        }
        let base = name ?? "\((arguments[0] as NSString).lastPathComponent)-\(serial)"
        let full = netnsExec(place.namespace, arguments)
        traceCommand(full)
        return try state.withLock { state in
            guard !state.tornDown else { throw NetnsError.invalidArgument("topology \(runID) is torn down") }
            let process = try ProcessRunner.spawn(full, logDirectory: workDirectory, name: base)
            state.processes.append(process)
            return process
        }
    }

    /// Names every namespace of this run that exists right now (ours, and any a test added under the prefix).
    public func existingNamespaces() -> [String] {
        Self.existingNamespaces(withPrefix: namespacePrefix)
    }

    /// Names every namespace whose name starts with `prefix`, from `ip netns list`.
    public static func existingNamespaces(withPrefix prefix: String) -> [String] {
        guard let ipPath = NetnsEnvironment.ipPath else { return [] }
        let result = ProcessRunner.runBlocking([ipPath, "netns", "list"], timeout: .seconds(10))
        return result.stdout.split(separator: "\n").compactMap { line in
            // Lines look like "vx-1a2b3c-h0 (id: 3)" or just "vx-1a2b3c-h0".
            guard let name = line.split(separator: " ").first, name.hasPrefix(prefix) else { return nil }
            return String(name)
        }
    }

    // MARK: Teardown

    /// Stops every spawned process, then deletes every namespace of this run (`vx-<run id>-*`), which deletes
    /// the interfaces inside them. Idempotent and blocking, so it is safe from `defer` and `deinit`.
    public func teardown() {
        let processes: [SpawnedProcess]? = state.withLock { state in
            guard !state.tornDown else { return nil }
            state.tornDown = true
            return state.processes
        }
        guard let processes else { return }
        // SIGTERM everything first so the grace periods overlap, then SIGKILL whatever is left.
        for process in processes { process.signal(SIGTERM) }
        let grace = ContinuousClock.now + .seconds(2)
        _ = ProcessRunner.blockingWait(until: grace, while: { processes.contains { $0.isRunning } })
        for process in processes { process.stop(grace: .zero) }

        let registered = state.withLock { $0.namespaces }
        let found = existingNamespaces()
        let all = registered + found.filter { !registered.contains($0) }
        guard let ipPath = NetnsEnvironment.ipPath else { return }
        // Deleting a namespace does not kill processes inside it, and they would keep it alive. Anything in our
        // namespaces was started by this test (e.g. backgrounded by a shell run through `run`), so stop those
        // PIDs too, by PID.
        for namespace in found {
            let pids = ProcessRunner.runBlocking([ipPath, "netns", "pids", namespace], timeout: .seconds(10))
            for pid in pids.stdout.split(separator: "\n").compactMap({ Int32($0) }) where pid != getpid() {
                kill(pid, SIGKILL)
            }
        }
        // Children before parents is not required (a namespace holds no reference to another), but deleting
        // containers first makes a partial failure leave the most obviously ours behind.
        for namespace in all.reversed() where found.contains(namespace) {
            let result = ProcessRunner.runBlocking([ipPath, "netns", "del", namespace], timeout: .seconds(10))
            if !result.succeeded {
                FileHandle.standardError.write(Data("NetnsTopology teardown: \(result)\n".utf8))
            }
        }
        if ProcessInfo.processInfo.environment["VX_NETNS_KEEP"] != "1" {
            try? FileManager.default.removeItem(atPath: workDirectory)
        }
    }

    // MARK: Internals

    func run(_ arguments: [String], timeout: Duration) async throws -> CommandResult {
        traceCommand(arguments)
        return try await ProcessRunner.run(arguments, timeout: timeout)
    }

    @discardableResult
    func check(_ arguments: [String], timeout: Duration) async throws -> String {
        let result = try await run(arguments, timeout: timeout)
        guard result.succeeded else { throw NetnsError.commandFailed(result) }
        return result.stdout
    }

    /// Runs `ip <arguments>` and requires success.
    @discardableResult
    func ip(_ arguments: String...) async throws -> String {
        try await ip(arguments)
    }

    @discardableResult
    func ip(_ arguments: [String]) async throws -> String {
        guard let ipPath = NetnsEnvironment.ipPath else { throw NetnsError.missingTool("ip (iproute2)") }
        return try await check([ipPath] + arguments, timeout: .seconds(10))
    }

    private func netnsExec(_ namespace: String, _ arguments: [String]) -> [String] {
        [NetnsEnvironment.ipPath ?? "ip", "netns", "exec", namespace] + arguments
    }

    /// Turns IPv6 on for one interface (`net.ipv6.conf.<name>.disable_ipv6 = 0`), whatever the namespace's default.
    /// Unlike `addNamespace`'s best effort, this must work: the caller is about to give it an IPv6 address.
    private func enableIPv6(on interface: String, in namespace: String) async throws {
        try await check(
            netnsExec(namespace, ["sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/\(interface)/disable_ipv6"]),
            timeout: .seconds(10)
        )
    }

    /// Creates a namespace under our prefix: lo up, IPv6 off unless asked otherwise. Registered before it is
    /// created, so teardown finds it even if configuration fails halfway.
    private func addNamespace(_ name: String) async throws {
        precondition(name.hasPrefix(namespacePrefix), "namespace \(name) outside our prefix \(namespacePrefix)")
        try state.withLock { state in
            guard !state.tornDown else { throw NetnsError.invalidArgument("topology \(runID) is torn down") }
            state.namespaces.append(name)
        }
        try await ip("netns", "add", name)
        try await ip("-n", name, "link", "set", "lo", "up")
        if disableIPv6 {
            // Best effort: a kernel without IPv6 has no such files, and that is fine.
            _ = try await run(
                netnsExec(
                    name,
                    [
                        "sh", "-c",
                        "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                    ]
                ),
                timeout: .seconds(10)
            )
        }
    }

    private func configure(
        _ name: String,
        in container: Container,
        address: String?,
        prefixLength: Int,
        mac: String?,
        mtu: Int?,
        hostInterface: String?
    ) async throws -> ContainerInterface {
        var set = ["-n", container.namespace, "link", "set", name]
        if let mac { set += ["address", mac] }
        if let mtu { set += ["mtu", "\(mtu)"] }
        try await ip(set)
        if let address {
            try await ip("-n", container.namespace, "addr", "add", "\(address)/\(prefixLength)", "dev", name)
        }
        try await ip("-n", container.namespace, "link", "set", name, "up")
        let (readMAC, readMTU) = try await linkInfo(name, in: container.namespace)
        return ContainerInterface(
            container: container,
            name: name,
            address: address,
            prefixLength: prefixLength,
            mac: readMAC,
            mtu: readMTU,
            hostInterface: hostInterface
        )
    }

    /// Reads an interface's MAC and MTU from `ip -o link show`.
    private func linkInfo(_ name: String, in namespace: String) async throws -> (String, Int) {
        let line = try await ip("-o", "-n", namespace, "link", "show", "dev", name)
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\\" || $0 == "\n" }).map(String.init)
        guard let mtuIndex = words.firstIndex(of: "mtu"), mtuIndex + 1 < words.count,
            let mtu = Int(words[mtuIndex + 1]),
            let etherIndex = words.firstIndex(of: "link/ether"), etherIndex + 1 < words.count
        else { throw NetnsError.unexpectedOutput("ip link show \(name): \(line)") }
        return (words[etherIndex + 1], mtu)
    }

    private func checkHost(_ host: Int) throws {
        guard hosts.indices.contains(host) else {
            throw NetnsError.invalidArgument("host \(host) not in 0..<\(hosts.count)")
        }
    }

    private func checkInterfaceName(_ name: String) throws {
        // IFNAMSIZ is 16 including the terminating NUL.
        guard !name.isEmpty, name.utf8.count <= 15, !name.contains("/"), !name.contains(" ") else {
            throw NetnsError.invalidArgument("interface name \"\(name)\" (1...15 bytes, no '/' or ' ')")
        }
    }

    private func traceCommand(_ arguments: [String]) {
        if trace { FileHandle.standardError.write(Data("+ \(arguments.joined(separator: " "))\n".utf8)) }
    }
}

/// Builds a `NetnsTopology`, runs `body` with it, and tears it down on every exit path (return or throw).
/// - Parameters:
///   - hosts: number of hosts.
///   - underlayMTU: MTU of the underlay links (default 1500).
///   - disableIPv6: turn IPv6 off in every namespace (default true).
///   - underlayIPv6: give the hosts' underlay IPv6 addresses too (default false; see `NetnsTopology.init`).
///   - body: the test.
/// - Returns: whatever `body` returns.
public func withNetnsTopology<T>(
    hosts: Int,
    underlayMTU: Int = 1500,
    disableIPv6: Bool = true,
    underlayIPv6: Bool = false,
    _ body: (NetnsTopology) async throws -> T
) async throws -> T {
    let topology = try await NetnsTopology(
        hosts: hosts,
        underlayMTU: underlayMTU,
        disableIPv6: disableIPv6,
        underlayIPv6: underlayIPv6
    )
    defer { topology.teardown() }
    return try await body(topology)
}
