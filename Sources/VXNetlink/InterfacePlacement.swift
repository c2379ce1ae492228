// Moves an interface (the TAP the daemon just created) into a container's network namespace and configures it
// there, in-process, the way `ovs-docker add-port` and `pipework` do with `ip` commands:
//
//   origin namespace (the daemon's)            target namespace (the container's)
//   1. get link NAME -> ifindex, MAC, MTU
//   2. move ifindex to target (IFLA_NET_NS_FD) ─────▶ 3. get link NAME -> ifindex there (it may change)
//                                                     4. set down (moving already did; a no-op made explicit)
//                                                     5. rename to eth0 (EEXIST if taken; old kernels
//                                                        want it down)
//                                                     6. set MAC   7. set MTU   8. add A/N (brd +)
//                                                     9. set up   10. default via GW dev eth0
//
// Steps 3-10 go through a socket opened inside the target namespace (KernelNetlinkSocket.open(inNamespace:)),
// so no thread of the caller ever changes namespace. Each step is one request with an ACK.
//
// Nothing is left half-configured. The configuration is checked before anything changes (name, MAC, MTU,
// address, gateway in the subnet). If a step after the move fails, the interface is put back: down, renamed to
// its original name, moved back into the origin namespace, and its original MAC and MTU restored there
// (`.moveBack`, the default); if moving back fails, or with `.delete`, the interface is deleted. The error
// says which happened (`PlacementError.cleanup`). Addresses and routes need no undo: they do not survive a move
// between namespaces.
//
// Cost: steps 1 and 3-10 take tens to hundreds of microseconds each. The move (step 2) is the kernel's
// dev_change_net_namespace, which waits for RCU grace periods: 12-40 ms on this shared 2-core machine, the
// same as `ip link set DEV netns NS`. A TAP created directly inside the namespace (NetworkNamespace.createTAP)
// skips it: `configure(interface:in:configuration:)` runs steps 3-10 only.
//
// Thread-safety: a placement uses its sessions exclusively while it runs; run one placement per interface.

import SystemPackage
import VXPacket

/// What the interface should look like inside the target namespace.
public struct PlacementConfiguration: Hashable, Sendable {
    /// What to do with the interface when a step after the move fails.
    public enum FailurePolicy: Hashable, Sendable {
        /// Rename it back, move it back to the origin namespace, restore MAC and MTU; delete it if that fails.
        case moveBack
        /// Delete it.
        case delete
    }

    /// The name inside the namespace (eth0, eth1, ...).
    public var name: String
    /// The hardware address to set, or nil to keep the TAP's.
    public var mac: MACAddress?
    /// The MTU to set, or nil to keep the TAP's.
    public var mtu: UInt32?
    /// The IPv4 address and prefix to add, or nil for none.
    public var address: InterfaceAddress?
    /// The default gateway to add (needs `address`, and must be inside its subnet), or nil for none.
    public var gateway: IPv4Address?
    /// The failure policy.
    public var onFailure: FailurePolicy

    /// - Parameters:
    ///   - name: the interface name inside the namespace.
    ///   - mac: the MAC to set.
    ///   - mtu: the MTU to set.
    ///   - address: the IPv4 address/prefix to add.
    ///   - gateway: the default gateway.
    ///   - onFailure: what to do with the interface when a later step fails.
    public init(
        name: String,
        mac: MACAddress? = nil,
        mtu: UInt32? = nil,
        address: InterfaceAddress? = nil,
        gateway: IPv4Address? = nil,
        onFailure: FailurePolicy = .moveBack
    ) {
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.address = address
        self.gateway = gateway
        self.onFailure = onFailure
    }

    /// The smallest MTU an IPv4 interface may have (RFC 791: every host must handle 68-byte datagrams).
    public static let minimumMTU: UInt32 = 68

