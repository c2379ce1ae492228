import VXPacket

/// Params of `network-create`:
/// `{"name": "net1", "vni": 100, "subnet": "10.0.0.0/24", "range": "10.0.0.100-10.0.0.199", "gateway": "10.0.0.1",
/// "dhcp": true}`.
///
/// A network gives a VNI an IPv4 subnet, so `attach` can address the interfaces it creates and, with `dhcp`,
/// vxswitchd can answer DHCP on them. The checks here need nothing but the params; the daemon still judges the
/// rest (a name or VNI already used by another network).
public struct NetworkCreateParams: Codable, Sendable, Hashable {
    /// The network's name: 1 to 32 characters from `A-Z a-z 0-9 _ . -`, not starting with `-`.
    public var name: String
    /// The VNI the network's ports are on.
    public var vni: VNI
    /// The subnet, written with its network address; /30 or shorter.
    public var subnet: IPv4CIDR
    /// The addresses `attach --ip auto` and the DHCP server hand out, inside the subnet and excluding its network
    /// and broadcast addresses; nil for all of the subnet's host addresses (see `effectiveRange`).
    public var range: IPv4Range?
    /// The default gateway announced to containers (by `attach` and by DHCP), a host address of the subnet; it is
    /// never handed out.
    public var gateway: IPv4Address?
    /// Whether vxswitchd answers DHCP on the network's ports.
    public var dhcp: Bool

    /// - Parameters:
    ///   - name: the network's name.
    ///   - vni: its VNI.
    ///   - subnet: its subnet (network address, /30 or shorter).
    ///   - range: the addresses to hand out, or nil for the whole subnet.
    ///   - gateway: the gateway, or nil for none.
    ///   - dhcp: whether to serve DHCP.
    /// - Throws: `invalidParams` when the name is invalid, the subnet is not a network address or is longer than
    ///   /30, the range leaves the subnet's host addresses, or the gateway is not a host address of the subnet.
    public init(
        name: String,
        vni: VNI,
        subnet: IPv4CIDR,
        range: IPv4Range? = nil,
        gateway: IPv4Address? = nil,
        dhcp: Bool = false
    ) throws(ControlError) {
        self.name = try ControlValidation.networkName(name)
        self.vni = vni
        try subnet.checkNetworkAddress()
        // VXDHCP's LeaseTable takes /30 and shorter: a /31 or /32 has no address to spare for a gateway or a pool.
        guard subnet.prefixLength <= NetworkCreateParams.maxPrefixLength else {
            throw .invalidParams(
                "subnet \(subnet) is too small for a network (at most /\(NetworkCreateParams.maxPrefixLength))"
            )
        }
        self.subnet = subnet
        if let range {
            guard subnet.contains(range.first), subnet.contains(range.last) else {
                throw .invalidParams("range \(range) is not inside subnet \(subnet)")
            }
            guard range.first != subnet.network else {
                throw .invalidParams("range \(range) includes the network address of subnet \(subnet)")
            }
            guard range.last != subnet.broadcast else {
                throw .invalidParams("range \(range) includes the broadcast address of subnet \(subnet)")
            }
        }
        self.range = range
        if let gateway {
            guard subnet.contains(gateway) else {
                throw .invalidParams("gateway \(gateway) is not inside subnet \(subnet)")
            }
            guard subnet.containsHost(gateway) else {
                let which = gateway == subnet.network ? "network" : "broadcast"
                throw .invalidParams("gateway \(gateway) is the \(which) address of subnet \(subnet)")
            }
            if let range, range.count == 1, range.first == gateway {
                throw .invalidParams("range \(range) holds nothing but the gateway")
            }
        }
        self.gateway = gateway
        self.dhcp = dhcp
    }

    /// The longest subnet prefix a network may have.
    public static let maxPrefixLength = 30

