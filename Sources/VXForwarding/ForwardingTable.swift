// The MAC forwarding table: (bridge domain, MAC) -> destination, learned and looked up by every worker at once.
//
// Flow
//   workers (data path, several threads)   learn(_:destination:) and lookup(_:) for every frame of a batch
//   maintenance thread (one)               advanceClock() once per tick, expire() after it
//   control thread (one)                   addStatic / removeStatic / flush(...) / entries() / counters
// None of these take a lock. Any of them may run concurrently with any other.
//
// Memory
//   One allocation of 2 x slotCount `Atomic<UInt64>`: slot i is the pair (key word 2i, value word 2i+1), four
//   slots make a bucket of 64 bytes (one cache line, allocation aligned to 64). A key hashes to a probe window of
//   `probeBuckets` buckets: the first chosen by the low hash bits, the others by an odd step taken from bits 32...
//   (double hashing). A second, separate allocation holds the clock, the entry count and the counters, one per
//   cache line, so a counter bump on one core does not invalidate the line every learner reads the clock from.
//
// Key word states                          Value word states
//   0            empty (never used)          0         no value: being inserted, or being deleted
//   1            tombstone (was used)        non-zero  an `EntryWord`, present bit set, tag of its key
//   any other    a MACKey (domain != 0)
//
// The protocol (who writes which word, and when)
//   claim    A learner that did not find its key reserves one unit of `capacity` (fetch-add on the entry count,
//            refused when that would exceed it), then CASes the first empty-or-tombstone key word of the window to
//            its key. The value word of a slot it claims is always 0 (see delete), so the slot is "being inserted".
//   publish  The claimer stores its value word. Only the claimer ever plain-stores a value, and only once.
//   update   Moves and refreshes CAS the value word from the exact word they read to the new one. A CAS that fails
//            means another learner or a deleter got there first; the learner gives up (next frame retries).
//   delete   Aging, flushes, removeStatic and duplicate removal CAS the value word from the word they read to 0.
//            Whoever wins that CAS owns the slot: no one else writes a slot whose value is 0 (learners and deleters
//            skip it, the claimer has already published). The owner then reads the key (stable now), and stores
//            the tombstone. If the key is not the one it meant to delete (an ABA that fooled the tag check, 1 in
//            65,536 of an already rare race) it stores the value back instead, undoing the delete.
//   Because the value is zeroed before the key is tombstoned, a claimer that wins a tombstone (acquire on its
//   CAS, which reads the deleter's release store) sees value 0: a new key is never paired with an old value.
//
// Readers (lookup, and learn before it decides to write) load key (acquire), value (acquire), key again (acquire;
// ordered after the value load by the value load's acquire). If the key changed, the value may belong to another
// key: skip. If it did not change, the key may still have been deleted and re-inserted in between (ABA), and the
// value may belong to the key that held the slot meanwhile; the value's check tag (16 bits of the key's hash)
// tells, except for one chance in 65,536. A value of 0, or one with the wrong tag, is "in flux" and reads as a miss:
// the frame is flooded, which is what a switch does for an unknown destination anyway.
//
// A reader stops at the first empty key word of the window: a learner claims the first free position of the
// window it scanned, every earlier position was non-empty then, and a key word never returns to 0 (only to the
// tombstone), so no key lives beyond an empty word. (`probe` loads the first bucket's four key words together and
// computes, without branches, the answer this position-by-position scan gives for those words; see there.)
//
// Duplicates. Two learners of the same key can both scan, both miss, and claim two different slots. Therefore,
// after publishing, a learner rescans its window. All claim CASes, publish stores and rescan loads are
// sequentially consistent, so of two concurrent inserters at least one sees the other's key in its rescan (without
// SC this is the store-buffering litmus test, where both could miss). Rule: the copy at the earlier window position
// wins. An inserter that sees an earlier copy deletes its own; one that sees a later, published copy deletes that
// one (if the later copy is unpublished, its own inserter has not rescanned yet, and its rescan runs after our
// claim, so it will see us and delete itself). Every delete goes through the value CAS, so exactly one party
// removes a given copy and counts it in `duplicatesRemoved`. Meanwhile a reader may see either copy: both hold a
// destination learned within the same instant, and a frame may go to either of them.
//
// Refresh without writing. A frame whose source MAC is already learned at the same destination writes nothing
// unless the entry's last-seen tick differs from the clock's, so a busy MAC costs one CAS per tick, not per frame.