    /// Why this configuration cannot be applied, or nil when it can. Checked before anything changes.
    public var problem: String? {
        if let reason = NetlinkSession.interfaceNameProblem(name) { return "interface name \"\(name)\" \(reason)" }
        if let mac {
            if mac.isMulticast { return "MAC \(mac) is a multicast address" }
            if mac.isZero { return "MAC \(mac) is all zeros" }
        }
        if let mtu, mtu < Self.minimumMTU || mtu > 65535 {
            return "MTU \(mtu) is outside \(Self.minimumMTU)...65535"
        }
        if let address {
            let ip = address.address
            if address.prefixLength == 0 { return "prefix length 0 in \(address) is not an interface subnet" }
            if ip.isUnspecified || ip.isMulticast || ip.value == UInt32.max || ip.value >> 24 == 127 {
                return "\(ip) is not a unicast host address"
            }
            if address.prefixLength <= 30, ip == address.network || ip == address.broadcast {
                return "\(ip) is the network or broadcast address of \(address.network)/\(address.prefixLength)"
            }
        }
        if let gateway {
            guard let address else { return "a gateway needs an address on the interface" }
            if gateway == address.address { return "the gateway \(gateway) is the interface's own address" }
            if !address.contains(gateway) {
                return "the gateway \(gateway) is outside \(address.network)/\(address.prefixLength)"
            }
            if address.prefixLength <= 30, gateway == address.network || gateway == address.broadcast {
                return "the gateway \(gateway) is the subnet's network or broadcast address"
            }
        }
        return nil
    }
}

/// The steps of a placement, in order; errors name the one that failed.
public enum PlacementStep: String, Hashable, Sendable, CustomStringConvertible {
    case validate = "check the configuration"
    case openNamespace = "open the target namespace"
    case lookup = "find the interface"
    case move = "move it into the target namespace"
    case lookupInTarget = "find it in the target namespace"
    case setDown = "set it down"
    case rename = "rename it"
    case setMAC = "set its MAC"
    case setMTU = "set its MTU"
    case addAddress = "add its address"
    case setUp = "set it up"
    case addRoute = "add the default route"

    public var description: String { rawValue }
}

/// What became of the interface after a failed placement.
public enum PlacementCleanup: Hashable, Sendable, CustomStringConvertible {
    /// Nothing had changed yet.
    case notNeeded
    /// It is back in the origin namespace under `name`. `restored` is false when its MAC or MTU could not be
    /// put back.
    case movedBack(name: String, restored: Bool)
    /// It was deleted.
    case deleted
    /// Cleanup failed: the interface is left as the error says, in the target namespace.
    case failed(NetlinkError)

    public var description: String {
        switch self {
        case .notNeeded: return "nothing was changed"
        case .movedBack(let name, let restored):
            return "the interface was moved back to the origin namespace as \(name)"
                + (restored ? "" : " (its MAC/MTU could not be restored)")
        case .deleted: return "the interface was deleted"
        case .failed(let error): return "cleanup failed, the interface may be left in the target namespace: \(error)"
        }
    }
}

/// A failed placement: which step, why, and what became of the interface.
public struct PlacementError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidConfiguration, namespaceNotFound, interfaceNotFound, nameTaken, addressExists
            case defaultRouteExists, gatewayUnreachable, failed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The configuration was refused before anything changed (`PlacementConfiguration.problem`).
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The target namespace does not exist.
        public static let namespaceNotFound = Code(.namespaceNotFound)
        /// The interface to place does not exist in the origin namespace.
        public static let interfaceNotFound = Code(.interfaceNotFound)
        /// The requested name (or, while moving, the interface's current name) is taken in the target namespace.
        public static let nameTaken = Code(.nameTaken)
        /// The address is already on the interface.
        public static let addressExists = Code(.addressExists)
        /// The target namespace already has a default route.
        public static let defaultRouteExists = Code(.defaultRouteExists)
        /// The kernel found no route to the gateway.
        public static let gatewayUnreachable = Code(.gatewayUnreachable)
        /// Any other failure; `cause` has the errno.
        public static let failed = Code(.failed)

        public var description: String {
            switch value {
            case .invalidConfiguration: return "invalid configuration"
            case .namespaceNotFound: return "namespace not found"
            case .interfaceNotFound: return "interface not found"
            case .nameTaken: return "name taken"
            case .addressExists: return "address exists"
            case .defaultRouteExists: return "default route exists"
            case .gatewayUnreachable: return "gateway unreachable"
            case .failed: return "failed"
            }
        }
    }

    /// The kind of failure.
    public var code: Code
    /// The step that failed.
    public var step: PlacementStep
    /// A sentence for the operator.
    public var message: String
    /// The underlying error, when there is one.
    public var cause: NetlinkError?
    /// What became of the interface.
    public var cleanup: PlacementCleanup

    public init(
        code: Code,
        step: PlacementStep,
        message: String,
        cause: NetlinkError? = nil,
        cleanup: PlacementCleanup = .notNeeded
    ) {
        self.code = code
        self.step = step
        self.message = message
        self.cause = cause
        self.cleanup = cleanup
    }

    public var description: String {
        var text = "cannot \(step): \(message)"
        if let cause { text += " [\(cause)]" }
        if cleanup != .notNeeded { text += "; \(cleanup)" }
        return text
    }
}

