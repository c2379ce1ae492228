// `vxctl network` / `attach` / `detach` / `leases` against real vxswitchd daemons (docs/networks-and-attach.md):
// containers attached by namespace name, by PID and by Docker name, given static, automatic and DHCP addresses,
// reaching each other across two hosts; the state file carrying a switch through SIGTERM and SIGKILL while a ping
// runs; a container that goes away; refused requests that change nothing; detach and del-port.
//
// Layout: host i's daemon serves network net1 (VNI 42, 10.0.0.0/24) from the range 10.0.0.(10+10i)-10.0.0.(19+10i),
// the hosts peered with each other on VNI 42. Containers are namespaces of the topology (`vx-<run>-h<i>-c<m>`); a
// "process" container is `ip netns exec <container> sleep 600`, spawned through the topology (so teardown kills it by
// PID) and attached with `--pid` once it has entered its namespace. AttachSupport.swift has the helpers.
//
// The suite nests in `SwitchdSystemTests`, whose `.serialized` covers every daemon test of this target.

import Foundation
import Testing
import VXControl
import VXControlSocket
import VXDockerTesting
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

extension SwitchdSystemTests {
    @Suite("Networks, attach and leases (AttachSystemTests)")
    struct AttachSystemTests {
        /// busybox, for udhcpc.
        static let busyboxPath = ProcessRunner.findExecutable(
            "busybox",
            candidates: ["/usr/bin/busybox", "/bin/busybox"]
        )

        /// Host `index`'s share of net1.
        static func range(host index: Int) -> (first: Int, last: Int) { (10 + 10 * index, 19 + 10 * index) }

        /// Starts a daemon on every host, creates net1 on each with that host's range, and peers the hosts on VNI 42.
        static func startNetwork(
            in topology: NetnsTopology,
            gateway: String? = "10.0.0.1",
            dhcp: Bool = false,
            statePaths: [Int: String] = [:],
            extraArguments: [String] = []
        ) async throws -> [SwitchNode] {
            var nodes: [SwitchNode] = []
            for host in topology.hosts {
                let node = try await SwitchNode.start(
                    in: topology,
                    host: host.index,
                    io: .uring,
                    statePath: statePaths[host.index],
                    extraArguments: extraArguments
                )
                let (first, last) = range(host: host.index)
                let network = try await node.createNetwork(
                    "net1",
                    vni: 42,
                    subnet: "10.0.0.0/24",
                    range: "10.0.0.\(first)-10.0.0.\(last)",
                    gateway: gateway,
                    dhcp: dhcp
                )
                #expect(network.dhcp == dhcp && network.leases == 0 && network.ports.isEmpty, "\(network)")
                for other in topology.hosts where other.index != host.index {
                    try await node.addPeer(other.underlayAddress, vni: 42)
                }
                nodes.append(node)
            }
            return nodes
        }

        /// A container whose only process is `sleep 600`, for `--pid` and `--docker`: returns once the process is
        /// inside the container's namespace. (`ip netns exec` enters the namespace and then execs; attaching by PID
        /// before that would put the interface into the root namespace.)
        static func processContainer(
            in topology: NetnsTopology,
            host: Int
        ) async throws -> (container: NetnsTopology.Container, process: SpawnedProcess) {
            let container = try await topology.addContainer(host: host)
            let process = try topology.spawn(
                ["sleep", "600"],
                in: container,
                name: "sleep-\(container.index)-h\(host)"
            )
            let entered = try await waitUntil(timeout: .seconds(5)) {
                guard let expected = inode("/run/netns/\(container.namespace)"),
                    let actual = inode("/proc/\(process.pid)/ns/net")
                else { return false }
                return expected == actual
            }
            guard entered != nil else {
                throw NetnsError.timedOut("pid \(process.pid) did not enter \(container.namespace) within 5 s")
            }
            return (container, process)
        }

        /// The device and inode of `path` (an nsfs file), or nil when it cannot be read.
        static func inode(_ path: String) -> [UInt64]? {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return [UInt64(info.st_dev), UInt64(info.st_ino)]
        }

        /// `"IP OWNER KIND"` per lease, for comparing whole tables.
        static func leaseLines(_ leases: [LeaseInfo]) -> [String] {
            leases.map { "\($0.ip) \($0.owner) \($0.kind)" }
        }
    }
}

// MARK: - 1. By namespace and by PID, static and automatic addresses, two hosts

