// The switch with two dataplane workers, each on its own MemoryEngine: every worker has its own queue of every
// port and its own VXLAN socket and sender (FakeHost numbers them), they share the MAC table and the config,
// and the control plane reaches all of them.

import Foundation
import Synchronization
import Testing
import VXControl
import VXForwarding
import VXIO
import VXPacket
import VXTestSupport
@testable import VXDaemon

@Suite("vxswitchd with two workers")
struct MultiWorkerTests {
    static let peer = UnderlayAddress(192, 0, 2, 12)

    @Test("each worker gets its own TAP queue, VXLAN socket and sender; only worker 0 receives GRE")
    func everyWorkerHasItsOwnDescriptors() async throws {
        let sw = try InProcessSwitch(workers: 2)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        #expect(sw.host.tunnelWorkers.withLock { $0 } == [0, 1])
        let queues = try #require(sw.host.createdQueues.withLock { $0["tap1"] })
        #expect(queues.count == 2)
        #expect(sw.engine(0).wire.handle(forDescriptor: queues[0]) != nil)
        #expect(sw.engine(0).wire.handle(forDescriptor: queues[1]) == nil)
        #expect(sw.engine(1).wire.handle(forDescriptor: queues[1]) != nil)
        #expect(sw.engine(1).wire.handle(forDescriptor: queues[0]) == nil)
        #expect(sw.tunnelHandle(worker: 0) != nil && sw.senderHandle(worker: 0) != nil)
        #expect(sw.tunnelHandle(worker: 1) != nil && sw.senderHandle(worker: 1) != nil)
        #expect(sw.engine(0).wire.handle(forDescriptor: 11) != nil, "worker 0 receives GRE")
        #expect(sw.engine(1).wire.handle(forDescriptor: 11) == nil, "a second GRE socket would switch every packet twice")
    }

    @Test("frames arriving on either worker are switched on the shared MAC table, and stats sum over workers")
    func bothWorkersSwitchAndCountersSum() async throws {
        let sw = try InProcessSwitch(workers: 2)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-port", #"{"name":"tap2","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)

        // Worker 0: a broadcast from tap1 floods to tap2 and the peer, through worker 0's own queue and sender.
        let request = arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 0, 2))
        #expect(sw.engine(0).inject(request, into: try sw.handle(ofPort: "tap1", worker: 0)))
        let tap2Queue0 = try sw.handle(ofPort: "tap2", worker: 0)
        let flooded = try await sw.eventually { sw.engine(0).drainTransmitted(from: tap2Queue0) }
        #expect(flooded.map(\.bytes) == [request])
        let sender0 = try #require(sw.senderHandle(worker: 0))
        let tunnelled = try await sw.eventually { sw.engine(0).drainTransmitted(from: sender0) }
        #expect(tunnelled.count == 1 && tunnelled.first?.remote == Self.peer)

        // Worker 1: the peer's unicast reply arrives on worker 1's VXLAN socket and goes to tap1 — learnt by
        // worker 0 — out of worker 1's own queue of tap1.
        let reply = PacketBuilder.arpReply(
            senderMAC: containerB, senderIP: IPv4Address(10, 0, 0, 2), targetMAC: containerA,
            targetIP: IPv4Address(10, 0, 0, 1))
        let tunnel1 = try #require(sw.tunnelHandle(worker: 1))
        #expect(sw.engine(1).inject(PacketBuilder.vxlanDatagram(vni: VNI(42)!, inner: reply), into: tunnel1, remote: Self.peer))
        let tap1Queue1 = try sw.handle(ofPort: "tap1", worker: 1)
        let delivered = try await sw.eventually { sw.engine(1).drainTransmitted(from: tap1Queue1) }
        #expect(delivered.map(\.bytes) == [reply])
        #expect(sw.engine(1).drainTransmitted(from: try sw.handle(ofPort: "tap2", worker: 1)).isEmpty, "unicast, not flooded")