/// An interface as placed: its index and settings inside the target namespace.
public struct PlacedInterface: Hashable, Sendable, CustomStringConvertible {
    /// The ifindex inside the target namespace.
    public var index: Int32
    /// The name inside the target namespace.
    public var name: String
    /// The MAC it has now.
    public var mac: MACAddress?
    /// The MTU it has now.
    public var mtu: UInt32
    /// How long the placement took, from the first request to the last ACK (sockets included when
    /// `place(interface:into:configuration:)` opened them).
    public var elapsed: Duration
    /// How long each step took, in order (`.openNamespace` covers opening the namespace and the sockets).
    public var timings: [PlacementTiming]

    public var description: String {
        "\(name) (ifindex \(index), mtu \(mtu)" + (mac.map { ", \($0)" } ?? "") + ") in \(elapsed)"
    }
}

/// How long one step of a placement took.
public struct PlacementTiming: Hashable, Sendable, CustomStringConvertible {
    /// The step.
    public var step: PlacementStep
    /// Its duration, request to ACK.
    public var duration: Duration

    public var description: String { "\(step): \(duration)" }
}

/// Moves an interface into a network namespace and configures it there (see the file's header).
public enum InterfacePlacement {
    /// Runs the placement over two sessions the caller opened: `origin` in the namespace the interface is in
    /// now, `target` inside the target namespace. The namespaces themselves are named by `LinkNamespaceTarget`s
    /// (descriptors the caller keeps open for the duration). Tests drive this with mock sockets.
    /// - Parameters:
    ///   - interface: the interface's current name in the origin namespace.
    ///   - configuration: what it should look like in the target namespace.
    ///   - origin: a session in the origin namespace.
    ///   - originNamespace: how to send the interface back there (`.moveBack`).
    ///   - target: a session inside the target namespace.
    ///   - targetNamespace: where to move the interface.
    /// - Returns: the interface's index, name, MAC and MTU in the target namespace.
    /// - Throws: `PlacementError`, with the step, the cause and what became of the interface.
    public static func place(
        interface: String,
        configuration: PlacementConfiguration,
        origin: NetlinkSession,
        originNamespace: LinkNamespaceTarget,
        target: NetlinkSession,
        targetNamespace: LinkNamespaceTarget
    ) throws(PlacementError) -> PlacedInterface {
        var clock = StepClock()
        if let problem = configuration.problem {
            throw PlacementError(code: .invalidConfiguration, step: .validate, message: problem)
        }
        if let problem = NetlinkSession.interfaceNameProblem(interface) {
            throw PlacementError(code: .invalidConfiguration, step: .validate, message: "\"\(interface)\" \(problem)")
        }

        // 1. The interface as it is now: its index, and the MAC and MTU to restore if we have to put it back.
        let original: LinkInfo
        do {
            original = try origin.link(named: interface)
            clock.finished(.lookup)
        } catch {
            let missing = error.errno == .operationNotSupportedByDevice  // ENODEV
            throw PlacementError(
                code: missing ? .interfaceNotFound : .failed,
                step: .lookup,
                message: missing
                    ? "no interface \(interface) in the origin namespace" : "lookup of \(interface) failed",
                cause: error
            )
        }

        // 2. Move. On failure nothing has changed: the kernel checks the name in the target before moving.
        do {
            try origin.setLinkNamespace(index: original.index, to: targetNamespace)
            clock.finished(.move)
        } catch {
            let taken = error.errno == .fileExists
            throw PlacementError(
                code: taken ? .nameTaken : .failed,
                step: .move,
                message: taken
                    ? "an interface named \(interface) already exists in the target namespace"
                    : "moving \(interface) (ifindex \(original.index)) failed",
                cause: error
            )
        }

        // 3-10. Configure it there; from here on every failure undoes the move.
        var placed = Placed(index: original.index, name: interface)
        if let (step, error) = configureSteps(&placed, configuration, target, &clock) {
            let cleanup: PlacementCleanup
            if step == .lookupInTarget {
                // Without its index in the target we cannot address the interface there; say so.
                cleanup = .failed(error)
            } else {
                cleanup = undo(
                    placed,
                    original: original,
                    policy: configuration.onFailure,
                    origin: origin,
                    originNamespace: originNamespace,
                    target: target
                )
            }
            throw failure(error, at: step, configuration, interface: interface, cleanup: cleanup)
        }
        return PlacedInterface(
            index: placed.index,
            name: placed.name,
            mac: configuration.mac ?? original.mac,
            mtu: configuration.mtu ?? original.mtu,
            elapsed: clock.elapsed,
            timings: clock.timings
        )
    }

