import VXPacket

/// Params of `add-port`: `{"name": "tap0", "vni": 100, "mtu": 1450}`.
public struct AddPortParams: Codable, Sendable, Hashable {
    /// The TAP interface to create or attach.
    public var name: InterfaceName
    /// The VNI the port belongs to.
    public var vni: VNI
    /// The port's MTU, within `ControlValidation.mtuRange`; nil lets the daemon choose (1450 for VXLAN).
    public var mtu: Int?

    /// - Parameters:
    ///   - name: the interface name.
    ///   - vni: the VNI.
    ///   - mtu: the MTU, or nil for the daemon's default.
    /// - Throws: `invalidParams` when `mtu` is out of range.
    public init(name: InterfaceName, vni: VNI, mtu: Int? = nil) throws(ControlError) {
        self.name = name
        self.vni = vni
        self.mtu = try mtu.map { value throws(ControlError) in try ControlValidation.mtu(value) }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name, vni, mtu
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            name: try container.decode(InterfaceName.self, forKey: .name),
            vni: try container.decodeVNI(forKey: .vni),
            mtu: try container.decodeIntegerIfPresent(forKey: .mtu)
        )
    }

    /// Encodes the params; `mtu` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(vni, forKey: .vni)
        try container.encodeIfPresent(mtu, forKey: .mtu)
    }
}

/// Params of `del-port`: `{"name": "tap0"}`.
public struct DeletePortParams: Codable, Sendable, Hashable {
    /// The port to remove.
    public var name: InterfaceName

    /// - Parameter name: the port to remove.
    public init(name: InterfaceName) {
        self.name = name
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try container.decode(InterfaceName.self, forKey: .name))
    }

    /// Encodes the params.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
    }
}

/// A port as `add-port` and `show` report it: `{"name": "tap0", "vni": 100, "mtu": 1450, "ifindex": 7}`, and for a
/// port the switch stopped reading because its descriptor failed, `"failure": "EBADFD (File descriptor in bad
/// state) on read"`.
public struct PortInfo: Codable, Sendable, Hashable {
    /// The interface name.
    public var name: InterfaceName
    /// The port's VNI.
    public var vni: VNI
    /// The MTU in effect.
    public var mtu: Int
    /// The kernel's interface index, or nil for a port that has none (an in-memory test port).
    public var ifindex: Int?
    /// Why the switch stopped reading the port (its TAP was deleted underneath, or its namespace destroyed), e.g.
    /// `EBADFD (File descriptor in bad state) on read`; nil while it works. A failed port switches nothing until
    /// it is removed (`del-port`) and added again.
    public var failure: String?
    /// Where the port's interface is when it is not in the switch's namespace under the port's name: `eth0 in netns
    /// c1` for a port `attach` made, or one a user moved into a container by hand (MovedPorts.swift); nil otherwise.
    public var location: String?

    /// - Parameters:
    ///   - name: the interface name.
    ///   - vni: the VNI.
    ///   - mtu: the MTU in effect.
    ///   - ifindex: the kernel interface index, if any.
    ///   - failure: why the port failed, if it did.
    ///   - location: where its interface is, when not at home under its name.
    public init(
        name: InterfaceName, vni: VNI, mtu: Int, ifindex: Int? = nil, failure: String? = nil, location: String? = nil
    ) {
        self.name = name
        self.vni = vni
        self.mtu = mtu
        self.ifindex = ifindex
        self.failure = failure
        self.location = location
    }

    private enum CodingKeys: String, CodingKey {
        case name, vni, mtu, ifindex, failure, location
    }

    /// Decodes a port.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decode(InterfaceName.self, forKey: .name),
            vni: try container.decodeVNI(forKey: .vni),
            mtu: try container.decode(Int.self, forKey: .mtu),
            ifindex: try container.decodeIfPresent(Int.self, forKey: .ifindex),
            failure: try container.decodeIfPresent(String.self, forKey: .failure),
            location: try container.decodeIfPresent(String.self, forKey: .location)
        )
    }

    /// Encodes the port; `ifindex`, `failure` and `location` are left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(vni, forKey: .vni)
        try container.encode(mtu, forKey: .mtu)
        try container.encodeIfPresent(ifindex, forKey: .ifindex)
        try container.encodeIfPresent(failure, forKey: .failure)
        try container.encodeIfPresent(location, forKey: .location)
    }
}
