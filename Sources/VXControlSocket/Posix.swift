// The syscalls of the control socket, each through one funnel (swift-nio's `syscall(blocking:where:_:)` in
// Sources/NIOPosix/System.swift): it retries EINTR, returns the errno as a typed `Errno`, and traps on the errnos
// that can only mean a bug here (EBADF: a descriptor closed under us; EFAULT: a bad pointer). The wrappers are
// `@inline(never) static func`s in a namespace enum, so nothing runs between a call and the read of `errno`.

// Linux with glibc only (Debian is our target); the wrappers name `Glibc.bind` etc. to avoid recursion.
import Glibc
import SystemPackage

enum Posix {
    @inline(__always)
    private static func retrying<T: FixedWidthInteger>(
        _ function: StaticString,
        _ body: () -> T
    ) -> Result<T, Errno> {
        while true {
            let result = body()
            guard result == -1 else { return .success(result) }
            let error = Errno(rawValue: errno)
            if error == .interrupted { continue }
            precondition(
                error != .badFileDescriptor && error != .badAddress,
                "\(function) failed with \(error): a bug in VXControlSocket"
            )
            return .failure(error)
        }
    }

    /// The corresponding C function is `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0)`.
    @inline(never)
    static func unixStreamSocket(nonBlocking: Bool = false) -> Result<FileDescriptor, Errno> {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return retrying("socket") { socket(AF_UNIX, type, 0) }.map(FileDescriptor.init(rawValue:))
    }

    /// The corresponding C function is `bind`.
    @inline(never)
    static func bind(_ fd: FileDescriptor, _ address: UnixSocketAddress) -> Result<Void, Errno> {
        address.withSockAddr { pointer, length in
            retrying("bind") { Glibc.bind(fd.rawValue, pointer, length) }.map { _ in () }
        }
    }

    /// The corresponding C function is `connect`.
    @inline(never)
    static func connect(_ fd: FileDescriptor, _ address: UnixSocketAddress) -> Result<Void, Errno> {
        address.withSockAddr { pointer, length in
            retrying("connect") { Glibc.connect(fd.rawValue, pointer, length) }.map { _ in () }
        }
    }

    /// The corresponding C function is `listen`.
    @inline(never)
    static func listen(_ fd: FileDescriptor, backlog: Int32) -> Result<Void, Errno> {
        retrying("listen") { Glibc.listen(fd.rawValue, backlog) }.map { _ in () }
    }

    /// The corresponding C functions are `accept(fd, NULL, NULL)` and `fcntl(F_SETFD, FD_CLOEXEC)`. (Glibc's
    /// module map hides `accept4`, which needs `_GNU_SOURCE`; vxswitchd does not fork, so the gap is harmless.)
    @inline(never)
    static func accept(_ fd: FileDescriptor) -> Result<FileDescriptor, Errno> {
        retrying("accept") { Glibc.accept(fd.rawValue, nil, nil) }.flatMap { raw in
            let connection = FileDescriptor(rawValue: raw)
            return setCloseOnExec(connection).map { connection }.mapError { error in
                _ = try? connection.close()
                return error
            }
        }
    }

    /// The corresponding C function is `fcntl(fd, F_SETFD, FD_CLOEXEC)`.
    @inline(never)
    static func setCloseOnExec(_ fd: FileDescriptor) -> Result<Void, Errno> {
        retrying("fcntl") { fcntl(fd.rawValue, F_SETFD, FD_CLOEXEC) }.map { _ in () }
    }

    /// The corresponding C function is `send(fd, buf, len, MSG_NOSIGNAL)`: a peer that went away yields EPIPE
    /// instead of a SIGPIPE that would kill the daemon.
    @inline(never)
    static func send(_ fd: FileDescriptor, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        retrying("send") { Glibc.send(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The corresponding C function is `recv(fd, buf, len, 0)`.
    @inline(never)
    static func receive(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        retrying("recv") { recv(fd.rawValue, buffer.baseAddress, buffer.count, 0) }
    }

    /// The corresponding C function is `poll`. Returns the `revents` of each descriptor, in order.
    /// - Parameters:
    ///   - fds: the descriptors, each waited on for `POLLIN` (or `events` when given).
    ///   - timeoutMilliseconds: -1 to wait forever.
    @inline(never)
    static func poll(
        _ fds: [FileDescriptor],
        events: Int16 = Int16(POLLIN),
        timeoutMilliseconds: Int32
    ) -> Result<[Int16], Errno> {
        var entries = fds.map { pollfd(fd: $0.rawValue, events: events, revents: 0) }
        let count = nfds_t(entries.count)
        return retrying("poll") { Glibc.poll(&entries, count, timeoutMilliseconds) }.map { _ in
            entries.map(\.revents)
        }
    }

    /// The corresponding C function is `setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, ...)`.
    @inline(never)
    static func setSendTimeout(_ fd: FileDescriptor, _ duration: Duration) -> Result<Void, Errno> {
        let (seconds, attoseconds) = duration.components
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        let length = socklen_t(MemoryLayout<timeval>.size)
        return retrying("setsockopt") { setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &value, length) }
            .map { _ in () }
    }

    /// The corresponding C functions are `pipe` and `fcntl(F_SETFD, FD_CLOEXEC)` (`pipe2` needs `_GNU_SOURCE`).
    @inline(never)
    static func pipe() -> Result<(read: FileDescriptor, write: FileDescriptor), Errno> {
        var fds: [Int32] = [-1, -1]
        return retrying("pipe") { Glibc.pipe(&fds) }.flatMap { _ in
            let read = FileDescriptor(rawValue: fds[0])
            let write = FileDescriptor(rawValue: fds[1])
            return setCloseOnExec(read).flatMap { setCloseOnExec(write) }.map { (read, write) }.mapError { error in
                _ = try? read.close()
                _ = try? write.close()
                return error
            }
        }
    }

    /// The corresponding C function is `mkdir`.
    @inline(never)
    static func mkdir(_ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying("mkdir") { Glibc.mkdir(path, mode) }.map { _ in () }
    }

    /// The corresponding C function is `chmod`.
    @inline(never)
    static func chmod(_ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying("chmod") { Glibc.chmod(path, mode) }.map { _ in () }
    }

    /// The corresponding C function is `unlink`.
    @inline(never)
    static func unlink(_ path: String) -> Result<Void, Errno> {
        retrying("unlink") { Glibc.unlink(path) }.map { _ in () }
    }

    /// The corresponding C function is `lstat`. Returns the file's type bits, device and inode.
    @inline(never)
    static func lstat(_ path: String) -> Result<FileIdentity, Errno> {
        var info = stat()
        return retrying("lstat") { Glibc.lstat(path, &info) }.map { _ in
            FileIdentity(type: info.st_mode & S_IFMT, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
    }
}

/// What `lstat` says about a path, enough to recognise our own socket file later.
struct FileIdentity: Equatable, Sendable {
    var type: mode_t  // st_mode & S_IFMT
    var device: UInt64  // st_dev
    var inode: UInt64  // st_ino

    var isSocket: Bool { type == S_IFSOCK }
}

/// A `sockaddr_un` for a filesystem path.
struct UnixSocketAddress: Sendable {
    /// `sun_path` holds 108 bytes including the terminating NUL.
    static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private var storage: sockaddr_un

    /// Returns nil when `path` is empty, longer than `maxPathLength` bytes, or contains NUL.
    init?(path: String) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= UnixSocketAddress.maxPathLength, !bytes.contains(0) else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)  // the rest of sun_path is already zero
        }
        self.storage = address
    }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}
