// The underlay's ARP table, for the TAP underlay mode.
//
// In that mode the switch owns its VTEP address (`localAddress`) and a MAC on a TAP bridged to the uplink, and writes
// whole outer Ethernet frames itself. So it must do on the underlay what the kernel would: answer ARP requests for its
// own address, and resolve the MAC of each peer's next hop (the peer itself when on-link, else the gateway).
//
// Flow (UnderlayService.swift): workers punt underlay ARP frames to the punt service thread, which passes each to
// `handle(frame:now:)`, sends the reply it returns, and republishes `macsByRemote()` to the dataplane when the result
// says a wanted next hop changed. The maintenance thread sends what `requestsDue(now:)` returns once a second, and
// adding a peer at once. The peer list reaches the table through `setWanted(_:)` whenever the config is published.
//
// Threads: a value type with no locks of its own; the daemon keeps it in a Mutex that each of those threads takes.
// The dataplane sees only the published map. No I/O and no clock inside: the caller passes `now`, so tests drive time.
//
// Learning follows RFC 826's "merge" rule, narrowed for a host that only talks to a few next hops:
//   - a request for our address creates (or updates) the sender's entry, and is answered;
//   - a reply creates (or updates) the sender's entry, whoever it was addressed to (the bridge may flood it to us);
//   - any other request updates the sender's entry only if it already exists: that is how a gratuitous ARP
//     (sender == target) moves a next hop to its new MAC, without letting every broadcaster on the LAN fill the table.
// Only neighbours are learned: unicast senders on the local prefix, or the gateway (which may be off-prefix, as with
// a /32 address and an on-link route to the gateway). Frames that claim our own address or MAC, or carry a zero,
// broadcast or multicast sender MAC, or a multicast or broadcast sender address, are ignored whole: they are loops or
// spoofing, and learning from them would send tunnel traffic to the wrong place.

import VXPacket

/// The underlay neighbour (ARP) table of a switch that owns its VTEP address on a TAP bridged to the uplink.
///
/// Holds the MAC address of each wanted next hop (see `setWanted(_:)`), answers ARP requests for `localAddress`, and
/// says which ARP requests to send when. Owned by one thread; time is passed in.
///
/// Wanted next hops are never evicted. Other entries (learned from the network, or next hops no longer wanted) stay
/// while there is room: at most `capacity` entries in all, the least recently learned evicted first. When more next
/// hops are wanted than `capacity`, the table holds just those.
public struct UnderlayNeighbors: Sendable {
    /// Our VTEP address: ARP requests for it are answered, and requests we send carry it as the sender.
    public let localAddress: IPv4Address
    /// Our MAC on the underlay: the source of every frame we build.
    public let localMAC: MACAddress
    /// The length of the local prefix, 0 ... 32: addresses inside `localAddress/prefixLength` are on-link.
    public let prefixLength: Int
    /// The next hop for remotes off the local prefix, or nil when only on-link remotes are reachable.
    public let gateway: IPv4Address?
    /// How long to wait for an answer before asking again.
    public let requestInterval: Duration
    /// How long a learned MAC counts as fresh; after that it is asked again (and still used meanwhile).
    public let refreshInterval: Duration
    /// The most entries kept, unless more next hops than this are wanted (see the type's doc).
    public let capacity: Int

    /// One next hop's state.
    struct Entry {
        /// The learned MAC, nil until the first answer.
        var mac: MACAddress?
        /// When `mac` was last learned or confirmed by a frame from the neighbour.
        var confirmed: ContinuousClock.Instant?
        /// When we last sent a request for this address.
        var asked: ContinuousClock.Instant?
        /// Eviction order: the value of `stamps` when the entry was created or last learned; smallest goes first.
        var stamp: UInt64
    }

    /// Every entry, by neighbour address.
    private var table: [IPv4Address: Entry] = [:]
    /// The wanted remotes and the next hop of each (unreachable remotes are left out).
    private var wantedRemotes: [IPv4Address: IPv4Address] = [:]
    /// The next hops of `wantedRemotes`: the entries that are never evicted and are asked for.
    private var wantedHops: Set<IPv4Address> = []
    /// A counter behind `Entry.stamp`; a counter rather than `now` because `setWanted` has no time.
    private var stamps: UInt64 = 0

