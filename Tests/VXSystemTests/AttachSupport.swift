// Helpers for the attach system tests (AttachSystemTests.swift): networks, attach and leases through vxctl with
// their JSON decoded, the three listings a refused request must leave alone, the interface a container sees, a
// vxctl run timed to the sub-millisecond, and a ping whose replies are listed by sequence number.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

// MARK: vxctl for networks, attach and leases

extension SwitchNode {
    /// `vxctl network create NAME --vni VNI --subnet SUBNET [--range R] [--gateway G] [--dhcp]`, decoded.
    @discardableResult
    func createNetwork(
        _ name: String,
        vni: UInt32,
        subnet: String,
        range: String? = nil,
        gateway: String? = nil,
        dhcp: Bool = false
    ) async throws -> NetworkInfo {
        var arguments = ["network", "create", name, "--vni", "\(vni)", "--subnet", subnet, "--json"]
        if let range { arguments += ["--range", range] }
        if let gateway { arguments += ["--gateway", gateway] }
        if dhcp { arguments.append("--dhcp") }
        return try decode(NetworkInfo.self, try await ctl(arguments))
    }

    /// `vxctl attach` with `--json`, run by `TimedCommand` so the wall time is exact, and required to succeed.
    /// - Returns: the attachment as the daemon reported it, and how long the whole vxctl run took.
    @discardableResult
    func attach(
        _ network: String,
        _ container: ContainerReference,
        ifname: String? = nil,
        ip: String? = nil,
        mac: String? = nil,
        mtu: Int? = nil,
        gateway: String? = nil
    ) async throws -> (attachment: AttachmentInfo, wallTime: Duration) {
        var arguments = ["attach", network] + container.vxctlArguments + ["--json"]
        if let ifname { arguments += ["--ifname", ifname] }
        if let ip { arguments += ["--ip", ip] }
        if let mac { arguments += ["--mac", mac] }
        if let mtu { arguments += ["--mtu", "\(mtu)"] }
        if let gateway { arguments += ["--gateway", gateway] }
        let result = try await timedVxctl(arguments)
        guard result.succeeded else {
            throw NetnsError.unexpectedOutput("\(result)\nvxswitchd log (\(host.namespace)):\n\(log)")
        }
        return (try decode(AttachmentInfo.self, result.stdout), result.elapsed)
    }

    /// Runs vxctl against this daemon through `TimedCommand` (exact wall time; a non-zero exit is a result).
    func timedVxctl(_ arguments: [String]) async throws -> TimedCommand.Result {
        try await TimedCommand.run(
            [try SwitchBinaries.vxctl(), "--control", controlPath] + arguments,
            scratch: topology.workDirectory
        )
    }

    /// `vxctl detach ... --json`, decoded; required to succeed.
    func detach(_ container: ContainerReference, ifname: String? = nil) async throws -> [AttachmentInfo] {
        var arguments = ["detach"] + container.vxctlArguments + ["--json"]
        if let ifname { arguments += ["--ifname", ifname] }
        return try decode(DetachResult.self, try await ctl(arguments)).detached
    }

    /// `vxctl leases [--network NAME] --json`, decoded.
    func leases(network: String? = nil) async throws -> [LeaseInfo] {
        var arguments = ["leases", "--json"]
        if let network { arguments += ["--network", network] }
        return try decode(LeasesResult.self, try await ctl(arguments)).leases
    }

    /// `vxctl network ls --json`, decoded.
    func networks() async throws -> [NetworkInfo] {
        try decode(NetworkListResult.self, try await ctl("network", "ls", "--json")).networks
    }

    /// `vxctl show --json`, decoded.
    func show() async throws -> ShowResult {
        try decode(ShowResult.self, try await showJSON())
    }

    /// `show`, `leases` and `network ls` as printed with `--json`: what a refused request, or a restart, must leave
    /// exactly as it was.
    func listings() async throws -> Listings {
        Listings(
            show: try await showJSON(),
            leases: try await ctl("leases", "--json"),
            networks: try await ctl("network", "ls", "--json")
        )
    }