public import Synchronization

/// What `ForwardingTable.learn(_:destination:)` did.
public enum LearnResult: UInt8, Sendable, CaseIterable {
    /// A new entry was inserted.
    case learned
    /// The entry was already correct and seen this tick: nothing was written.
    case unchanged
    /// The entry was correct; its last-seen tick was updated (at most once per tick).
    case refreshed
    /// The entry pointed elsewhere and now points at the new destination.
    case moved
    /// A static entry holds this key with another destination; nothing changed.
    case refusedStatic
    /// The table holds `capacity` entries, or the key's probe window is full; nothing was inserted.
    case refusedFull
    /// Another thread was inserting, moving or deleting this key at that instant; nothing changed.
    case busy
}

/// A snapshot of the table's counters. Every field is read with a relaxed load, so a snapshot taken while
/// workers run is not consistent across fields; at quiescence
/// `learned + staticInserted - aged - flushed - duplicatesRemoved - staticRemoved == entries`.
public struct ForwardingTableCounters: Sendable, Equatable, CustomStringConvertible {
    /// New entries inserted by `learn`.
    public var learned: UInt64 = 0
    /// New entries inserted by `addStatic` (converting an existing entry is not counted here).
    public var staticInserted: UInt64 = 0
    /// Learns that changed an entry's destination.
    public var moved: UInt64 = 0
    /// Learns that only rewrote the last-seen tick.
    public var refreshed: UInt64 = 0
    /// Entries removed by `expire()`.
    public var aged: UInt64 = 0
    /// Entries removed by `flush(...)`.
    public var flushed: UInt64 = 0
    /// Second copies of a key removed after a concurrent insert race.
    public var duplicatesRemoved: UInt64 = 0
    /// Static entries removed by `removeStatic`.
    public var staticRemoved: UInt64 = 0
    /// Inserts refused because the table held `capacity` entries.
    public var refusedFull: UInt64 = 0
    /// Inserts refused because every slot of the key's probe window was taken.
    public var refusedWindowFull: UInt64 = 0
    /// Learns refused because a static entry holds the key with another destination.
    public var refusedStatic: UInt64 = 0
    /// Entries in the table (including ones being inserted).
    public var entries: Int = 0

    /// Builds a snapshot; tests and `vxctl` use the memberwise form.
    public init() {}

    public var description: String {
        "entries=\(entries) learned=\(learned) static=\(staticInserted) moved=\(moved) refreshed=\(refreshed) "
            + "aged=\(aged) flushed=\(flushed) duplicates=\(duplicatesRemoved) static-removed=\(staticRemoved) "
            + "refused-full=\(refusedFull) refused-window=\(refusedWindowFull) refused-static=\(refusedStatic)"
    }
}

/// One entry of `ForwardingTable.entries()`, for `vxctl fdb`.
public struct ForwardingEntry: Sendable, Hashable {
    /// Bridge domain and MAC.
    public var key: MACKey
    /// Where frames for `key` go.
    public var destination: Destination
    /// Ticks since the entry was last learned or refreshed (0 for static entries).
    public var age: UInt16
    /// Static entries never age and never move.
    public var isStatic: Bool

    /// - Parameters:
    ///   - key: bridge domain and MAC.
    ///   - destination: where frames for `key` go.
    ///   - age: ticks since last seen.
    ///   - isStatic: whether the entry is static.
    public init(key: MACKey, destination: Destination, age: UInt16, isStatic: Bool) {
        self.key = key
        self.destination = destination
        self.age = age
        self.isStatic = isStatic
    }
}

/// The MAC forwarding table shared by every worker: lock-free learning and lookup, bulk aging and flushes.
///
/// Who calls what: workers call `learn(_:destination:)` and `lookup(_:)`; one maintenance thread calls
/// `advanceClock()` and `expire()`; the control thread calls `addStatic`, `removeStatic`, the `flush` family,
/// `entries()` and `counters`. Every method is safe to call from any thread at any time; the split above is what
/// the costs are designed for. The concurrency argument is at the top of `ForwardingTable.swift` and in
/// `docs/forwarding-table.md`.
@safe
public final class ForwardingTable: @unchecked Sendable {
    // @unchecked: `words` and `meta` are immutable pointers to memory this object owns until deinit, and every
    // access to the memory behind them is an `Atomic` operation; the other stored properties are immutable values.
    // @safe: the pointers never leave the object and every index into them is masked to the allocation.

