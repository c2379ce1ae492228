import VXPacket

/// Why a `LeaseTable` operation or initialiser refused.
public enum LeaseTableError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The subnet has no room for a range: prefix longer than /30 (no network/broadcast pair to exclude).
    case invalidSubnet(IPv4Subnet)
    /// The range is not inside the subnet's host addresses (network and broadcast excluded).
    case invalidRange(first: IPv4Address, last: IPv4Address)
    /// The address is not a host address of the subnet.
    case outsideSubnet(IPv4Address)
    /// The address is excluded (gateway, server identifier, or excluded by the daemon).
    case excluded(IPv4Address)
    /// Another owner holds the address.
    case inUse(IPv4Address, by: LeaseOwner)
    /// No free address is left in the range.
    case exhausted

    public var description: String {
        switch self {
        case .invalidSubnet(let s): "subnet \(s) is too small for a DHCP range (prefix must be /30 or shorter)"
        case .invalidRange(let f, let l): "range \(f)-\(l) is not inside the subnet's host addresses"
        case .outsideSubnet(let a): "\(a) is not a host address of the subnet"
        case .excluded(let a): "\(a) is excluded from allocation"
        case .inUse(let a, let o): "\(a) is held by \(o)"
        case .exhausted: "no free address left in the range"
        }
    }
}

/// The addresses of one network on this host: which are free, offered, leased, static or quarantined.
///
/// One table serves both allocators, so they can never hand out the same address: the DHCP server (offers,
/// leases, declines) and the daemon's static assignments (`allocate(for:now:)` for `--ip auto`,
/// `reserve(_:for:)` for `--ip A.B.C.D`, `release(_:)` when the port goes away).
///
/// Records are kept per address. An owner holds at most one record (a client has one lease; assigning it a new
/// address drops the old record). Allocation is deterministic: `nextFree(now:)` picks the lowest address in the
/// range that has never been used (no record), and only when none is left reclaims the record that expired
/// first (ties: lowest address). Expired and released leases stay as records of their last holder, so a client
/// that comes back gets its old address if nobody else took it (RFC 2131 §4.3.1 asks servers to prefer it).
///
/// Excluded from allocation: the network and broadcast addresses (the range must lie inside the subnet's host
/// addresses), and everything in `excluded` (`DHCPServer` adds the gateway and server identifier).
///
/// Time is always passed in (`now`); nothing here reads a clock. A value type: the daemon keeps it (inside its
/// `DHCPServer`, or alone for networks without `--dhcp`) under the lock that guards the network's state, and
/// persists it through `Codable` whenever `revision` has changed.
public struct LeaseTable: Sendable, Equatable {
    /// The network's subnet.
    public let subnet: IPv4Subnet
    /// This host's range: the addresses `nextFree(now:)` picks from.
    public let range: ClosedRange<IPv4Address>
    /// Addresses never allocated, offered or reserved.
    public private(set) var excluded: Set<IPv4Address>
    /// Incremented on every change; the daemon persists the table when it differs from the last saved value.
    /// Not persisted, and not part of `==`.
    public private(set) var revision: UInt64 = 0

    /// Every record, by address.
    private var records: [IPv4Address: Lease] = [:]
    /// Owner to address, for every record that is not `.declined` (a quarantined address belongs to no one).
    private var owners: [LeaseOwner: IPv4Address] = [:]

    /// Creates an empty table.
    /// - Parameters:
    ///   - subnet: the network's subnet; /30 or shorter.
    ///   - range: the addresses this host hands out; inside the subnet, network and broadcast excluded.
    ///   - excluding: addresses never to allocate (e.g. the gateway).
    /// - Throws: `.invalidSubnet`, `.invalidRange`.
    public init(
        subnet: IPv4Subnet,
        range: ClosedRange<IPv4Address>,
        excluding: some Sequence<IPv4Address> = []
    ) throws(LeaseTableError) {
        guard subnet.prefixLength <= 30 else { throw .invalidSubnet(subnet) }
        guard subnet.containsHost(range.lowerBound), subnet.containsHost(range.upperBound) else {
            throw .invalidRange(first: range.lowerBound, last: range.upperBound)
        }
        self.subnet = subnet
        self.range = range
        self.excluded = Set(excluding)
    }