    /// Configures an interface that already lives in the target namespace: steps 3-10 without the move. This is
    /// the fast path for a TAP created directly inside the namespace (`NetworkNamespace.createTAP`), which skips
    /// the kernel's slow IFLA_NET_NS_FD move. There is nowhere to move it back to, so a failed step deletes it
    /// (`PlacementCleanup.deleted`), whatever `configuration.onFailure` says.
    /// - Parameters:
    ///   - interface: its current name in the namespace.
    ///   - configuration: what it should look like.
    ///   - target: a session inside the namespace.
    /// - Returns: the configured interface.
    /// - Throws: `PlacementError`.
    public static func configure(
        interface: String,
        configuration: PlacementConfiguration,
        target: NetlinkSession
    ) throws(PlacementError) -> PlacedInterface {
        var clock = StepClock()
        if let problem = configuration.problem {
            throw PlacementError(code: .invalidConfiguration, step: .validate, message: problem)
        }
        var placed = Placed(index: 0, name: interface)
        if let (step, error) = configureSteps(&placed, configuration, target, &clock) {
            var cleanup = PlacementCleanup.notNeeded
            if step == .lookupInTarget {
                let missing = error.errno == .operationNotSupportedByDevice  // ENODEV
                throw PlacementError(
                    code: missing ? .interfaceNotFound : .failed,
                    step: step,
                    message: missing ? "no interface \(interface) in the namespace" : "lookup of \(interface) failed",
                    cause: error
                )
            }
            do {
                try target.deleteLink(index: placed.index)
                cleanup = .deleted
            } catch {
                cleanup = .failed(error)
            }
            throw failure(error, at: step, configuration, interface: interface, cleanup: cleanup)
        }
        let link = try? target.link(index: placed.index)
        return PlacedInterface(
            index: placed.index,
            name: placed.name,
            mac: configuration.mac ?? link?.mac,
            mtu: configuration.mtu ?? link?.mtu ?? 0,
            elapsed: clock.elapsed,
            timings: clock.timings
        )
    }

    /// Steps 3-10 on an interface inside the target namespace: find it by name, set it down, rename, MAC, MTU,
    /// address, up, default route. Each is one request; each one done is recorded on `clock`.
    /// - Returns: nil when every step succeeded, else the failed step and its error; `placed` says where the
    ///   interface is by then.
    private static func configureSteps(
        _ placed: inout Placed,
        _ configuration: PlacementConfiguration,
        _ target: NetlinkSession,
        _ clock: inout StepClock
    ) -> (PlacementStep, NetlinkError)? {
        var step = PlacementStep.lookupInTarget
        do {
            placed.index = try target.linkIndex(named: placed.name)
            clock.finished(step)

            step = .setDown
            try target.setLinkUp(index: placed.index, false)
            clock.finished(step)

            step = .rename
            if configuration.name != placed.name {
                try target.renameLink(index: placed.index, to: configuration.name)
                placed.name = configuration.name
                clock.finished(step)
            }
            step = .setMAC
            if let mac = configuration.mac {
                try target.setLinkAddress(index: placed.index, mac)
                clock.finished(step)
            }
            step = .setMTU
            if let mtu = configuration.mtu {
                try target.setLinkMTU(index: placed.index, mtu)
                clock.finished(step)
            }
            step = .addAddress
            if let address = configuration.address {
                try target.addAddress(index: placed.index, address)
                clock.finished(step)
            }
            step = .setUp
            try target.setLinkUp(index: placed.index, true)
            clock.finished(step)
            step = .addRoute
            if let gateway = configuration.gateway {
                try target.addDefaultRoute(via: gateway, index: placed.index)
                clock.finished(step)
            }
            return nil
        } catch {
            return (step, error)
        }
    }