    /// The range in effect, as `NetworkInfo.range` reports it: `range` when given; otherwise the subnet's host
    /// addresses, less the gateway when it is the first or last of them. (A gateway inside the range is still never
    /// handed out: the daemon excludes it from allocation.)
    public var effectiveRange: IPv4Range {
        if let range { return range }
        let hosts = subnet.hostRange
        guard let gateway, hosts.count > 1 else { return hosts }
        if gateway == hosts.first {
            return IPv4Range(checkedFirst: IPv4Address(value: gateway.value + 1), last: hosts.last)
        }
        if gateway == hosts.last {
            return IPv4Range(checkedFirst: hosts.first, last: IPv4Address(value: gateway.value - 1))
        }
        return hosts
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name, vni, subnet, range, gateway, dhcp
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            name: try container.decode(String.self, forKey: .name),
            vni: try container.decodeVNI(forKey: .vni),
            subnet: try IPv4CIDR(subnet: try container.decode(String.self, forKey: .subnet)),
            range: try container.decodeIfPresent(String.self, forKey: .range).map {
                text throws(ControlError) in try IPv4Range(parsing: text)
            },
            gateway: try container.decodeIPv4IfPresent(forKey: .gateway),
            dhcp: try container.decodeIfPresent(Bool.self, forKey: .dhcp) ?? false
        )
    }

    /// Encodes the params; `range` and `gateway` are left out when nil, `dhcp` is always written.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(vni, forKey: .vni)
        try container.encode(subnet, forKey: .subnet)
        try container.encodeIfPresent(range, forKey: .range)
        if let gateway { try container.encode(gateway, forKey: .gateway) }
        try container.encode(dhcp, forKey: .dhcp)
    }
}

/// A network as `network-create` and `network-ls` report it:
/// `{"name": "net1", "vni": 100, "subnet": "10.0.0.0/24", "range": "10.0.0.2-10.0.0.254", "gateway": "10.0.0.1",
/// "dhcp": false, "ports": ["vx3f9a1c2b"], "leases": 1}` (no `gateway` when there is none).
public struct NetworkInfo: Codable, Sendable, Hashable {
    /// The network's name.
    public var name: String
    /// Its VNI.
    public var vni: VNI
    /// Its subnet.
    public var subnet: IPv4CIDR
    /// The range in effect: as given, or the subnet's host addresses (see `NetworkCreateParams.effectiveRange`).
    public var range: IPv4Range
    /// The gateway, if any.
    public var gateway: IPv4Address?
    /// Whether vxswitchd serves DHCP on the network.
    public var dhcp: Bool
    /// The switch ports `attach` created on this network, by name.
    public var ports: [InterfaceName]
    /// How many addresses are leased (static and DHCP).
    public var leases: Int

    /// - Parameters:
    ///   - name: the network's name.
    ///   - vni: its VNI.
    ///   - subnet: its subnet.
    ///   - range: the range in effect.
    ///   - gateway: the gateway, if any.
    ///   - dhcp: whether DHCP is served.
    ///   - ports: the ports attached to it.
    ///   - leases: the number of leased addresses.
    public init(
        name: String,
        vni: VNI,
        subnet: IPv4CIDR,
        range: IPv4Range,
        gateway: IPv4Address? = nil,
        dhcp: Bool = false,
        ports: [InterfaceName] = [],
        leases: Int = 0
    ) {
        self.name = name
        self.vni = vni
        self.subnet = subnet
        self.range = range
        self.gateway = gateway
        self.dhcp = dhcp
        self.ports = ports
        self.leases = leases
    }

    /// The network as created, before anything is attached to it.
    /// - Parameter params: the validated `network-create` params.
    public init(created params: NetworkCreateParams) {
        self.init(
            name: params.name,
            vni: params.vni,
            subnet: params.subnet,
            range: params.effectiveRange,
            gateway: params.gateway,
            dhcp: params.dhcp
        )
    }

    private enum CodingKeys: String, CodingKey {
        case name, vni, subnet, range, gateway, dhcp, ports, leases
    }

    /// Decodes a network.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decode(String.self, forKey: .name),
            vni: try container.decodeVNI(forKey: .vni),
            subnet: try container.decode(IPv4CIDR.self, forKey: .subnet),
            range: try container.decode(IPv4Range.self, forKey: .range),
            gateway: try container.decodeIPv4IfPresent(forKey: .gateway),
            dhcp: try container.decode(Bool.self, forKey: .dhcp),
            ports: try container.decode([InterfaceName].self, forKey: .ports),
            leases: try container.decode(Int.self, forKey: .leases)
        )
    }

    /// Encodes the network; `gateway` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(vni, forKey: .vni)
        try container.encode(subnet, forKey: .subnet)
        try container.encode(range, forKey: .range)
        if let gateway { try container.encode(gateway, forKey: .gateway) }
        try container.encode(dhcp, forKey: .dhcp)
        try container.encode(ports, forKey: .ports)
        try container.encode(leases, forKey: .leases)
    }
}

