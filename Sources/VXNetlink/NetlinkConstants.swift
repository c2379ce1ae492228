// Netlink and rtnetlink numbers, written out by hand so the codec stays pure Swift (no C import, testable
// anywhere). Each value carries its kernel name; Sources/CVXLinux/cvx_netns.c `_Static_assert`s every one of them
// against the kernel headers, so a header that disagrees fails the build instead of the request.
//
// Byte order: netlink headers, family headers and integer attributes are in the host's byte order (the socket
// never leaves the machine). Addresses inside attributes (IFA_LOCAL, RTA_GATEWAY, ...) are in network byte
// order, as on the wire. Every encode and decode site names which one it uses.

/// `struct nlmsghdr` message types (`NLMSG_*`) and the rtnetlink types (`RTM_*`) this module speaks.
public struct NetlinkMessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// NLMSG_NOOP: to be ignored.
    public static let noop = NetlinkMessageType(rawValue: 1)
    /// NLMSG_ERROR: an error, or with error 0 an acknowledgement.
    public static let error = NetlinkMessageType(rawValue: 2)
    /// NLMSG_DONE: the end of a multi-part dump.
    public static let done = NetlinkMessageType(rawValue: 3)
    /// NLMSG_OVERRUN: data was lost.
    public static let overrun = NetlinkMessageType(rawValue: 4)

    /// RTM_NEWLINK: create a link, or (without NLM_F_CREATE, on an existing ifindex) change one; also the type
    /// of every link the kernel reports.
    public static let newLink = NetlinkMessageType(rawValue: 16)
    /// RTM_DELLINK.
    public static let deleteLink = NetlinkMessageType(rawValue: 17)
    /// RTM_GETLINK.
    public static let getLink = NetlinkMessageType(rawValue: 18)
    /// RTM_NEWADDR.
    public static let newAddress = NetlinkMessageType(rawValue: 20)
    /// RTM_DELADDR.
    public static let deleteAddress = NetlinkMessageType(rawValue: 21)
    /// RTM_GETADDR.
    public static let getAddress = NetlinkMessageType(rawValue: 22)
    /// RTM_NEWROUTE.
    public static let newRoute = NetlinkMessageType(rawValue: 24)
    /// RTM_DELROUTE.
    public static let deleteRoute = NetlinkMessageType(rawValue: 25)
    /// RTM_GETROUTE.
    public static let getRoute = NetlinkMessageType(rawValue: 26)
    /// RTM_NEWQDISC: attach (with NLM_F_CREATE | NLM_F_REPLACE: replace) a queueing discipline.
    public static let newQdisc = NetlinkMessageType(rawValue: 36)

    public var description: String {
        switch rawValue {
        case 1: return "NLMSG_NOOP"
        case 2: return "NLMSG_ERROR"
        case 3: return "NLMSG_DONE"
        case 4: return "NLMSG_OVERRUN"
        case 16: return "RTM_NEWLINK"
        case 17: return "RTM_DELLINK"
        case 18: return "RTM_GETLINK"
        case 20: return "RTM_NEWADDR"
        case 21: return "RTM_DELADDR"
        case 22: return "RTM_GETADDR"
        case 24: return "RTM_NEWROUTE"
        case 25: return "RTM_DELROUTE"
        case 26: return "RTM_GETROUTE"
        case 36: return "RTM_NEWQDISC"
        default: return "type \(rawValue)"
        }
    }
}

