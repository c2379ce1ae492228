import Testing
import VXPacket
import VXTestSupport

/// `copyAndSum` replaces a copy and a `sum` in the TCP segmenter, so it must match them exactly: the same bytes
/// where the copy goes, nothing written anywhere else, and `sum`'s result bit for bit.
@Suite("Fused copy and checksum")
struct CopyAndSumTests {
    /// Empty, every tail of the 8-byte step (1-7 left over), one segment's payload, and the largest frames.
    static let lengths = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 1397, 1448, 1449, 65_535, 65_536,
    ]
    /// The bytes just past `guardLength` on both sides of the copy must keep this value.
    static let guardByte: UInt8 = 0x5A
    static let guardLength = 19

    @Test(arguments: lengths)
    func copiesAndSumsLikeCopyThenSum(length: Int) {
        var generator = SystemRandomNumberGenerator()
        let source = (0..<(length + 3)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for sourceOffset in 0...3 {
            for destinationOffset in [0, 1, 2, 3, Self.guardLength] {
                expectCopyAndSum(source, from: sourceOffset, length: length, to: destinationOffset)
            }
        }
    }

    /// All-ones words make every 32-bit half the largest it can be: no carry may be lost before the fold.
    @Test(arguments: [0xFF, 0x00, 0x80] as [UInt8])
    func keepsEveryCarryOfTheLargestFrames(fill: UInt8) {
        let source = [UInt8](repeating: fill, count: 65_536)
        expectCopyAndSum(source, from: 1, length: 65_535, to: 3)
        expectCopyAndSum(source, from: 0, length: 65_536, to: 0)
    }

    @Test func randomLengthsAndOffsets() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let length = Int.random(in: 0...3000, using: &generator)
            let sourceOffset = Int.random(in: 0...15, using: &generator)
            let source = (0..<(sourceOffset + length)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let destinationOffset = Int.random(in: 0...15, using: &generator)
            expectCopyAndSum(source, from: sourceOffset, length: length, to: destinationOffset)
        }
    }

    @Test func rfc1071Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        var destination = [UInt8](repeating: 0, count: 8)
        var sum: UInt16 = 0
        mutate(&destination) { sum = InternetChecksum.copyAndSum(bytes.span.bytes, into: &$0, at: 0) }
        #expect(sum == 0xDDF2)
        #expect(destination == bytes)
    }

    @Test func copyThatDoesNotFitTraps() async {
        await #expect(processExitsWith: .failure) {
            var destination = [UInt8](repeating: 0, count: 10)
            let source = [UInt8](repeating: 1, count: 4)
            mutate(&destination) { _ = InternetChecksum.copyAndSum(source.span.bytes, into: &$0, at: 7) }
        }
    }

    /// Copies `length` bytes of `source` from `sourceOffset` into a guarded destination at `destinationOffset` and
    /// checks the copy, the untouched guard bytes and the sum against `sum` over the copied bytes.
    private func expectCopyAndSum(_ source: [UInt8], from sourceOffset: Int, length: Int, to destinationOffset: Int) {
        let region = sourceOffset..<(sourceOffset + length)
        let capacity = destinationOffset + length + Self.guardLength
        var destination = [UInt8](repeating: Self.guardByte, count: capacity)
        var fused: UInt16 = 0
        mutate(&destination) {
            fused = InternetChecksum.copyAndSum(source.span.bytes.extracting(region), into: &$0, at: destinationOffset)
        }
        let copied = Array(destination[destinationOffset..<(destinationOffset + length)])
        let context = "length \(length), source offset \(sourceOffset), destination offset \(destinationOffset)"
        #expect(copied == Array(source[region]), "\(context)")
        #expect(fused == InternetChecksum.sum(copied.span.bytes), "\(context)")
        let untouched = destination[..<destinationOffset] + destination[(destinationOffset + length)...]
        #expect(untouched.allSatisfy { $0 == Self.guardByte }, "\(context)")
    }
}
