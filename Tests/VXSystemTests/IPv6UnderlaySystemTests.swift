// vxswitchd over an IPv6 underlay (`vxswitchd --local 2001:db8::10`): VXLAN over UDP/IPv6 between two switches and
// with the Linux kernel's own vxlan device, GRE over IPv6 (next header 47, protocol 0x6558, keyed by the VNI or
// unkeyed) between two switches, and what an IPv6 VTEP refuses. The hosts get their IPv6 underlay
// addresses from `NetnsTopology(underlayIPv6: true)` (2001:db8::(10+i)/64 on ul0, IPv6 on nowhere else); containers
// stay IPv4 (10.x).
//
// VXLAN over IPv6 costs 70 bytes of outer headers (IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14), 20 more than
// over IPv4, so on the 1500-byte underlay every container interface gets MTU 1430 (the kernel sizes its own vxlan
// device the same way). A datagram that did not fit would not be lost: the sending kernel would fragment it (DF
// does not exist in IPv6, and a UDP socket fragments at the source). So the tests also check that no host created
// a single IPv6 fragment (`Ip6FragCreates` in /proc/net/snmp6): the switch must segment its containers' TCP bursts
// to fit 1430, not 1450. GRE over IPv6 costs less (62 bytes with a key, 58 without), so 1430 fits it too: the
// GRE tests keep it, and check the same. That GRE carried their traffic, not VXLAN, shows in host 1's counters:
// IPv6 delivered the 50 MiB (`Ip6InDelivers`) while next to no UDP over IPv6 arrived (`Udp6InDatagrams`).
//
// `show` and `fdb` are read here as printed (`--json`, addresses as strings), not through VXControl's types: what
// is promised is the text, `2001:db8::11` in RFC 5952 form, and `peer 2001:db8::11` in the FDB.
//
// KernelOverlayTests-style baseline first: two kernel hosts over the same IPv6 underlay, so a failure of the switch
// tests can be told apart from a broken underlay.