    /// Default bound on entries: enough for a rack of hosts, 2 MiB of slots.
    public static let defaultCapacity = 65_536
    /// Default aging time in ticks: 300, the Linux bridge's and OVS's 300 s with the daemon's 1 s tick.
    public static let defaultAgingTicks: UInt16 = 300

    /// Slots per bucket: 4 slots x 16 bytes = one 64-byte cache line.
    @usableFromInline static let slotsPerBucket = 4
    /// Buckets probed per key. With at most half the slots in use, a 16-slot window overflowed for 22 of 1,000,000
    /// and 4 of 65,536 keys inserted up to full capacity (docs/forwarding-table.md); those MACs are flooded.
    @usableFromInline static let probeBuckets = 4
    /// Positions in a probe window.
    @usableFromInline static let windowSlots = slotsPerBucket * probeBuckets
    /// Key word of a slot never used.
    @usableFromInline static let emptyKey: UInt64 = 0
    /// Key word of a slot whose entry was deleted; reusable by learners, skipped by readers.
    @usableFromInline static let tombstoneKey: UInt64 = 1
    /// Attempts at claiming a slot before a learner gives up with `.busy` (each failure means another learner took
    /// the slot it chose in the same instant).
    @usableFromInline static let claimAttempts = 4

    /// The most entries the table holds.
    public let capacity: Int
    /// Slots allocated: the next power of two at or above twice `capacity` (at least 16).
    public let slotCount: Int
    /// Entries older than this many ticks are removed by `expire()`.
    public let agingTicks: UInt16
    /// `slotCount / 4 - 1`: bucket numbers are taken modulo the bucket count.
    @usableFromInline let bucketMask: Int
    /// Key and value words, `2 * slotCount` of them, 64-byte aligned.
    @usableFromInline let words: UnsafeMutablePointer<Atomic<UInt64>>
    /// Clock, entry count and counters, each at the start of its own cache line (`Meta`).
    @usableFromInline let meta: UnsafeMutablePointer<Atomic<UInt64>>

    /// Word indices into `meta`, 8 words (one cache line) apart.
    @usableFromInline
    enum Meta: Int, CaseIterable {
        case clock, entries, learned, staticInserted, moved, refreshed, aged, flushed, duplicatesRemoved
        case staticRemoved, refusedFull, refusedWindowFull, refusedStatic

        @usableFromInline static let stride = 8
        @inlinable var offset: Int { rawValue &* Meta.stride }
    }

    /// Creates an empty table.
    /// - Parameters:
    ///   - capacity: the most entries the table will hold (default 65,536; 1,000,000 takes 32 MiB of slots).
    ///   - agingTicks: entries not seen for this many clock ticks are removed by `expire()` (default 300).
    public init(
        capacity: Int = ForwardingTable.defaultCapacity,
        agingTicks: UInt16 = ForwardingTable.defaultAgingTicks
    ) {
        precondition(capacity > 0, "capacity must be positive")
        precondition(capacity <= 1 << 26, "capacity above 2^26 entries is not supported")
        precondition(agingTicks > 0, "aging time must be at least one tick")
        self.capacity = capacity
        self.agingTicks = agingTicks
        var slots = ForwardingTable.windowSlots
        while slots < 2 * capacity { slots <<= 1 }
        self.slotCount = slots
        self.bucketMask = slots / ForwardingTable.slotsPerBucket - 1

        let wordCount = 2 * slots
        let raw = UnsafeMutableRawPointer.allocate(byteCount: wordCount * 8, alignment: 64)
        let words = unsafe raw.bindMemory(to: Atomic<UInt64>.self, capacity: wordCount)
        for i in 0..<wordCount {
            unsafe (words + i).initialize(to: Atomic(0))
        }
        unsafe self.words = words

        let metaCount = Meta.allCases.count * Meta.stride
        let metaRaw = UnsafeMutableRawPointer.allocate(byteCount: metaCount * 8, alignment: 64)
        let meta = unsafe metaRaw.bindMemory(to: Atomic<UInt64>.self, capacity: metaCount)
        for i in 0..<metaCount {
            unsafe (meta + i).initialize(to: Atomic(0))
        }
        unsafe self.meta = meta
    }

