// The rtnetlink requests VXNetlink sends, one function per operation, and the decoders for what the kernel
// reports back (links, addresses). Pure: each function returns a `NetlinkRequest` value whose bytes the tests
// compare against hand-annotated hex; `NetlinkSession` sends them.
//
// Every change request asks for an ACK (NLM_F_ACK), so success is confirmed, not assumed. Creating requests use
// NLM_F_CREATE | NLM_F_EXCL (like `ip addr add` / `ip route add`): an existing address or route is an EEXIST
// error, never silently replaced.

/// An IPv4 address with the prefix length of its subnet, as in `10.0.0.2/24`.
import VXPacket

public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    /// The interface's own address.
    public let address: IPv4Address
    /// The subnet's prefix length, 0...32.
    public let prefixLength: UInt8

    /// - Returns: nil when `prefixLength` is above 32.
    public init?(address: IPv4Address, prefixLength: UInt8) {
        guard prefixLength <= 32 else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses `a.b.c.d/n`. Returns nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]), parts[1].count <= 2,
            parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let length = UInt8(parts[1])
        else { return nil }
        self.init(address: address, prefixLength: length)
    }

    /// The subnet mask, host byte order (`/24` is 0xFFFF_FF00).
    public var netmask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - UInt32(prefixLength)) }

    /// The subnet's network address.
    public var network: IPv4Address { IPv4Address(value: address.value & netmask) }

    /// The subnet's broadcast address, or nil for /31 and /32 (RFC 3021: no broadcast on point-to-point).
    public var broadcast: IPv4Address? {
        prefixLength >= 31 ? nil : IPv4Address(value: address.value | ~netmask)
    }

    /// True when `other` is inside this subnet.
    public func contains(_ other: IPv4Address) -> Bool { other.value & netmask == address.value & netmask }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// Where `setLinkNamespace` sends a link.
public enum LinkNamespaceTarget: Hashable, Sendable, CustomStringConvertible {
    /// IFLA_NET_NS_FD: the namespace an open nsfs descriptor refers to (race-free; preferred).
    case fileDescriptor(Int32)
    /// IFLA_NET_NS_PID: the namespace of a process (racy if the process can exit and its pid be reused).
    case processID(Int32)

    public var description: String {
        switch self {
        case .fileDescriptor(let fd): return "netns fd \(fd)"
        case .processID(let pid): return "netns of pid \(pid)"
        }
    }
}

/// Builders for every request VXNetlink sends. Interface indices are `Int32`, as `ifi_index` is.
public enum RouteRequest {
    // MARK: Family headers

