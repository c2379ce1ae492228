// Per-worker traffic counters.
//
// Each worker owns one `WorkerCounters` and is its only writer; the control thread reads it for `vxctl stats`
// and sums over workers. Every counter is an `Atomic<UInt64>` updated with a relaxed load and a relaxed store
// rather than a read-modify-write: with one writer no increment can be lost, the store is a plain `mov` on
// x86-64, and a reader still never sees a torn value (OVS `non_atomic_ullong_add`). Nothing here takes a lock
// or allocates after init.
//
// Layout: one row of `Counter.columns` counters per entity. Entities are the local ports (by PortID index),
// then the peers (by PeerID index), then one row for drops that belong to no port or peer yet (a datagram from
// an unknown address). A row is frames and bytes in and out, then one column per `DropCode`.
//
// Beside the rows, each worker's `WorkerOffloadCounters` counts what its offload paths did (TSO, checksum
// completion, coalescing, UDP GSO and GRO), with the same single-writer atomics.

import Synchronization
import VXForwarding

/// The columns of one counter row.
public enum CounterColumn {
    public static let rxFrames = 0
    public static let rxBytes = 1
    public static let txFrames = 2
    public static let txBytes = 3
    /// First drop column; drop code `c` is at `firstDrop + c.rawValue`.
    public static let firstDrop = 4
    public static let columns = firstDrop + DropCode.count
}

/// A worker's counters. One writer (the worker), any number of readers.
@safe
public final class WorkerCounters: @unchecked Sendable {
    // @unchecked: `cells` is an immutable pointer to Atomic cells, allocated in init and freed in deinit; every
    // access goes through the atomics, so sharing the class across threads is sound.
    /// Rows for ports `0 ..< maxPorts`, then peers `0 ..< maxPeers`, then the unattributed row.
    public let maxPorts: Int
    public let maxPeers: Int
    /// What this worker's offload paths did.
    public let offloads = WorkerOffloadCounters()
    private let rows: Int
    private let cells: UnsafeMutablePointer<Atomic<UInt64>>

