// Every TAP the switch makes a port of has the noqueue root discipline: a multi-queue TAP brought up with the
// kernel's default gets an mq with a pfifo_fast for each of its 256 possible queues, about 6.6 MB of kernel memory
// per port for nothing (tun never holds frames back; VXNetlink's InterfacePlacement.swift says more). The TAPs
// attach creates and the underlay TAP are checked in their own tests.

import Testing
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("ports' queueing discipline")
    struct QueueingDiscipline {
        @Test func aNewTAPAndOneThatWasUpWithTheDefaultBothEndWithNoqueue() async throws {
            try await withNetnsTopology(hosts: 1) { topology in
                let host = topology.hosts[0]
                let ip = try #require(NetnsEnvironment.ipPath)
                // An existing TAP that came up with the default, as an older vxswitchd (or `ip tuntap`) leaves it.
                try await topology.check([ip, "tuntap", "add", "dev", "old0", "mode", "tap", "multi_queue", "vnet_hdr"], in: host)
                try await topology.check([ip, "link", "set", "old0", "up"], in: host)
                let before = try await topology.check(["tc", "qdisc", "show", "dev", "old0"], in: host)
                #expect(!before.hasPrefix("qdisc noqueue"), "the kernel's default changed: \(before)")

                let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
                try await node.ctl("add-port", "tap0", "--vni", "42")
                try await node.ctl("add-port", "old0", "--vni", "42")
                for name in ["tap0", "old0"] {
                    let qdisc = try await topology.check(["tc", "qdisc", "show", "dev", name], in: host)
                    #expect(qdisc.hasPrefix("qdisc noqueue"), "\(name): \(qdisc)")
                }
                #expect(!node.process.stderr().contains("default queueing discipline"))
            }
        }
    }
}
