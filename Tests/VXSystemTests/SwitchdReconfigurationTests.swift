// vxswitchd under change and under attack: ports and peers removed and added back while containers talk, and tunnel
// packets from an address that is not a peer, or from a peer in a VNI it was not given, never reach a container.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("vxswitchd reconfigured while in use")
    struct Reconfiguration {
        @Test func removingAndAddingBackPeersAndPortsTakesEffectAtOnce() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: .uring)
                let host1 = topology.hosts[1].underlayAddress
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)

                // Without its peer, host 0 neither sends to host 1 nor takes its packets, and forgets what it had
                // learned there.
                try await switches[0].ctl("del-peer", host1)
                let flushed = try await switches[0].destinations(vni: 42)
                #expect(flushed[b.mac] == nil, "host 0 fdb after del-peer: \(flushed)")
                let cut = try await topology.ping(from: b, to: "10.0.0.1", count: 2, timeout: .seconds(3))
                #expect(cut.received == 0, "10.0.0.2 -> 10.0.0.1 without the peer: \(cut.output)")
                let stats = try await switches[0].stats()
                #expect((stats.drops["unknownPeer"] ?? 0) > 0, "host 0 stats: \(stats)")

                try await switches[0].addPeer(host1, vni: 42)
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)

                // del-port removes the TAP, even from the container it was moved to; the same name added back is a
                // new TAP with a new MAC, which host 0 learns when it first speaks.
                try await switches[1].ctl("del-port", "tap0")
                let gone = try await topology.run(["ip", "link", "show", "dev", "eth0"], in: b)
                #expect(!gone.succeeded, "container eth0 after del-port: \(gone.stdout)")
                try await switches[1].ctl("add-port", "tap0", "--vni", "42")
                let b2 = try await topology.plugInterface("tap0", into: b.container, address: "10.0.0.2")
                #expect(b2.mac != b.mac)
                try await topology.expectPing(from: b2, to: "10.0.0.1", count: 2)
                let relearned = try await switches[0].destinations(vni: 42)
                #expect(relearned[b2.mac] == "peer \(host1)", "host 0 fdb: \(relearned)")
            }
        }
    }

    @Suite("MAC learning over time and across encapsulations")
    struct Learning {
        /// With `--aging 2`, learned entries go after two idle seconds (the maintenance thread ticks once a
        /// second), and traffic afterwards floods and learns them again.
        @Test func learnedEntriesAgeOutWhenIdleAndAreLearnedAgain() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(
                    in: topology,
                    io: .epoll,
                    extraArguments: ["--aging", "2"]
                )
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 1)
                #expect(try await switches[0].destinations(vni: 42)[b.mac] != nil)

                try await NetnsTopology.waitUntil("host 0's learned entries to age out", timeout: .seconds(8)) {
                    try await switches[0].fdb(vni: 42).allSatisfy(\.isStatic)
                }
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 1)
                let relearned = try await switches[0].destinations(vni: 42)
                #expect(relearned[b.mac] == "peer \(topology.hosts[1].underlayAddress)", "host 0 fdb: \(relearned)")
            }
        }

        /// One VNI, two peers with different encapsulations: host 0 reaches host 1 over VXLAN and host 2 over GRE
        /// (key = nvgre), so its floods go out in both at once, and each remote container is learned behind its
        /// own peer. Hosts 1 and 2 are peered with each other over VXLAN.
        @Test func oneVNICarriedOverVXLANToOnePeerAndGREToAnother() async throws {
            try await withNetnsTopology(hosts: 3) { topology in
                var switches: [SwitchNode] = []
                for host in topology.hosts {
                    switches.append(try await SwitchNode.start(in: topology, host: host.index, io: .uring))
                }
                let address = topology.hosts.map(\.underlayAddress)
                let gre = Tunnel.gre(key: "nvgre")
                try await switches[0].addPeer(address[1], vni: 42)
                try await switches[0].addPeer(address[2], vni: 42, tunnel: gre)
                try await switches[1].addPeer(address[0], vni: 42)
                try await switches[1].addPeer(address[2], vni: 42)
                try await switches[2].addPeer(address[0], vni: 42, tunnel: gre)
                try await switches[2].addPeer(address[1], vni: 42)
                var containers: [NetnsTopology.ContainerInterface] = []
                for node in switches {
                    containers.append(
                        try await node.addContainerPort("tap0", vni: 42, address: "10.0.2.\(node.host.index + 1)")
                    )
                }
                // From host 0 first, so its ARP broadcast is the first flood, in both encapsulations.
                for (from, to) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
                    try await topology.expectPing(from: containers[from], to: "10.0.2.\(to + 1)", count: 2)
                }
                let fdb = try await switches[0].destinations(vni: 42)
                #expect(fdb[containers[1].mac] == "peer \(address[1])", "host 0 fdb: \(fdb)")
                #expect(fdb[containers[2].mac] == "peer \(address[2])", "host 0 fdb: \(fdb)")
            }
        }
    }

    @Suite("vxswitchd isolation from tunnel traffic it was not configured for")
    struct Isolation {
        /// Host 0 runs vxswitchd with containers in VNI 42 and 43 (both 10.0.0.1) and one peer, host 1, in VNI 42
        /// only. Host 1 runs a kernel VXLAN in VNI 43 and host 2, which is no peer at all, one in VNI 42; both send
        /// to host 0. Neither's container gets an answer, and none of their frames reaches host 0's containers
        /// (an ARP request that did would leave its sender in the container's neighbour table).
        @Test func packetsFromAStrangerOrInAVNIThePeerDoesNotCarryNeverReachAContainer() async throws {
            try await withNetnsTopology(hosts: 3) { topology in
                let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
                try await node.addPeer(topology.hosts[1].underlayAddress, vni: 42)
                let a42 = try await node.addContainerPort("tap42", vni: 42, address: "10.0.0.1")
                let a43 = try await node.addContainerPort("tap43", vni: 43, address: "10.0.0.1")

                var strangers: [NetnsTopology.ContainerInterface] = []
                for (host, vni, address) in [(1, UInt32(43), "10.0.0.2"), (2, UInt32(42), "10.0.0.3")] {
                    let vxlan = try await topology.addKernelVXLAN(host: host, vni: vni, remoteHosts: [0])
                    let container = try await topology.addContainer(host: host)
                    strangers.append(
                        try await topology.connectVeth(
                            container,
                            address: address,
                            mtu: SwitchdSystemTests.overlayMTU,
                            bridge: vxlan.bridge
                        )
                    )
                }
                for stranger in strangers {
                    let result = try await topology.ping(from: stranger, to: "10.0.0.1", count: 3, timeout: .seconds(3))
                    #expect(result.received == 0, "\(stranger.address ?? "?") got answers: \(result.output)")
                }

                let fdb = try await node.fdb()
                for stranger in strangers {
                    #expect(!fdb.contains { "\($0.mac)" == stranger.mac }, "host 0 learned \(stranger.mac): \(fdb)")
                }
                for inside in [a42, a43] {
                    let neighbours = try await topology.check(["ip", "neigh", "show"], in: inside)
                    for stranger in strangers {
                        #expect(!neighbours.contains(stranger.mac), "\(inside.namespace) neighbours: \(neighbours)")
                    }
                }
                let stats = try await node.stats()
                // Host 2's packets are refused as coming from no peer; host 1's VNI 43 frames as not in a domain it
                // belongs to, on host 1's own row.
                #expect((stats.drops["unknownPeer"] ?? 0) > 0, "stats: \(stats)")
                let peer = stats.peers.first { "\($0.ip)" == topology.hosts[1].underlayAddress }
                #expect((peer?.counters.drops["staleIngress"] ?? 0) > 0, "stats: \(stats)")
            }
        }
    }
}
