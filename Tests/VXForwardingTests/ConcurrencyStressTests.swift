// Several threads learning, looking up, moving, aging and flushing at once, then the table's invariants.
// Run it under ThreadSanitizer too (the command is in docs/forwarding-table.md).

import Foundation
import Synchronization
import Testing
import VXPacket

@testable import VXForwarding

/// xorshift64*: a per-thread generator with no shared state and no allocation.
struct XorShift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

/// Runs `body` on `count` Foundation threads and waits for all of them.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchSemaphore(value: 0)
    for index in 0..<count {
        let thread = Thread {
            body(index)
            done.signal()
        }
        thread.start()
    }
    for _ in 0..<count { done.wait() }
}

@Suite("ForwardingTable under concurrency")
struct ConcurrencyStressTests {
    /// Workers use ports 0 ..< workerPorts; the static entries point at `staticPort`; the final flush deletes
    /// `deletedPort`.
    static let workerPorts: UInt16 = 8
    static let staticPort: UInt16 = 1_000
    static let deletedPort: UInt16 = 3
    static let staticKeys = 64
    static let dynamicKeys: UInt64 = 3_000

    @Test func learnersReadersAgingAndFlushesKeepTheTableConsistent() {
        // Small enough that capacity, probe windows and tombstone reuse all get exercised.
        let table = ForwardingTable(capacity: 2_048, agingTicks: 3)
        for n in 0..<Self.staticKeys {
            #expect(table.addStatic(key(1, 1_000_000 + UInt64(n)), destination: port(Self.staticPort)))
        }
        let anomalies = Atomic<Int>(0)
        let workersDone = Atomic<Int>(0)
        let workers = 3
        let deadline = ContinuousClock.now + .milliseconds(1_500)
        let maxIterations = 400_000

        runThreads(workers + 1) { index in
            var rng = XorShift(state: 0x9E37_79B9_7F4A_7C15 &* UInt64(index + 1))
            if index == workers {
                // The maintenance and control thread: clock, aging, flushes by port, peer and domain.
                var round = 0
                while workersDone.load(ordering: .acquiring) < workers {
                    table.advanceClock()
                    table.expire()
                    switch round % 4 {
                    case 0: table.flush(port: PortID(index: UInt16(rng.next() % 8), generation: 0))
                    case 1: table.flush(peer: PeerID(index: 1, generation: 0))
                    case 2: table.flush(domain: bd(2))
                    default: _ = table.entries()
                    }
                    round += 1
                }
                return
            }
            defer { workersDone.add(1, ordering: .releasing) }
            for iteration in 0..<maxIterations {
                if iteration & 1023 == 0 && ContinuousClock.now > deadline { break }
                let r = rng.next()
                let domain = UInt16(r & 1) + 1
                let n = (r >> 8) % Self.dynamicKeys
                // Mostly ports (moves among them), some peers.
                let destination =
                    r >> 40 & 7 == 0 ? peer(1) : port(UInt16(truncatingIfNeeded: r >> 32) % Self.workerPorts)
                table.learn(key(domain, n), destination: destination)

                // Static keys: learning them elsewhere is refused, and they never disappear, even mid-flush.
                let s = key(1, 1_000_000 + (r >> 20) % UInt64(Self.staticKeys))
                if table.learn(s, destination: port(0)) != .refusedStatic { anomalies.add(1, ordering: .relaxed) }
                if table.lookup(s) != port(Self.staticPort) { anomalies.add(1, ordering: .relaxed) }

                // Any destination read must be one somebody wrote: never torn, never another key's.
                if let found = table.lookup(key(domain, (r >> 24) % Self.dynamicKeys)) {
                    switch found {
                    case .port(let p) where p.index < Self.workerPorts && p.generation == 0: break
                    case .peer(let p) where p.index == 1 && p.generation == 0: break
                    default: anomalies.add(1, ordering: .relaxed)
                    }
                }
            }
        }

        #expect(anomalies.load(ordering: .relaxed) == 0)
        // The port was deleted: after its flush nothing may point at it.
        table.flush(port: PortID(index: Self.deletedPort, generation: 0))
        let entries = table.entries()
        #expect(!entries.contains { $0.destination == port(Self.deletedPort) })
        #expect(Set(entries.map(\.key)).count == entries.count, "duplicate keys survived")
        let statics = entries.filter(\.isStatic)
        #expect(statics.count == Self.staticKeys)
        #expect(statics.allSatisfy { $0.destination == port(Self.staticPort) })
        let c = table.counters
        #expect(countersAddUp(c), "\(c)")
        #expect(c.entries == entries.count)
        #expect(c.refusedStatic > 0 && c.learned > 0 && c.moved > 0)
        print("stress: \(c)")
    }

    @Test func racingLearnersOfTheSameKeysLeaveExactlyOneCopyEach() {
        // Every thread inserts the same fresh keys in the same order, so inserts collide as often as possible.
        let table = ForwardingTable(capacity: 2_048)
        let threads = 4
        let rounds: UInt64 = 20
        let keysPerRound: UInt64 = 500
        let start = Atomic<Int>(0)
        runThreads(threads) { index in
            start.add(1, ordering: .relaxed)
            while start.load(ordering: .relaxed) < threads {}
            for round in 0..<rounds {
                for n in 0..<keysPerRound {
                    table.learn(key(1, round * keysPerRound + n), destination: port(UInt16(index)))
                }
                // Not after the last round: every thread learns all of it after the last flush anyone does.
                if round < rounds - 1 { table.flush(domain: bd(1)) }
            }
        }
        let entries = table.entries()
        #expect(Set(entries.map(\.key)).count == entries.count)
        let lastRound = Set((0..<keysPerRound).map { key(1, (rounds - 1) * keysPerRound + $0) })
        #expect(lastRound.isSubset(of: Set(entries.map(\.key))))
        let c = table.counters
        #expect(countersAddUp(c), "\(c)")
        print("racing inserts: \(c)")
    }
}