    /// struct ifinfomsg, host byte order: family AF_UNSPEC, pad, type 0, index, flags, change.
    static func ifinfomsg(index: Int32, flags: UInt32 = 0, change: UInt32 = 0) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(NetlinkFamily.unspecified)  // ifi_family
        writer.bytes.append(0)  // __ifi_pad
        writer.appendHost(UInt16(0))  // ifi_type (ARPHRD_*; the kernel fills it in replies)
        writer.appendHost(index)  // ifi_index
        writer.appendHost(flags)  // ifi_flags
        writer.appendHost(change)  // ifi_change: which flag bits to change
        return writer.bytes
    }

    /// struct ifaddrmsg: family AF_INET, prefixlen, flags 0, scope universe, index (u32, host byte order).
    static func ifaddrmsg(prefixLength: UInt8, index: Int32) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(NetlinkFamily.inet)  // ifa_family
        writer.bytes.append(prefixLength)  // ifa_prefixlen
        writer.bytes.append(0)  // ifa_flags (IFA_F_PERMANENT is set by the kernel)
        writer.bytes.append(RouteAttribute.scopeUniverse)  // ifa_scope
        writer.appendHost(UInt32(bitPattern: index))  // ifa_index
        return writer.bytes
    }

    /// struct rtmsg for an IPv4 unicast route in the main table, protocol boot, scope universe.
    static func rtmsg(destinationLength: UInt8) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(NetlinkFamily.inet)  // rtm_family
        writer.bytes.append(destinationLength)  // rtm_dst_len
        writer.bytes.append(0)  // rtm_src_len
        writer.bytes.append(0)  // rtm_tos
        writer.bytes.append(RouteAttribute.mainTable)  // rtm_table
        writer.bytes.append(RouteAttribute.protocolBoot)  // rtm_protocol
        writer.bytes.append(RouteAttribute.scopeUniverse)  // rtm_scope
        writer.bytes.append(RouteAttribute.typeUnicast)  // rtm_type
        writer.appendHost(UInt32(0))  // rtm_flags
        return writer.bytes
    }

    /// struct tcmsg: family AF_UNSPEC, pads, index, handle 0 (the kernel picks one), parent, info 0.
    static func tcmsg(index: Int32, parent: UInt32) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.append(NetlinkFamily.unspecified)  // tcm_family
        writer.bytes.append(0)  // tcm__pad1
        writer.appendHost(UInt16(0))  // tcm__pad2
        writer.appendHost(index)  // tcm_ifindex
        writer.appendHost(UInt32(0))  // tcm_handle
        writer.appendHost(parent)  // tcm_parent
        writer.appendHost(UInt32(0))  // tcm_info
        return writer.bytes
    }

    private static let skipStats = NetlinkAttribute.uint32(LinkAttribute.extMask, LinkAttribute.filterSkipStats)

    // MARK: Links

    /// RTM_GETLINK by name: one RTM_NEWLINK reply, then the ACK. ENODEV when there is no such link.
    public static func getLink(name: String) -> NetlinkRequest {
        NetlinkRequest(
            type: .getLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: 0),
            attributes: [skipStats, .string(LinkAttribute.name, name)],
            operation: "get link \(name)"
        )
    }

    /// RTM_GETLINK by index.
    public static func getLink(index: Int32) -> NetlinkRequest {
        NetlinkRequest(
            type: .getLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [skipStats],
            operation: "get link ifindex \(index)"
        )
    }

    /// RTM_GETLINK dump: every link of the socket's namespace, statistics left out.
    public static func dumpLinks() -> NetlinkRequest {
        NetlinkRequest(
            type: .getLink,
            flags: .dump,
            familyHeader: ifinfomsg(index: 0),
            attributes: [skipStats],
            operation: "dump links"
        )
    }

    /// RTM_NEWLINK with IFLA_NET_NS_FD or IFLA_NET_NS_PID: moves the link into another namespace. The kernel
    /// brings it down first, keeps its name (EEXIST if the name is taken there) and keeps its ifindex unless that
    /// is taken there too; addresses and routes do not follow.
    public static func setLinkNamespace(index: Int32, to target: LinkNamespaceTarget) -> NetlinkRequest {
        let attribute: NetlinkAttribute
        switch target {
        case .fileDescriptor(let fd): attribute = .uint32(LinkAttribute.netnsFD, UInt32(bitPattern: fd))
        case .processID(let pid): attribute = .uint32(LinkAttribute.netnsPID, UInt32(bitPattern: pid))
        }
        return NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [attribute],
            operation: "move ifindex \(index) to \(target)"
        )
    }

    /// RTM_NEWLINK with IFLA_IFNAME: renames the link. EEXIST when the name is taken. Older kernels refuse
    /// (EBUSY) while the link is up; 6.18 renames a running TAP (checked in NamespaceSystemTests).
    public static func renameLink(index: Int32, to name: String) -> NetlinkRequest {
        NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [.string(LinkAttribute.name, name)],
            operation: "rename ifindex \(index) to \(name)"
        )
    }

    /// RTM_NEWLINK with IFLA_ADDRESS: sets the hardware address.
    public static func setLinkAddress(index: Int32, _ address: MACAddress) -> NetlinkRequest {
        NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [.mac(LinkAttribute.address, address)],
            operation: "set address \(address) on ifindex \(index)"
        )
    }

    /// RTM_NEWLINK with IFLA_MTU.
    public static func setLinkMTU(index: Int32, _ mtu: UInt32) -> NetlinkRequest {
        NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [.uint32(LinkAttribute.mtu, mtu)],
            operation: "set mtu \(mtu) on ifindex \(index)"
        )
    }

    /// RTM_NEWLINK with IFLA_MASTER.
    public static func setLinkMaster(index: Int32, master: Int32) -> NetlinkRequest {
        NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            attributes: [.uint32(LinkAttribute.master, UInt32(bitPattern: master))],
            operation: "set master ifindex \(master) on ifindex \(index)"
        )
    }

    /// RTM_NEWLINK with ifi_change = IFF_UP and ifi_flags = IFF_UP or 0: brings the link up or down, leaving
    /// every other flag alone.
    public static func setLinkUp(index: Int32, _ up: Bool) -> NetlinkRequest {
        NetlinkRequest(
            type: .newLink,
            flags: .ack,
            familyHeader: ifinfomsg(
                index: index,
                flags: up ? LinkFlags.up.rawValue : 0,
                change: LinkFlags.up.rawValue
            ),
            operation: "set ifindex \(index) \(up ? "up" : "down")"
        )
    }

    /// RTM_DELLINK.
    public static func deleteLink(index: Int32) -> NetlinkRequest {
        NetlinkRequest(
            type: .deleteLink,
            flags: .ack,
            familyHeader: ifinfomsg(index: index),
            operation: "delete ifindex \(index)"
        )
    }

    // MARK: Queueing disciplines

    /// RTM_NEWQDISC (create, replace) of the root discipline of link `index`: `tc qdisc replace dev DEV root KIND`.
    public static func replaceRootQdisc(index: Int32, kind: String) -> NetlinkRequest {
        NetlinkRequest(
            type: .newQdisc,
            flags: [.ack, .create, .replace],
            familyHeader: tcmsg(index: index, parent: QdiscAttribute.rootParent),
            attributes: [.string(QdiscAttribute.kind, kind)],
            operation: "set the root qdisc of ifindex \(index) to \(kind)"
        )
    }

    // MARK: Addresses

    /// RTM_NEWADDR (create, exclusive): IFA_LOCAL and IFA_ADDRESS set to the address, plus IFA_BROADCAST for
    /// prefixes up to /30 (what `ip addr add A/N brd +` computes). EEXIST when the address is already there.
    public static func addAddress(index: Int32, _ address: InterfaceAddress) -> NetlinkRequest {
        var attributes: [NetlinkAttribute] = [
            .ipv4(AddressAttribute.local, address.address),
            .ipv4(AddressAttribute.address, address.address),
        ]
        if let broadcast = address.broadcast { attributes.append(.ipv4(AddressAttribute.broadcast, broadcast)) }
        return NetlinkRequest(
            type: .newAddress,
            flags: [.ack, .create, .exclusive],
            familyHeader: ifaddrmsg(prefixLength: address.prefixLength, index: index),
            attributes: attributes,
            operation: "add address \(address) on ifindex \(index)"
        )
    }

    /// RTM_DELADDR. EADDRNOTAVAIL when the address is not there.
    public static func deleteAddress(index: Int32, _ address: InterfaceAddress) -> NetlinkRequest {
        NetlinkRequest(
            type: .deleteAddress,
            flags: .ack,
            familyHeader: ifaddrmsg(prefixLength: address.prefixLength, index: index),
            attributes: [
                .ipv4(AddressAttribute.local, address.address),
                .ipv4(AddressAttribute.address, address.address),
            ],
            operation: "delete address \(address) on ifindex \(index)"
        )
    }

    /// RTM_GETADDR dump of IPv4 addresses; with a non-zero `index` the kernel filters by interface (strict
    /// checking, which `KernelNetlinkSocket` turns on).
    public static func dumpAddresses(index: Int32 = 0) -> NetlinkRequest {
        NetlinkRequest(
            type: .getAddress,
            flags: .dump,
            familyHeader: ifaddrmsg(prefixLength: 0, index: index),
            operation: index == 0 ? "dump IPv4 addresses" : "dump IPv4 addresses of ifindex \(index)"
        )
    }

    // MARK: Routes

    /// RTM_NEWROUTE (create, exclusive): `default via GATEWAY [dev IFINDEX]` in the main table. EEXIST when a
    /// default route exists; ENETUNREACH when no connected route reaches the gateway.
    public static func addDefaultRoute(via gateway: IPv4Address, index: Int32? = nil) -> NetlinkRequest {
        var attributes: [NetlinkAttribute] = [.ipv4(RouteAttribute.gateway, gateway)]
        if let index { attributes.append(.uint32(RouteAttribute.outputInterface, UInt32(bitPattern: index))) }
        return NetlinkRequest(
            type: .newRoute,
            flags: [.ack, .create, .exclusive],
            familyHeader: rtmsg(destinationLength: 0),
            attributes: attributes,
            operation: "add default via \(gateway)" + (index.map { " on ifindex \($0)" } ?? "")
        )
    }

    /// RTM_DELROUTE of the main table's IPv4 default route via `gateway`. ESRCH when there is none.
    public static func deleteDefaultRoute(via gateway: IPv4Address) -> NetlinkRequest {
        NetlinkRequest(
            type: .deleteRoute,
            flags: .ack,
            familyHeader: rtmsg(destinationLength: 0),
            attributes: [.ipv4(RouteAttribute.gateway, gateway)],
            operation: "delete default via \(gateway)"
        )
    }
}

