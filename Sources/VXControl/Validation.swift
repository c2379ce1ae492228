import VXPacket

// Validation shared by the daemon (decoding params) and vxctl (checking arguments before sending), so both say
// the same thing about the same bad value. Each check throws `invalidParams` with a sentence that names the value.

/// Checks for the values that control requests carry.
public enum ControlValidation {
    /// The MTUs a port may have: 68 (the IPv4 minimum, RFC 791) through 65535 (the largest IPv4 datagram).
    public static let mtuRange: ClosedRange<Int> = 68...65535

    /// Parses a VNI.
    /// - Parameter value: the number as given.
    /// - Returns: the VNI.
    /// - Throws: `invalidParams`: `VNI 16777216 is out of range (0-16777215)`.
    public static func vni(_ value: Int) throws(ControlError) -> VNI {
        guard let vni = VNI(value) else {
            throw .invalidParams("VNI \(value) is out of range (0-\(VNI.maxValue))")
        }
        return vni
    }

    /// Parses a VNI from text, as vxctl receives it.
    /// - Parameter text: decimal digits.
    /// - Returns: the VNI.
    /// - Throws: `invalidParams` when the text is not a number or is out of range.
    public static func vni(_ text: String) throws(ControlError) -> VNI {
        guard let value = Int(text) else {
            throw .invalidParams("VNI \"\(text)\" is not a number (0-\(VNI.maxValue))")
        }
        return try vni(value)
    }

    /// Checks an MTU.
    /// - Parameter value: the MTU in bytes.
    /// - Returns: `value`.
    /// - Throws: `invalidParams`: `MTU 9 is out of range (68-65535)`.
    public static func mtu(_ value: Int) throws(ControlError) -> Int {
        guard mtuRange.contains(value) else {
            throw .invalidParams("MTU \(value) is out of range (\(mtuRange.lowerBound)-\(mtuRange.upperBound))")
        }
        return value
    }

    /// Parses a peer's underlay address.
    /// - Parameter text: dotted-quad IPv4 or IPv6 text.
    /// - Returns: the address.
    /// - Throws: `invalidParams` when the text is neither, or is an address that cannot be a tunnel endpoint:
    ///   0.0.0.0, 255.255.255.255, `::`, IPv6 multicast or link-local (which would need an interface).
    public static func peerAddress(_ text: String) throws(ControlError) -> UnderlayAddress {
        guard let address = UnderlayAddress(text) else {
            throw .invalidParams("\"\(text)\" is not an IPv4 or IPv6 address")
        }
        if let v4 = address.ipv4 {
            guard !v4.isUnspecified, v4.value != 0xFFFF_FFFF else {
                throw .invalidParams("\(address) cannot be a peer address")
            }
        } else if !address.isUnicast {
            throw .invalidParams("\(address) cannot be a peer address (IPv6 multicast, link-local or unspecified)")
        }
        return address
    }

    /// Parses a MAC address.
    /// - Parameter text: `aa:bb:cc:dd:ee:ff`.
    /// - Returns: the address.
    /// - Throws: `invalidParams` when the text is not a MAC address.
    public static func mac(_ text: String) throws(ControlError) -> MACAddress {
        guard let mac = MACAddress(text) else {
            throw .invalidParams("\"\(text)\" is not a MAC address")
        }
        return mac
    }
}

