// The syscalls of the Docker client (and of the fake engine in VXDockerTesting), each through one funnel
// (swift-nio's `syscall(blocking:where:_:)` in Sources/NIOPosix/System.swift): it retries EINTR, returns the errno
// as a typed `Errno`, and traps on the errnos that can only mean a bug here (EBADF: a descriptor closed under us;
// EFAULT: a bad pointer). The wrappers are `@inline(never) static func`s in a namespace enum, so nothing runs
// between a call and the read of `errno`.
//
// This is a copy of the subset of VXControlSocket's `Posix` that a Unix-socket client and server need:
// VXDocker depends on SystemPackage only, so it cannot import VXControlSocket's internal funnel. `package` access
// lets VXDockerTesting's fake engine share it without making it public API.

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
                "\(function) failed with \(error): a bug in VXDocker"
            )
            return .failure(error)
        }
    }

    /// The corresponding C function is `socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)`.
    @inline(never)
    package static func unixStreamSocket() -> Result<FileDescriptor, Errno> {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
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
    /// module map hides `accept4`, which needs `_GNU_SOURCE`.)
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

    /// The corresponding C function is `shutdown(fd, SHUT_WR)`: sends EOF while the socket stays readable.
    @inline(never)
    package static func shutdownWrite(_ fd: FileDescriptor) -> Result<Void, Errno> {
        retrying("shutdown") { Glibc.shutdown(fd.rawValue, Int32(SHUT_WR)) }.map { _ in () }
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

    /// The corresponding C function is `unlink`.
    @inline(never)
    package static func unlink(_ path: String) -> Result<Void, Errno> {
        retrying("unlink") { Glibc.unlink(path) }.map { _ in () }
    }

    /// Milliseconds for `poll` until `deadline`, rounded up so a wait never ends just short of it; 0 once passed.
    package static func pollMilliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let remaining = ContinuousClock.now.duration(to: deadline)
        guard remaining > .zero else { return 0 }
        let (seconds, attoseconds) = remaining.components
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: milliseconds)
    }
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

/// A `sockaddr_un` for a filesystem path.
package struct UnixSocketAddress: Sendable {
    /// `sun_path` holds 108 bytes including the terminating NUL.
    package static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private var storage: sockaddr_un

    /// Returns nil when `path` is empty, longer than `maxPathLength` bytes, or contains NUL.
    package init?(path: String) {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= UnixSocketAddress.maxPathLength, !bytes.contains(0) else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)  // the rest of sun_path is already zero
        }
        self.storage = address
    }

    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}