extension SwitchdSystemTests.AttachSystemTests {
    @Test func attachByNetnsAndByPidConfiguresTheContainersInterfaceAndContainersOnTwoHostsPing() async throws {
        try await withNetnsTopology(hosts: 2) { topology in
            let switches = try await Self.startNetwork(in: topology)

            // Host 0: a by name with the next free address, a given MAC and MTU; b by the PID of its process, with a
            // static address under another interface name. Host 1: c by name, static; d by PID, automatic, with its
            // own gateway.
            let a = try await topology.addContainer(host: 0)
            let (attachA, wallA) = try await switches[0].attach(
                "net1",
                .netns(a.namespace),
                ip: "auto",
                mac: "02:00:00:0a:00:01",
                mtu: 1400
            )
            let (b, sleeperB) = try await Self.processContainer(in: topology, host: 0)
            let (attachB, wallB) = try await switches[0].attach(
                "net1",
                .pid(sleeperB.pid),
                ifname: "net0",
                ip: "10.0.0.15/24"
            )
            let c = try await topology.addContainer(host: 1)
            let (attachC, wallC) = try await switches[1].attach("net1", .netns(c.namespace), ip: "10.0.0.25/24")
            let (d, sleeperD) = try await Self.processContainer(in: topology, host: 1)
            let (attachD, wallD) = try await switches[1].attach(
                "net1",
                .pid(sleeperD.pid),
                ip: "auto",
                gateway: "10.0.0.254"
            )

            // What attach reported.
            #expect(attachA.network == "net1" && attachA.vni.value == 42, "\(attachA)")
            #expect(attachA.container == .netns(a.namespace) && attachA.namespace == "/run/netns/\(a.namespace)")
            #expect(attachA.ifname.value == "eth0" && attachA.ip == "10.0.0.10/24", "\(attachA)")
            #expect(attachA.mac.description == "02:00:00:0a:00:01" && attachA.mtu == 1400, "\(attachA)")
            #expect(attachA.gateway?.description == "10.0.0.1", "\(attachA)")
            #expect(attachB.container == .pid(sleeperB.pid) && attachB.namespace == "/proc/\(sleeperB.pid)/ns/net")
            #expect(attachB.ifname.value == "net0" && attachB.ip == "10.0.0.15/24", "\(attachB)")
            #expect(attachB.mtu == SwitchdSystemTests.overlayMTU && attachB.gateway?.description == "10.0.0.1")
            #expect(attachC.ip == "10.0.0.25/24" && attachC.gateway?.description == "10.0.0.1", "\(attachC)")
            #expect(attachD.ip == "10.0.0.20/24" && attachD.gateway?.description == "10.0.0.254", "\(attachD)")
            #expect(Set([attachA.port, attachB.port]).count == 2 && attachC.port != attachD.port)

            // What the containers see: exactly the interface asked for, up, with its MAC, MTU, address and route.
            for (place, attachment, route) in [
                (a, attachA, "default via 10.0.0.1 dev eth0"), (b, attachB, "default via 10.0.0.1 dev net0"),
                (c, attachC, "default via 10.0.0.1 dev eth0"), (d, attachD, "default via 10.0.0.254 dev eth0"),
            ] {
                let name = attachment.ifname.value
                #expect(try await topology.linkNames(in: place) == [name], "\(place.namespace)")
                let link = try #require(try await topology.link(name, in: place), "\(name) in \(place.namespace)")
                #expect(link.mac == attachment.mac.description && link.mtu == attachment.mtu, "\(link)")
                #expect(link.addresses == [attachment.ip ?? "none"] && link.isUpWithCarrier, "\(link)")
                let defaultRoute = try await topology.defaultRoute(in: place)
                #expect(defaultRoute.hasPrefix(route), "\(place.namespace): \(defaultRoute)")
                // noqueue, set before the link came up, so the kernel never built its default (InterfacePlacement).
                let qdisc = try await topology.check(["tc", "qdisc", "show", "dev", name], in: place)
                #expect(qdisc.hasPrefix("qdisc noqueue"), "\(place.namespace): \(qdisc)")
            }

            // Across the tunnel both ways, and between the two containers of host 0.
            for (from, to) in [
                (a, "10.0.0.25"), (a, "10.0.0.20"), (b, "10.0.0.25"), (c, "10.0.0.10"), (d, "10.0.0.15"),
                (a, "10.0.0.15"),
            ] {
                let ping = try await topology.ping(from: from, to: to, count: 2)
                #expect(ping.allReceived, "\(from.namespace) -> \(to): \(ping.output)")
            }

            // The lease tables, the networks and show.
            #expect(
                Self.leaseLines(try await switches[0].leases())
                    == ["10.0.0.10 \(attachA.port) static", "10.0.0.15 \(attachB.port) static"]
            )
            #expect(
                Self.leaseLines(try await switches[1].leases(network: "net1"))
                    == ["10.0.0.20 \(attachD.port) static", "10.0.0.25 \(attachC.port) static"]
            )
            let net0 = try #require(try await switches[0].networks().first)
            #expect(net0.ports == [attachA.port, attachB.port].sorted() && net0.leases == 2, "\(net0)")
            #expect(net0.range.description == "10.0.0.10-10.0.0.19" && net0.gateway?.description == "10.0.0.1")
            let show = try await switches[0].show()
            #expect(show.ports.map(\.name) == [attachA.port, attachB.port].sorted(), "\(show)")
            #expect(show.ports.first { $0.name == attachA.port }?.mtu == 1400, "\(show)")
            #expect(show.vnis.map(\.vni.value) == [42], "\(show)")
            let table = try await switches[0].ctl("leases")
            #expect(table.contains("10.0.0.10") && table.contains(attachA.port.value), "leases:\n\(table)")