import Foundation
import Testing
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("vxswitchd over an IPv6 underlay")
    struct IPv6Underlay {
        /// Container MTU over an IPv6 underlay of 1500: 1500 - 70 bytes of IPv6, UDP, VXLAN and inner Ethernet.
        static let overlayMTU = 1430
        /// The hosts' IPv6 underlay addresses, as `NetnsTopology(underlayIPv6: true)` assigns them.
        static let addresses = ["2001:db8::10", "2001:db8::11"]

        /// The IPv6 underlay addresses of a two-host topology, checked against `addresses`.
        static func underlayAddresses(of topology: NetnsTopology) throws -> [String] {
            let addresses = try topology.hosts.map { try #require($0.underlayIPv6Address) }
            try #require(addresses == Self.addresses, "NetnsTopology's IPv6 underlay addresses changed")
            return addresses
        }

        /// Two switches with IPv6 VTEPs, peered in VNI 42 over `tunnel`, with a container of MTU 1430 on each
        /// (10.0.0.1 on host 0, 10.0.0.2 on host 1).
        static func startPair(in topology: NetnsTopology, io: IOBackend, tunnel: Tunnel = .vxlan) async throws
            -> (switches: [SwitchNode], a: NetnsTopology.ContainerInterface, b: NetnsTopology.ContainerInterface)
        {
            let addresses = try Self.underlayAddresses(of: topology)
            var switches: [SwitchNode] = []
            for index in 0..<2 {
                switches.append(try await SwitchNode.start(in: topology, host: index, io: io, local: addresses[index]))
            }
            for (index, node) in switches.enumerated() {
                try await node.addPeer(addresses[1 - index], vni: 42, tunnel: tunnel)
            }
            let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1", mtu: Self.overlayMTU)
            let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2", mtu: Self.overlayMTU)
            return (switches, a, b)
        }

        /// A full-size overlay frame crosses: `ping -M do` with 1430 - 28 bytes of IPv4 and ICMP headers.
        static func expectFullSizePing(
            _ topology: NetnsTopology,
            from source: NetnsTopology.ContainerInterface,
            to address: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) async throws {
            let full = try await topology.run(
                [
                    "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", "\(overlayMTU - 28)",
                    address,
                ],
                in: source,
                timeout: .seconds(10)
            )
            #expect(full.succeeded, "full-MTU ping \(source.address ?? "?") -> \(address): \(full)",
                    sourceLocation: sourceLocation)
        }

        /// What a pair from `startPair` must carry: pings both ways, each switch's FDB with its own container on
        /// its port and the far one behind the peer's IPv6 address, full-size pings, and 50 MiB each way with the
        /// containers' offloads on (64 KiB TSO frames, which the switch must cut to fit 1430).
        static func expectPairCarriesTraffic(
            _ topology: NetnsTopology, switches: [SwitchNode], a: NetnsTopology.ContainerInterface,
            b: NetnsTopology.ContainerInterface, label: String
        ) async throws {
            let addresses = try Self.underlayAddresses(of: topology)
            try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
            try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)
            let fdb0 = try await switches[0].printedDestinations(vni: 42)
            let fdb1 = try await switches[1].printedDestinations(vni: 42)
            #expect(fdb0[a.mac] == "port tap0" && fdb0[b.mac] == "peer \(addresses[1])", "\(label) host 0 fdb: \(fdb0)")
            #expect(fdb1[b.mac] == "port tap0" && fdb1[a.mac] == "peer \(addresses[0])", "\(label) host 1 fdb: \(fdb1)")
            try await Self.expectFullSizePing(topology, from: a, to: "10.0.0.2")
            try await Self.expectFullSizePing(topology, from: b, to: "10.0.0.1")
            try await SwitchdSystemTests.expectTransfer(topology, label, from: a, to: b)
            try await SwitchdSystemTests.expectTransfer(topology, label, from: b, to: a, port: 5202)
        }

        /// `Ip6FragCreates` of every host, in host order.
        static func fragmentsCreated(_ topology: NetnsTopology) async throws -> [Int] {
            var counts: [Int] = []
            for host in topology.hosts { counts.append(try await topology.snmp6Counter("Ip6FragCreates", in: host)) }
            return counts
        }

        // MARK: The helper, on the kernel's datapath

        /// The baseline: two kernel vxlan devices over the IPv6 underlay (what `addKernelVXLAN(family: .ipv6)`
        /// builds), pinging and moving 50 MiB at MTU 1430 without a fragment. Also checks what the topology's IPv6
        /// opt-in promises: IPv6 on each host's ul0 with its address, and still off in the containers.
        @Test func twoKernelVXLANHostsReachEachOtherOverTheIPv6Underlay() async throws {
            try await withNetnsTopology(hosts: 2, underlayIPv6: true) { topology in
                let addresses = try Self.underlayAddresses(of: topology)
                var containers: [NetnsTopology.ContainerInterface] = []
                for host in topology.hosts {
                    let vxlan = try await topology.addKernelVXLAN(host: host.index, vni: 42, family: .ipv6)
                    #expect(vxlan.remotes == [addresses[1 - host.index]] && vxlan.family == .ipv6)
                    let details = try await topology.check(["ip", "-d", "link", "show", vxlan.device], in: host)
                    #expect(details.contains("remote \(addresses[1 - host.index])"), "\(details)")
                    #expect(details.contains("local \(addresses[host.index])"), "\(details)")
                    // The kernel sizes the device from ul0: 1500 - 70.
                    let mtu = try await topology.check(["cat", "/sys/class/net/\(vxlan.device)/mtu"], in: host)
                    #expect(mtu.trimmingCharacters(in: .whitespacesAndNewlines) == "\(Self.overlayMTU)")
                    let container = try await topology.addContainer(host: host.index)
                    containers.append(
                        try await topology.connectVeth(
                            container,
                            address: "10.0.0.\(host.index + 1)",
                            mtu: Self.overlayMTU,
                            bridge: vxlan.bridge
                        )
                    )
                }
                for host in topology.hosts {
                    // Usable at once: not tentative (no duplicate address detection), whatever the link-local does.
                    let ul0 = try await topology.check(["ip", "-6", "addr", "show", "dev", "ul0"], in: host)
                    let line = ul0.split(separator: "\n").first { $0.contains("inet6 \(addresses[host.index])/64") }
                    #expect(line != nil && !line!.contains("tentative"), "\(host.namespace) ul0: \(ul0)")
                }
                for container in containers {
                    let off = try await topology.check(
                        ["cat", "/proc/sys/net/ipv6/conf/\(container.name)/disable_ipv6"], in: container)
                    #expect(off.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(container.namespace)")
                }

                let underlay = try await topology.ping(from: topology.hosts[0], to: addresses[1])
                #expect(underlay.allReceived, "underlay: \(underlay.output)")
                let fragmentsBefore = try await Self.fragmentsCreated(topology)
                try await topology.expectPing(from: containers[0], to: "10.0.0.2", count: 3)
                try await topology.expectPing(from: containers[1], to: "10.0.0.1", count: 3)
                try await Self.expectFullSizePing(topology, from: containers[0], to: "10.0.0.2")
                try await Self.expectFullSizePing(topology, from: containers[1], to: "10.0.0.1")
                try await SwitchdSystemTests.expectTransfer(
                    topology, "kernel -> kernel over IPv6", from: containers[0], to: containers[1])
                #expect(try await Self.fragmentsCreated(topology) == fragmentsBefore)
            }
        }

        // MARK: Two switches

        @Test(arguments: IOBackend.allCases)
        func twoSwitchesCarryPingAndFiftyMebibytesEachWayOverIPv6(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 2, underlayIPv6: true) { topology in
                let addresses = try Self.underlayAddresses(of: topology)
                // The underlay first, so a failure below points at the overlay.
                let underlay = try await topology.ping(from: topology.hosts[0], to: addresses[1])
                #expect(underlay.allReceived, "underlay: \(underlay.output)")

                let (switches, a, b) = try await Self.startPair(in: topology, io: io)
                #expect(a.mtu == Self.overlayMTU && b.mtu == Self.overlayMTU)
                // Each switch lists its peer by its IPv6 address, as written (RFC 5952).
                for (index, node) in switches.enumerated() {
                    let show = try await node.printedShow()
                    #expect(show.peers.map(\.ip) == [addresses[1 - index]], "host \(index) show: \(show)")
                    #expect(show.peers.first?.encap == "vxlan" && show.peers.first?.vnis == [42], "\(show)")
                    #expect(show.vnis.first { $0.vni == 42 }?.peers == [addresses[1 - index]], "\(show)")
                }

                let fragmentsBefore = try await Self.fragmentsCreated(topology)
                let udpBefore = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                let udp6Before = try await topology.snmp6Counter("Udp6InDatagrams", in: topology.hosts[1])

                try await Self.expectPairCarriesTraffic(
                    topology, switches: switches, a: a, b: b, label: "vxlan over IPv6 \(io.rawValue)")

                // Every datagram fitted the underlay whole.
                let fragments = try await Self.fragmentsCreated(topology)
                #expect(fragments == fragmentsBefore, "IPv6 fragments per host: \(fragmentsBefore) -> \(fragments)")
                // And it was IPv6 that carried it: host 1's kernel delivered UDP over IPv6 and next to none over IPv4.
                let udp = try await topology.snmpCounter("Udp", "InDatagrams", in: topology.hosts[1])
                let udp6 = try await topology.snmp6Counter("Udp6InDatagrams", in: topology.hosts[1])
                #expect(udp6 - udp6Before > 0, "host 1 received no UDP over IPv6")
                #expect(udp - udpBefore < 100, "host 1 received \(udp - udpBefore) UDP datagrams over IPv4")
            }
        }

        /// The same over GRE: IPv6 next header 47 (the switch writes IPv6 + GRE and sends them through a raw IPv6
        /// socket), GRE protocol 0x6558 with the VNI as key or without a key. Containers keep MTU 1430, which GRE
        /// over IPv6 (62 or 58 bytes) fits with room to spare, so again no host may create a fragment.
        @Test(arguments: IOBackend.allCases, ["vni", "none"])
        func twoSwitchesCarryGREOverIPv6(io: IOBackend, greKey: String) async throws {
            try await withNetnsTopology(hosts: 2, underlayIPv6: true) { topology in
                let addresses = try Self.underlayAddresses(of: topology)
                let underlay = try await topology.ping(from: topology.hosts[0], to: addresses[1])
                #expect(underlay.allReceived, "underlay: \(underlay.output)")

                let (switches, a, b) = try await Self.startPair(in: topology, io: io, tunnel: .gre(key: greKey))
                #expect(a.mtu == Self.overlayMTU && b.mtu == Self.overlayMTU)
                for (index, node) in switches.enumerated() {
                    let show = try await node.printedShow()
                    #expect(show.peers.map(\.ip) == [addresses[1 - index]], "host \(index) show: \(show)")
                    let peer = show.peers.first
                    #expect(peer?.encap == "gre" && peer?.greKey == greKey && peer?.vnis == [42], "\(show)")
                }

                let fragmentsBefore = try await Self.fragmentsCreated(topology)
                let udp6Before = try await topology.snmp6Counter("Udp6InDatagrams", in: topology.hosts[1])
                let delivered6Before = try await topology.snmp6Counter("Ip6InDelivers", in: topology.hosts[1])

                try await Self.expectPairCarriesTraffic(
                    topology, switches: switches, a: a, b: b, label: "gre key=\(greKey) over IPv6 \(io.rawValue)")

                let fragments = try await Self.fragmentsCreated(topology)
                #expect(fragments == fragmentsBefore, "IPv6 fragments per host: \(fragmentsBefore) -> \(fragments)")
                // It was GRE over IPv6: host 1's IPv6 stack delivered tens of thousands of packets (50 MiB in, the
                // ACKs of 50 MiB out), next to none of them UDP.
                let udp6 = try await topology.snmp6Counter("Udp6InDatagrams", in: topology.hosts[1])
                let delivered6 = try await topology.snmp6Counter("Ip6InDelivers", in: topology.hosts[1])
                #expect(udp6 - udp6Before < 100, "host 1 received \(udp6 - udp6Before) UDP datagrams over IPv6")
                #expect(delivered6 - delivered6Before > 1000,
                        "host 1 delivered \(delivered6 - delivered6Before) IPv6 packets")
                // And each switch counted the 50 MiB each way against its peer, by the peer's IPv6 address.
                let bytes = UInt64(SwitchdSystemTests.transferBytes)
                for (index, node) in switches.enumerated() {
                    let stats = try await node.stats()
                    let peer = stats.peers.first { "\($0.ip)" == addresses[1 - index] }
                    #expect((peer?.counters.rxBytes ?? 0) > bytes && (peer?.counters.txBytes ?? 0) > bytes,
                            "host \(index) stats: \(stats)")
                }
            }
        }

        // MARK: The kernel's vxlan device as the peer

        /// Host 0 runs vxswitchd on 2001:db8::10; host 1 the kernel's vxlan42 over IPv6 (local 2001:db8::11, remote
        /// 2001:db8::10, dstport 4789, default options: it sends and requires the outer UDP checksum) on a bridge.
        /// Host 1's underlay veth has transmit checksum offload off, for the reason KernelInterop gives (the
        /// kernel's encapsulated segments would reach the switch's UDP socket with their inner checksum unfinished).
        /// With the containers' offloads on and off, as there.
        @Test(arguments: [true, false])
        func pingAndFiftyMebibytesEachWayWithAKernelVXLANHostOverIPv6(containerOffloads: Bool) async throws {
            let ethtool = try #require(
                ProcessRunner.findExecutable("ethtool", candidates: ["/usr/sbin/ethtool", "/sbin/ethtool"]),
                "ethtool is needed (tools/install-deps.sh installs it)"
            )
            try await withNetnsTopology(hosts: 2, underlayIPv6: true) { topology in
                let addresses = try Self.underlayAddresses(of: topology)
                let node = try await SwitchNode.start(in: topology, host: 0, io: .uring, local: addresses[0])
                try await node.addPeer(addresses[1], vni: 42)
                let a = try await node.addContainerPort("tap0", vni: 42, address: "10.0.0.1", mtu: Self.overlayMTU)

                let kernelHost = topology.hosts[1]
                let vxlan = try await topology.addKernelVXLAN(
                    host: 1, vni: 42, remoteHosts: [0], dstPort: 4789, family: .ipv6)
                try await topology.check([ethtool, "-K", kernelHost.underlayInterface, "tx", "off"], in: kernelHost)
                let kernelContainer = try await topology.addContainer(host: 1)
                let b = try await topology.connectVeth(
                    kernelContainer, address: "10.0.0.2", mtu: Self.overlayMTU, bridge: vxlan.bridge)
                if !containerOffloads {
                    try await SwitchdSystemTests.turnOffloadsOff(topology, a)
                    try await SwitchdSystemTests.turnOffloadsOff(topology, b)
                }

                let fragmentsBefore = try await Self.fragmentsCreated(topology)
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)
                let fdb = try await node.printedDestinations(vni: 42)
                #expect(fdb[b.mac] == "peer \(addresses[1])", "vxswitchd fdb: \(fdb)")
                // And the kernel learned our container behind host 0's IPv6 address.
                let kernelFDB = try await topology.check(
                    [NetnsEnvironment.bridgePath ?? "bridge", "fdb", "show", "dev", vxlan.device], in: kernelHost)
                #expect(kernelFDB.contains("\(a.mac) dst \(addresses[0])"), "kernel fdb: \(kernelFDB)")
                try await Self.expectFullSizePing(topology, from: a, to: "10.0.0.2")
                try await Self.expectFullSizePing(topology, from: b, to: "10.0.0.1")

                let offloads = "container offloads \(containerOffloads ? "on" : "off")"
                try await SwitchdSystemTests.expectTransfer(
                    topology, "vxlan over IPv6 uring -> kernel, \(offloads)", from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(
                    topology, "kernel -> vxlan over IPv6 uring, \(offloads)", from: b, to: a, port: 5202)
                let fragments = try await Self.fragmentsCreated(topology)
                #expect(fragments == fragmentsBefore, "IPv6 fragments per host: \(fragmentsBefore) -> \(fragments)")
            }
        }

        // MARK: Refusals

        /// One refused `add-peer`, and the switch it is sent to.
        struct Refusal: Sendable, CustomStringConvertible {
            /// Which switch: 0 is the IPv6 VTEP 2001:db8::10, 1 the IPv4 VTEP 192.0.2.11.
            var node: Int
            var arguments: [String]
            /// Fragments the message on stderr must all contain.
            var messages: [String]

            var description: String { "vxctl \(arguments.joined(separator: " ")) (switch \(node))" }
        }

        /// Against an IPv6 VTEP on host 0 (port tap0 and peer 2001:db8::11 in VNI 42) and an IPv4 VTEP on host 1
        /// (port tap0 and peer 192.0.2.10 in VNI 42). Each refusal is tried in the VNI the switch has and in one it
        /// does not (43): a refused peer must not leave its VNI behind either. GRE peers are no longer among them:
        /// an IPv6 VTEP accepts them (`twoSwitchesCarryGREOverIPv6`).
        static let refusals: [Refusal] = [
            Refusal(node: 0, arguments: ["add-peer", "192.0.2.11", "--vni", "42"], messages: ["address family"]),
            Refusal(node: 0, arguments: ["add-peer", "192.0.2.11", "--vni", "43"], messages: ["address family"]),
            Refusal(node: 1, arguments: ["add-peer", "2001:db8::10", "--vni", "42"], messages: ["address family"]),
            Refusal(node: 1, arguments: ["add-peer", "2001:db8::10", "--vni", "43"], messages: ["address family"]),
            // Its own address and the loopback are no peers over IPv6 either (vxctl itself refuses multicast and
            // link-local ones, with exit 64: ValidationTests).
            Refusal(node: 0, arguments: ["add-peer", "2001:db8::10", "--vni", "42"], messages: ["own VTEP address"]),
            Refusal(node: 0, arguments: ["add-peer", "::1", "--vni", "42"], messages: ["cannot be a peer"]),
        ]

        /// Each of `refusals` exits 1 with its reason on stderr and nothing on stdout, and leaves the switch's `show`
        /// as it was; both daemons keep running.
        @Test func peersOfTheOtherAddressFamilyAreRefusedAndChangeNothing() async throws {
            try await withNetnsTopology(hosts: 2, underlayIPv6: true) { topology in
                let addresses = try Self.underlayAddresses(of: topology)
                let switches = [
                    try await SwitchNode.start(in: topology, host: 0, io: .uring, local: addresses[0]),
                    try await SwitchNode.start(in: topology, host: 1, io: .uring),
                ]
                for node in switches { try await node.ctl("add-port", "tap0", "--vni", "42") }
                try await switches[0].addPeer(addresses[1], vni: 42)
                try await switches[1].addPeer(topology.hosts[0].underlayAddress, vni: 42)
                let before = [try await switches[0].showJSON(), try await switches[1].showJSON()]
                let show6 = try await switches[0].printedShow()
                #expect(show6.peers.map(\.ip) == [addresses[1]], "IPv6 VTEP show: \(before[0])")

                for refusal in Self.refusals {
                    let node = switches[refusal.node]
                    let result = try await node.vxctl(refusal.arguments)
                    #expect(result.status == 1, "\(refusal): \(result)")
                    for message in refusal.messages {
                        #expect(result.stderr.contains(message), "\(refusal): stderr: \(result.stderr)")
                    }
                    #expect(result.stdout.isEmpty, "\(refusal): stdout: \(result.stdout)")
                    let after = try await node.showJSON()
                    #expect(after == before[refusal.node], "\(refusal) changed the switch:\n\(after)")
                }
                // Both switches are still there and serving.
                for node in switches {
                    #expect(node.process.isRunning, "log: \(node.log)")
                }
            }
        }

        /// The underlay TAP answers ARP and speaks IPv4 only, so `--underlay-tap` with an IPv6 `--local` is refused
        /// at start, with the reason, before the daemon creates its TAP or its control socket. Run inside a host of
        /// the topology, so a daemon that wrongly started would make its TAP there, not in the root namespace.
        @Test func anIPv6VTEPOnAnUnderlayTAPIsRefusedBeforeAnythingIsCreated() async throws {
            try await withNetnsTopology(hosts: 1, underlayIPv6: true) { topology in
                let host = topology.hosts[0]
                let local = try #require(host.underlayIPv6Address)
                let daemon = try SwitchBinaries.vxswitchd()
                let controlPath = "\(topology.workDirectory)/h0.sock"
                let linksBefore = try await topology.linkNames(in: host)
                let refused = try await topology.run(
                    [daemon, "--local", local, "--control", controlPath, "--state", "none", "--io", "uring",
                     "--underlay-tap", "vxul0"],
                    in: host,
                    timeout: .seconds(15)
                )
                #expect(!refused.timedOut, "vxswitchd accepted an IPv6 --local with --underlay-tap: \(refused)")
                #expect(!refused.succeeded, "\(refused)")
                #expect(refused.stderr.contains("--underlay-tap") && refused.stderr.contains("IPv4"), "\(refused)")
                let linksAfter = try await topology.linkNames(in: host)
                #expect(linksAfter == linksBefore, "links before: \(linksBefore), after: \(linksAfter)")
                #expect(!FileManager.default.fileExists(atPath: controlPath), "the control socket was created")
            }
        }
    }
}