/// A Linux network interface name, checked the way the kernel's `dev_valid_name` checks it: 1 to 15 bytes
/// (`IFNAMSIZ` is 16 with the terminating NUL), not `.` or `..`, and no `/`, `:` or whitespace. Control characters
/// are refused as well, since they cannot be typed back at vxctl.
public struct InterfaceName: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The longest name in bytes (`IFNAMSIZ - 1`).
    public static let maxByteCount = 15

    /// The name.
    public let value: String

    /// `eth0`: the name `attach` gives a container's interface unless told otherwise.
    public static let eth0 = InterfaceName(known: "eth0")

    private init(known name: String) {
        self.value = name
    }

    /// Checks `name`.
    /// - Parameter name: the interface name.
    /// - Throws: `invalidParams` naming the rule it breaks.
    public init(validating name: String) throws(ControlError) {
        let byteCount = name.utf8.count
        guard byteCount > 0 else { throw .invalidParams("interface name must not be empty") }
        guard byteCount <= InterfaceName.maxByteCount else {
            throw .invalidParams(
                "interface name \"\(name)\" is too long (\(byteCount) bytes, at most \(InterfaceName.maxByteCount))"
            )
        }
        guard name != ".", name != ".." else {
            throw .invalidParams("interface name \"\(name)\" is reserved")
        }
        for scalar in name.unicodeScalars {
            if scalar == "/" || scalar == ":" {
                throw .invalidParams("interface name \"\(name)\" must not contain '\(scalar)'")
            }
            if scalar.properties.isWhitespace {
                throw .invalidParams("interface name \"\(name)\" must not contain whitespace")
            }
            if scalar.properties.generalCategory == .control {
                throw .invalidParams("interface name \"\(name.debugDescription)\" must not contain control characters")
            }
        }
        self.value = name
    }

    /// Decodes and checks a name.
    /// - Parameter decoder: the decoder positioned at a JSON string.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(validating: text)
    }

    /// Encodes the name as a JSON string.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }

    public var description: String { value }

    public static func < (lhs: InterfaceName, rhs: InterfaceName) -> Bool { lhs.value < rhs.value }
}

/// How the GRE key field carries the VNI of a GRE peer.
public enum GREKeyMode: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// The 32-bit key is the VNI (key = VNI).
    case vni
    /// NVGRE (RFC 7637): the key's high 24 bits are the VSID (= VNI), the low 8 bits the FlowID.
    case nvgre
    /// No key field: the peer carries a single VNI.
    case none

    /// Parses the wire and command-line spelling.
    /// - Parameter text: `vni`, `nvgre` or `none`.
    /// - Throws: `invalidParams` for anything else.
    public init(validating text: String) throws(ControlError) {
        guard let mode = GREKeyMode(rawValue: text) else {
            throw .invalidParams("unknown GRE key mode \"\(text)\" (expected vni, nvgre or none)")
        }
        self = mode
    }

    public var description: String { rawValue }
}

/// A peer's tunnel encapsulation, with the GRE key mode where it applies.
public enum PeerEncapsulation: Hashable, Sendable, CustomStringConvertible {
    /// VXLAN over UDP port 4789 (RFC 7348).
    case vxlan
    /// GRE (RFC 2784/2890) with the given key mode.
    case gre(key: GREKeyMode)

    /// The wire spelling of the encapsulation: `vxlan` or `gre`.
    public var name: String {
        switch self {
        case .vxlan: "vxlan"
        case .gre: "gre"
        }
    }

    /// The GRE key mode, or nil for VXLAN.
    public var greKey: GREKeyMode? {
        switch self {
        case .vxlan: nil
        case .gre(let key): key
        }
    }

    /// Combines the separate `encap` and `greKey` values of a request or command line, applying the defaults
    /// (VXLAN; key mode `vni` for GRE).
    /// - Parameters:
    ///   - encap: `vxlan`, `gre`, or nil for VXLAN.
    ///   - greKey: `vni`, `nvgre`, `none`, or nil for `vni`; only allowed with GRE.
    /// - Throws: `invalidParams` for an unknown spelling or a GRE key given for VXLAN.
    public init(encap: String?, greKey: String?) throws(ControlError) {
        switch encap ?? "vxlan" {
        case "vxlan":
            if let greKey {
                throw .invalidParams("GRE key mode \"\(greKey)\" applies only to GRE peers, not vxlan")
            }
            self = .vxlan
        case "gre":
            self = .gre(key: try greKey.map { text throws(ControlError) in try GREKeyMode(validating: text) } ?? .vni)
        case let other:
            throw .invalidParams("unknown encapsulation \"\(other)\" (expected vxlan or gre)")
        }
    }