    /// - Parameters:
    ///   - localAddress: our VTEP address; must be a unicast address.
    ///   - localMAC: our MAC on the underlay; must be unicast and not zero (`defaultMAC(for:)` gives one).
    ///   - prefixLength: the local prefix length, 0 ... 32.
    ///   - gateway: the next hop for remotes off the prefix; must be unicast and not `localAddress`. It may lie
    ///     outside the prefix (a /32 address with an on-link route to the gateway); replies from it are learned.
    ///   - requestInterval: how long to wait for an answer before asking again.
    ///   - refreshInterval: how long a learned MAC counts as fresh.
    ///   - capacity: the most entries kept (at least 1), unless more next hops are wanted.
    ///
    /// The preconditions are programmer errors and trap: the daemon validates its configuration before building this.
    public init(
        localAddress: IPv4Address,
        localMAC: MACAddress,
        prefixLength: Int,
        gateway: IPv4Address?,
        requestInterval: Duration = .seconds(1),
        refreshInterval: Duration = .seconds(30),
        capacity: Int = 1024
    ) {
        precondition((0...32).contains(prefixLength), "prefix length \(prefixLength) is not in 0...32")
        precondition(localAddress.isUnicast, "local address \(localAddress) is not a unicast address")
        precondition(localMAC.isLearnableSource, "local MAC \(localMAC) is not a unicast address")
        if let gateway {
            precondition(
                gateway.isUnicast && gateway != localAddress,
                "gateway \(gateway) is not a usable next hop"
            )
        }
        precondition(capacity >= 1, "capacity must be at least 1")
        precondition(requestInterval > .zero && refreshInterval > .zero, "intervals must be positive")
        self.localAddress = localAddress
        self.localMAC = localMAC
        self.prefixLength = prefixLength
        self.gateway = gateway
        self.requestInterval = requestInterval
        self.refreshInterval = refreshInterval
        self.capacity = capacity
    }

    // MARK: Routing

    /// The neighbour that frames to `remote` go to.
    /// - Parameter remote: a peer's VTEP address.
    /// - Returns: `remote` when it is a host on the local prefix, else the gateway; nil when there is no gateway, or
    ///   when `remote` is not a unicast address other than ours (multicast groups are not resolved by ARP: their MAC
    ///   derives from the group, RFC 1112 §6.4), or is the prefix's network or broadcast address.
    public func nextHop(for remote: IPv4Address) -> IPv4Address? {
        guard remote.isUnicast, remote != localAddress else { return nil }
        guard !inPrefix(remote) else { return isOnLinkHost(remote) ? remote : nil }
        return gateway
    }

    /// True when `address` is inside `localAddress/prefixLength`.
    private func inPrefix(_ address: IPv4Address) -> Bool {
        let mask: UInt32 = prefixLength == 0 ? 0 : UInt32.max << (32 - prefixLength)
        return address.value & mask == localAddress.value & mask
    }

    /// True when `address` is a host of the local prefix: inside it, and not its network or broadcast address (a /31
    /// or /32 has neither, RFC 3021).
    private func isOnLinkHost(_ address: IPv4Address) -> Bool {
        guard inPrefix(address) else { return false }
        guard prefixLength <= 30 else { return true }
        let host = address.value & (UInt32.max >> prefixLength)
        return host != 0 && host != UInt32.max >> prefixLength
    }

    /// True when a frame from `address` may teach us its MAC: a unicast neighbour other than us.
    private func isNeighbor(_ address: IPv4Address) -> Bool {
        address.isUnicast && address != localAddress && (isOnLinkHost(address) || address == gateway)
    }

    // MARK: What to resolve

    /// Sets the peers whose next hops the table resolves, replacing the previous set.
    ///
    /// New next hops get an unresolved entry (asked for by the next `requestsDue(now:)`), or keep the MAC already
    /// learned for them. Unresolved entries no longer wanted are dropped; resolved ones stay until evicted.
    /// - Parameter remotes: the peers' VTEP addresses; unreachable ones (`nextHop(for:)` is nil) are ignored.
    public mutating func setWanted(_ remotes: some Sequence<IPv4Address>) {
        wantedRemotes = [:]
        for remote in remotes {
            if let hop = nextHop(for: remote) { wantedRemotes[remote] = hop }
        }
        wantedHops = Set(wantedRemotes.values)
        table = table.filter { address, entry in entry.mac != nil || wantedHops.contains(address) }
        for hop in wantedHops where table[hop] == nil {
            table[hop] = Entry(mac: nil, confirmed: nil, asked: nil, stamp: nextStamp())
        }
        evictOverCapacity()
    }

    // MARK: Lookups