    #if os(Linux)
    /// Places `interface`, which lives in the calling thread's namespace, into `namespace`: opens a session
    /// here, one inside `namespace`, and the calling thread's own namespace for the way back, then runs
    /// `place(interface:configuration:origin:originNamespace:target:targetNamespace:)`. The sockets are closed
    /// before returning, so nothing keeps the target namespace alive.
    /// - Returns: the placed interface; `elapsed` includes opening the sockets.
    public static func place(
        interface: String,
        into namespace: borrowing NetworkNamespace,
        configuration: PlacementConfiguration
    ) throws(PlacementError) -> PlacedInterface {
        let clock = ContinuousClock()
        let start = clock.now
        if let problem = configuration.problem {
            throw PlacementError(code: .invalidConfiguration, step: .validate, message: problem)
        }
        func opening<T: ~Copyable>(_ body: () throws(NetlinkError) -> T) throws(PlacementError) -> T {
            do {
                return try body()
            } catch {
                throw PlacementError(
                    code: .failed,
                    step: .openNamespace,
                    message: "cannot open netlink sockets for \(namespace.locator)",
                    cause: error
                )
            }
        }
        let here = try opening { () throws(NetlinkError) in try NetworkNamespace.current() }
        let origin = try opening { () throws(NetlinkError) in NetlinkSession(socket: try KernelNetlinkSocket()) }
        let target = try opening { () throws(NetlinkError) in
            NetlinkSession(socket: try KernelNetlinkSocket.open(inNamespace: namespace))
        }
        let opened = clock.now - start
        var placed = try place(
            interface: interface,
            configuration: configuration,
            origin: origin,
            originNamespace: here.linkTarget,
            target: target,
            targetNamespace: namespace.linkTarget
        )
        placed.elapsed = clock.now - start
        placed.timings.insert(PlacementTiming(step: .openNamespace, duration: opened), at: 0)
        return placed
    }

    /// Configures `interface`, which already lives inside `namespace` (see
    /// `configure(interface:configuration:target:)`), through a session opened inside it and closed afterwards.
    /// - Returns: the configured interface; `elapsed` includes opening the socket.
    public static func configure(
        interface: String,
        in namespace: borrowing NetworkNamespace,
        configuration: PlacementConfiguration
    ) throws(PlacementError) -> PlacedInterface {
        let clock = ContinuousClock()
        let start = clock.now
        let target: NetlinkSession
        do {
            target = NetlinkSession(socket: try KernelNetlinkSocket.open(inNamespace: namespace))
        } catch {
            throw PlacementError(
                code: .failed,
                step: .openNamespace,
                message: "cannot open a netlink socket in \(namespace.locator)",
                cause: error
            )
        }
        let opened = clock.now - start
        var placed = try configure(interface: interface, configuration: configuration, target: target)
        placed.elapsed = clock.now - start
        placed.timings.insert(PlacementTiming(step: .openNamespace, duration: opened), at: 0)
        return placed
    }

    /// Opens the namespace `locator` leads to and places `interface` into it.
    /// - Throws: `PlacementError` with `.namespaceNotFound` when the namespace does not exist.
    public static func place(
        interface: String,
        into locator: NamespaceLocator,
        configuration: PlacementConfiguration
    ) throws(PlacementError) -> PlacedInterface {
        let namespace: NetworkNamespace
        do {
            namespace = try NetworkNamespace(locator)
        } catch {
            throw PlacementError(
                code: error.code == .namespaceNotFound ? .namespaceNotFound : .failed,
                step: .openNamespace,
                message: error.detail ?? "cannot open \(locator)",
                cause: error
            )
        }
        return try place(interface: interface, into: namespace, configuration: configuration)
    }
    #endif

