// From a request line to a response line, without sockets:
//
//   line --ControlJSON.parse--> JSONValue --ControlDispatcher--> method name + params JSONValue
//        --ControlRouter--> typed M.Params --handler (ControlService)--> M.Result --> JSONValue --> response line
//
// Every failure on the way becomes a JSON-RPC error response; nothing here traps on input.

/// What vxswitchd implements: one function per control method. Each receives params that are already decoded and
/// validated (names, VNIs, MTUs, addresses) and throws `ControlError` for what only the daemon can judge
/// (`notFound`, `alreadyExists`, `invalidArgument`, `resourceBusy`, `systemError`).
///
/// Calls may arrive concurrently from several connections; the implementation serializes its own state.
public protocol ControlService: Sendable {
    /// `add-port`: creates or attaches TAP `params.name` on `params.vni`.
    /// - Parameter params: the port's name, VNI and optional MTU (nil: the daemon's default, 1450 for VXLAN).
    /// - Returns: the port as created.
    func addPort(_ params: AddPortParams) async throws(ControlError) -> PortInfo

    /// `del-port`: removes a port and flushes what was learned on it.
    /// - Parameter params: the port's name.
    /// - Returns: `EmptyResult()`.
    func deletePort(_ params: DeletePortParams) async throws(ControlError) -> EmptyResult

    /// `add-peer`: adds a tunnel peer for a VNI, or adds the VNI to an existing peer.
    /// - Parameter params: the address, VNI and encapsulation.
    /// - Returns: the peer with all its VNIs.
    func addPeer(_ params: AddPeerParams) async throws(ControlError) -> PeerInfo

    /// `del-peer`: removes a peer, or one of its VNIs.
    /// - Parameter params: the address and optional VNI.
    /// - Returns: `EmptyResult()`.
    func deletePeer(_ params: DeletePeerParams) async throws(ControlError) -> EmptyResult

    /// `show`: the switch's configuration.
    /// - Returns: ports, peers and VNIs.
    func show() async throws(ControlError) -> ShowResult

    /// `fdb`: the forwarding database.
    /// - Parameter params: an optional VNI filter.
    /// - Returns: the entries.
    func fdb(_ params: FDBParams) async throws(ControlError) -> FDBResult

    /// `stats`: traffic and drop counters.
    /// - Returns: per-port, per-peer and switch-wide counters.
    func stats() async throws(ControlError) -> StatsResult
}

/// What vxswitchd implements for networks: creating and removing them, attaching containers to them, and listing
/// the addresses handed out. A protocol of its own so that `ControlService` implementations written before it
/// still compile; `ControlRouter` serves these methods for a service that conforms to both.
///
/// As with `ControlService`, params arrive decoded and validated (names, CIDR syntax, a range inside its subnet,
/// exactly one container reference), calls may be concurrent, and the implementation throws `ControlError` for
/// what only it can judge: `notFound` (no such network, container or attachment), `alreadyExists` (a network name
/// or VNI in use, an interface name taken in the container, an address leased), `invalidArgument` (an address or
/// gateway outside the network's subnet, the network's gateway asked for as an address, `ip: auto` on a full range),
/// `resourceBusy` (removing a network that still has attachments) and `systemError` (netlink, namespaces, Docker).
///
/// What the params cannot check, because it needs the network: that a given `ip` or `gateway` lies in the network's
/// subnet (`AttachParams` only checks a gateway against a given address's own subnet).
public protocol NetworkControlService: Sendable {
    /// `network-create`: creates a network (a VNI with an IPv4 subnet).
    /// - Parameter params: the name, VNI, subnet, optional range and gateway, and whether to serve DHCP.
    /// - Returns: the network as created, with its effective range.
    func createNetwork(_ params: NetworkCreateParams) async throws(ControlError) -> NetworkInfo

    /// `network-ls`: every network.
    /// - Returns: the networks, by name.
    func listNetworks() async throws(ControlError) -> NetworkListResult

    /// `network-rm`: removes a network that has no attachments left.
    /// - Parameter params: the network's name.
    /// - Returns: `EmptyResult()`.
    func removeNetwork(_ params: NetworkRemoveParams) async throws(ControlError) -> EmptyResult