/// `nlmsg_flags` bits. Some bits mean different things for GET, NEW and ERROR messages, as in the kernel.
public struct NetlinkFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// NLM_F_REQUEST: every message to the kernel carries it.
    public static let request = NetlinkFlags(rawValue: 0x1)
    /// NLM_F_MULTI: part of a multi-part reply, ended by NLMSG_DONE.
    public static let multi = NetlinkFlags(rawValue: 0x2)
    /// NLM_F_ACK: answer with an NLMSG_ERROR whose error is 0 on success.
    public static let ack = NetlinkFlags(rawValue: 0x4)
    /// NLM_F_DUMP_INTR: the dump was interrupted by a change; its contents may be inconsistent.
    public static let dumpInterrupted = NetlinkFlags(rawValue: 0x10)

    /// NLM_F_DUMP (ROOT | MATCH), for GET requests: every object.
    public static let dump = NetlinkFlags(rawValue: 0x300)

    /// NLM_F_REPLACE, for NEW requests: replace an existing object.
    public static let replace = NetlinkFlags(rawValue: 0x100)
    /// NLM_F_EXCL, for NEW requests: fail with EEXIST if the object exists.
    public static let exclusive = NetlinkFlags(rawValue: 0x200)
    /// NLM_F_CREATE, for NEW requests: create the object if it does not exist.
    public static let create = NetlinkFlags(rawValue: 0x400)

    /// NLM_F_CAPPED, on NLMSG_ERROR: the echoed request is its header only (NETLINK_CAP_ACK).
    public static let capped = NetlinkFlags(rawValue: 0x100)
    /// NLM_F_ACK_TLVS, on NLMSG_ERROR: extended-ACK attributes follow the echoed request (NETLINK_EXT_ACK).
    public static let ackTLVs = NetlinkFlags(rawValue: 0x200)
}

/// Sizes and alignment of the fixed parts, as the kernel headers define them (asserted in cvx_netns.c).
public enum NetlinkLayout {
    /// NLMSG_ALIGNTO, RTA_ALIGNTO, NLA_ALIGNTO: messages and attributes start on 4-byte boundaries.
    public static let alignment = 4
    /// sizeof(struct nlmsghdr): len u32, type u16, flags u16, seq u32, pid u32.
    public static let headerSize = 16
    /// sizeof(struct nlmsgerr): error s32 + the echoed struct nlmsghdr.
    public static let errorSize = 20
    /// sizeof(struct rtattr) / sizeof(struct nlattr): len u16, type u16.
    public static let attributeHeaderSize = 4
    /// sizeof(struct ifinfomsg): family u8, pad u8, type u16, index s32, flags u32, change u32.
    public static let ifinfomsgSize = 16
    /// sizeof(struct ifaddrmsg): family u8, prefixlen u8, flags u8, scope u8, index u32.
    public static let ifaddrmsgSize = 8
    /// sizeof(struct rtmsg): family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32.
    public static let rtmsgSize = 12

    /// `value` rounded up to the next multiple of 4 (NLMSG_ALIGN / RTA_ALIGN).
    @inlinable
    public static func aligned(_ value: Int) -> Int { (value + alignment - 1) & ~(alignment - 1) }
}

/// NLMSGERR_ATTR_* types of the extended-ACK attributes after an echoed request.
enum ExtendedAckAttribute {
    /// NLMSGERR_ATTR_MSG: NUL-terminated human-readable message.
    static let message: UInt16 = 1
    /// NLMSGERR_ATTR_OFFS: u32 byte offset of the offending attribute in the request.
    static let offset: UInt16 = 2
}

/// IFLA_* attribute types of link messages (`struct ifinfomsg`).
public enum LinkAttribute {
    /// IFLA_ADDRESS: the hardware address (6 bytes for Ethernet and TAP).
    public static let address: UInt16 = 1
    /// IFLA_IFNAME: NUL-terminated interface name, at most 15 bytes before the NUL.
    public static let name: UInt16 = 3
    /// IFLA_MTU: u32.
    public static let mtu: UInt16 = 4
    /// IFLA_MASTER: u32, the ifindex of the bridge (or bond) the link is a port of; 0 releases it.
    public static let master: UInt16 = 10
    /// IFLA_OPERSTATE: u8, RFC 2863 operational state (IF_OPER_UP is 6).
    public static let operState: UInt16 = 16
    /// IFLA_NET_NS_PID: u32, move the link into the network namespace of this process.
    public static let netnsPID: UInt16 = 19
    /// IFLA_NET_NS_FD: u32, move the link into the network namespace this descriptor refers to.
    public static let netnsFD: UInt16 = 28
    /// IFLA_EXT_MASK: u32 of RTEXT_FILTER_* bits that shape GETLINK replies.
    public static let extMask: UInt16 = 29

