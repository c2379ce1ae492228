// vxswitchd --workers: several TCP flows at once between two hosts with two workers each arrive byte-exact, and
// both workers of each host carried part of them (the TAPs are multi-queue and each worker has its own
// SO_REUSEPORT VXLAN socket, so the kernel spreads flows over the workers). A TAP made single-queue beforehand
// still works, shared by both workers, with a warning. Without --workers a switch runs one worker per CPU it may
// use, fewer under taskset.

import Foundation
import Testing
import VXControl
import VXPacket
import VXTestSupport

extension SwitchdSystemTests {
    @Suite("vxswitchd --workers 2")
    struct TwoWorkers {
        /// Parallel transfers. Which worker carries a flow is the kernel's choice: the reuseport socket that
        /// receives its datagrams is picked by a hash of the outer 4-tuple (the source port is one of the far
        /// worker's UDP senders, by flow hash), and tun then hands the flow's frames to the queue that last wrote
        /// it. With 16 flows over at most 16 source ports, all of one host's flows land on one worker about once in
        /// a few hundred rounds (with 6 flows it was 1 in 32, and it happened), so a round in which that happens
        /// is followed by another with new flows (new ports, new hashes), up to `rounds`.
        static let flows = 16
        static let rounds = 3
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

                var workersByHost: [[WorkerStats]] = []
                for round in 0..<Self.rounds {
                    let results = try await withThrowingTaskGroup(of: TransferResult.self) { group in
                        for flow in 0..<Self.flows {
                            // Alternate directions, so both hosts' TAPs and both hosts' sockets see data.
                            let (source, destination) = flow % 2 == 0 ? (a, b) : (b, a)
                            let number = round * Self.flows + flow
                            group.addTask {
                                try await topology.tcpTransfer(
                                    from: source, to: destination, bytes: Self.bytesPerFlow, port: 5301 + number,
                                    seed: number + 1, timeout: SwitchdSystemTests.transferTimeout)
                            }
                        }
                        var results: [TransferResult] = []
                        for try await result in group { results.append(result) }
                        return results
                    }
                    #expect(results.count == Self.flows)
                    for result in results { #expect(result.verified, "\(result)") }

                    workersByHost = []
                    for (index, node) in switches.enumerated() {
                        let stats = try await node.stats()
                        let workers = try #require(stats.workers, "stats without workers: \(stats)")
                        #expect(workers.map(\.worker) == [0, 1])
                        print("WorkersSystemTests: \(io.rawValue) round \(round) host \(index) workers: \(workers)")
                        // The per-worker shares add up to the port and peer rows.
                        let rows = stats.ports.map(\.counters) + stats.peers.map(\.counters)
                        let rowsRx = rows.reduce(UInt64(0)) { $0 + $1.rxFrames }
                        #expect(workers.reduce(UInt64(0)) { $0 + $1.rxFrames } >= rowsRx)
                        workersByHost.append(workers)
                    }
                    if workersByHost.allSatisfy({ $0.filter { $0.rxFrames >= Self.carriedFrames }.count == 2 }) { break }
                }
                for (index, workers) in workersByHost.enumerated() {
                    let busy = workers.filter { $0.rxFrames >= Self.carriedFrames }
                    #expect(busy.count == 2, "host \(index): one worker carried everything: \(workers)")
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

    @Suite("vxswitchd's default worker count")
    struct DefaultWorkers {
        /// One worker per CPU the daemon may run on: all of the test's own (what `nproc` counts), or the one
        /// `taskset -c 0` leaves it. On a one-CPU machine both are 1 and the test cannot tell them apart.
        @Test func oneWorkerPerCPUInTheDaemonsAffinity() async throws {
            let nproc = try await ProcessRunner.run(["nproc"])
            let usable = try #require(Int(nproc.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(nproc)")
            try await withNetnsTopology(hosts: 2) { topology in
                let unconfined = try await SwitchNode.start(in: topology, host: 0, io: .uring)
                let confined = try await SwitchNode.start(in: topology, host: 1, io: .uring, launcher: ["taskset", "-c", "0"])
                #expect(try await unconfined.stats().workers?.count == min(usable, 64))
                #expect(try await confined.stats().workers?.count == 1)
            }
        }
    }
}
