import VXPacket

// The values the network methods carry (network-create, attach, detach, leases): subnets and interface addresses
// in CIDR notation, address ranges, a reference to a container's network namespace, and the checks on the names
// they contain. As in Validation.swift, every check throws `invalidParams` with a sentence that names the value,
// and vxctl runs the same checks on its arguments.

extension ControlValidation {
    /// The longest network name, in characters.
    public static let maxNetworkNameLength = 32

    /// The longest network namespace name in bytes: a file name under `/run/netns` (`NAME_MAX`).
    public static let maxNamespaceNameByteCount = 255

    /// The longest Docker container reference accepted, in bytes after a leading `/`: the same limit as VXDocker's
    /// `ContainerReference.maxLength` (VXControl cannot import VXDocker; ContainerReferenceAgreementTests in
    /// VXDaemonTests hold the two checks to one answer). A full id is 64 bytes; Docker sets no limit on names.
    public static let maxDockerReferenceByteCount = 1024

    /// Checks a network name: 1 to 32 characters from `A-Z a-z 0-9 _ . -`, not starting with `-` (it would read as
    /// an option on vxctl's command line), and not `.` or `..`.
    /// - Parameter name: the name as given.
    /// - Returns: `name`.
    /// - Throws: `invalidParams` naming the rule it breaks.
    public static func networkName(_ name: String) throws(ControlError) -> String {
        guard !name.isEmpty else { throw .invalidParams("network name must not be empty") }
        guard name.count <= maxNetworkNameLength else {
            throw .invalidParams(
                "network name \"\(name)\" is too long (\(name.count) characters, at most \(maxNetworkNameLength))"
            )
        }
        guard name.unicodeScalars.allSatisfy(isNameScalar) else {
            throw .invalidParams(
                "network name \(name.debugDescription) may contain only letters, digits, '_', '.' and '-'"
            )
        }
        guard name.first != "-" else { throw .invalidParams("network name \"\(name)\" must not start with '-'") }
        guard name != ".", name != ".." else { throw .invalidParams("network name \"\(name)\" is reserved") }
        return name
    }

    /// Checks the name of a network namespace under `/run/netns` (as `ip netns add NAME` creates it): 1 to 255
    /// bytes, no `/` or NUL, not `.` or `..`.
    /// - Parameter name: the namespace name, not a path.
    /// - Returns: `name`.
    /// - Throws: `invalidParams` naming the rule it breaks.
    public static func namespaceName(_ name: String) throws(ControlError) -> String {
        guard !name.isEmpty else { throw .invalidParams("namespace name must not be empty") }
        guard name.utf8.count <= maxNamespaceNameByteCount else {
            throw .invalidParams(
                "namespace name is too long (\(name.utf8.count) bytes, at most \(maxNamespaceNameByteCount))"
            )
        }
        guard !name.contains("/") else {
            throw .invalidParams("namespace name \"\(name)\" must not contain '/' (give a name under /run/netns)")
        }
        guard !name.unicodeScalars.contains("\0") else {
            throw .invalidParams("namespace name \(name.debugDescription) must not contain NUL")
        }
        guard name != ".", name != ".." else { throw .invalidParams("namespace name \"\(name)\" is reserved") }
        return name
    }

    /// Checks a process id whose network namespace is meant (`/proc/PID/ns/net`).
    /// - Parameter value: the PID.
    /// - Returns: the PID.
    /// - Throws: `invalidParams`: `PID 0 is out of range (1-2147483647)`.
    public static func pid(_ value: Int) throws(ControlError) -> Int32 {
        guard value > 0, let pid = Int32(exactly: value) else {
            throw .invalidParams("PID \(value) is out of range (1-\(Int32.max))")
        }
        return pid
    }

    /// Parses a process id from text, as vxctl receives it.
    /// - Parameter text: decimal digits.
    /// - Returns: the PID.
    /// - Throws: `invalidParams` when the text is not a number or is out of range.
    public static func pid(_ text: String) throws(ControlError) -> Int32 {
        guard let value = Int(text) else { throw .invalidParams("PID \"\(text)\" is not a number") }
        return try pid(value)
    }

