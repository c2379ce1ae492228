// ForwardingTable: lookup hits and learn-refreshes at 1K, 64K and 1M entries on one and two threads, and inserts
// of new keys into a 64K table.
//
// Method
//   - Keys are random unicast MACs in bridge domain 1 (SplitMix64, fixed seeds). Each table is created with
//     `capacity` = its size and filled to it in `setup` (outside any measurement); the few keys refused for a full
//     probe window (docs/forwarding-table.md) are left out, so every probe below is a hit.
//   - The measured loop walks a precomputed probe sequence (random draws, with replacement, from the keys present)
//     with a wrapping cursor that carries over between iterations, so consecutive iterations touch different keys.
//   - Results are folded into an accumulator that goes to `blackHole` once per iteration: a call per operation
//     would cost more than the lookup being measured.
//   - One thread: `.kilo` scaling, 1,000 operations per iteration. Two threads: `.mega` scaling; each iteration
//     starts a second thread, and the two threads do 500,000 operations each on the same table at the same time,
//     so the reported time per operation is wall time / total operations (aggregate), and the throughput is the
//     aggregate rate. Thread start-up (~tens of µs) is inside the measurement, under 1% of an iteration.
//   - Learn-refresh learns each key at the destination it already has, in the tick it was learned: the path a
//     busy MAC takes on every frame (`.unchanged`, no store).
//   - Names: `lookupHit.<entries>.x<threads>`, `learnRefresh...`, `insertNew.64K.x1` (no spaces or slashes,
//     so the thresholds files in Thresholds/6.3 round-trip: the tool writes them with those characters replaced
//     but looks them up by the raw name).

import Benchmark
import BenchmarkSupport
import VXForwarding
import VXPacket
import VXTestSupport

/// The destination every benchmark learns `key` at: one of 64 ports, fixed per key, so a refresh is a refresh.
@inline(__always)
func destination(for key: MACKey) -> Destination {
    .port(PortID(index: UInt16(truncatingIfNeeded: key.raw & 63), generation: 0))
}

/// A filled table, the keys in it and a probe sequence over them.
final class TableFixture {
    let table: ForwardingTable
    /// Keys present in the table.
    let keys: [MACKey]
    /// Random draws from `keys`; a power of two long.
    let probes: [MACKey]
    /// Where the next iteration starts in `probes`.
    var cursor = 0

    /// - Parameter size: table capacity and the number of keys inserted.
    init(size: Int) {
        let table = ForwardingTable(capacity: size)
        var present: [MACKey] = []
        present.reserveCapacity(size)
        for key in RandomKeys.distinct(size, domain: BridgeDomain(1)!, seed: 0x5EED_0000 &+ UInt64(size)) {
            if table.learn(key, destination: destination(for: key)) == .learned { present.append(key) }
        }
        precondition(present.count * 1000 >= size * 999, "fixture: too many refused inserts")
        var length = 1 << 16
        while length < size { length <<= 1 }
        self.table = table
        self.keys = present
        self.probes = RandomKeys.probeSequence(from: present, length: length, seed: 0xB0B0 &+ UInt64(size))
    }
}

/// Runs `count` lookups from `start` in the probe sequence; returns an accumulator of the results.
@inline(__always)
func lookups(_ table: ForwardingTable, _ probes: UnsafeBufferPointer<MACKey>, start: Int, count: Int) -> UInt32 {
    let mask = probes.count - 1
    var cursor = start
    var accumulator: UInt32 = 0
    for _ in 0..<count {
        if let found = table.lookup(probes[cursor]) { accumulator &+= found.packed } else { accumulator &+= 1 << 30 }
        cursor = (cursor &+ 1) & mask
    }
    return accumulator
}

/// Runs `count` learn-refreshes from `start` in the probe sequence; returns an accumulator of the results.
@inline(__always)
func refreshes(_ table: ForwardingTable, _ probes: UnsafeBufferPointer<MACKey>, start: Int, count: Int) -> UInt32 {
    let mask = probes.count - 1
    var cursor = start
    var accumulator: UInt32 = 0
    for _ in 0..<count {
        let key = probes[cursor]
        accumulator &+= UInt32(table.learn(key, destination: destination(for: key)).rawValue)
        cursor = (cursor &+ 1) & mask
    }
    return accumulator
}

