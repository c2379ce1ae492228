// A seeded random number generator for the fuzz and property tests: a failing round replays from its seed.

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and the same sequence for the same seed on every machine,
/// which `SystemRandomNumberGenerator` is not.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SplitMix64 {
    /// True `percent` times in a hundred: one draw of `Int.random(in: 0..<100)`.
    public mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &self) < percent }
}
