// A NetlinkSession sends one request at a time over a NetlinkSocket and collects its answer:
//
//   request (NLM_F_REQUEST | NLM_F_ACK, seq = n)  ->  zero or more data messages, then NLMSG_ERROR(0) = ACK
//                                                      or NLMSG_ERROR(-errno) = failure
//   dump (NLM_F_REQUEST | NLM_F_DUMP, seq = n)    ->  NLM_F_MULTI data messages over one or more datagrams,
//                                                      then NLMSG_DONE (or NLMSG_ERROR)
//
// Replies are matched on (nlmsg_seq, nlmsg_pid): a message for another sequence number (the late answer to a
// request that timed out earlier) or another port is skipped, never mistaken for ours. Sequence numbers start
// at 1 and wrap.
//
// Thread-safety: not Sendable, like its socket. One session per caller; sessions are cheap.

import SystemPackage
import VXPacket

/// An rtnetlink client: one request at a time, typed operations on links, addresses and routes.
public final class NetlinkSession {
    /// The transport.
    public let socket: any NetlinkSocket
    /// The sequence number of the next request.
    private var nextSequence: UInt32 = 1

    /// How often a dump marked NLM_F_DUMP_INTR (changed while it ran) is retried before giving up.
    public static let dumpAttempts = 3

    /// - Parameter socket: the transport: a `KernelNetlinkSocket`, or a mock in tests.
    public init(socket: any NetlinkSocket) {
        self.socket = socket
    }

    // MARK: Request engine

    /// Sends `request` and collects its answer.
    /// - Parameter request: a request with `.ack` (answered by data then an ACK) or `.dump` (answered by
    ///   multi-part data then NLMSG_DONE).
    /// - Returns: the data messages of the answer, in order (empty for a plain ACK).
    /// - Throws: `.kernel` for NLMSG_ERROR, `.malformedReply`, `.dumpInterrupted` (once; see `dump`), and the
    ///   socket's errors.
    @discardableResult
    public func perform(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        precondition(request.isDump || request.flags.contains(.ack), "a request must ask for an ACK or a dump")
        let sequence = nextSequence
        nextSequence = nextSequence == UInt32.max ? 1 : nextSequence + 1
        try socket.send(request.encoded(sequence: sequence, portID: socket.portID))

        var collected: [NetlinkMessage] = []
        var interrupted = false
        while true {
            let datagram = try socket.receive()
            let messages: [NetlinkMessage]
            switch NetlinkMessage.split(datagram: datagram) {
            case .success(let value): messages = value
            case .failure(let failure): throw Self.malformed(request, failure)
            }
            for message in messages {
                guard message.sequence == sequence, message.portID == socket.portID else { continue }
                let reply: NetlinkReply
                switch message.reply() {
                case .success(let value): reply = value
                case .failure(let failure): throw Self.malformed(request, failure)
                }
                switch reply {
                case .data(let data):
                    if data.flags.contains(.dumpInterrupted) { interrupted = true }
                    collected.append(data)
                case .ack:
                    guard !request.isDump else {
                        throw Self.malformed(request, .badPayload(type: .error, reason: "ACK ends a dump"))
                    }
                    return collected
                case .error(let kernel):
                    throw NetlinkError(kernel: kernel, request: request)
                case .done(let errno):
                    guard request.isDump else {
                        throw Self.malformed(request, .badPayload(type: .done, reason: "NLMSG_DONE without a dump"))
                    }
                    if errno != 0 {
                        throw NetlinkError(kernel: KernelError(errno: errno), request: request)
                    }
                    if interrupted || message.flags.contains(.dumpInterrupted) {
                        throw NetlinkError(
                            .dumpInterrupted,
                            operation: request.description,
                            detail: "the kernel marked the dump NLM_F_DUMP_INTR"
                        )
                    }
                    return collected
                case .noop:
                    continue
                case .overrun:
                    throw NetlinkError(
                        .system,
                        errno: .noBufferSpace,
                        operation: request.description,
                        detail: "NLMSG_OVERRUN"
                    )
                }
            }
        }
    }

