// The netns harness proving itself on the Linux kernel's own datapath: two hosts, each a kernel `vxlan` device
// (VNI 42, dstport 4789) enslaved to a bridge with one container's veth. Ping both ways, move 50 MiB over TCP and
// compare SHA-256 on both ends. The vxswitchd system tests mirror this suite with the daemon in place of the
// kernel, so this is also their baseline: if it fails, the machine (not the daemon) is broken.

import Foundation
import Synchronization
import Testing
import VXTestSupport

@Suite(
    "Kernel VXLAN overlay through NetnsTopology",
    .serialized,
    .enabled(if: NetnsEnvironment.isAvailable, Comment(rawValue: NetnsEnvironment.unavailableReason ?? ""))
)
struct KernelOverlayTests {
    /// Overlay MTU: 1500-byte underlay minus 50 bytes of outer Ethernet, IPv4, UDP and VXLAN headers.
    static let overlayMTU = 1450
    /// The transfer size the daemon tests use too.
    static let transferBytes = 50 * 1_048_576

    /// Two kernel-VXLAN hosts with one container each: 10.0.0.1 on host 0, 10.0.0.2 on host 1.
    static func buildKernelOverlay(
        _ topology: NetnsTopology
    ) async throws -> (NetnsTopology.ContainerInterface, NetnsTopology.ContainerInterface) {
        var interfaces: [NetnsTopology.ContainerInterface] = []
        for host in topology.hosts {
            let vxlan = try await topology.addKernelVXLAN(host: host.index, vni: 42)
            let container = try await topology.addContainer(host: host.index)
            interfaces.append(
                try await topology.connectVeth(
                    container,
                    address: "10.0.0.\(host.index + 1)",
                    mtu: overlayMTU,
                    bridge: vxlan.bridge
                )
            )
        }
        return (interfaces[0], interfaces[1])
    }

