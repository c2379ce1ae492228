// EpollEngine: the portable Linux backend (epoll + read/writev on TAPs + recvmmsg/sendmmsg on sockets).
//
// Receive flow, one `receive` call:
//   1. epoll_wait on every registered receive port plus the waker's eventfd (level-triggered, see below).
//   2. The eventfd is drained and the call is marked `.woken`.
//   3. Each ready port gets a fair share of the batch's remaining room: ceil(room / ports still to serve),
//      so one busy port cannot starve the others within a call, and room a quiet port leaves is handed on.
//      TAPs are read with read(2) one frame at a time until EAGAIN or the share is used; sockets with
//      recvmmsg(2) into up to `maxBatch` pool buffers per call, capturing the sender's address (IPv4 or IPv6)
//      and the SO_RXQ_OVFL and UDP_GRO control messages. A UDP tunnel socket is read into large buffers when the
//      pool has them: with UDP_GRO one read carries up to 64 KiB of datagrams (`ReceivedFrame.segmentSize`).
//   4. Every frame lands in a pool buffer at `pool.headroom`: a standard buffer, or for a TAP with a virtio
//      header a large one, read at `headroom - 12` so the header comes first and the Ethernet frame still starts
//      at `headroom` (a TSO read carries up to 64 KiB). If the pool runs dry, reading stops for this call,
//      `Statistics.poolExhausted` counts it, and `receive` returns what it has.
//
// Transmit flow, one `transmit` call, in batch order:
//   - TAP: writev(header slot, payload), one frame per call (the TAP has no batch write). For a TAP with a
//     virtio header, the worker puts it at the start of the header slot or of the payload.
//   - raw sender, UDP sender: consecutive entries for the same target are coalesced into sendmmsg(2) calls
//     of up to `maxBatch` messages, each message two iovecs (header slot + payload) and its own socket address; a
//     UDP sender's entry with a segment size also carries a UDP_SEGMENT cmsg, so one message is a GSO send of
//     many datagrams.
//   - Per-frame failures are counted in the TransmitReport, never thrown (STYLE §8).
//
// Why level-triggered: a port that still has frames when its fair share is used up must be served again on
// the next call. Level-triggered epoll reports it again by itself; edge-triggered would need a ready list of
// our own to remember it, and a bug there loses a port until its next packet. The price, one epoll_wait per
// batch, is paid anyway because the engine waits once per batch.
//
// Memory: the mmsghdr, iovec, socket address and control vectors are allocated once per engine, together, by
// `DatagramVectors` (swift-nio's DatagramVectorReadManager does the same); the hot path allocates nothing.
//
// Thread-safety: the engine belongs to one worker thread (PacketEngine's contract). Only `waker` may be used
// from other threads: EpollWaker.wake() is a write(2) to an eventfd.

#if os(Linux)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CVXLinux
import SystemPackage
import VXPacket

/// Wakes an `EpollEngine` from another thread by writing to its eventfd.
public final class EpollWaker: EngineWaker {
    /// The eventfd (non-blocking, close-on-exec), owned by the waker so it lives as long as anyone can wake.
    let fd: Int32

    init() throws(IOError) {
        do {
            fd = Int32(try Syscall.blocking { Int(eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))) })
        } catch {
            throw IOError(error, "eventfd")
        }
    }

    deinit {
        closeDescriptor(fd)
    }

    /// Makes the engine's current or next `receive` return `.woken`. The corresponding C call is
    /// `write(eventfd, 1)`; EAGAIN (counter saturated) means a wake-up is pending already.
    public func wake() {
        var one: UInt64 = 1
        _ = try? Syscall.retrying { unsafe write(fd, &one, MemoryLayout<UInt64>.size) }
    }

    /// Resets the counter so the next epoll_wait sleeps again.
    func drain() {
        var value: UInt64 = 0
        _ = try? Syscall.retrying { unsafe read(fd, &value, MemoryLayout<UInt64>.size) }
    }
}

