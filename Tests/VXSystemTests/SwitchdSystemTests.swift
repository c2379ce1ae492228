// vxswitchd end to end: real daemons in NetnsTopology hosts, driven by vxctl, carrying traffic between containers
// over VXLAN and GRE, with each other and with the Linux kernel's own VXLAN. KernelOverlayTests is the baseline:
// the same pings and transfers with the kernel on both ends. SwitchNode.swift is the helper (start a daemon, run
// vxctl, add a container port); SwitchdControlTests.swift covers vxctl's refusals and shutdown, and
// SwitchdReconfigurationTests.swift changes made while in use, aging, mixed encapsulations and isolation.
//
// Every suite here nests inside `SwitchdSystemTests`, whose `.serialized` covers them all: each test runs daemons
// and a 50 MiB transfer on a 2-core machine shared with other builds, so they go one at a time. Underlay MTU is
// 1500 and ports get the daemon's default MTU (1450), which fits both VXLAN (50 bytes) and GRE (42 bytes).

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

@Suite(
    "vxswitchd and vxctl in network namespaces",
    .serialized,
    .enabled(if: NetnsEnvironment.isAvailable, Comment(rawValue: NetnsEnvironment.unavailableReason ?? ""))
)
struct SwitchdSystemTests {
    /// Bytes moved by every transfer check.
    static let transferBytes = 50 * 1_048_576
    /// Bound on one transfer. The debug daemon moves 50 MiB in about a second here (400-800 Mbit/s); the rest is
    /// room for a machine busy with other builds.
    static let transferTimeout: Duration = .seconds(60)
    /// The daemon's default port MTU, and what containers get.
    static let overlayMTU = 1450

    /// Turns the container interface's transmit offloads off (`ethtool -K <if> tx off tso off gso off`): its
    /// stack then checksums every segment itself and hands the switch MTU-sized frames, never 64 KiB TSO frames
    /// with partial checksums. The per-packet path, as OVS userspace needs it.
    static func turnOffloadsOff(_ topology: NetnsTopology, _ interface: NetnsTopology.ContainerInterface) async throws {
        let ethtool = try #require(
            ProcessRunner.findExecutable("ethtool", candidates: ["/usr/sbin/ethtool", "/sbin/ethtool"]),
            "ethtool is needed (tools/install-deps.sh installs it)"
        )
        try await topology.check([ethtool, "-K", interface.name, "tx", "off", "tso", "off", "gso", "off"], in: interface)
        let features = try await topology.check([ethtool, "-k", interface.name], in: interface)
        #expect(features.contains("tcp-segmentation-offload: off"), "\(interface.name): \(features)")
    }

    /// Datagrams in `burstsOfSmallUDPDatagramsArriveInOrderByteForByte`.
    static let udpBurstCount = 2000
    /// Its two ends (python3 -c SCRIPT send|recv COUNT): 18-byte payloads (64-byte frames), a 4-byte sequence
    /// number then bytes derived from it, from 10.0.0.1:40000 to 10.0.0.2:9000. The receiver stops after COUNT
    /// datagrams or 1 s of silence (10 s at most) and reports how many came and whether they came in order, each
    /// exactly as sent.
    static let udpBurstScript = """
        import json, socket, struct, sys, time
        mode, count = sys.argv[1], int(sys.argv[2])
        def payload(i): return struct.pack("!I", i) + bytes((i * 7 + k) & 0xFF for k in range(14))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if mode == "send":
            s.bind(("10.0.0.1", 40000)); s.connect(("10.0.0.2", 9000))
            for i in range(count):
                s.send(payload(i))
                if i % 50 == 49: time.sleep(0.002)
            sys.exit(0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("10.0.0.2", 9000)); s.settimeout(1.0)
        print(json.dumps({"listening": True}), flush=True)
        got, exact, end = 0, True, time.time() + 10
        while got < count and time.time() < end:
            try: data = s.recv(2048)
            except socket.timeout: break
            exact = exact and data == payload(got)
            got += 1
        print(json.dumps({"received": got, "in_order_exact": exact}), flush=True)
        """

    /// Moves 50 MiB from `source` to `destination`, prints the rate under `label`, and expects it intact.
    static func expectTransfer(
        _ topology: NetnsTopology,
        _ label: String,
        from source: NetnsTopology.ContainerInterface,
        to destination: NetnsTopology.ContainerInterface,
        port: Int = 5201,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let result = try await topology.tcpTransfer(
            from: source,
            to: destination,
            bytes: transferBytes,
            port: port,
            timeout: transferTimeout
        )
        print("SwitchdSystemTests: \(label): \(source.address ?? "?") -> \(destination.address ?? "?"): \(result)")
        #expect(result.verified, "\(label): \(result)", sourceLocation: sourceLocation)
    }
}

