// A TAP deleted under a running vxswitchd (`ip link del` in the switch's own namespace, where the TAP was made): the
// daemon keeps its descriptors, whose reads now fail (EBADFD). (A TAP the user moved into a container and deleted
// there went with its container instead, and the port is removed: MovedPortSystemTests.) The port must show up as failed in `vxctl show --json` with the reason
// and in the daemon's log, the daemon must live on, the other ports must keep switching, and `del-port` must still
// remove the port. PortFailureTests (VXDaemonTests) covers the same without root, on a MemoryEngine.

import Foundation
import Testing
import VXControl
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("a TAP deleted under a running vxswitchd")
    struct DeletedTAP {
        /// Polls `vxctl show --json` (bounded, 10 s) until port `name` carries a failure.
        static func failure(ofPort name: String, on node: SwitchNode) async throws -> String? {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                let show = try JSONDecoder().decode(ShowResult.self, from: Data(try await node.showJSON().utf8))
                if let failure = show.ports.first(where: { $0.name.value == name })?.failure { return failure }
                try await Task.sleep(for: .milliseconds(100))
            }
            return nil
        }

        @Test(arguments: IOBackend.allCases)
        func portIsShownFailedAndTheOthersKeepSwitching(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 1) { topology in
                let node = try await SwitchNode.start(in: topology, host: 0, io: io)
                let a = try await node.addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                _ = try await node.addContainerPort("tap1", vni: 42, address: "10.0.0.2")
                try await node.ctl("add-port", "tap2", "--vni", "42")
                try await topology.expectPing(from: a, to: "10.0.0.2")

                // tap2, still where the switch made it, goes away underneath the daemon.
                try await topology.check(["ip", "link", "del", "tap2"], in: topology.hosts[0])

                let failure = try await Self.failure(ofPort: "tap2", on: node)
                #expect(failure == "EBADFD (File descriptor in bad state) on read", "log:\n\(node.log)")
                #expect(node.process.exitStatus == nil, "vxswitchd died: \(node.log)")
                let show = try JSONDecoder().decode(ShowResult.self, from: Data(try await node.showJSON().utf8))
                #expect(show.ports.filter { $0.failure != nil }.map(\.name.value) == ["tap2"])
                // The JSON names it as documented (docs/control-protocol.md), and so does the table.
                let json = try await node.showJSON()
                let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
                let ports = object?["ports"] as? [[String: Any]] ?? []
                let tap2 = ports.first { $0["name"] as? String == "tap2" }
                #expect(tap2?["failure"] as? String == "EBADFD (File descriptor in bad state) on read", "\(json)")
                let table = try await node.ctl("show")
                #expect(table.contains("port tap2 FAILED: EBADFD"), "\(table)")

                // The two other containers still reach each other through the switch.
                try await topology.expectPing(from: a, to: "10.0.0.2")

                // Logged once at error level, with the name, a descriptor and the errno (the maintenance thread
                // logs once a second).
                let deadline = ContinuousClock.now + .seconds(5)
                while !node.log.contains("port tap2 failed"), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                }
                let lines = node.log.split(separator: "\n").filter { $0.contains("port tap2 failed") }
                #expect(lines.count == 1, "log:\n\(node.log)")
                #expect(lines.first.map { $0.contains("error") && $0.contains("fd ") && $0.contains("EBADFD") } == true)

                // del-port still removes it and the daemon goes on.
                try await node.ctl("del-port", "tap2")
                let after = try JSONDecoder().decode(ShowResult.self, from: Data(try await node.showJSON().utf8))
                #expect(after.ports.map(\.name.value) == ["tap0", "tap1"])
                try await topology.expectPing(from: a, to: "10.0.0.2")
                #expect(node.process.exitStatus == nil, "vxswitchd died: \(node.log)")
                for line in node.log.split(separator: "\n") where line.contains("port tap2 failed") {
                    print("SwitchdPortFailureTests: \(io): \(line)")
                }
            }
        }
    }
}
