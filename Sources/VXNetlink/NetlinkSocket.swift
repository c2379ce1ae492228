// The transport under a NetlinkSession: a protocol, so the session's request/response logic runs against a
// mock in tests (containerization's NetlinkSocket + MockNetlinkSocket), and the real NETLINK_ROUTE socket.
//
// Namespaces: a netlink socket talks to the network namespace it was created in, for its whole life, whichever
// thread uses it afterwards. `KernelNetlinkSocket()` is created in the calling thread's namespace;
// `KernelNetlinkSocket.open(inNamespace:)` is created inside another one by a short-lived thread (see
// cvx_netns_socket) and is then used from any thread like the first.
//
// Thread-safety: not Sendable. One socket serves one caller at a time (requests and replies are matched by
// sequence number; two interleaved callers would each read the other's replies).

/// A datagram transport to the kernel's rtnetlink: send one request, receive one datagram at a time.
public protocol NetlinkSocket: AnyObject {
    /// The port id the kernel assigned to this socket (nl_pid); replies to our requests carry it.
    var portID: UInt32 { get }
    /// Sends one complete netlink message.
    /// - Throws: `NetlinkError` with code `.system`.
    func send(_ message: [UInt8]) throws(NetlinkError)
    /// Receives one datagram (one or more netlink messages).
    /// - Throws: `.timedOut` when nothing arrives in time, `.malformedReply` for a datagram larger than the
    ///   buffer (it is dropped), `.system` otherwise.
    func receive() throws(NetlinkError) -> [UInt8]
}

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage

/// A NETLINK_ROUTE socket: bound with a kernel-assigned port id, extended ACKs on, errors capped to the echoed
/// header, strict checking of dump requests, and a receive timeout. Closed on deinit.
public final class KernelNetlinkSocket: NetlinkSocket {
    /// The largest datagram we accept. The kernel sizes dump datagrams from the reader's buffer, up to 32 KiB
    /// (netlink_dump: max(NLMSG_GOODSIZE, min(32 KiB, last recvmsg size))); twice that leaves margin.
    public static let receiveBufferSize = 64 * 1024

    /// The default receive timeout: a kernel request completes in microseconds to milliseconds; 5 s only
    /// guards against waiting forever on a reply that will not come.
    public static let defaultTimeout: Duration = .seconds(5)

    public let portID: UInt32
    /// The socket descriptor, owned: closed in deinit.
    private let descriptor: Int32
    /// Receive buffer, allocated once (control path, but dumps can be many datagrams).
    private var buffer: [UInt8]

    /// Wraps a fresh AF_NETLINK/NETLINK_ROUTE descriptor: sets options, binds, reads the port id. Closes the
    /// descriptor on failure.
    private init(descriptor: Int32, timeout: Duration, operation: String) throws(NetlinkError) {
        var port: UInt32 = 0
        let options = CVX_NETLINK_EXT_ACK | CVX_NETLINK_CAP_ACK | CVX_NETLINK_STRICT_CHK
        let (seconds, attoseconds) = timeout.components
        let milliseconds = UInt32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        let rc = unsafe cvx_netlink_setup(descriptor, options, milliseconds, &port)
        guard rc == 0 else {
            _ = close(descriptor)
            throw NetlinkError(.system, errno: Errno(rawValue: -rc), operation: operation + ": bind")
        }
        self.descriptor = descriptor
        self.portID = port
        self.buffer = [UInt8](repeating: 0, count: Self.receiveBufferSize)
    }

    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    /// - Parameter timeout: how long `receive` waits for a datagram.
    /// - Throws: `.system` when socket or bind fails.
    /// The corresponding C functions are `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)` and `bind`.
    public convenience init(timeout: Duration = KernelNetlinkSocket.defaultTimeout) throws(NetlinkError) {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(NetlinkFamily.netlink, type, NetlinkFamily.routeProtocol)
        guard fd >= 0 else {
            throw NetlinkError(.system, errno: Errno(rawValue: errno), operation: "socket(AF_NETLINK)")
        }
        try self.init(descriptor: fd, timeout: timeout, operation: "netlink socket")
    }

    /// Opens a NETLINK_ROUTE socket inside `namespace`; it talks to that namespace from whichever thread uses it.
    /// - Parameters:
    ///   - namespace: an open network namespace.
    ///   - timeout: how long `receive` waits for a datagram.
    /// - Throws: `.system` (EPERM without CAP_SYS_ADMIN, ...).
    public static func open(
        inNamespace namespace: borrowing NetworkNamespace,
        timeout: Duration = KernelNetlinkSocket.defaultTimeout
    ) throws(NetlinkError) -> KernelNetlinkSocket {
        try open(inNamespaceDescriptor: namespace.fileDescriptor, timeout: timeout, label: "\(namespace.locator)")
    }

