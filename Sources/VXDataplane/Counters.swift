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
