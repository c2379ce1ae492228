// The DHCP server of one `--dhcp` network on this host (RFC 2131 §4.3), over a `LeaseTable` it shares with the
// daemon's static assignments.
//
// Messages and what they do (RFC 2131 §4.3.1 – §4.3.5):
//   DISCOVER  -> OFFER: the client's current or last address, else its requested address if free, else the next
//                free address; held for `offerHoldTime` so concurrent DISCOVERs get different addresses.
//   REQUEST   SELECTING (server id present): ours -> ACK the requested address if it is the client's offer (or
//                still free), NAK if taken; another server's -> drop our offer, no reply.
//             INIT-REBOOT (requested address, no ciaddr) and RENEWING/REBINDING (ciaddr): ACK if the address is
//                the client's lease (current or expired but not taken) and in the pool, NAK otherwise. We NAK
//                unknown clients instead of staying silent (§4.3.2 allows silence for servers that may not be
//                the only one): vxswitchd is the only server on its ports and its range is authoritative.
//   DECLINE   -> quarantine the address for `declineHoldTime` (the client found it in use).
//   RELEASE   -> end the lease; the record stays so the client gets the same address back later.
//   INFORM    -> ACK with configuration only (no yiaddr, no lease time), unicast to ciaddr.
//
// Concurrency: a value type with no locks of its own. The daemon owns one per network and calls it under the lock
// that guards that network's state (DHCP is rare: a few messages per client per lease), from whichever thread
// handles DHCP frames; `leases` is the same table the daemon allocates static addresses from.

import VXPacket

/// Why a `DHCPServerConfiguration` is invalid.
public enum DHCPConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The subnet and range are unusable (see `LeaseTableError`).
    case leaseTable(LeaseTableError)
    /// The gateway is not a host address of the subnet.
    case gatewayOutsideSubnet(IPv4Address)
    /// The server identifier is not a host address of the subnet.
    case serverIdentifierOutsideSubnet(IPv4Address)
    /// The lease time is below `DHCPServerConfiguration.minimumLeaseTime` or is the "infinite" 0xFFFFFFFF.
    case leaseTimeOutOfBounds(UInt32)
    /// More DNS servers than `DHCPServerConfiguration.maximumDNSServers`.
    case tooManyDNSServers(Int)
    /// A restored lease table's subnet or range differs from the configuration.
    case leaseTableMismatch

    public var description: String {
        switch self {
        case .leaseTable(let e): e.description
        case .gatewayOutsideSubnet(let a): "gateway \(a) is not a host address of the subnet"
        case .serverIdentifierOutsideSubnet(let a): "server identifier \(a) is not a host address of the subnet"
        case .leaseTimeOutOfBounds(let t): "lease time \(t) s is out of bounds"
        case .tooManyDNSServers(let n): "\(n) DNS servers is too many"
        case .leaseTableMismatch: "the saved lease table is for another subnet or range"
        }
    }
}

/// One network's DHCP settings.
public struct DHCPServerConfiguration: Hashable, Sendable {
    /// Shortest lease time accepted, in seconds.
    public static let minimumLeaseTime: UInt32 = 60
    /// Default lease time: one hour.
    public static let defaultLeaseTime: UInt32 = 3600
    /// How long an offered address is held for the client, in seconds. Clients send their REQUEST within
    /// milliseconds; 30 s covers a slow client and lets an abandoned offer go soon.
    public static let defaultOfferHoldTime: UInt32 = 30
    /// How long a declined address is quarantined: 10 minutes, as dnsmasq (`DECLINE_BACKOFF`).
    public static let defaultDeclineHoldTime: UInt32 = 600
    /// Option 6 is limited so a reply stays far below the 576-byte datagram every client accepts (RFC 2131 §2).
    public static let maximumDNSServers = 8

    /// The network's subnet.
    public var subnet: IPv4Subnet
    /// This host's range of addresses to hand out.
    public var range: ClosedRange<IPv4Address>
    /// The default router (option 3); nil sends no router option.
    public var gateway: IPv4Address?
    /// The server identifier (option 54) and the replies' IPv4 source. Excluded from the pool. See `init`.
    public var serverIdentifier: IPv4Address
    /// The replies' Ethernet source, chosen by the daemon per network.
    public var serverMAC: MACAddress
    /// Lease time (option 51) in seconds. T1 (58) is half of it, T2 (59) seven eighths (RFC 2131 §4.4.5).
    public var leaseTime: UInt32
    /// How long an offer is held, in seconds.
    public var offerHoldTime: UInt32
    /// How long a declined address is quarantined, in seconds.
    public var declineHoldTime: UInt32
    /// DNS servers (option 6); empty sends no option.
    public var dnsServers: [IPv4Address]

