// Network namespaces: open one by name (`ip netns` bind mounts in /run/netns), by process (/proc/PID/ns/net) or
// by any nsfs path; identify it; tell later whether it still exists.
//
// Holding a descriptor keeps a namespace alive, so the daemon must not keep one per container just to watch it
// (nor a socket inside it: a socket holds its namespace too). `NamespaceWatch` remembers instead how to find the
// namespace (name, pid or path), its nsfs identity (st_dev, st_ino) and its cookie, and checks on demand that the
// path still leads to the same namespace:
//   1. stat(path) fails with ENOENT/ESRCH   -> gone: `ip netns del` removed the name, or the process exited.
//   2. (st_dev, st_ino) differ              -> gone: the name or pid now leads to another namespace.
//   3. same inode, and a cookie was taken   -> open the path, read SO_NETNS_COOKIE of a socket created inside it
//                                              and compare: nsfs inode numbers are reused once a namespace dies
//                                              (proc_inum is an IDA, lowest free first), cookies never are.
// Step 3 costs a helper thread and two syscalls (tens of microseconds); steps 1 and 2 one stat.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage

/// How to find a network namespace.
public enum NamespaceLocator: Hashable, Sendable, CustomStringConvertible {
    /// A namespace `ip netns add NAME` created: the bind mount /run/netns/NAME.
    case name(String)
    /// The namespace of a process: /proc/PID/ns/net.
    case pid(Int32)
    /// Any nsfs file or bind mount of one (/var/run/docker/netns/…, /proc/PID/task/TID/ns/net, …).
    case path(String)

    /// The file to open or stat.
    public var path: String {
        switch self {
        case .name(let name): return "/run/netns/\(name)"
        case .pid(let pid): return "/proc/\(pid)/ns/net"
        case .path(let path): return path
        }
    }

    public var description: String {
        switch self {
        case .name(let name): return "netns \(name)"
        case .pid(let pid): return "netns of pid \(pid)"
        case .path(let path): return "netns \(path)"
        }
    }

    /// Why this locator cannot be used, or nil. Names follow `ip netns`: no '/', not "." or "..", 1...255 bytes.
    var problem: String? {
        switch self {
        case .name(let name):
            if name.isEmpty || name.utf8.count > 255 { return "a namespace name must be 1...255 bytes" }
            if name == "." || name == ".." || name.contains("/") { return "\"\(name)\" is not a namespace name" }
            return nil
        case .pid(let pid):
            return pid > 0 ? nil : "pid \(pid) is not a process id"
        case .path(let path):
            return path.isEmpty || path.utf8.contains(0) ? "the path is empty or contains NUL" : nil
        }
    }
}

/// The identity of a namespace file: nsfs device and inode number. Two descriptors or paths refer to the same
/// living namespace exactly when these are equal; a dead namespace's inode number may be given to a new one.
public struct NamespaceIdentity: Hashable, Sendable, CustomStringConvertible {
    /// st_dev (the nsfs superblock; the same for every namespace).
    public var device: UInt64
    /// st_ino (what `ls -Li /proc/self/ns/net` and `readlink` show as net:[INODE]).
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    public var description: String { "net:[\(inode)]" }

