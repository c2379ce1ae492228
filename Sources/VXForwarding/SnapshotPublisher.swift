// Read-copy-update for the workers' view of the switch.
//
// The control plane is the only writer: it builds a new immutable snapshot for every change and publishes it. Each
// worker holds a `SnapshotReader` and calls `refresh()` once per batch: one relaxed load of the generation counter,
// and the publisher's lock only when the generation moved. A worker therefore switches a whole batch with one
// consistent view, never half of a change. The switch publishes `DataplaneConfig` (VXDataplane) this way; the
// topology alone is `TopologyPublisher`.

public import Synchronization

/// Publishes immutable snapshots to workers. Control thread writes; any thread reads.
public final class SnapshotPublisher<Snapshot: AnyObject & Sendable>: Sendable {
    /// Bumped after every publish; workers compare it with the generation of the snapshot they hold.
    @usableFromInline let generation: Atomic<UInt64>
    /// The latest snapshot and its generation.
    let current: Mutex<(snapshot: Snapshot, generation: UInt64)>

    /// - Parameter initial: the first snapshot (generation 0).
    public init(_ initial: Snapshot) {
        self.generation = Atomic(0)
        self.current = Mutex((initial, 0))
    }

    /// Publishes `snapshot` to every worker's next `refresh()`. Control thread only.
    public func publish(_ snapshot: Snapshot) {
        current.withLock { state in
            state.generation &+= 1
            state.snapshot = snapshot
            // Inside the lock: a worker that sees the new generation and then takes the lock gets this snapshot
            // or a newer one. Relaxed is enough because the snapshot itself is read under the lock.
            generation.store(state.generation, ordering: .relaxed)
        }
    }

    /// The latest snapshot and its generation (takes the lock).
    public func snapshot() -> (snapshot: Snapshot, generation: UInt64) {
        current.withLock { $0 }
    }

    /// A per-worker reader starting from the current snapshot.
    public func makeReader() -> SnapshotReader<Snapshot> {
        SnapshotReader(publisher: self)
    }
}

/// One worker's view of the published snapshots. Owned by a single worker thread (not `Sendable`).
public struct SnapshotReader<Snapshot: AnyObject & Sendable> {
    /// Where snapshots come from.
    @usableFromInline let publisher: SnapshotPublisher<Snapshot>
    /// The snapshot this worker uses for its current batch.
    public private(set) var snapshot: Snapshot
    /// Generation of `snapshot`.
    public private(set) var generation: UInt64

    public init(publisher: SnapshotPublisher<Snapshot>) {
        self.publisher = publisher
        (self.snapshot, self.generation) = publisher.snapshot()
    }

    /// Picks up a newer snapshot if one was published. Call once per batch, before learning.
    /// - Returns: the snapshot to use for this batch.
    @inlinable
    @discardableResult
    public mutating func refresh() -> Snapshot {
        if publisher.generation.load(ordering: .relaxed) != generation {
            refreshSlow()
        }
        return snapshot
    }

    @usableFromInline
    mutating func refreshSlow() {
        (snapshot, generation) = publisher.snapshot()
    }
}

@available(*, unavailable)
extension SnapshotReader: Sendable {}
