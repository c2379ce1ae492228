// vxswitchd with an underlay TAP (`--underlay-tap`, docs/offload.md "The TAP underlay"), end to end: the daemon owns
// its host's underlay address on a TAP bridged with the host's uplink (the kernel keeps no address there), answers
// ARP for it, resolves its peer, and VXLAN crosses as whole frames, a container's TCP burst as one frame.

import Foundation
import Testing
import VXControl
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("vxswitchd on an underlay TAP")
    struct UnderlayTAP {
        /// Moves host `index`'s underlay address from the kernel to a vxswitchd on an underlay TAP: the uplink
        /// (`ul0`) loses its address and joins a bridge `brul`, and the daemon starts with `--underlay-tap vxul0`.
        /// The TAP joins the bridge by `--underlay-bridge brul`, or with `joinedByHand` by `ip link set vxul0
        /// master brul` after the start (the other way the README shows).
        static func bridgeUplink(in topology: NetnsTopology, host index: Int) async throws {
            let host = topology.hosts[index]
            let ip = try #require(NetnsEnvironment.ipPath)
            for command in [
                ["addr", "flush", "dev", host.underlayInterface],
                ["link", "add", "brul", "type", "bridge"],
                ["link", "set", host.underlayInterface, "master", "brul"],
                ["link", "set", "brul", "up"],
            ] {
                try await topology.check([ip] + command, in: host)
            }
        }

        static func startOnUnderlayTAP(
            in topology: NetnsTopology, host index: Int, joinedByHand: Bool = false, statePath: String? = nil,
            logName: String? = nil, bridgeUplink: Bool = true
        ) async throws -> SwitchNode {
            let host = topology.hosts[index]
            let ip = try #require(NetnsEnvironment.ipPath)
            if bridgeUplink { try await Self.bridgeUplink(in: topology, host: index) }
            let node = try await SwitchNode.start(
                in: topology, host: index, io: .uring, statePath: statePath,
                extraArguments: ["--underlay-tap", "vxul0"] + (joinedByHand ? [] : ["--underlay-bridge", "brul"]),
                logName: logName)
            if joinedByHand { try await topology.check([ip, "link", "set", "vxul0", "master", "brul"], in: host) }
            let told = joinedByHand ? "bridge it to the uplink" : "a port of bridge brul"
            #expect(node.log.contains("underlay TAP vxul0: VTEP \(host.underlayAddress)/24 at ") && node.log.contains(told),
                    "\(node.log)")
            let link = try await topology.check([ip, "-o", "link", "show", "vxul0"], in: host)
            #expect(link.contains("master brul"), "\(link)")
            // Like every TAP the switch creates: no mq of 256 pfifo_fast queues behind it (SwitchHost.swift).
            let qdisc = try await topology.check(["tc", "qdisc", "show", "dev", "vxul0"], in: host)
            #expect(qdisc.hasPrefix("qdisc noqueue"), "\(qdisc)")
            return node
        }

        /// Two switches on underlay TAPs, peered in VNI 42, with a container on each (10.0.0.1 on host 0, 10.0.0.2
        /// on host 1); host 0's switch keeps its state in `statePath` when given.
        static func startPair(in topology: NetnsTopology, statePath: String? = nil) async throws
            -> (switches: [SwitchNode], a: NetnsTopology.ContainerInterface, b: NetnsTopology.ContainerInterface)
        {
            let switches = [
                try await Self.startOnUnderlayTAP(in: topology, host: 0, statePath: statePath),
                try await Self.startOnUnderlayTAP(in: topology, host: 1),
            ]
            for (index, node) in switches.enumerated() {
                try await node.addPeer(topology.hosts[1 - index].underlayAddress, vni: 42)
            }
            let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
            let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
            return (switches, a, b)
        }

        /// `--underlay-bridge` at every start: a switch killed and restarted from its state file is back on the
        /// underlay with no step by hand (a TAP that is not persistent goes with the process that made it, so the
        /// new one must join the bridge again). A bridge that does not exist stops the start with the reason, and
        /// leaves no TAP behind.
        @Test func theSwitchJoinsItsBridgeAtEveryStart() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let statePath = "\(topology.workDirectory)/h0.state.json"
                let (switches, a, _) = try await Self.startPair(in: topology, statePath: statePath)
                var first = switches[0]
                // addContainerPort waited for the switch to record the move, so the restart finds the container.
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)
                first.process.signal(SIGKILL)
                _ = await first.process.waitForExit(timeout: .seconds(10))
                first = try await Self.startOnUnderlayTAP(
                    in: topology, host: 0, statePath: statePath, logName: "vxswitchd-h0-restart", bridgeUplink: false)
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 3)

                first.process.signal(SIGTERM)
                _ = await first.process.waitForExit(timeout: .seconds(10))
                let daemon = try SwitchBinaries.vxswitchd()
                let host = topology.hosts[0]
                let refused = try await topology.run(
                    [daemon, "--local", host.underlayAddress, "--control", "\(topology.workDirectory)/h0-bad.sock",
                     "--state", "none", "--underlay-tap", "vxul0", "--underlay-bridge", "nosuchbr"],
                    in: host, timeout: .seconds(15))
                #expect(!refused.succeeded, "\(refused)")
                #expect(refused.stderr.contains(#"cannot make the underlay TAP "vxul0" a port of bridge "nosuchbr""#),
                        "\(refused)")
                let links = try await topology.linkNames(in: host)
                #expect(!links.contains("vxul0"), "\(links)")
            }
        }

        @Test func twoSwitchesOnUnderlayTAPsCarryPingAndFiftyMebibytesEachWayAsWholeBursts() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let (switches, a, b) = try await Self.startPair(in: topology)

                try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)
                try await SwitchdSystemTests.expectTransfer(topology, "underlay TAP", from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(topology, "underlay TAP", from: b, to: a, port: 5202)

                for node in switches {
                    let stats = try await node.stats()
                    let offloads = try #require(stats.offloads)
                    // The containers' bursts crossed whole: written whole into the underlay TAP by the sender,
                    // read whole by the receiver, never cut into segments in user space.
                    #expect(offloads.tsoFramesPassedThrough > 100, "\(offloads)")
                    #expect(offloads.tsoFramesReceived > 100, "\(offloads)")
                    #expect(offloads.segments == 0, "\(offloads)")
                    #expect(stats.drops["transmitError"] == nil, "\(stats.drops)")
                }
                // Each switch's ARP table, as `vxctl show` lists it: the other switch, resolved to its own MAC
                // (02:76:78 + the address's last three octets), the next hop of the one peer.
                for (index, node) in switches.enumerated() {
                    let peer = topology.hosts[1 - index].underlayAddress
                    let octets = peer.split(separator: ".").compactMap { UInt8($0) }
                    let mac = "02:76:78:" + octets.suffix(3).map { String(format: "%02x", $0) }.joined(separator: ":")
                    let neighbors = try #require(try await node.show().underlayNeighbors)
                    let entry = try #require(neighbors.first { $0.ip.description == peer }, "\(neighbors)")
                    #expect(entry.mac?.description == mac && entry.isNextHop && entry.age != nil, "\(entry)")
                    #expect(try await node.vxctl(["show"]).stdout.contains("underlay neighbours:"))
                }
                // The kernel of neither host holds its underlay address: everything above went through the
                // switches' own addresses (and their ARP).
                for host in topology.hosts {
                    let addresses = try await topology.check(
                        [try #require(NetnsEnvironment.ipPath), "-4", "addr", "show"], in: host)
                    #expect(!addresses.contains(host.underlayAddress), "\(host.namespace)'s kernel: \(addresses)")
                }
            }
        }

        /// Bursts of small UDP datagrams of one flow (SwitchdSystemTests.udpBurstScript) between two switches on
        /// underlay TAPs: the sending switch writes each run for the peer as one UDP_L4 frame, and all 2000 must
        /// arrive in order, byte for byte. Twice: with the uplinks' offloads on, the run crosses whole and the
        /// receiving switch splits it (a UDP_L4 read); with host 0's uplink unable to take it (segmentation and
        /// checksum offload off), the kernel cuts it there and completes each datagram's UDP checksum from the
        /// partial one the switch wrote, and the receiving switch verifies every one of those checksums.
        @Test(arguments: [true, false])
        func burstsOfSmallDatagramsCrossAsRunsOfOneWrite(uplinkOffloads: Bool) async throws {
            let python = try #require(NetnsEnvironment.python3Path)
            try await withNetnsTopology(hosts: 2) { topology in
                let (switches, a, b) = try await Self.startPair(in: topology)
                if !uplinkOffloads {
                    let ethtool = try #require(
                        ProcessRunner.findExecutable("ethtool", candidates: ["/usr/sbin/ethtool", "/sbin/ethtool"]))
                    let uplink = topology.hosts[0]
                    try await topology.check(
                        [ethtool, "-K", uplink.underlayInterface, "tx-udp-segmentation", "off", "tx", "off"], in: uplink)
                }
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 2)

                let count = SwitchdSystemTests.udpBurstCount
                let receiver = try topology.spawn(
                    [python, "-c", SwitchdSystemTests.udpBurstScript, "recv", "\(count)"], in: b,
                    name: "udp-burst-recv")
                defer { receiver.stop(grace: .milliseconds(500)) }
                try await receiver.waitForOutput(containing: "\"listening\"", timeout: .seconds(15))
                let sender = try await topology.run(
                    [python, "-c", SwitchdSystemTests.udpBurstScript, "send", "\(count)"], in: a,
                    timeout: .seconds(30))
                #expect(sender.succeeded, "\(sender)")
                let status = await receiver.waitForExit(timeout: .seconds(15))
                let report = receiver.stdout()
                #expect(status == 0, "receiver: \(report) \(receiver.stderr())")
                #expect(report.contains(#""received": \#(count), "in_order_exact": true"#), "\(report)")

                let sending = try #require(try await switches[0].stats().offloads)
                let receivingStats = try await switches[1].stats()
                let receiving = try #require(receivingStats.offloads)
                print("UnderlayTAP: udp bursts, uplink offloads \(uplinkOffloads ? "on" : "off"): "
                      + "\(report.split(separator: "\n").last ?? ""), UDP_L4 writes \(sending.udpGSOSends) of "
                      + "\(sending.udpGSODatagrams) datagrams, UDP_L4 reads \(receiving.groFramesReceived) of "
                      + "\(receiving.groDatagrams)")
                #expect(sending.udpGSOSends > 0, "no run left as one write: \(sending)")
                if uplinkOffloads {
                    #expect(receiving.groFramesReceived > 0, "no run arrived whole: \(receiving)")
                } else {
                    #expect(receiving.groFramesReceived == 0, "runs arrived whole past host 0's uplink: \(receiving)")
                }
                // The bridge also floods the TAP other traffic (IPv6 neighbour discovery: underlayNotForThisVTEP).
                #expect(receivingStats.drops["udpBadChecksum"] == nil, "\(receivingStats.drops)")
                #expect(receivingStats.peers.allSatisfy { $0.counters.totalDrops == 0 }, "\(receivingStats)")
            }
        }

        /// Host 0 runs vxswitchd on an underlay TAP, host 1 the kernel's vxlan42 on a bridge. Unlike the socket
        /// underlay (KernelInterop), host 1's uplink keeps its checksum offload on: the kernel's bursts and
        /// partial checksums arrive described by the TAP's virtio-net header, which a UDP socket would lose.
        @Test func aKernelVXLANHostTalksToASwitchOnAnUnderlayTAP() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let node = try await Self.startOnUnderlayTAP(in: topology, host: 0, joinedByHand: true)
                try await node.addPeer(topology.hosts[1].underlayAddress, vni: 42)
                let a = try await node.addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let vxlan = try await topology.addKernelVXLAN(host: 1, vni: 42, remoteHosts: [0], dstPort: 4789)
                let kernelContainer = try await topology.addContainer(host: 1)
                let b = try await topology.connectVeth(
                    kernelContainer, address: "10.0.0.2", mtu: SwitchdSystemTests.overlayMTU, bridge: vxlan.bridge)

                try await topology.expectPing(from: a, to: "10.0.0.2", count: 5)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 5)
                try await SwitchdSystemTests.expectTransfer(topology, "underlay TAP -> kernel", from: a, to: b)
                try await SwitchdSystemTests.expectTransfer(
                    topology, "kernel -> underlay TAP", from: b, to: a, port: 5202)
                // The kernel resolved the switch's address to the switch's own MAC (02:76:78 + the address).
                let neighbours = try await topology.check(
                    [try #require(NetnsEnvironment.ipPath), "neigh", "show", topology.hosts[0].underlayAddress],
                    in: topology.hosts[1])
                #expect(neighbours.contains("lladdr 02:76:78:00:02:0a"), "host 1's kernel: \(neighbours)")
            }
        }

        @Test func grePeersAreRefusedWithAReason() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let node = try await Self.startOnUnderlayTAP(in: topology, host: 0)
                let refused = try await node.vxctl(
                    ["add-peer", topology.hosts[1].underlayAddress, "--vni", "42", "--encap", "gre"])
                #expect(!refused.succeeded)
                #expect(refused.stderr.contains("VXLAN only"), "\(refused)")
            }
        }
    }
}
