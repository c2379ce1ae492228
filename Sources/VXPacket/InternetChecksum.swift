// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// `sum` is the hot part: it runs over IPv4 headers on every decap and over whole UDP/TCP segments when a checksum is
// computed or verified. It adds native-order 32-bit words into a 64-bit accumulator and folds at the end; RFC 1071
// §2(B) shows the one's-complement sum is byte-order independent, so the folded native sum only needs one byte
// swap to become the big-endian sum. The wide accumulator defers every carry to the fold (2^32 words, 16 GiB, fit),
// which keeps the loop free of branches: an add-with-carry loop compiled to a branch per word, mispredicted on
// real data, and took a quarter of the daemon's CPU under offloaded TCP.
//
// `copyAndSum` is `sum` fused with a copy, for the TCP segmenter: copying a 64 KB payload and then summing the copy
// read it twice, a memmove and a checksum pass that were together ~10% of the daemon's samples under offloaded TCP.
// Unsafe buffer access is confined to `sum` and `copyAndSum`; every offset they load from or store to is below
// `count` by the loop conditions, and `copyAndSum` checks its destination range before taking any pointer.

/// One's-complement arithmetic over 16-bit big-endian words, as used by IPv4, UDP, TCP and GRE.
public enum InternetChecksum {
    /// The one's-complement sum of `bytes` read as big-endian 16-bit words (an odd final byte is padded with a
    /// zero byte), folded to 16 bits and not complemented.
    /// - Parameter bytes: the bytes to sum; its start is taken as 16-bit aligned.
    /// - Returns: the folded sum; a region with a correct checksum field sums to `0xFFFF`.
    @inlinable
    public static func sum(_ bytes: RawSpan) -> UInt16 {
        unsafe bytes.withUnsafeBytes { buffer in
            let count = buffer.count
            // 32-bit words into a 64-bit accumulator: no carry can be lost below 2^32 words, so the loop has no
            // carry chain and no branch, and the compiler vectorises it (widening adds).
            var accumulator: UInt64 = 0
            let wordCount = count / 4
            for word in 0..<wordCount {
                accumulator &+= UInt64(unsafe buffer.loadUnaligned(fromByteOffset: word &* 4, as: UInt32.self))
            }
            var offset = wordCount &* 4
            if offset + 2 <= count {
                accumulator &+= UInt64(unsafe buffer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                offset += 2
            }
            if offset < count {
                // The odd byte is the high half of a big-endian word, i.e. the low half of a native
                // little-endian one.
                let last = UInt64(unsafe buffer[offset])
                #if _endian(little)
                    accumulator &+= last
                #else
                    accumulator &+= last << 8
                #endif
            }
            let native = fold(accumulator)
            return UInt16(bigEndian: native)
        }
    }

    /// Copies `source` into `destination` at `offset` and returns `sum(source)`, reading each byte once.
    /// - Parameters:
    ///   - source: the bytes to copy and sum; its start is taken as 16-bit aligned, as in `sum`.
    ///   - destination: where the copy goes; bytes outside `offset ..< offset + source.byteCount` are untouched.
    ///   - offset: where the copy starts in `destination` (any alignment). Traps when the copy would not fit:
    ///     callers size destinations from parsed lengths, so a short one is a bug, never traffic.
    /// - Returns: the folded sum of `source`, equal to `sum` over the copied bytes.
    @inlinable
    public static func copyAndSum(
        _ source: RawSpan,
        into destination: inout MutableRawSpan,
        at offset: Int
    ) -> UInt16 {
        let count = source.byteCount
        precondition(
            offset >= 0 && offset <= destination.byteCount &- count,
            "InternetChecksum.copyAndSum: copy out of bounds"
        )
        guard count > 0 else { return 0 }
        // Safe: the precondition proves [offset, +count) is inside `destination`, and the loads stay below
        // `count` in `source`; the buffers do not escape the closures. The two cannot overlap: `destination` is
        // borrowed exclusively (the compiler still guards the vector loop with an overlap check and falls back to
        // a scalar one).
        return unsafe destination.withUnsafeMutableBytes { whole in
            let to = unsafe UnsafeMutableRawBufferPointer(rebasing: whole[offset..<(offset &+ count)])
            return unsafe source.withUnsafeBytes { from in
                unsafe copyAndSum(from, into: to)
            }
        }
    }

    /// The loop of `copyAndSum(_:into:at:)`; `from` and `to` have the same count and do not overlap.
    @inlinable
    @unsafe
    static func copyAndSum(_ from: UnsafeRawBufferPointer, into to: UnsafeMutableRawBufferPointer) -> UInt16 {
        let count = from.count
        // Eight bytes a step, stored as loaded and added as two 32-bit halves into a 64-bit accumulator (no carry
        // is lost below 2^31 steps). The compiler vectorises this shape (32 bytes an iteration with SSE2: two
        // unaligned loads and stores, masks, shifts and widening adds, no branch per word). It measured as fast as
        // explicit SIMD types; a 4-byte step vectorised half as wide and two accumulators over 16-byte steps were
        // slower (docs/performance.md).
        var accumulator: UInt64 = 0
        let chunkCount = count / 8
        for chunk in 0..<chunkCount {
            let bytes = unsafe from.loadUnaligned(fromByteOffset: chunk &* 8, as: UInt64.self)
            unsafe to.storeBytes(of: bytes, toByteOffset: chunk &* 8, as: UInt64.self)
            accumulator &+= (bytes & 0xFFFF_FFFF) &+ (bytes >> 32)
        }
        var offset = chunkCount &* 8
        if offset + 4 <= count {
            let word = unsafe from.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
            unsafe to.storeBytes(of: word, toByteOffset: offset, as: UInt32.self)
            accumulator &+= UInt64(word)
            offset += 4
        }
        if offset + 2 <= count {
            let half = unsafe from.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
            unsafe to.storeBytes(of: half, toByteOffset: offset, as: UInt16.self)
            accumulator &+= UInt64(half)
            offset += 2
        }
        if offset < count {
            let last = unsafe from[offset]
            unsafe to[offset] = last
            // As in `sum`: the odd byte is the high half of a big-endian word.
            #if _endian(little)
                accumulator &+= UInt64(last)
            #else
                accumulator &+= UInt64(last) << 8
            #endif
        }
        return UInt16(bigEndian: fold(accumulator))
    }

    /// Adds two folded one's-complement sums (for example a pseudo-header sum and a segment sum).
    @inlinable @inline(__always)
    public static func combine(_ a: UInt16, _ b: UInt16) -> UInt16 {
        let s = UInt32(a) + UInt32(b)
        return UInt16(truncatingIfNeeded: (s & 0xFFFF) + (s >> 16))
    }

    /// The checksum field value for `bytes` whose own checksum field currently holds zero.
    /// - Returns: the complement of `sum(bytes)`.
    @inlinable
    public static func checksum(_ bytes: RawSpan) -> UInt16 {
        ~sum(bytes)
    }

    /// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`: the checksum after one 16-bit word changes from `old` to
    /// `new`. Eqn. 3 rather than eqn. 2 so that the result never becomes `0x0000` spuriously (RFC 1624 §3).
    /// - Parameters:
    ///   - checksum: the checksum field before the change.
    ///   - old: the word's old value (host order).
    ///   - new: the word's new value (host order).
    /// - Returns: the updated checksum field.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        var s = UInt32(~checksum) + UInt32(~old) + UInt32(new)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// RFC 1624 update for a 32-bit field (an address or a sequence number) that changed from `old` to `new`.
    /// - Returns: the updated checksum field.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        var s = UInt32(~checksum)
        s += UInt32(~UInt16(truncatingIfNeeded: old >> 16)) + UInt32(~UInt16(truncatingIfNeeded: old))
        s += (new >> 16) + (new & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// The folded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1) for a UDP or TCP segment.
    /// - Parameters:
    ///   - source: IPv4 source address.
    ///   - destination: IPv4 destination address.
    ///   - protocol: the transport protocol number.
    ///   - length: the transport segment length in bytes (header plus data).
    @inlinable
    public static func pseudoHeaderSum(
        source: IPv4Address, destination: IPv4Address, protocol proto: IPProtocol, length: Int
    ) -> UInt16 {
        var s = UInt64(source.value >> 16) + UInt64(source.value & 0xFFFF)
        s += UInt64(destination.value >> 16) + UInt64(destination.value & 0xFFFF)
        s += UInt64(proto.rawValue) + UInt64(UInt32(truncatingIfNeeded: length))
        return fold(s)
    }

    /// The folded sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer segment.
    /// - Parameters:
    ///   - source: IPv6 source address.
    ///   - destination: IPv6 destination address (the final one, if a routing header is present).
    ///   - protocol: the upper-layer protocol number.
    ///   - length: the upper-layer packet length in bytes.
    @inlinable
    public static func pseudoHeaderSum(
        source: IPv6Address, destination: IPv6Address, protocol proto: IPProtocol, length: Int
    ) -> UInt16 {
        // Host-order 64-bit values of big-endian words: their one's-complement sum folds to the 16-bit one.
        var s = addWithCarry(source.high, source.low)
        s = addWithCarry(s, destination.high)
        s = addWithCarry(s, destination.low)
        let len = UInt32(truncatingIfNeeded: length)
        s = addWithCarry(s, UInt64(len >> 16) + UInt64(len & 0xFFFF) + UInt64(proto.rawValue))
        return fold(s)
    }

    @inlinable @inline(__always)
    static func addWithCarry(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (s, overflow) = a.addingReportingOverflow(b)
        return s &+ (overflow ? 1 : 0)
    }

    /// Folds a 64-bit one's-complement accumulator to 16 bits, preserving its byte order.
    @inlinable @inline(__always)
    static func fold(_ value: UInt64) -> UInt16 {
        var s = (value & 0xFFFF_FFFF) + (value >> 32)
        s = (s & 0xFFFF_FFFF) + (s >> 32)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }
}
