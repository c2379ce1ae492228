// MemoryEngine: in-memory ports with the PacketEngine contract, for testing the dataplane and the daemon
// without root or a kernel (the twin of wireguard-go's tun/tuntest ChannelTUN, STYLE §11).
//
// Flow:
//   test thread   --inject(bytes, into: handle, remote:)-->  [queue]  --receive-->  worker: pool buffer at headroom
//   worker        --transmit(batch)-->  [per-handle log of header+payload bytes]  --drainTransmitted-->  test
//
// It behaves like a real engine where the worker can tell: `receive` copies each frame into a buffer taken from
// the pool at `pool.headroom` (for a TAP with a virtio header: a large buffer, at `headroom - 12`, the injected
// bytes being header + frame, as EpollEngine and URingEngine read them) and the worker must `release` it
// (double release traps, `buffersOutstanding` shows leaks); when the pool is empty frames stay queued and
// `receive` returns at once; transmits to unknown handles or to receive-only kinds are counted as dropped,
// exactly as EpollEngine counts them. A UDP GSO send to a `.udpSender` is logged as the datagrams the kernel would
// cut it into, and a GRO read is injected with its segment size (into a large buffer), so worker tests see both
// sides of UDP segmentation offload.
//
// Locking: everything other threads touch (the injected queue, the transmit log, the registered ports, the
// woken flag) is in one `Mutex<State>` inside `MemoryWire`, the Sendable half handed to tests. `receive`
// blocks on a semaphore that `inject` and `wake` signal once each; it re-checks the state after every wake-up,
// so a surplus signal is only a spurious wake-up. The pool and the outstanding-buffer table are the worker's
// alone, as with every engine.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization
import VXPacket

/// A frame an in-memory port was asked to send: the header slot's bytes followed by the payload's.
public struct TransmittedFrame: Sendable, Equatable {
    /// Header + payload, concatenated.
    public var bytes: [UInt8]
    /// `FrameTransmit.remote` (the underlay destination for senders, `.any` for TAPs).
    public var remote: UnderlayAddress
    /// `FrameTransmit.remotePort` for a `.udpSender`, 0 otherwise.
    public var remotePort: UInt16
    /// For a `.udpSender`: which GSO send this datagram was cut from (numbered per engine from 1), and 0 for a
    /// datagram sent on its own; lets tests check that datagrams left in one send.
    public var send: Int

    /// - Parameters:
    ///   - bytes: header + payload.
    ///   - remote: the underlay destination.
    ///   - remotePort: the UDP destination port (`.udpSender` only).
    ///   - send: the GSO send it came from (0: none).
    public init(bytes: [UInt8], remote: UnderlayAddress, remotePort: UInt16 = 0, send: Int = 0) {
        self.bytes = bytes
        self.remote = remote
        self.remotePort = remotePort
        self.send = send
    }
}

/// The test's side of a `MemoryEngine`: inject frames, drain what was sent, wake the worker. Sendable, so any
/// thread may hold it.
public final class MemoryWire: EngineWaker {
    struct Injected {
        var handle: PortHandle  // the port it arrives on
        var bytes: [UInt8]  // the frame
        var remote: UnderlayAddress  // reported as ReceivedFrame.remote
        var segmentSize: UInt32  // reported as ReceivedFrame.segmentSize (a GRO read)
    }

    struct State {
        var queue: [Injected] = []  // injected, not yet received, oldest first
        var woken = false  // wake() called since the last receive returned
        var ports: [PortHandle: PortKind] = [:]  // registered ports
        var handlesByDescriptor: [Int32: PortHandle] = [:]  // the fake fd each port was registered with
        var transmitted: [PortHandle: [TransmittedFrame]] = [:]  // sent, not yet drained
        var failures: [PortHandle: IOError] = [:]  // ports failed with `fail`: no longer read, transmits drop
        var newlyFailed: [PortHandle] = []  // failed, not yet reported by drainNewPortFailures
    }

    let state = Mutex(State())
    /// Signalled once per inject and per wake; `receive` waits on it.
    let signal = DispatchSemaphore(value: 0)

