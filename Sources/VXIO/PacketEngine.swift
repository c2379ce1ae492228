// The contract between a worker and its I/O backend.
//
// A worker thread owns exactly one engine and calls it in a run-to-completion loop:
//
//     loop:
//       engine.receive(into: &rx, timeout:)      // one batch from every ready port
//       ... decap, learn, decide, encap into tx ...
//       engine.transmit(tx)                      // one batch to every target
//       engine.release(each rx buffer)           // back to the pool / the kernel's buffer ring
//
// Engines: `EpollEngine` (epoll + readv/writev + recvmmsg/sendmmsg), `URingEngine` (io_uring with a
// provided-buffer ring, multishot receives and batched submissions) and `MemoryEngine` (in-memory ports for
// tests). The worker is generic over the engine, so the hot loop has no existential calls (STYLE §4).
//
// Thread-safety: an engine is used by its one worker thread only. Other threads reach a worker through its
// `EngineWaker` (wake it up) and a command queue of the worker's own; ports are registered and unregistered
// on the worker thread, between batches.

import VXPacket

/// What kind of file descriptor a port is; it decides how the engine reads and writes it.
public enum PortKind: Sendable, Equatable {
    /// A TAP device (IFF_TAP | IFF_NO_PI): one Ethernet frame per read and per write.
    ///
    /// With `virtioHeader` (IFF_VNET_HDR, TUNSETVNETHDRSZ 12, normally with TSO and checksum offload), every frame
    /// read and written is preceded by a 12-byte virtio-net header, and engines pass it through untouched: a
    /// received frame's bytes start with the header (read at `headroom - 12`, so the Ethernet header still lands at
    /// `headroom`), into a large buffer, since one read can carry 64 KiB; a transmitted frame's bytes (header
    /// slot + payload) must start with one. Interpreting it (segmentation, checksums, coalescing) is the worker's
    /// job (VXOffload). Without it, reads go to standard buffers and frames are plain Ethernet. The underlay TAP
    /// (24-byte tunnel header) is registered as this kind too: engines never look inside the header, so its frames
    /// simply start 12 bytes further on, and only the worker knows the header's size.
    case tap(virtioHeader: Bool)
    /// A UDP socket bound to the VXLAN port: each datagram's payload is VXLAN header + inner frame; the
    /// engine reports the sender's IPv4 address as `ReceivedFrame.remote`. Receive only.
    case udpTunnel
    /// A raw IPv4 IPPROTO_GRE socket: each datagram starts with the outer IPv4 header. Receive only.
    case rawGRE
    /// A raw IPv6 IPPROTO_GRE socket: each datagram starts at the GRE header (raw IPv6 sockets never deliver the
    /// IPv6 header), and the engine reports the sender's address as `ReceivedFrame.remote`. Receive only.
    case rawGREIPv6
    /// A raw IPPROTO_RAW socket, IPv4 or IPv6 (the header included, as with IP_HDRINCL): sends take a complete
    /// outer IP header in front of the frame and go to `FrameTransmit.remote`. Send only: protocol 255 is never
    /// delivered to it. GRE leaves through it (raw sockets have no GSO).
    case rawSender
    /// A UDP socket bound to the local underlay address and a kernel-chosen port, for sending VXLAN: each send
    /// is a UDP payload (VXLAN header + inner frame) to `FrameTransmit.remote:remotePort`, and with
    /// `FrameTransmit.segmentSize` > 0 a UDP GSO send (sendmsg with a UDP_SEGMENT cmsg) of many datagrams at once.
    /// The kernel builds the outer IPv4 and UDP headers; the socket's port is the UDP source port. Send only.
    case udpSender
}

extension PortKind {
    /// Bytes of virtio-net header (`struct virtio_net_hdr_v1`) in front of every frame of a
    /// `.tap(virtioHeader: true)` port.
    public static let virtioHeaderLength = 12

