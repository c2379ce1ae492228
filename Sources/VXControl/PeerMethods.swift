import VXPacket

/// Params of `add-peer`: `{"ip": "192.0.2.2", "vni": 100, "encap": "gre", "greKey": "nvgre"}`.
///
/// `ip` is IPv4 or IPv6, of the switch's own underlay family. `encap` defaults to `vxlan`; `greKey` defaults to
/// `vni` and is only accepted with `"encap": "gre"`.
public struct AddPeerParams: Codable, Sendable, Hashable {
    /// The peer's underlay address.
    public var ip: UnderlayAddress
    /// The VNI to reach through this peer.
    public var vni: VNI
    /// The tunnel encapsulation.
    public var encapsulation: PeerEncapsulation

    /// - Parameters:
    ///   - ip: the peer's underlay address.
    ///   - vni: the VNI.
    ///   - encapsulation: VXLAN, or GRE with a key mode.
    public init(ip: UnderlayAddress, vni: VNI, encapsulation: PeerEncapsulation = .vxlan) {
        self.ip = ip
        self.vni = vni
        self.encapsulation = encapsulation
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case ip, vni, encap, greKey
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            ip: try ControlValidation.peerAddress(try container.decode(String.self, forKey: .ip)),
            vni: try container.decodeVNI(forKey: .vni),
            encapsulation: try PeerEncapsulation(
                encap: try container.decodeIfPresent(String.self, forKey: .encap),
                greKey: try container.decodeIfPresent(String.self, forKey: .greKey)
            )
        )
    }

    /// Encodes the params; `greKey` only for GRE.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        try container.encode(vni, forKey: .vni)
        try container.encode(encapsulation.name, forKey: .encap)
        try container.encodeIfPresent(encapsulation.greKey?.rawValue, forKey: .greKey)
    }
}

/// Params of `del-peer`: `{"ip": "192.0.2.2"}` removes the peer, `{"ip": "192.0.2.2", "vni": 100}` removes one
/// VNI from it (and the peer with its last VNI).
public struct DeletePeerParams: Codable, Sendable, Hashable {
    /// The peer's underlay address.
    public var ip: UnderlayAddress
    /// The VNI to remove, or nil for all of them.
    public var vni: VNI?

    /// - Parameters:
    ///   - ip: the peer's underlay address.
    ///   - vni: the VNI to remove, or nil for the whole peer.
    public init(ip: UnderlayAddress, vni: VNI? = nil) {
        self.ip = ip
        self.vni = vni
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case ip, vni
    }

    /// Decodes and validates the params.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            ip: try ControlValidation.peerAddress(try container.decode(String.self, forKey: .ip)),
            vni: try container.decodeVNIIfPresent(forKey: .vni)
        )
    }

    /// Encodes the params; `vni` is left out when nil.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        if let vni { try container.encode(vni, forKey: .vni) }
    }
}

/// A peer as `add-peer` and `show` report it:
/// `{"ip": "192.0.2.2", "encap": "gre", "greKey": "vni", "vnis": [100, 200]}` (no `greKey` for VXLAN).
public struct PeerInfo: Codable, Sendable, Hashable {
    /// The peer's underlay address.
    public var ip: UnderlayAddress
    /// The tunnel encapsulation.
    public var encapsulation: PeerEncapsulation
    /// The VNIs reached through this peer, ascending.
    public var vnis: [VNI]

    /// - Parameters:
    ///   - ip: the underlay address.
    ///   - encapsulation: the encapsulation.
    ///   - vnis: the VNIs reached through the peer.
    public init(ip: UnderlayAddress, encapsulation: PeerEncapsulation, vnis: [VNI]) {
        self.ip = ip
        self.encapsulation = encapsulation
        self.vnis = vnis
    }

    private enum CodingKeys: String, CodingKey {
        case ip, encap, greKey, vnis
    }

    /// Decodes a peer.
    /// - Parameter decoder: the decoder positioned at the object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            ip: try container.decodeUnderlayAddress(forKey: .ip),
            encapsulation: try PeerEncapsulation(
                encap: try container.decode(String.self, forKey: .encap),
                greKey: try container.decodeIfPresent(String.self, forKey: .greKey)
            ),
            vnis: try container.decodeVNIs(forKey: .vnis)
        )
    }

    /// Encodes the peer; `greKey` only for GRE.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        try container.encode(encapsulation.name, forKey: .encap)
        try container.encodeIfPresent(encapsulation.greKey?.rawValue, forKey: .greKey)
        try container.encode(vnis, forKey: .vnis)
    }
}