    deinit {
        // Paired with the two allocations in init; no other reference to this memory outlives the object.
        unsafe words.deinitialize(count: 2 * slotCount)
        unsafe UnsafeMutableRawPointer(words).deallocate()
        unsafe meta.deinitialize(count: Meta.allCases.count * Meta.stride)
        unsafe UnsafeMutableRawPointer(meta).deallocate()
    }

    // MARK: Words

    @inlinable
    func keyWord(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { unsafe words + (slot &<< 1) }

    @inlinable
    func valueWord(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { unsafe words + (slot &<< 1 | 1) }

    @inlinable
    func bump(_ counter: Meta) {
        unsafe meta[counter.offset].wrappingAdd(1, ordering: .relaxed)
    }

    /// The slot at `position` (0 ..< windowSlots) of the probe window of `hash`.
    @inlinable
    func slot(hash: UInt64, position: Int) -> Int {
        let first = Int(truncatingIfNeeded: hash)
        let step = Int(truncatingIfNeeded: hash >> 32) | 1
        let bucket = (first &+ (position &>> 2) &* step) & bucketMask
        return bucket &<< 2 | position & 3
    }

    // MARK: Clock

    /// The current tick. Advanced only by `advanceClock()`.
    @inlinable
    public var currentTick: UInt32 {
        unsafe UInt32(truncatingIfNeeded: meta[Meta.clock.offset].load(ordering: .relaxed))
    }

    /// The 16 bits of the clock stored in value words. Entries compare ticks with wrapping arithmetic, so
    /// `expire()` must run at least once every `65,536 - agingTicks` ticks (18 hours at 1 s) to see every entry
    /// before its age wraps.
    @inlinable
    var tick16: UInt16 { UInt16(truncatingIfNeeded: currentTick) }

    /// Advances the clock by one tick. Called by the maintenance thread only; the tick period is the owner's
    /// choice (the daemon uses 1 s). Relaxed: a worker that reads the old tick a little longer merely refreshes
    /// one tick late.
    /// - Returns: the new tick.
    @discardableResult
    public func advanceClock() -> UInt32 {
        unsafe UInt32(truncatingIfNeeded: meta[Meta.clock.offset].wrappingAdd(1, ordering: .relaxed).newValue)
    }

    // MARK: Lookup (data path)

    /// Probes the window of `key`. Returns the slot holding it (or -1) and its value word, which is 0 when the
    /// entry is in flux (being inserted or deleted, or recycled under us with a mismatching tag).
    ///
    /// The result is the one the sequential scan in `probeWindow(_:hash:from:)` gives for the same loaded words; the
    /// first bucket is only read differently. Its four key words are loaded up front (acquire, in position order)
    /// and compared without branches: `candidates` keeps the positions that match the key and come before the
    /// first empty word (where the sequential scan would stop). The only branch left on the common path, "a
    /// candidate exists", is almost always taken, so the CPU predicts it and starts the next frame's loads while
    /// this bucket's cache miss is outstanding; the old loop ended on a branch taken at a random position of the
    /// bucket, which mispredicted on most lookups and serialised them (docs/performance.md). Then the usual reader
    /// protocol runs on the candidate: value (acquire), key again (acquire), tag. Loading the bucket's other key
    /// words early adds loads of words the protocol does not depend on, and changes no ordering it relies on.
    @inlinable @inline(__always)
    func probe(_ key: UInt64, hash: UInt64) -> (slot: Int, value: UInt64) {
        let first = (Int(truncatingIfNeeded: hash) & bucketMask) &<< 2
        let k0 = unsafe keyWord(first).pointee.load(ordering: .acquiring)
        let k1 = unsafe keyWord(first | 1).pointee.load(ordering: .acquiring)
        let k2 = unsafe keyWord(first | 2).pointee.load(ordering: .acquiring)
        let k3 = unsafe keyWord(first | 3).pointee.load(ordering: .acquiring)
        let matches = UInt(k0 == key ? 1 : 0) | UInt(k1 == key ? 2 : 0) | UInt(k2 == key ? 4 : 0)
            | UInt(k3 == key ? 8 : 0)
        let empties = UInt(k0 == 0 ? 1 : 0) | UInt(k1 == 0 ? 2 : 0) | UInt(k2 == 0 ? 4 : 0) | UInt(k3 == 0 ? 8 : 0)
        // Positions before the lowest empty one; all of them when none is empty (0 & 0 - 1 = all ones).
        let reachable = (empties & (0 &- empties)) &- 1
        let candidates = matches & reachable
        if candidates != 0 {
            let position = candidates.trailingZeroBitCount
            let slot = first | position
            let value = unsafe valueWord(slot).pointee.load(ordering: .acquiring)
            let second = unsafe keyWord(slot).pointee.load(ordering: .acquiring)
            if second == key {
                if value == 0 || EntryWord(raw: value).tag != forwardingTag(hash: hash) { return (slot, 0) }
                return (slot, value)
            }
            // The slot changed under us: go on after it, as the sequential scan does.
            return probeWindow(key, hash: hash, from: position &+ 1)
        }
        if empties != 0 { return (-1, 0) }
        return probeWindow(key, hash: hash, from: ForwardingTable.slotsPerBucket)
    }

    /// The sequential reader: positions `from ..< windowSlots` of the window, stopping at the first empty key word.
    /// `probe` handles the first bucket itself and comes here for the rest (rare: at most half the slots are used,
    /// so most keys sit in their first bucket) or after a slot changed under it.
    @usableFromInline @inline(never)
    func probeWindow(_ key: UInt64, hash: UInt64, from start: Int) -> (slot: Int, value: UInt64) {
        let tag = forwardingTag(hash: hash)
        for position in start..<ForwardingTable.windowSlots {
            let slot = slot(hash: hash, position: position)
            let first = unsafe keyWord(slot).pointee.load(ordering: .acquiring)
            if first == ForwardingTable.emptyKey { break }
            if first != key { continue }
            let value = unsafe valueWord(slot).pointee.load(ordering: .acquiring)
            let second = unsafe keyWord(slot).pointee.load(ordering: .acquiring)
            if second != key { continue }
            if value == 0 || EntryWord(raw: value).tag != tag { return (slot, 0) }
            return (slot, value)
        }
        return (-1, 0)
    }

    /// Looks up where frames for `key` go. Lock-free, no writes to shared memory, no allocation.
    /// - Parameter key: bridge domain and destination MAC.
    /// - Returns: the learned or static destination, or nil when unknown (or in flux at this instant).
    @inlinable
    public func lookup(_ key: MACKey) -> Destination? {
        let found = probe(key.raw, hash: forwardingHash(key.raw))
        guard found.value != 0 else { return nil }
        return EntryWord(raw: found.value).destination
    }

    // MARK: Learn (data path)

    /// Learns that `key` is reachable through `destination`: inserts, moves, refreshes, or (most often) finds the
    /// entry already correct and writes nothing. Lock-free; never allocates.
    /// - Parameters:
    ///   - key: bridge domain and source MAC of a received frame.
    ///   - destination: where that frame came from.
    /// - Returns: what happened; the table also counts it.
    @inlinable
    @discardableResult
    public func learn(_ key: MACKey, destination: Destination) -> LearnResult {
        let hash = forwardingHash(key.raw)
        let found = probe(key.raw, hash: hash)
        let bits = destination.packed
        let now = tick16
        if found.slot < 0 {
            let word = EntryWord(destinationBits: bits, tick: now, isStatic: false, tag: forwardingTag(hash: hash))
            return insert(key.raw, hash: hash, value: word.raw, staticInsert: false)
        }
        if found.value == 0 { return .busy }
        let current = EntryWord(raw: found.value)
        if current.isStatic {
            if current.destinationBits == bits { return .unchanged }
            bump(.refusedStatic)
            return .refusedStatic
        }
        // The common case, and the reason the tick lives in the value: no store, no CAS, the line stays shared.
        if current.destinationBits == bits && current.tick == now { return .unchanged }
        let desired = current.updated(destinationBits: bits, tick: now)
        // acquiring-and-releasing: the CAS only needs atomicity (the word is self-contained), but release keeps a
        // reader that sees the new destination ordered after anything this worker did before learning it.
        let (exchanged, _) = unsafe valueWord(found.slot).pointee.compareExchange(
            expected: current.raw,
            desired: desired.raw,
            successOrdering: .acquiringAndReleasing,
            failureOrdering: .relaxed
        )
        guard exchanged else { return .busy }
        if current.destinationBits == bits {
            bump(.refreshed)
            return .refreshed
        }
        bump(.moved)
        return .moved
    }

    /// The insert path of `learn` and `addStatic`: reserve capacity, claim a slot, publish, resolve duplicates.
    /// Not inlined: it runs once per new MAC, not per frame.
    @usableFromInline
    func insert(_ key: UInt64, hash: UInt64, value: UInt64, staticInsert: Bool) -> LearnResult {
        let entries = unsafe meta + Meta.entries.offset
        // Reserve first, so concurrent inserters can never overshoot the bound together.
        if unsafe entries.pointee.wrappingAdd(1, ordering: .relaxed).oldValue >= UInt64(capacity) {
            unsafe entries.pointee.wrappingSubtract(1, ordering: .relaxed)
            bump(.refusedFull)
            return .refusedFull
        }
        for _ in 0..<ForwardingTable.claimAttempts {
            var freeSlot = -1
            var freePosition = -1
            var freeKey = ForwardingTable.emptyKey
            for position in 0..<ForwardingTable.windowSlots {
                let slot = slot(hash: hash, position: position)
                let seen = unsafe keyWord(slot).pointee.load(ordering: .sequentiallyConsistent)
                if seen == key {
                    // Another learner inserted it since our probe; its entry stands, ours is not needed.
                    unsafe entries.pointee.wrappingSubtract(1, ordering: .relaxed)
                    return .busy
                }
                let isFree = seen == ForwardingTable.emptyKey || seen == ForwardingTable.tombstoneKey
                if isFree && freeSlot < 0 {
                    freeSlot = slot
                    freePosition = position
                    freeKey = seen
                }
                if seen == ForwardingTable.emptyKey { break }
            }
            guard freeSlot >= 0 else {
                unsafe entries.pointee.wrappingSubtract(1, ordering: .relaxed)
                bump(.refusedWindowFull)
                return .refusedFull
            }
            let (claimed, _) = unsafe keyWord(freeSlot).pointee.compareExchange(
                expected: freeKey,
                desired: key,
                ordering: .sequentiallyConsistent
            )
            guard claimed else { continue }
            // We own the slot and its value word is 0 (deleters zero it before tombstoning; our CAS read that
            // tombstone store, so the zeroing is visible). Publish; SC so the duplicate argument holds.
            unsafe valueWord(freeSlot).pointee.store(value, ordering: .sequentiallyConsistent)
            bump(staticInsert ? .staticInserted : .learned)
            resolveDuplicates(key, hash: hash, ownSlot: freeSlot, ownPosition: freePosition)
            return .learned
        }
        unsafe entries.pointee.wrappingSubtract(1, ordering: .relaxed)
        return .busy
    }

    /// After publishing `key` at `ownPosition`, removes any second copy a concurrent inserter made: the copy at
    /// the earlier window position wins (see "Duplicates" at the top of this file).
    @usableFromInline
    func resolveDuplicates(_ key: UInt64, hash: UInt64, ownSlot: Int, ownPosition: Int) {
        for position in 0..<ForwardingTable.windowSlots where position != ownPosition {
            let slot = slot(hash: hash, position: position)
            guard unsafe keyWord(slot).pointee.load(ordering: .sequentiallyConsistent) == key else { continue }
            if position < ownPosition {
                _ = removeSlot(ownSlot, key: key, counter: .duplicatesRemoved) { _ in true }
                return
            }
            _ = removeSlot(slot, key: key, counter: .duplicatesRemoved) { _ in true }
        }
    }

    /// The delete protocol: CAS the value word to 0 (taking ownership of the slot), check the key, tombstone it.
    /// - Parameters:
    ///   - slot: the slot to delete from.
    ///   - key: the key the caller believes is in `slot`.
    ///   - counter: the counter to bump when this call removes the entry.
    ///   - shouldRemove: decides on the current value word; re-asked if the value changes under us.
    /// - Returns: true when this call removed the entry.
    @usableFromInline
    func removeSlot(_ slot: Int, key: UInt64, counter: Meta, where shouldRemove: (EntryWord) -> Bool) -> Bool {
        let tag = forwardingTag(hash: forwardingHash(key))
        let value = unsafe valueWord(slot)
        var current = unsafe value.pointee.load(ordering: .sequentiallyConsistent)
        while true {
            // 0: someone else is inserting or deleting it. Wrong tag: the slot holds another key's value now.
            if current == 0 || EntryWord(raw: current).tag != tag || !shouldRemove(EntryWord(raw: current)) {
                return false
            }
            let (exchanged, original) = unsafe value.pointee.compareExchange(
                expected: current,
                desired: 0,
                ordering: .sequentiallyConsistent
            )
            if exchanged { break }
            current = original
        }
        // We own the slot: nobody writes a slot whose value is 0, so the key word is stable until we write it.
        let owner = unsafe keyWord(slot).pointee.load(ordering: .sequentiallyConsistent)
        guard owner == key else {
            // The slot was recycled to a key whose value carried the same tag: undo.
            unsafe value.pointee.store(current, ordering: .sequentiallyConsistent)
            return false
        }
        unsafe keyWord(slot).pointee.store(ForwardingTable.tombstoneKey, ordering: .sequentiallyConsistent)
        unsafe meta[Meta.entries.offset].wrappingSubtract(1, ordering: .relaxed)
        bump(counter)
        return true
    }

    /// Scans every slot and removes the entries `shouldRemove` selects. Maintenance and control path only.
    func removeAll(counter: Meta, where shouldRemove: (MACKey, EntryWord) -> Bool) -> Int {
        var removed = 0
        for slot in 0..<slotCount {
            let key = unsafe keyWord(slot).pointee.load(ordering: .acquiring)
            guard key > ForwardingTable.tombstoneKey else { continue }
            let macKey = MACKey(raw: key)
            if removeSlot(slot, key: key, counter: counter, where: { shouldRemove(macKey, $0) }) {
                removed += 1
            }
        }
        return removed
    }

    // MARK: Aging (maintenance thread)

    /// Removes every dynamic entry whose last-seen tick is `agingTicks` or more behind the clock. Bulk, never per
    /// packet: call it from the maintenance thread after `advanceClock()`. Scans all `slotCount` slots.
    /// - Returns: how many entries were removed (also added to `counters.aged`).
    @discardableResult
    public func expire() -> Int {
        let now = tick16
        let limit = agingTicks
        return removeAll(counter: .aged) { _, entry in
            !entry.isStatic && now &- entry.tick >= limit
        }
    }

    // MARK: Flush (control path)

    /// Removes entries pointing at the port index of `port`, of any generation (entries of an older generation at
    /// that index are stale already).
    /// - Parameters:
    ///   - port: the port whose entries go.
    ///   - domain: only entries in this domain; nil for all domains.
    ///   - includingStatic: also remove static entries.
    /// - Returns: how many entries were removed (also added to `counters.flushed`).
    @discardableResult
    public func flush(port: PortID, in domain: BridgeDomain? = nil, includingStatic: Bool = false) -> Int {
        flushDestination(Destination.port(port).packed, domain: domain, includingStatic: includingStatic)
    }

    /// Removes entries pointing at the peer index of `peer`, of any generation.
    /// - Parameters:
    ///   - peer: the peer whose entries go.
    ///   - domain: only entries in this domain (the peer left it); nil for all domains (the peer was deleted).
    ///   - includingStatic: also remove static entries.
    /// - Returns: how many entries were removed (also added to `counters.flushed`).
    @discardableResult
    public func flush(peer: PeerID, in domain: BridgeDomain? = nil, includingStatic: Bool = false) -> Int {
        flushDestination(Destination.peer(peer).packed, domain: domain, includingStatic: includingStatic)
    }

    /// Removes the entries of one bridge domain.
    /// - Parameters:
    ///   - domain: the domain to empty.
    ///   - includingStatic: also remove static entries.
    /// - Returns: how many entries were removed (also added to `counters.flushed`).
    @discardableResult
    public func flush(domain: BridgeDomain, includingStatic: Bool = false) -> Int {
        removeAll(counter: .flushed) { key, entry in
            key.domain == domain && (includingStatic || !entry.isStatic)
        }
    }

    /// Removes every entry (every dynamic one, unless `includingStatic`).
    /// - Parameter includingStatic: also remove static entries.
    /// - Returns: how many entries were removed (also added to `counters.flushed`).
    @discardableResult
    public func flushAll(includingStatic: Bool = false) -> Int {
        removeAll(counter: .flushed) { _, entry in includingStatic || !entry.isStatic }
    }

    func flushDestination(_ packed: UInt32, domain: BridgeDomain?, includingStatic: Bool) -> Int {
        // Compare kind and index, not generation: bits 0...15 and 24.
        let mask: UInt32 = 0xFFFF | Destination.peerBit
        return removeAll(counter: .flushed) { key, entry in
            entry.destinationBits & mask == packed & mask && (domain == nil || key.domain == domain)
                && (includingStatic || !entry.isStatic)
        }
    }

    // MARK: Static entries (control path)

    /// Installs a static entry: it never ages, and learning the key elsewhere is refused (and counted). Replaces a
    /// dynamic or static entry already holding the key.
    /// - Parameters:
    ///   - key: bridge domain and MAC.
    ///   - destination: where its frames go.
    /// - Returns: false when the table is full (or the key stayed in flux for every attempt).
    @discardableResult
    public func addStatic(_ key: MACKey, destination: Destination) -> Bool {
        let hash = forwardingHash(key.raw)
        let word = EntryWord(
            destinationBits: destination.packed,
            tick: 0,
            isStatic: true,
            tag: forwardingTag(hash: hash)
        )
        // Bounded: each retry means a worker inserted, moved or a deleter removed this key in the same instant.
        for _ in 0..<1_000 {
            let found = probe(key.raw, hash: hash)
            if found.slot < 0 {
                switch insert(key.raw, hash: hash, value: word.raw, staticInsert: true) {
                case .learned: return true
                case .refusedFull: return false
                default: continue
                }
            }
            if found.value == 0 { continue }
            let (exchanged, _) = unsafe valueWord(found.slot).pointee.compareExchange(
                expected: found.value,
                desired: word.raw,
                ordering: .sequentiallyConsistent
            )
            if exchanged { return true }
        }
        return false
    }

    /// Removes the static entry for `key`.
    /// - Parameter key: bridge domain and MAC.
    /// - Returns: false when `key` has no static entry.
    @discardableResult
    public func removeStatic(_ key: MACKey) -> Bool {
        let found = probe(key.raw, hash: forwardingHash(key.raw))
        guard found.slot >= 0 else { return false }
        return removeSlot(found.slot, key: key.raw, counter: .staticRemoved) { $0.isStatic }
    }

    // MARK: Inspection (control path)

    /// Every entry present at the time its slot is read (not an atomic snapshot of the table). Allocates.
    /// - Returns: entries in slot order.
    public func entries() -> [ForwardingEntry] {
        var result: [ForwardingEntry] = []
        let now = tick16
        for slot in 0..<slotCount {
            let key = unsafe keyWord(slot).pointee.load(ordering: .acquiring)
            guard key > ForwardingTable.tombstoneKey else { continue }
            let value = unsafe valueWord(slot).pointee.load(ordering: .acquiring)
            guard unsafe keyWord(slot).pointee.load(ordering: .acquiring) == key, value != 0 else { continue }
            let entry = EntryWord(raw: value)
            guard entry.tag == forwardingTag(hash: forwardingHash(key)) else { continue }
            result.append(
                ForwardingEntry(
                    key: MACKey(raw: key),
                    destination: entry.destination,
                    age: entry.isStatic ? 0 : now &- entry.tick,
                    isStatic: entry.isStatic
                )
            )
        }
        return result
    }

    /// Entries in the table now, including ones being inserted (relaxed load).
    public var count: Int {
        unsafe Int(truncatingIfNeeded: meta[Meta.entries.offset].load(ordering: .relaxed))
    }

    /// The counters, each read with a relaxed load.
    public var counters: ForwardingTableCounters {
        func read(_ counter: Meta) -> UInt64 { unsafe meta[counter.offset].load(ordering: .relaxed) }
        var c = ForwardingTableCounters()
        c.learned = read(.learned)
        c.staticInserted = read(.staticInserted)
        c.moved = read(.moved)
        c.refreshed = read(.refreshed)
        c.aged = read(.aged)
        c.flushed = read(.flushed)
        c.duplicatesRemoved = read(.duplicatesRemoved)
        c.staticRemoved = read(.staticRemoved)
        c.refusedFull = read(.refusedFull)
        c.refusedWindowFull = read(.refusedWindowFull)
        c.refusedStatic = read(.refusedStatic)
        c.entries = count
        return c
    }

    /// The raw value word stored for `key`, for tests that check a refresh wrote nothing.
    func rawValueWord(for key: MACKey) -> UInt64? {
        let found = probe(key.raw, hash: forwardingHash(key.raw))
        return found.slot < 0 ? nil : found.value
    }
}

extension MACKey {
    /// Rebuilds a key from its packed word (the table's key words).
    /// - Parameter raw: a packed key whose domain bits are non-zero.
    @inlinable
    public init(raw: UInt64) {
        precondition(raw >> 48 != 0, "a MACKey's bridge domain is never 0")
        self.raw = raw
    }
}