        let stats = try await sw.result("stats")
        let ports = try #require(stats["ports"] as? [[String: Any]])
        let tap1 = try #require(ports.first { $0["name"] as? String == "tap1" })
        #expect(tap1["rxFrames"] as? Int == 1 && tap1["txFrames"] as? Int == 1, "\(tap1)")
        let peer = try #require((stats["peers"] as? [[String: Any]])?.first)
        #expect(peer["rxFrames"] as? Int == 1 && peer["txFrames"] as? Int == 1, "\(peer)")
        let workers = try #require(stats["workers"] as? [[String: Any]])
        #expect(workers.map { $0["worker"] as? Int } == [0, 1])
        // Worker 0 received the request and sent it twice (tap2, peer); worker 1 received and sent the reply.
        #expect(workers[0]["rxFrames"] as? Int == 1 && workers[0]["txFrames"] as? Int == 2, "\(workers)")
        #expect(workers[1]["rxFrames"] as? Int == 1 && workers[1]["txFrames"] as? Int == 1, "\(workers)")
    }

    @Test("stats carries the offload counters summed over the workers")
    func offloadCountersSumOverWorkers() async throws {
        let sw = try InProcessSwitch(workers: 2, largeBuffers: 4)  // GRO reads go into large buffers
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let before = try #require(try await sw.result("stats")["offloads"] as? [String: Any])
        #expect(before.count == 14 && before.values.allSatisfy { $0 as? Int == 0 }, "\(before)")

        // A GRO read of three datagrams on worker 0's VXLAN socket and one of four on worker 1's; every inner
        // frame floods to tap1.
        let reply = PacketBuilder.arpReply(
            senderMAC: containerB, senderIP: IPv4Address(10, 0, 0, 2), targetMAC: containerA,
            targetIP: IPv4Address(10, 0, 0, 1))
        let datagram = PacketBuilder.vxlanDatagram(vni: VNI(42)!, inner: reply)
        for (worker, count) in [(0, 3), (1, 4)] {
            let tunnel = try #require(sw.tunnelHandle(worker: worker))
            #expect(sw.engine(worker).inject(
                Array([[UInt8]](repeating: datagram, count: count).joined()), into: tunnel, remote: Self.peer,
                segmentSize: UInt32(datagram.count)))
            let queue = try sw.handle(ofPort: "tap1", worker: worker)
            var delivered: [TransmittedFrame] = []
            for _ in 0..<200 where delivered.count < count {
                delivered += sw.engine(worker).drainTransmitted(from: queue)
                if delivered.count < count { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(delivered.count == count, "worker \(worker)")
        }

        let offloads = try #require(try await sw.result("stats")["offloads"] as? [String: Any])
        #expect(offloads["groFramesReceived"] as? Int == 2, "\(offloads)")
        #expect(offloads["groDatagrams"] as? Int == 7, "\(offloads)")
        #expect(offloads.filter { $0.value as? Int != 0 }.count == 2, "nothing else counted: \(offloads)")
    }

    @Test("add-port attaches on every worker, del-port detaches from every worker and closes every queue")
    func portChangesReachEveryWorker() async throws {
        let sw = try InProcessSwitch(workers: 2)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        let queues = try #require(sw.host.createdQueues.withLock { $0["tap1"] })
        for worker in 0..<2 { #expect(sw.engine(worker).wire.handle(forDescriptor: queues[worker]) != nil) }

        _ = try await sw.result("del-port", #"{"name":"tap1"}"#)
        for worker in 0..<2 { #expect(sw.engine(worker).wire.handle(forDescriptor: queues[worker]) == nil) }
        #expect(sw.host.destroyed.withLock { $0.isSuperset(of: queues) })
    }

    @Test("shutdown detaches every port from every worker and stops them all")
    func shutdownStopsEveryWorker() async throws {
        let sw = try InProcessSwitch(workers: 2)
        _ = try await sw.result("add-port", #"{"name":"tap1","vni":42}"#)
        let queues = try #require(sw.host.createdQueues.withLock { $0["tap1"] })
        sw.daemon.shutdown()
        for worker in 0..<2 { #expect(sw.engine(worker).wire.handle(forDescriptor: queues[worker]) == nil) }
        // A stopped worker runs no more commands.
        let ran = Atomic<Int>(0)
        for worker in sw.daemon.workers {
            worker.mailbox.post(.detachPort(PortID(index: 0, generation: 0))) { _ in ran.add(1, ordering: .relaxed) }
        }
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.load(ordering: .relaxed) == 0)
    }

    @Test("a TAP that exists without IFF_MULTI_QUEUE is one queue shared by both workers, and still switched")
    func singleQueueTAPIsShared() async throws {
        let sw = try InProcessSwitch(workers: 2) { host in _ = host.singleQueueNames.withLock { $0.insert("old0") } }
        _ = try await sw.result("add-port", #"{"name":"old0","vni":42}"#)
        _ = try await sw.result("add-peer", #"{"ip":"192.0.2.12","vni":42}"#)
        let queues = try #require(sw.host.createdQueues.withLock { $0["old0"] })
        #expect(queues.count == 1)
        for worker in 0..<2 {
            let request = arpRequest(from: containerA, IPv4Address(10, 0, 0, 1), to: IPv4Address(10, 0, 0, 9))
            #expect(sw.engine(worker).inject(request, into: try sw.handle(ofPort: "old0", worker: worker)))
            let sender = try #require(sw.senderHandle(worker: worker))
            let sent = try await sw.eventually { sw.engine(worker).drainTransmitted(from: sender) }
            #expect(sent.count == 1, "worker \(worker)")
        }
    }
}

@Suite("opening a TAP's queues")
struct TAPQueuesTests {
    struct OpenError: Error, Equatable { var errno: Int32 }
    static let einval: Int32 = 22

    @Test("one queue per worker with IFF_MULTI_QUEUE, later queues by the name the kernel settled on")
    func opensOneQueuePerWorker() throws {
        var calls: [(String, Bool)] = []
        let set = try TAPQueues.open(
            name: "tap%d", count: 3, isFlagMismatch: { (error: OpenError) in error.errno == Self.einval },
            discard: { (_: Int) in }
        ) { name, multiQueue throws(OpenError) in
            calls.append((name, multiQueue))
            return (calls.count, "tap7")
        }
        #expect(set.queues == [1, 2, 3] && !set.singleQueue && set.name == "tap7")
        #expect(calls.map(\.0) == ["tap%d", "tap7", "tap7"] && calls.allSatisfy(\.1))
    }

    @Test("a TAP that refuses IFF_MULTI_QUEUE (EINVAL) is opened once without it")
    func fallsBackToSingleQueue() throws {
        let set = try TAPQueues.open(
            name: "old0", count: 2, isFlagMismatch: { (error: OpenError) in error.errno == Self.einval },
            discard: { (_: Int) in }
        ) { name, multiQueue throws(OpenError) in
            guard !multiQueue else { throw OpenError(errno: Self.einval) }
            return (5, name)
        }
        #expect(set.queues == [5] && set.singleQueue)
    }

    @Test("the first error is reported when the fallback fails too, or when it was not a flag mismatch")
    func reportsTheFirstError() {
        #expect(throws: OpenError(errno: Self.einval)) {
            try TAPQueues.open(
                name: "eth0", count: 2, isFlagMismatch: { (error: OpenError) in error.errno == Self.einval },
                discard: { (_: Int) in }
            ) { (_: String, multiQueue: Bool) throws(OpenError) -> (Int, String) in
                throw OpenError(errno: multiQueue ? Self.einval : 16)
            }
        }
        var opens = 0
        #expect(throws: OpenError(errno: 1)) {
            try TAPQueues.open(
                name: "tap0", count: 2, isFlagMismatch: { (error: OpenError) in error.errno == Self.einval },
                discard: { (_: Int) in }
            ) { (_: String, _: Bool) throws(OpenError) -> (Int, String) in
                opens += 1
                throw OpenError(errno: 1)
            }
        }
        #expect(opens == 1, "EPERM is not a flag mismatch: no fallback")
    }

    @Test("queues opened before a later one failed are closed")
    func discardsPartialQueues() {
        var discarded: [Int] = []
        var opened = 0
        #expect(throws: OpenError(errno: 24)) {
            try TAPQueues.open(
                name: "tap0", count: 3, isFlagMismatch: { (error: OpenError) in error.errno == Self.einval },
                discard: { discarded.append($0) }
            ) { (name: String, _: Bool) throws(OpenError) -> (Int, String) in
                if opened < 2 {
                    opened += 1
                    return (opened, name)
                }
                throw OpenError(errno: 24)
            }
        }
        #expect(discarded == [1, 2])
    }
}