            // Timing. vxctl's wall time for the four attaches above; the same for `show`, which is vxctl's own cost
            // (start, connect, one trivial request); and the daemon's part of attach: the request and its answer on
            // the control socket, timed around the round trip.
            var showTimes: [Duration] = []
            for _ in 0..<3 { showTimes.append(try await switches[0].timedVxctl(["show"]).elapsed) }
            var daemonTimes: [Duration] = []
            let connection = try ControlConnection(path: switches[0].controlPath)
            defer { connection.close() }
            for expected in 11...13 {
                let extra = try await topology.addContainer(host: 0)
                let params = try AttachParams(network: "net1", container: .netns(extra.namespace), ip: .auto)
                let start = ContinuousClock.now
                let info = try connection.callBlocking(ControlMethods.Attach.self, params)
                daemonTimes.append(ContinuousClock.now - start)
                #expect(info.ip == "10.0.0.\(expected)/24", "\(info)")
            }
            let wall = [wallA, wallB, wallC, wallD]
            print(
                "AttachSystemTests: vxctl attach wall time \(wall.map(\.milliseconds).joined(separator: ", ")); "
                    + "vxctl show \(showTimes.map(\.milliseconds).joined(separator: ", ")); "
                    + "attach on the control socket (daemon's part) "
                    + "\(daemonTimes.map(\.milliseconds).joined(separator: ", ")), median \(median(daemonTimes).milliseconds)"
            )
            // Loose bound for a shared 2-core machine; the figures are in the output.
            #expect(median(daemonTimes) < .milliseconds(500), "\(daemonTimes)")
        }
    }
}

// MARK: - 2. By Docker name

extension SwitchdSystemTests.AttachSystemTests {
    @Test func attachByDockerNameAsksTheEngineForThePidAndAnUnknownNameChangesNothing() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let (web, sleeper) = try await Self.processContainer(in: topology, host: 0)
            // The fake makes its own directory under /tmp for the socket (sun_path is short); stop() removes it.
            let engine = try FakeDockerEngine(containers: [
                .init(name: "web", pid: sleeper.pid), .init(name: "stopped", pid: 0),
            ])
            defer { engine.stop() }
            let node = try await SwitchNode.start(
                in: topology,
                host: 0,
                io: .uring,
                extraArguments: ["--docker-socket", engine.socketPath]
            )
            try await node.createNetwork(
                "net1",
                vni: 42,
                subnet: "10.0.0.0/24",
                range: "10.0.0.10-10.0.0.19",
                gateway: "10.0.0.1"
            )
            let other = try await topology.addContainer(host: 0)
            let (otherAttachment, _) = try await node.attach("net1", .netns(other.namespace), ip: "auto")
            #expect(otherAttachment.ip == "10.0.0.10/24")

            let before = try await node.listings()
            // Both are `not found` (exit 1): there is no namespace to attach to.
            for (name, message) in [
                ("ghost", "vxctl: no such container: ghost"), ("stopped", "vxctl: container stopped is not running"),
            ] {
                let refused = try await node.vxctl(["attach", "net1", "--docker", name, "--ip", "auto"])
                #expect(refused.status == 1 && refused.stdout.isEmpty, "\(refused)")
                #expect(refused.stderr.contains(message), "\(refused)")
                #expect(try await node.listings() == before, "--docker \(name) changed the switch")
            }
            #expect(try await topology.linkNames(in: web) == [])

            let (attachment, _) = try await node.attach("net1", .docker("web"), ip: "auto")
            #expect(attachment.container == .docker("web"), "\(attachment)")
            #expect(attachment.namespace == "/proc/\(sleeper.pid)/ns/net" && attachment.ip == "10.0.0.11/24")
            #expect(
                engine.requests.contains {
                    $0.requestLine.hasPrefix("GET ") && $0.requestLine.contains("/containers/web/json")
                },
                "\(engine.requests)"
            )
            let link = try #require(try await topology.link("eth0", in: web))
            #expect(link.addresses == ["10.0.0.11/24"] && link.mac == attachment.mac.description, "\(link)")
            for (from, to) in [(web, "10.0.0.10"), (other, "10.0.0.11")] {
                let ping = try await topology.ping(from: from, to: to, count: 2)
                #expect(ping.allReceived, "\(from.namespace) -> \(to): \(ping.output)")
            }
            #expect(
                Self.leaseLines(try await node.leases())
                    == ["10.0.0.10 \(otherAttachment.port) static", "10.0.0.11 \(attachment.port) static"]
            )

            // And detach by the same name.
            let detached = try await node.detach(.docker("web"))
            #expect(detached.map(\.port) == [attachment.port], "\(detached)")
            #expect(try await topology.linkNames(in: web) == [])
            #expect(try await node.listings() == before)

            // With the engine gone, the daemon says so and exits 1: 69 would tell a script that vxswitchd itself
            // cannot be reached (the daemon used to answer Docker failures with the client-side `unavailable`).
            engine.stop()
            let noEngine = try await node.vxctl(["attach", "net1", "--docker", "web", "--ip", "auto"])
            #expect(noEngine.status == 1 && noEngine.stdout.isEmpty, "\(noEngine)")
            #expect(
                noEngine.stderr.contains("vxctl: cannot reach the Docker engine at \(engine.socketPath)"),
                "\(noEngine)"
            )
            #expect(try await node.listings() == before)
            #expect(try await topology.linkNames(in: web) == [])
        }
    }
}

// MARK: - 3. DHCP with a real client