// MARK: - VXLAN between vxswitchd hosts

extension SwitchdSystemTests {
    @Suite("VXLAN between vxswitchd hosts")
    struct VXLANOverlay {
        @Test(arguments: IOBackend.allCases)
        func containersPingBothWaysAndEachSwitchLearnsBothMACs(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io)
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                #expect(a.mtu == SwitchdSystemTests.overlayMTU && b.mtu == SwitchdSystemTests.overlayMTU)

                // The underlay first, so a failure below points at the overlay.
                let underlay = try await topology.ping(from: topology.hosts[0], to: topology.hosts[1].underlayAddress)
                #expect(underlay.allReceived, "underlay: \(underlay.output)")
                // Nothing has crossed yet: neither switch knows the other side's container.
                #expect(try await switches[0].destinations(vni: 42)[b.mac] == nil)
                #expect(try await switches[1].destinations(vni: 42)[a.mac] == nil)

                // The first ARP request is a broadcast (flooded to the peer); the reply is unicast to a MAC the
                // far switch has just learned.
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)

                // ARP resolved across the tunnel, to the real MAC on the other side.
                let neighbour = try await topology.check(["ip", "neigh", "show", "10.0.0.2"], in: a)
                #expect(neighbour.contains("lladdr \(b.mac)"), "10.0.0.1's neighbour table: \(neighbour)")

                let fdb0 = try await switches[0].destinations(vni: 42)
                let fdb1 = try await switches[1].destinations(vni: 42)
                #expect(fdb0[a.mac] == "port tap0", "host 0 fdb: \(fdb0)")
                #expect(fdb0[b.mac] == "peer \(topology.hosts[1].underlayAddress)", "host 0 fdb: \(fdb0)")
                #expect(fdb1[b.mac] == "port tap0", "host 1 fdb: \(fdb1)")
                #expect(fdb1[a.mac] == "peer \(topology.hosts[0].underlayAddress)", "host 1 fdb: \(fdb1)")

                // A full-size overlay frame crosses unfragmented: DF set, 1450 - 28 bytes of IPv4 + ICMP headers.
                let full = try await topology.run(
                    [
                        "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s",
                        "\(SwitchdSystemTests.overlayMTU - 28)", "10.0.0.2",
                    ],
                    in: a,
                    timeout: .seconds(10)
                )
                #expect(full.succeeded, "full-MTU ping: \(full)")

