// Underlay sockets: where tunnel traffic enters and leaves the switch.
//
//   UDP (VXLAN)   bound to local:4789 (IPv4 or IPv6), receive only: each datagram is VXLAN header + inner frame; the
//                 engine reports the sender's address as `ReceivedFrame.remote`. With UDP_GRO on, the kernel
//                 hands over a run of same-flow, same-size datagrams as one read of up to 64 KiB, with their
//                 size in a cmsg (`ReceivedFrame.segmentSize`), so engines read it into large buffers.
//   UDP senders   bound to local (IPv4 or IPv6) and a source port, send only: VXLAN leaves through a small pool of
//                 them, picked by the inner flow hash, so the UDP source port still follows the flow (RFC 7348
//                 §5) while every send can be a UDP GSO send (UDP_SEGMENT) of up to 64 datagrams. DF clear
//                 (IP_PMTUDISC_DONT) and TTL 64, like the raw sender's header; the UDP checksum stays on
//                 (the kernel refuses UDP_SEGMENT with SO_NO_CHECK; veth and most NICs offload it). Over
//                 IPv6 the same with IPV6_PMTUDISC_DONT and 64 hops; IPv6 requires the checksum anyway.
//   raw GRE       socket(AF_INET, SOCK_RAW, IPPROTO_GRE), receive only: each datagram starts with the outer
//                 IPv4 header (raw IPv4 sockets always deliver it), then GRE. Over IPv6, socket(AF_INET6,
//                 SOCK_RAW, IPPROTO_GRE): each datagram starts at GRE (raw IPv6 sockets never deliver the IPv6
//                 header), and the sender comes as the message's name.
//   raw sender    socket(AF_INET, SOCK_RAW, IPPROTO_RAW), send only: IP_HDRINCL is implied, so every send
//                 carries the complete outer IPv4 header (the kernel fills in the checksum, the total length
//                 and, when zero, the source address and ID) and is routed by the sockaddr_in destination. Over
//                 IPv6, socket(AF_INET6, SOCK_RAW, IPPROTO_RAW): every send carries the complete IPv6 header, as
//                 written (IPv6 has no header checksum), routed by the sockaddr_in6 destination. Neither is ever
//                 given a packet to read (no packet has protocol 255), unlike a raw IPPROTO_GRE socket, which
//                 gets a copy of every GRE packet.
//
// Both receive sockets get large kernel buffers (SO_RCVBUFFORCE first, which passes rmem_max as root, then
// SO_RCVBUF) and SO_RXQ_OVFL, so the engine can report how many datagrams the kernel dropped because the
// receive queue was full (see EpollEngine.receiveQueueDrops(for:)).
//
// The UDP kinds and the raw GRE receive socket take the family of the address they bind (IPv6 sockets are
// IPV6_V6ONLY, so an IPv6 VTEP never sees IPv4-mapped senders).
//
// A `TunnelSocket` owns its descriptor and closes it on deinit; engines only borrow it (register/unregister).

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage
import VXPacket

/// An open underlay socket. ~Copyable: the descriptor closes exactly once, when the value ends.
public struct TunnelSocket: ~Copyable, Sendable {
    /// The descriptor (non-blocking, close-on-exec). Owned by this value.
    public let fileDescriptor: FileDescriptor
    /// How an engine must treat it.
    public let kind: PortKind
    /// The bound local address (`.any` when unbound).
    public let localAddress: UnderlayAddress
    /// The bound UDP port as the kernel reports it (useful after binding port 0); 0 for raw sockets.
    public let localPort: UInt16
    /// The kernel's receive buffer size after enlarging (SO_RCVBUF as read back; the kernel doubles requests).
    public let receiveBufferBytes: Int

    fileprivate init(
        fd: Int32, kind: PortKind, localAddress: UnderlayAddress, localPort: UInt16, receiveBufferBytes: Int
    ) {
        self.fileDescriptor = FileDescriptor(rawValue: fd)
        self.kind = kind
        self.localAddress = localAddress
        self.localPort = localPort
        self.receiveBufferBytes = receiveBufferBytes
    }

    deinit {
        closeDescriptor(fileDescriptor.rawValue)
    }

    /// Closes the socket now.
    public consuming func close() {}
}

/// Opens the underlay sockets.
public enum TunnelSockets {
    /// The IANA VXLAN port (RFC 7348 §5).
    public static let vxlanPort: UInt16 = 4789
    /// UDP sender sockets the daemon opens: 8 source ports spread flows over 8 underlay paths (ECMP hashes
    /// rarely have more), and each is one more descriptor only.
    public static let defaultUDPSenderCount = 8
    /// Socket buffer size asked for by default: 4 MiB holds ~2,700 full-size datagrams, enough to ride out a
    /// worker stall of a few milliseconds at 10 Gbit/s.
    public static let defaultBufferBytes = 4 << 20

