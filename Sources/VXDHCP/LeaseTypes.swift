import VXPacket

/// A point in time, in whole seconds on the daemon's clock.
///
/// VXDHCP never reads a clock: every call that depends on time takes `now`, so tests are deterministic. Leases
/// are persisted and compared against `now` after a restart, so the daemon should pass wall-clock seconds since
/// the Unix epoch (`CLOCK_REALTIME`), not a monotonic clock that restarts at boot.
public struct LeaseInstant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Seconds since the clock's epoch.
    public var seconds: Int64

    /// - Parameter seconds: seconds since the clock's epoch.
    public init(seconds: Int64) {
        self.seconds = seconds
    }

    /// This instant plus `duration` seconds.
    public func advanced(by duration: UInt32) -> LeaseInstant {
        LeaseInstant(seconds: seconds + Int64(duration))
    }

    public static func < (lhs: LeaseInstant, rhs: LeaseInstant) -> Bool { lhs.seconds < rhs.seconds }

    public init(from decoder: any Decoder) throws {
        seconds = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(seconds)
    }

    public var description: String { "t=\(seconds)" }
}

/// Who holds an address: a DHCP client, or an assignment the daemon made itself.
///
/// RFC 2131 §4.2: a client is identified by its client identifier (option 61) when it sends one, else by
/// `chaddr`. The daemon's static assignments (`--ip auto`, `--ip A.B.C.D`) use `.named`, e.g. the port name; a
/// static lease owned by `.hardwareAddress` or `.clientIdentifier` is a host reservation: the DHCP server hands
/// that address to that client.
public enum LeaseOwner: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// DHCP option 61, type byte included.
    case clientIdentifier([UInt8])
    /// The client's `chaddr` (no option 61).
    case hardwareAddress(MACAddress)
    /// A static assignment made by the daemon, e.g. a port name.
    case named(String)

    /// The owner a DHCP message identifies: its client identifier if present, else its MAC.
    /// - Parameters:
    ///   - clientIdentifier: option 61, or nil.
    ///   - hardwareAddress: the message's `chaddr`.
    public init(clientIdentifier: [UInt8]?, hardwareAddress: MACAddress) {
        if let clientIdentifier, !clientIdentifier.isEmpty {
            self = .clientIdentifier(clientIdentifier)
        } else {
            self = .hardwareAddress(hardwareAddress)
        }
    }

    /// The persisted text form: `id:<hex>`, `mac:<aa:bb:cc:dd:ee:ff>` or `name:<text>`.
    public var description: String {
        switch self {
        case .clientIdentifier(let id):
            "id:" + id.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        case .hardwareAddress(let mac): "mac:\(mac)"
        case .named(let name): "name:\(name)"
        }
    }

    /// Parses the text form written by `description`.
    /// - Returns: nil for anything else.
    public init?(_ text: String) {
        if text.hasPrefix("name:") {
            self = .named(String(text.dropFirst(5)))
        } else if text.hasPrefix("mac:") {
            guard let mac = MACAddress(text.dropFirst(4)) else { return nil }
            self = .hardwareAddress(mac)
        } else if text.hasPrefix("id:") {
            let hex = Array(text.utf8.dropFirst(3))
            guard !hex.isEmpty, hex.count % 2 == 0 else { return nil }
            var bytes: [UInt8] = []
            for i in stride(from: 0, to: hex.count, by: 2) {
                guard let byte = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
                bytes.append(byte)
            }
            self = .clientIdentifier(bytes)
        } else {
            return nil
        }
    }

    public static func < (lhs: LeaseOwner, rhs: LeaseOwner) -> Bool { lhs.description < rhs.description }
}

/// What a lease record means.
public enum LeaseState: String, Hashable, Sendable, Codable, CaseIterable {
    /// Offered in a DHCPOFFER and held for the client until `expires` (the offer hold time).
    case offered
    /// Assigned by DHCPACK until `expires`. After expiry (or RELEASE) the record stays as a memory of who had
    /// the address, so that client gets it back (RFC 2131 §4.3.1); the address is free for others.
    case bound
    /// Assigned by the daemon (or a host reservation); never expires.
    case `static`
    /// Reported in use by a DHCPDECLINE; unusable until `expires`.
    case declined
}

/// One address's record in a `LeaseTable`.
public struct Lease: Hashable, Sendable {
    /// The address.
    public var address: IPv4Address
    /// Who holds or last held it.
    public var owner: LeaseOwner
    /// What the record means.
    public var state: LeaseState
    /// When it stops holding the address; nil for static leases.
    public var expires: LeaseInstant?
    /// The client's host name (option 12), if it sent one.
    public var hostName: String?

    /// - Parameters: the record's fields.
    public init(
        address: IPv4Address,
        owner: LeaseOwner,
        state: LeaseState,
        expires: LeaseInstant?,
        hostName: String? = nil
    ) {
        self.address = address
        self.owner = owner
        self.state = state
        self.expires = expires
        self.hostName = hostName
    }

    /// True while the record holds its address: static, or `now` before `expires`.
    /// - Parameter now: the current time.
    public func isActive(at now: LeaseInstant) -> Bool {
        guard let expires else { return true }
        return now < expires
    }
}
