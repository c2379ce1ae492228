// The syscalls of the control-path Unix sockets (VXControlSocket's server and client, VXDocker's client and the
// fake engine in VXDockerTesting), each through one funnel (swift-nio's `syscall(blocking:where:_:)` in
// Sources/NIOPosix/System.swift): it retries EINTR, returns the errno as a typed `Errno`, and traps on the errnos
// that can only mean a bug in the caller (EBADF: a descriptor closed under us; EFAULT: a bad pointer). The wrappers
// are `@inline(never) static func`s in a namespace enum, so nothing runs between a call and the read of `errno`.
//
// `package` access: every user is in this package, and none of it is meant as public API.

// Linux with glibc only (Debian is our target); the wrappers name `Glibc.bind` etc. to avoid recursion.
import Glibc
import SystemPackage

package enum Posix {
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
                "\(function) failed with \(error): a bug in the caller"
            )
            return .failure(error)
        }
    }

    /// The corresponding C function is `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0)`.
    /// - Parameter nonBlocking: adds `SOCK_NONBLOCK` (for a listener that is polled before each `accept`).
    @inline(never)
    package static func unixStreamSocket(nonBlocking: Bool = false) -> Result<FileDescriptor, Errno> {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
            | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        return retrying("socket") { socket(AF_UNIX, type, 0) }.map(FileDescriptor.init(rawValue:))
    }

    /// The corresponding C function is `bind`.
    @inline(never)
    package static func bind(_ fd: FileDescriptor, _ address: UnixSocketAddress) -> Result<Void, Errno> {
        address.withSockAddr { pointer, length in
            retrying("bind") { Glibc.bind(fd.rawValue, pointer, length) }.map { _ in () }
        }
    }

    /// The corresponding C function is `connect`. On a blocking AF_UNIX socket it waits only while the
    /// listener's backlog is full, for at most the socket's SO_SNDTIMEO, and then fails with EAGAIN.
    @inline(never)
    package static func connect(_ fd: FileDescriptor, _ address: UnixSocketAddress) -> Result<Void, Errno> {
        address.withSockAddr { pointer, length in
            retrying("connect") { Glibc.connect(fd.rawValue, pointer, length) }.map { _ in () }
        }
    }

    /// The corresponding C function is `listen`.
    @inline(never)
    package static func listen(_ fd: FileDescriptor, backlog: Int32) -> Result<Void, Errno> {
        retrying("listen") { Glibc.listen(fd.rawValue, backlog) }.map { _ in () }
    }

    /// The corresponding C functions are `accept(fd, NULL, NULL)` and `fcntl(F_SETFD, FD_CLOEXEC)`. (Glibc's
    /// module map hides `accept4`, which needs `_GNU_SOURCE`; our processes do not fork, so the gap is harmless.)
    @inline(never)
    package static func accept(_ fd: FileDescriptor) -> Result<FileDescriptor, Errno> {
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
    package static func setCloseOnExec(_ fd: FileDescriptor) -> Result<Void, Errno> {
        retrying("fcntl") { fcntl(fd.rawValue, F_SETFD, FD_CLOEXEC) }.map { _ in () }
    }

    /// The corresponding C function is `send(fd, buf, len, MSG_NOSIGNAL)`: a peer that went away yields EPIPE
    /// instead of a SIGPIPE that would kill the process.
    @inline(never)
    package static func send(_ fd: FileDescriptor, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        retrying("send") { Glibc.send(fd.rawValue, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The corresponding C function is `recv(fd, buf, len, 0)`.
    @inline(never)
    package static func receive(
        _ fd: FileDescriptor,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Result<Int, Errno> {
        retrying("recv") { recv(fd.rawValue, buffer.baseAddress, buffer.count, 0) }
    }

    /// The corresponding C function is `poll`. Returns the `revents` of each descriptor, in order.
    /// - Parameters:
    ///   - fds: the descriptors, each waited on for `events`.
    ///   - events: the events to wait for, `POLLIN` unless given.
    ///   - timeoutMilliseconds: -1 to wait forever.
    @inline(never)
    package static func poll(
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
    /// - Parameter duration: the timeout; anything under a microsecond (zero and negative included) becomes one
    ///   microsecond, because a zero `timeval` means "no timeout" to the kernel.
    @inline(never)
    package static func setSendTimeout(_ fd: FileDescriptor, _ duration: Duration) -> Result<Void, Errno> {
        var value = timeval(duration)
        let length = socklen_t(MemoryLayout<timeval>.size)
        return retrying("setsockopt") { setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &value, length) }
            .map { _ in () }
    }

    /// The corresponding C functions are `pipe` and `fcntl(F_SETFD, FD_CLOEXEC)` (`pipe2` needs `_GNU_SOURCE`).
    @inline(never)
    package static func pipe() -> Result<(read: FileDescriptor, write: FileDescriptor), Errno> {
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
    package static func mkdir(_ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying("mkdir") { Glibc.mkdir(path, mode) }.map { _ in () }
    }

    /// The corresponding C function is `chmod`.
    @inline(never)
    package static func chmod(_ path: String, mode: mode_t) -> Result<Void, Errno> {
        retrying("chmod") { Glibc.chmod(path, mode) }.map { _ in () }
    }

    /// The corresponding C function is `unlink`.
    @inline(never)
    package static func unlink(_ path: String) -> Result<Void, Errno> {
        retrying("unlink") { Glibc.unlink(path) }.map { _ in () }
    }

    /// The corresponding C function is `lstat`. Returns the file's type bits, device and inode.
    @inline(never)
    package static func lstat(_ path: String) -> Result<FileIdentity, Errno> {
        var info = stat()
        return retrying("lstat") { Glibc.lstat(path, &info) }.map { _ in
            FileIdentity(type: info.st_mode & S_IFMT, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }
    }
}

/// What `lstat` says about a path, enough to recognise our own socket file later.
package struct FileIdentity: Equatable, Sendable {
    package var type: mode_t  // st_mode & S_IFMT
    package var device: UInt64  // st_dev
    package var inode: UInt64  // st_ino

    package var isSocket: Bool { type == S_IFSOCK }
}

extension timeval {
    /// A `timeval` for a socket timeout. Zero would mean "no timeout" to the kernel, so a positive duration
    /// shorter than a microsecond becomes one microsecond, and a zero or negative one too.
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var microseconds = Int(attoseconds / 1_000_000_000_000)
        var wholeSeconds = Int(seconds)
        if wholeSeconds <= 0 && microseconds <= 0 {
            wholeSeconds = 0
            microseconds = 1
        }
        self.init(tv_sec: wholeSeconds, tv_usec: microseconds)
    }
}