    /// Checks a Docker container name, id or id prefix with the rule vxswitchd's Docker client applies before the
    /// reference goes into a request path (VXDocker's `ContainerReference`): an optional leading `/` (as
    /// `docker inspect` shows names), then 1 to 1024 bytes of `[A-Za-z0-9][A-Za-z0-9_.-]*`. The two checks accept
    /// exactly the same set, so nothing the switch could look up is refused here and nothing refused there passes.
    /// - Parameter reference: the name or id as given.
    /// - Returns: the reference without the leading `/` (`/web` and `web` name the same container, so `detach`
    ///   matches either).
    /// - Throws: `invalidParams` naming the rule it breaks.
    public static func dockerContainer(_ reference: String) throws(ControlError) -> String {
        let trimmed = reference.hasPrefix("/") ? String(reference.dropFirst()) : reference
        guard !trimmed.isEmpty else { throw .invalidParams("Docker container name must not be empty") }
        guard trimmed.utf8.count <= maxDockerReferenceByteCount else {
            throw .invalidParams(
                "Docker container name is too long (\(trimmed.utf8.count) bytes, at most \(maxDockerReferenceByteCount))"
            )
        }
        guard trimmed.unicodeScalars.allSatisfy(isNameScalar),
            let first = trimmed.unicodeScalars.first, isLetter(first) || isDigit(first)
        else {
            throw .invalidParams(
                "Docker container \(reference.debugDescription) is not a container name or id "
                    + "(/?[A-Za-z0-9][A-Za-z0-9_.-]*)"
            )
        }
        return trimmed
    }

    /// Checks the MAC address to give an interface: unicast (the group bit clear) and not all zeros.
    /// - Parameter mac: the address.
    /// - Returns: `mac`.
    /// - Throws: `invalidParams` for a multicast or zero address.
    public static func interfaceMAC(_ mac: MACAddress) throws(ControlError) -> MACAddress {
        guard !mac.isMulticast else {
            throw .invalidParams("MAC \(mac) is a multicast address (an interface needs a unicast one)")
        }
        guard !mac.isZero else { throw .invalidParams("MAC \(mac) cannot be an interface address") }
        return mac
    }

    /// Parses an IPv4 address given as a gateway: not 0.0.0.0, 255.255.255.255 or multicast.
    /// - Parameter text: dotted-quad text.
    /// - Returns: the address.
    /// - Throws: `invalidParams` when the text is not a usable gateway address.
    public static func gatewayAddress(_ text: String) throws(ControlError) -> IPv4Address {
        guard let address = IPv4Address(text) else { throw .invalidParams("\"\(text)\" is not an IPv4 address") }
        return try gatewayAddress(address)
    }

    /// Checks a gateway address: not 0.0.0.0, 255.255.255.255 or multicast.
    /// - Parameter address: the address.
    /// - Returns: `address`.
    /// - Throws: `invalidParams` when it cannot be a gateway.
    public static func gatewayAddress(_ address: IPv4Address) throws(ControlError) -> IPv4Address {
        guard !address.isUnspecified, address.value != 0xFFFF_FFFF, !address.isMulticast else {
            throw .invalidParams("\(address) cannot be a gateway")
        }
        return address
    }

    private static func isNameScalar(_ scalar: Unicode.Scalar) -> Bool {
        isLetter(scalar) || isDigit(scalar) || scalar == "_" || scalar == "." || scalar == "-"
    }

    private static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }
}