extension SwitchdSystemTests.AttachSystemTests {
    /// The network has no gateway, so the DHCP server identifier is the subnet's last host address (10.0.0.254),
    /// which each switch answers ARP for on its own ports: udhcpc unicasts its release there. (With a gateway the
    /// gateway is the server identifier, and a release reaches the switch only if something answers ARP for it.)
    /// Host 0 keeps a state file, and is restarted while the client holds its lease.
    @Test(
        .enabled(
            if: Self.busyboxPath != nil,
            "busybox (udhcpc) is needed; tools/install-deps.sh installs it"
        )
    )
    func udhcpcGetsAnAddressFromThisHostsRangeReachesTheOtherHostAndItsReleaseFreesTheLease() async throws {
        let busybox = try #require(Self.busyboxPath)
        try await withNetnsTopology(hosts: 2) { topology in
            let statePath = "\(topology.workDirectory)/h0-state.json"
            var switches = try await Self.startNetwork(
                in: topology,
                gateway: nil,
                dhcp: true,
                statePaths: [0: statePath]
            )
            let script = "\(topology.workDirectory)/udhcpc.sh"
            try """
            #!/bin/sh
            case "$1" in
                bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$subnet" dev "$interface";;
                deconfig) ip addr flush dev "$interface";;
            esac

            """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)

            let a = try await topology.addContainer(host: 0)
            let (attachment, _) = try await switches[0].attach("net1", .netns(a.namespace))
            #expect(attachment.ip == nil && attachment.gateway == nil, "\(attachment)")
            #expect(try await topology.link("eth0", in: a)?.addresses == [])
            #expect(try await switches[0].leases().isEmpty)
            let c = try await topology.addContainer(host: 1)
            let (attachC, _) = try await switches[1].attach("net1", .netns(c.namespace), ip: "auto")

            // udhcpc in the foreground, releasing its lease when it gets SIGTERM (-R).
            let client = try topology.spawn(
                [busybox, "udhcpc", "-f", "-i", "eth0", "-R", "-s", script],
                in: a,
                name: "udhcpc-a"
            )
            var address: String? = nil
            let bound = try await waitUntil(timeout: .seconds(10)) {
                address = try await topology.link("eth0", in: a)?.addresses.first
                return address != nil
            }
            try #require(bound != nil, "no address within 10 s; udhcpc: \(client.stderr())\(client.stdout())")
            let assigned = try #require(address)
            let ip = String(assigned.split(separator: "/")[0])
            let lastOctet = Int(ip.split(separator: ".").last ?? "") ?? 0
            #expect(assigned.hasPrefix("10.0.0.") && assigned.hasSuffix("/24") && (10...19).contains(lastOctet))
            let leases = try await switches[0].leases(network: "net1")
            let lease = try #require(leases.first, "leases: \(leases)")
            #expect(leases.count == 1 && lease.ip.description == ip && lease.kind == .dhcp, "\(leases)")
            let macDigits = attachment.mac.description.replacingOccurrences(of: ":", with: "")
            #expect(lease.owner == "id:01\(macDigits)" || lease.owner == "mac:\(attachment.mac)", "\(lease)")
            #expect((lease.expires ?? 0) > Int(Date().timeIntervalSince1970), "\(lease)")
            #expect(try await switches[0].networks().first?.leases == 1)
            // The other host's server answered nothing: its table holds only its own container.
            #expect(Self.leaseLines(try await switches[1].leases()) == ["10.0.0.20 \(attachC.port) static"])

            for (from, to) in [(a, "10.0.0.20"), (c, ip)] {
                let ping = try await topology.ping(from: from, to: to, count: 2)
                #expect(ping.allReceived, "\(from.namespace) -> \(to): \(ping.output)")
            }

            // The lease is in the state file: a restarted switch still has it, and still answers the client.
            let leasesBefore = try await switches[0].ctl("leases", "--json")
            switches[0].process.signal(SIGTERM)
            #expect(await switches[0].process.waitForExit(timeout: .seconds(10)) == 0)
            switches[0] = try await SwitchNode.start(
                in: topology,
                host: 0,
                io: .uring,
                statePath: statePath,
                logName: "vxswitchd-h0-restart"
            )
            #expect(try await switches[0].ctl("leases", "--json") == leasesBefore)

            // Release: SIGTERM makes udhcpc send DHCPRELEASE and deconfigure. The release is unicast to the server
            // address, and udhcpc flushes its address right after sending it: if the container's kernel still has
            // to resolve 10.0.0.254 then, the queued release can be lost in the container (seen once under a fully
            // loaded machine). Resolve it first — the switch answers the ARP; the ping itself gets no reply.
            _ = try await topology.run(["ping", "-c", "1", "-W", "1", "10.0.0.254"], in: a)
            let resolved = try await topology.run(["ip", "neigh", "show", "10.0.0.254", "dev", "eth0"], in: a)
            #expect(resolved.stdout.contains("lladdr"), "the switch did not answer ARP for its DHCP server address")
            client.signal(SIGTERM)
            #expect(await client.waitForExit(timeout: .seconds(5)) != nil, "udhcpc did not exit")
            let released = try await waitUntil(timeout: .seconds(3)) { try await switches[0].leases().isEmpty }
            let leasesAfter = try await switches[0].leases()
            #expect(released != nil, "lease still there: \(leasesAfter); udhcpc: \(client.stderr())")
            #expect(try await switches[0].networks().first?.leases == 0)
            #expect(try await topology.link("eth0", in: a)?.addresses == [])

            // A client that dies without a RELEASE leaves its lease; detaching the container frees it anyway.
            let second = try topology.spawn(
                [busybox, "udhcpc", "-f", "-i", "eth0", "-s", script], in: a, name: "udhcpc-a2")
            let leased = try await waitUntil(timeout: .seconds(10)) { try await !switches[0].leases().isEmpty }
            try #require(leased != nil, "no second lease; udhcpc: \(second.stderr())")
            second.signal(SIGKILL)
            _ = await second.waitForExit(timeout: .seconds(5))
            #expect(try await switches[0].leases().count == 1, "the killed client's lease stays until detach")
            _ = try await switches[0].detach(.netns(a.namespace))
            #expect(try await switches[0].leases().isEmpty, "detach must free the DHCP lease of the interface")
        }
    }
}