/// A `PacketEngine` over epoll, read/writev (TAPs) and recvmmsg/sendmmsg (tunnel sockets).
@safe
public final class EpollEngine: PacketEngine {
    /// Most datagrams one recvmmsg or sendmmsg call handles, and the default for `maxBatch`: 64 frames of up
    /// to 2 KiB fit in L2 together with their descriptors, and it is what the batch sizes upstream use
    /// (OVS NETDEV_MAX_BURST is 32, wireguard-go IdealBatchSize is 128).
    public static let defaultMaxBatch = 64

    /// Counters of one engine. Written by the worker only; read them from the worker (or after it stopped).
    public struct Statistics: Sendable, Equatable {
        /// receive calls made.
        public var receiveCalls: UInt64 = 0
        /// Frames appended to batches.
        public var framesReceived: UInt64 = 0
        /// The most frames one receive call returned (how much batching happens).
        public var maxFramesPerReceive: Int = 0
        /// Datagrams dropped because they did not fit a buffer (MSG_TRUNC, or MSG_CTRUNC without the UDP_GRO
        /// segment size) and TAP reads no longer than the virtio header.
        public var truncated: UInt64 = 0
        /// Reads that failed with an error other than EAGAIN (the port may have been marked failed).
        public var readErrors: UInt64 = 0
        /// Times reading stopped because the pool had no free buffer.
        public var poolExhausted: UInt64 = 0

        public init() {}
    }

    /// Counters; see `Statistics`.
    public private(set) var statistics = Statistics()

    /// The worker's buffers; every received frame lives in one of them.
    public let pool: PacketBufferPool
    /// Wakes `receive` from other threads (the only member other threads may use).
    public let waker: EpollWaker
    /// Most datagrams per recvmmsg/sendmmsg call.
    public let maxBatch: Int

    /// One registered descriptor.
    private struct Port {
        var fd: Int32  // borrowed: the caller closes it after unregister
        var kind: PortKind  // how to read and write it
        var inEpoll: Bool  // registered for EPOLLIN (receive kinds, until a hard error)
        var failedErrno: Int32  // 0, or the errno that made reading it pointless; transmits then drop
        var lastKernelDrops: UInt32  // last SO_RXQ_OVFL value seen (the kernel's counter, wraps at 2^32)
        var kernelDrops: UInt64  // kernel receive-queue drops accumulated from that counter, never wraps
    }

    private let epollFD: Int32
    /// Slot table: a handle's low 16 bits index it, its high 16 bits must match the slot's generation, so a
    /// stale handle of an unregistered port never reaches a newer port in the same slot.
    private var ports: [Port?] = []
    private var generations: [UInt16] = []
    private var freeSlots: [Int] = []
    /// Ports marked failed and not yet reported by `drainNewPortFailures` (appended only when a port fails, so
    /// the per-loop drain is an emptiness check).
    private var newlyFailed: [PortHandle] = []
    /// Buffers handed out by `receive` and not yet released; catches double release.
    private var ledger: BufferLedger
    /// epoll_wait's output, `maxEvents` entries.
    private let events: UnsafeMutablePointer<epoll_event>
    private let maxEvents: Int32
    /// Slots reported ready by the current epoll_wait (reused, never reallocated past maxEvents).
    private var readySlots: [Int] = []
    private let vectors: DatagramVectors
    /// writev's iovecs for one TAP frame: [header slot?, payload].
    private let tapIOVecs: UnsafeMutablePointer<iovec>

    private static let wakerToken = UInt64.max
    /// Ready ports one epoll_wait reports. More ready ports than this are reported by the next call
    /// (level-triggered); 256 is far above the ports one worker serves.
    private static let maxEventsPerWait = 256
    private static let maxPorts = 1 << 16