                // It went through the tunnel as VXLAN: the peer counters moved on both sides.
                for (node, other) in [(switches[0], 1), (switches[1], 0)] {
                    let stats = try await node.stats()
                    let peer = stats.peers.first { "\($0.ip)" == topology.hosts[other].underlayAddress }
                    #expect((peer?.counters.rxFrames ?? 0) >= 5 && (peer?.counters.txFrames ?? 0) >= 5, "\(stats)")
                }
            }
        }

        /// With the containers' offloads on (64 KiB TSO frames, segmented by the switch) and off (MTU-sized
        /// frames with complete checksums, one per read).
        @Test(arguments: IOBackend.allCases, [true, false])
        func fiftyMebibytesCrossEachWayIntact(io: IOBackend, containerOffloads: Bool) async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io)
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                if !containerOffloads {
                    try await SwitchdSystemTests.turnOffloadsOff(topology, a)
                    try await SwitchdSystemTests.turnOffloadsOff(topology, b)
                }
                let label = "vxlan \(io.rawValue), container offloads \(containerOffloads ? "on" : "off")"
                let udpBefore = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                try await SwitchdSystemTests.expectTransfer(topology, label, from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(
                    topology,
                    label,
                    from: b,
                    to: a,
                    port: 5202
                )
                // 50 MiB in 1450-byte frames is over 36,000 VXLAN datagrams into host 1 alone, which its switch
                // counts one by one; the kernel counts a GRO read once (InDatagrams), so with UDP GSO on the sending
                // side and UDP GRO on the receiving one it counts far fewer.
                let udpAfter = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                let datagrams = try #require(try await switches[1].stats().peers.first).counters.rxFrames
                #expect(datagrams > 36_000, "host 1's switch received \(datagrams) VXLAN datagrams")
                #expect(
                    udpAfter - udpBefore > 0 && UInt64(udpAfter - udpBefore) < datagrams / 4,
                    "host 1's kernel delivered \(udpAfter - udpBefore) UDP reads for \(datagrams) datagrams: no GRO?")
                // vxctl stats --json shows it too: host 1's switch took GRO reads, and with the container's TSO on,
                // host 0's switch received TSO frames and sent their segments as UDP GSO sends.
                let receiving = try #require(try await switches[1].stats().offloads)
                #expect(receiving.groFramesReceived > 0 && receiving.groDatagrams > receiving.groFramesReceived,
                        "\(receiving)")
                if containerOffloads {
                    let sending = try #require(try await switches[0].stats().offloads)
                    #expect(sending.tsoFramesReceived > 0 && sending.udpGSOSends > 0, "\(sending)")
                }
                // The counters saw it: each side's port took in at least 50 MiB of frames and its peer sent them,
                // and nothing was dropped.
                for node in switches {
                    let stats = try await node.stats()
                    let port = try #require(stats.ports.first)
                    let peer = try #require(stats.peers.first)
                    let bytes = UInt64(SwitchdSystemTests.transferBytes)
                    #expect(port.counters.rxBytes > bytes && peer.counters.txBytes > bytes, "\(stats)")
                    #expect(port.counters.txBytes > bytes && peer.counters.rxBytes > bytes, "\(stats)")
                    let drops: UInt64 = stats.drops.values.reduce(0, +) + port.counters.totalDrops
                    #expect(drops + peer.counters.totalDrops == 0, "\(stats)")
                }
            }
        }

        /// Bursts of small UDP datagrams of one flow: the receiving switch writes runs of them to its TAP as USO
        /// frames (UDPCoalescer), which the kernel cuts back into datagrams; every one must arrive, in order, byte
        /// for byte. 40 bursts of 50 back to back, 2 ms apart: bursts so the switches see runs in one batch, and
        /// bounded so no queue on the way overflows.
        @Test(arguments: IOBackend.allCases)
        func burstsOfSmallUDPDatagramsArriveInOrderByteForByte(io: IOBackend) async throws {
            let python = try #require(NetnsEnvironment.python3Path)
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io)
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)

                let receiver = try topology.spawn(
                    [python, "-c", SwitchdSystemTests.udpBurstScript, "recv", "\(SwitchdSystemTests.udpBurstCount)"],
                    in: b, name: "udp-burst-recv")
                defer { receiver.stop(grace: .milliseconds(500)) }
                try await receiver.waitForOutput(containing: "\"listening\"", timeout: .seconds(15))
                let sender = try await topology.run(
                    [python, "-c", SwitchdSystemTests.udpBurstScript, "send", "\(SwitchdSystemTests.udpBurstCount)"],
                    in: a, timeout: .seconds(30))
                #expect(sender.succeeded, "\(sender)")
                let status = await receiver.waitForExit(timeout: .seconds(15))
                let report = receiver.stdout()
                #expect(status == 0, "receiver: \(report) \(receiver.stderr())")
                #expect(
                    report.contains(#""received": \#(SwitchdSystemTests.udpBurstCount), "in_order_exact": true"#),
                    "\(report)")
                let offloads = try #require(try await switches[1].stats().offloads)
                print("SwitchdSystemTests: udp bursts \(io.rawValue): \(report.split(separator: "\n").last ?? ""), "
                      + "USO writes \(offloads.udpCoalescedWrites) of \(offloads.udpCoalescedFrames) datagrams")
                #expect(offloads.udpCoalescedWrites > 0, "no run was written as one USO frame: \(offloads)")
            }
        }

        /// The seeds' "third node": three switches, each peered with the other two (head-end replication).
        @Test func threeHostsInAFullMeshReachEveryContainer() async throws {
            try await withNetnsTopology(hosts: 3) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: .uring)
                var containers: [NetnsTopology.ContainerInterface] = []
                for node in switches {
                    containers.append(
                        try await node.addContainerPort("tap0", vni: 42, address: "10.0.1.\(node.host.index + 1)")
                    )
                }
                for from in 0..<3 {
                    for to in 0..<3 where to != from {
                        try await topology.expectPing(from: containers[from], to: "10.0.1.\(to + 1)", count: 2)
                    }
                }
                // Each switch learned every remote container behind the peer it really lives on.
                for node in switches {
                    let fdb = try await node.destinations(vni: 42)
                    for (index, container) in containers.enumerated() {
                        let expected =
                            index == node.host.index ? "port tap0" : "peer \(topology.hosts[index].underlayAddress)"
                        #expect(fdb[container.mac] == expected, "host \(node.host.index) fdb: \(fdb)")
                    }
                }
            }
        }

        /// VNI 42 and VNI 43 reuse the same container addresses on the same two hosts, and stay apart.
        @Test func twoVNIsWithTheSameAddressesNeverSeeEachOther() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: .uring, vni: 42)
                for node in switches {
                    try await node.addPeer(topology.hosts[1 - node.host.index].underlayAddress, vni: 43)
                }
                let a42 = try await switches[0].addContainerPort("tap42", vni: 42, address: "10.0.0.1")
                let b42 = try await switches[1].addContainerPort("tap42", vni: 42, address: "10.0.0.2")
                let a43 = try await switches[0].addContainerPort("tap43", vni: 43, address: "10.0.0.1")
                let b43 = try await switches[1].addContainerPort("tap43", vni: 43, address: "10.0.0.2")
                // 10.0.0.3 exists only in VNI 43.
                let c43 = try await switches[1].addContainerPort("tap43c", vni: 43, address: "10.0.0.3")

                try await topology.expectPing(from: a42, to: "10.0.0.2")
                try await topology.expectPing(from: b42, to: "10.0.0.1")
                try await topology.expectPing(from: a43, to: "10.0.0.2")
                try await topology.expectPing(from: b43, to: "10.0.0.1")
                try await topology.expectPing(from: a43, to: "10.0.0.3")

                // From VNI 42, the VNI-43-only address does not answer (ARP never crosses into VNI 43).
                let leak = try await topology.ping(from: a42, to: "10.0.0.3", count: 2, timeout: .seconds(3))
                #expect(leak.received == 0, "VNI 42 reached VNI 43's 10.0.0.3: \(leak.output)")

                // Each VNI's table holds only its own containers' MACs, and 10.0.0.2 resolved to the MAC in the
                // sender's own VNI.
                let vni42 = Set([a42.mac, b42.mac])
                let vni43 = Set([a43.mac, b43.mac, c43.mac])
                for node in switches {
                    let fdb42 = try await node.destinations(vni: 42)
                    let fdb43 = try await node.destinations(vni: 43)
                    #expect(Set(fdb42.keys).isDisjoint(with: vni43), "host \(node.host.index) VNI 42: \(fdb42)")
                    #expect(Set(fdb43.keys).isDisjoint(with: vni42), "host \(node.host.index) VNI 43: \(fdb43)")
                    #expect(vni42.isSubset(of: fdb42.keys), "host \(node.host.index) VNI 42: \(fdb42)")
                    #expect(Set([a43.mac, b43.mac]).isSubset(of: fdb43.keys), "host \(node.host.index): \(fdb43)")
                }
                let neighbour42 = try await topology.check(["ip", "neigh", "show", "10.0.0.2"], in: a42)
                let neighbour43 = try await topology.check(["ip", "neigh", "show", "10.0.0.2"], in: a43)
                #expect(neighbour42.contains("lladdr \(b42.mac)"), "VNI 42 neighbour: \(neighbour42)")
                #expect(neighbour43.contains("lladdr \(b43.mac)"), "VNI 43 neighbour: \(neighbour43)")
            }
        }
    }
}