    private func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw NetnsError.unexpectedOutput("cannot decode \(type) (\(error)) from: \(text)")
        }
    }
}

/// The daemon's state as three listings, compared as printed.
struct Listings: Equatable, CustomStringConvertible {
    var show: String
    var leases: String
    var networks: String

    var description: String { "show:\n\(show)\nleases:\n\(leases)\nnetwork ls:\n\(networks)" }
}

extension ContainerReference {
    /// `--netns NAME`, `--pid PID` or `--docker NAME`.
    var vxctlArguments: [String] {
        switch self {
        case .netns(let name): ["--netns", name]
        case .pid(let pid): ["--pid", "\(pid)"]
        case .docker(let name): ["--docker", name]
        }
    }
}

// MARK: What the container sees

/// One interface inside a container, from `ip`.
struct ContainerLink: Sendable, CustomStringConvertible {
    var name: String
    var mac: String
    var mtu: Int
    /// `UP` and `LOWER_UP` (a TAP has carrier while the switch holds it open).
    var isUpWithCarrier: Bool
    /// IPv4 addresses with prefix, `10.0.0.10/24`.
    var addresses: [String]

    var description: String { "\(name) \(mac) mtu \(mtu)\(isUpWithCarrier ? " up" : "") \(addresses)" }
}

extension NetnsTopology {
    /// The interface `name` in `place`, or nil when there is none.
    func link(_ name: String, in place: some NetnsPlace) async throws -> ContainerLink? {
        let show = try await run(["ip", "-o", "link", "show", "dev", name], in: place, timeout: .seconds(10))
        guard show.succeeded else { return nil }
        let words = show.stdout.split(whereSeparator: { $0 == " " || $0 == "\\" || $0 == "\n" }).map(String.init)
        guard let mtuIndex = words.firstIndex(of: "mtu"), mtuIndex + 1 < words.count,
            let mtu = Int(words[mtuIndex + 1]),
            let etherIndex = words.firstIndex(of: "link/ether"), etherIndex + 1 < words.count
        else { throw NetnsError.unexpectedOutput("ip link show \(name): \(show.stdout)") }
        let flags = words.first { $0.hasPrefix("<") } ?? ""
        let flagSet = Set(flags.trimmingCharacters(in: CharacterSet(charactersIn: "<>")).split(separator: ","))
        let addressText = try await check(["ip", "-o", "-4", "addr", "show", "dev", name], in: place)
        let addressWords = addressText.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        let addresses = addressWords.indices.compactMap { index in
            addressWords[index] == "inet" && index + 1 < addressWords.count ? addressWords[index + 1] : nil
        }
        return ContainerLink(
            name: name,
            mac: words[etherIndex + 1],
            mtu: mtu,
            isUpWithCarrier: flagSet.contains("UP") && flagSet.contains("LOWER_UP"),
            addresses: addresses
        )
    }