    init() {}

    /// Queues `bytes` as if they had arrived on `handle`.
    /// - Parameters:
    ///   - bytes: the frame (or datagram payload, for tunnel kinds).
    ///   - handle: a registered port.
    ///   - remote: the underlay sender to report.
    ///   - segmentSize: for a UDP tunnel port, the GRO segment size: `bytes` are datagrams of that size back to
    ///     back (the last may be shorter), received as one frame in a large buffer. 0: one datagram.
    /// - Returns: false (and queues nothing) when `handle` is not registered.
    @discardableResult
    public func inject(
        _ bytes: [UInt8], into handle: PortHandle, remote: UnderlayAddress = .any, segmentSize: UInt32 = 0
    ) -> Bool {
        let queued = state.withLock { state -> Bool in
            guard state.ports[handle] != nil, state.failures[handle] == nil else { return false }
            state.queue.append(Injected(handle: handle, bytes: bytes, remote: remote, segmentSize: segmentSize))
            return true
        }
        if queued { signal.signal() }
        return queued
    }

    /// Removes and returns what was transmitted to `handle`, oldest first.
    /// - Parameter handle: a port (registered or not).
    /// - Returns: the frames.
    public func drainTransmitted(from handle: PortHandle) -> [TransmittedFrame] {
        state.withLock { state in state.transmitted.removeValue(forKey: handle) ?? [] }
    }

    /// Makes `handle` fail as a real engine's port does when its reads fail for good (a TAP deleted underneath):
    /// its queued frames are discarded, it is no longer read, transmits to it are dropped with `errno`, and
    /// `portFailure(of:)` / `drainNewPortFailures` report it.
    /// - Parameters:
    ///   - handle: a registered port.
    ///   - errno: the errno its read failed with, e.g. EBADFD.
    ///   - operation: the read that failed.
    /// - Returns: false when `handle` is not registered or already failed.
    @discardableResult
    public func fail(_ handle: PortHandle, errno: Int32, operation: String = "read") -> Bool {
        let failed = state.withLock { state -> Bool in
            guard state.ports[handle] != nil, state.failures[handle] == nil else { return false }
            state.failures[handle] = IOError(errno: errno, operation: operation)
            state.newlyFailed.append(handle)
            state.queue.removeAll { $0.handle == handle }
            return true
        }
        if failed { wake() }  // a real engine notices in its receive call
        return failed
    }

    /// Injected frames not yet received.
    public var pendingCount: Int { state.withLock { $0.queue.count } }

    /// The handle of the port registered with descriptor `fd`, for tests that create ports through a daemon
    /// and then need to inject into them.
    public func handle(forDescriptor fd: Int32) -> PortHandle? {
        state.withLock { $0.handlesByDescriptor[fd] }
    }

    /// Makes the engine's current or next `receive` return `.woken`.
    public func wake() {
        state.withLock { $0.woken = true }
        signal.signal()
    }
}

/// A `PacketEngine` whose ports are queues in memory. See the file comment.
public final class MemoryEngine: PacketEngine {
    /// The buffers received frames are copied into.
    public let pool: PacketBufferPool
    /// The waker and the test's handle on the ports.
    public let waker: MemoryWire
    /// Same object as `waker`, named for what tests do with it.
    public var wire: MemoryWire { waker }

    /// Frames dropped at receive because they did not fit a buffer after the headroom.
    public private(set) var droppedOversize = 0
    /// Times `receive` found frames queued but no free buffer.
    public private(set) var poolExhausted = 0
    /// `transmit` calls: a real engine makes one submission (io_uring) or one round of syscalls per call, so
    /// tests can check that frames leave together.
    public private(set) var transmitCalls = 0

    private var nextHandle: UInt32 = 1
    /// Number of the last GSO send logged (`TransmittedFrame.send`).
    private var gsoSends = 0
    private var ledger: BufferLedger

    /// - Parameter pool: the buffers received frames are copied into.
    public init(pool: PacketBufferPool) {
        self.pool = pool
        self.waker = MemoryWire()
        self.ledger = BufferLedger(capacity: pool.count)
    }