    /// `attach`: creates a port on the network's VNI and moves its interface into the container's namespace,
    /// configured as asked.
    /// - Parameter params: the network, the container, and the interface's name, address, MAC, MTU and gateway.
    /// - Returns: the attachment, with everything the daemon chose (port name, address, MAC, MTU).
    func attach(_ params: AttachParams) async throws(ControlError) -> AttachmentInfo

    /// `detach`: removes one or all of the interfaces vxswitchd attached to a container, with their ports and
    /// static leases.
    /// - Parameter params: the container and an optional interface name.
    /// - Returns: the attachments removed.
    func detach(_ params: DetachParams) async throws(ControlError) -> DetachResult

    /// `leases`: the addresses handed out, static and DHCP.
    /// - Parameter params: an optional network filter.
    /// - Returns: the leases, by network, then address.
    func leases(_ params: LeasesParams) async throws(ControlError) -> LeasesResult
}

/// Maps method names to handlers. `init(service:)` registers the whole catalog; `register(_:_:)` adds more
/// (a later service protocol, or a test's extra method).
public struct ControlRouter: Sendable {
    // A Result rather than `async throws(ControlError)`: Swift 6.3.1's SILGen crashes (signal 11) on a closure
    // literal of an async typed-throws function type stored in a dictionary.
    private typealias Route = @Sendable (JSONValue) async -> Result<JSONValue, ControlError>

    private var routes: [String: Route] = [:]

    /// A router with no methods.
    public init() {}

    /// A router for the `ControlService` methods of `ControlMethods`, calling `service`; and for the network
    /// methods too when `service` also conforms to `NetworkControlService`.
    ///
    /// The network methods are found by a dynamic cast, so `ControlServer.start(path:service:)`, which knows its
    /// service only as `some ControlService`, still serves them; a daemon need not remember to build its router
    /// differently once it implements networks.
    /// - Parameter service: the daemon's implementation.
    public init(service: some ControlService) {
        register(service: service)
        if let networkService = service as? any NetworkControlService {
            register(networkService: networkService)
        }
    }

    /// A router for every method of `ControlMethods`, calling `service`. The same as `init(service:)` for a
    /// `ControlService`, with the network methods guaranteed by the type rather than found at run time.
    /// - Parameter service: the daemon's implementation of both protocols.
    public init(service: some ControlService & NetworkControlService) {
        register(service: service)
        register(networkService: service)
    }

    private mutating func register(service: some ControlService) {
        register(ControlMethods.AddPort.self) { params throws(ControlError) in try await service.addPort(params) }
        register(ControlMethods.DeletePort.self) { params throws(ControlError) in try await service.deletePort(params) }
        register(ControlMethods.AddPeer.self) { params throws(ControlError) in try await service.addPeer(params) }
        register(ControlMethods.DeletePeer.self) { params throws(ControlError) in try await service.deletePeer(params) }
        register(ControlMethods.Show.self) { _ throws(ControlError) in try await service.show() }
        register(ControlMethods.FDB.self) { params throws(ControlError) in try await service.fdb(params) }
        register(ControlMethods.Stats.self) { _ throws(ControlError) in try await service.stats() }
    }

    /// Adds (or replaces) the network methods (`ControlMethods.networkNames`), calling `networkService`.
    /// - Parameter networkService: the implementation of the network methods.
    public mutating func register(networkService: some NetworkControlService) {
        let service = networkService
        register(ControlMethods.NetworkCreate.self) { params throws(ControlError) in
            try await service.createNetwork(params)
        }
        register(ControlMethods.NetworkList.self) { _ throws(ControlError) in try await service.listNetworks() }
        register(ControlMethods.NetworkRemove.self) { params throws(ControlError) in
            try await service.removeNetwork(params)
        }
        register(ControlMethods.Attach.self) { params throws(ControlError) in try await service.attach(params) }
        register(ControlMethods.Detach.self) { params throws(ControlError) in try await service.detach(params) }
        register(ControlMethods.Leases.self) { params throws(ControlError) in try await service.leases(params) }
    }

