// Bounds-checked loads, stores and copies for this module (VXPacket keeps its own helpers internal).
//
// Loads and stores go through `RawSpan`/`MutableRawSpan`, which check every offset. The loads are spelled
// `unsafe` only because `unsafeLoadUnaligned` is `@unsafe` for arbitrary types: for fixed-width integers every bit
// pattern is valid and the span checks the range. `copyBytes` drops to pointers for a single `memcpy`, after a
// precondition that proves both ranges lie inside their spans.

extension RawSpan {
    @inline(__always)
    func offU8(_ offset: Int) -> UInt8 {
        unsafe unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    func offBE16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    func offBE32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    func offBE64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    func offLE16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// True when `count` bytes at `offset` here equal `count` bytes at `otherOffset` in `other`.
    func offEqual(_ offset: Int, _ other: RawSpan, _ otherOffset: Int, count: Int) -> Bool {
        var i = 0
        while i + 8 <= count {
            guard offBE64(offset + i) == other.offBE64(otherOffset + i) else { return false }
            i += 8
        }
        while i < count {
            guard offU8(offset + i) == other.offU8(otherOffset + i) else { return false }
            i += 1
        }
        return true
    }
}

extension MutableRawSpan {
    @inline(__always)
    mutating func offStoreU8(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    mutating func offStoreBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inline(__always)
    mutating func offStoreBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inline(__always)
    mutating func offStoreLE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// Copies `count` bytes from `source` at `sourceOffset` to `destinationOffset` here (one `memcpy`).
    /// Traps when either range is outside its span: offsets are computed by this module from parsed lengths, so a
    /// violation is a bug, never traffic.
    @inline(__always)
    mutating func offCopy(from source: RawSpan, at sourceOffset: Int, count: Int, to destinationOffset: Int) {
        precondition(
            count >= 0 && sourceOffset >= 0 && destinationOffset >= 0
                && sourceOffset <= source.byteCount &- count && destinationOffset <= byteCount &- count,
            "VXOffload: copy out of bounds"
        )
        guard count > 0 else { return }
        // Safe: the precondition above proves [sourceOffset, +count) is inside `source` and
        // [destinationOffset, +count) inside `self`; the pointers do not escape the closures.
        unsafe withUnsafeMutableBytes { destination in
            unsafe source.withUnsafeBytes { from in
                unsafe destination.baseAddress!.advanced(by: destinationOffset).copyMemory(
                    from: from.baseAddress!.advanced(by: sourceOffset),
                    byteCount: count
                )
            }
        }
    }
}