let sizes: [(name: String, entries: Int)] = [("1K", 1 << 10), ("64K", 1 << 16), ("1M", 1 << 20)]

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .contextSwitches, .wallClock, .throughput],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000,
        // NIO's threshold style; the table's hot paths must never allocate.
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
    )
    let twoThreads = Benchmark.Configuration(
        metrics: [.mallocCountTotal, .contextSwitches, .wallClock, .throughput],
        warmupIterations: 2,
        scalingFactor: .mega,
        maxDuration: .seconds(3),
        maxIterations: 1_000,
        // Starting the second thread allocates a few blocks per iteration (thread stack bookkeeping, the closure box).
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 10])]
    )

    for (name, entries) in sizes {
        var fixture: TableFixture?
        let setup: Benchmark.BenchmarkSetupHook = { fixture = TableFixture(size: entries) }
        let teardown: Benchmark.BenchmarkTeardownHook = { fixture = nil }

        Benchmark(
            "lookupHit.\(name).x1",
            closure: { benchmark in
                let f = fixture!
                let n = benchmark.scaledIterations.count
                let result = f.probes.withUnsafeBufferPointer { lookups(f.table, $0, start: f.cursor, count: n) }
                f.cursor = (f.cursor &+ n) & (f.probes.count - 1)
                blackHole(result)
            },
            setup: setup,
            teardown: teardown
        )

        Benchmark(
            "lookupHit.\(name).x2",
            configuration: twoThreads,
            closure: { benchmark in
                let f = fixture!
                let half = benchmark.scaledIterations.count / 2
                let table = f.table
                let start = f.cursor
                let mask = f.probes.count - 1
                f.probes.withUnsafeBufferPointer { probes in
                    runOnTwoThreads { thread in
                        blackHole(
                            lookups(table, probes, start: (start &+ thread &* (mask / 2 + 1)) & mask, count: half)
                        )
                    }
                }
                f.cursor = (f.cursor &+ half) & mask
            },
            setup: setup,
            teardown: teardown
        )

        Benchmark(
            "learnRefresh.\(name).x1",
            closure: { benchmark in
                let f = fixture!
                let n = benchmark.scaledIterations.count
                let result = f.probes.withUnsafeBufferPointer { refreshes(f.table, $0, start: f.cursor, count: n) }
                f.cursor = (f.cursor &+ n) & (f.probes.count - 1)
                blackHole(result)
            },
            setup: setup,
            teardown: teardown
        )

        Benchmark(
            "learnRefresh.\(name).x2",
            configuration: twoThreads,
            closure: { benchmark in
                let f = fixture!
                let half = benchmark.scaledIterations.count / 2
                let table = f.table
                let start = f.cursor
                let mask = f.probes.count - 1
                f.probes.withUnsafeBufferPointer { probes in
                    runOnTwoThreads { thread in
                        blackHole(
                            refreshes(table, probes, start: (start &+ thread &* (mask / 2 + 1)) & mask, count: half)
                        )
                    }
                }
                f.cursor = (f.cursor &+ half) & mask
            },
            setup: setup,
            teardown: teardown
        )
    }

    // Inserts: 1,000 new keys per iteration into a 64K table. When the next 1,000 would not fit, the iteration
    // first replaces the table with an empty one (outside the measurement), so the figure is the average cost of
    // an insert over a fill from empty to full (load 0 to 50% of the slots), as after a restart or a flush.
    final class InsertState {
        static let capacity = 1 << 16
        let keys = RandomKeys.distinct(capacity, domain: BridgeDomain(1)!, seed: 0x1A5E_27)
        var table = ForwardingTable(capacity: capacity)
        var cursor = 0
    }
    var insert: InsertState?
    Benchmark(
        "insertNew.64K.x1",
        closure: { benchmark in
            let s = insert!
            let n = benchmark.scaledIterations.count
            if s.cursor + n > s.keys.count {
                s.table = ForwardingTable(capacity: InsertState.capacity)
                s.cursor = 0
            }
            let table = s.table
            benchmark.startMeasurement()
            var accumulator: UInt32 = 0
            s.keys.withUnsafeBufferPointer { keys in
                for index in s.cursor..<(s.cursor + n) {
                    let key = keys[index]
                    accumulator &+= UInt32(table.learn(key, destination: destination(for: key)).rawValue)
                }
            }
            benchmark.stopMeasurement()
            s.cursor += n
            blackHole(accumulator)
        },
        setup: { insert = InsertState() },
        teardown: { insert = nil }
    )
}