    /// Validates and builds a configuration.
    ///
    /// The server identifier is the address clients unicast RENEWING requests to (they ARP for it first). The
    /// default is the gateway when one is set: the gateway answers that ARP, and the dataplane intercepts the
    /// renewal on the local port before it reaches the router. Without a gateway the default is the subnet's
    /// last host address (broadcast − 1); the daemon should answer ARP for it on this network, or renewals time
    /// out and clients fall back to broadcast REBINDING at T2, which works but is later. Several hosts serving
    /// one network may all use the same identifier, since each server only hears its own local ports.
    ///
    /// - Parameters:
    ///   - subnet: the network's subnet, /30 or shorter.
    ///   - range: this host's range, inside the subnet's host addresses.
    ///   - gateway: the router to announce, or nil.
    ///   - serverIdentifier: nil for the default described above.
    ///   - serverMAC: the replies' Ethernet source.
    ///   - leaseTime: seconds, at least `minimumLeaseTime`, below 0xFFFFFFFF ("infinite" is not offered).
    ///   - offerHoldTime: seconds an offer is held.
    ///   - declineHoldTime: seconds a declined address is quarantined.
    ///   - dnsServers: at most `maximumDNSServers`.
    /// - Throws: `DHCPConfigurationError`.
    public init(
        subnet: IPv4Subnet,
        range: ClosedRange<IPv4Address>,
        gateway: IPv4Address? = nil,
        serverIdentifier: IPv4Address? = nil,
        serverMAC: MACAddress,
        leaseTime: UInt32 = DHCPServerConfiguration.defaultLeaseTime,
        offerHoldTime: UInt32 = DHCPServerConfiguration.defaultOfferHoldTime,
        declineHoldTime: UInt32 = DHCPServerConfiguration.defaultDeclineHoldTime,
        dnsServers: [IPv4Address] = []
    ) throws(DHCPConfigurationError) {
        do {
            _ = try LeaseTable(subnet: subnet, range: range)
        } catch {
            throw .leaseTable(error)
        }
        if let gateway, !subnet.containsHost(gateway) { throw .gatewayOutsideSubnet(gateway) }
        let identifier = serverIdentifier ?? gateway ?? IPv4Address(value: subnet.broadcast.value - 1)
        guard subnet.containsHost(identifier) else { throw .serverIdentifierOutsideSubnet(identifier) }
        guard leaseTime >= DHCPServerConfiguration.minimumLeaseTime, leaseTime != UInt32.max else {
            throw .leaseTimeOutOfBounds(leaseTime)
        }
        guard dnsServers.count <= DHCPServerConfiguration.maximumDNSServers else {
            throw .tooManyDNSServers(dnsServers.count)
        }
        self.subnet = subnet
        self.range = range
        self.gateway = gateway
        self.serverIdentifier = identifier
        self.serverMAC = serverMAC
        self.leaseTime = leaseTime
        self.offerHoldTime = offerHoldTime
        self.declineHoldTime = declineHoldTime
        self.dnsServers = dnsServers
    }

    /// T1, the renewal time (option 58): 50 % of the lease (RFC 2131 §4.4.5).
    public var renewalTime: UInt32 { leaseTime / 2 }
    /// T2, the rebinding time (option 59): 87.5 % of the lease (RFC 2131 §4.4.5).
    public var rebindingTime: UInt32 { UInt32(UInt64(leaseTime) * 7 / 8) }
}

/// What became of a frame handed to `DHCPServer.handle(frame:now:)`.
public enum DHCPFrameOutcome: Hashable, Sendable {
    /// Not a DHCP client frame: switch it as usual.
    case notDHCP
    /// Send `reply.frame` (or `reply.write(into:)`) out of the port the request arrived on.
    case reply(DHCPReply)
    /// Handled, nothing to send (DHCPRELEASE, DHCPDECLINE).
    case accepted(DHCPMessageType)
    /// Dropped without a reply; count and perhaps log the reason.
    case dropped(DHCPDropReason)
}

