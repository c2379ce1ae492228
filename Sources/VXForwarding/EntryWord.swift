// The forwarding table's value word and key hash. Pure bit manipulation, no shared state.

/// The 64-bit value stored beside each key:
///
/// ```
///  63            48 47            32 31    27 26 25 24 23        16 15                0
/// +----------------+----------------+--------+--+--+--+------------+------------------+
/// |   check tag    | last-seen tick |  zero  |P |S |K | generation |      index       |
/// +----------------+----------------+--------+--+--+--+------------+------------------+
///                                             |  |  +-- destination kind (0 port, 1 peer)
///                                             |  +----- static (never ages, never moves)
///                                             +-------- present: always 1, so a published value is never 0
/// ```
///
/// Bits 0...24 are `Destination.packed`. The check tag is the top 16 bits of the key's hash: a reader that raced
/// with a delete and a reuse of its slot sees a value whose tag does not match its key and treats it as a miss
/// (see the concurrency notes in `ForwardingTable.swift`). 0 is reserved for "no value" (being inserted or being
/// deleted).
@usableFromInline
struct EntryWord: Hashable, Sendable {
    /// The packed word.
    @usableFromInline var raw: UInt64

    @usableFromInline static let destinationMask: UInt64 = UInt64(Destination.packedMask)
    @usableFromInline static let staticBit: UInt64 = 1 << 25
    @usableFromInline static let presentBit: UInt64 = 1 << 26
    @usableFromInline static let tickShift: UInt64 = 32
    @usableFromInline static let tagShift: UInt64 = 48

    @inlinable
    init(raw: UInt64) {
        self.raw = raw
    }

    @inlinable
    init(destinationBits: UInt32, tick: UInt16, isStatic: Bool, tag: UInt16) {
        var raw = UInt64(destinationBits) & EntryWord.destinationMask | EntryWord.presentBit
        if isStatic { raw |= EntryWord.staticBit }
        raw |= UInt64(tick) << EntryWord.tickShift | UInt64(tag) << EntryWord.tagShift
        self.raw = raw
    }

    @inlinable var destinationBits: UInt32 { UInt32(truncatingIfNeeded: raw & EntryWord.destinationMask) }
    @inlinable var destination: Destination { Destination(packed: destinationBits) }
    @inlinable var tick: UInt16 { UInt16(truncatingIfNeeded: raw >> EntryWord.tickShift) }
    @inlinable var tag: UInt16 { UInt16(truncatingIfNeeded: raw >> EntryWord.tagShift) }
    @inlinable var isStatic: Bool { raw & EntryWord.staticBit != 0 }

    /// The same entry pointing at `destinationBits`, last seen at `tick`.
    @inlinable
    func updated(destinationBits: UInt32, tick: UInt16) -> EntryWord {
        let keep = raw & ~(EntryWord.destinationMask | UInt64(0xFFFF) << EntryWord.tickShift)
        return EntryWord(raw: keep | UInt64(destinationBits) | UInt64(tick) << EntryWord.tickShift)
    }
}

/// The key hash: murmur3's 64-bit finalizer, a bijection that spreads every input bit over the output.
/// Low bits choose the first bucket, bits 32... the probe step, bits 48...63 the check tag.
@inlinable
func forwardingHash(_ key: UInt64) -> UInt64 {
    var z = key
    z ^= z >> 33
    z &*= 0xFF51_AFD7_ED55_8CCD
    z ^= z >> 33
    z &*= 0xC4CE_B9FE_1A85_EC53
    z ^= z >> 33
    return z
}

/// The check tag of a key: the top 16 bits of its hash.
@inlinable
func forwardingTag(hash: UInt64) -> UInt16 {
    UInt16(truncatingIfNeeded: hash >> EntryWord.tagShift)
}
