// Underlay sockets: where tunnel traffic enters and leaves the switch.
//
//   UDP (VXLAN)   bound to local IPv4:4789, receive only: each datagram is VXLAN header + inner frame; the
//                 engine reports the sender's address as `ReceivedFrame.remote`. With UDP_GRO on, the kernel
//                 hands over a run of same-flow, same-size datagrams as one read of up to 64 KiB, with their
//                 size in a cmsg (`ReceivedFrame.segmentSize`), so engines read it into large buffers.
//   UDP senders   bound to local IPv4 and a kernel-chosen port, send only: VXLAN leaves through a small pool of
//                 them, picked by the inner flow hash, so the UDP source port still follows the flow (RFC 7348
//                 §5) while every send can be a UDP GSO send (UDP_SEGMENT) of up to 64 datagrams. DF clear
//                 (IP_PMTUDISC_DONT) and TTL 64, like the raw sender's header; the UDP checksum stays on
//                 (the kernel refuses UDP_SEGMENT with SO_NO_CHECK; veth and most NICs offload it).
//   raw GRE       socket(AF_INET, SOCK_RAW, IPPROTO_GRE), receive only: each datagram starts with the outer
//                 IPv4 header (raw IPv4 sockets always deliver it), then GRE.
//   raw sender    socket(AF_INET, SOCK_RAW, IPPROTO_RAW), send only: IP_HDRINCL is implied, so every send
//                 carries the complete outer IPv4 header (the kernel fills in the checksum, the total length
//                 and, when zero, the source address and ID) and is routed by the sockaddr_in destination.
//
// Both receive sockets get large kernel buffers (SO_RCVBUFFORCE first, which passes rmem_max as root, then
// SO_RCVBUF) and SO_RXQ_OVFL, so the engine can report how many datagrams the kernel dropped because the
// receive queue was full (see EpollEngine.receiveQueueDrops(for:)).
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
    public let localAddress: IPv4Address
    /// The bound UDP port as the kernel reports it (useful after binding port 0); 0 for raw sockets.
    public let localPort: UInt16
    /// The kernel's receive buffer size after enlarging (SO_RCVBUF as read back; the kernel doubles requests).
    public let receiveBufferBytes: Int

    fileprivate init(fd: Int32, kind: PortKind, localAddress: IPv4Address, localPort: UInt16, receiveBufferBytes: Int) {
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
    ///   - local: the underlay address to bind (`.any` for all).
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
        local: IPv4Address, port: UInt16 = vxlanPort, bufferBytes: Int = defaultBufferBytes, reusePort: Bool = false,
        gro: Bool = true
    ) throws(IOError) -> TunnelSocket {
        try makeSocket(type: SOCK_DGRAM, protocol: Int32(IPPROTO_UDP), what: "UDP", kind: .udpTunnel) { fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            try setOption(fd, SOL_SOCKET, CVX_SO_RXQ_OVFL, 1, "setsockopt(SO_RXQ_OVFL)")
            if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)") }
            if gro { try setOption(fd, CVX_SOL_UDP, CVX_UDP_GRO, 1, "setsockopt(UDP_GRO)") }
            try bindSocket(fd, local, port)
            return try boundAddress(fd)
        }
    }

    /// Opens a non-blocking raw IPPROTO_GRE socket; datagrams start with the outer IPv4 header.
    /// - Parameters:
    ///   - local: when not nil, binds to it, so only GRE addressed to that underlay address arrives.
    ///   - bufferBytes: receive buffer size to ask for.
    /// - Returns: the socket, with SO_RXQ_OVFL on.
    /// - Throws: `IOError` (EPERM without CAP_NET_RAW).
    public static func openRawGRE(local: IPv4Address? = nil, bufferBytes: Int = defaultBufferBytes) throws(IOError)
        -> TunnelSocket
    {
        try makeSocket(type: SOCK_RAW, protocol: Int32(IPPROTO_GRE), what: "raw GRE", kind: .rawGRE) { fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            try setOption(fd, SOL_SOCKET, CVX_SO_RXQ_OVFL, 1, "setsockopt(SO_RXQ_OVFL)")
            if let local { try bindSocket(fd, local, 0) }
            return (local ?? .any, 0)
        }
    }

    /// Opens a non-blocking raw IPPROTO_RAW socket for sending complete IPv4 packets (IP_HDRINCL implied).
    /// - Parameter bufferBytes: send buffer size to ask for.
    /// - Returns: the socket (kind `.rawIPv4Sender`).
    /// - Throws: `IOError` (EPERM without CAP_NET_RAW).
    public static func openRawSender(bufferBytes: Int = defaultBufferBytes) throws(IOError) -> TunnelSocket {
        try makeSocket(type: SOCK_RAW, protocol: Int32(IPPROTO_RAW), what: "raw IPv4 sender", kind: .rawIPv4Sender) {
            fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            return (.any, 0)
        }
    }

    /// Opens a non-blocking UDP socket for sending VXLAN, bound to `local` and a free port in 49152-65535, the
    /// range RFC 7348 §5 recommends for VXLAN source ports (and the one `EncapTemplate.udpSourcePort` uses).
    /// - Parameters:
    ///   - local: the underlay address datagrams leave from (`.any`: the route's source address).
    ///   - bufferBytes: send buffer size to ask for (a GSO send of 64 KiB needs room for it at once).
    /// - Returns: the socket (kind `.udpSender`); `localPort` is its UDP source port.
    /// - Throws: `IOError` naming the failed step.
    public static func openUDPSender(local: IPv4Address, bufferBytes: Int = defaultBufferBytes) throws(IOError)
        -> TunnelSocket
    {
        try makeSocket(type: SOCK_DGRAM, protocol: Int32(IPPROTO_UDP), what: "UDP sender", kind: .udpSender) {
            fd throws(IOError) in
            try enlargeBuffers(fd, bytes: bufferBytes)
            // DF clear and TTL 64, as EncapTemplate writes them for the raw sender: the inner MTU keeps outer
            // packets within the underlay, and if it does not, fragments beat silent loss.
            try setOption(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, CVX_IP_PMTUDISC_DONT, "setsockopt(IP_MTU_DISCOVER)")
            try setOption(fd, Int32(IPPROTO_IP), IP_TTL, Int32(EncapTemplate.timeToLive), "setsockopt(IP_TTL)")
            try bindSourcePort(fd, local)
            return try boundAddress(fd)
        }
    }

    // MARK: - Setup helpers (control path)

    /// Opens a socket, runs `configure` on it (which returns the bound address and port), and wraps it; closes it
    /// if any step fails, so no opener can leak a descriptor on its error path.
    private static func makeSocket(
        type: __socket_type, protocol proto: Int32, what: String, kind: PortKind,
        configure: (Int32) throws(IOError) -> (address: IPv4Address, port: UInt16)
    ) throws(IOError) -> TunnelSocket {
        let fd = try openSocket(type: type, protocol: proto, what: what)
        do {
            let bound = try configure(fd)
            return TunnelSocket(
                fd: fd, kind: kind, localAddress: bound.address, localPort: bound.port,
                receiveBufferBytes: try getOption(fd, SOL_SOCKET, SO_RCVBUF, "getsockopt(SO_RCVBUF)"))
        } catch {
            closeDescriptor(fd)
            throw error
        }
    }

    private static func openSocket(type: __socket_type, protocol proto: Int32, what: String) throws(IOError) -> Int32 {
        let flags = Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        do {
            return Int32(try Syscall.blocking { Int(socket(AF_INET, flags, proto)) })
        } catch {
            throw IOError(error, "socket(AF_INET, \(what))")
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

    private static func bindSocket(_ fd: Int32, _ address: IPv4Address, _ port: UInt16) throws(IOError) {
        var sin = SocketAddressIPv4.make(address, port: port)
        do {
            _ = try Syscall.blocking {
                unsafe withUnsafePointer(to: &sin) { pointer in
                    unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                        Int(unsafe bind(fd, sa, socklen_t(MemoryLayout<sockaddr_in>.size)))
                    }
                }
            }
        } catch {
            throw IOError(error, "bind(\(address):\(port))")
        }
    }

    /// The UDP source ports VXLAN senders bind: 49152 + 0 ..< 16384.
    public static let sourcePortRange: ClosedRange<UInt16> = EncapTemplate.sourcePortBase...UInt16.max

    /// Binds `fd` to `address` and the first free port of `sourcePortRange`, starting at a random one so that
    /// senders (of this daemon's workers, or of several daemons) spread over the range instead of queueing on
    /// its first ports. The kernel's own choice (port 0) would come from its ephemeral range, 32768-60999.
    private static func bindSourcePort(_ fd: Int32, _ address: IPv4Address) throws(IOError) {
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

    private static func boundAddress(_ fd: Int32) throws(IOError) -> (address: IPv4Address, port: UInt16) {
        var sin = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        do {
            _ = try Syscall.blocking {
                unsafe withUnsafeMutablePointer(to: &sin) { pointer in
                    unsafe pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                        Int(unsafe getsockname(fd, sa, &length))
                    }
                }
            }
        } catch {
            throw IOError(error, "getsockname")
        }
        return (SocketAddressIPv4.address(of: sin), UInt16(bigEndian: sin.sin_port))
    }
}

/// Conversions between `IPv4Address` (host order) and `sockaddr_in` (network order).
enum SocketAddressIPv4 {
    @inline(__always)
    static func make(_ address: IPv4Address, port: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = in_addr(s_addr: address.value.bigEndian)
        return sin
    }

    @inline(__always)
    static func address(of sin: sockaddr_in) -> IPv4Address {
        IPv4Address(value: UInt32(bigEndian: sin.sin_addr.s_addr))
    }
}
#endif
