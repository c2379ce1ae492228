import VXPacket

/// Params of `attach`: `{"network": "net1", "netns": "c1", "ifname": "eth0", "ip": "auto", "mtu": 1450}`.
///
/// Creates a switch port on the network's VNI and puts its interface into the container's network namespace,
/// named `ifname`, with the address, MAC, MTU and default route asked for. The container is given by exactly one
/// of `netns`, `pid` or `docker`, directly in the params object.
public struct AttachParams: Codable, Sendable, Hashable {
    /// The network to attach to.
    public var network: String
    /// The container whose namespace receives the interface.
    public var container: ContainerReference
    /// The interface's name inside the container.
    public var ifname: InterfaceName
    /// The interface's address: `.auto` for the next free one of the network's range, a given one, or nil for none
    /// (the container configures itself, e.g. with DHCP).
    public var ip: AttachAddress?
    /// The interface's MAC (unicast, not zero), or nil for one vxswitchd picks.
    public var mac: MACAddress?
    /// The interface's MTU, within `ControlValidation.mtuRange`, or nil for the daemon's default (1450 for VXLAN).
    public var mtu: Int?
    /// The default gateway to route through, or nil for the network's gateway (if it has one). Needs `ip`; with a
    /// given address it must lie in that address's subnet.
    public var gateway: IPv4Address?

    /// - Parameters:
    ///   - network: the network's name.
    ///   - container: the container.
    ///   - ifname: the interface's name in the container.
    ///   - ip: `.auto`, an address, or nil for none.
    ///   - mac: the MAC, or nil to let vxswitchd choose.
    ///   - mtu: the MTU, or nil for the default.
    ///   - gateway: the default gateway, or nil for the network's.
    /// - Throws: `invalidParams` for an invalid network name, a multicast or zero MAC, an MTU out of range, or a
    ///   gateway that is unusable, given without an address, or outside the given address's subnet.
    public init(
        network: String,
        container: ContainerReference,
        ifname: InterfaceName = .eth0,
        ip: AttachAddress? = nil,
        mac: MACAddress? = nil,
        mtu: Int? = nil,
        gateway: IPv4Address? = nil
    ) throws(ControlError) {
        self.network = try ControlValidation.networkName(network)
        self.container = container
        self.ifname = ifname
        self.ip = ip
        self.mac = try mac.map { value throws(ControlError) in try ControlValidation.interfaceMAC(value) }
        self.mtu = try mtu.map { value throws(ControlError) in try ControlValidation.mtu(value) }
        if let gateway {
            _ = try ControlValidation.gatewayAddress(gateway)
            switch ip {
            case nil:
                throw .invalidParams("gateway \(gateway) needs an address on the interface (ip)")
            case .address(let address) where !address.contains(gateway):
                throw .invalidParams("gateway \(gateway) is not inside \(address.subnet), the subnet of \(address)")
            case .address(let address) where address.address == gateway:
                throw .invalidParams("gateway \(gateway) is the interface's own address")
            case .address, .auto:
                break
            }
        }
        self.gateway = gateway
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case network, netns, pid, docker, ifname, ip, mac, mtu, gateway
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let network = try container.decode(String.self, forKey: .network)
        try self.init(
            network: network,
            container: try ContainerReference(from: decoder),
            ifname: try container.decodeIfPresent(InterfaceName.self, forKey: .ifname) ?? .eth0,
            ip: try container.decodeIfPresent(AttachAddress.self, forKey: .ip),
            mac: try container.decodeIfPresent(String.self, forKey: .mac).map {
                text throws(ControlError) in try ControlValidation.mac(text)
            },
            mtu: try container.decodeIntegerIfPresent(forKey: .mtu),
            gateway: try container.decodeIPv4IfPresent(forKey: .gateway)
        )
    }

    /// Encodes the params with the container's member flattened in; `ifname` is always written, nil members are
    /// left out.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        try container.encode(to: encoder)
        var object = encoder.container(keyedBy: CodingKeys.self)
        try object.encode(network, forKey: .network)
        try object.encode(ifname, forKey: .ifname)
        try object.encodeIfPresent(ip, forKey: .ip)
        if let mac { try object.encode(mac, forKey: .mac) }
        try object.encodeIfPresent(mtu, forKey: .mtu)
        if let gateway { try object.encode(gateway, forKey: .gateway) }
    }
}