    public static func == (lhs: LeaseTable, rhs: LeaseTable) -> Bool {
        lhs.subnet == rhs.subnet && lhs.range == rhs.range && lhs.excluded == rhs.excluded
            && lhs.records == rhs.records
    }

    // MARK: Queries

    /// Every record, in address order.
    public var leases: [Lease] {
        records.values.sorted { $0.address < $1.address }
    }

    /// The record for `address`, if any (in any state, expired included).
    public func lease(at address: IPv4Address) -> Lease? {
        records[address]
    }

    /// The record `owner` holds or last held, if any (expired included; quarantined addresses belong to no one).
    public func lease(for owner: LeaseOwner) -> Lease? {
        owners[owner].flatMap { records[$0] }
    }

    /// True when `address` is in the range and not excluded.
    public func isAssignable(_ address: IPv4Address) -> Bool {
        range.contains(address) && !excluded.contains(address)
    }

    /// True when `address` could be given to `owner` now: assignable, and free, reclaimable (its record has
    /// expired) or already `owner`'s (and not quarantined).
    /// - Parameters:
    ///   - address: the address.
    ///   - owner: who would get it.
    ///   - now: the current time.
    public func isAvailable(_ address: IPv4Address, for owner: LeaseOwner, now: LeaseInstant) -> Bool {
        guard isAssignable(address) else { return false }
        guard let record = records[address] else { return true }
        if record.owner == owner && record.state != .declined { return true }
        return !record.isActive(at: now)
    }

    /// The address the next allocation would take: the lowest assignable address without a record, else the
    /// assignable address whose record expired first (ties: lowest address). A linear scan from the start of the
    /// range, so O(range) when the pool is nearly full; ranges are a few hundred or thousand addresses and this
    /// runs once per DISCOVER, not per packet.
    /// - Parameter now: the current time.
    /// - Returns: nil when every assignable address is held.
    public func nextFree(now: LeaseInstant) -> IPv4Address? {
        var reclaim: Lease? = nil
        var value = range.lowerBound.value
        while true {
            let address = IPv4Address(value: value)
            if !excluded.contains(address) {
                guard let record = records[address] else { return address }
                if !record.isActive(at: now), let expires = record.expires {
                    if reclaim == nil || expires < reclaim!.expires! { reclaim = record }
                }
            }
            if value == range.upperBound.value { break }
            value += 1
        }
        return reclaim?.address
    }

    // MARK: Static assignments (the daemon)

    /// Assigns `owner` a static address (`--ip auto`): the one it already holds statically, else the next free.
    /// - Parameters:
    ///   - owner: usually `.named(portName)`.
    ///   - now: the current time (expired records may be reclaimed).
    /// - Returns: the address, or `.exhausted`.
    public mutating func allocate(for owner: LeaseOwner, now: LeaseInstant) -> Result<IPv4Address, LeaseTableError> {
        if let current = lease(for: owner), current.state == .static {
            return .success(current.address)
        }
        let preferred = lease(for: owner).map(\.address).flatMap { isAvailable($0, for: owner, now: now) ? $0 : nil }
        guard let address = preferred ?? nextFree(now: now) else { return .failure(.exhausted) }
        assign(address, to: owner, state: .static, expires: nil)
        return .success(address)
    }