// MARK: - What the kernel reports

/// A link as RTM_NEWLINK reports it.
public struct LinkInfo: Hashable, Sendable, CustomStringConvertible {
    /// ifi_index, unique within the namespace.
    public var index: Int32
    /// IFLA_IFNAME.
    public var name: String
    /// IFLA_ADDRESS when it is 6 bytes (Ethernet, TAP, veth, and loopback's all-zero address); nil when absent or
    /// of another length (tun, ipip).
    public var mac: MACAddress?
    /// IFLA_MTU.
    public var mtu: UInt32
    /// ifi_flags.
    public var flags: LinkFlags
    /// ifi_type (ARPHRD_ETHER is 1, ARPHRD_LOOPBACK 772).
    public var hardwareType: UInt16
    /// IFLA_OPERSTATE (RFC 2863: 2 down, 6 up, 0 unknown), when reported.
    public var operState: UInt8?

    public init(
        index: Int32,
        name: String,
        mac: MACAddress?,
        mtu: UInt32,
        flags: LinkFlags,
        hardwareType: UInt16 = 1,
        operState: UInt8? = nil
    ) {
        self.index = index
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.flags = flags
        self.hardwareType = hardwareType
        self.operState = operState
    }

    /// True when administratively up (IFF_UP).
    public var isUp: Bool { flags.contains(.up) }

