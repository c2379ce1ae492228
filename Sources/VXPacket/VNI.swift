/// A VXLAN Network Identifier (RFC 7348 section 5): 24 bits, 0 ... 16,777,215.
/// GRE peers carry the same number in their key (see `GREKeyLayout`).
public struct VNI: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let maxValue: UInt32 = 0xFF_FFFF
    public let value: UInt32

    /// Returns nil when `value` does not fit in 24 bits.
    @inlinable
    public init?(_ value: UInt32) {
        guard value <= VNI.maxValue else { return nil }
        self.value = value
    }

    /// Returns nil when `value` is negative or does not fit in 24 bits.
    @inlinable
    public init?(_ value: Int) {
        guard value >= 0, value <= Int(VNI.maxValue) else { return nil }
        self.value = UInt32(value)
    }

    /// Keeps the low 24 bits; for decoders that have already extracted exactly 24 bits.
    @inlinable
    public init(truncating value: UInt32) {
        self.value = value & VNI.maxValue
    }

    public var description: String { String(value) }
    public static func < (lhs: VNI, rhs: VNI) -> Bool { lhs.value < rhs.value }
}
