// The method catalog. Every vxctl command is one JSON-RPC method; each method is a caseless enum that names the
// method and binds its typed params and result. To add a method:
//   1. declare its Params and Result types (Codable; params validate in init(from:) and reject unknown keys),
//   2. add an enum here conforming to ControlMethod,
//   3. add a requirement to ControlService or NetworkControlService (or a new service protocol) and one `register`
//      line in ControlRouter.init(service:) or register(networkService:),
//   4. add a vxctl subcommand and a section in docs/control-protocol.md.

/// A control method: its wire name and its typed params and result.
public protocol ControlMethod: Sendable {
    /// The params object's type. Decoding it validates every member and throws `invalidParams` on failure.
    associatedtype Params: Codable & Sendable
    /// The result's type.
    associatedtype Result: Codable & Sendable
    /// The JSON-RPC method name, e.g. `add-port`.
    static var name: String { get }
}

/// The methods of the vxswitchd control protocol.
public enum ControlMethods {
    /// `add-port`: creates a TAP port on a VNI.
    public enum AddPort: ControlMethod {
        public typealias Params = AddPortParams
        public typealias Result = PortInfo
        public static let name = "add-port"
    }

    /// `del-port`: removes a port and flushes the MACs learned on it.
    public enum DeletePort: ControlMethod {
        public typealias Params = DeletePortParams
        public typealias Result = EmptyResult
        public static let name = "del-port"
    }

    /// `add-peer`: adds a tunnel peer on a VNI (or adds a VNI to an existing peer).
    public enum AddPeer: ControlMethod {
        public typealias Params = AddPeerParams
        public typealias Result = PeerInfo
        public static let name = "add-peer"
    }

    /// `del-peer`: removes a peer, or one VNI from it.
    public enum DeletePeer: ControlMethod {
        public typealias Params = DeletePeerParams
        public typealias Result = EmptyResult
        public static let name = "del-peer"
    }

    /// `show`: ports, peers and VNIs.
    public enum Show: ControlMethod {
        public typealias Params = EmptyParams
        public typealias Result = ShowResult
        public static let name = "show"
    }

    /// `fdb`: the forwarding database, optionally for one VNI.
    public enum FDB: ControlMethod {
        public typealias Params = FDBParams
        public typealias Result = FDBResult
        public static let name = "fdb"
    }

    /// `stats`: traffic and drop counters per port, per peer and switch-wide.
    public enum Stats: ControlMethod {
        public typealias Params = EmptyParams
        public typealias Result = StatsResult
        public static let name = "stats"
    }

    /// `network-create`: creates a network, a VNI with an IPv4 subnet (`NetworkControlService`).
    public enum NetworkCreate: ControlMethod {
        public typealias Params = NetworkCreateParams
        public typealias Result = NetworkInfo
        public static let name = "network-create"
    }

    /// `network-ls`: every network, with its ports and lease count.
    public enum NetworkList: ControlMethod {
        public typealias Params = EmptyParams
        public typealias Result = NetworkListResult
        public static let name = "network-ls"
    }

    /// `network-rm`: removes a network that has no attachments.
    public enum NetworkRemove: ControlMethod {
        public typealias Params = NetworkRemoveParams
        public typealias Result = EmptyResult
        public static let name = "network-rm"
    }

    /// `attach`: puts a new port's interface into a container's namespace, on a network.
    public enum Attach: ControlMethod {
        public typealias Params = AttachParams
        public typealias Result = AttachmentInfo
        public static let name = "attach"
    }

    /// `detach`: removes the interfaces `attach` put into a container.
    public enum Detach: ControlMethod {
        public typealias Params = DetachParams
        public typealias Result = DetachResult
        public static let name = "detach"
    }

    /// `leases`: the addresses handed out, static and DHCP, optionally for one network.
    public enum Leases: ControlMethod {
        public typealias Params = LeasesParams
        public typealias Result = LeasesResult
        public static let name = "leases"
    }

    /// The `ControlService` methods' names, in the order of the documentation.
    public static let serviceNames: [String] = [
        AddPort.name, DeletePort.name, AddPeer.name, DeletePeer.name, Show.name, FDB.name, Stats.name,
    ]

    /// The `NetworkControlService` methods' names, in the order of the documentation.
    public static let networkNames: [String] = [
        NetworkCreate.name, NetworkList.name, NetworkRemove.name, Attach.name, Detach.name, Leases.name,
    ]

    /// Every method's name, in the order of the documentation.
    public static let allNames: [String] = serviceNames + networkNames
}

/// The params of a method that takes none: `{}` or no `params` member. Any member is rejected.
public struct EmptyParams: Codable, Sendable, Hashable {
    /// The empty params.
    public init() {}

    /// Decodes `{}`; any member is an `invalidParams` error.
    /// - Parameter decoder: the decoder positioned at the params object.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyCodingKey.self)
        if let key = container.allKeys.map(\.stringValue).sorted().first {
            throw ControlError.invalidParams("unknown parameter \"\(key)\" (this method takes none)")
        }
    }

    /// Encodes `{}`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: AnyCodingKey.self)
    }
}

/// The result of a method that only reports success: `{}`.
public struct EmptyResult: Codable, Sendable, Hashable {
    /// The empty result.
    public init() {}

    /// Decodes any object, ignoring its members (a newer daemon may add some).
    /// - Parameter decoder: the decoder positioned at the result.
    public init(from decoder: any Decoder) throws {
        _ = try decoder.container(keyedBy: AnyCodingKey.self)
    }

    /// Encodes `{}`.
    /// - Parameter encoder: the encoder.
    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: AnyCodingKey.self)
    }
}
