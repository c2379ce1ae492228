// vxctl against a real vxswitchd: every refused request says why on stderr, exits non-zero and leaves the switch as
// it was; an unreachable daemon is named with its socket path. And the daemon's end of life: SIGTERM exits 0,
// removes the control socket and every TAP it created; a SIGKILLed daemon's stale socket is refused by vxctl and
// replaced by the next daemon.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

extension SwitchdSystemTests {
    @Suite("vxctl against a running vxswitchd")
    struct ControlErrors {
        /// One refused vxctl invocation.
        struct Refusal: Sendable, CustomStringConvertible {
            var arguments: [String]
            /// 64: vxctl refused the argument itself; 1: vxswitchd refused the request.
            var status: Int32
            /// A fragment the message on stderr must contain.
            var message: String

            var description: String { "vxctl \(arguments.joined(separator: " "))" }
        }

        /// The table, against a switch on 192.0.2.10 with port tap0 (VNI 42) and VXLAN peer 192.0.2.20 (VNI 42).
        /// One daemon serves every row, so the rows also show that a refusal leaves the daemon usable.
        static let refusals: [Refusal] = [
            Refusal(arguments: ["del-port", "nope"], status: 1, message: "vxctl: no port named \"nope\""),
            Refusal(
                arguments: ["add-peer", "300.1.2.3", "--vni", "1"],
                status: 64,
                message: "\"300.1.2.3\" is not an IPv4 or IPv6 address"
            ),
            Refusal(
                arguments: ["add-port", "tap9", "--vni", "16777216"],
                status: 64,
                message: "VNI 16777216 is out of range (0-16777215)"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.21", "--vni", "16777216"],
                status: 64,
                message: "VNI 16777216 is out of range (0-16777215)"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.21", "--vni", "1", "--encap", "ipip"],
                status: 64,
                message: "unknown encapsulation \"ipip\" (expected vxlan or gre)"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.21", "--vni", "1", "--encap", "vxlan", "--gre-key", "nvgre"],
                status: 64,
                message: "GRE key mode \"nvgre\" applies only to GRE peers, not vxlan"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.21", "--vni", "1", "--gre-key", "vni"],
                status: 64,
                message: "applies only to GRE peers"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.21", "--vni", "1", "--encap", "gre", "--gre-key", "bogus"],
                status: 64,
                message: "unknown GRE key mode \"bogus\""
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.10", "--vni", "42"],
                status: 1,
                message: "vxctl: 192.0.2.10 is this switch's own VTEP address, not a peer"
            ),
            Refusal(
                arguments: ["add-port", "tap0", "--vni", "42"],
                status: 1,
                message: "vxctl: port \"tap0\" already exists"
            ),
            Refusal(
                arguments: ["add-port", "tap0", "--vni", "7"],
                status: 1,
                message: "vxctl: port \"tap0\" already exists"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.20", "--vni", "42"],
                status: 1,
                message: "vxctl: peer 192.0.2.20 is already in VNI 42"
            ),
            Refusal(
                arguments: ["add-peer", "192.0.2.20", "--vni", "43", "--encap", "gre"],
                status: 1,
                message: "vxctl: peer 192.0.2.20 already uses vxlan"
            ),
            Refusal(arguments: ["del-peer", "192.0.2.99"], status: 1, message: "vxctl: no peer 192.0.2.99"),
            Refusal(
                arguments: ["add-port", "tap9", "--vni", "1", "--mtu", "9"],
                status: 64,
                message: "MTU 9 is out of range (68-65535)"
            ),
            // More than a packet buffer holds with its tunnel headers (the daemon's limit is 1906).
            Refusal(
                arguments: ["add-port", "tap9", "--vni", "1", "--mtu", "9000"],
                status: 1,
                message: "vxctl: MTU 9000 is more than this switch carries (at most 1906"
            ),
            // The name belongs to the host's underlay veth, not a TAP: the kernel refuses and nothing is kept.
            Refusal(
                arguments: ["add-port", "ul0", "--vni", "1"],
                status: 1,
                message: "vxctl: cannot create TAP interface \"ul0\""
            ),
        ]