// MARK: - GRE between vxswitchd hosts

extension SwitchdSystemTests {
    @Suite("GRE between vxswitchd hosts")
    struct GREOverlay {
        @Test(arguments: IOBackend.allCases, ["vni", "nvgre", "none"])
        func containersPingAndFiftyMebibytesCrossIntact(io: IOBackend, greKey: String) async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io, tunnel: .gre(key: greKey))
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                let show = try await switches[0].showJSON()
                #expect(show.contains("\"gre\"") && show.contains("\"\(greKey)\""), "show: \(show)")

                try await topology.expectPing(from: a, to: "10.0.0.2")
                try await topology.expectPing(from: b, to: "10.0.0.1")
                let fdb0 = try await switches[0].destinations(vni: 42)
                #expect(fdb0[b.mac] == "peer \(topology.hosts[1].underlayAddress)", "host 0 fdb: \(fdb0)")

                let udpBefore = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                try await SwitchdSystemTests.expectTransfer(
                    topology,
                    "gre key=\(greKey) \(io.rawValue)",
                    from: a,
                    to: b
                )
                // It really was GRE: next to no UDP reached host 1 while 50 MiB did.
                let udpAfter = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                #expect(udpAfter - udpBefore < 100, "host 1 received \(udpAfter - udpBefore) UDP datagrams")
            }
        }
    }
}