    /// Reserves `address` statically for `owner` (`--ip A.B.C.D`, or a host reservation for a DHCP client). The
    /// address may lie outside the range (but inside the subnet): it is then only recorded, so the table knows
    /// every address in use on the network.
    /// - Parameters:
    ///   - address: a host address of the subnet.
    ///   - owner: who gets it; any record `owner` held elsewhere is dropped.
    ///   - now: the current time (an expired lease of another owner may be taken over).
    /// - Returns: success, or `.outsideSubnet`, `.excluded`, `.inUse`.
    @discardableResult
    public mutating func reserve(
        _ address: IPv4Address,
        for owner: LeaseOwner,
        now: LeaseInstant
    ) -> Result<Void, LeaseTableError> {
        guard subnet.containsHost(address) else { return .failure(.outsideSubnet(address)) }
        guard !excluded.contains(address) else { return .failure(.excluded(address)) }
        if let record = records[address], record.owner != owner || record.state == .declined,
            record.isActive(at: now)
        {
            return .failure(.inUse(address, by: record.owner))
        }
        assign(address, to: owner, state: .static, expires: nil)
        return .success(())
    }

    /// Forgets `owner`'s record, whatever its state: the daemon's "unreserve" when a port goes away.
    /// - Parameter owner: the owner.
    /// - Returns: the record removed, or nil.
    @discardableResult
    public mutating func release(_ owner: LeaseOwner) -> Lease? {
        guard let address = owners[owner] else { return nil }
        return remove(address)
    }

    /// Forgets the record for `address`, whatever its state.
    /// - Returns: the record removed, or nil.
    @discardableResult
    public mutating func release(address: IPv4Address) -> Lease? {
        remove(address)
    }

    /// Never allocate `address` again (existing records are kept).
    public mutating func exclude(_ address: IPv4Address) {
        if excluded.insert(address).inserted { revision &+= 1 }
    }

    /// Undoes `exclude(_:)`.
    public mutating func include(_ address: IPv4Address) {
        if excluded.remove(address) != nil { revision &+= 1 }
    }

    /// Drops records that no longer mean anything: expired offers and expired quarantines. Expired bound leases
    /// stay as memories of their last holder (see the type's doc); they are already free for others.
    /// - Parameter now: the current time.
    /// - Returns: the records removed, in address order.
    @discardableResult
    public mutating func expire(now: LeaseInstant) -> [Lease] {
        let stale = records.values.filter { ($0.state == .offered || $0.state == .declined) && !$0.isActive(at: now) }
        for lease in stale { remove(lease.address) }
        return stale.sorted { $0.address < $1.address }
    }

    // MARK: DHCP (DHCPServer)

    /// Records `address` for `owner`, replacing any record `owner` held elsewhere and any (expired) record of
    /// another owner at `address`.
    mutating func assign(
        _ address: IPv4Address,
        to owner: LeaseOwner,
        state: LeaseState,
        expires: LeaseInstant?,
        hostName: String? = nil
    ) {
        precondition((state == .static) == (expires == nil), "only static leases live forever")
        if let previous = owners[owner], previous != address { remove(previous) }
        if let displaced = records[address], displaced.owner != owner, owners[displaced.owner] == address {
            owners[displaced.owner] = nil
        }
        let keptName = hostName ?? records[address].flatMap { $0.owner == owner ? $0.hostName : nil }
        records[address] = Lease(address: address, owner: owner, state: state, expires: expires, hostName: keptName)
        owners[owner] = address
        revision &+= 1
    }

    /// Quarantines `address` until `until` (DHCPDECLINE): it belongs to no one and is not allocated meanwhile.
    mutating func decline(_ address: IPv4Address, until: LeaseInstant) {
        guard var record = records[address] else { return }
        if owners[record.owner] == address { owners[record.owner] = nil }
        record.state = .declined
        record.expires = until
        records[address] = record
        revision &+= 1
    }

    /// Ends a lease now (DHCPRELEASE, or the client chose another server): an offer is dropped, a bound lease
    /// stays as an expired record of its holder.
    mutating func end(_ address: IPv4Address, now: LeaseInstant) {
        guard var record = records[address] else { return }
        switch record.state {
        case .offered:
            remove(address)
        case .bound:
            record.expires = Swift.min(record.expires ?? now, now)
            records[address] = record
            revision &+= 1
        case .static, .declined:
            break
        }
    }

    @discardableResult
    private mutating func remove(_ address: IPv4Address) -> Lease? {
        guard let record = records.removeValue(forKey: address) else { return nil }
        if owners[record.owner] == address { owners[record.owner] = nil }
        revision &+= 1
        return record
    }