    public var description: String {
        "\(index): \(name) \(flags) mtu \(mtu)" + (mac.map { " link/ether \($0)" } ?? "")
    }

    /// Decodes an RTM_NEWLINK message.
    /// - Returns: the link, or why the message is malformed (short ifinfomsg, bad attributes, no name or MTU).
    public static func decode(_ message: NetlinkMessage) -> Result<LinkInfo, NetlinkDecodingFailure> {
        let payload = message.payload
        let reader = ByteReader(bytes: payload)
        guard message.type == .newLink else {
            return .failure(.badPayload(type: message.type, reason: "expected RTM_NEWLINK"))
        }
        guard payload.count >= NetlinkLayout.ifinfomsgSize,
            let hardwareType = reader.host(UInt16.self, at: 2),  // ifi_type
            let index = reader.host(Int32.self, at: 4),  // ifi_index
            let flags = reader.host(UInt32.self, at: 8)  // ifi_flags
        else { return .failure(.truncatedPayload(type: message.type, length: payload.count)) }
        guard let attributes = NetlinkAttribute.decodeAll(payload, in: NetlinkLayout.ifinfomsgSize..<payload.count)
        else { return .failure(.badPayload(type: message.type, reason: "attribute lengths do not add up")) }
        guard let name = attributes.attribute(LinkAttribute.name)?.stringValue, !name.isEmpty else {
            return .failure(.badPayload(type: message.type, reason: "no IFLA_IFNAME"))
        }
        guard let mtu = attributes.attribute(LinkAttribute.mtu)?.uint32Value else {
            return .failure(.badPayload(type: message.type, reason: "no 4-byte IFLA_MTU"))
        }
        return .success(
            LinkInfo(
                index: index,
                name: name,
                mac: attributes.attribute(LinkAttribute.address)?.macValue,
                mtu: mtu,
                flags: LinkFlags(rawValue: flags),
                hardwareType: hardwareType,
                operState: attributes.attribute(LinkAttribute.operState)?.uint8Value
            )
        )
    }
}

/// An IPv4 address as RTM_NEWADDR reports it.
public struct AddressInfo: Hashable, Sendable, CustomStringConvertible {
    /// ifa_index.
    public var index: Int32
    /// IFA_LOCAL (or IFA_ADDRESS when no IFA_LOCAL) with ifa_prefixlen.
    public var address: InterfaceAddress
    /// IFA_BROADCAST, when set.
    public var broadcast: IPv4Address?
    /// IFA_LABEL, when set.
    public var label: String?

    public init(index: Int32, address: InterfaceAddress, broadcast: IPv4Address? = nil, label: String? = nil) {
        self.index = index
        self.address = address
        self.broadcast = broadcast
        self.label = label
    }

    public var description: String { "\(index): inet \(address)" + (label.map { " \($0)" } ?? "") }

    /// Decodes an RTM_NEWADDR message of family AF_INET.
    /// - Returns: the address, or why the message is malformed or not IPv4.
    public static func decode(_ message: NetlinkMessage) -> Result<AddressInfo, NetlinkDecodingFailure> {
        let payload = message.payload
        let reader = ByteReader(bytes: payload)
        guard message.type == .newAddress, payload.count >= NetlinkLayout.ifaddrmsgSize,
            let index = reader.host(UInt32.self, at: 4)  // ifa_index
        else { return .failure(.truncatedPayload(type: message.type, length: payload.count)) }
        guard payload[0] == NetlinkFamily.inet else {
            return .failure(.badPayload(type: message.type, reason: "family \(payload[0]) is not AF_INET"))
        }
        guard let attributes = NetlinkAttribute.decodeAll(payload, in: NetlinkLayout.ifaddrmsgSize..<payload.count)
        else { return .failure(.badPayload(type: message.type, reason: "attribute lengths do not add up")) }
        let local = attributes.attribute(AddressAttribute.local) ?? attributes.attribute(AddressAttribute.address)
        guard let ip = local?.ipv4Value, let address = InterfaceAddress(address: ip, prefixLength: payload[1]) else {
            return .failure(.badPayload(type: message.type, reason: "no 4-byte IFA_LOCAL/IFA_ADDRESS"))
        }
        return .success(
            AddressInfo(
                index: Int32(bitPattern: index),
                address: address,
                broadcast: attributes.attribute(AddressAttribute.broadcast)?.ipv4Value,
                label: attributes.attribute(AddressAttribute.label)?.stringValue
            )
        )
    }
}