// MARK: - 4. Restarts

extension SwitchdSystemTests.AttachSystemTests {
    /// Host 0 runs with a state file in the work directory. A container there pings one on host 1 every 50 ms
    /// while host 0's vxswitchd is stopped (SIGTERM, then SIGKILL on the second round), left down 0.5 s and started
    /// again with the same state file: the interfaces stay in the containers, the listings come back as they were,
    /// and the ping resumes.
    @Test func aRestartedSwitchReattachesItsContainersAndThePingResumes() async throws {
        try await withNetnsTopology(hosts: 2) { topology in
            let statePath = "\(topology.workDirectory)/h0-state.json"
            var switches = try await Self.startNetwork(in: topology, statePaths: [0: statePath])
            let a = try await topology.addContainer(host: 0)
            let (attachA, _) = try await switches[0].attach("net1", .netns(a.namespace), ip: "auto")
            let (b, sleeperB) = try await Self.processContainer(in: topology, host: 0)
            let (attachB, _) = try await switches[0].attach("net1", .pid(sleeperB.pid), ip: "auto")
            let c = try await topology.addContainer(host: 1)
            let (attachC, _) = try await switches[1].attach("net1", .netns(c.namespace), ip: "auto")
            #expect(attachA.ip == "10.0.0.10/24" && attachB.ip == "10.0.0.11/24" && attachC.ip == "10.0.0.20/24")
            // Warm up: ARP resolved and both tables learned before the clock starts.
            for (from, to) in [(a, "10.0.0.20"), (b, "10.0.0.20")] {
                let ping = try await topology.ping(from: from, to: to, count: 2)
                #expect(ping.allReceived, "\(from.namespace) -> \(to): \(ping.output)")
            }
            let before = try await switches[0].listings()
            let linksBefore = [
                try await topology.link("eth0", in: a)?.description,
                try await topology.link("eth0", in: b)?.description,
            ]

            var figures: [String] = []
            for (round, (signal, expectedStatus)) in [(SIGTERM, Int32(0)), (SIGKILL, 128 + SIGKILL)].enumerated() {
                let label = signal == SIGTERM ? "SIGTERM" : "SIGKILL"
                let ping = try topology.spawn(
                    ["ping", "-n", "-i", "0.05", "-c", "120", "-W", "1", "10.0.0.20"],
                    in: a,
                    name: "ping-restart-\(round)"
                )
                try await ping.waitForOutput(containing: "icmp_seq=10 ", timeout: .seconds(5))

                let stopped = ContinuousClock.now
                switches[0].process.signal(signal)
                let status = await switches[0].process.waitForExit(timeout: .seconds(10))
                #expect(status == expectedStatus, "\(label): exit status \(String(describing: status))")
                // The interfaces stay in the containers while the switch is down.
                #expect(try await topology.link("eth0", in: a)?.addresses == ["10.0.0.10/24"], "\(label)")
                #expect(try await topology.link("eth0", in: b)?.addresses == ["10.0.0.11/24"], "\(label)")
                try await Task.sleep(until: stopped + .milliseconds(500), clock: .continuous)
                let restart = ContinuousClock.now
                switches[0] = try await SwitchNode.start(
                    in: topology,
                    host: 0,
                    io: .uring,
                    statePath: statePath,
                    logName: "vxswitchd-h0-restart\(round + 1)"
                )
                let ready = ContinuousClock.now - restart

                let exit = await ping.waitForExit(timeout: .seconds(20))
                #expect(exit != nil, "\(label): ping still running")
                let run = try PingRun(output: ping.stdout())
                let tail = Set((run.transmitted - 19)...run.transmitted)
                #expect(run.transmitted == 120 && tail.isSubset(of: run.received), "\(label): \(run)\n\(run.output)")
                #expect(run.lost < 60, "\(label): \(run)")
                let down = restart - stopped
                figures.append(
                    "\(label): \(run), down \(down.milliseconds), restarted daemon ready in \(ready.milliseconds)"
                )

                let after = try await switches[0].listings()
                #expect(after == before, "\(label): before:\n\(before)\nafter:\n\(after)\nlog:\n\(switches[0].log)")
                let linksAfter = [
                    try await topology.link("eth0", in: a)?.description,
                    try await topology.link("eth0", in: b)?.description,
                ]
                #expect(linksAfter == linksBefore, "\(label)")
                #expect(switches[0].log.contains("re-attached port \(attachA.port)"), "\(label): \(switches[0].log)")
                let check = try await topology.ping(from: b, to: "10.0.0.20", count: 2)
                #expect(check.allReceived, "\(label): b -> c: \(check.output)")
            }
            print("AttachSystemTests: restart with a ping every 50 ms: " + figures.joined(separator: "; "))

            // A detach is saved too: the interface goes (persistent or not), and the next start does not bring it
            // back. And a container deleted while the switch is down loses its port and lease at the next start.
            let detached = try await switches[0].detach(.netns(a.namespace))
            #expect(detached.map(\.port) == [attachA.port], "\(detached)")
            #expect(try await topology.linkNames(in: a) == [])
            let doomed = try await topology.addContainer(host: 0)
            let (attachDoomed, _) = try await switches[0].attach("net1", .netns(doomed.namespace), ip: "auto")
            #expect(attachDoomed.ip == "10.0.0.10/24", "\(attachDoomed)")
            switches[0].process.signal(SIGTERM)
            #expect(await switches[0].process.waitForExit(timeout: .seconds(10)) == 0)
            let ip = try #require(NetnsEnvironment.ipPath)
            let deleted = try await ProcessRunner.run([ip, "netns", "del", doomed.namespace], timeout: .seconds(10))
            try #require(deleted.succeeded, "\(deleted)")
            switches[0] = try await SwitchNode.start(
                in: topology,
                host: 0,
                io: .uring,
                statePath: statePath,
                logName: "vxswitchd-h0-restart3"
            )
            #expect(try await switches[0].show().ports.map(\.name) == [attachB.port], "\(switches[0].log)")
            #expect(try await switches[0].networks().first?.ports == [attachB.port])
            #expect(Self.leaseLines(try await switches[0].leases()) == ["10.0.0.11 \(attachB.port) static"])
            #expect(try await topology.linkNames(in: a) == [])
            let last = try await topology.ping(from: b, to: "10.0.0.20", count: 2)
            #expect(last.allReceived, "b -> c after the third start: \(last.output)")
        }
    }
}