// MARK: - Interoperability with the kernel's VXLAN

extension SwitchdSystemTests {
    @Suite("VXLAN over an underlay smaller than the overlay needs")
    struct SmallUnderlay {
        /// Ports keep the default MTU 1450, but the underlay is 1400: full-size VXLAN datagrams (1500 bytes) do not
        /// fit it. A GSO send of such datagrams is refused by the kernel (GSO never fragments), so the engines send
        /// them one by one and the kernel fragments each, as it would a single large datagram (DF is clear), and
        /// the far host reassembles them. Before the fallback, every full-size TCP segment was dropped and the
        /// transfer stalled; pings (small) passed.
        @Test(arguments: IOBackend.allCases)
        func fiftyMebibytesCrossIntactWhenDatagramsMustBeFragmented(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 2, underlayMTU: 1400) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io)
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 3)
                let label = "vxlan \(io.rawValue), underlay MTU 1400"
                let fragmentsBefore = try await topology.snmpCounter("Ip", "FragCreates", in: topology.hosts[0])
                try await SwitchdSystemTests.expectTransfer(topology, label, from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(topology, label, from: b, to: a, port: 5202)
                let fragments = try await topology.snmpCounter("Ip", "FragCreates", in: topology.hosts[0])
                #expect(fragments - fragmentsBefore > 10_000, "host 0 made \(fragments - fragmentsBefore) fragments")
            }
        }
    }

    @Suite("vxswitchd with the Linux kernel's VXLAN")
    struct KernelInterop {
        /// Host 0 runs vxswitchd; host 1 runs the kernel's vxlan42 (dstport 4789, remote = host 0) on a bridge.
        ///
        /// Host 1's underlay veth has transmit checksum offload turned off. With it on, the kernel leaves the inner
        /// TCP checksum of a container's segment unfinished (CHECKSUM_PARTIAL) when it encapsulates, expecting the
        /// NIC to fill it in; a veth never does, and the skb crosses into host 0 still marked partial. The kernel's
        /// own VXLAN receiver trusts that mark, but vxswitchd reads the datagram from a UDP socket, which carries
        /// no such mark, and forwards the frame as it is: the container drops every SYN-ACK with "incorrect cksum"
        /// (pings pass, since ICMP is checksummed in software). On a physical underlay the NIC completes the
        /// checksum, which `tx off` reproduces here.
        ///
        /// With the containers' offloads on and off: on, vxswitchd segments its container's TSO frames and the
        /// kernel's container sends it frames the kernel segmented; off, both sides send MTU-sized frames.
        @Test(arguments: [true, false])
        func pingAndFiftyMebibytesEachWayWithAKernelVXLANHost(containerOffloads: Bool) async throws {
            let ethtool = try #require(
                ProcessRunner.findExecutable("ethtool", candidates: ["/usr/sbin/ethtool", "/sbin/ethtool"]),
                "ethtool is needed (tools/install-deps.sh installs it)"
            )
            try await withNetnsTopology(hosts: 2) { topology in
                let node = try await SwitchNode.start(in: topology, host: 0, io: .uring)
                try await node.addPeer(topology.hosts[1].underlayAddress, vni: 42)
                let a = try await node.addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let vxlan = try await topology.addKernelVXLAN(host: 1, vni: 42, remoteHosts: [0], dstPort: 4789)
                try await topology.check(
                    [ethtool, "-K", topology.hosts[1].underlayInterface, "tx", "off"],
                    in: topology.hosts[1]
                )
                let kernelContainer = try await topology.addContainer(host: 1)
                let b = try await topology.connectVeth(
                    kernelContainer,
                    address: "10.0.0.2",
                    mtu: SwitchdSystemTests.overlayMTU,
                    bridge: vxlan.bridge
                )

                if !containerOffloads {
                    try await SwitchdSystemTests.turnOffloadsOff(topology, a)
                    try await SwitchdSystemTests.turnOffloadsOff(topology, b)
                }

                try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)
                let fdb = try await node.destinations(vni: 42)
                #expect(fdb[b.mac] == "peer \(topology.hosts[1].underlayAddress)", "vxswitchd fdb: \(fdb)")
                // And the kernel learned our container behind host 0.
                let kernelFDB = try await topology.check(
                    [NetnsEnvironment.bridgePath ?? "bridge", "fdb", "show", "dev", vxlan.device],
                    in: topology.hosts[1]
                )
                #expect(
                    kernelFDB.contains("\(a.mac) dst \(topology.hosts[0].underlayAddress)"),
                    "kernel fdb: \(kernelFDB)"
                )

                let offloads = "container offloads \(containerOffloads ? "on" : "off")"
                try await SwitchdSystemTests.expectTransfer(topology, "vxlan uring -> kernel, \(offloads)", from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(
                    topology,
                    "kernel -> vxlan uring, \(offloads)",
                    from: b,
                    to: a,
                    port: 5202
                )
            }
        }
    }
}

