// The syscall funnels of VXIO (STYLE §3). Every system call the epoll backend, the TAP device and the tunnel
// sockets make goes through `Syscall.retrying`, which
//   - retries EINTR (a signal arriving mid-call is not an error),
//   - maps EAGAIN/EWOULDBLOCK to `IOResult.wouldBlock` (non-blocking descriptors run dry: a normal outcome),
//   - returns every other failure as a typed `Errno` thrown with typed throws (no allocation, no existential).
// Helpers that return -errno instead of setting errno (our C shim, like liburing) go through
// `Syscall.negativeErrno`, which converts at the edge.
//
// The wrappers are `@inline(never)` so nothing (ARC traffic included) runs between the call and the read of
// `errno` — swift-nio's Sources/NIOPosix/System.swift gives the same reason.
//
// EBADF is deliberately not trapped here (swift-nio traps it as a programmer error): a TAP whose interface was
// deleted, or a handle whose descriptor the control plane already closed, is traffic the engine counts.
// EFAULT is always a bug in our own pointer handling and traps.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// The outcome of a non-blocking syscall that did not fail.
enum IOResult: Equatable {
    /// The call completed with this (non-negative) return value.
    case processed(Int)
    /// The descriptor had nothing to give or no room to take (EAGAIN / EWOULDBLOCK).
    case wouldBlock
}

/// Namespace for the syscall funnels.
enum Syscall {
    /// Runs `body` (a syscall returning -1 and setting errno on failure) until it does not fail with EINTR.
    /// - Returns: `.processed(value)` or `.wouldBlock` for EAGAIN.
    /// - Throws: the errno of any other failure.
    @inline(never)
    static func retrying(_ body: () -> Int) throws(Errno) -> IOResult {
        while true {
            let result = body()
            if result >= 0 { return .processed(result) }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                return .wouldBlock
            case EFAULT:
                preconditionFailure("syscall failed with EFAULT: a VXIO pointer is wrong")
            default:
                throw Errno(rawValue: code)
            }
        }
    }

    /// `retrying` for calls that cannot return EAGAIN (setup calls on blocking paths): would-block is an error.
    @inline(never)
    static func blocking(_ body: () -> Int) throws(Errno) -> Int {
        switch try retrying(body) {
        case .processed(let value): return value
        case .wouldBlock: throw Errno(rawValue: EAGAIN)
        }
    }

    /// For C shim functions that return 0 (or a value) on success and -errno on failure, never setting errno.
    /// - Returns: the non-negative result.
    @inline(__always)
    static func negativeErrno(_ result: Int32) throws(Errno) -> Int32 {
        if result < 0 { throw Errno(rawValue: -result) }
        return result
    }
}

extension IOError {
    /// An IOError for a failed `operation`, keeping the errno.
    init(_ errno: Errno, _ operation: String) {
        self.init(errno: errno.rawValue, operation: operation)
    }
}

/// Closes `fd`, ignoring the result: on Linux the descriptor is released even when close reports EINTR or EIO,
/// so retrying would close someone else's descriptor. The corresponding C function is `close`.
func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}