/// The DHCP server of one network on this host. See the file's opening comment for the protocol it speaks.
public struct DHCPServer: Sendable {
    /// The network's settings.
    public let configuration: DHCPServerConfiguration

    /// The lease table, shared with the daemon's static assignments (`allocate(for:now:)`,
    /// `reserve(_:for:now:)`, `release(_:)`). Assigning a table for another subnet or range traps; the gateway
    /// and server identifier are excluded again after every assignment.
    public var leases: LeaseTable {
        get { table }
        set {
            precondition(
                newValue.subnet == configuration.subnet && newValue.range == configuration.range,
                "DHCPServer.leases replaced by a table for another subnet or range"
            )
            table = newValue
            excludeServerAddresses()
        }
    }

    /// The storage behind `leases`; the server's own decisions mutate it directly.
    private var table: LeaseTable

    /// A server with an empty lease table.
    /// - Parameter configuration: the network's settings.
    public init(configuration: DHCPServerConfiguration) {
        self.configuration = configuration
        // The configuration's initialiser already checked what LeaseTable checks.
        self.table = try! LeaseTable(subnet: configuration.subnet, range: configuration.range)
        excludeServerAddresses()
    }

    /// A server continuing with a persisted lease table.
    /// - Parameters:
    ///   - configuration: the network's settings.
    ///   - leases: a table decoded from the daemon's state file.
    /// - Throws: `.leaseTableMismatch` when the table is for another subnet or range (the daemon then starts a
    ///   fresh table, or moves the static assignments over itself).
    public init(configuration: DHCPServerConfiguration, leases: LeaseTable) throws(DHCPConfigurationError) {
        guard leases.subnet == configuration.subnet, leases.range == configuration.range else {
            throw .leaseTableMismatch
        }
        self.configuration = configuration
        self.table = leases
        excludeServerAddresses()
    }

    private mutating func excludeServerAddresses() {
        table.exclude(configuration.serverIdentifier)
        if let gateway = configuration.gateway { table.exclude(gateway) }
    }

    /// Drops expired offers and quarantines (`LeaseTable.expire(now:)`); for the daemon's maintenance thread.
    /// Not required for correctness: every decision already treats expired records as free.
    /// - Parameter now: the current time.
    /// - Returns: the records removed.
    @discardableResult
    public mutating func expireLeases(now: LeaseInstant) -> [Lease] {
        table.expire(now: now)
    }

    // MARK: Entry points

    /// Handles a frame that arrived on a local port.
    /// - Parameters:
    ///   - frame: the whole frame, from the destination MAC on.
    ///   - now: the current time (see `LeaseInstant`).
    /// - Returns: what to do with the frame; see `DHCPFrameOutcome`.
    public mutating func handle(frame: RawSpan, now: LeaseInstant) -> DHCPFrameOutcome {
        switch DHCPClientFrame.classify(frame) {
        case .notDHCP: .notDHCP
        case .malformed(let reason): .dropped(reason)
        case .client(let request): handle(request, now: now)
        }
    }

    /// Handles a classified client frame.
    /// - Parameters:
    ///   - request: from `DHCPClientFrame.classify`.
    ///   - now: the current time.
    /// - Returns: `.reply`, `.accepted` or `.dropped`.
    public mutating func handle(_ request: DHCPClientFrame, now: LeaseInstant) -> DHCPFrameOutcome {
        let message = request.message
        guard message.operation == .request else { return .dropped(.notBootRequest) }
        guard let mac = message.clientMAC else { return .dropped(.unsupportedHardwareType) }
        guard message.relayAgentIPAddress.isUnspecified else { return .dropped(.relayedMessage) }
        let owner = LeaseOwner(clientIdentifier: message.options.clientIdentifier, hardwareAddress: mac)
        let client = Client(owner: owner, mac: mac, hostName: message.options.hostNameText)
        switch message.messageType {
        case .discover: return discover(request, client, now: now)
        case .request: return self.request(request, client, now: now)
        case .decline: return decline(request, client, now: now)
        case .release: return release(request, client, now: now)
        case .inform: return inform(request)
        case .offer, .ack, .nak: return .dropped(.unexpectedMessageType)
        }
    }

    /// Who sent a message.
    private struct Client {
        var owner: LeaseOwner  // client identifier, else MAC (RFC 2131 §4.2)
        var mac: MACAddress  // chaddr
        var hostName: String?  // option 12, for the lease record
    }