    /// - Parameters:
    ///   - maxPorts: highest port index + 1 the switch will allocate.
    ///   - maxPeers: highest peer index + 1 the switch will allocate.
    public init(maxPorts: Int, maxPeers: Int) {
        self.maxPorts = maxPorts
        self.maxPeers = maxPeers
        self.rows = maxPorts + maxPeers + 1
        let count = rows * CounterColumn.columns
        unsafe cells = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: count)
        for index in 0..<count {
            unsafe (cells + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        unsafe cells.deinitialize(count: rows * CounterColumn.columns)
        unsafe cells.deallocate()
    }

    @inlinable
    func row(port: PortID) -> Int { Int(port.index) < maxPorts ? Int(port.index) : unattributedRow }

    @inlinable
    func row(peer: PeerID) -> Int { Int(peer.index) < maxPeers ? maxPorts + Int(peer.index) : unattributedRow }

    @inlinable
    func row(_ destination: Destination) -> Int {
        switch destination {
        case .port(let port): row(port: port)
        case .peer(let peer): row(peer: peer)
        }
    }

    @usableFromInline
    var unattributedRow: Int { maxPorts + maxPeers }

    /// Adds `amount` to one cell. Worker thread only.
    @inlinable
    func add(row: Int, column: Int, _ amount: UInt64) {
        let cell = unsafe cellPointer(row: row, column: column)
        unsafe cell.pointee.store(cell.pointee.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    @unsafe
    @usableFromInline
    func cellPointer(row: Int, column: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        unsafe cells + (row * CounterColumn.columns + column)
    }

    /// Counts a received frame against `row`. Worker thread only.
    @inlinable
    func received(row: Int, bytes: Int) {
        add(row: row, column: CounterColumn.rxFrames, 1)
        add(row: row, column: CounterColumn.rxBytes, UInt64(bytes))
    }

    /// Counts a frame handed to the kernel for `row`. Worker thread only.
    @inlinable
    func transmitted(row: Int, bytes: Int) {
        add(row: row, column: CounterColumn.txFrames, 1)
        add(row: row, column: CounterColumn.txBytes, UInt64(bytes))
    }

    /// Counts a drop. Worker thread only.
    @inlinable
    func dropped(row: Int, _ code: DropCode) {
        add(row: row, column: CounterColumn.firstDrop + code.rawValue, 1)
    }

    /// Reads one cell (any thread).
    public func value(row: Int, column: Int) -> UInt64 {
        precondition(row >= 0 && row < rows && column >= 0 && column < CounterColumn.columns, "counter out of range")
        return unsafe cellPointer(row: row, column: column).pointee.load(ordering: .relaxed)
    }

    /// A copy of one entity's row (any thread).
    public func snapshot(of entity: CounterEntity) -> CounterRow {
        let row: Int
        switch entity {
        case .port(let index): row = index < maxPorts ? index : unattributedRow
        case .peer(let index): row = index < maxPeers ? maxPorts + index : unattributedRow
        case .unattributed: row = unattributedRow
        }
        var result = CounterRow()
        result.rxFrames = value(row: row, column: CounterColumn.rxFrames)
        result.rxBytes = value(row: row, column: CounterColumn.rxBytes)
        result.txFrames = value(row: row, column: CounterColumn.txFrames)
        result.txBytes = value(row: row, column: CounterColumn.txBytes)
        for code in DropCode.all {
            let count = value(row: row, column: CounterColumn.firstDrop + code.rawValue)
            if count != 0 { result.drops[code] = count }
        }
        return result
    }

    /// Zeroes one entity's row, when its index is given to a new port or peer. Control thread, while the worker
    /// may be counting: a count racing with the reset may survive it, which only misattributes a frame or two.
    public func reset(_ entity: CounterEntity) {
        let row: Int
        switch entity {
        case .port(let index): guard index < maxPorts else { return }; row = index
        case .peer(let index): guard index < maxPeers else { return }; row = maxPorts + index
        case .unattributed: row = unattributedRow
        }
        for column in 0..<CounterColumn.columns {
            unsafe cellPointer(row: row, column: column).pointee.store(0, ordering: .relaxed)
        }
    }
}

/// Whose counters to read.
public enum CounterEntity: Hashable, Sendable {
    case port(index: Int)
    case peer(index: Int)
    case unattributed
}

/// A snapshot of one counter row; rows from several workers add up with `+=`.
public struct CounterRow: Sendable, Equatable {
    public var rxFrames: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txFrames: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Non-zero drop counts by code.
    public var drops: [DropCode: UInt64] = [:]

    public init() {}

    /// Total drops over every reason.
    public var totalDrops: UInt64 { drops.values.reduce(0, &+) }

    public static func += (lhs: inout CounterRow, rhs: CounterRow) {
        lhs.rxFrames &+= rhs.rxFrames
        lhs.rxBytes &+= rhs.rxBytes
        lhs.txFrames &+= rhs.txFrames
        lhs.txBytes &+= rhs.txBytes
        for (code, count) in rhs.drops { lhs.drops[code, default: 0] &+= count }
    }
}

/// What a worker's offload paths did, readable from any thread. One writer (the worker), any number of readers,
/// like `WorkerCounters`: the worker adds with `&+=` on the properties (a relaxed load and a relaxed store; with
/// one writer no increment is lost), readers take a `snapshot()`.
@safe
public final class WorkerOffloadCounters: @unchecked Sendable {
    // @unchecked: `cells` is an immutable pointer to Atomic cells, allocated in init and freed in deinit; every
    // access goes through the atomics.

    /// The counters, in cell order.
    @usableFromInline
    enum Cell: Int, CaseIterable {
        case tsoFramesReceived, checksumsCompleted, tsoFramesSegmented, segments, tsoFramesPassedThrough
        case coalescedWrites, coalescedFrames, udpGSOSends, udpGSODatagrams, groFramesReceived, groDatagrams
        case udpCoalescedWrites, udpCoalescedFrames, coalesceChecksumFallbacks
    }

    /// The cells get cache lines of their own (two, for the adjacent-line prefetcher): the workers' counters are
    /// allocated one after another at startup, and without this two workers would write the same line.
    private static var alignment: Int { 128 }
    private static var byteCount: Int {
        (Cell.allCases.count * MemoryLayout<Atomic<UInt64>>.stride + alignment - 1) / alignment * alignment
    }

    @usableFromInline
    let cells: UnsafeMutablePointer<Atomic<UInt64>>

    public init() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.byteCount, alignment: Self.alignment)
        unsafe cells = raw.bindMemory(to: Atomic<UInt64>.self, capacity: Cell.allCases.count)
        for index in 0..<Cell.allCases.count {
            unsafe (cells + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        unsafe cells.deinitialize(count: Cell.allCases.count)
        unsafe UnsafeMutableRawPointer(cells).deallocate()
    }

    /// One counter: any thread reads it; only the worker thread sets it.
    @inlinable
    subscript(cell: Cell) -> UInt64 {
        get { unsafe cells[cell.rawValue].load(ordering: .relaxed) }
        set { unsafe cells[cell.rawValue].store(newValue, ordering: .relaxed) }
    }

    /// TSO frames received from TAPs.
    @inlinable
    public internal(set) var tsoFramesReceived: UInt64 {
        get { self[.tsoFramesReceived] }
        set { self[.tsoFramesReceived] = newValue }
    }
    /// Partial checksums completed on frames received from TAPs.
    @inlinable
    public internal(set) var checksumsCompleted: UInt64 {
        get { self[.checksumsCompleted] }
        set { self[.checksumsCompleted] = newValue }
    }
    /// TSO frames cut into segments (once per destination that needed it).
    @inlinable
    public internal(set) var tsoFramesSegmented: UInt64 {
        get { self[.tsoFramesSegmented] }
        set { self[.tsoFramesSegmented] = newValue }
    }
    /// Segments written.
    @inlinable
    public internal(set) var segments: UInt64 {
        get { self[.segments] }
        set { self[.segments] = newValue }
    }
    /// TSO frames passed whole to a TAP with a virtio header.
    @inlinable
    public internal(set) var tsoFramesPassedThrough: UInt64 {
        get { self[.tsoFramesPassedThrough] }
        set { self[.tsoFramesPassedThrough] = newValue }
    }
    /// TSO writes of coalesced TCP segments to TAPs.
    @inlinable
    public internal(set) var coalescedWrites: UInt64 {
        get { self[.coalescedWrites] }
        set { self[.coalescedWrites] = newValue }
    }
    /// Frames merged into those writes.
    @inlinable
    public internal(set) var coalescedFrames: UInt64 {
        get { self[.coalescedFrames] }
        set { self[.coalescedFrames] = newValue }
    }
    /// USO writes of coalesced UDP datagrams to TAPs.
    @inlinable
    public internal(set) var udpCoalescedWrites: UInt64 {
        get { self[.udpCoalescedWrites] }
        set { self[.udpCoalescedWrites] = newValue }
    }
    /// Datagrams merged into those writes.
    @inlinable
    public internal(set) var udpCoalescedFrames: UInt64 {
        get { self[.udpCoalescedFrames] }
        set { self[.udpCoalescedFrames] = newValue }
    }
    /// Merged items (TCP or UDP) written as their separate frames instead, because a member's transport checksum
    /// failed as the coalescer copied it: each frame then goes up without DATA_VALID and the kernel drops the bad
    /// one (counted in the container's own checksum-error counters, not by the switch).
    @inlinable
    public internal(set) var coalesceChecksumFallbacks: UInt64 {
        get { self[.coalesceChecksumFallbacks] }
        set { self[.coalesceChecksumFallbacks] = newValue }
    }
    /// UDP GSO sends of more than one VXLAN datagram (TSO segments or packed plain frames; on an underlay TAP, UDP_L4
    /// writes of packed plain frames).
    @inlinable
    public internal(set) var udpGSOSends: UInt64 {
        get { self[.udpGSOSends] }
        set { self[.udpGSOSends] = newValue }
    }
    /// VXLAN datagrams in those sends.
    @inlinable
    public internal(set) var udpGSODatagrams: UInt64 {
        get { self[.udpGSODatagrams] }
        set { self[.udpGSODatagrams] = newValue }
    }
    /// GRO reads (several VXLAN datagrams in one frame) received from the UDP tunnel socket, or UDP_L4 reads of
    /// the underlay TAP.
    @inlinable
    public internal(set) var groFramesReceived: UInt64 {
        get { self[.groFramesReceived] }
        set { self[.groFramesReceived] = newValue }
    }
    /// Datagrams in those reads.
    @inlinable
    public internal(set) var groDatagrams: UInt64 {
        get { self[.groDatagrams] }
        set { self[.groDatagrams] = newValue }
    }

    /// A copy of every counter (any thread). Each counter is read on its own, so under traffic two of them may
    /// come from moments a few frames apart.
    public func snapshot() -> WorkerOffloadStatistics {
        var result = WorkerOffloadStatistics()
        result.tsoFramesReceived = tsoFramesReceived
        result.checksumsCompleted = checksumsCompleted
        result.tsoFramesSegmented = tsoFramesSegmented
        result.segments = segments
        result.tsoFramesPassedThrough = tsoFramesPassedThrough
        result.coalescedWrites = coalescedWrites
        result.coalescedFrames = coalescedFrames
        result.udpCoalescedWrites = udpCoalescedWrites
        result.udpCoalescedFrames = udpCoalescedFrames
        result.coalesceChecksumFallbacks = coalesceChecksumFallbacks
        result.udpGSOSends = udpGSOSends
        result.udpGSODatagrams = udpGSODatagrams
        result.groFramesReceived = groFramesReceived
        result.groDatagrams = groDatagrams
        return result
    }
}

/// A snapshot of a worker's offload counters (see `WorkerOffloadCounters` for what each counts); snapshots of
/// several workers add up with `+=`.
public struct WorkerOffloadStatistics: Sendable, Equatable {
    public var tsoFramesReceived: UInt64 = 0
    public var checksumsCompleted: UInt64 = 0
    public var tsoFramesSegmented: UInt64 = 0
    public var segments: UInt64 = 0
    public var tsoFramesPassedThrough: UInt64 = 0
    public var coalescedWrites: UInt64 = 0
    public var coalescedFrames: UInt64 = 0
    public var udpCoalescedWrites: UInt64 = 0
    public var udpCoalescedFrames: UInt64 = 0
    public var coalesceChecksumFallbacks: UInt64 = 0
    public var udpGSOSends: UInt64 = 0
    public var udpGSODatagrams: UInt64 = 0
    public var groFramesReceived: UInt64 = 0
    public var groDatagrams: UInt64 = 0

    public init() {}

    public static func += (lhs: inout WorkerOffloadStatistics, rhs: WorkerOffloadStatistics) {
        lhs.tsoFramesReceived &+= rhs.tsoFramesReceived
        lhs.checksumsCompleted &+= rhs.checksumsCompleted
        lhs.tsoFramesSegmented &+= rhs.tsoFramesSegmented
        lhs.segments &+= rhs.segments
        lhs.tsoFramesPassedThrough &+= rhs.tsoFramesPassedThrough
        lhs.coalescedWrites &+= rhs.coalescedWrites
        lhs.coalescedFrames &+= rhs.coalescedFrames
        lhs.udpCoalescedWrites &+= rhs.udpCoalescedWrites
        lhs.udpCoalescedFrames &+= rhs.udpCoalescedFrames
        lhs.coalesceChecksumFallbacks &+= rhs.coalesceChecksumFallbacks
        lhs.udpGSOSends &+= rhs.udpGSOSends
        lhs.udpGSODatagrams &+= rhs.udpGSODatagrams
        lhs.groFramesReceived &+= rhs.groFramesReceived
        lhs.groDatagrams &+= rhs.groDatagrams
    }
}
