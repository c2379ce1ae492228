// The worker's busy-poll window: after a batch with frames it polls (receive with a zero timeout) for the window,
// then sleeps in the kernel again (a long timeout); with no window it never polls. Observed through an engine
// that records the timeout of every receive call.

import Foundation
import Synchronization
import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXPacket

/// A MemoryEngine that records whether each receive call polled (zero timeout) or waited.
final class TimeoutRecordingEngine: PacketEngine {
    let inner: MemoryEngine
    /// For every receive call in order: true when it polled. Read it after the worker stopped.
    private(set) var polled: [Bool] = []

    init(inner: MemoryEngine) {
        self.inner = inner
        polled.reserveCapacity(1 << 16)
    }

    var pool: PacketBufferPool { inner.pool }
    var waker: MemoryWire { inner.waker }
    func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle { try inner.register(fd: fd, kind: kind) }
    func unregister(_ handle: PortHandle) { inner.unregister(handle) }
    func transmit(_ batch: TxBatch) -> TransmitReport { inner.transmit(batch) }
    func release(_ buffer: BufferID) { inner.release(buffer) }
    func portFailure(of handle: PortHandle) -> IOError? { inner.portFailure(of: handle) }
    func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) { inner.drainNewPortFailures(body) }

    func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        if polled.count < polled.capacity { polled.append(timeout == .zero) }
        return try inner.receive(into: &batch, timeout: timeout)
    }
}

@Suite("Worker busy-poll window")
struct BusyPollTests {
    /// Runs a worker with `window` on its own thread, sends it one frame between two TAP ports, waits for the
    /// frame to come out, lets the window pass, stops the worker and returns the receive calls' record, each
    /// receive marked with whether it polled, and how often the worker paused between empty polls.
    func record(window: Duration) throws -> (polled: [Bool], pauses: Int) {
        let engine = TimeoutRecordingEngine(inner: MemoryEngine(pool: PacketBufferPool(count: 64)))
        let publisher = ConfigPublisher()
        let worker = DataplaneWorker(
            engine: engine, table: ForwardingTable(capacity: 1024), publisher: publisher,
            counters: WorkerCounters(maxPorts: 4, maxPeers: 4))
        worker.busyPollWindow = window
        let pauses = Atomic<Int>(0)
        worker.pauseBetweenPolls = { pauses.add(1, ordering: .relaxed) }
        var builder = TopologyBuilder()
        let domain = builder.addDomain(vni: VNI(42)!)!
        let ports = [builder.addPort(domain: domain)!, builder.addPort(domain: domain)!]
        publisher.publish(DataplaneConfig(topology: builder.build(), peers: [], punt: [:]))

        let box = WorkerBox(worker: worker)
        let thread = Thread { box.worker.run() }
        thread.start()
        let handles = try ports.enumerated().map { index, port in
            try #require(try worker.mailbox.run(.attachPort(port, fd: Int32(10 + index), kind: .tap(virtioHeader: false))))
        }
        let frame = EthernetFrameBytes.broadcast(fromLastOctet: 1)
        #expect(engine.inner.inject(frame, into: handles[0]))
        // Bounded: 2 s for the flood to reach port 1, then the window plus a margin to see the worker sleep again.
        let deadline = ContinuousClock.now + .seconds(2)
        var delivered = 0
        while delivered == 0 && ContinuousClock.now < deadline {
            delivered = engine.inner.drainTransmitted(from: handles[1]).count
            if delivered == 0 { usleep(1_000) }
        }
        #expect(delivered == 1, "the frame was not flooded to the other port")
        usleep(UInt32((window + .milliseconds(100)) / .microseconds(1)))
        try worker.mailbox.run(.stop)
        while !thread.isFinished { usleep(1_000) }
        return (engine.polled, pauses.load(ordering: .relaxed))
    }

    @Test("polls for the window after traffic, then sleeps again")
    func pollsAfterTraffic() throws {
        let (record, _) = try record(window: .milliseconds(40))
        let polls = record.filter { $0 }.count
        // 40 ms of polling a MemoryEngine is thousands of calls; a worker that slept would make a handful.
        #expect(polls >= 20, "only \(polls) polling receives in a 40 ms window")
        #expect(record.first == false, "the worker polled before any traffic")
        let lastPoll = try #require(record.lastIndex(of: true))
        #expect(record[(lastPoll + 1)...].contains(false), "the worker did not go back to sleeping after the window")
    }

    @Test("never polls without a window")
    func neverPollsWithoutWindow() throws {
        let (record, pauses) = try record(window: .zero)
        #expect(!record.contains(true), "\(record.filter { $0 }.count) polling receives without a window")
        #expect(!record.isEmpty)
        #expect(pauses == 0, "paused \(pauses) times without a window")
    }

    /// A poll that finds nothing gives the core away before the next one: on a machine where the traffic's own
    /// processes share the workers' cores, a worker that spun without yielding made ping 7x slower.
    @Test("yields between empty polls")
    func yieldsBetweenEmptyPolls() throws {
        let (record, pauses) = try record(window: .milliseconds(40))
        let polls = record.filter { $0 }.count
        #expect(polls >= 20)
        // Every poll but the ones that received (the frame's batch, at most) is followed by a pause.
        #expect(pauses >= polls - 2, "\(pauses) pauses for \(polls) polls")
        #expect(pauses <= polls, "\(pauses) pauses for \(polls) polls: a pause outside the window")
    }
}

/// Hands the worker to its thread.
private struct WorkerBox: @unchecked Sendable {
    // @unchecked: after the handoff only the worker thread calls the worker, other threads use its mailbox.
    let worker: DataplaneWorker<TimeoutRecordingEngine>
}

/// A minimal broadcast Ethernet frame (ARP-sized, zero payload).
private enum EthernetFrameBytes {
    static func broadcast(fromLastOctet octet: UInt8) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xFF, count: 6)
        bytes += [0x02, 0, 0, 0, 0, octet]
        bytes += [0x08, 0x06]
        bytes += [UInt8](repeating: 0, count: 46)
        return bytes
    }
}