    /// stat(2)'s answer for `path` (following the /proc magic link), or its errno.
    static func of(path: String) -> Result<NamespaceIdentity, Errno> {
        var info = stat()
        let rc = unsafe stat(path, &info)
        guard rc == 0 else { return .failure(Errno(rawValue: errno)) }
        return .success(NamespaceIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }

    /// fstat(2)'s answer for `fd`, or its errno.
    static func of(descriptor fd: Int32) -> Result<NamespaceIdentity, Errno> {
        var info = stat()
        let rc = unsafe fstat(fd, &info)
        guard rc == 0 else { return .failure(Errno(rawValue: errno)) }
        return .success(NamespaceIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }
}

/// An open network namespace: a descriptor of its nsfs file, which keeps the namespace alive until closed
/// (deinit). Pass `fileDescriptor` to IFLA_NET_NS_FD, or open sockets inside it.
///
/// Sendable: the value is noncopyable, so sending it hands the only copy (and the descriptor) to the receiver.
public struct NetworkNamespace: ~Copyable, Sendable {
    /// How it was found.
    public let locator: NamespaceLocator
    /// Its nsfs identity.
    public let identity: NamespaceIdentity
    /// The descriptor (O_RDONLY | O_CLOEXEC), owned: do not close it.
    public let fileDescriptor: FileDescriptor

    /// Opens the namespace `locator` leads to and checks that it is a network namespace.
    /// - Throws: `.namespaceNotFound` when the name, process or path does not exist or is not a network
    ///   namespace (with the errno: ENOENT, ESRCH, ENOTTY, EINVAL); `.invalidArgument` for a malformed name;
    ///   `.system` otherwise (EACCES, EMFILE, ...).
    /// The corresponding C functions are `open`, `ioctl(NS_GET_NSTYPE)` and `fstat`.
    public init(_ locator: NamespaceLocator) throws(NetlinkError) {
        let operation = "open \(locator.path)"
        if let problem = locator.problem {
            throw NetlinkError(.invalidArgument, operation: operation, detail: problem)
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(locator.path), .readOnly, options: [.closeOnExec])
        } catch let error as Errno {
            if error == .noSuchFileOrDirectory || error == .noSuchProcess {
                throw NetlinkError(
                    .namespaceNotFound,
                    errno: error,
                    operation: operation,
                    detail: Self.notFoundDetail(locator)
                )
            }
            throw NetlinkError(.system, errno: error, operation: operation)
        } catch {
            throw NetlinkError(.system, operation: operation, detail: "\(error)")
        }
        let check = cvx_netns_check(fd.rawValue)
        guard check == 0 else {
            try? fd.close()
            throw NetlinkError(
                .namespaceNotFound,
                errno: Errno(rawValue: -check),
                operation: operation,
                detail: "\(locator.path) is not a network namespace"
                    + (-check == ENOTTY ? " (not an nsfs file: an interrupted `ip netns add` leaves one)" : "")
            )
        }
        switch NamespaceIdentity.of(descriptor: fd.rawValue) {
        case .success(let identity):
            self.identity = identity
        case .failure(let code):
            try? fd.close()
            throw NetlinkError(.system, errno: code, operation: "fstat \(locator.path)")
        }
        self.locator = locator
        self.fileDescriptor = fd
    }

    /// Opens `ip netns` namespace `name` (/run/netns/NAME).
    public init(named name: String) throws(NetlinkError) { try self.init(.name(name)) }

    /// Opens the network namespace of process `pid` (/proc/PID/ns/net).
    public init(pid: Int32) throws(NetlinkError) { try self.init(.pid(pid)) }

    /// Opens the calling thread's own network namespace (/proc/thread-self/ns/net).
    public static func current() throws(NetlinkError) -> NetworkNamespace {
        try NetworkNamespace(.path("/proc/thread-self/ns/net"))
    }

    deinit {
        try? fileDescriptor.close()
    }

    /// The target for `setLinkNamespace`: this namespace's descriptor.
    public var linkTarget: LinkNamespaceTarget { .fileDescriptor(fileDescriptor.rawValue) }

    /// The namespace's cookie (SO_NETNS_COOKIE of a socket created inside it), unique for the life of the
    /// system. Costs a helper thread (see `KernelNetlinkSocket.open(inNamespace:)`).
    /// - Throws: `.system` (EPERM without CAP_SYS_ADMIN, ENOPROTOOPT before Linux 5.14).
    public func cookie() throws(NetlinkError) -> UInt64 {
        let socketType = Int32(SOCK_DGRAM.rawValue)
        let fd = cvx_netns_socket(fileDescriptor.rawValue, AF_UNIX, socketType, 0)
        guard fd >= 0 else {
            throw NetlinkError(.system, errno: Errno(rawValue: -fd), operation: "socket in \(locator)")
        }
        defer { _ = close(fd) }
        var cookie: UInt64 = 0
        let rc = unsafe cvx_socket_netns_cookie(fd, &cookie)
        guard rc == 0 else {
            throw NetlinkError(.system, errno: Errno(rawValue: -rc), operation: "getsockopt(SO_NETNS_COOKIE)")
        }
        return cookie
    }

    /// Creates TAP interface `name` directly inside this namespace (or attaches to an existing TAP of that name
    /// there): /dev/net/tun is opened by a helper thread that entered the namespace, so TUNSETIFF creates the
    /// interface here without the IFLA_NET_NS_FD move, which is the slow part of a placement (the kernel waits
    /// for RCU grace periods; measured in NamespaceSystemTests). The descriptor carries frames from any thread.
    /// Not persistent: the interface disappears when the last descriptor closes.
    /// - Parameters:
    ///   - name: at most 15 bytes; may contain one `%d` for the kernel to number.
    ///   - virtioHeader: IFF_VNET_HDR (the caller then sets the header size, as VXIO's TAPDevice does).
    ///   - multiQueue: IFF_MULTI_QUEUE.
    /// - Returns: the descriptor (O_NONBLOCK | O_CLOEXEC; the caller owns and closes it) and the kernel's name.
    /// - Throws: `.system` (EPERM, EBUSY for a name taken by another kind of interface, ...).
    /// The corresponding C function is `cvx_netns_tap_open` (a thread that calls setns and `cvx_tap_open`).
    public func createTAP(
        named name: String,
        virtioHeader: Bool = false,
        multiQueue: Bool = false
    ) throws(NetlinkError) -> (fileDescriptor: FileDescriptor, name: String) {
        if let problem = NetlinkSession.interfaceNameProblem(name.replacing("%d", with: "0")) {
            throw NetlinkError(
                .invalidArgument,
                operation: "create TAP in \(locator)",
                detail: "\"\(name)\" \(problem)"
            )
        }
        var flags: UInt32 = 0
        if virtioHeader { flags |= CVX_TAP_VNET_HDR }
        if multiQueue { flags |= CVX_TAP_MULTI_QUEUE }
        var nameOut = [CChar](repeating: 0, count: 16)
        let fd = unsafe nameOut.withUnsafeMutableBufferPointer { out in
            unsafe cvx_netns_tap_open(fileDescriptor.rawValue, name, flags, out.baseAddress)
        }
        guard fd >= 0 else {
            throw NetlinkError(
                .system,
                errno: Errno(rawValue: -fd),
                operation: "create TAP \(name) in \(locator)",
                detail: "setns(CLONE_NEWNET) + open(/dev/net/tun) + TUNSETIFF on a helper thread"
            )
        }
        let bytes = nameOut.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return (FileDescriptor(rawValue: fd), String(decoding: bytes, as: UTF8.self))
    }

    /// Runs `body` with a netlink session inside this namespace, closing the socket afterwards (an open socket
    /// would keep the namespace alive).
    /// - Returns: what `body` returns.
    public func withSession<R>(_ body: (NetlinkSession) throws(NetlinkError) -> R) throws(NetlinkError) -> R {
        let session = NetlinkSession(socket: try KernelNetlinkSocket.open(inNamespace: self))
        return try body(session)
    }

    private static func notFoundDetail(_ locator: NamespaceLocator) -> String {
        switch locator {
        case .name(let name): return "no network namespace named \"\(name)\" (ip netns list)"
        case .pid(let pid): return "no process \(pid)"
        case .path(let path): return "\(path) does not exist"
        }
    }
}

/// Whether a watched namespace is still there.
public enum NamespaceStatus: Hashable, Sendable, CustomStringConvertible {
    /// The locator still leads to the same namespace.
    case alive
    /// The locator leads nowhere, or to another namespace.
    case gone(NamespaceGoneReason)
    /// The check itself failed (EACCES, EMFILE, ...): no verdict.
    case unknown(Errno)

