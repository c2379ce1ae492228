import Testing
import VXPacket

/// `vxEqual` compares header fields for the coalescer with overlapping tail loads, so every length must see every
/// byte of its range, and none outside it.
@Suite("Byte range equality")
struct ByteEqualityTests {
    @Test(arguments: 0...40)
    func everyByteInTheRangeCountsAndNoneOutside(count: Int) {
        // Ranges at different offsets in the two buffers, with bytes on both sides that differ.
        let left = (0..<(count + 10)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        var right = [UInt8](repeating: 0xEE, count: count + 13)
        for index in 0..<count { right[index + 5] = left[index + 3] }
        let equal = left.span.bytes.vxEqual(3, right.span.bytes, 5, count: count)
        #expect(equal)
        for position in 0..<count {
            var changed = right
            changed[position + 5] ^= 0x01
            let equal = left.span.bytes.vxEqual(3, changed.span.bytes, 5, count: count)
            #expect(!equal, "a difference at byte \(position) of \(count) went unseen")
        }
    }
}
