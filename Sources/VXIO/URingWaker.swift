// The io_uring engine's waker: an eventfd that the engine keeps a read in flight on.
//
// Flow: another thread calls `wake()` -> write(2) of 1 to the eventfd -> the engine's pending IORING_OP_READ on
// it completes -> the worker's `receive` sees that completion, re-arms the read and returns `.woken`.
//
// Thread-safety: `wake()` may be called from any thread at any time; it only writes to the eventfd. The fd is
// owned by this object and closed in `deinit`, so it stays valid for as long as any thread holds the waker,
// even after the engine itself is gone (then the write lands in an eventfd nobody reads, harmlessly).

#if os(Linux)
#if canImport(Musl)
import Musl
#elseif canImport(Glibc)
import Glibc
#endif
internal import CVXLinux

/// Wakes a `URingEngine` from other threads through an eventfd the engine's ring keeps a read on.
public final class URingWaker: EngineWaker {
    /// The eventfd (blocking, close-on-exec). Blocking on purpose: the ring reads it, and io_uring parks a read
    /// on a blocking pollable file instead of completing it at once with EAGAIN.
    let fd: Int32

    init() throws(IOError) {
        let fd = cvx_uring_eventfd()
        guard fd >= 0 else { throw IOError(errno: -fd, operation: "eventfd") }
        self.fd = fd
    }

    deinit {
        _ = close(fd)
    }

    /// Makes the engine's current or next `receive` return `.woken`. Wraps `write(2)` of 1 to the eventfd.
    public func wake() {
        var one: UInt64 = 1
        // Bounded: EINTR is the only retry, and a signal cannot interrupt the same write forever in practice;
        // the bound keeps the loop finite anyway. Any other failure cannot happen on a live eventfd with a
        // counter far from UInt64.max - 1, and would only mean the wake is already pending.
        for _ in 0..<16 {
            let written = unsafe write(fd, &one, MemoryLayout<UInt64>.size)
            if written >= 0 || errno != EINTR { return }
        }
    }
}
#endif