        @Test func refusedRequestsExplainThemselvesExitNonZeroAndChangeNothing() async throws {
            try await withNetnsTopology(hosts: 1) { topology in
                let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
                try await node.ctl("add-port", "tap0", "--vni", "42")
                try await node.addPeer("192.0.2.20", vni: 42)
                let before = try await node.showJSON()
                #expect(before.contains("\"tap0\"") && before.contains("\"192.0.2.20\""), "show: \(before)")

                for refusal in Self.refusals {
                    let result = try await node.vxctl(refusal.arguments)
                    #expect(result.status == refusal.status, "\(refusal): \(result)")
                    #expect(result.stderr.contains(refusal.message), "\(refusal): stderr: \(result.stderr)")
                    #expect(result.stdout.isEmpty, "\(refusal): stdout: \(result.stdout)")
                    let after = try await node.showJSON()
                    #expect(after == before, "\(refusal) changed the switch:\n\(after)")
                }
                // No TAP was left behind by the refused add-ports.
                let links = try await topology.check(["ip", "-o", "link", "show"], in: topology.hosts[0])
                #expect(!links.contains("tap9"), "links: \(links)")

                // Daemon down: vxctl names the socket path and exits 69 (EX_UNAVAILABLE).
                node.process.signal(SIGTERM)
                #expect(await node.process.waitForExit(timeout: .seconds(5)) == 0, "log: \(node.log)")
                let down = try await node.vxctl(["show"])
                #expect(down.status == 69, "\(down)")
                #expect(
                    down.stderr.contains(
                        "vxctl: cannot reach vxswitchd at \(node.controlPath): "
                            + "No such file or directory"
                    ),
                    "stderr: \(down.stderr)"
                )
            }
        }
    }

    @Suite("vxswitchd shutdown")
    struct Shutdown {
        @Test(arguments: IOBackend.allCases)
        func sigtermExitsZeroAndRemovesTheSocketAndEveryTAP(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io)
                let node = switches[0]
                let host = topology.hosts[0]
                try await node.ctl("add-port", "tap0", "--vni", "42")
                try await node.ctl("add-port", "tap1", "--vni", "43", "--mtu", "1400")
                // One port in use in a container, with traffic through it, so shutdown has a busy port too.
                let a = try await node.addContainerPort("tap2", vni: 42, address: "10.0.0.1")
                _ = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)
                for tap in ["tap0", "tap1"] {
                    #expect(try await topology.run(["ip", "link", "show", "dev", tap], in: host).succeeded)
                }

                let start = ContinuousClock.now
                #expect(node.process.signal(SIGTERM))
                let status = await node.process.waitForExit(timeout: .seconds(5))
                let elapsed = ContinuousClock.now - start
                #expect(
                    status == 0,
                    "exit status \(status.map(String.init) ?? "none (still running)"); log: \(node.log)"
                )
                print("SwitchdSystemTests: --io \(io.rawValue): SIGTERM to exit in \(elapsed)")
                #expect(!FileManager.default.fileExists(atPath: node.controlPath), "control socket left behind")
                for tap in ["tap0", "tap1"] {
                    let link = try await topology.run(["ip", "link", "show", "dev", tap], in: host)
                    #expect(!link.succeeded, "\(tap) still exists: \(link.stdout)")
                }
                let moved = try await topology.run(["ip", "link", "show", "dev", "eth0"], in: a)
                #expect(!moved.succeeded, "the TAP moved into the container still exists: \(moved.stdout)")
                #expect(node.log.contains("stopped"), "log: \(node.log)")
            }
        }

        /// A daemon killed outright leaves its socket file: vxctl reports the refused connection, and the next
        /// daemon on the same path replaces the stale file and serves.
        @Test func aStaleSocketIsRefusedByVxctlAndReplacedByTheNextDaemon() async throws {
            try await withNetnsTopology(hosts: 1) { topology in
                let first = try await SwitchNode.start(in: topology, host: 0, io: .epoll)
                try await first.ctl("add-port", "tap0", "--vni", "42")
                #expect(first.process.signal(SIGKILL))
                _ = await first.process.waitForExit(timeout: .seconds(5))
                #expect(FileManager.default.fileExists(atPath: first.controlPath))

                let refused = try await first.vxctl(["show"])
                #expect(refused.status == 69, "\(refused)")
                #expect(
                    refused.stderr.contains(
                        "vxctl: cannot reach vxswitchd at \(first.controlPath): Connection refused"
                    ),
                    "stderr: \(refused.stderr)"
                )

                // The killed daemon's TAP went with its descriptor, so the name is free again.
                let second = try await SwitchNode.start(in: topology, host: 0, io: .epoll)
                try await second.ctl("add-port", "tap0", "--vni", "42")
                let show = try await second.showJSON()
                #expect(show.contains("\"tap0\""), "show: \(show)")
            }
        }
    }
}