    /// The names of every interface in `place` but `lo`, sorted.
    func linkNames(in place: some NetnsPlace) async throws -> [String] {
        let text = try await check(["ip", "-o", "link", "show"], in: place)
        // "2: eth0: <BROADCAST,...>" or "3: eth0@eth0p: ..." for a veth.
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 1 else { return nil }
            let name = String(fields[1].dropLast().split(separator: "@").first ?? "")
            return name == "lo" ? nil : name
        }.sorted()
    }

    /// `ip -4 route show default` in `place`, trimmed.
    func defaultRoute(in place: some NetnsPlace) async throws -> String {
        try await check(["ip", "-4", "route", "show", "default"], in: place)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

// MARK: A ping that lists its replies

/// A finished `ping -i INTERVAL -c COUNT` (not quiet): what was sent and which sequence numbers came back.
struct PingRun: Sendable, CustomStringConvertible {
    var transmitted: Int
    var received: Set<Int>
    var output: String

    var lost: Int { transmitted - received.count }

    /// The longest run of consecutive sequence numbers without a reply, in requests.
    var longestGap: Int {
        var longest = 0
        var current = 0
        for seq in 1...max(transmitted, 1) {
            if received.contains(seq) {
                current = 0
            } else {
                current += 1
                longest = max(longest, current)
            }
        }
        return longest
    }

    var description: String { "\(received.count)/\(transmitted) replies, \(lost) lost (longest gap \(longestGap))" }

    /// Parses ping's output: `64 bytes from 10.0.0.20: icmp_seq=12 ttl=64 time=0.4 ms` lines and the summary.
    init(output: String) throws {
        self.output = output
        var received: Set<Int> = []
        var transmitted: Int? = nil
        for line in output.split(separator: "\n") {
            if line.contains("bytes from"), let range = line.range(of: "icmp_seq=") {
                let digits = line[range.upperBound...].prefix { $0.isNumber }
                if let seq = Int(digits) { received.insert(seq) }
            } else if line.contains("packets transmitted") {
                transmitted = line.split(separator: " ").compactMap { Int($0) }.first
            }
        }
        guard let transmitted else { throw NetnsError.unexpectedOutput("ping summary missing: \(output)") }
        self.transmitted = transmitted
        self.received = received
    }
}

// MARK: Exact wall time of a command

/// Runs a command and measures its wall time to well under a millisecond. `ProcessRunner` polls a child with a
/// sleep that grows to 20 ms, which is fine for waiting but blurs a 30 ms command; here the poll is 0.2 ms.
enum TimedCommand {
    struct Result: Sendable, CustomStringConvertible {
        var arguments: [String]
        /// Exit status, or 128 plus the signal number.
        var status: Int32
        var stdout: String
        var stderr: String
        /// From just before posix_spawn to the moment the exit was seen.
        var elapsed: Duration

        var succeeded: Bool { status == 0 }

        var description: String {
            "`\(arguments.joined(separator: " "))` exited with status \(status) after \(elapsed)"
                + (stderr.isEmpty ? "" : "; stderr: \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
                + (stdout.isEmpty ? "" : "; stdout: \(stdout.prefix(2000))")
        }
    }

    /// Runs `arguments` (absolute executable path first), output to scratch files under `scratch`, for at most
    /// `timeout` (then SIGKILL by PID).
    static func run(_ arguments: [String], scratch: String, timeout: Duration = .seconds(20)) async throws -> Result {
        let base = "\(scratch)/timed-\(UUID().uuidString)"
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }

        var pid: pid_t = 0
        let start = ContinuousClock.now
        let code = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        guard code == 0 else { throw NetnsError.spawnFailed(arguments, code) }
        var status: Int32 = 0
        var end = start
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                end = ContinuousClock.now
                break
            }
            if result < 0 && errno != EINTR { throw NetnsError.unexpectedOutput("waitpid(\(pid)): errno \(errno)") }
            if ContinuousClock.now - start > timeout {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw NetnsError.timedOut("`\(arguments.joined(separator: " "))` after \(timeout)")
            }
            usleep(200)
        }
        let signal = status & 0x7f
        let decoded = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        return Result(
            arguments: arguments,
            status: decoded,
            stdout: String(decoding: FileManager.default.contents(atPath: base + ".out") ?? Data(), as: UTF8.self),
            stderr: String(decoding: FileManager.default.contents(atPath: base + ".err") ?? Data(), as: UTF8.self),
            elapsed: end - start
        )
    }
}

extension Duration {
    /// Milliseconds with one decimal, for reports.
    var milliseconds: String {
        let value = Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
        return String(format: "%.1f ms", value)
    }
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
/// - Returns: how long it took, or nil when it never held.
func waitUntil(timeout: Duration, _ condition: () async throws -> Bool) async throws -> Duration? {
    let start = ContinuousClock.now
    while true {
        if try await condition() { return ContinuousClock.now - start }
        guard ContinuousClock.now - start < timeout else { return nil }
        try await Task.sleep(for: .milliseconds(100))
    }
}

/// The median of some durations (the upper middle one for an even count).
func median(_ durations: [Duration]) -> Duration {
    let sorted = durations.sorted()
    return sorted.isEmpty ? .zero : sorted[sorted.count / 2]
}
