// `add-port` ports moved into containers by hand (the README's walkthrough, pipework, ovs-docker): the switch follows
// them (Sources/VXDaemon/MovedPorts.swift). Before, a restarted vxswitchd created a new TAP of the port's name in its
// own namespace and left the container's interface without a reader.

import Foundation
import Testing
import VXControl
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

extension SwitchdSystemTests {
    @Suite("add-port ports moved by hand (MovedPortSystemTests)")
    struct MovedPortSystemTests {
        /// `ifname` and `namespaceName` of port `name`'s `moved` record in the state file at `path`, or nil.
        static func movedRecord(port name: String, statePath path: String) -> (ifname: String?, namespace: String?)? {
            guard let data = FileManager.default.contents(atPath: path),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let ports = object["ports"] as? [[String: Any]],
                let port = ports.first(where: { $0["name"] as? String == name }),
                let moved = port["moved"] as? [String: Any]
            else { return nil }
            return (moved["ifname"] as? String, moved["namespaceName"] as? String)
        }

        static func stateText(_ path: String) -> String {
            (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(unreadable)"
        }

        @Test func aMovedPortSurvivesASIGKILLRestartGetsNoqueueAndGoesWithItsNamespace() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                try await Self.followMovedPorts(topology)
            }
        }

        static func followMovedPorts(_ topology: NetnsTopology) async throws {
            let statePath = "\(topology.workDirectory)/h0-state.json"
            var node = try await SwitchNode.start(in: topology, host: 0, io: .uring, statePath: statePath)
            let far = try await SwitchNode.start(in: topology, host: 1, io: .uring)
            try await node.addPeer(topology.hosts[1].underlayAddress, vni: 42)
            try await far.addPeer(topology.hosts[0].underlayAddress, vni: 42)
            let a = try await node.addContainerPort("tap1", vni: 42, address: "10.0.0.1")
            let b = try await node.addContainerPort("tap2", vni: 42, address: "10.0.0.2")
            let c = try await far.addContainerPort("tap1", vni: 42, address: "10.0.0.3")
            try await topology.expectPing(from: a, to: "10.0.0.3")
            // A port renamed where it is, in the switch's namespace (a rename needs the link down).
            let ip = try #require(NetnsEnvironment.ipPath)
            let host = topology.hosts[0]
            try await node.ctl("add-port", "tap3", "--vni", "42")
            try await topology.check([ip, "link", "set", "tap3", "down"], in: host)
            try await topology.check([ip, "link", "set", "tap3", "name", "home3"], in: host)
            try await topology.check([ip, "link", "set", "home3", "up"], in: host)

            // The switch notices the moves within its one-second maintenance tick and records them.
            let namespaceA = a.container.namespace
            let recorded = try await waitUntil(timeout: .seconds(5)) {
                let tap1 = Self.movedRecord(port: "tap1", statePath: statePath)
                let tap2 = Self.movedRecord(port: "tap2", statePath: statePath)
                let tap3 = Self.movedRecord(port: "tap3", statePath: statePath)
                return tap1?.namespace == namespaceA && tap2?.ifname == "eth0" && tap3?.ifname == "home3"
            }
            #expect(recorded != nil, "no move recorded: \(Self.stateText(statePath))\n\(node.log)")
            #expect(node.log.contains("port tap1 is eth0 in netns \(a.container.namespace)"), "\(node.log)")
            // The move reset the qdisc to the kernel's default; the switch put noqueue back.
            let qdisc = try await topology.check(["tc", "qdisc", "show", "dev", "eth0"], in: a)
            #expect(qdisc.hasPrefix("qdisc noqueue"), "\(qdisc)")

            // SIGKILL and restart: the ports are reopened in the containers, nothing new appears at home.
            node.process.signal(SIGKILL)
            _ = await node.process.waitForExit(timeout: .seconds(10))
            node = try await SwitchNode.start(
                in: topology, host: 0, io: .uring, statePath: statePath, logName: "vxswitchd-h0-restart")
            #expect(node.log.contains("re-attached port tap1 (eth0 in netns \(a.container.namespace))"), "\(node.log)")
            #expect(node.log.contains("re-attached port tap2 (eth0 in netns \(b.container.namespace))"), "\(node.log)")
            #expect(node.log.contains("re-attached port tap3 (home3 in the switch's namespace)"), "\(node.log)")
            let home = try await topology.linkNames(in: host)
            #expect(home.filter { $0.hasPrefix("tap") || $0.hasPrefix("home") } == ["home3"], "\(home)")
            let shown = try await node.show().ports
            #expect(shown.map(\.name.value) == ["tap1", "tap2", "tap3"])
            #expect(
                shown.map(\.location) == [
                    "eth0 in netns \(a.container.namespace)", "eth0 in netns \(b.container.namespace)",
                    "home3 in the switch's namespace",
                ])
            try await topology.expectPing(from: a, to: "10.0.0.3")
            try await topology.expectPing(from: c, to: "10.0.0.2")

            // A container that goes away while the switch runs takes its port with it.
            try #require(try await ProcessRunner.run([ip, "netns", "del", a.container.namespace]).succeeded)
            let removed = try await waitUntil(timeout: .seconds(5)) {
                try await node.show().ports.map(\.name.value) == ["tap2", "tap3"]
            }
            #expect(removed != nil, "\(node.log)")
            #expect(node.log.contains("port tap1 (eth0 in netns \(a.container.namespace)) is gone with its namespace: removed"), "\(node.log)")
            #expect(Self.movedRecord(port: "tap1", statePath: statePath) == nil, "\(Self.stateText(statePath))")

            // One that goes away while the switch is down is dropped at the next start, not re-created at home.
            node.process.signal(SIGTERM)
            #expect(await node.process.waitForExit(timeout: .seconds(10)) == 0)
            try #require(try await ProcessRunner.run([ip, "netns", "del", b.container.namespace]).succeeded)
            node = try await SwitchNode.start(
                in: topology, host: 0, io: .uring, statePath: statePath, logName: "vxswitchd-h0-restart2")
            #expect(try await node.show().ports.map(\.name.value) == ["tap3"], "\(node.log)")
            #expect(try await topology.linkNames(in: host).allSatisfy { !$0.hasPrefix("tap") })
            #expect(node.log.contains("cannot restore port tap2"), "\(node.log)")
        }
    }
}