// MARK: - 5. A container that goes away

extension SwitchdSystemTests.AttachSystemTests {
    @Test func aDeletedNamespaceOrAnExitedProcessLosesItsPortAndLeaseWithinSeconds() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
            try await node.createNetwork("net1", vni: 42, subnet: "10.0.0.0/24", gateway: "10.0.0.1")
            let gone = try await topology.addContainer(host: 0)
            let (attachGone, _) = try await node.attach("net1", .netns(gone.namespace), ip: "auto")
            let stays = try await topology.addContainer(host: 0)
            let (attachStays, _) = try await node.attach("net1", .netns(stays.namespace), ip: "auto")
            let (exits, sleeper) = try await Self.processContainer(in: topology, host: 0)
            let (attachExits, _) = try await node.attach("net1", .pid(sleeper.pid), ip: "auto")
            #expect(try await node.leases().count == 3)

            // The namespace is deleted.
            let ip = try #require(NetnsEnvironment.ipPath)
            let deleted = try await ProcessRunner.run([ip, "netns", "del", gone.namespace], timeout: .seconds(10))
            try #require(deleted.succeeded, "\(deleted)")
            let portGone = try await waitUntil(timeout: .seconds(5)) {
                try await !node.show().ports.map(\.name).contains(attachGone.port)
            }
            let showAfterDelete = try await node.showJSON()
            #expect(portGone != nil, "port \(attachGone.port) still there: \(showAfterDelete)\n\(node.log)")
            #expect(
                Self.leaseLines(try await node.leases())
                    == ["10.0.0.3 \(attachStays.port) static", "10.0.0.4 \(attachExits.port) static"]
            )
            #expect(node.log.contains("removed port \(attachGone.port)"), "\(node.log)")

            // The process of a --pid container exits; its namespace stays, so the interface can be seen to go.
            sleeper.stop(grace: .zero)
            let processGone = try await waitUntil(timeout: .seconds(5)) {
                try await !node.show().ports.map(\.name).contains(attachExits.port)
            }
            let showAfterExit = try await node.showJSON()
            #expect(processGone != nil, "port \(attachExits.port) still there: \(showAfterExit)\n\(node.log)")
            #expect(Self.leaseLines(try await node.leases()) == ["10.0.0.3 \(attachStays.port) static"])
            #expect(try await topology.linkNames(in: exits) == [])
            #expect(try await node.show().ports.map(\.name) == [attachStays.port])
            #expect(try await node.networks().first?.ports == [attachStays.port])
            print(
                "AttachSystemTests: port removed \(portGone?.milliseconds ?? "-") after ip netns del, "
                    + "\(processGone?.milliseconds ?? "-") after the process exited"
            )
        }
    }
}

// MARK: - 6. Refusals

extension SwitchdSystemTests.AttachSystemTests {
    /// One refused vxctl invocation; `{X}` in an argument or the message stands for a namespace or PID of the run.
    struct Refusal: Sendable, CustomStringConvertible {
        var what: String
        var arguments: [String]
        /// 1: the daemon refused; 64: vxctl refused the arguments.
        var status: Int32
        var message: String

        var description: String { "\(what): vxctl \(arguments.joined(separator: " "))" }
    }