    /// An interface's transmit byte counter, read inside its namespace (`ip netns exec` remounts /sys there).
    static func txBytes(_ interface: String, in place: some NetnsPlace, of topology: NetnsTopology) async throws -> Int
    {
        let text = try await topology.check(["cat", "/sys/class/net/\(interface)/statistics/tx_bytes"], in: place)
        return try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test func containersOnKernelVXLANHostsPingEachOtherBothWays() async throws {
        try await withNetnsTopology(hosts: 2) { topology in
            let (a, b) = try await Self.buildKernelOverlay(topology)
            #expect(a.mtu == Self.overlayMTU)

            // The underlay itself first, so a failure below points at the overlay.
            let underlay = try await topology.ping(from: topology.hosts[0], to: topology.hosts[1].underlayAddress)
            #expect(underlay.allReceived, "underlay: \(underlay.output)")

            let forward = try await topology.ping(from: a, to: "10.0.0.2", count: 5)
            #expect(forward.allReceived, "10.0.0.1 -> 10.0.0.2: \(forward.output)")
            let backward = try await topology.ping(from: b, to: "10.0.0.1", count: 5)
            #expect(backward.allReceived, "10.0.0.2 -> 10.0.0.1: \(backward.output)")

            // A full-size overlay frame crosses unfragmented: DF set, 1450 - 28 bytes of IPv4 + ICMP headers.
            let full = try await topology.run(
                [
                    "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "\(Self.overlayMTU - 28)",
                    "10.0.0.2",
                ],
                in: a,
                timeout: .seconds(10)
            )
            #expect(full.succeeded, "full-MTU ping: \(full)")
        }
    }

    @Test func fiftyMebibytesCrossTheKernelOverlayIntact() async throws {
        try await withNetnsTopology(hosts: 2) { topology in
            let (a, b) = try await Self.buildKernelOverlay(topology)
            let host0 = topology.hosts[0]
            let before = try await Self.txBytes("vxlan42", in: host0, of: topology)
            let result = try await topology.tcpTransfer(
                from: a,
                to: b,
                bytes: Self.transferBytes,
                timeout: .seconds(120)
            )
            print("KernelOverlayTests: 10.0.0.1 -> 10.0.0.2: \(result)")
            #expect(result.verified, "\(result)")
            // The bytes really went through the tunnel (the containers share no other link).
            let after = try await Self.txBytes("vxlan42", in: host0, of: topology)
            #expect(after - before >= Self.transferBytes, "vxlan42 tx_bytes grew by \(after - before)")
        }
    }

    /// The third node the first seed tutorial "leaves to the reader": three kernel hosts, each flooding to the
    /// other two (first remote in `remote`, the second appended to the all-zeros FDB entry), on a jumbo underlay.
    @Test func threeKernelHostsReachEachOtherOverAJumboUnderlay() async throws {
        try await withNetnsTopology(hosts: 3, underlayMTU: 9000) { topology in
            var containers: [NetnsTopology.ContainerInterface] = []
            for host in topology.hosts {
                let vxlan = try await topology.addKernelVXLAN(host: host.index, vni: 4242)
                #expect(vxlan.remotes.count == 2)
                // The kernel sizes the vxlan device from its lower device: 9000 - 50.
                let mtu = try await topology.check(["cat", "/sys/class/net/\(vxlan.device)/mtu"], in: host)
                #expect(mtu.trimmingCharacters(in: .whitespacesAndNewlines) == "8950")
                let container = try await topology.addContainer(host: host.index)
                containers.append(
                    try await topology.connectVeth(
                        container,
                        address: "10.0.1.\(host.index + 1)",
                        mtu: 8950,
                        bridge: vxlan.bridge
                    )
                )
            }
            for (from, to) in [(0, 2), (2, 1), (1, 0)] {
                let result = try await topology.ping(from: containers[from], to: "10.0.1.\(to + 1)")
                #expect(result.allReceived, "c\(from) -> c\(to): \(result.output)")
            }
        }
    }

    @Test func teardownLeavesNoNamespaceOrProcessBehind() async throws {
        let topology = try await NetnsTopology(hosts: 2)
        defer { topology.teardown() }  // on the failure path; the test calls it itself below
        let prefix = topology.namespacePrefix
        let (a, _) = try await Self.buildKernelOverlay(topology)
        // A TAP moved from its host into a second container, as the daemon tests do, and a process still running
        // at teardown.
        let extra = try await topology.addContainer(host: 0)
        try await topology.check(["ip", "tuntap", "add", "mode", "tap", "name", "tap7"], in: topology.hosts[0])
        let tap = try await topology.plugInterface(
            "tap7",
            into: extra,
            address: "10.0.0.7",
            mac: "02:00:00:00:00:07",
            mtu: Self.overlayMTU
        )
        #expect(tap.name == "eth0" && tap.mac == "02:00:00:00:00:07" && tap.mtu == Self.overlayMTU)
        let sleeper = try topology.spawn(["sleep", "600"], in: a)
        #expect(sleeper.isRunning)
        #expect(topology.existingNamespaces().count == 6)  // ul, h0, h1, h0-c0, h1-c0, h0-c1

        let start = ContinuousClock.now
        topology.teardown()
        topology.teardown()  // idempotent
        // The sleeper goes on SIGTERM, so teardown never waits out its 2 s grace period.
        #expect(ContinuousClock.now - start < .seconds(2))

        #expect(!sleeper.isRunning)
        #expect(NetnsTopology.existingNamespaces(withPrefix: prefix).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: topology.workDirectory))
    }

    @Test func failedSetupStillTearsDownEverything() async throws {
        let prefix = Mutex("")  // written inside the throwing body, read after it
        await #expect(throws: NetnsError.self) {
            try await withNetnsTopology(hosts: 2) { topology in
                prefix.withLock { $0 = topology.namespacePrefix }
                let container = try await topology.addContainer(host: 1)
                // Moving an interface that does not exist fails the way a real mistake in a test would.
                _ = try await topology.plugInterface("nosuch0", into: container, address: "10.0.0.9")
            }
        }
        let name = prefix.withLock { $0 }
        #expect(name.hasPrefix("vx-"))
        #expect(NetnsTopology.existingNamespaces(withPrefix: name).isEmpty)
    }

    /// Children are spawned with an empty signal mask: Foundation's Process let them inherit the cooperative
    /// pool's mask, which blocks SIGTERM, so a daemon under test could never have shut down gracefully.
    @Test func spawnedProcessesStopOnSIGTERMAlone() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let sleeper = try topology.spawn(["sleep", "600"], in: topology.hosts[0])
            try await Task.sleep(for: .milliseconds(100))  // let it reach exec
            #expect(sleeper.signal(SIGTERM))
            let status = await sleeper.waitForExit(timeout: .seconds(2))
            #expect(status == 128 + SIGTERM)
        }
    }

    @Test func commandsThatOutliveTheirTimeoutAreKilled() async throws {
        try await withNetnsTopology(hosts: 1) { topology in
            let start = ContinuousClock.now
            let result = try await topology.run(["sleep", "30"], in: topology.hosts[0], timeout: .milliseconds(300))
            #expect(result.timedOut && !result.succeeded)
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }
}