    /// RTEXT_FILTER_SKIP_STATS: leave the statistics out of GETLINK replies (most of their bytes).
    public static let filterSkipStats: UInt32 = 1 << 3
}

/// IFA_* attribute types of address messages (`struct ifaddrmsg`).
public enum AddressAttribute {
    /// IFA_ADDRESS: the peer address on point-to-point links, else the same as IFA_LOCAL (network byte order).
    public static let address: UInt16 = 1
    /// IFA_LOCAL: the interface's own address (network byte order).
    public static let local: UInt16 = 2
    /// IFA_LABEL: NUL-terminated label, the interface name by default.
    public static let label: UInt16 = 3
    /// IFA_BROADCAST: the subnet's broadcast address (network byte order).
    public static let broadcast: UInt16 = 4
}

/// RTA_* attribute types and `struct rtmsg` values of route messages.
public enum RouteAttribute {
    /// RTA_DST: destination prefix (network byte order); absent for a default route.
    public static let destination: UInt16 = 1
    /// RTA_OIF: u32 output interface index.
    public static let outputInterface: UInt16 = 4
    /// RTA_GATEWAY: next hop (network byte order).
    public static let gateway: UInt16 = 5
    /// RTA_TABLE: u32 table id (for tables above 255; rtm_table carries smaller ids too).
    public static let table: UInt16 = 15

    /// RT_TABLE_MAIN.
    public static let mainTable: UInt8 = 254
    /// RTPROT_BOOT: what `ip route add` writes for an administrator's route.
    public static let protocolBoot: UInt8 = 3
    /// RT_SCOPE_UNIVERSE: a gatewayed route.
    public static let scopeUniverse: UInt8 = 0
    /// RT_SCOPE_LINK: a directly connected destination.
    public static let scopeLink: UInt8 = 253
    /// RTN_UNICAST.
    public static let typeUnicast: UInt8 = 1
}

/// Traffic-control values for queueing disciplines (`<linux/rtnetlink.h>`, `<linux/pkt_sched.h>`).
public enum QdiscAttribute {
    /// TCA_KIND: NUL-terminated name of the discipline ("noqueue", "pfifo_fast", ...).
    public static let kind: UInt16 = 1
    /// TC_H_ROOT: `tcm_parent` of a device's root discipline.
    public static let rootParent: UInt32 = 0xFFFF_FFFF
}

/// Address families (`AF_*`) that appear in family headers.
public enum NetlinkFamily {
    /// AF_UNSPEC.
    public static let unspecified: UInt8 = 0
    /// AF_INET.
    public static let inet: UInt8 = 2
    /// AF_NETLINK, for socket().
    public static let netlink: Int32 = 16
    /// NETLINK_ROUTE, the rtnetlink protocol.
    public static let routeProtocol: Int32 = 0
}

/// `ifi_flags` bits (`IFF_*`, <linux/if.h>).
public struct LinkFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IFF_UP: administratively up.
    public static let up = LinkFlags(rawValue: 0x1)
    /// IFF_BROADCAST.
    public static let broadcast = LinkFlags(rawValue: 0x2)
    /// IFF_LOOPBACK.
    public static let loopback = LinkFlags(rawValue: 0x8)
    /// IFF_RUNNING: operationally up (RFC 2863 UP).
    public static let running = LinkFlags(rawValue: 0x40)
    /// IFF_NOARP.
    public static let noARP = LinkFlags(rawValue: 0x80)
    /// IFF_MULTICAST.
    public static let multicast = LinkFlags(rawValue: 0x1000)
    /// IFF_LOWER_UP: the driver signals carrier (a TAP has carrier while a descriptor is attached).
    public static let lowerUp = LinkFlags(rawValue: 0x10000)

    public var description: String {
        let names: [(LinkFlags, String)] = [
            (.up, "UP"), (.broadcast, "BROADCAST"), (.loopback, "LOOPBACK"), (.running, "RUNNING"),
            (.noARP, "NOARP"), (.multicast, "MULTICAST"), (.lowerUp, "LOWER_UP"),
        ]
        let known = names.filter { contains($0.0) }.map(\.1)
        return "<" + known.joined(separator: ",") + ">"
    }
}