    /// - Parameters:
    ///   - pool: the worker's buffers.
    ///   - maxBatch: most datagrams per recvmmsg/sendmmsg call.
    /// - Throws: `IOError` when epoll_create1 or eventfd fail.
    public init(pool: PacketBufferPool, maxBatch: Int = defaultMaxBatch) throws(IOError) {
        precondition(maxBatch > 0 && maxBatch <= 1024, "maxBatch must be 1...1024")
        self.pool = pool
        self.maxBatch = maxBatch
        self.ledger = BufferLedger(capacity: pool.count)
        let epollFD: Int32
        do {
            epollFD = Int32(try Syscall.blocking { Int(epoll_create1(Int32(EPOLL_CLOEXEC))) })
        } catch {
            throw IOError(error, "epoll_create1")
        }
        let waker: EpollWaker
        do {
            waker = try EpollWaker()
        } catch {
            closeDescriptor(epollFD)
            throw error
        }
        do {
            try Self.epollAdd(epollFD, fd: waker.fd, token: Self.wakerToken)
        } catch {
            closeDescriptor(epollFD)
            throw IOError(error, "epoll_ctl(ADD eventfd)")
        }
        self.epollFD = epollFD
        self.waker = waker
        self.maxEvents = Int32(Self.maxEventsPerWait)
        unsafe self.events = .allocate(capacity: Self.maxEventsPerWait)
        self.readySlots.reserveCapacity(Self.maxEventsPerWait)
        self.vectors = DatagramVectors(capacity: maxBatch)
        unsafe self.tapIOVecs = .allocate(capacity: 2)
    }

    deinit {
        closeDescriptor(epollFD)
        unsafe events.deallocate()
        unsafe tapIOVecs.deallocate()
    }

    // MARK: - Ports

    /// Registers `fd` (made non-blocking here). Receive kinds join the epoll set; the raw sender does not.
    /// - Parameters:
    ///   - fd: a TAP descriptor or tunnel socket; the caller keeps ownership.
    ///   - kind: how to read and write it.
    /// - Returns: the port's handle.
    /// - Throws: `IOError` for an invalid descriptor (EBADF) or when epoll_ctl fails; EINVAL for a TAP with a
    ///   virtio header when the pool has no large buffers (its TSO reads would not fit).
    public func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle {
        if kind.hasVirtioHeader {
            precondition(pool.headroom >= PortKind.virtioHeaderLength, "headroom too small for the virtio header")
            guard pool.largeCount > 0 else {
                throw IOError(
                    errno: EINVAL, operation: "register TAP fd \(fd)",
                    hint: "a TAP with a virtio header needs large (64 KiB) buffers: create the pool with largeCount")
            }
        }
        do {
            let flags = Int32(try Syscall.blocking { Int(fcntl(fd, F_GETFL)) })
            if flags & O_NONBLOCK == 0 {
                _ = try Syscall.blocking { Int(fcntl(fd, F_SETFL, flags | O_NONBLOCK)) }
            }
        } catch {
            throw IOError(error, "fcntl(O_NONBLOCK) fd \(fd)")
        }
        let slot: Int
        if let reused = freeSlots.popLast() {
            slot = reused
        } else {
            guard ports.count < Self.maxPorts else { throw IOError(errno: ENFILE, operation: "register: port table full") }
            slot = ports.count
            ports.append(nil)
            generations.append(0)
        }
        let handle = PortHandle(raw: UInt32(generations[slot]) << 16 | UInt32(slot))
        let receives = !kind.isSendOnly
        if receives {
            do {
                try Self.epollAdd(epollFD, fd: fd, token: UInt64(handle.raw))
            } catch {
                freeSlots.append(slot)
                throw IOError(error, "epoll_ctl(ADD fd \(fd))")
            }
        }
        ports[slot] = Port(fd: fd, kind: kind, inEpoll: receives, failedErrno: 0, lastKernelDrops: 0, kernelDrops: 0)
        return handle
    }

    /// Stops reading `handle`; later transmits to it are dropped (counted as errors). Unknown handles are ignored.
    /// - Parameter handle: a handle from `register`.
    public func unregister(_ handle: PortHandle) {
        guard let slot = slotIndex(handle), let port = ports[slot] else { return }
        if port.inEpoll { epollRemove(fd: port.fd) }
        ports[slot] = nil
        generations[slot] &+= 1
        freeSlots.append(slot)
    }

    /// The kernel's receive-queue drops on a tunnel socket since it was opened, from SO_RXQ_OVFL. The kernel
    /// reports the count only on datagrams read after a drop, so it is as fresh as the last read.
    /// - Parameter handle: a registered port.
    /// - Returns: the drop count, or nil for an unknown handle.
    public func receiveQueueDrops(for handle: PortHandle) -> UInt64? {
        guard let slot = slotIndex(handle), let port = ports[slot] else { return nil }
        return port.kernelDrops
    }