// MARK: - show and fdb as printed

/// `vxctl show --json`, addresses kept as the text the switch printed.
private struct PrintedShow: Decodable, CustomStringConvertible {
    struct Peer: Decodable {
        var ip: String
        var encap: String
        /// `vni`, `nvgre` or `none` for a GRE peer; absent for VXLAN.
        var greKey: String?
        var vnis: [Int]
    }

    struct VNISummary: Decodable {
        var vni: Int
        var ports: [String]
        var peers: [String]
    }

    var peers: [Peer]
    var vnis: [VNISummary]

    var description: String {
        "peers: " + peers.map { "\($0.ip) \($0.encap)\($0.greKey.map { " key=\($0)" } ?? "") \($0.vnis)" }
            .joined(separator: ", ")
    }
}

/// `vxctl fdb --json`, destinations kept as printed (`port tap0`, `peer 2001:db8::11`).
private struct PrintedFDB: Decodable {
    struct Entry: Decodable {
        var vni: Int
        var mac: String
        var destination: String
    }

    var entries: [Entry]
}

extension SwitchNode {
    /// `vxctl show --json`, decoded with addresses as printed.
    fileprivate func printedShow() async throws -> PrintedShow {
        let text = try await showJSON()
        do {
            return try JSONDecoder().decode(PrintedShow.self, from: Data(text.utf8))
        } catch {
            throw NetnsError.unexpectedOutput("cannot decode show (\(error)) from: \(text)")
        }
    }