    public var description: String {
        switch self {
        case .alive: return "alive"
        case .gone(let reason): return "gone (\(reason))"
        case .unknown(let code): return "unknown (\(code))"
        }
    }
}

/// Why `NamespaceWatch` says a namespace is gone.
public enum NamespaceGoneReason: Hashable, Sendable, CustomStringConvertible {
    /// The path does not exist: `ip netns del`, or the process exited.
    case notFound
    /// The path leads to another namespace (different inode, or same inode number and a different cookie).
    case replaced

    public var description: String {
        switch self {
        case .notFound: return "its name or process no longer exists"
        case .replaced: return "its name or process now leads to another namespace"
        }
    }
}

/// Remembers a namespace without keeping it alive, and tells on demand whether it still exists. Sendable and
/// cheap to store per container.
public struct NamespaceWatch: Hashable, Sendable, CustomStringConvertible {
    /// How the namespace is found.
    public let locator: NamespaceLocator
    /// Its nsfs identity when the watch was made.
    public let identity: NamespaceIdentity
    /// Its SO_NETNS_COOKIE, when one could be read (nil on kernels before 5.14).
    public let cookie: UInt64?

    /// Records `namespace`'s locator, identity and (if `confirmWithCookie`) cookie.
    /// - Parameters:
    ///   - namespace: an open namespace.
    ///   - confirmWithCookie: also record the cookie, so a namespace that reuses a dead one's inode number is
    ///     not mistaken for it (costs a helper thread now and on every `status()` whose stat matches).
    public init(_ namespace: borrowing NetworkNamespace, confirmWithCookie: Bool = true) {
        self.locator = namespace.locator
        self.identity = namespace.identity
        self.cookie = confirmWithCookie ? try? namespace.cookie() : nil
    }

    /// Builds a watch from recorded values (a daemon restoring state).
    public init(locator: NamespaceLocator, identity: NamespaceIdentity, cookie: UInt64?) {
        self.locator = locator
        self.identity = identity
        self.cookie = cookie
    }

    /// Checks whether the locator still leads to the recorded namespace (see the file's header for the steps).
    public func status() -> NamespaceStatus {
        switch NamespaceIdentity.of(path: locator.path) {
        case .failure(let code) where code == .noSuchFileOrDirectory || code == .noSuchProcess:
            return .gone(.notFound)
        case .failure(let code):
            return .unknown(code)
        case .success(let current) where current != identity:
            return .gone(.replaced)
        case .success:
            break
        }
        guard let cookie else { return .alive }
        do {
            let namespace = try NetworkNamespace(locator)
            guard namespace.identity == identity else { return .gone(.replaced) }
            return try namespace.cookie() == cookie ? .alive : .gone(.replaced)
        } catch {
            if error.code == .namespaceNotFound { return .gone(.notFound) }
            return .unknown(error.errno ?? .ioError)
        }
    }

    /// True when `status()` is `.alive`.
    public var isAlive: Bool { status() == .alive }

    public var description: String { "\(locator) \(identity)" }
}
#endif