    /// Why the engine stopped reading `handle` (e.g. EBADFD after its TAP was deleted), or nil while the port
    /// works (or for an unknown handle). The operation is "read" for a TAP, "recvmmsg" for a tunnel socket.
    public func portFailure(of handle: PortHandle) -> IOError? {
        guard let slot = slotIndex(handle), let port = ports[slot], port.failedErrno != 0 else { return nil }
        if case .tap = port.kind { return IOError(errno: port.failedErrno, operation: "read") }
        return IOError(errno: port.failedErrno, operation: "recvmmsg")
    }

    /// Reports each port marked failed since the last call, once; see `PacketEngine.drainNewPortFailures`.
    public func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) {
        guard !newlyFailed.isEmpty else { return }
        for handle in newlyFailed {
            if let error = portFailure(of: handle) { body(handle, error) }
        }
        newlyFailed.removeAll(keepingCapacity: true)
    }

    /// epoll_ctl(EPOLL_CTL_ADD) for EPOLLIN, level-triggered, with `token` as the event's data.
    private static func epollAdd(_ epollFD: Int32, fd: Int32, token: UInt64) throws(Errno) {
        var event = unsafe epoll_event()
        unsafe event.events = EPOLLIN.rawValue
        unsafe event.data.u64 = token
        _ = try Syscall.blocking { Int(unsafe epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event)) }
    }

    /// epoll_ctl(EPOLL_CTL_DEL). Failure is ignored: EBADF/ENOENT mean the caller closed the fd first, and
    /// closing already removed it from the set.
    private func epollRemove(fd: Int32) {
        _ = try? Syscall.blocking { Int(epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)) }
    }

    @inline(__always)
    private func slotIndex(_ handle: PortHandle) -> Int? {
        let slot = Int(handle.raw & 0xFFFF)
        guard slot < generations.count, generations[slot] == UInt16(handle.raw >> 16) else { return nil }
        return slot
    }

    /// Stops polling a port whose reads fail for good, so level-triggered epoll does not spin on it.
    private func markFailed(slot: Int, errno code: Int32) {
        guard var port = ports[slot] else { return }
        if port.inEpoll {
            epollRemove(fd: port.fd)
            port.inEpoll = false
        }
        if port.failedErrno == 0 {
            newlyFailed.append(PortHandle(raw: UInt32(generations[slot]) << 16 | UInt32(slot)))
        }
        port.failedErrno = code
        ports[slot] = port
    }

    // MARK: - Buffers

    @inline(__always)
    private func takeBuffer(large: Bool = false) -> BufferID? {
        guard let buffer = large ? pool.takeLarge() : pool.take() else { return nil }
        ledger.handOut(buffer)
        return buffer
    }

    @inline(__always)
    private func giveBack(_ buffer: BufferID) {
        ledger.takeBack(buffer)
        pool.give(buffer)
    }

    /// Gives a received buffer back to the pool. Releasing a buffer that is not out is a programmer error.
    /// - Parameter buffer: a buffer named by a frame `receive` returned.
    public func release(_ buffer: BufferID) {
        giveBack(buffer)
    }

    /// Buffers handed out by `receive` and not yet released.
    public var buffersOutstanding: Int { ledger.count }

    // MARK: - Receive

    /// Waits up to `timeout` for ready ports, then reads a fair share of the batch from each.
    /// - Parameters:
    ///   - batch: where frames are appended; must have room.
    ///   - timeout: how long to wait; nil waits until a frame or a wake-up arrives. A signal restarts the wait.
    /// - Returns: `.frames(n)`, `.woken(frames:)`, or `.timedOut` (also when the pool is empty: see file comment).
    /// - Throws: `IOError` when epoll_wait fails.
    public func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        precondition(batch.remainingCapacity > 0, "receive needs room in the batch")
        statistics.receiveCalls &+= 1
        let ready: Int
        do {
            let milliseconds = Self.milliseconds(timeout)
            switch try Syscall.retrying({ Int(unsafe epoll_wait(epollFD, events, maxEvents, milliseconds)) }) {
            case .processed(let count): ready = count
            case .wouldBlock: ready = 0
            }
        } catch {
            throw IOError(error, "epoll_wait")
        }
        var woken = false
        readySlots.removeAll(keepingCapacity: true)
        for index in 0..<ready {
            let token = unsafe events[index].data.u64
            if token == Self.wakerToken {
                waker.drain()
                woken = true
            } else if let slot = slotIndex(PortHandle(raw: UInt32(truncatingIfNeeded: token))) {
                readySlots.append(slot)
            }
        }
        let before = batch.count
        var index = 0
        while index < readySlots.count, batch.remainingCapacity > 0 {
            let portsLeft = readySlots.count - index
            let share = (batch.remainingCapacity + portsLeft - 1) / portsLeft
            let slot = readySlots[index]
            index += 1
            guard let port = ports[slot], port.inEpoll else { continue }
            let handle = PortHandle(raw: UInt32(generations[slot]) << 16 | UInt32(slot))
            let exhausted: Bool
            switch port.kind {
            case .tap(let virtio):
                exhausted = readTAP(slot: slot, fd: port.fd, handle: handle, virtio: virtio, share: share, into: &batch)
            case .udpTunnel:
                exhausted = readDatagrams(
                    slot: slot, fd: port.fd, handle: handle, large: pool.largeCount > 0, share: share, into: &batch)
            case .rawGRE, .rawGREIPv6:
                exhausted = readDatagrams(slot: slot, fd: port.fd, handle: handle, large: false, share: share, into: &batch)
            case .rawSender, .udpSender:
                exhausted = false
            }
            if exhausted {
                statistics.poolExhausted &+= 1
                break
            }
        }
        let appended = batch.count - before
        statistics.framesReceived &+= UInt64(appended)
        statistics.maxFramesPerReceive = max(statistics.maxFramesPerReceive, appended)
        if woken { return .woken(frames: appended) }
        return appended > 0 ? .frames(appended) : .timedOut
    }

    /// Reads up to `share` frames from a TAP. With a virtio header, into large buffers at `headroom - 12`, and the
    /// frame handed out with its header. - Returns: true when the pool ran dry.
    private func readTAP(slot: Int, fd: Int32, handle: PortHandle, virtio: Bool, share: Int, into batch: inout RxBatch)
        -> Bool
    {
        let prefix = virtio ? PortKind.virtioHeaderLength : 0
        let readOffset = pool.headroom - prefix
        let capacity = (virtio ? pool.largeBufferSize : pool.bufferSize) - readOffset
        var taken = 0
        while taken < share {
            guard let buffer = takeBuffer(large: virtio) else { return true }
            let start = unsafe pool.unsafeAddress(of: buffer) + readOffset
            let result: IOResult
            do {
                result = try Syscall.retrying { unsafe read(fd, start, capacity) }
            } catch {
                giveBack(buffer)
                statistics.readErrors &+= 1
                markFailed(slot: slot, errno: error.rawValue)
                return false
            }
            guard case .processed(let count) = result, count > 0 else {
                giveBack(buffer)  // EAGAIN: drained (a 0-byte read does not happen on a TAP; stop if it does)
                return false
            }
            guard count > prefix else {
                giveBack(buffer)
                statistics.truncated &+= 1
                continue
            }
            batch.append(
                ReceivedFrame(source: handle, buffer: buffer, offset: UInt32(readOffset), length: UInt32(count),
                              remote: .any))
            taken += 1
        }
        return false
    }

    /// Reads up to `share` datagrams (or GRO reads) from a tunnel socket with recvmmsg, into large buffers when
    /// `large`. - Returns: true when the pool ran dry.
    private func readDatagrams(
        slot: Int, fd: Int32, handle: PortHandle, large: Bool, share: Int, into batch: inout RxBatch
    ) -> Bool {
        let capacity = (large ? pool.largeBufferSize : pool.bufferSize) - pool.headroom
        var taken = 0
        while taken < share {
            let want = min(share - taken, vectors.capacity)
            var prepared = 0
            var exhausted = false
            while prepared < want {
                guard let buffer = takeBuffer(large: large) else {
                    exhausted = true
                    break
                }
                unsafe vectors.prepareReceive(
                    prepared, buffer: buffer, at: pool.unsafeAddress(of: buffer) + pool.headroom, capacity: capacity)
                prepared += 1
            }
            guard prepared > 0 else { return exhausted }
            let result: IOResult
            do {
                result = try Syscall.retrying {
                    Int(unsafe cvx_recvmmsg(fd, vectors.messages, UInt32(prepared), Int32(MSG_DONTWAIT), nil))
                }
            } catch {
                for index in 0..<prepared { giveBack(vectors.buffers[index]) }
                statistics.readErrors &+= 1
                // A pending socket error (ICMP-reported) is returned once and cleared; only a dead
                // descriptor makes polling it pointless.
                if error == .badFileDescriptor || error == .notSocket { markFailed(slot: slot, errno: error.rawValue) }
                return exhausted
            }
            guard case .processed(let received) = result else {
                for index in 0..<prepared { giveBack(vectors.buffers[index]) }
                return exhausted
            }
            for index in 0..<received {
                let buffer = vectors.buffers[index]
                let message = unsafe vectors.messages[index]
                var drops: UInt32 = 0
                if unsafe cvx_cmsg_rxq_ovfl(vectors.header(index), &drops) == 1 {
                    noteKernelDrops(slot: slot, counter: drops)
                }
                if unsafe message.msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
                    giveBack(buffer)
                    statistics.truncated &+= 1
                    continue
                }
                let segmentSize = unsafe cvx_cmsg_udp_gro(vectors.header(index))
                // Control data cut short may have lost UDP_GRO: a read of several datagrams nothing can split.
                if unsafe message.msg_hdr.msg_flags & Int32(MSG_CTRUNC) != 0 && segmentSize == 0 {
                    giveBack(buffer)
                    statistics.truncated &+= 1
                    continue
                }
                let length = unsafe message.msg_len
                batch.append(
                    ReceivedFrame(source: handle, buffer: buffer, offset: UInt32(pool.headroom), length: length,
                                  remote: vectors.sender(index), segmentSize: segmentSize < length ? segmentSize : 0))
                taken += 1
            }
            for index in received..<prepared { giveBack(vectors.buffers[index]) }
            if exhausted { return true }
            if received < prepared { return false }  // drained
        }
        return false
    }

    private func noteKernelDrops(slot: Int, counter: UInt32) {
        guard var port = ports[slot] else { return }
        port.kernelDrops &+= UInt64(counter &- port.lastKernelDrops)
        port.lastKernelDrops = counter
        ports[slot] = port
    }

    // MARK: - Transmit

    /// Sends every frame of `batch`; failures are counted. The buffers are free again when this returns.
    /// - Parameter batch: the frames, each a header slot plus a payload buffer range.
    /// - Returns: counts of sent and dropped frames.
    public func transmit(_ batch: TxBatch) -> TransmitReport {
        var report = TransmitReport()
        let frames = batch.frames
        var index = 0
        while index < frames.count {
            let frame = frames[index]
            guard let slot = slotIndex(frame.target), let port = ports[slot] else {
                report.droppedError += 1
                report.lastErrno = EBADF
                index += 1
                continue
            }
            switch port.kind {
            case .tap:
                if port.failedErrno != 0 {
                    report.droppedError += 1
                    report.lastErrno = port.failedErrno
                } else {
                    unsafe writeTAP(fd: port.fd, frame: frame, header: batch.headerSlot(index), into: &report)
                }
                index += 1
            case .rawSender, .udpSender:
                var end = index + 1
                while end < frames.count, end - index < vectors.capacity, frames[end].target == frame.target { end += 1 }
                sendRun(fd: port.fd, udp: port.kind == .udpSender, batch: batch, range: index..<end, into: &report)
                index = end
            case .udpTunnel, .rawGRE, .rawGREIPv6:
                report.droppedError += 1  // receive-only kinds: nothing sends through them
                report.lastErrno = EOPNOTSUPP
                index += 1
            }
        }
        return report
    }

    private func writeTAP(
        fd: Int32, frame: FrameTransmit, header: UnsafeMutableRawBufferPointer, into report: inout TransmitReport
    ) {
        var count: Int32 = 0
        if frame.headerLength > 0 {
            unsafe tapIOVecs[Int(count)] = iovec(iov_base: header.baseAddress, iov_len: Int(frame.headerLength))
            count += 1
        }
        let payload = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
        unsafe tapIOVecs[Int(count)] = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
        count += 1
        do {
            switch try Syscall.retrying({ unsafe writev(fd, tapIOVecs, count) }) {
            case .processed: report.sent += 1
            case .wouldBlock:
                report.droppedNoBuffer += 1
                report.lastErrno = EAGAIN
            }
        } catch {
            report.count(errno: error.rawValue)
        }
    }

    /// Sends `range` of `batch` (all for one sender) with as few sendmmsg calls as the kernel allows. Counts
    /// datagrams: a GSO message that fails drops all of its datagrams.
    private func sendRun(fd: Int32, udp: Bool, batch: TxBatch, range: Range<Int>, into report: inout TransmitReport) {
        let frames = batch.frames
        for (message, index) in range.enumerated() {
            let frame = frames[index]
            let header = unsafe batch.headerSlot(index)
            let payload = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
            unsafe vectors.prepareSend(
                message, header: header.baseAddress!, headerLength: Int(frame.headerLength),
                payload: payload.baseAddress!, payloadLength: payload.count, to: frame.remote,
                port: udp ? frame.remotePort : 0, segmentSize: udp ? frame.segmentSize : 0)
        }
        /// Datagrams of messages `from ..< to` of the run.
        func datagrams(_ from: Int, _ to: Int) -> Int {
            var total = 0
            for message in from..<to { total += frames[range.lowerBound + message].datagramCount }
            return total
        }
        var next = 0
        let total = range.count
        while next < total {  // every pass sends or drops at least one message
            do {
                switch try Syscall.retrying({
                    Int(unsafe cvx_sendmmsg(fd, vectors.messages + next, UInt32(total - next), 0))
                }) {
                case .processed(let sent):
                    if sent == 0 {  // not documented to happen; drop one so the loop ends
                        report.droppedError += datagrams(next, next + 1)
                        next += 1
                    } else {
                        report.sent += datagrams(next, next + sent)
                        next += sent
                    }
                case .wouldBlock:
                    // The send buffer is full: retrying message by message would cost one failing syscall per
                    // message exactly when the machine is overloaded. Drop the rest of the run.
                    report.count(errno: EAGAIN, frames: datagrams(next, total))
                    next = total
                }
            } catch {
                // sendmmsg fails only for the first message of the call
                let frame = frames[range.lowerBound + next]
                if udp, frame.segmentSize > 0, SegmentedSendFallback.isOversizeRefusal(error.rawValue) {
                    let position = range.lowerBound + next
                    let header = unsafe batch.headerSlot(position)
                    let payload = unsafe pool.unsafeBytes(
                        of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
                    let each = unsafe SegmentedSendFallback.sendEach(
                        fd: fd,
                        header: UnsafeRawBufferPointer(
                            start: header.baseAddress, count: Int(frame.headerLength)),
                        payload: UnsafeRawBufferPointer(payload), segmentSize: Int(frame.segmentSize),
                        to: frame.remote, port: frame.remotePort)
                    report.merge(each)
                } else {
                    report.count(errno: error.rawValue, frames: datagrams(next, next + 1))
                }
                next += 1
            }
        }
    }

    private static func milliseconds(_ timeout: Duration?) -> Int32 {
        guard let timeout else { return -1 }
        let (seconds, attoseconds) = timeout.components
        if seconds < 0 { return 0 }
        let rounded = seconds.multipliedReportingOverflow(by: 1000)
        if rounded.overflow { return Int32.max }
        let total = rounded.partialValue + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: total)
    }
}

