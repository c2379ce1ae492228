// Bounds-checked, byte-order-explicit loads and stores shared by every header view in this module.
//
// Parsers read from a `RawSpan` and writers store into a `MutableRawSpan`. Both carry their own bounds, so an
// offset that a parser forgot to check traps instead of reading a neighbour's memory; the parsers still check
// lengths first, so on well-formed and malformed input alike these bounds checks never fire.
//
// The loads are spelled `unsafe` only because `RawSpan.unsafeLoadUnaligned` is declared `@unsafe` for arbitrary
// types: for the fixed-width integers used here every bit pattern is a valid value, and the span checks the
// range, so no load below can observe uninitialised or out-of-bounds memory.

extension RawSpan {
    @inlinable @inline(__always)
    func vxU8(_ offset: Int) -> UInt8 {
        unsafe unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    func vxBE16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    func vxBE32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Little-endian on purpose: the flow hash only needs a fixed byte order, and little-endian is free on the
    /// hosts we run on.
    @inlinable @inline(__always)
    func vxLE64(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inlinable @inline(__always)
    func vxLE32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// A MAC address stored in wire order at `offset` (six octets).
    @inlinable @inline(__always)
    func vxMAC(_ offset: Int) -> MACAddress {
        MACAddress(raw: UInt64(vxBE32(offset)) << 16 | UInt64(vxBE16(offset + 4)))
    }
}

extension MutableRawSpan {
    @inlinable @inline(__always)
    mutating func vxStoreU8(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    @inlinable @inline(__always)
    mutating func vxStoreBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    mutating func vxStoreBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    mutating func vxStoreMAC(_ mac: MACAddress, at offset: Int) {
        vxStoreBE32(UInt32(truncatingIfNeeded: mac.raw >> 16), at: offset)
        vxStoreBE16(UInt16(truncatingIfNeeded: mac.raw), at: offset + 4)
    }
}