    /// `perform` for dumps, retrying up to `dumpAttempts` times while the kernel marks the dump interrupted.
    public func dump(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        precondition(request.isDump, "dump(_:) needs an NLM_F_DUMP request")
        var attempt = 1
        while true {
            do {
                return try perform(request)
            } catch  where error.code == .dumpInterrupted && attempt < Self.dumpAttempts {
                attempt += 1
            }
        }
    }

    private static func malformed(_ request: NetlinkRequest, _ failure: NetlinkDecodingFailure) -> NetlinkError {
        NetlinkError(.malformedReply, operation: request.description, detail: failure.description)
    }

    // MARK: Links

    /// The link named `name`. The corresponding command is `ip link show NAME`.
    /// - Throws: `.kernel` with ENODEV when there is none.
    public func link(named name: String) throws(NetlinkError) -> LinkInfo {
        try Self.validateName(name, operation: "get link")
        return try singleLink(RouteRequest.getLink(name: name))
    }

    /// The link with index `index`.
    /// - Throws: `.kernel` with ENODEV when there is none.
    public func link(index: Int32) throws(NetlinkError) -> LinkInfo {
        try singleLink(RouteRequest.getLink(index: index))
    }

    /// The interface index of the link named `name` (one request). The corresponding C function is
    /// `if_nametoindex`, which does the same through an ioctl.
    public func linkIndex(named name: String) throws(NetlinkError) -> Int32 {
        try link(named: name).index
    }

    /// Every link of the socket's namespace: name, index, MAC, MTU, flags. The corresponding command is
    /// `ip link show`.
    public func links() throws(NetlinkError) -> [LinkInfo] {
        let request = RouteRequest.dumpLinks()
        var links: [LinkInfo] = []
        for message in try dump(request) where message.type == .newLink {
            switch LinkInfo.decode(message) {
            case .success(let link): links.append(link)
            case .failure(let failure): throw Self.malformed(request, failure)
            }
        }
        return links
    }

    /// Moves link `index` into another network namespace. `ip link set DEV netns NS`.
    public func setLinkNamespace(index: Int32, to target: LinkNamespaceTarget) throws(NetlinkError) {
        try perform(RouteRequest.setLinkNamespace(index: index, to: target))
    }

    /// Renames link `index` (older kernels want it down). `ip link set DEV name NAME`.
    public func renameLink(index: Int32, to name: String) throws(NetlinkError) {
        try Self.validateName(name, operation: "rename ifindex \(index)")
        try perform(RouteRequest.renameLink(index: index, to: name))
    }

    /// Sets the hardware address of link `index`. `ip link set DEV address MAC`.
    public func setLinkAddress(index: Int32, _ address: MACAddress) throws(NetlinkError) {
        try perform(RouteRequest.setLinkAddress(index: index, address))
    }

    /// Sets the MTU of link `index`. `ip link set DEV mtu MTU`.
    public func setLinkMTU(index: Int32, _ mtu: UInt32) throws(NetlinkError) {
        try perform(RouteRequest.setLinkMTU(index: index, mtu))
    }

    /// Makes link `index` a port of bridge `master` (an ifindex). `ip link set DEV master BRIDGE`.
    /// - Throws: `.kernel` with EOPNOTSUPP when `master` cannot have ports (not a bridge or bond), ENODEV when it is
    ///   gone.
    public func setLinkMaster(index: Int32, master: Int32) throws(NetlinkError) {
        try perform(RouteRequest.setLinkMaster(index: index, master: master))
    }

    /// Brings link `index` up or down. `ip link set DEV up|down`.
    public func setLinkUp(index: Int32, _ up: Bool) throws(NetlinkError) {
        try perform(RouteRequest.setLinkUp(index: index, up))
    }

    /// Deletes link `index`. `ip link del DEV`.
    public func deleteLink(index: Int32) throws(NetlinkError) {
        try perform(RouteRequest.deleteLink(index: index))
    }