/// The recvmmsg/sendmmsg vectors of one engine: `capacity` mmsghdrs, two iovecs, one sockaddr_in6-sized name and
/// one control buffer (`CVX_TUNNEL_CONTROL_SPACE`: room for SO_RXQ_OVFL + UDP_GRO, or UDP_SEGMENT) each, allocated together in init and freed together in deinit (STYLE §7; swift-nio's
/// DatagramVectorReadManager). Message i always points at iovecs 2i...2i+1, sockaddr i and control slot i;
/// those pointers are set once and stay valid until deinit.
@safe
final class DatagramVectors {
    let capacity: Int
    let messages: UnsafeMutablePointer<cvx_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_in6>
    private let control: UnsafeMutableRawPointer
    /// The pool buffer behind message i while a receive is in flight.
    private(set) var buffers: [BufferID]

    init(capacity: Int) {
        self.capacity = capacity
        unsafe messages = .allocate(capacity: capacity)
        unsafe iovecs = .allocate(capacity: capacity * 2)
        unsafe addresses = .allocate(capacity: capacity)
        unsafe control = .allocate(byteCount: capacity * Int(CVX_TUNNEL_CONTROL_SPACE), alignment: 8)
        buffers = Array(repeating: BufferID(0), count: capacity)
        for index in 0..<capacity {
            unsafe (messages + index).initialize(to: cvx_mmsghdr())
            unsafe (iovecs + 2 * index).initialize(repeating: iovec(), count: 2)
            unsafe (addresses + index).initialize(to: sockaddr_in6())
            unsafe messages[index].msg_hdr.msg_iov = iovecs + 2 * index
            unsafe messages[index].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + index)
        }
    }

    deinit {
        unsafe messages.deallocate()
        unsafe iovecs.deallocate()
        unsafe addresses.deallocate()
        unsafe control.deallocate()
    }

    /// Points message `index` at `capacity` bytes at `start` for one received datagram.
    @unsafe
    func prepareReceive(_ index: Int, buffer: BufferID, at start: UnsafeMutableRawPointer, capacity bytes: Int) {
        buffers[index] = buffer
        unsafe iovecs[2 * index] = iovec(iov_base: start, iov_len: bytes)
        unsafe messages[index].msg_hdr.msg_iovlen = 1
        unsafe messages[index].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in6>.size)
        unsafe messages[index].msg_hdr.msg_control = control + index * Int(CVX_TUNNEL_CONTROL_SPACE)
        unsafe messages[index].msg_hdr.msg_controllen = Int(CVX_TUNNEL_CONTROL_SPACE)
        unsafe messages[index].msg_hdr.msg_flags = 0
        unsafe messages[index].msg_len = 0
    }

    /// Points message `index` at header + payload, addressed to `remote:port`, with a UDP_SEGMENT cmsg when
    /// `segmentSize` > 0.
    @unsafe
    func prepareSend(
        _ index: Int, header: UnsafeMutableRawPointer, headerLength: Int, payload: UnsafeMutableRawPointer,
        payloadLength: Int, to remote: UnderlayAddress, port: UInt16 = 0, segmentSize: UInt16 = 0
    ) {
        unsafe iovecs[2 * index] = iovec(iov_base: header, iov_len: headerLength)
        unsafe iovecs[2 * index + 1] = iovec(iov_base: payload, iov_len: payloadLength)
        unsafe messages[index].msg_hdr.msg_namelen = unsafe SocketAddress.store(remote, port: port, into: addresses + index)
        unsafe messages[index].msg_hdr.msg_iovlen = 2
        if segmentSize > 0 {
            let slot = unsafe control + index * Int(CVX_TUNNEL_CONTROL_SPACE)
            unsafe messages[index].msg_hdr.msg_control = slot
            unsafe messages[index].msg_hdr.msg_controllen = Int(unsafe cvx_cmsg_put_udp_segment(slot, segmentSize))
        } else {
            unsafe messages[index].msg_hdr.msg_control = nil
            unsafe messages[index].msg_hdr.msg_controllen = 0
        }
        unsafe messages[index].msg_hdr.msg_flags = 0
        unsafe messages[index].msg_len = 0
    }

    /// Message `index`'s msghdr, for walking its control messages.
    @unsafe
    func header(_ index: Int) -> UnsafeMutablePointer<msghdr> {
        unsafe UnsafeMutableRawPointer(messages + index).assumingMemoryBound(to: msghdr.self)
    }

    /// The sender of received message `index` (`.any` when the name is of neither family).
    func sender(_ index: Int) -> UnderlayAddress {
        unsafe SocketAddress.load(from: addresses + index)?.address ?? .any
    }
}
#endif