/// An IPv4 address with a prefix length, in CIDR notation: a subnet (`10.0.0.0/24`, host bits zero) or an
/// interface address (`10.0.0.5/24`). On the wire it is that string.
///
/// Which of the two a value is depends on where it was made: `init(subnet:)` insists on the network address,
/// `init(interfaceAddress:)` on a host address; `init(parsing:)` and decoding check only the syntax and the prefix
/// length, and the params that carry one apply the stricter check themselves.
public struct IPv4CIDR: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The longest prefix.
    public static let maxPrefixLength = 32

    /// The address as written: the network address for a subnet, the host's own address for an interface.
    public let address: IPv4Address
    /// The number of leading network bits, 0 ... 32.
    public let prefixLength: Int

    /// - Parameters:
    ///   - address: the address.
    ///   - prefixLength: 0 ... 32.
    /// - Throws: `invalidParams` when `prefixLength` is out of range.
    public init(address: IPv4Address, prefixLength: Int) throws(ControlError) {
        guard (0...IPv4CIDR.maxPrefixLength).contains(prefixLength) else {
            throw .invalidParams(
                "prefix length \(prefixLength) of \(address)/\(prefixLength) is out of range "
                    + "(0-\(IPv4CIDR.maxPrefixLength))"
            )
        }
        self.init(checkedAddress: address, prefixLength: prefixLength)
    }

    private init(checkedAddress address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n` with no check on the host bits.
    /// - Parameter text: the CIDR text.
    /// - Throws: `invalidParams` when the text is not an address and a prefix length of 0 to 32.
    public init(parsing text: String) throws(ControlError) {
        try self.init(text, example: "10.0.0.0/24", noun: "an IPv4 address with a prefix length")
    }

    /// Parses a subnet, which must be written with its network address (`10.0.0.0/24`, not `10.0.0.1/24`).
    /// - Parameter text: the CIDR text.
    /// - Throws: `invalidParams`, e.g. `10.0.0.1/24 is not a network address (did you mean 10.0.0.0/24?)`.
    public init(subnet text: String) throws(ControlError) {
        try self.init(text, example: "10.0.0.0/24", noun: "an IPv4 subnet")
        try checkNetworkAddress()
    }

    /// Parses an interface address (`10.0.0.5/24`). The host bits may be anything but all zeros or all ones when
    /// the prefix leaves at least two of them (/30 and shorter): those are the network and broadcast addresses.
    /// - Parameter text: the CIDR text.
    /// - Throws: `invalidParams` when the text is not an address with a prefix, or names the network or broadcast
    ///   address of its subnet.
    public init(interfaceAddress text: String) throws(ControlError) {
        try self.init(text, example: "10.0.0.5/24", noun: "an IPv4 address with a prefix length")
        try checkHostAddress()
    }

    private init(_ text: String, example: String, noun: String) throws(ControlError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]), (1...2).contains(parts[1].count),
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = Int(parts[1])
        else {
            throw .invalidParams("\(text.debugDescription) is not \(noun) (e.g. \(example))")
        }
        try self.init(address: address, prefixLength: length)
    }

    /// Throws unless `address` is the network address.
    /// - Throws: `invalidParams`: `10.0.0.1/24 is not a network address (did you mean 10.0.0.0/24?)`.
    public func checkNetworkAddress() throws(ControlError) {
        guard address == network else {
            throw .invalidParams("\(self) is not a network address (did you mean \(network)/\(prefixLength)?)")
        }
    }

    /// Throws when `address` is the network or broadcast address of a subnet that has both (/30 and shorter).
    /// - Throws: `invalidParams`: `10.0.0.0/24 is the network address of its subnet, not a host address`.
    public func checkHostAddress() throws(ControlError) {
        guard prefixLength <= 30 else { return }
        if address == network {
            throw .invalidParams("\(self) is the network address of its subnet, not a host address")
        }
        if address == broadcast {
            throw .invalidParams("\(self) is the broadcast address of its subnet, not a host address")
        }
    }

    private var maskValue: UInt32 { prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength) }

    /// The netmask (`255.255.255.0` for /24).
    public var mask: IPv4Address { IPv4Address(value: maskValue) }

    /// The network address: `address` with the host bits cleared.
    public var network: IPv4Address { IPv4Address(value: address.value & maskValue) }

    /// The directed broadcast address: `address` with the host bits set.
    public var broadcast: IPv4Address { IPv4Address(value: address.value | ~maskValue) }

    /// The subnet `address` belongs to (`10.0.0.0/24` for `10.0.0.5/24`).
    public var subnet: IPv4CIDR { IPv4CIDR(checkedAddress: network, prefixLength: prefixLength) }

    /// True when `address` lies in the subnet (its network and broadcast addresses included).
    /// - Parameter other: the address.
    /// - Returns: whether its network bits match.
    public func contains(_ other: IPv4Address) -> Bool {
        other.value & maskValue == address.value & maskValue
    }

    /// True when `other` lies in the subnet and may be given to a host: not the network or broadcast address of
    /// a /30 or shorter (a /31 has two host addresses and no broadcast, RFC 3021; a /32 is one host).
    /// - Parameter other: the address.
    /// - Returns: whether a host may use it.
    public func containsHost(_ other: IPv4Address) -> Bool {
        guard contains(other) else { return false }
        return prefixLength > 30 || (other != network && other != broadcast)
    }

    /// The addresses a host may use, in order (see `containsHost(_:)`).
    public var hostRange: IPv4Range {
        guard prefixLength <= 30 else { return IPv4Range(checkedFirst: network, last: broadcast) }
        return IPv4Range(
            checkedFirst: IPv4Address(value: network.value + 1),
            last: IPv4Address(value: broadcast.value - 1)
        )
    }

    /// Decodes the string form; only the syntax and the prefix length are checked.
    /// - Parameter decoder: the decoder positioned at the string.
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes `a.b.c.d/n`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// `10.0.0.5/24`.
    public var description: String { "\(address)/\(prefixLength)" }
}

/// An inclusive range of IPv4 addresses, written `10.0.0.100-10.0.0.199` (a single address is `a-a`). On the wire
/// it is that string.
public struct IPv4Range: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The lowest address.
    public let first: IPv4Address
    /// The highest address.
    public let last: IPv4Address

    /// - Parameters:
    ///   - first: the lowest address.
    ///   - last: the highest address.
    /// - Throws: `invalidParams` when `first` comes after `last`.
    public init(first: IPv4Address, last: IPv4Address) throws(ControlError) {
        guard first <= last else {
            throw .invalidParams("range \(first)-\(last) is reversed (\(first) comes after \(last))")
        }
        self.init(checkedFirst: first, last: last)
    }

    /// For ranges known to be in order; `first > last` is a programmer error.
    init(checkedFirst first: IPv4Address, last: IPv4Address) {
        precondition(first <= last, "IPv4Range with first after last")
        self.first = first
        self.last = last
    }

    /// Parses `FIRST-LAST`.
    /// - Parameter text: two dotted quads joined by `-`.
    /// - Throws: `invalidParams` when the text is not a range, or is reversed.
    public init(parsing text: String) throws(ControlError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = IPv4Address(parts[0]), let last = IPv4Address(parts[1]) else {
            throw .invalidParams("\(text.debugDescription) is not an address range (e.g. 10.0.0.100-10.0.0.199)")
        }
        try self.init(first: first, last: last)
    }

    /// The addresses, as `LeaseTable(range:)` takes them. (Not a sequence: `IPv4Address` is not `Strideable`; loop
    /// over `first.value...last.value`.)
    public var addresses: ClosedRange<IPv4Address> { first...last }

    /// How many addresses the range holds (1 ... 2^32).
    public var count: Int { Int(last.value - first.value) + 1 }

    /// True when `address` is in the range.
    /// - Parameter address: the address.
    /// - Returns: `first <= address <= last`.
    public func contains(_ address: IPv4Address) -> Bool { first <= address && address <= last }

    /// Decodes and checks the string form.
    /// - Parameter decoder: the decoder positioned at the string.
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes `FIRST-LAST`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// `10.0.0.100-10.0.0.199`.
    public var description: String { "\(first)-\(last)" }
}

/// The container whose network namespace an interface goes into: a named namespace (`ip netns`), a process, or a
/// Docker container, which vxswitchd resolves to its namespace.
///
/// On the wire it is exactly one of three members, `{"netns": "c1"}`, `{"pid": 4242}` or `{"docker": "web"}`. In
/// `attach` and `detach` params those members sit directly in the params object; in `AttachmentInfo` they form
/// the `container` object.
public enum ContainerReference: Hashable, Sendable, CustomStringConvertible, Codable {
    /// A namespace under `/run/netns`, by name.
    case netns(String)
    /// The namespace of a process: `/proc/PID/ns/net`.
    case pid(Int32)
    /// The namespace of a Docker container's main process, by container name or id.
    case docker(String)

    /// Combines the three optional members of a request, or the three options of vxctl, and checks the one given.
    /// - Parameters:
    ///   - netns: a namespace name, or nil.
    ///   - pid: a process id, or nil.
    ///   - docker: a container name or id, or nil.
    /// - Throws: `invalidParams` unless exactly one is given and it is valid:
    ///   `give exactly one of netns, pid or docker (got netns and pid)`.
    public init(netns: String?, pid: Int?, docker: String?) throws(ControlError) {
        switch (netns, pid, docker) {
        case (let netns?, nil, nil): self = .netns(try ControlValidation.namespaceName(netns))
        case (nil, let pid?, nil): self = .pid(try ControlValidation.pid(pid))
        case (nil, nil, let docker?): self = .docker(try ControlValidation.dockerContainer(docker))
        case (nil, nil, nil): throw .invalidParams("give exactly one of netns, pid or docker")
        default:
            let given = [netns.map { _ in "netns" }, pid.map { _ in "pid" }, docker.map { _ in "docker" }]
                .compactMap(\.self)
            let got = "\(given.dropLast().joined(separator: ", ")) and \(given[given.count - 1])"
            throw .invalidParams("give exactly one of netns, pid or docker (got \(got))")
        }
    }

    /// The wire members, also used by `AttachParams` and `DetachParams`, which carry them flattened.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case netns, pid, docker
    }

    /// Decodes the `netns`, `pid` and `docker` members of the current object; other members are left to the
    /// caller (`AttachParams` rejects unknown ones, a result ignores them).
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            netns: try container.decodeIfPresent(String.self, forKey: .netns),
            pid: try container.decodeIntegerIfPresent(forKey: .pid),
            docker: try container.decodeIfPresent(String.self, forKey: .docker)
        )
    }

    /// Encodes the one member into the current object.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .netns(let name): try container.encode(name, forKey: .netns)
        case .pid(let pid): try container.encode(Int(pid), forKey: .pid)
        case .docker(let reference): try container.encode(reference, forKey: .docker)
        }
    }

    /// `netns c1`, `pid 4242` or `docker web`.
    public var description: String {
        switch self {
        case .netns(let name): "netns \(name)"
        case .pid(let pid): "pid \(pid)"
        case .docker(let reference): "docker \(reference)"
        }
    }
}

/// The IPv4 address `attach` gives the container's interface: one picked from the network's range, or a given
/// one. On the wire it is `"auto"` or `"10.0.0.5/24"`.
public enum AttachAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    /// The next free address of the network's range, with the network's prefix length.
    case auto
    /// This address and prefix (host bits are the interface's own address).
    case address(IPv4CIDR)

    /// Parses `auto` or an interface address.
    /// - Parameter text: `auto` or `a.b.c.d/n`.
    /// - Throws: `invalidParams` for anything else, or for the network or broadcast address of its subnet.
    public init(parsing text: String) throws(ControlError) {
        if text == "auto" {
            self = .auto
        } else if text.contains("/") {
            self = .address(try IPv4CIDR(interfaceAddress: text))
        } else {
            throw .invalidParams(
                "ip \(text.debugDescription) is neither \"auto\" nor an address with a prefix length (e.g. 10.0.0.5/24)"
            )
        }
    }

    /// Decodes and checks the string form.
    /// - Parameter decoder: the decoder positioned at the string.
    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes `auto` or `a.b.c.d/n`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// `auto` or `10.0.0.5/24`.
    public var description: String {
        switch self {
        case .auto: "auto"
        case .address(let cidr): cidr.description
        }
    }
}

/// How an address in `leases` was assigned.
public enum LeaseKind: String, Hashable, Sendable, CaseIterable, CustomStringConvertible, Codable {
    /// By vxswitchd at `attach` (`--ip auto` or a given address), or a host reservation; it does not expire.
    case `static`
    /// By vxswitchd's DHCP server to a client, until it expires.
    case dhcp

    /// Parses the wire spelling.
    /// - Parameter text: `static` or `dhcp`.
    /// - Throws: `invalidParams` for anything else.
    public init(validating text: String) throws(ControlError) {
        guard let kind = LeaseKind(rawValue: text) else {
            throw .invalidParams("unknown lease kind \"\(text)\" (expected static or dhcp)")
        }
        self = kind
    }

    /// Decodes and checks the wire spelling.
    /// - Parameter decoder: the decoder positioned at the string.
    public init(from decoder: any Decoder) throws {
        try self.init(validating: try decoder.singleValueContainer().decode(String.self))
    }

    /// Encodes the wire spelling.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
}
