// Configures an interface that lives in a container's network namespace (the TAP the daemon created there,
// NetworkNamespace.createTAP) the way `ovs-docker add-port` and `pipework` do with `ip` commands:
//
//   target namespace (the container's)
//   1. get link NAME -> ifindex
//   2. set down (a fresh TAP is down already; made explicit so a rename cannot hit EBUSY)
//   3. rename to eth0 (EEXIST if taken)
//   4. set MAC   5. set MTU   6. add A/N (brd +)   7. root qdisc noqueue   8. set up   9. default via GW dev eth0
//
// Step 7 is why a container's interface costs kilobytes of kernel memory rather than megabytes. A multi-queue TAP
// has 256 transmit queues (tun's MAX_TAP_QUEUES, whatever number is attached), and bringing it up with the default
// discipline builds an mq with a pfifo_fast, rings included, for each: about 6.6 MB per TAP and 13 ms per port
// added, for nothing, since tun takes every frame at once (it drops at its own ring, it never stops a queue).
// noqueue, which veth pairs get by default, sends straight to the device. Set before the link goes up, the default
// is never built. It is the one step allowed to fail: a kernel without traffic control (CONFIG_NET_SCHED) refuses
// it and keeps the default, which works; `PlacedInterface.qdiscRefusal` says so. (docs/networks-and-attach.md has
// the measurements.)
//
// Every step goes through a socket opened inside the target namespace (KernelNetlinkSocket.open(inNamespace:)),
// so no thread of the caller ever changes namespace. Each step is one request with an ACK.
//
// Nothing is left half-configured. The configuration is checked before anything changes (name, MAC, MTU,
// address, gateway in the subnet). If a later step fails, the interface is deleted (`PlacementError.cleanup`
// says whether that worked).
//
// There is deliberately no "create here, move into the namespace" path: the move (IFLA_NET_NS_FD, the kernel's
// dev_change_net_namespace) waits for RCU grace periods, 12-40 ms on this shared 2-core machine against well
// under a millisecond for the other steps, and creating the TAP inside the namespace avoids it. An earlier move
// path with a move-back-on-failure policy was removed because nothing used it (NetlinkSession.setLinkNamespace
// remains for anyone who needs a move).
//
// Thread-safety: a placement uses its session exclusively while it runs; run one placement per interface.

import SystemPackage
import VXPacket

/// What the interface should look like inside the target namespace.
public struct PlacementConfiguration: Hashable, Sendable {
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

    /// - Parameters:
    ///   - name: the interface name inside the namespace.
    ///   - mac: the MAC to set.
    ///   - mtu: the MTU to set.
    ///   - address: the IPv4 address/prefix to add.
    ///   - gateway: the default gateway.
    public init(
        name: String,
        mac: MACAddress? = nil,
        mtu: UInt32? = nil,
        address: InterfaceAddress? = nil,
        gateway: IPv4Address? = nil
    ) {
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.address = address
        self.gateway = gateway
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
            if ip.isUnspecified || ip.isMulticast || ip.value == UInt32.max || ip.isLoopback {
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
    case lookupInTarget = "find it in the target namespace"
    case setDown = "set it down"
    case rename = "rename it"
    case setMAC = "set its MAC"
    case setMTU = "set its MTU"
    case setNoqueue = "set its root qdisc to noqueue"
    case addAddress = "add its address"
    case setUp = "set it up"
    case addRoute = "add the default route"

    public var description: String { rawValue }
}

/// What became of the interface after a failed placement.
public enum PlacementCleanup: Hashable, Sendable, CustomStringConvertible {
    /// Nothing had changed yet.
    case notNeeded
    /// It was deleted.
    case deleted
    /// Cleanup failed: the interface is left as the error says, in the target namespace.
    case failed(NetlinkError)

    public var description: String {
        switch self {
        case .notNeeded: return "nothing was changed"
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
        /// The interface to configure does not exist in the namespace.
        public static let interfaceNotFound = Code(.interfaceNotFound)
        /// The requested name is taken in the target namespace.
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
    /// How long the placement took, from the first request to the last ACK (the socket included when
    /// `configure(interface:in:configuration:)` opened it).
    public var elapsed: Duration
    /// How long each step took, in order (`.openNamespace` covers opening the namespace and the sockets).
    public var timings: [PlacementTiming]
    /// Why the kernel refused the noqueue root discipline (the interface then has its default one), or nil.
    public var qdiscRefusal: NetlinkError? = nil

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

/// Configures an interface inside a network namespace (see the file's header).
public enum InterfacePlacement {
    /// Configures an interface that lives in the target namespace, typically a TAP created there
    /// (`NetworkNamespace.createTAP`). A failed step deletes it (`PlacementCleanup.deleted`).
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
            throw failure(error, at: step, configuration, cleanup: cleanup)
        }
        let link = try? target.link(index: placed.index)
        return PlacedInterface(
            index: placed.index,
            name: placed.name,
            mac: configuration.mac ?? link?.mac,
            mtu: configuration.mtu ?? link?.mtu ?? 0,
            elapsed: clock.elapsed,
            timings: clock.timings,
            qdiscRefusal: placed.qdiscRefusal
        )
    }

    /// Steps 1-9 on an interface inside the target namespace: find it by name, set it down, rename, MAC, MTU,
    /// address, noqueue, up, default route. Each is one request; each one done is recorded on `clock`.
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
            step = .setNoqueue
            do {
                try target.setNoqueue(index: placed.index)
                clock.finished(step)
            } catch {
                placed.qdiscRefusal = error  // the file comment says why this one may fail
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

    #endif

    // MARK: Failure handling

    /// Where the interface is, as far as cleanup needs to know.
    private struct Placed {
        var index: Int32  // ifindex in the target namespace (0 until looked up there)
        var name: String  // current name there
        var qdiscRefusal: NetlinkError? = nil  // step 7's error, if the kernel refused it
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

    /// The error for a failed step.
    private static func failure(
        _ error: NetlinkError,
        at step: PlacementStep,
        _ configuration: PlacementConfiguration,
        cleanup: PlacementCleanup
    ) -> PlacementError {
        PlacementError(
            code: code(for: error, at: step),
            step: step,
            message: message(for: error, at: step, configuration),
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
}