    /// Registers a fake port; `fd` is only a label and is never touched.
    /// - Returns: a fresh handle (handles are never reused).
    /// - Throws: `IOError` (EINVAL) for a TAP with a virtio header when the pool has no large buffers, as the real
    ///   engines do.
    public func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle {
        if kind.hasVirtioHeader && pool.largeCount == 0 {
            throw IOError(errno: EINVAL, operation: "register TAP fd \(fd)", hint: "the pool has no large buffers")
        }
        let handle = PortHandle(raw: nextHandle)
        nextHandle += 1
        waker.state.withLock {
            $0.ports[handle] = kind
            $0.handlesByDescriptor[fd] = handle
        }
        return handle
    }

    /// Forgets the port and discards frames injected into it but not yet received.
    public func unregister(_ handle: PortHandle) {
        waker.state.withLock { state in
            state.ports[handle] = nil
            state.handlesByDescriptor = state.handlesByDescriptor.filter { $0.value != handle }
            state.queue.removeAll { $0.handle == handle }
            state.failures[handle] = nil
            state.newlyFailed.removeAll { $0 == handle }
        }
    }

    /// Why `handle` was failed with `MemoryWire.fail`, or nil.
    public func portFailure(of handle: PortHandle) -> IOError? {
        waker.state.withLock { $0.failures[handle] }
    }

