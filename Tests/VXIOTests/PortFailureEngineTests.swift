// A TAP deleted while an engine reads it: every read of its descriptor fails with EBADFD from then on. Both real
// engines must stop reading it, report it once through `drainNewPortFailures` and keep answering `portFailure(of:)`,
// and go on reading the other TAP.
//
// Network safety: the TAPs are throwaway `vxu…` interfaces of TestTAP (10.213.x.0/24); ARP provoked on them goes
// into the TAP and nowhere else.

#if os(Linux)
import Foundation
import Testing
import VXIO
import VXPacket

@Suite("engines report a TAP deleted underneath them", .serialized)
struct PortFailureEngineTests {
    /// Deletes one of two TAPs under `engine`, then expects it reported failed once, and the other still read.
    func exercise<Engine: PacketEngine>(_ engine: Engine) throws {
        let doomed = try TestTAP()
        defer { doomed.close() }
        let survivor = try TestTAP()
        defer { survivor.close() }
        let doomedHandle = try engine.register(fd: doomed.fd, kind: .tap(virtioHeader: false))
        defer { engine.unregister(doomedHandle) }
        let survivorHandle = try engine.register(fd: survivor.fd, kind: .tap(virtioHeader: false))
        defer { engine.unregister(survivorHandle) }
        var batch = RxBatch(capacity: 64)
        _ = try engine.receive(into: &batch, timeout: .milliseconds(10))  // arms the reads
        for frame in batch.frames { engine.release(frame.buffer) }
        #expect(engine.portFailure(of: doomedHandle) == nil)

        let deleted = Process()
        deleted.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        deleted.arguments = ["link", "del", doomed.name]
        try deleted.run()
        deleted.waitUntilExit()
        try #require(deleted.terminationStatus == 0, "ip link del \(doomed.name)")

        // Bounded: up to 50 receives of 50 ms; the failure shows up in the receive that meets it.
        var reported: [(PortHandle, IOError)] = []
        var survivorFrames = 0
        for attempt in 0..<50 where reported.isEmpty || survivorFrames == 0 {
            if attempt % 10 == 0 { try survivor.provokeARP() }
            batch.reset()
            _ = try engine.receive(into: &batch, timeout: .milliseconds(50))
            engine.drainNewPortFailures { reported.append(($0, $1)) }
            for frame in batch.frames {
                #expect(frame.source == survivorHandle, "a frame from the deleted TAP")
                if frame.source == survivorHandle { survivorFrames += 1 }
                engine.release(frame.buffer)
            }
        }
        #expect(reported.map(\.0) == [doomedHandle])
        #expect(reported.first?.1.errno == EBADFD)
        #expect(reported.first?.1.summary == "EBADFD (File descriptor in bad state) on read")
        #expect(engine.portFailure(of: doomedHandle)?.errno == EBADFD)
        #expect(engine.portFailure(of: survivorHandle) == nil)
        #expect(survivorFrames > 0, "the other TAP is still read")

        // Reported once: more receives do not report it again.
        for _ in 0..<3 {
            batch.reset()
            _ = try engine.receive(into: &batch, timeout: .milliseconds(20))
            for frame in batch.frames { engine.release(frame.buffer) }
        }
        var again = 0
        engine.drainNewPortFailures { _, _ in again += 1 }
        #expect(again == 0)
    }

    @Test(.enabled(if: runningAsRoot, "needs root to create a TAP"))
    func epollEngineReportsTheDeletedTAP() throws {
        try exercise(try EpollEngine(pool: PacketBufferPool(count: 64)))
    }

    @Test(.enabled(if: runningAsRoot, "needs root to create a TAP"))
    func uringEngineReportsTheDeletedTAPAndKeepsMultishotReads() throws {
        let engine = try URingEngine(pool: PacketBufferPool(count: 64), poolReserve: 4)
        let multishotBefore = engine.multishotRead
        try exercise(engine)
        // One deleted TAP must not turn multishot reads off for every other TAP.
        #expect(engine.multishotRead == multishotBefore)
    }
}
#endif