    /// True for `.tap(virtioHeader: true)`: frames carry a virtio-net header and are read into large buffers.
    @inlinable
    public var hasVirtioHeader: Bool {
        if case .tap(virtioHeader: true) = self { return true }
        return false
    }

    /// True for the kinds nothing is read from (`.rawSender`, `.udpSender`).
    @inlinable
    public var isSendOnly: Bool {
        self == .rawSender || self == .udpSender
    }
}

/// How one `receive` call ended.
public enum ReceiveOutcome: Sendable, Equatable {
    /// `count` frames were appended to the batch (count > 0).
    case frames(Int)
    /// Another thread called `EngineWaker.wake()`; the batch may also hold frames.
    case woken(frames: Int)
    /// The timeout passed with nothing to report.
    case timedOut
}

/// What one `transmit` call did. Failures are counted, never thrown: a full socket buffer or a vanished TAP
/// is traffic, not a programmer error (STYLE §8).
public struct TransmitReport: Sendable, Equatable {
    /// Frames the kernel accepted.
    public var sent: Int = 0
    /// Frames dropped because the target had no room (EAGAIN / ENOBUFS).
    public var droppedNoBuffer: Int = 0
    /// Frames dropped because the target is gone or failed (EIO, EBADF after a TAP was deleted, ENETUNREACH...).
    public var droppedError: Int = 0
    /// The last errno seen, for the log.
    public var lastErrno: Int32 = 0

    public init() {}

    /// Adds `other`'s counts (its errno, when it saw one, becomes the last).
    public mutating func merge(_ other: TransmitReport) {
        sent += other.sent
        droppedNoBuffer += other.droppedNoBuffer
        droppedError += other.droppedError
        if other.lastErrno != 0 { lastErrno = other.lastErrno }
    }

    /// Counts `frames` frames refused with `errno`: no room (EAGAIN, ENOBUFS, ENOMEM) or an error (anything else).
    /// Every engine classifies its send failures here, so `vxctl stats` means the same whichever engine runs.
    public mutating func count(errno: Int32, frames: Int = 1) {
        lastErrno = errno
        if errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM {
            droppedNoBuffer += frames
        } else {
            droppedError += frames
        }
    }
}

/// An I/O error from setting up or polling an engine (never from a single frame's send; see TransmitReport).
public struct IOError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The errno value (positive).
    public let errno: Int32
    /// What was being done, e.g. "io_uring_queue_init".
    public let operation: String
    /// What the errno most likely means for this operation, in words an operator can act on; nil when strerror
    /// says it all.
    public let hint: String?

    /// - Parameters:
    ///   - errno: the errno value (positive).
    ///   - operation: what was being done.
    ///   - hint: an explanation; by default `IOError.commonHint(for:)` of the errno.
    public init(errno: Int32, operation: String, hint: String? = nil) {
        self.errno = errno
        self.operation = operation
        self.hint = hint ?? IOError.commonHint(for: errno)
    }

    public var description: String {
        let text = unsafe "\(operation): \(String(cString: strerrorText(errno))) (errno \(errno))"
        guard let hint else { return text }
        return text + " — " + hint
    }

    /// The errno's symbol, its text and the operation, as `vxctl` shows a failed port:
    /// `EBADFD (File descriptor in bad state) on read`.
    public var summary: String {
        unsafe "\(IOError.symbol(for: errno)) (\(String(cString: strerrorText(errno)))) on \(operation)"
    }

    /// The errno's name (`EBADFD`) for the errnos a port can fail with, `errno N` for the others.
    /// - Parameter errno: a positive errno value.
    /// - Returns: the symbol.
    public static func symbol(for errno: Int32) -> String {
        switch errno {
        case EBADFD: "EBADFD"
        case EBADF: "EBADF"
        case EIO: "EIO"
        case ENODEV: "ENODEV"
        case ENXIO: "ENXIO"
        case EINVAL: "EINVAL"
        case ENOTSOCK: "ENOTSOCK"
        case EFAULT: "EFAULT"
        case EPIPE: "EPIPE"
        case ENETDOWN: "ENETDOWN"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case ENOMEM: "ENOMEM"
        case ENOBUFS: "ENOBUFS"
        case EPERM: "EPERM"
        case EACCES: "EACCES"
        default: "errno \(errno)"
        }
    }

    /// Explanations for the errnos that setting up ports commonly meets, or nil.
    /// - Parameter errno: a positive errno value.
    /// - Returns: a short explanation of the likely cause.
    public static func commonHint(for errno: Int32) -> String? {
        switch errno {
        case EPERM, EACCES: "needs CAP_NET_ADMIN (run as root) for TAP devices, raw sockets and forced buffer sizes"
        case EADDRINUSE: "another socket is already bound to this address and port"
        case EADDRNOTAVAIL: "the local address is not assigned to any interface in this network namespace"
        case ENODEV, ENXIO: "no such interface here (deleted, or moved to another network namespace)"
        case EMFILE, ENFILE: "out of file descriptors (raise RLIMIT_NOFILE)"
        case ENOBUFS, ENOMEM: "the kernel is out of buffer memory"
        case EBADF: "the descriptor is closed or was never valid"
        default: nil
        }
    }
}