    /// Reports each port failed with `MemoryWire.fail` since the last call, once.
    public func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) {
        let reported = waker.state.withLock { state -> [(PortHandle, IOError)] in
            guard !state.newlyFailed.isEmpty else { return [] }
            defer { state.newlyFailed.removeAll() }
            return state.newlyFailed.compactMap { handle in state.failures[handle].map { (handle, $0) } }
        }
        for (handle, error) in reported { body(handle, error) }
    }

    /// Queues a frame as if received; see `MemoryWire.inject`.
    @discardableResult
    public func inject(
        _ bytes: [UInt8], into handle: PortHandle, remote: UnderlayAddress = .any, segmentSize: UInt32 = 0
    ) -> Bool {
        waker.inject(bytes, into: handle, remote: remote, segmentSize: segmentSize)
    }

    /// Removes and returns what was transmitted to `handle`; see `MemoryWire.drainTransmitted`.
    public func drainTransmitted(from handle: PortHandle) -> [TransmittedFrame] {
        waker.drainTransmitted(from: handle)
    }

    /// Buffers handed out by `receive` and not yet released.
    public var buffersOutstanding: Int { ledger.count }

    /// Moves queued frames into pool buffers, waiting up to `timeout` for the first.
    public func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        precondition(batch.remainingCapacity > 0, "receive needs room in the batch")
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now.advanced(by: $0) }
        while true {
            let room = batch.remainingCapacity
            var standardFree = pool.available
            var largeFree = pool.availableLarge
            let (frames, woken, starved) = waker.state.withLock {
                state -> ([(MemoryWire.Injected, Bool)], Bool, Bool) in
                // In order, while the next frame's buffer size has a free buffer: a TAP with a virtio header reads
                // into large buffers, every other port into standard ones (as the real engines do), but a GRO read.
                var count = 0
                var virtio: [Bool] = []
                while count < min(room, state.queue.count) {
                    let large = state.ports[state.queue[count].handle]?.hasVirtioHeader ?? false
                        || state.queue[count].segmentSize > 0
                    if large {
                        guard largeFree > 0 else { break }
                        largeFree -= 1
                    } else {
                        guard standardFree > 0 else { break }
                        standardFree -= 1
                    }
                    virtio.append(large)
                    count += 1
                }
                let taken = Array(zip(state.queue.prefix(count), virtio))
                state.queue.removeFirst(count)
                let woken = state.woken
                state.woken = false
                return (taken, woken, count == 0 && !state.queue.isEmpty)
            }
            var appended = 0
            for (frame, large) in frames {
                // A virtio TAP's frame starts with its header, read 12 bytes before the headroom.
                let virtio = large && frame.segmentSize == 0
                let offset = virtio ? pool.headroom - PortKind.virtioHeaderLength : pool.headroom
                guard frame.bytes.count <= (large ? pool.largeBufferSize : pool.bufferSize) - offset else {
                    droppedOversize += 1
                    continue
                }
                guard let buffer = large ? pool.takeLarge() : pool.take() else {
                    preconditionFailure("pool.available lied")
                }
                ledger.handOut(buffer)
                let target = unsafe pool.unsafeBytes(of: buffer, offset: offset, length: frame.bytes.count)
                unsafe target.copyBytes(from: frame.bytes)
                batch.append(
                    ReceivedFrame(source: frame.handle, buffer: buffer, offset: UInt32(offset),
                                  length: UInt32(frame.bytes.count), remote: frame.remote,
                                  segmentSize: frame.segmentSize))
                appended += 1
            }
            if woken { return .woken(frames: appended) }
            if appended > 0 { return .frames(appended) }
            if starved {
                poolExhausted += 1  // waiting would only delay the releases that end this
                return .timedOut
            }
            if !frames.isEmpty { continue }  // all were oversize; look again
            if let deadline {
                let now = clock.now
                guard now < deadline else { return .timedOut }
                let left = now.duration(to: deadline).components
                let nanoseconds = Int(clamping: left.seconds) &* 1_000_000_000 &+ Int(left.attoseconds / 1_000_000_000)
                _ = waker.signal.wait(timeout: .now() + .nanoseconds(max(nanoseconds, 1)))
            } else {
                waker.signal.wait()
            }
        }
    }

    /// Records every frame of `batch` under its target; unknown targets and receive-only kinds are dropped.
    public func transmit(_ batch: TxBatch) -> TransmitReport {
        transmitCalls += 1
        var report = TransmitReport()
        var records: [(PortHandle, TransmittedFrame)] = []
        let (ports, failures) = waker.state.withLock { ($0.ports, $0.failures) }
        for (index, frame) in batch.frames.enumerated() {
            if let failure = failures[frame.target] {
                report.count(errno: failure.errno, frames: 1)
                continue
            }
            switch ports[frame.target] {
            case nil:
                report.droppedError += 1
                report.lastErrno = EBADF
            case .udpTunnel?, .rawGRE?, .rawGREIPv6?:
                report.droppedError += 1
                report.lastErrno = EOPNOTSUPP
            case .udpSender?:
                // What the kernel would put on the wire: header + payload cut into segmentSize-byte datagrams.
                var bytes = [UInt8]()
                let header = unsafe batch.headerSlot(index)
                unsafe bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: header[0..<Int(frame.headerLength)]))
                let payload = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
                unsafe bytes.append(contentsOf: payload)
                let size = frame.segmentSize > 0 ? Int(frame.segmentSize) : max(bytes.count, 1)
                var send = 0
                if frame.segmentSize > 0 {
                    gsoSends += 1
                    send = gsoSends
                }
                var start = 0
                repeat {
                    let end = min(start + size, bytes.count)
                    records.append(
                        (frame.target,
                         TransmittedFrame(bytes: Array(bytes[start..<end]), remote: frame.remote,
                                          remotePort: frame.remotePort, send: send)))
                    report.sent += 1
                    start = end
                } while start < bytes.count
            case .tap?, .rawSender?:
                var bytes = [UInt8]()
                bytes.reserveCapacity(Int(frame.headerLength) + Int(frame.length))
                let header = unsafe batch.headerSlot(index)
                unsafe bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: header[0..<Int(frame.headerLength)]))
                let payload = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
                unsafe bytes.append(contentsOf: payload)
                records.append((frame.target, TransmittedFrame(bytes: bytes, remote: frame.remote)))
                report.sent += 1
            }
        }
        if !records.isEmpty {
            waker.state.withLock { state in
                for (handle, frame) in records { state.transmitted[handle, default: []].append(frame) }
            }
        }
        return report
    }

    /// Gives a received buffer back; releasing one that is not out traps.
    public func release(_ buffer: BufferID) {
        ledger.takeBack(buffer)
        pool.give(buffer)
    }
}