    /// `vxctl fdb --vni VNI --json` as `MAC -> destination` text, MACs lowercase, destinations as printed.
    fileprivate func printedDestinations(vni: UInt32) async throws -> [String: String] {
        let text = try await ctl("fdb", "--vni", "\(vni)", "--json")
        let fdb: PrintedFDB
        do {
            fdb = try JSONDecoder().decode(PrintedFDB.self, from: Data(text.utf8))
        } catch {
            throw NetnsError.unexpectedOutput("cannot decode fdb (\(error)) from: \(text)")
        }
        var map: [String: String] = [:]
        for entry in fdb.entries { map[entry.mac.lowercased()] = entry.destination }
        return map
    }
}

extension NetnsTopology {
    /// A counter of the host's IPv6 stack from `/proc/net/snmp6` (per namespace), e.g. `Ip6FragCreates`.
    fileprivate func snmp6Counter(_ name: String, in place: some NetnsPlace) async throws -> Int {
        let text = try await check(["cat", "/proc/net/snmp6"], in: place)
        // One counter a line: "Ip6FragCreates                  \t0".
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count == 2, fields[0] == name, let value = Int(fields[1]) { return value }
        }
        throw NetnsError.unexpectedOutput("/proc/net/snmp6 has no \(name)")
    }
}