    @Test func badAttachDetachAndNetworkRequestsSayWhyAndChangeNothing() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
            try await node.createNetwork(
                "net1",
                vni: 42,
                subnet: "10.0.0.0/24",
                range: "10.0.0.10-10.0.0.19",
                gateway: "10.0.0.1"
            )
            // Two addresses, both given out below.
            try await node.createNetwork("tiny", vni: 43, subnet: "10.9.0.0/24", range: "10.9.0.10-10.9.0.11")
            let used = try await topology.addContainer(host: 0)
            try await node.attach("net1", .netns(used.namespace), ip: "10.0.0.10/24")
            for _ in 0..<2 {
                let filler = try await topology.addContainer(host: 0)
                try await node.attach("tiny", .netns(filler.namespace), ip: "auto")
            }
            // A container with nothing attached, and one that already has a veth named eth0.
            let empty = try await topology.addContainer(host: 0)
            let taken = try await topology.addContainer(host: 0)
            try await topology.check(
                ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"],
                in: taken
            )
            // A PID that does not exist: counting down from the top of the PID space.
            let pidMax =
                Int32(
                    (try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8))?
                        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                ) ?? 32768
            let noPID = try #require(
                (1..<pidMax).reversed().prefix(1000).first { !FileManager.default.fileExists(atPath: "/proc/\($0)") }
            )
            let missing = "\(topology.namespacePrefix)missing"

            let refusals: [Refusal] = [
                Refusal(
                    what: "unknown namespace",
                    arguments: ["attach", "net1", "--netns", missing, "--ip", "auto"],
                    status: 1,
                    message: "vxctl: cannot find the network namespace of netns \(missing)"
                ),
                Refusal(
                    what: "unknown PID",
                    arguments: ["attach", "net1", "--pid", "\(noPID)", "--ip", "auto"],
                    status: 1,
                    message: "no process \(noPID)"
                ),
                Refusal(
                    what: "address outside the subnet",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--ip", "10.1.0.5/24"],
                    status: 1,
                    message: "vxctl: 10.1.0.5/24 is not a host address of network net1 (10.0.0.0/24)"
                ),
                Refusal(
                    what: "address with another prefix length",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--ip", "10.0.0.5/16"],
                    status: 1,
                    message: "is not a host address of network net1"
                ),
                Refusal(
                    what: "address already leased",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--ip", "10.0.0.10/24"],
                    status: 1,
                    message: "vxctl: 10.0.0.10 cannot be assigned in net1"
                ),
                Refusal(
                    what: "the gateway's address",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--ip", "10.0.0.1/24"],
                    status: 1,
                    message: "vxctl: 10.0.0.1 cannot be assigned in net1"
                ),
                Refusal(
                    what: "range exhausted",
                    arguments: ["attach", "tiny", "--netns", empty.namespace, "--ip", "auto"],
                    status: 1,
                    message: "vxctl: network tiny has no free address"
                ),
                Refusal(
                    what: "unknown network",
                    arguments: ["attach", "nonet", "--netns", empty.namespace, "--ip", "auto"],
                    status: 1,
                    message: "vxctl: no network named \"nonet\""
                ),
                Refusal(
                    what: "eth0 attached twice",
                    arguments: ["attach", "net1", "--netns", used.namespace, "--ip", "auto"],
                    status: 1,
                    message: "already has eth0 from this switch"
                ),
                Refusal(
                    what: "a veth named eth0 already there",
                    arguments: ["attach", "net1", "--netns", taken.namespace, "--ip", "auto"],
                    status: 1,
                    message: "vxctl: interface name \"eth0\" is already taken in netns \(taken.namespace)"
                ),
                Refusal(
                    what: "an MTU the switch cannot carry",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--ip", "auto", "--mtu", "9000"],
                    status: 1,
                    message: "vxctl: MTU 9000 is more than this switch carries (at most 1906"
                ),
                Refusal(
                    what: "a multicast MAC",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--mac", "01:00:5e:00:00:01"],
                    status: 64,
                    message: "MAC 01:00:5e:00:00:01 is a multicast address"
                ),
                Refusal(
                    what: "gateway without an address",
                    arguments: ["attach", "net1", "--netns", empty.namespace, "--gateway", "10.0.0.1"],
                    status: 64,
                    message: "gateway 10.0.0.1 needs an address on the interface"
                ),
                Refusal(
                    what: "network rm of a network in use",
                    arguments: ["network", "rm", "net1"],
                    status: 1,
                    message: "detach them first"
                ),
                Refusal(
                    what: "network rm of an unknown network",
                    arguments: ["network", "rm", "nonet"],
                    status: 1,
                    message: "vxctl: no network named \"nonet\""
                ),
                Refusal(
                    what: "a second network with net1's VNI",
                    arguments: ["network", "create", "again", "--vni", "42", "--subnet", "10.5.0.0/24"],
                    status: 1,
                    message: "VNI 42 already belongs to network \"net1\""
                ),
                Refusal(
                    what: "detach of a container with nothing attached",
                    arguments: ["detach", "--netns", empty.namespace],
                    status: 1,
                    message: "vxctl: netns \(empty.namespace) has no interface attached by this switch"
                ),
                Refusal(
                    what: "detach of an interface that was not attached",
                    arguments: ["detach", "--netns", used.namespace, "--ifname", "eth9"],
                    status: 1,
                    message: "has no interface eth9 attached by this switch"
                ),
                Refusal(
                    what: "leases of an unknown network",
                    arguments: ["leases", "--network", "nonet"],
                    status: 1,
                    message: "vxctl: no network named \"nonet\""
                ),
            ]

            let places: [any NetnsPlace] = [used, empty, taken]
            func containerLinks() async throws -> [[String]] {
                var all: [[String]] = []
                for place in places { all.append(try await topology.linkNames(in: place)) }
                return all
            }
            let before = try await node.listings()
            let linksBefore = try await containerLinks()
            #expect(linksBefore == [["eth0"], [], ["eth0", "eth0p"]], "\(linksBefore)")
            for refusal in refusals {
                let result = try await node.vxctl(refusal.arguments)
                #expect(result.status == refusal.status, "\(refusal): \(result)")
                #expect(result.stderr.contains(refusal.message), "\(refusal): stderr: \(result.stderr)")
                #expect(result.stdout.isEmpty, "\(refusal): stdout: \(result.stdout)")
                let after = try await node.listings()
                #expect(after == before, "\(refusal) changed the switch:\n\(after)")
                #expect(try await containerLinks() == linksBefore, "\(refusal) changed a container")
            }
            // Nothing leaked into the host's namespace either, and the switch still attaches.
            let hostLinks = try await topology.linkNames(in: topology.hosts[0])
            #expect(hostLinks == ["ul0"], "host links: \(hostLinks)")
            let (attachment, _) = try await node.attach("net1", .netns(empty.namespace), ip: "auto")
            #expect(attachment.ip == "10.0.0.11/24", "\(attachment)")
        }
    }
}