// MARK: - The largest port MTU

extension SwitchdSystemTests {
    @Suite("Port MTU limits")
    struct PortMTU {
        /// The daemon's largest port MTU (`DaemonOptions.maxMTU`).
        static let maxMTU = 1906

        /// Over a jumbo underlay, so only the daemon limits the size: a full-size frame at the largest MTU the
        /// daemon accepts crosses both ways through every receive path (TAP, UDP socket, raw GRE socket), and one
        /// byte more is refused at add-port. Before the limit, ports took any MTU up to 65535 and frames above
        /// 1984 bytes were truncated at the TAP and dropped, uncounted, at the far tunnel socket.
        @Test(arguments: IOBackend.allCases, [Tunnel.vxlan, .gre(key: "vni")])
        func fullSizeFramesAtTheLargestAcceptedMTUCrossBothWays(io: IOBackend, tunnel: Tunnel) async throws {
            try await withNetnsTopology(hosts: 2, underlayMTU: 9000) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io, tunnel: tunnel)
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1", mtu: Self.maxMTU)
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2", mtu: Self.maxMTU)
                for (from, to) in [(a, "10.0.0.2"), (b, "10.0.0.1")] {
                    let full = try await topology.run(
                        [
                            "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s",
                            "\(Self.maxMTU - 28)", to,
                        ],
                        in: from,
                        timeout: .seconds(10)
                    )
                    #expect(full.succeeded, "\(from.address ?? "?") -> \(to) at MTU \(Self.maxMTU): \(full)")
                }
                let tooLarge = try await switches[0].vxctl([
                    "add-port", "tap1", "--vni", "42", "--mtu", "\(Self.maxMTU + 1)",
                ])
                #expect(tooLarge.status == 1 && tooLarge.stderr.contains("at most \(Self.maxMTU)"), "\(tooLarge)")
                // Nothing was dropped or truncated along the way.
                for node in switches {
                    let stats = try await node.stats()
                    var drops: UInt64 = stats.drops.values.reduce(0, +)
                    for port in stats.ports { drops += port.counters.totalDrops }
                    for peer in stats.peers { drops += peer.counters.totalDrops }
                    #expect(drops == 0, "host \(node.host.index) stats: \(stats)")
                }
            }
        }
    }
}