    /// `vxlan`, `gre key=vni`, `gre key=nvgre` or `gre key=none`.
    public var description: String {
        switch self {
        case .vxlan: "vxlan"
        case .gre(let key): "gre key=\(key)"
        }
    }
}

// Coding helpers for the VXPacket types, which are not Codable themselves (VXPacket imports nothing but the
// standard library). On the wire a VNI is a number, an IPv4 address and a MAC are strings.
extension KeyedDecodingContainer {
    /// Decodes an integer member with a message that names it; JSONDecoder itself reports `1.5` for an `Int` as
    /// "The given data was not valid JSON." without the member's name.
    func decodeInteger(forKey key: Key) throws -> Int {
        try integer(try decode(JSONValue.self, forKey: key), key)
    }

    /// As `decodeInteger(forKey:)`; nil when the member is missing or null.
    func decodeIntegerIfPresent(forKey key: Key) throws -> Int? {
        guard let json = try decodeIfPresent(JSONValue.self, forKey: key), json != .null else { return nil }
        return try integer(json, key)
    }

    private func integer(_ json: JSONValue, _ key: Key) throws(ControlError) -> Int {
        switch json {
        case .integer(let value):
            return Int(value)
        case .unsigned(let value):
            throw ControlError.invalidParams("parameter \"\(key.stringValue)\" is too large (\(value))")
        case .null:
            throw ControlError.invalidParams("parameter \"\(key.stringValue)\" must be an integer, not null")
        default:
            throw ControlError.invalidParams("parameter \"\(key.stringValue)\" must be an integer")
        }
    }

    func decodeVNI(forKey key: Key) throws -> VNI {
        try ControlValidation.vni(try decodeInteger(forKey: key))
    }

    func decodeVNIIfPresent(forKey key: Key) throws -> VNI? {
        guard let value = try decodeIntegerIfPresent(forKey: key) else { return nil }
        return try ControlValidation.vni(value)
    }

    func decodeVNIs(forKey key: Key) throws -> [VNI] {
        try decode([Int].self, forKey: key).map { value throws(ControlError) in try ControlValidation.vni(value) }
    }

    func decodeIPv4(forKey key: Key) throws -> IPv4Address {
        let text = try decode(String.self, forKey: key)
        guard let address = IPv4Address(text) else {
            throw ControlError.invalidParams("\"\(text)\" is not an IPv4 address")
        }
        return address
    }

    func decodeUnderlayAddress(forKey key: Key) throws -> UnderlayAddress {
        let text = try decode(String.self, forKey: key)
        guard let address = UnderlayAddress(text) else {
            throw ControlError.invalidParams("\"\(text)\" is not an IPv4 or IPv6 address")
        }
        return address
    }

    func decodeIPv4IfPresent(forKey key: Key) throws -> IPv4Address? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        return try decodeIPv4(forKey: key)
    }

    func decodeMAC(forKey key: Key) throws -> MACAddress {
        try ControlValidation.mac(try decode(String.self, forKey: key))
    }
}

extension KeyedEncodingContainer {
    mutating func encode(_ vni: VNI, forKey key: Key) throws {
        try encode(Int(vni.value), forKey: key)
    }

    mutating func encode(_ vnis: [VNI], forKey key: Key) throws {
        try encode(vnis.map { Int($0.value) }, forKey: key)
    }

    mutating func encode(_ address: IPv4Address, forKey key: Key) throws {
        try encode(address.description, forKey: key)
    }

    mutating func encode(_ address: UnderlayAddress, forKey key: Key) throws {
        try encode(address.description, forKey: key)
    }

    mutating func encode(_ mac: MACAddress, forKey key: Key) throws {
        try encode(mac.description, forKey: key)
    }
}