    // MARK: Failure handling

    /// Where the interface is, as far as cleanup needs to know.
    private struct Placed {
        var index: Int32  // ifindex in the target namespace (0 until looked up there)
        var name: String  // current name there
    }

    /// Times the steps of one placement.
    private struct StepClock {
        let clock = ContinuousClock()  // monotonic
        let start: ContinuousClock.Instant  // when the placement began
        var mark: ContinuousClock.Instant  // when the last step ended
        var timings: [PlacementTiming] = []  // steps done so far, in order

        init() {
            start = clock.now
            mark = start
        }

        /// Records that `step` just ended.
        mutating func finished(_ step: PlacementStep) {
            let now = clock.now
            timings.append(PlacementTiming(step: step, duration: now - mark))
            mark = now
        }

        /// Time since the placement began.
        var elapsed: Duration { clock.now - start }
    }

    /// The error for a failed step 3-10.
    private static func failure(
        _ error: NetlinkError,
        at step: PlacementStep,
        _ configuration: PlacementConfiguration,
        interface: String,
        cleanup: PlacementCleanup
    ) -> PlacementError {
        let message: String
        if step == .lookupInTarget {
            message = "\(interface) was moved but cannot be found in the target namespace"
        } else {
            message = self.message(for: error, at: step, configuration)
        }
        return PlacementError(
            code: code(for: error, at: step),
            step: step,
            message: message,
            cause: error,
            cleanup: cleanup
        )
    }

    private static func code(for error: NetlinkError, at step: PlacementStep) -> PlacementError.Code {
        let exists = error.errno == .fileExists
        switch step {
        case .rename where exists: return .nameTaken
        case .addAddress where exists: return .addressExists
        case .addRoute where exists: return .defaultRouteExists
        case .addRoute where error.errno == .networkUnreachable: return .gatewayUnreachable
        default: return .failed
        }
    }

    private static func message(
        for error: NetlinkError,
        at step: PlacementStep,
        _ configuration: PlacementConfiguration
    ) -> String {
        switch code(for: error, at: step) {
        case .nameTaken: return "an interface named \(configuration.name) already exists in the target namespace"
        case .addressExists: return "\(configuration.address.map(\.description) ?? "the address") is already there"
        case .defaultRouteExists: return "the target namespace already has a default route"
        case .gatewayUnreachable:
            return "no route to the gateway \(configuration.gateway.map(\.description) ?? "")"
        default: return "the kernel refused the request"
        }
    }

    /// Puts the interface back (or deletes it) after a failed step. Errors during cleanup are reported, not
    /// thrown: the caller's error is the step that failed.
    private static func undo(
        _ placed: Placed,
        original: LinkInfo,
        policy: PlacementConfiguration.FailurePolicy,
        origin: NetlinkSession,
        originNamespace: LinkNamespaceTarget,
        target: NetlinkSession
    ) -> PlacementCleanup {
        if policy == .moveBack {
            do {
                // Down first: a rename needs it, and the move would do it anyway.
                try target.setLinkUp(index: placed.index, false)
                if placed.name != original.name { try target.renameLink(index: placed.index, to: original.name) }
                try target.setLinkNamespace(index: placed.index, to: originNamespace)
                // Back home: its index may have changed again; MAC and MTU moved with it and are put back.
                var restored = true
                do {
                    let home = try origin.link(named: original.name)
                    if let mac = original.mac, home.mac != mac { try origin.setLinkAddress(index: home.index, mac) }
                    if home.mtu != original.mtu { try origin.setLinkMTU(index: home.index, original.mtu) }
                } catch {
                    restored = false
                }
                return .movedBack(name: original.name, restored: restored)
            } catch {
                // Fall through to deleting it in the target namespace (it has not left: a failed move changes
                // nothing, and the steps before it only touch it where it is).
            }
        }
        do {
            try target.deleteLink(index: placed.index)
            return .deleted
        } catch {
            return .failed(error)
        }
    }
}