    /// The MAC learned for a neighbour.
    /// - Parameter nextHop: a neighbour's address, usually from `nextHop(for:)`.
    /// - Returns: the MAC, or nil when unknown (never asked, or no answer yet).
    public func mac(forNextHop nextHop: IPv4Address) -> MACAddress? {
        table[nextHop]?.mac
    }

    /// What the dataplane needs: for each wanted remote whose next hop is resolved, that next hop's MAC.
    /// - Returns: MACs keyed by remote (not by next hop: several remotes behind one gateway share its MAC).
    public func macsByRemote() -> [IPv4Address: MACAddress] {
        var result: [IPv4Address: MACAddress] = [:]
        for (remote, hop) in wantedRemotes {
            if let mac = table[hop]?.mac { result[remote] = mac }
        }
        return result
    }

    /// One row of `entries()`.
    public struct Neighbor: Sendable, Equatable {
        /// The neighbour's IPv4 address.
        public var address: IPv4Address
        /// Its MAC, or nil while unresolved.
        public var mac: MACAddress?
        /// Whether it is the next hop of a wanted remote.
        public var wanted: Bool
        /// When its MAC was last learned or confirmed, or nil while unresolved.
        public var confirmed: ContinuousClock.Instant?
    }

    /// Every entry, for `vxctl show`.
    /// - Returns: the entries ordered by address.
    public func entries() -> [Neighbor] {
        table.keys.sorted().map { address in
            let entry = table[address]!
            return Neighbor(
                address: address,
                mac: entry.mac,
                wanted: wantedHops.contains(address),
                confirmed: entry.confirmed
            )
        }
    }

    // MARK: Frames from the underlay

    /// Takes an ARP frame from the underlay: answers it if it asks for our address, and learns from it.
    ///
    /// Anything else (not untagged Ethernet + ARP for IPv4, truncated, an unknown operation, a bogus sender) is
    /// ignored: no reply, no change. The frame comes from the network, so nothing in it can trap.
    /// - Parameters:
    ///   - frame: a whole Ethernet frame as read from the TAP.
    ///   - now: the time it was read; becomes the entry's confirmation time.
    /// - Returns: the reply to send, if any, and whether `macsByRemote()` may have changed.
    public mutating func handle(frame: [UInt8], now: ContinuousClock.Instant) -> NeighborUpdate {
        guard let arp = Self.arpPacket(in: frame),
            arp.operation == ARPPacket.request || arp.operation == ARPPacket.reply,
            arp.senderMAC.isLearnableSource, arp.senderMAC != localMAC, arp.senderIP != localAddress,
            arp.senderIP.isUnspecified || arp.senderIP.isUnicast
        else { return NeighborUpdate(reply: nil, wantedChanged: false) }

        let asksForUs = arp.operation == ARPPacket.request && arp.targetIP == localAddress
        // A probe (RFC 5227 §2.1.1, sender 0.0.0.0) is answered too, as Linux does, so its sender sees the address is
        // taken; our reply then carries target 0.0.0.0, and nothing is learned from it.
        // Untagged, whatever the request carried: arpPacket(in:) only passes untagged frames.
        let reply =
            asksForUs
            ? ARPPacket(
                operation: ARPPacket.reply, senderMAC: localMAC, senderIP: localAddress, targetMAC: arp.senderMAC,
                targetIP: arp.senderIP
            ).ethernetFrame(to: arp.senderMAC)
            : nil
        guard isNeighbor(arp.senderIP) else { return NeighborUpdate(reply: reply, wantedChanged: false) }
        let changed = learn(
            arp.senderMAC,
            for: arp.senderIP,
            now: now,
            mayCreate: asksForUs || arp.operation == ARPPacket.reply
        )
        return NeighborUpdate(reply: reply, wantedChanged: changed)
    }

    /// Records that `address` is at `mac`.
    /// - Parameter mayCreate: false to only update an existing entry (RFC 826's merge without the insert).
    /// - Returns: true when `address` is a wanted next hop and its MAC changed.
    private mutating func learn(
        _ mac: MACAddress,
        for address: IPv4Address,
        now: ContinuousClock.Instant,
        mayCreate: Bool
    ) -> Bool {
        guard mayCreate || table[address] != nil else { return false }
        let before = table[address]?.mac
        var entry = table[address] ?? Entry(mac: nil, confirmed: nil, asked: nil, stamp: 0)
        entry.mac = mac
        entry.confirmed = now
        entry.stamp = nextStamp()
        table[address] = entry
        evictOverCapacity()
        return wantedHops.contains(address) && before != mac
    }