/// An interface `attach` put into a container, as `attach` and `detach` report it:
/// `{"port": "vx3f9a1c2b", "network": "net1", "vni": 100, "container": {"netns": "c1"},
/// "namespace": "/run/netns/c1", "ifname": "eth0", "ip": "10.0.0.100/24", "mac": "02:5e:3f:9a:1c:2b", "mtu": 1450,
/// "gateway": "10.0.0.1"}` (no `ip` or `gateway` when there is none).
public struct AttachmentInfo: Codable, Sendable, Hashable {
    /// The switch's port for the interface (the TAP's name before it moved into the container).
    public var port: InterfaceName
    /// The network.
    public var network: String
    /// The network's VNI.
    public var vni: VNI
    /// The container as it was given.
    public var container: ContainerReference
    /// The namespace the container reference resolved to: `/run/netns/NAME`, `/proc/PID/ns/net`.
    public var namespace: String
    /// The interface's name inside the container.
    public var ifname: InterfaceName
    /// The interface's address with its prefix length (`10.0.0.100/24`), or nil when it was given none.
    public var ip: String?
    /// The interface's MAC.
    public var mac: MACAddress
    /// The interface's MTU.
    public var mtu: Int
    /// The default gateway installed in the container, if any.
    public var gateway: IPv4Address?

    /// - Parameters:
    ///   - port: the switch port's name.
    ///   - network: the network.
    ///   - vni: its VNI.
    ///   - container: the container as given.
    ///   - namespace: the namespace path it resolved to.
    ///   - ifname: the interface's name in the container.
    ///   - ip: the address with prefix length, or nil.
    ///   - mac: the MAC.
    ///   - mtu: the MTU.
    ///   - gateway: the default gateway, or nil.
    public init(
        port: InterfaceName,
        network: String,
        vni: VNI,
        container: ContainerReference,
        namespace: String,
        ifname: InterfaceName,
        ip: String?,
        mac: MACAddress,
        mtu: Int,
        gateway: IPv4Address? = nil
    ) {
        self.port = port
        self.network = network
        self.vni = vni
        self.container = container
        self.namespace = namespace
        self.ifname = ifname
        self.ip = ip
        self.mac = mac
        self.mtu = mtu
        self.gateway = gateway
    }

    private enum CodingKeys: String, CodingKey {
        case port, network, vni, container, namespace, ifname, ip, mac, mtu, gateway
    }

    /// Decodes an attachment.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            port: try container.decode(InterfaceName.self, forKey: .port),
            network: try container.decode(String.self, forKey: .network),
            vni: try container.decodeVNI(forKey: .vni),
            container: try container.decode(ContainerReference.self, forKey: .container),
            namespace: try container.decode(String.self, forKey: .namespace),
            ifname: try container.decode(InterfaceName.self, forKey: .ifname),
            ip: try container.decodeIfPresent(String.self, forKey: .ip),
            mac: try container.decodeMAC(forKey: .mac),
            mtu: try container.decode(Int.self, forKey: .mtu),
            gateway: try container.decodeIPv4IfPresent(forKey: .gateway)
        )
    }

    /// Encodes the attachment; `ip` and `gateway` are left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(port, forKey: .port)
        try container.encode(network, forKey: .network)
        try container.encode(vni, forKey: .vni)
        try container.encode(self.container, forKey: .container)
        try container.encode(namespace, forKey: .namespace)
        try container.encode(ifname, forKey: .ifname)
        try container.encodeIfPresent(ip, forKey: .ip)
        try container.encode(mac, forKey: .mac)
        try container.encode(mtu, forKey: .mtu)
        if let gateway { try container.encode(gateway, forKey: .gateway) }
    }
}

/// Params of `detach`: `{"netns": "c1"}` removes every interface vxswitchd attached to the container,
/// `{"netns": "c1", "ifname": "eth1"}` only that one. Their ports are removed and their static leases released.
public struct DetachParams: Codable, Sendable, Hashable {
    /// The container.
    public var container: ContainerReference
    /// The interface to remove, or nil for all that vxswitchd attached to the container.
    public var ifname: InterfaceName?

    /// - Parameters:
    ///   - container: the container.
    ///   - ifname: the interface, or nil for all.
    public init(container: ContainerReference, ifname: InterfaceName? = nil) {
        self.container = container
        self.ifname = ifname
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case netns, pid, docker, ifname
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            container: try ContainerReference(from: decoder),
            ifname: try container.decodeIfPresent(InterfaceName.self, forKey: .ifname)
        )
    }

    /// Encodes the params with the container's member flattened in; `ifname` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        try container.encode(to: encoder)
        var object = encoder.container(keyedBy: CodingKeys.self)
        try object.encodeIfPresent(ifname, forKey: .ifname)
    }
}

/// The result of `detach`: `{"detached": [...]}`, the attachments removed, as they were.
public struct DetachResult: Codable, Sendable, Hashable {
    /// The attachments removed.
    public var detached: [AttachmentInfo]

    /// - Parameter detached: the attachments removed.
    public init(detached: [AttachmentInfo]) {
        self.detached = detached
    }
}