    /// The client's record: by its owner key, else (it sent a client identifier but its lease was made without
    /// one) by its MAC.
    private func currentLease(_ client: Client) -> Lease? {
        if let lease = table.lease(for: client.owner) { return lease }
        if case .clientIdentifier = client.owner { return table.lease(for: .hardwareAddress(client.mac)) }
        return nil
    }

    // MARK: Messages

    private mutating func discover(_ request: DHCPClientFrame, _ client: Client, now: LeaseInstant) -> DHCPFrameOutcome
    {
        let current = currentLease(client).flatMap { lease -> Lease? in
            switch lease.state {
            case .static: lease
            case .offered, .bound: table.isAssignable(lease.address) ? lease : nil
            case .declined: nil
            }
        }
        let address: IPv4Address
        if let current {
            address = current.address
        } else if let requested = request.message.options.requestedIPAddress,
            table.isAvailable(requested, for: client.owner, now: now)
        {
            address = requested
        } else if let free = table.nextFree(now: now) {
            address = free
        } else {
            return .dropped(.poolExhausted)
        }
        let keepsBinding = current.map { $0.state == .static || ($0.state == .bound && $0.isActive(at: now)) } ?? false
        if !keepsBinding {
            table.assign(
                address,
                to: client.owner,
                state: .offered,
                expires: now.advanced(by: configuration.offerHoldTime),
                hostName: client.hostName
            )
        }
        return .reply(reply(.offer, to: request, yourIPAddress: address, clientIPAddress: .any))
    }

    private mutating func request(_ request: DHCPClientFrame, _ client: Client, now: LeaseInstant) -> DHCPFrameOutcome {
        let options = request.message.options
        if let serverIdentifier = options.serverIdentifier {
            // SELECTING.
            guard serverIdentifier == configuration.serverIdentifier else {
                if let offer = currentLease(client), offer.state == .offered { table.end(offer.address, now: now) }
                return .dropped(.otherServerSelected)
            }
            guard let requested = options.requestedIPAddress else {
                return .reply(nak(.missingRequestedAddress, to: request))
            }
            return confirm(requested, request, client, acceptFree: true, now: now)
        }
        if !request.message.clientIPAddress.isUnspecified {
            // RENEWING (unicast) or REBINDING (broadcast).
            return confirm(request.message.clientIPAddress, request, client, acceptFree: false, now: now)
        }
        if let requested = options.requestedIPAddress {
            // INIT-REBOOT.
            return confirm(requested, request, client, acceptFree: false, now: now)
        }
        return .dropped(.requestWithoutAddress)
    }

    /// ACKs `address` for the client if it may have it, else NAKs.
    /// - Parameter acceptFree: SELECTING only: grant a free address even without a record (the offer expired).
    private mutating func confirm(
        _ address: IPv4Address,
        _ request: DHCPClientFrame,
        _ client: Client,
        acceptFree: Bool,
        now: LeaseInstant
    ) -> DHCPFrameOutcome {
        guard configuration.subnet.containsHost(address) else { return .reply(nak(.wrongNetwork, to: request)) }
        let current = currentLease(client)
        if let current, current.address == address {
            switch current.state {
            case .static:
                return .reply(ack(address, to: request))
            case .offered, .bound:
                guard table.isAssignable(address) else { return .reply(nak(.notInPool, to: request)) }
                bind(address, client, now: now)
                return .reply(ack(address, to: request))
            case .declined:
                break
            }
        }
        guard table.isAssignable(address) else { return .reply(nak(.notInPool, to: request)) }
        guard table.isAvailable(address, for: client.owner, now: now) else {
            return .reply(nak(.addressInUse, to: request))
        }
        // Free, or an expired record of some client: only a client that is selecting our offer may take it.
        guard acceptFree else { return .reply(nak(.noBinding, to: request)) }
        bind(address, client, now: now)
        return .reply(ack(address, to: request))
    }

    private mutating func bind(_ address: IPv4Address, _ client: Client, now: LeaseInstant) {
        table.assign(
            address,
            to: client.owner,
            state: .bound,
            expires: now.advanced(by: configuration.leaseTime),
            hostName: client.hostName
        )
    }