// MARK: - 7. Detach and del-port

extension SwitchdSystemTests.AttachSystemTests {
    @Test func detachAndDelPortRemoveTheInterfaceFromTheContainerAndFreeTheLease() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
            try await node.createNetwork(
                "net1",
                vni: 42,
                subnet: "10.0.0.0/24",
                range: "10.0.0.10-10.0.0.19",
                gateway: "10.0.0.1"
            )
            // No gateway on net2: the container's default route stays the one eth0 got.
            try await node.createNetwork("net2", vni: 43, subnet: "10.2.0.0/24", range: "10.2.0.10-10.2.0.19")
            let a = try await topology.addContainer(host: 0)
            let (a0, _) = try await node.attach("net1", .netns(a.namespace), ip: "auto")
            let (a1, _) = try await node.attach("net2", .netns(a.namespace), ifname: "eth1", ip: "auto")
            let (b, sleeper) = try await Self.processContainer(in: topology, host: 0)
            let (b0, _) = try await node.attach("net1", .pid(sleeper.pid), ip: "auto")
            #expect([a0.ip, a1.ip, b0.ip] == ["10.0.0.10/24", "10.2.0.10/24", "10.0.0.11/24"])
            #expect(try await topology.linkNames(in: a) == ["eth0", "eth1"])
            let ping = try await topology.ping(from: b, to: "10.0.0.10", count: 2)
            #expect(ping.allReceived, "b -> a: \(ping.output)")

            // detach --ifname: only that interface and its lease.
            let first = try await node.detach(.netns(a.namespace), ifname: "eth1")
            #expect(first.map(\.port) == [a1.port] && first.first?.ip == "10.2.0.10/24", "\(first)")
            #expect(try await topology.linkNames(in: a) == ["eth0"])
            #expect(try await node.leases(network: "net2").isEmpty)
            #expect(try await node.networks().first { $0.name == "net2" }?.ports == [])

            // detach: everything left in the container.
            let second = try await node.detach(.netns(a.namespace))
            #expect(second.map(\.port) == [a0.port], "\(second)")
            #expect(try await topology.linkNames(in: a) == [])
            #expect(Self.leaseLines(try await node.leases()) == ["10.0.0.11 \(b0.port) static"])

            // del-port on an attached port: the same, by the switch's name for it.
            try await node.ctl("del-port", b0.port.value)
            #expect(try await topology.linkNames(in: b) == [])
            #expect(try await node.leases().isEmpty)
            #expect(try await node.show().ports.isEmpty)
            let networks = try await node.networks()
            #expect(networks.allSatisfy { $0.ports.isEmpty && $0.leases == 0 }, "\(networks)")

            // The freed address is the next one given out, and an unused network can go.
            let (again, _) = try await node.attach("net1", .netns(a.namespace), ip: "auto")
            #expect(again.ip == "10.0.0.10/24" && again.port == a0.port, "\(again)")
            try await node.ctl("network", "rm", "net2")
            #expect(try await node.networks().map(\.name) == ["net1"])
        }
    }
}

// MARK: - 8. Two interfaces in one container

extension SwitchdSystemTests.AttachSystemTests {
    /// A container has one default route: the network's gateway comes with the first interface this switch attaches
    /// to it; a second interface in the same container gets its address but no second default route (before, the
    /// second attach failed with "the target namespace already has a default route").
    @Test func aSecondInterfaceInTheSameContainerGetsNoSecondDefaultRoute() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let switches = try await Self.startNetwork(in: topology)
            let a = try await topology.addContainer(host: 0)
            let (first, _) = try await switches[0].attach("net1", .netns(a.namespace), ip: "auto")
            let (second, _) = try await switches[0].attach("net1", .netns(a.namespace), ifname: "eth1", ip: "auto")
            #expect(first.gateway == IPv4Address(10, 0, 0, 1))
            #expect(second.gateway == nil)
            #expect(second.ip != nil && second.ip != first.ip)
            #expect(try await topology.defaultRoute(in: a).contains("10.0.0.1"))
            #expect(try await topology.link("eth1", in: a)?.addresses.isEmpty == false)
        }
    }
}