    /// Restores a decoded record, checking the invariants `assign` keeps.
    fileprivate mutating func restore(_ lease: Lease) -> String? {
        guard subnet.containsHost(lease.address) else { return "\(lease.address) is outside \(subnet)" }
        guard records[lease.address] == nil else { return "\(lease.address) appears twice" }
        guard (lease.state == .static) == (lease.expires == nil) else {
            return "\(lease.address): only static leases may lack an expiry"
        }
        if lease.state != .declined {
            guard owners[lease.owner] == nil else { return "\(lease.owner) holds two addresses" }
            owners[lease.owner] = lease.address
        }
        records[lease.address] = lease
        return nil
    }
}

// MARK: - Codable

// The persisted form is plain JSON-friendly text: addresses dotted, MACs colon-separated, owners as
// `LeaseOwner.description`, times as seconds; records sorted by address so the same table always encodes to the
// same bytes (with a sorted-keys encoder). `revision` is not persisted. Decoding re-checks every invariant and
// rejects a corrupt file with `DecodingError.dataCorrupted` rather than trapping later.

extension Lease: Codable {
    private enum CodingKeys: String, CodingKey {
        case address, owner, state, expires, hostName
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let addressText = try c.decode(String.self, forKey: .address)
        guard let address = IPv4Address(addressText) else {
            throw DecodingError.dataCorruptedError(
                forKey: .address,
                in: c,
                debugDescription: "bad address \(addressText)"
            )
        }
        let ownerText = try c.decode(String.self, forKey: .owner)
        guard let owner = LeaseOwner(ownerText) else {
            throw DecodingError.dataCorruptedError(forKey: .owner, in: c, debugDescription: "bad owner \(ownerText)")
        }
        self.init(
            address: address,
            owner: owner,
            state: try c.decode(LeaseState.self, forKey: .state),
            expires: try c.decodeIfPresent(LeaseInstant.self, forKey: .expires),
            hostName: try c.decodeIfPresent(String.self, forKey: .hostName)
        )
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(address.description, forKey: .address)
        try c.encode(owner.description, forKey: .owner)
        try c.encode(state, forKey: .state)
        try c.encodeIfPresent(expires, forKey: .expires)
        try c.encodeIfPresent(hostName, forKey: .hostName)
    }
}

extension LeaseTable: Codable {
    private enum CodingKeys: String, CodingKey {
        case subnet, first, last, excluded, leases
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func address(_ text: String, _ key: CodingKeys) throws -> IPv4Address {
            guard let a = IPv4Address(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "bad address \(text)")
            }
            return a
        }
        let subnetText = try c.decode(String.self, forKey: .subnet)
        guard let subnet = IPv4Subnet(subnetText) else {
            throw DecodingError.dataCorruptedError(forKey: .subnet, in: c, debugDescription: "bad subnet \(subnetText)")
        }
        let first = try address(try c.decode(String.self, forKey: .first), .first)
        let last = try address(try c.decode(String.self, forKey: .last), .last)
        guard first <= last else {
            throw DecodingError.dataCorruptedError(
                forKey: .last,
                in: c,
                debugDescription: "range ends before it starts"
            )
        }
        let excluded = try c.decode([String].self, forKey: .excluded).map { try address($0, .excluded) }
        do {
            try self.init(subnet: subnet, range: first...last, excluding: excluded)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .subnet, in: c, debugDescription: error.description)
        }
        for lease in try c.decode([Lease].self, forKey: .leases) {
            if let problem = restore(lease) {
                throw DecodingError.dataCorruptedError(forKey: .leases, in: c, debugDescription: problem)
            }
        }
        revision = 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(subnet.description, forKey: .subnet)
        try c.encode(range.lowerBound.description, forKey: .first)
        try c.encode(range.upperBound.description, forKey: .last)
        try c.encode(excluded.sorted().map(\.description), forKey: .excluded)
        try c.encode(leases, forKey: .leases)
    }
}