#if canImport(Glibc)
import Glibc
private func strerrorText(_ code: Int32) -> UnsafeMutablePointer<CChar> { unsafe strerror(code) }
#elseif canImport(Musl)
import Musl
private func strerrorText(_ code: Int32) -> UnsafeMutablePointer<CChar> { unsafe strerror(code) }
#endif

/// Interrupts a worker's `receive` from another thread. Sendable: this is the one engine object other threads
/// may hold.
public protocol EngineWaker: Sendable {
    /// Makes the engine's current or next `receive` return `.woken` promptly.
    func wake()
}

/// A worker's I/O backend. See the file comment for the calling pattern and thread-safety.
public protocol PacketEngine: AnyObject, SendableMetatype {
    associatedtype Waker: EngineWaker

    /// The engine's packet memory; frames in batches name buffers of this pool.
    var pool: PacketBufferPool { get }

    /// Wakes this engine from other threads.
    var waker: Waker { get }

    /// Starts reading from (or allows writing to) `fd`. The engine does not own the descriptor: the caller
    /// closes it after `unregister`.
    /// - Returns: the handle that frames from this port carry and that transmits name.
    func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle

    /// Stops using a port. Frames already received from it stay valid; later transmits to it are dropped.
    func unregister(_ handle: PortHandle)

    /// Waits up to `timeout` (nil: forever) for frames and appends up to `batch.remainingCapacity` of them.
    func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome

    /// Sends every frame of `batch`. Returns when the engine no longer needs the buffers named in it.
    func transmit(_ batch: TxBatch) -> TransmitReport

    /// Gives a received buffer back to the engine. Buffers the worker took from `pool` itself (`take()`,
    /// `takeLarge()`) go back with `pool.give(_:)` instead.
    func release(_ buffer: BufferID)

    /// Why the engine stopped reading `handle` for good (its reads failed with an error that would repeat, e.g.
    /// EBADFD after its TAP was deleted underneath, or EBADF), or nil while the port works (or for an unknown
    /// handle). Transmits to a failed port are counted as dropped.
    /// - Parameter handle: a registered port.
    /// - Returns: the error, its `operation` naming the read that failed ("read", "recvmmsg", ...).
    func portFailure(of handle: PortHandle) -> IOError?

    /// Calls `body` once for each port that failed (see `portFailure(of:)`) since the last call, oldest first.
    /// A port unregistered in between is not reported. The worker calls this once per loop, so it must cost no
    /// more than a check of an empty list when nothing failed.
    /// - Parameter body: gets the failed port's handle and the error.
    func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void)
}
