// Bounds-checked, big-endian loads and stores for the DHCP codec, the same shape as VXPacket's (which keeps its
// own internal). Every parser below checks lengths before it loads, so the span's own bounds checks never fire on
// well-formed or malformed input; an offset a parser forgot to check traps instead of reading past the buffer.
//
// `unsafe` marks only that `RawSpan.unsafeLoad*` is `@unsafe` for arbitrary types: for fixed-width integers every
// bit pattern is a valid value and the span checks the range.

extension RawSpan {
    @inline(__always)
    func u8(_ offset: Int) -> UInt8 {
        unsafe unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// `count` bytes from `offset` as an array (the span checks the range).
    func bytes(at offset: Int, count: Int) -> [UInt8] {
        let slice = extracting(offset..<offset + count)
        return unsafe slice.withUnsafeBytes { unsafe Array($0) }
    }
}

extension MutableRawSpan {
    @inline(__always)
    mutating func storeU8(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    mutating func storeBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inline(__always)
    mutating func storeBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Stores `bytes` from `offset` (the span checks the range).
    mutating func storeBytes(_ bytes: [UInt8], at offset: Int) {
        for (i, byte) in bytes.enumerated() {
            storeU8(byte, at: offset + i)
        }
    }

    /// Zeroes `count` bytes from `offset`.
    mutating func zero(at offset: Int, count: Int) {
        for i in 0..<count {
            storeU8(0, at: offset + i)
        }
    }
}