    /// Opens a non-blocking UDP socket bound to `local:port` for receiving VXLAN.
    /// - Parameters:
    ///   - local: the underlay address to bind (`.any` for every IPv4 address); its family is the socket's.
    ///   - port: the UDP port; 0 lets the kernel pick (tests).
    ///   - bufferBytes: receive and send buffer size to ask for.
    ///   - reusePort: set SO_REUSEPORT before binding, so one socket per worker can bind the same address and port
    ///     and the kernel spreads datagrams over them by a hash of the 4-tuple (one flow stays on one socket).
    ///     Every socket of the group must set it, and all must belong to the same user.
    ///   - gro: turn UDP_GRO on (reads of up to 64 KiB carrying many datagrams; engines read such sockets into
    ///     large buffers when the pool has them).
    /// - Returns: the socket, with SO_RXQ_OVFL on.
    /// - Throws: `IOError` naming the failed step (EADDRINUSE when the port is taken).
    public static func openUDP(
        local: UnderlayAddress, port: UInt16 = vxlanPort, bufferBytes: Int = defaultBufferBytes,
        reusePort: Bool = false, gro: Bool = true
    ) throws(IOError) -> TunnelSocket {
        try makeSocket(family: local, type: SOCK_DGRAM, protocol: Int32(IPPROTO_UDP), what: "UDP", kind: .udpTunnel) {
            fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            try setOption(fd, SOL_SOCKET, CVX_SO_RXQ_OVFL, 1, "setsockopt(SO_RXQ_OVFL)")
            if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)") }
            if gro { try setOption(fd, CVX_SOL_UDP, CVX_UDP_GRO, 1, "setsockopt(UDP_GRO)") }
            try bindSocket(fd, local, port)
            return try boundAddress(fd)
        }
    }

    /// Opens a non-blocking raw IPPROTO_GRE socket for receiving GRE: an IPv4 one (kind `.rawGRE`, datagrams
    /// start with the outer IPv4 header) or, for an IPv6 `local`, an IPv6 one (kind `.rawGREIPv6`, datagrams start
    /// at GRE).
    /// - Parameters:
    ///   - local: the underlay address to bind, so only GRE addressed to it arrives; `.any`: every IPv4 address.
    ///   - bufferBytes: receive buffer size to ask for.
    /// - Returns: the socket, with SO_RXQ_OVFL on.
    /// - Throws: `IOError` (EPERM without CAP_NET_RAW).
    public static func openRawGRE(local: UnderlayAddress = .any, bufferBytes: Int = defaultBufferBytes)
        throws(IOError) -> TunnelSocket
    {
        try makeSocket(
            family: local, type: SOCK_RAW, protocol: Int32(IPPROTO_GRE), what: "raw GRE",
            kind: local.isIPv4 ? .rawGRE : .rawGREIPv6
        ) { fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            try setOption(fd, SOL_SOCKET, CVX_SO_RXQ_OVFL, 1, "setsockopt(SO_RXQ_OVFL)")
            if local != .any { try bindSocket(fd, local, 0) }
            return (local, 0)
        }
    }

    /// Opens a non-blocking raw IPPROTO_RAW socket for sending complete IP packets (the header included: IP_HDRINCL
    /// is implied over IPv4, and over IPv6 it is what IPPROTO_RAW means). Nothing is ever delivered to it.
    /// - Parameters:
    ///   - local: the address packets leave from, of the family to send (`.any`: IPv4, unbound). Every packet
    ///     carries its own source address, but binding the socket to it spares each send the kernel's source
    ///     address selection for the route lookup (over IPv6 that was 2.7% of the machine under GRE traffic).
    ///   - bufferBytes: send buffer size to ask for.
    /// - Returns: the socket (kind `.rawSender`).
    /// - Throws: `IOError` (EPERM without CAP_NET_RAW, EADDRNOTAVAIL when `local` is not this host's).
    public static func openRawSender(local: UnderlayAddress = .any, bufferBytes: Int = defaultBufferBytes)
        throws(IOError) -> TunnelSocket
    {
        try makeSocket(
            family: local, type: SOCK_RAW, protocol: Int32(IPPROTO_RAW),
            what: local.isIPv4 ? "raw IPv4 sender" : "raw IPv6 sender", kind: .rawSender
        ) { fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            if local != .any { try bindSocket(fd, local, 0) }
            return (local, 0)
        }
    }

    /// Opens a non-blocking UDP socket for sending VXLAN, bound to `local` and a free port in 49152-65535, the
    /// range RFC 7348 §5 recommends for VXLAN source ports (and the one `EncapTemplate.udpSourcePort` uses).
    /// - Parameters:
    ///   - local: the underlay address datagrams leave from (`.any`: the route's source address); its family is
    ///     the socket's.
    ///   - bufferBytes: send buffer size to ask for (a GSO send of 64 KiB needs room for it at once).
    /// - Returns: the socket (kind `.udpSender`); `localPort` is its UDP source port.
    /// - Throws: `IOError` naming the failed step.
    public static func openUDPSender(local: UnderlayAddress, bufferBytes: Int = defaultBufferBytes) throws(IOError)
        -> TunnelSocket
    {
        try makeSocket(
            family: local, type: SOCK_DGRAM, protocol: Int32(IPPROTO_UDP), what: "UDP sender", kind: .udpSender
        ) { fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            // DF clear and TTL 64, as EncapTemplate writes them for the raw sender: the inner MTU keeps outer
            // packets within the underlay, and if it does not, fragments beat silent loss.
            if local.isIPv4 {
                try setOption(
                    fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, CVX_IP_PMTUDISC_DONT, "setsockopt(IP_MTU_DISCOVER)")
                try setOption(fd, Int32(IPPROTO_IP), IP_TTL, Int32(EncapTemplate.timeToLive), "setsockopt(IP_TTL)")
            } else {
                try setOption(
                    fd, Int32(IPPROTO_IPV6), IPV6_MTU_DISCOVER, CVX_IP_PMTUDISC_DONT, "setsockopt(IPV6_MTU_DISCOVER)")
                try setOption(
                    fd, Int32(IPPROTO_IPV6), IPV6_UNICAST_HOPS, Int32(EncapTemplate.timeToLive),
                    "setsockopt(IPV6_UNICAST_HOPS)")
            }
            try bindSourcePort(fd, local)
            return try boundAddress(fd)
        }
    }

    // MARK: - Setup helpers (control path)

    /// Opens a socket, runs `configure` on it (which returns the bound address and port), and wraps it; closes it
    /// if any step fails, so no opener can leak a descriptor on its error path.
    /// The socket is AF_INET for an IPv4 `family` address, AF_INET6 (and IPV6_V6ONLY, unless raw) for an IPv6 one.
    private static func makeSocket(
        family: UnderlayAddress, type: __socket_type, protocol proto: Int32, what: String, kind: PortKind,
        configure: (Int32) throws(IOError) -> (address: UnderlayAddress, port: UInt16)
    ) throws(IOError) -> TunnelSocket {
        let fd = try openSocket(ipv6: !family.isIPv4, type: type, protocol: proto, what: what)
        do {
            // Raw IPv6 sockets never see IPv4 (and refuse the option, EINVAL: their protocol is their "port").
            if !family.isIPv4 && type != SOCK_RAW {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "setsockopt(IPV6_V6ONLY)")
            }
            let bound = try configure(fd)
            return TunnelSocket(
                fd: fd, kind: kind, localAddress: bound.address, localPort: bound.port,
                receiveBufferBytes: try getOption(fd, SOL_SOCKET, SO_RCVBUF, "getsockopt(SO_RCVBUF)"))
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    private static func openSocket(ipv6: Bool, type: __socket_type, protocol proto: Int32, what: String)
        throws(IOError) -> Int32
    {
        let flags = Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let family = ipv6 ? AF_INET6 : AF_INET
        do {
            return Int32(try Syscall.blocking { Int(socket(family, flags, proto)) })
        } catch {
            throw IOError(error, "socket(\(ipv6 ? "AF_INET6" : "AF_INET"), \(what))")
        }
    }

    /// SO_RCVBUFFORCE then SO_RCVBUF (and the same for the send side). The forced variant needs CAP_NET_ADMIN;
    /// without it the plain option still works, capped at rmem_max / wmem_max.
    private static func enlargeBuffers(_ fd: Int32, bytes: Int) throws(IOError) {
        let value = Int32(clamping: bytes)
        do {
            try setOption(fd, SOL_SOCKET, CVX_SO_RCVBUFFORCE, value, "setsockopt(SO_RCVBUFFORCE)")
        } catch {
            try setOption(fd, SOL_SOCKET, SO_RCVBUF, value, "setsockopt(SO_RCVBUF)")
        }
        do {
            try setOption(fd, SOL_SOCKET, CVX_SO_SNDBUFFORCE, value, "setsockopt(SO_SNDBUFFORCE)")
        } catch {
            try setOption(fd, SOL_SOCKET, SO_SNDBUF, value, "setsockopt(SO_SNDBUF)")
        }
    }

    private static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String)
        throws(IOError)
    {
        var value = value
        do {
            _ = try Syscall.blocking {
                Int(unsafe setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)))
            }
        } catch {
            throw IOError(error, what)
        }
    }

    private static func getOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ what: String) throws(IOError) -> Int {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        do {
            _ = try Syscall.blocking { Int(unsafe getsockopt(fd, level, name, &value, &length)) }
        } catch {
            throw IOError(error, what)
        }
        return Int(value)
    }

    private static func bindSocket(_ fd: Int32, _ address: UnderlayAddress, _ port: UInt16) throws(IOError) {
        var storage = sockaddr_in6()
        let length = unsafe SocketAddress.store(address, port: port, into: &storage)
        do {
            _ = try Syscall.blocking {
                unsafe withUnsafePointer(to: &storage) { pointer in
                    unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                        Int(unsafe bind(fd, sa, length))
                    }
                }
            }
        } catch {
            throw IOError(error, address.isIPv4 ? "bind(\(address):\(port))" : "bind([\(address)]:\(port))")
        }
    }

    /// The UDP source ports VXLAN senders bind: 49152 + 0 ..< 16384.
    public static let sourcePortRange: ClosedRange<UInt16> = EncapTemplate.sourcePortBase...UInt16.max

    /// Binds `fd` to `address` and the first free port of `sourcePortRange`, starting at a random one so that
    /// senders (of this daemon's workers, or of several daemons) spread over the range instead of queueing on
    /// its first ports. The kernel's own choice (port 0) would come from its ephemeral range, 32768-60999.
    private static func bindSourcePort(_ fd: Int32, _ address: UnderlayAddress) throws(IOError) {
        let count = Int(sourcePortRange.upperBound - sourcePortRange.lowerBound) + 1
        let start = Int.random(in: 0..<count)
        for step in 0..<count {
            let port = sourcePortRange.lowerBound + UInt16((start + step) % count)
            do {
                try bindSocket(fd, address, port)
                return
            } catch {
                guard error.errno == EADDRINUSE else { throw error }
            }
        }
        throw IOError(Errno(rawValue: EADDRINUSE), "bind(\(address)): every port in \(sourcePortRange) is in use")
    }

    private static func boundAddress(_ fd: Int32) throws(IOError) -> (address: UnderlayAddress, port: UInt16) {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        do {
            _ = try Syscall.blocking {
                unsafe withUnsafeMutablePointer(to: &storage) { pointer in
                    unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                        Int(unsafe getsockname(fd, sa, &length))
                    }
                }
            }
        } catch {
            throw IOError(error, "getsockname")
        }
        let bound = unsafe SocketAddress.load(from: &storage)
        return (bound?.address ?? .any, bound?.port ?? 0)
    }
}