    private mutating func decline(_ request: DHCPClientFrame, _ client: Client, now: LeaseInstant) -> DHCPFrameOutcome {
        let options = request.message.options
        if let serverIdentifier = options.serverIdentifier, serverIdentifier != configuration.serverIdentifier {
            return .dropped(.otherServerSelected)
        }
        guard let address = options.requestedIPAddress else { return .dropped(.requestWithoutAddress) }
        guard let current = currentLease(client), current.address == address else {
            return .dropped(.notClientsLease)
        }
        // A static address in conflict is the operator's to fix; it is not quarantined away from its owner.
        if current.state == .offered || current.state == .bound {
            table.decline(address, until: now.advanced(by: configuration.declineHoldTime))
        }
        return .accepted(.decline)
    }

    private mutating func release(_ request: DHCPClientFrame, _ client: Client, now: LeaseInstant) -> DHCPFrameOutcome {
        let message = request.message
        if let serverIdentifier = message.options.serverIdentifier, serverIdentifier != configuration.serverIdentifier {
            return .dropped(.otherServerSelected)
        }
        guard let current = currentLease(client), current.address == message.clientIPAddress else {
            return .dropped(.notClientsLease)
        }
        table.end(current.address, now: now)
        return .accepted(.release)
    }

    private func inform(_ request: DHCPClientFrame) -> DHCPFrameOutcome {
        let address = request.message.clientIPAddress
        guard configuration.subnet.containsHost(address) else { return .dropped(.informFromOtherNetwork) }
        return .reply(reply(.ack, to: request, yourIPAddress: .any, clientIPAddress: address, leaseTimes: false))
    }

    // MARK: Replies

    private func ack(_ address: IPv4Address, to request: DHCPClientFrame) -> DHCPReply {
        reply(.ack, to: request, yourIPAddress: address, clientIPAddress: request.message.clientIPAddress)
    }

    /// An OFFER or ACK (RFC 2131 §4.3.1 table 3): `xid`, `flags`, `giaddr`, `chaddr` copied; `secs`, `siaddr`
    /// zero; options 54, 51/58/59 (not for INFORM), 1, 3, 6, and 61 echoed (RFC 6842).
    private func reply(
        _ type: DHCPMessageType,
        to request: DHCPClientFrame,
        yourIPAddress: IPv4Address,
        clientIPAddress: IPv4Address,
        leaseTimes: Bool = true
    ) -> DHCPReply {
        let config = configuration
        var options = DHCPOptions(
            subnetMask: config.subnet.mask,
            routers: config.gateway.map { [$0] } ?? [],
            domainNameServers: config.dnsServers,
            serverIdentifier: config.serverIdentifier,
            clientIdentifier: request.message.options.clientIdentifier
        )
        if leaseTimes {
            options.leaseTime = config.leaseTime
            options.renewalTime = config.renewalTime
            options.rebindingTime = config.rebindingTime
        }
        let message = replyMessage(
            type,
            to: request.message,
            yourIPAddress: yourIPAddress,
            clientIPAddress: clientIPAddress,
            options: options
        )
        return DHCPReply(
            message: message,
            answering: request,
            serverMAC: config.serverMAC,
            serverIdentifier: config.serverIdentifier
        )
    }

    /// A NAK (RFC 2131 §4.3.2, table 3): server identifier, message, client identifier; no addresses.
    private func nak(_ reason: DHCPNakReason, to request: DHCPClientFrame) -> DHCPReply {
        let options = DHCPOptions(
            serverIdentifier: configuration.serverIdentifier,
            message: Array(reason.description.utf8),
            clientIdentifier: request.message.options.clientIdentifier
        )
        let message = replyMessage(
            .nak,
            to: request.message,
            yourIPAddress: .any,
            clientIPAddress: .any,
            options: options
        )
        return DHCPReply(
            message: message,
            answering: request,
            serverMAC: configuration.serverMAC,
            serverIdentifier: configuration.serverIdentifier,
            nakReason: reason
        )
    }

    private func replyMessage(
        _ type: DHCPMessageType,
        to client: DHCPMessage,
        yourIPAddress: IPv4Address,
        clientIPAddress: IPv4Address,
        options: DHCPOptions
    ) -> DHCPMessage {
        var message = client
        message.operation = .reply
        message.messageType = type
        message.hops = 0
        message.seconds = 0
        message.clientIPAddress = clientIPAddress
        message.yourIPAddress = yourIPAddress
        message.serverIPAddress = .any
        message.serverName = []
        message.bootFileName = []
        message.options = options
        return message
    }
}