    /// Drops the least recently learned entries that are not wanted until at most `capacity` remain, or only wanted
    /// ones do. A linear scan per eviction: the table is small and lives on the control thread.
    private mutating func evictOverCapacity() {
        while table.count > capacity {
            var victim: (address: IPv4Address, stamp: UInt64)?
            for (address, entry) in table where !wantedHops.contains(address) {
                if entry.stamp < victim?.stamp ?? .max { victim = (address, entry.stamp) }
            }
            guard let victim else { return }
            table[victim.address] = nil
        }
    }

    private mutating func nextStamp() -> UInt64 {
        stamps += 1
        return stamps
    }

    /// The ARP packet in `frame`, if it is untagged Ethernet carrying ARP for IPv4 over Ethernet.
    ///
    /// A tagged frame is ignored: our own frames go out untagged, so a tagged ARP belongs to another L2 domain.
    private static func arpPacket(in frame: [UInt8]) -> ARPPacket? {
        let bytes = frame.span.bytes
        guard case .success(let ethernet) = EthernetHeader.parse(bytes), ethernet.vlan == nil,
            ethernet.etherType == .arp,
            case .success(let arp) = ARPPacket.parse(bytes.extracting(ethernet.length..<bytes.byteCount))
        else { return nil }
        return arp
    }

    // MARK: Frames to the underlay

    /// The ARP requests to send now, and records that they were sent.
    ///
    /// A wanted next hop is asked when it is unresolved, or its MAC was confirmed `refreshInterval` or longer ago;
    /// and in either case only if it was not asked within the last `requestInterval`. A stale MAC stays in use while
    /// it is asked again: a next hop that stops answering keeps its last known MAC (its traffic has nowhere better
    /// to go).
    /// - Parameter now: the current time.
    /// - Returns: one broadcast request frame per next hop due, ordered by address.
    public mutating func requestsDue(now: ContinuousClock.Instant) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        for hop in wantedHops.sorted() {
            guard var entry = table[hop] else { continue }
            if entry.mac != nil, let confirmed = entry.confirmed, now - confirmed < refreshInterval { continue }
            if let asked = entry.asked, now - asked < requestInterval { continue }
            entry.asked = now
            table[hop] = entry
            frames.append(Self.request(for: hop, from: localMAC, address: localAddress))
        }
        return frames
    }

    /// A broadcast ARP request (42 bytes: Ethernet + ARP, no padding; the NIC pads to the 60-byte minimum).
    /// - Parameters:
    ///   - target: the address to resolve.
    ///   - mac: our MAC: the Ethernet source and the ARP sender hardware address.
    ///   - address: our IPv4 address: the ARP sender protocol address.
    /// - Returns: the frame; its target hardware address is zero (RFC 826 leaves it unspecified, RFC 5227 §2.1.1 asks
    ///   for zero).
    public static func request(for target: IPv4Address, from mac: MACAddress, address: IPv4Address) -> [UInt8] {
        ARPPacket(operation: ARPPacket.request, senderMAC: mac, senderIP: address, targetMAC: .zero, targetIP: target)
            .ethernetFrame(to: .broadcast)
    }

    /// A locally administered unicast MAC derived from a VTEP address: `02:76:78` ("vx") and the address's last three
    /// octets, so one host's switches on different addresses differ, and the same address always gets the same MAC
    /// (its neighbours' ARP caches stay right across restarts).
    /// - Parameter address: the VTEP address.
    /// - Returns: `02:76:78:b:c:d` for the address `a.b.c.d`.
    public static func defaultMAC(for address: IPv4Address) -> MACAddress {
        MACAddress(raw: 0x02_76_78 << 24 | UInt64(address.value & 0xFF_FFFF))
    }
}

/// What handling one underlay ARP frame asks the caller to do.
public struct NeighborUpdate: Sendable, Equatable {
    /// An ARP reply to send on the underlay, when the frame was a request for our address.
    public var reply: [UInt8]?
    /// True when a wanted next hop's MAC changed (learned, or moved): republish `macsByRemote()`.
    public var wantedChanged: Bool

    /// - Parameters:
    ///   - reply: the frame to send, or nil.
    ///   - wantedChanged: whether a wanted next hop's MAC changed.
    public init(reply: [UInt8]?, wantedChanged: Bool) {
        self.reply = reply
        self.wantedChanged = wantedChanged
    }
}
