// vxswitchd --workers: several TCP flows at once between two hosts with two workers each arrive byte-exact, and
// both workers of each host carried part of them (the TAPs are multi-queue and each worker has its own
// SO_REUSEPORT VXLAN socket, so the kernel spreads flows over the workers). A TAP made single-queue beforehand
// still works, shared by both workers, with a warning. And bad --workers values are refused before anything
// starts.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("vxswitchd --workers 2")
    struct TwoWorkers {
        /// Parallel transfers. Which worker carries a flow is decided by the kernel's hash of its outer 4-tuple
        /// (the reuseport socket that receives it), and the TAP queue follows: tun sends a flow's frames to the
        /// queue that last wrote that flow. So one host's split is 16 coin flips: every flow on one worker has a
        /// chance of 2 in 65,536 per host. With 6 flows it was 1 in 32, and it happened.
        static let flows = 16
        static let bytesPerFlow = 3 * 1_048_576
        /// Frames a worker must have received to count as having carried traffic (more than ARP and pings).
        static let carriedFrames: UInt64 = 200

        @Test(arguments: IOBackend.allCases)
        func parallelFlowsArriveIntactAndBothWorkersCarryThem(io: IOBackend) async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                let switches = try await SwitchNode.startMesh(in: topology, io: io, extraArguments: ["--workers", "2"])
                let a = try await switches[0].addContainerPort("tap0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 3)

                let results = try await withThrowingTaskGroup(of: TransferResult.self) { group in
                    for flow in 0..<Self.flows {
                        // Alternate directions, so both hosts' TAPs and both hosts' sockets see data.
                        let (source, destination) = flow % 2 == 0 ? (a, b) : (b, a)
                        group.addTask {
                            try await topology.tcpTransfer(
                                from: source, to: destination, bytes: Self.bytesPerFlow, port: 5301 + flow,
                                seed: flow + 1, timeout: SwitchdSystemTests.transferTimeout)
                        }
                    }
                    var results: [TransferResult] = []
                    for try await result in group { results.append(result) }
                    return results
                }
                #expect(results.count == Self.flows)
                for result in results { #expect(result.verified, "\(result)") }

                for (index, node) in switches.enumerated() {
                    let stats = try await node.stats()
                    let workers = try #require(stats.workers, "stats without workers: \(stats)")
                    #expect(workers.map(\.worker) == [0, 1])
                    let busy = workers.filter { $0.rxFrames >= Self.carriedFrames }
                    print("WorkersSystemTests: \(io.rawValue) host \(index) workers: \(workers)")
                    #expect(busy.count == 2, "host \(index): one worker carried everything: \(workers)")
                    // The per-worker shares add up to the port and peer rows.
                    let rows = stats.ports.map(\.counters) + stats.peers.map(\.counters)
                    let rowsRx = rows.reduce(UInt64(0)) { $0 + $1.rxFrames }
                    #expect(workers.reduce(UInt64(0)) { $0 + $1.rxFrames } >= rowsRx)
                }
            }
        }

        @Test func aSingleQueueTAPIsSharedByBothWorkersWithAWarning() async throws {
            try await withNetnsTopology(hosts: 2) { topology in
                // Made like an older vxswitchd (or `ip tuntap add` without multi_queue) would leave it.
                try await topology.check(["ip", "tuntap", "add", "dev", "old0", "mode", "tap", "vnet_hdr"], in: topology.hosts[0])
                let switches = try await SwitchNode.startMesh(in: topology, io: .uring, extraArguments: ["--workers", "2"])
                let a = try await switches[0].addContainerPort("old0", vni: 42, address: "10.0.0.1")
                let b = try await switches[1].addContainerPort("tap0", vni: 42, address: "10.0.0.2")
                try await topology.expectPing(from: a, to: "10.0.0.2", count: 3)
                try await topology.expectPing(from: b, to: "10.0.0.1", count: 3)
                let log = switches[0].process.stderr()
                #expect(log.contains("exists without IFF_MULTI_QUEUE"), "\(log)")
            }
        }
    }
}