    /// Adds (or replaces) the handler of `method`.
    /// - Parameters:
    ///   - method: the method.
    ///   - handler: receives decoded, validated params and returns the result.
    public mutating func register<M: ControlMethod>(
        _ method: M.Type,
        _ handler: @escaping @Sendable (M.Params) async throws(ControlError) -> M.Result
    ) {
        routes[M.name] = { json in
            do throws(ControlError) {
                let params = try ControlJSON.decode(M.Params.self, from: json)
                let result = try await handler(params)
                return .success(try ControlJSON.value(of: result))
            } catch {
                return .failure(error)
            }
        }
    }

    /// The registered method names, sorted.
    public var methodNames: [String] { routes.keys.sorted() }

    /// Calls the handler of `method`.
    /// - Parameters:
    ///   - method: the method name.
    ///   - params: the params object.
    /// - Returns: the result as JSON.
    /// - Throws: `methodNotFound`, `invalidParams`, or whatever the handler throws.
    public func call(method: String, params: JSONValue) async throws(ControlError) -> JSONValue {
        guard let route = routes[method] else {
            throw ControlError(
                .methodNotFound,
                "no method named \"\(method)\" (methods: \(methodNames.joined(separator: ", ")))"
            )
        }
        guard case .object = params else {
            throw .invalidParams("params must be an object of named members, not \(params.kindDescription)")
        }
        return try await route(params).get()
    }
}

/// Turns request lines into response lines (JSON-RPC 2.0, including notifications and batches).
public struct ControlDispatcher: Sendable {
    /// The methods served.
    public let router: ControlRouter

    /// - Parameter router: the methods to serve.
    public init(router: ControlRouter) {
        self.router = router
    }

    /// Handles one line.
    /// - Parameter line: the request line, without its newline.
    /// - Returns: the response line without its newline, or nil when nothing is to be sent (notifications only).
    public func respond(toLine line: some Collection<UInt8>) async -> [UInt8]? {
        let json: JSONValue
        do {
            json = try ControlJSON.parse(line)
        } catch {
            return Self.encode(ControlResponse(id: .null, outcome: .failure(error)))
        }
        if case .array(let batch) = json {
            guard !batch.isEmpty else {
                let error = ControlError(.invalidRequest, "a batch must contain at least one request")
                return Self.encode(ControlResponse(id: .null, outcome: .failure(error)))
            }
            var responses: [ControlResponse] = []
            for element in batch {
                if let response = await respond(to: element) { responses.append(response) }
            }
            return responses.isEmpty ? nil : Self.encode(responses)
        }
        return await respond(to: json).flatMap(Self.encode)
    }

    /// Handles one request object.
    /// - Parameter json: the request.
    /// - Returns: the response, or nil for a notification.
    public func respond(to json: JSONValue) async -> ControlResponse? {
        guard case .object(let members) = json else {
            let error = ControlError(.invalidRequest, "a request must be a JSON object, not \(json.kindDescription)")
            return ControlResponse(id: .null, outcome: .failure(error))
        }
        var id: RequestID?
        if let member = members["id"] {
            guard let parsed = RequestID(json: member) else {
                let error = ControlError(.invalidRequest, "\"id\" must be a string, an integer or null")
                return ControlResponse(id: .null, outcome: .failure(error))
            }
            id = parsed
        }
        func fail(_ error: ControlError) -> ControlResponse {
            ControlResponse(id: id ?? .null, outcome: .failure(error))
        }
        guard members["jsonrpc"] == .string("2.0") else {
            return fail(ControlError(.invalidRequest, "\"jsonrpc\" must be \"2.0\""))
        }
        guard case .string(let method) = members["method"] else {
            return fail(ControlError(.invalidRequest, "a request needs a \"method\" string"))
        }
        let outcome: Result<JSONValue, ControlError>
        do {
            outcome = .success(try await router.call(method: method, params: members["params"] ?? .object([:])))
        } catch {
            outcome = .failure(error)
        }
        guard let id else { return nil }
        return ControlResponse(id: id, outcome: outcome)
    }

    private static func encode(_ value: some Encodable) -> [UInt8] {
        do {
            return try ControlJSON.encodeLine(value)
        } catch {
            // Results reach here as JSONValues that were encoded once already (ControlRouter), so this should not
            // happen; if it does, the client still gets a line rather than silence.
            let fallback = #"{"error":{"code":-32603,"message":"the response could not be encoded as JSON"},"#
                + #""id":null,"jsonrpc":"2.0"}"#
            return Array(fallback.utf8)
        }
    }
}