    /// Opens a NETLINK_ROUTE socket inside the network namespace `descriptor` refers to (an nsfs file the caller
    /// opened: /run/netns/NAME, /proc/PID/ns/net, ...).
    /// - Parameters:
    ///   - descriptor: an open nsfs descriptor of a network namespace; the caller keeps ownership.
    ///   - timeout: how long `receive` waits for a datagram.
    ///   - label: names the namespace in errors.
    /// - Throws: `.system` (EINVAL when `descriptor` is not a network namespace, EPERM, ...).
    /// The corresponding C function is `cvx_netns_socket` (a thread that calls setns and socket).
    public static func open(
        inNamespaceDescriptor descriptor: FileDescriptor,
        timeout: Duration = KernelNetlinkSocket.defaultTimeout,
        label: String? = nil
    ) throws(NetlinkError) -> KernelNetlinkSocket {
        let operation = "netlink socket in " + (label ?? "netns fd \(descriptor.rawValue)")
        let fd = cvx_netns_socket(
            descriptor.rawValue,
            NetlinkFamily.netlink,
            Int32(SOCK_RAW.rawValue),
            NetlinkFamily.routeProtocol
        )
        guard fd >= 0 else {
            throw NetlinkError(
                .system,
                errno: Errno(rawValue: -fd),
                operation: operation,
                detail: "setns(CLONE_NEWNET) + socket on a helper thread"
            )
        }
        return try KernelNetlinkSocket(descriptor: fd, timeout: timeout, operation: operation)
    }

    deinit {
        _ = close(descriptor)
    }

    /// The cookie of the network namespace this socket talks to (SO_NETNS_COOKIE): unique for the life of the
    /// system, unlike nsfs inode numbers, which are reused.
    /// - Throws: `.system` (ENOPROTOOPT before Linux 5.14).
    public func namespaceCookie() throws(NetlinkError) -> UInt64 {
        var cookie: UInt64 = 0
        let rc = unsafe cvx_socket_netns_cookie(descriptor, &cookie)
        guard rc == 0 else {
            throw NetlinkError(.system, errno: Errno(rawValue: -rc), operation: "getsockopt(SO_NETNS_COOKIE)")
        }
        return cookie
    }

    /// Sends `message` in one datagram, retrying EINTR. The corresponding C function is `send`.
    public func send(_ message: [UInt8]) throws(NetlinkError) {
        let sent = unsafe message.withUnsafeBytes { bytes in
            Netlink.retryingEINTR { unsafe systemSend(descriptor, bytes.baseAddress, bytes.count) }
        }
        switch sent {
        case .success(let count) where count == message.count:
            return
        case .success(let count):
            throw NetlinkError(.system, operation: "send", detail: "sent \(count) of \(message.count) bytes")
        case .failure(let code):
            throw NetlinkError(.system, errno: code, operation: "send")
        }
    }

    /// Receives one datagram with MSG_TRUNC, so a datagram larger than the buffer is reported, not cut silently.
    /// The corresponding C function is `recv`.
    public func receive() throws(NetlinkError) -> [UInt8] {
        let capacity = buffer.count
        let received = unsafe buffer.withUnsafeMutableBytes { bytes in
            Netlink.retryingEINTR { unsafe systemReceive(descriptor, bytes.baseAddress, capacity, Int32(MSG_TRUNC)) }
        }
        switch received {
        case .success(let count) where count <= capacity:
            return Array(buffer[0..<count])
        case .success(let count):
            throw NetlinkError(
                .malformedReply,
                operation: "recv",
                detail: "datagram of \(count) bytes exceeds the \(capacity)-byte buffer"
            )
        case .failure(let code) where code == .wouldBlock || code == .resourceTemporarilyUnavailable:
            throw NetlinkError(.timedOut, errno: code, operation: "recv", detail: "no reply from the kernel")
        case .failure(let code):
            throw NetlinkError(.system, errno: code, operation: "recv")
        }
    }
}

/// `send(2)` under a name the socket's own `send` method does not shadow.
private func systemSend(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    unsafe send(fd, buffer, count, 0)
}

/// `recv(2)` under a name the socket's own `receive` method does not shadow.
private func systemReceive(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int, _ flags: Int32) -> Int {
    unsafe recv(fd, buffer, count, flags)
}

/// The syscall funnel of VXNetlink (STYLE §3, as VXIO's `Syscall`): a control-path module with a handful of
/// calls, so one function is enough.
enum Netlink {
    /// Runs `body` (returns -1 and sets errno on failure) until it does not fail with EINTR.
    /// EFAULT means our own pointer handling is wrong and traps.
    /// - Returns: the non-negative result, or the errno.
    @inline(never)
    static func retryingEINTR(_ body: () -> Int) -> Result<Int, Errno> {
        while true {
            let result = body()
            if result >= 0 { return .success(result) }
            let code = errno
            if code == EINTR { continue }
            precondition(code != EFAULT, "netlink syscall failed with EFAULT: a VXNetlink pointer is wrong")
            return .failure(Errno(rawValue: code))
        }
    }
}
#endif