    /// Replaces the root queueing discipline of link `index` with `kind`. `tc qdisc replace dev DEV root KIND`.
    /// - Throws: `.kernel` with EOPNOTSUPP on a kernel without traffic control (CONFIG_NET_SCHED), ENOENT for an
    ///   unknown kind.
    public func replaceRootQdisc(index: Int32, kind: String) throws(NetlinkError) {
        try perform(RouteRequest.replaceRootQdisc(index: index, kind: kind))
    }

    /// Gives TAP link `index` the `noqueue` root discipline, the one every TAP the switch makes a port of gets
    /// (InterfacePlacement.swift says why). `tc qdisc replace dev DEV root noqueue`.
    public func setNoqueue(index: Int32) throws(NetlinkError) {
        try replaceRootQdisc(index: index, kind: "noqueue")
    }

    // MARK: Addresses and routes

    /// Adds an IPv4 address to link `index`. `ip addr add A/N brd + dev DEV`.
    /// - Throws: `.kernel` with EEXIST when it is already there.
    public func addAddress(index: Int32, _ address: InterfaceAddress) throws(NetlinkError) {
        try perform(RouteRequest.addAddress(index: index, address))
    }

    /// Removes an IPv4 address from link `index`. `ip addr del A/N dev DEV`.
    public func deleteAddress(index: Int32, _ address: InterfaceAddress) throws(NetlinkError) {
        try perform(RouteRequest.deleteAddress(index: index, address))
    }

    /// The IPv4 addresses of link `index`, or of every link when `index` is 0. `ip -4 addr show`.
    public func addresses(index: Int32 = 0) throws(NetlinkError) -> [AddressInfo] {
        let request = RouteRequest.dumpAddresses(index: index)
        var addresses: [AddressInfo] = []
        for message in try dump(request) where message.type == .newAddress {
            switch AddressInfo.decode(message) {
            case .success(let address) where index == 0 || address.index == index: addresses.append(address)
            case .success: continue
            case .failure(let failure): throw Self.malformed(request, failure)
            }
        }
        return addresses
    }

    /// Adds the IPv4 default route via `gateway` in the main table, optionally pinned to link `index`.
    /// `ip route add default via GW [dev DEV]`.
    /// - Throws: `.kernel` with EEXIST when a default route exists, ENETUNREACH when nothing reaches `gateway`.
    public func addDefaultRoute(via gateway: IPv4Address, index: Int32? = nil) throws(NetlinkError) {
        try perform(RouteRequest.addDefaultRoute(via: gateway, index: index))
    }

    /// Deletes the main table's IPv4 default route via `gateway`. `ip route del default via GW`.
    public func deleteDefaultRoute(via gateway: IPv4Address) throws(NetlinkError) {
        try perform(RouteRequest.deleteDefaultRoute(via: gateway))
    }

    // MARK: Helpers

    private func singleLink(_ request: NetlinkRequest) throws(NetlinkError) -> LinkInfo {
        let messages = try perform(request).filter { $0.type == .newLink }
        guard messages.count == 1 else {
            throw NetlinkError(
                .malformedReply,
                operation: request.description,
                detail: "expected one RTM_NEWLINK, got \(messages.count)"
            )
        }
        switch LinkInfo.decode(messages[0]) {
        case .success(let link): return link
        case .failure(let failure): throw Self.malformed(request, failure)
        }
    }

    /// Checks an interface name the way the kernel's dev_valid_name does: 1...15 bytes, not "." or "..", no
    /// '/', ':' or whitespace. Catching it here gives a clear message instead of EINVAL.
    static func validateName(_ name: String, operation: String) throws(NetlinkError) {
        if let reason = interfaceNameProblem(name) {
            throw NetlinkError(.invalidArgument, operation: operation, detail: "interface name \"\(name)\" \(reason)")
        }
    }

    /// Why `name` cannot be an interface name, or nil when it can.
    public static func interfaceNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "is empty" }
        if bytes.count > 15 { return "is longer than 15 bytes (IFNAMSIZ - 1)" }
        if name == "." || name == ".." { return "is reserved" }
        if bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 <= 0x20 || $0 == 0x7F }) {
            return "contains '/', ':', whitespace or a control character"
        }
        return nil
    }
}