/// The result of `network-ls`: `{"networks": [...]}`.
public struct NetworkListResult: Codable, Sendable, Hashable {
    /// The networks, by name.
    public var networks: [NetworkInfo]

    /// - Parameter networks: the networks.
    public init(networks: [NetworkInfo]) {
        self.networks = networks
    }
}

/// Params of `network-rm`: `{"name": "net1"}`.
public struct NetworkRemoveParams: Codable, Sendable, Hashable {
    /// The network to remove.
    public var name: String

    /// - Parameter name: the network to remove.
    /// - Throws: `invalidParams` when the name is not a valid network name.
    public init(name: String) throws(ControlError) {
        self.name = try ControlValidation.networkName(name)
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case name
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(name: try container.decode(String.self, forKey: .name))
    }

    /// Encodes the params.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
    }
}

/// Params of `leases`: `{}` for every network, `{"network": "net1"}` for one.
public struct LeasesParams: Codable, Sendable, Hashable {
    /// The network to list, or nil for all.
    public var network: String?

    /// - Parameter network: the network to list, or nil for all.
    /// - Throws: `invalidParams` when the name is not a valid network name.
    public init(network: String? = nil) throws(ControlError) {
        self.network = try network.map { name throws(ControlError) in try ControlValidation.networkName(name) }
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case network
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(network: try container.decodeIfPresent(String.self, forKey: .network))
    }

    /// Encodes the params; `network` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(network, forKey: .network)
    }
}

/// One leased address:
/// `{"network": "net1", "ip": "10.0.0.100", "owner": "vx3f9a1c2b", "kind": "static"}` or
/// `{"network": "net1", "ip": "10.0.0.101", "owner": "mac:02:42:ac:11:00:02", "kind": "dhcp", "expires": 1767225600}`.
public struct LeaseInfo: Codable, Sendable, Hashable {
    /// The network the address belongs to.
    public var network: String
    /// The address.
    public var ip: IPv4Address
    /// Who holds it, as text: a port name for `attach`'s addresses, a MAC or a client id for DHCP clients.
    public var owner: String
    /// How it was assigned.
    public var kind: LeaseKind
    /// When a DHCP lease ends, in seconds since the Unix epoch; nil for static leases.
    public var expires: Int?

    /// - Parameters:
    ///   - network: the network.
    ///   - ip: the address.
    ///   - owner: who holds it.
    ///   - kind: static or DHCP.
    ///   - expires: the end of a DHCP lease (seconds since the epoch), or nil.
    public init(network: String, ip: IPv4Address, owner: String, kind: LeaseKind, expires: Int? = nil) {
        self.network = network
        self.ip = ip
        self.owner = owner
        self.kind = kind
        self.expires = expires
    }

    private enum CodingKeys: String, CodingKey {
        case network, ip, owner, kind, expires
    }

    /// Decodes a lease.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            network: try container.decode(String.self, forKey: .network),
            ip: try container.decodeIPv4(forKey: .ip),
            owner: try container.decode(String.self, forKey: .owner),
            kind: try container.decode(LeaseKind.self, forKey: .kind),
            expires: try container.decodeIfPresent(Int.self, forKey: .expires)
        )
    }

    /// Encodes the lease; `expires` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(network, forKey: .network)
        try container.encode(ip, forKey: .ip)
        try container.encode(owner, forKey: .owner)
        try container.encode(kind, forKey: .kind)
        try container.encodeIfPresent(expires, forKey: .expires)
    }
}

/// The result of `leases`: `{"leases": [...]}`.
public struct LeasesResult: Codable, Sendable, Hashable {
    /// The leases, by network, then address.
    public var leases: [LeaseInfo]

    /// - Parameter leases: the leases.
    public init(leases: [LeaseInfo]) {
        self.leases = leases
    }
}
