// Bounds-checked, byte-order-explicit loads, stores and copies: VXPacket's header views use them, and so do the
// other pure codecs of this package (VXDHCP, VXOffload), so there is one set of these helpers, not one per module.
//
// Parsers read from a `RawSpan` and writers store into a `MutableRawSpan`. Both carry their own bounds, so an
// offset that a parser forgot to check traps instead of reading a neighbour's memory; the parsers still check
// lengths first, so on well-formed and malformed input alike these bounds checks never fire.
//
// Access is `package`, not `public`: these are extensions on standard-library types with trapping, prefix-named
// members, fine as the shared vocabulary of this package's codecs but not an API to push onto every client's
// `RawSpan`. They are `@inlinable` so the codecs in other modules inline them exactly as VXPacket does (a call per
// field load would cost more than the load), and the one-instruction ones are also `@inline(__always)`.
//
// The loads are spelled `unsafe` only because `RawSpan.unsafeLoadUnaligned` is declared `@unsafe` for arbitrary
// types: for the fixed-width integers used here every bit pattern is a valid value, and the span checks the
// range, so no load below can observe uninitialised or out-of-bounds memory.

extension RawSpan {
    @inlinable @inline(__always)
    package func vxU8(_ offset: Int) -> UInt8 {
        unsafe unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    package func vxBE16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    package func vxBE32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always)
    package func vxBE64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Little-endian: for fields the kernel writes in host order (virtio-net headers).
    @inlinable @inline(__always)
    package func vxLE16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// Little-endian on purpose: the flow hash only needs a fixed byte order, and little-endian is free on the
    /// hosts we run on.
    @inlinable @inline(__always)
    package func vxLE32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Little-endian on purpose, as `vxLE32`.
    @inlinable @inline(__always)
    package func vxLE64(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// A MAC address stored in wire order at `offset` (six octets).
    @inlinable @inline(__always)
    package func vxMAC(_ offset: Int) -> MACAddress {
        MACAddress(raw: UInt64(vxBE32(offset)) << 16 | UInt64(vxBE16(offset + 4)))
    }

    /// `count` bytes from `offset` as an array (the span checks the range).
    @inlinable
    package func vxBytes(at offset: Int, count: Int) -> [UInt8] {
        let slice = extracting(offset..<offset + count)
        return unsafe slice.withUnsafeBytes { unsafe Array($0) }
    }

    /// True when `count` bytes at `offset` here equal `count` bytes at `otherOffset` in `other`.
    ///
    /// Eight bytes a load, then the tail as one load of the widest size that fits, overlapping bytes already
    /// compared: no byte loop. The coalescer compares 2- to 34-byte header fields per segment
    /// (`TCPCoalescer.headersMatch`), where a byte loop of bounds-checked loads cost more than the fields.
    @inlinable
    package func vxEqual(_ offset: Int, _ other: RawSpan, _ otherOffset: Int, count: Int) -> Bool {
        // Host order: equality does not care, and little-endian loads are free on the hosts we run on.
        if count >= 8 {
            var i = 0
            while i + 8 <= count {
                guard vxLE64(offset + i) == other.vxLE64(otherOffset + i) else { return false }
                i += 8
            }
            let last = count - 8
            return i == count || vxLE64(offset + last) == other.vxLE64(otherOffset + last)
        }
        if count >= 4 {
            let last = count - 4
            return vxLE32(offset) == other.vxLE32(otherOffset)
                && vxLE32(offset + last) == other.vxLE32(otherOffset + last)
        }
        if count >= 2 {
            let last = count - 2
            return vxLE16(offset) == other.vxLE16(otherOffset)
                && vxLE16(offset + last) == other.vxLE16(otherOffset + last)
        }
        return count < 1 || vxU8(offset) == other.vxU8(otherOffset)
    }
}

extension MutableRawSpan {
    @inlinable @inline(__always)
    package mutating func vxStoreU8(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    package mutating func vxStoreBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    package mutating func vxStoreBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Little-endian: for fields the kernel reads in host order (virtio-net headers).
    @inlinable @inline(__always)
    package mutating func vxStoreLE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    package mutating func vxStoreMAC(_ mac: MACAddress, at offset: Int) {
        vxStoreBE32(UInt32(truncatingIfNeeded: mac.raw >> 16), at: offset)
        vxStoreBE16(UInt16(truncatingIfNeeded: mac.raw), at: offset + 4)
    }

    /// Stores `bytes` from `offset` (the span checks the range).
    @inlinable
    package mutating func vxStoreBytes(_ bytes: [UInt8], at offset: Int) {
        for (i, byte) in bytes.enumerated() {
            vxStoreU8(byte, at: offset + i)
        }
    }

    /// Zeroes `count` bytes from `offset` (the span checks the range).
    @inlinable
    package mutating func vxZero(at offset: Int, count: Int) {
        for i in 0..<count {
            vxStoreU8(0, at: offset + i)
        }
    }

    /// Copies `count` bytes from `source` at `sourceOffset` to `destinationOffset` here (one `memcpy`).
    /// Traps when either range is outside its span: callers compute offsets from parsed lengths, so a violation
    /// is a bug, never traffic.
    @inlinable @inline(__always)
    package mutating func vxCopy(from source: RawSpan, at sourceOffset: Int, count: Int, to destinationOffset: Int) {
        precondition(
            count >= 0 && sourceOffset >= 0 && destinationOffset >= 0
                && sourceOffset <= source.byteCount &- count && destinationOffset <= byteCount &- count,
            "vxCopy: copy out of bounds"
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