/// Socket addresses of either family in a `sockaddr_in6`-sized slot: the engines keep one such slot per message
/// for recvmmsg, sendmsg and io_uring names, and an IPv4 address is stored there as a `sockaddr_in`.
enum SocketAddress {
    /// Writes `address:port` into `storage`: a `sockaddr_in` for IPv4, a `sockaddr_in6` for IPv6.
    /// - Returns: the length to pass as the name length.
    @inline(__always) @unsafe
    static func store(_ address: UnderlayAddress, port: UInt16, into storage: UnsafeMutablePointer<sockaddr_in6>)
        -> socklen_t
    {
        if let v4 = address.ipv4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = in_addr(s_addr: v4.value.bigEndian)
            unsafe storage.pointee = sockaddr_in6()
            unsafe UnsafeMutableRawPointer(storage).storeBytes(of: sin, as: sockaddr_in.self)
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        unsafe withUnsafeMutableBytes(of: &sin6.sin6_addr) { bytes in
            unsafe bytes.storeBytes(of: address.high.bigEndian, toByteOffset: 0, as: UInt64.self)
            unsafe bytes.storeBytes(of: address.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        unsafe storage.pointee = sin6
        return socklen_t(MemoryLayout<sockaddr_in6>.size)
    }

    /// The address and port in `storage`, or nil when it holds neither family.
    @inline(__always) @unsafe
    static func load(from storage: UnsafePointer<sockaddr_in6>) -> (address: UnderlayAddress, port: UInt16)? {
        let raw = UnsafeRawPointer(storage)
        switch Int32(unsafe raw.load(as: sa_family_t.self)) {
        case AF_INET:
            let sin = unsafe raw.load(as: sockaddr_in.self)
            return (
                UnderlayAddress(IPv4Address(value: UInt32(bigEndian: sin.sin_addr.s_addr))),
                UInt16(bigEndian: sin.sin_port)
            )
        case AF_INET6:
            var sin6 = unsafe storage.pointee
            let address = unsafe withUnsafeBytes(of: &sin6.sin6_addr) { bytes in
                UnderlayAddress(
                    IPv6Address(
                        high: UInt64(bigEndian: unsafe bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                        low: UInt64(bigEndian: unsafe bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))))
            }
            return (address, UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }
}
#endif
