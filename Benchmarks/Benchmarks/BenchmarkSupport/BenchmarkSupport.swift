// Shared by the benchmark suites: random MAC keys (from VXTestSupport's reproducible SplitMix64) and a two-thread
// runner.
//
// Nothing here runs inside a measured region except `runOnTwoThreads`, whose thread start and join are part of
// what a two-thread benchmark measures (amortised over a million operations per iteration; see
// docs/performance.md).

import VXForwarding
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Random keys for table benchmarks.
public enum RandomKeys {
    /// A random unicast, non-zero MAC: a learnable source.
    /// - Parameter generator: the source of randomness.
    /// - Returns: a MAC with the multicast bit clear.
    public static func unicastMAC(_ generator: inout SplitMix64) -> MACAddress {
        while true {
            let mac = MACAddress(raw: generator.next() & 0xFEFF_FFFF_FFFF)
            if mac.isLearnableSource { return mac }
        }
    }

    /// `count` random keys in `domain`, distinct (duplicates are drawn again).
    /// - Parameters:
    ///   - count: how many keys.
    ///   - domain: their bridge domain.
    ///   - seed: PRNG seed.
    /// - Returns: the keys, in draw order.
    public static func distinct(_ count: Int, domain: BridgeDomain, seed: UInt64) -> [MACKey] {
        var generator = SplitMix64(seed: seed)
        var seen = Set<UInt64>(minimumCapacity: count)
        var keys: [MACKey] = []
        keys.reserveCapacity(count)
        while keys.count < count {
            let key = MACKey(domain: domain, mac: unicastMAC(&generator))
            if seen.insert(key.raw).inserted { keys.append(key) }
        }
        return keys
    }

    /// A probe sequence: `length` (a power of two) keys drawn uniformly, with replacement, from `keys`.
    /// - Parameters:
    ///   - keys: the keys present in the table.
    ///   - length: sequence length, a power of two so a cursor wraps with a mask.
    ///   - seed: PRNG seed.
    /// - Returns: the sequence.
    public static func probeSequence(from keys: [MACKey], length: Int, seed: UInt64) -> [MACKey] {
        precondition(length > 0 && length & (length - 1) == 0, "probe sequence length must be a power of two")
        var generator = SplitMix64(seed: seed)
        return (0..<length).map { _ in keys[Int(generator.next() % UInt64(keys.count))] }
    }
}

/// A closure handed to a new pthread.
private final class ThreadBody {
    /// Called once on the new thread with argument 1.
    let body: (Int) -> Void

    init(_ body: @escaping (Int) -> Void) {
        self.body = body
    }
}

/// Runs `body(0)` on the calling thread and `body(1)` on a new thread at the same time, and returns when both
/// have finished. The new thread is created and joined on every call (pthread_create/pthread_join); callers make
/// each call do enough work that this start-up is noise.
/// - Parameter body: the work of one thread, given its index (0 or 1).
public func runOnTwoThreads(_ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { escapable in
        // Safe to escape: the thread is joined below, before `withoutActuallyEscaping` returns.
        let context = Unmanaged.passRetained(ThreadBody(escapable)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread,
            nil,
            { argument in
                let box = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
                box.body(1)
                return nil
            },
            context
        )
        precondition(created == 0, "pthread_create failed: \(created)")
        escapable(0)
        let joined = pthread_join(thread, nil)
        precondition(joined == 0, "pthread_join failed: \(joined)")
    }
}
