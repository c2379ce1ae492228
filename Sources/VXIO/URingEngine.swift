// The io_uring engine: one ring per worker thread, a provided-buffer ring over the worker's packet pool,
// multishot receives kept armed on every port, and batched sends. Design notes: docs/io-uring.md.
//
// Receive flow:
//   1. init offers the pool's free buffers to the kernel in two provided-buffer rings: standard buffers
//      (group 0) at `pool.headroom` with length `bufferSize - headroom`, for tunnel sockets and plain TAPs;
//      large buffers (group 1) at `headroom - 12` with length `largeBufferSize - headroom + 12`, for TAPs with a
//      virtio header, whose reads carry up to 64 KiB and start with the header (so the Ethernet frame lands at
//      `headroom`). A buffer's ID in either ring is its pool index, so a CQE names the `BufferID` directly.
//   2. `register` arms one receive per port: multishot recvmsg (tunnel sockets), multishot read (TAP, Linux
//      6.7+) or a single-shot read re-armed after every frame (TAP, older kernels). user_data = tag + handle.
//      The UDP tunnel socket takes its buffers from the large group when there is one (with UDP_GRO one read
//      carries up to 64 KiB of datagrams) and asks for control data, to learn the GRO segment size.
//   3. `receive` publishes released buffers, re-arms ended requests, submits and waits once, then harvests
//      up to the batch's room in CQE batches; each CQE with IORING_CQE_F_BUFFER names the pool buffer filled.
//   4. `release` puts the buffer back into the buffer ring (published at the next receive or transmit).
//   The large ring holds at most `largeRingLimit` buffers (64); the rest stay in the pool. The kernel takes
//   buffers in ring order, so every buffer in the ring is written once per lap: with the whole pool in it (152
//   buffers, 10 MB per worker) each 64 KiB read landed in memory no cache still held. With 64, a worker's reads
//   cycle through 4 MB, which stays in the L3 cache.
//   A multishot request ends without IORING_CQE_F_MORE (ENOBUFS when the buffer ring ran dry, CQ overflow);
//   the port is then queued and re-armed once the buffer ring has buffers again.
//
// Transmit flow: one SQE per frame (TAP: writev of header slot + payload; raw sender: sendmsg with MSG_DONTWAIT to
// the remote's address; UDP sender: the same to address and port, plus a UDP_SEGMENT cmsg for a GSO send), one
// io_uring_submit per batch, then wait until every send has completed. The msghdr, iovecs, address
// and cmsg of an entry live in per-slot arrays that stay untouched until its CQE.
// Receive completions seen while waiting are stashed and handed out first by the next `receive`.
//
// Locking: none. The ring, the buffer ring, the port table and the stash belong to the one worker thread that
// calls the engine (with IORING_SETUP_SINGLE_ISSUER the kernel enforces it: the first thread to use the ring
// owns it). Only `waker` is shared with other threads.

#if os(Linux)
#if canImport(Musl)
import Musl
#elseif canImport(Glibc)
import Glibc
#endif
internal import CLibURing
internal import CVXLinux
import VXPacket

/// A `PacketEngine` on io_uring: provided-buffer ring, multishot receives, batched sends.
///
/// Create it on any thread; from then on call it from one worker thread only (the first thread that uses the
/// ring becomes its single issuer). Check `URingEngine.isSupported` first and fall back to the epoll engine
/// when it is false.
@safe
public final class URingEngine: PacketEngine {
    /// Submission queue entries. A transmit chunk (`transmitCapacity`, at most 128 by default) plus one re-arm
    /// per port and a burst of cancels fit without an intermediate submit; more only costs an extra
    /// io_uring_submit inside `getSQE`, never a failure.
    public static let submissionEntries: UInt32 = 256
    /// CQEs looked at per io_uring_peek_batch_cqe call: a cache-friendly chunk of the batch being filled.
    static let harvestChunk = 64
    /// The provided-buffer group of standard buffers: tunnel sockets and TAPs without a virtio header.
    static let bufferGroup: UInt32 = 0
    /// The provided-buffer group of large buffers: TAPs with a virtio header (TSO reads up to 64 KiB).
    static let largeBufferGroup: UInt32 = 1
    /// The kernel caps a provided-buffer ring at 32768 entries (ring_entries must be < 65536 and a power of 2).
    static let maxBufferRingEntries = 32_768
    /// Large buffers offered to the kernel at most (`init`'s `largeRingLimit`): a worker's receive batch.
    /// Measured with `tools/bench --quick` (docs/performance-history.md, "A smaller large-buffer ring"): against
    /// the whole pool, one TCP stream +10-20% and peak RSS -12 MiB; 16 or 32 gained a little more TCP but lost
    /// 64-byte frames (0.56-0.59 against 0.63 Mpps), which each take a large buffer from a container's TAP and
    /// need a batch's worth.
    public static let defaultLargeRingLimit = 64

    /// The probe result for this kernel, computed once per process.
    public static let support: URingSupport = URingSupport.probe()

    /// True when this kernel can run the engine. When false, `support.unsupportedReason` says why.
    public static var isSupported: Bool { support.isSupported }

    public let pool: PacketBufferPool
    public let waker: URingWaker

    /// The setup flags the kernel accepted, for the log (e.g. "SINGLE_ISSUER|DEFER_TASKRUN").
    public let setupDescription: String
    /// Whether TAP ports use multishot reads; turns false for good if the kernel rejects one at run time.
    public private(set) var multishotRead: Bool
    /// Counters of this engine (worker-local, plain stores; read them on the worker thread).
    public private(set) var stats = URingStats()
    /// Buffers handed to the worker and not yet released (the double-release check).
    private var ledger: BufferLedger

    // MARK: Ring state (worker thread only)

    /// The ring. Allocated in init, exited and freed in deinit; never moves.
    private let ring: UnsafeMutablePointer<io_uring>
    /// The ring was created with IORING_SETUP_R_DISABLED and is enabled by the first worker call.
    private var ringDisabled: Bool
    /// The provided-buffer ring of standard buffers (group 0).
    private var standardBuffers: ProvidedBufferRing
    /// The provided-buffer ring of large buffers (group 1); nil when the pool has none to offer.
    private var largeBuffers: ProvidedBufferRing?
    /// Pointers filled by io_uring_peek_batch_cqe; `harvestChunk` entries.
    private let cqeBatch: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>

    // MARK: Ports

    /// Port table indexed by the low 16 bits of a handle.
    private var ports: [PortSlot] = []
    /// Free indices of `ports`.
    private var freeSlots: [UInt16] = []
    /// Ports whose receive request has to be (re-)armed. Each index appears once (`PortSlot.queuedForArm`).
    private var armQueue: [UInt16] = []
    /// Handles of ports whose receive failed for good, not yet reported by `drainNewPortFailures` (appended only
    /// when a port fails, so the per-loop drain is an emptiness check).
    private var newlyFailed: [UInt32] = []
    /// Template for the raw IPv4 GRE socket's multishot recvmsg: a sockaddr_in name and no control data. The
    /// kernel copies a template when a request is issued.
    private let receiveMessage: UnsafeMutablePointer<msghdr>
    /// Template for the raw IPv6 GRE socket's multishot recvmsg: a sockaddr_in6 name (in the UDP socket's name
    /// space) and no control data.
    private let ipv6ReceiveMessage: UnsafeMutablePointer<msghdr>
    /// Template for the UDP tunnel socket's multishot recvmsg: a sockaddr_in6-sized name and room for the
    /// SO_RXQ_OVFL and UDP_GRO cmsgs.
    private let tunnelReceiveMessage: UnsafeMutablePointer<msghdr>

    // MARK: Stash of receive completions harvested during transmit

    /// A FIFO of `pool.count` frames (each holds a distinct buffer, so it can never hold more).
    private var stash: [ReceivedFrame]
    private var stashHead = 0
    private var stashCount = 0

    // MARK: Waker

    /// 8 bytes the eventfd read completes into. Allocated in init and freed in deinit after the ring is gone.
    private let wakeCounter: UnsafeMutablePointer<UInt64>
    /// A waker completion was harvested and not yet reported by `receive`.
    private var wokenPending = false
    /// A waker read is armed (or queued in the SQ).
    private var wakeArmed = false

    // MARK: Transmit

    /// Frames handled per submission in `transmit`; the iovec, msghdr and sockaddr arrays have this many slots.
    public let transmitCapacity: Int
    /// 2 iovecs per frame: header slot, payload.
    private let transmitIOVecs: UnsafeMutablePointer<iovec>
    private let transmitMessages: UnsafeMutablePointer<msghdr>
    private let transmitAddresses: UnsafeMutablePointer<sockaddr_in6>
    /// One UDP_SEGMENT cmsg per slot (`CVX_UDP_SEGMENT_CONTROL_SPACE` bytes each).
    private let transmitControl: UnsafeMutableRawPointer
    /// Per slot: the sender descriptor and segment size of a UDP GSO send, for the fallback when the kernel
    /// refuses it (SegmentedSendFallback). Sized at init.
    private var transmitGSOSlots: [(fd: Int32, segmentSize: Int)]
    /// Sends submitted whose CQE has not been harvested yet.
    private var transmitPending = 0
    /// What the current `transmit` call has counted so far.
    private var transmitReport = TransmitReport()

    /// Creates a ring and provided-buffer rings over `pool`'s free buffers.
    /// - Parameters:
    ///   - pool: the worker's packet memory. The engine takes its free buffers (minus the reserves) and hands
    ///     them to the kernel; `release` gives them back to the kernel, not to the pool.
    ///   - poolReserve: free standard buffers left in the pool for the worker's own `take()` (frames it builds
    ///     itself, such as TSO segments).
    ///   - largePoolReserve: free large buffers left in the pool for the worker's own `takeLarge()` (its
    ///     coalescing scratch and its UDP GSO sends: `DataplaneWorker.scratchBufferReserve`, 8 + 32). The rest
    ///     serve TAPs with a virtio header; with none left, registering such a TAP fails.
    ///   - largeRingLimit: the most large buffers the kernel's ring holds; the others stay in the pool, where the
    ///     worker's `takeLarge()` finds them. Few enough that the buffers the kernel writes stay in cache (see the
    ///     file comment), enough for a receive batch.
    ///   - transmitCapacity: frames per transmit submission (normally the worker's TxBatch capacity); larger
    ///     batches are sent in several submissions.
    /// - Throws: `IOError` when the kernel refuses the ring, a buffer ring or the eventfd.
    public init(
        pool: PacketBufferPool, poolReserve: Int = 0, largePoolReserve: Int = 0,
        largeRingLimit: Int = defaultLargeRingLimit, transmitCapacity: Int = 128
    ) throws(IOError) {
        precondition(transmitCapacity > 0, "transmitCapacity must be positive")
        precondition(largeRingLimit > 0, "largeRingLimit must be positive")
        precondition(poolReserve >= 0 && poolReserve < pool.available, "poolReserve must leave buffers for the ring")
        precondition(
            largePoolReserve >= 0 && largePoolReserve <= pool.availableLarge,
            "largePoolReserve exceeds the large buffers")
        self.pool = pool
        self.ledger = BufferLedger(capacity: pool.count)
        self.transmitCapacity = transmitCapacity
        self.waker = try URingWaker()

        // Every receive CQE consumes one provided buffer, and a buffer goes back into a ring only after its CQE
        // was harvested, so at most as many receive CQEs as the pool has buffers can be outstanding (the large
        // ring is smaller than the large pool, but the worker releases buffers it took from the pool into it),
        // plus at most one CQE per SQE (sends, cancels, ended requests): size the CQ for both so it cannot overflow.
        let entries = ProvidedBufferRing.entries(for: pool.standardCount)
        let largeOffered = min(pool.availableLarge - largePoolReserve, largeRingLimit)
        let largeEntries = largeOffered > 0 ? ProvidedBufferRing.entries(for: largeOffered) : 0
        let receiveBound = entries + (largeEntries > 0 ? ProvidedBufferRing.entries(for: pool.largeCount) : 0)
        var completionEntries = 1
        while completionEntries < receiveBound + 2 * Int(Self.submissionEntries) { completionEntries <<= 1 }

        unsafe self.ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        unsafe ring.initialize(to: io_uring())
        var chosen: (flags: UInt32, name: String)? = nil
        var lastError: Int32 = 0
        for attempt in URingSetupFlags.attempts {
            var params = io_uring_params()
            params.flags = attempt.flags
            params.cq_entries = UInt32(completionEntries)
            let result = unsafe io_uring_queue_init_params(Self.submissionEntries, ring, &params)
            if result == 0 {
                chosen = attempt
                break
            }
            lastError = -result
            // EINVAL: this kernel does not know a flag; anything else (ENOMEM, EPERM, ENOSYS) will not improve.
            if lastError != EINVAL { break }
        }
        guard let chosen else {
            unsafe ring.deallocate()
            throw IOError(errno: lastError, operation: "io_uring_queue_init_params")
        }
        self.setupDescription = chosen.name
        self.ringDisabled = chosen.flags & UInt32(IORING_SETUP_R_DISABLED) != 0

        let standard: ProvidedBufferRing
        do {
            standard = try unsafe ProvidedBufferRing(
                ring: ring, group: Self.bufferGroup, entries: entries, addressOffset: pool.headroom,
                length: pool.bufferSize - pool.headroom)
        } catch {
            unsafe io_uring_queue_exit(ring)
            unsafe ring.deallocate()
            throw error
        }
        self.standardBuffers = standard
        if largeEntries > 0 {
            // Large buffers serve TAPs with a virtio header only: the read starts 12 bytes early so the Ethernet
            // frame lands at the headroom like every other frame.
            let offset = pool.headroom - PortKind.virtioHeaderLength
            do {
                self.largeBuffers = try unsafe ProvidedBufferRing(
                    ring: ring, group: Self.largeBufferGroup, entries: largeEntries, addressOffset: offset,
                    length: pool.largeBufferSize - offset)
            } catch {
                unsafe io_uring_queue_exit(ring)
                unsafe standard.unmap()
                unsafe ring.deallocate()
                throw error
            }
        } else {
            self.largeBuffers = nil
        }

        unsafe self.cqeBatch = .allocate(capacity: Self.harvestChunk)
        unsafe self.receiveMessage = .allocate(capacity: 1)
        unsafe receiveMessage.initialize(to: msghdr())
        // A raw IPv4 GRE datagram carries its 20-byte IPv4 header: the smallest name keeps `DaemonOptions.maxMTU`.
        // No control data: raw sockets have no GRO, and a cut SO_RXQ_OVFL cmsg is ignored (cvx_uring_recvmsg_parse).
        unsafe receiveMessage.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        unsafe self.ipv6ReceiveMessage = .allocate(capacity: 1)
        unsafe ipv6ReceiveMessage.initialize(to: msghdr())
        // A raw IPv6 GRE datagram starts at GRE, so the larger name still leaves more room than the IPv4 socket's.
        unsafe ipv6ReceiveMessage.pointee.msg_namelen = socklen_t(CVX_URING_RECVMSG_NAME_SPACE)
        unsafe self.tunnelReceiveMessage = .allocate(capacity: 1)
        unsafe tunnelReceiveMessage.initialize(to: msghdr())
        unsafe tunnelReceiveMessage.pointee.msg_namelen = socklen_t(CVX_URING_RECVMSG_NAME_SPACE)
        // Only the length matters: with buffer select the kernel writes the cmsgs into the picked buffer. Room for
        // both messages the socket asks for: once it has dropped anything, SO_RXQ_OVFL comes first on every
        // datagram, and with room for one only UDP_GRO was cut off (MSG_CTRUNC), so GRO reads lost their segment
        // size and went on as one frame.
        unsafe tunnelReceiveMessage.pointee.msg_controllen = Int(CVX_TUNNEL_CONTROL_SPACE)
        unsafe self.wakeCounter = .allocate(capacity: 1)
        unsafe wakeCounter.initialize(to: 0)
        unsafe self.transmitIOVecs = .allocate(capacity: 2 * transmitCapacity)
        unsafe transmitIOVecs.initialize(repeating: iovec(), count: 2 * transmitCapacity)
        unsafe self.transmitMessages = .allocate(capacity: transmitCapacity)
        unsafe transmitMessages.initialize(repeating: msghdr(), count: transmitCapacity)
        unsafe self.transmitAddresses = .allocate(capacity: transmitCapacity)
        unsafe transmitAddresses.initialize(repeating: sockaddr_in6(), count: transmitCapacity)
        unsafe self.transmitControl = .allocate(
            byteCount: transmitCapacity * Int(CVX_UDP_SEGMENT_CONTROL_SPACE), alignment: 8)
        self.transmitGSOSlots = Array(repeating: (fd: -1, segmentSize: 0), count: transmitCapacity)
        self.stash = Array(
            repeating: ReceivedFrame(source: PortHandle(raw: 0), buffer: BufferID(0), offset: 0, length: 0, remote: .any),
            count: pool.count)
        self.multishotRead = Self.support.multishotRead

        // Hand the pool's free buffers to the kernel.
        var offered = 0
        while offered < entries, pool.available > poolReserve, let buffer = pool.take() {
            recycle(buffer)
            offered += 1
        }
        offered = 0
        while offered < largeOffered, let buffer = pool.takeLarge() {
            recycle(buffer)
            offered += 1
        }
        publishBuffers()
        // Queued only: a disabled ring cannot submit until the worker thread enables it.
        armWaker()
    }

    deinit {
        // io_uring_queue_exit closes the ring; the kernel cancels every request (a cancelled receive writes
        // nothing) and drops the buffer ring registration. Only then is the memory they pointed at freed.
        unsafe io_uring_queue_exit(ring)
        unsafe standardBuffers.unmap()
        unsafe largeBuffers?.unmap()
        unsafe ring.deallocate()
        unsafe cqeBatch.deallocate()
        unsafe receiveMessage.deallocate()
        unsafe ipv6ReceiveMessage.deallocate()
        unsafe tunnelReceiveMessage.deallocate()
        unsafe transmitControl.deallocate()
        unsafe wakeCounter.deallocate()
        unsafe transmitIOVecs.deallocate()
        unsafe transmitMessages.deallocate()
        unsafe transmitAddresses.deallocate()
    }

    // MARK: PacketEngine

    /// Registers `fd` and, for receiving kinds, queues its receive request (submitted by the next `receive`).
    /// - Parameters:
    ///   - fd: a TAP fd, a bound UDP socket, a raw GRE socket or a raw IPPROTO_RAW socket. Not owned.
    ///   - kind: how to read or write it.
    /// - Returns: the port's handle.
    /// - Throws: `IOError` (EBADF) when `fd` is not open, (EMFILE) when 65,536 ports are registered, (EINVAL) for
    ///   a TAP with a virtio header when no large buffers were offered to the kernel.
    public func register(fd: Int32, kind: PortKind) throws(IOError) -> PortHandle {
        try enableIfNeeded()
        guard fcntl(fd, F_GETFD) >= 0 else { throw IOError(errno: errno, operation: "register: fcntl(F_GETFD)") }
        if kind.hasVirtioHeader && largeBuffers == nil {
            throw IOError(
                errno: EINVAL, operation: "register TAP fd \(fd)",
                hint: "a TAP with a virtio header needs large (64 KiB) buffers: create the pool with largeCount")
        }
        let index: UInt16
        if let reused = freeSlots.popLast() {
            index = reused
        } else {
            guard ports.count <= Int(UInt16.max) else { throw IOError(errno: EMFILE, operation: "register") }
            index = UInt16(ports.count)
            ports.append(PortSlot())
        }
        let generation = (ports[Int(index)].handle >> 16 &+ 1) & 0xFFFF
        let handle = generation << 16 | UInt32(index)
        ports[Int(index)] = PortSlot(
            handle: handle, fd: fd, kind: kind, state: .active, inFlight: false, queuedForArm: false,
            multishot: multishotRead, failure: 0)
        if !kind.isSendOnly {
            queueArm(index)
            armQueuedPorts()
        }
        return PortHandle(raw: handle)
    }

    /// Cancels the port's receive request (io_uring_prep_cancel64 by its user_data) and submits the cancel at
    /// once, so the caller may close the fd on return. Completions still arriving for it recycle their buffers
    /// and are otherwise ignored.
    public func unregister(_ handle: PortHandle) {
        guard let index = liveIndex(handle.raw) else { return }
        if !ports[Int(index)].inFlight {
            freeSlot(index)
            return
        }
        ports[Int(index)].state = .cancelling
        guard (try? enableIfNeeded()) != nil, let sqe = unsafe getSQE() else {
            // Cannot reach the kernel; the slot stays reserved so stale completions still find it cancelled.
            return
        }
        unsafe io_uring_prep_cancel64(sqe, UserData.receive(handle.raw), 0)
        unsafe io_uring_sqe_set_data64(sqe, UserData.cancel(handle.raw))
        _ = unsafe io_uring_submit(ring)
    }

    /// Waits up to `timeout` for frames (see the file comment); appends at most `batch.remainingCapacity`.
    /// - Returns: `.frames(n)`, `.woken(frames:)` after `waker.wake()`, or `.timedOut`.
    /// - Throws: `IOError` when io_uring_enter fails for a reason other than a timeout or a signal.
    public func receive(into batch: inout RxBatch, timeout: Duration?) throws(IOError) -> ReceiveOutcome {
        try enableIfNeeded()
        stats.receiveCalls &+= 1
        let before = batch.count
        let deadline = timeout.map { ContinuousClock.now + $0 }
        // Bounded: each pass either produces something and returns, or blocks in the kernel until a CQE
        // arrives or the deadline passes.
        while true {
            publishBuffers()
            armQueuedPorts()
            if !wakeArmed { armWaker() }
            let completionsReady = unsafe io_uring_cq_ready(ring) > 0
            let ready = stashCount > 0 || wokenPending || completionsReady
            let remaining = deadline.map { $0 - ContinuousClock.now }
            if ready || batch.remainingCapacity == 0 || (remaining.map { $0 <= .zero } ?? false) {
                try enter(waitFor: 0, timeout: nil)
            } else {
                try enter(waitFor: 1, timeout: remaining)
            }
            harvest(into: &batch)
            let frames = batch.count - before
            if frames > 0 {
                stats.framesReceived &+= UInt64(frames)
                stats.nonEmptyReceives &+= 1
                stats.largestReceive = max(stats.largestReceive, frames)
            }
            if wokenPending {
                wokenPending = false
                return .woken(frames: frames)
            }
            if frames > 0 { return .frames(frames) }
            if batch.remainingCapacity == 0 { return .timedOut }
            if let deadline, ContinuousClock.now >= deadline { return .timedOut }
        }
    }

    /// Sends every frame of `batch` and returns once the kernel has finished with all of them.
    /// - Returns: per-frame results counted into a `TransmitReport`. Frames to unknown or receive-only ports
    ///   count as `droppedError` (EBADF / EOPNOTSUPP).
    public func transmit(_ batch: TxBatch) -> TransmitReport {
        transmitReport = TransmitReport()
        guard (try? enableIfNeeded()) != nil else {
            transmitReport.droppedError = batch.count
            transmitReport.lastErrno = EBADFD
            return transmitReport
        }
        publishBuffers()
        let frames = batch.frames
        var start = 0
        while start < frames.count {
            let end = min(start + transmitCapacity, frames.count)
            for position in start..<end {
                unsafe prepareSend(frames[position], position: position, slot: position - start, batch: batch)
            }
            waitForSends()
            start = end
        }
        stats.framesTransmitted &+= UInt64(transmitReport.sent)
        return transmitReport
    }

    /// Gives `buffer` back to the kernel's buffer ring (to the pool if the ring is full, which only happens for
    /// buffers the worker took from the pool itself).
    public func release(_ buffer: BufferID) {
        precondition(buffer.index < UInt32(pool.count), "buffer \(buffer.index) is not from this engine's pool")
        ledger.takeBack(buffer)
        recycle(buffer)
    }

    /// Why the port stopped receiving (its request failed with something other than ENOBUFS or a
    /// cancellation), or nil while it is healthy. The operation is "read" for a TAP, "recvmsg" for a socket.
    public func portFailure(of handle: PortHandle) -> IOError? {
        guard let index = liveIndex(handle.raw), ports[Int(index)].failure != 0 else { return nil }
        return IOError(errno: ports[Int(index)].failure, operation: ports[Int(index)].kind.isTAP ? "read" : "recvmsg")
    }

    /// Reports each port whose receive ended for good since the last call, once; see
    /// `PacketEngine.drainNewPortFailures`.
    public func drainNewPortFailures(_ body: (PortHandle, IOError) -> Void) {
        guard !newlyFailed.isEmpty else { return }
        for handle in newlyFailed {
            if let error = portFailure(of: PortHandle(raw: handle)) { body(PortHandle(raw: handle), error) }
        }
        newlyFailed.removeAll(keepingCapacity: true)
    }

    // MARK: Submission

    /// Enables a ring created with IORING_SETUP_R_DISABLED; the calling thread becomes its single issuer.
    private func enableIfNeeded() throws(IOError) {
        guard ringDisabled else { return }
        let result = unsafe cvx_uring_enable_rings(ring)
        guard result >= 0 else { throw IOError(errno: -result, operation: "io_uring_enable_rings") }
        ringDisabled = false
    }

    /// A free SQE, submitting what is queued first when the SQ is full. Nil only if the kernel takes nothing.
    @unsafe
    private func getSQE() -> UnsafeMutablePointer<io_uring_sqe>? {
        if let sqe = unsafe io_uring_get_sqe(ring) { return unsafe sqe }
        guard !ringDisabled else { return nil }
        _ = unsafe io_uring_submit(ring)
        return unsafe io_uring_get_sqe(ring)
    }

    /// Submits queued SQEs and waits for `waitFor` CQEs or `timeout` (nil: no limit). Flushes deferred task
    /// work either way, so `io_uring_cq_ready` is current afterwards.
    private func enter(waitFor: UInt32, timeout: Duration?) throws(IOError) {
        // Bounded: EINTR only repeats the call; a bounded count guards against a signal storm.
        for _ in 0..<64 {
            let result: Int32
            if waitFor == 0 {
                result = unsafe io_uring_submit_and_get_events(ring)
            } else if let timeout {
                let parts = timeout.components
                var spec = __kernel_timespec(
                    tv_sec: max(0, parts.seconds), tv_nsec: max(0, parts.attoseconds / 1_000_000_000))
                var cqe: UnsafeMutablePointer<io_uring_cqe>? = nil
                result = unsafe io_uring_submit_and_wait_timeout(ring, &cqe, waitFor, &spec, nil)
            } else {
                result = unsafe io_uring_submit_and_wait(ring, waitFor)
            }
            switch result {
            case 0...: return
            case -ETIME: return  // the timeout passed
            case -EINTR: continue
            case -EBUSY, -EAGAIN: return  // completions are backed up: harvesting them is the cure
            default: throw IOError(errno: -result, operation: "io_uring_submit_and_wait")
            }
        }
    }

    // MARK: Buffers

    /// Adds `buffer` to its size's buffer ring (visible after `publishBuffers`), or to the pool if that ring is
    /// full or absent.
    private func recycle(_ buffer: BufferID) {
        // Safe to hand to the kernel: the pool's block lives as long as `pool`, which this engine holds until
        // after the ring is closed in deinit.
        if pool.isLarge(buffer) {
            guard largeBuffers != nil, unsafe largeBuffers!.add(buffer, at: pool.unsafeAddress(of: buffer)) else {
                pool.give(buffer)
                return
            }
        } else {
            guard unsafe standardBuffers.add(buffer, at: pool.unsafeAddress(of: buffer)) else {
                pool.give(buffer)
                return
            }
        }
    }

    /// Makes recycled buffers visible to the kernel (one store-release of each ring's tail).
    private func publishBuffers() {
        standardBuffers.publish()
        largeBuffers?.publish()
    }

    /// Buffers the kernel can pick for `kind`'s reads right now (published or about to be).
    private func buffersInRing(for kind: PortKind) -> Int {
        usesLargeBuffers(kind) ? largeBuffers?.inRing ?? 0 : standardBuffers.inRing
    }

    /// Virtio TAPs (TSO reads) and the UDP tunnel socket (GRO reads) read into large buffers when there are any.
    private func usesLargeBuffers(_ kind: PortKind) -> Bool {
        kind.hasVirtioHeader || (kind == .udpTunnel && largeBuffers != nil)
    }

    // MARK: Arming receives

    private func queueArm(_ index: UInt16) {
        guard !ports[Int(index)].queuedForArm else { return }
        ports[Int(index)].queuedForArm = true
        armQueue.append(index)
    }

    /// Arms every queued port whose request is not in flight. Holds a port off while its buffer ring is empty:
    /// an armed request would only end at once with ENOBUFS again.
    private func armQueuedPorts() {
        guard !armQueue.isEmpty else { return }
        var kept = 0
        for position in armQueue.indices {
            let index = armQueue[position]
            let slot = ports[Int(index)]
            guard slot.state == .active, !slot.inFlight, slot.failure == 0 else {
                ports[Int(index)].queuedForArm = false
                continue
            }
            guard buffersInRing(for: slot.kind) > 0, let sqe = unsafe getSQE() else {
                armQueue[kept] = index
                kept += 1
                continue
            }
            switch slot.kind {
            case .udpTunnel, .rawGRE, .rawGREIPv6:
                let group = usesLargeBuffers(slot.kind) ? Self.largeBufferGroup : Self.bufferGroup
                unsafe cvx_uring_prep_recvmsg_multishot(sqe, slot.fd, receiveTemplate(for: slot.kind), group)
            case .tap(let virtio):
                let buffers = virtio ? largeBuffers! : standardBuffers  // register refused virtio without large
                if slot.multishot {
                    unsafe cvx_uring_prep_read_multishot(sqe, slot.fd, buffers.group)
                } else {
                    unsafe cvx_uring_prep_read_select(sqe, slot.fd, UInt32(buffers.length), buffers.group)
                }
            case .rawSender, .udpSender:
                preconditionFailure("send-only ports are never armed")
            }
            unsafe io_uring_sqe_set_data64(sqe, UserData.receive(slot.handle))
            ports[Int(index)].inFlight = true
            ports[Int(index)].queuedForArm = false
            stats.arms &+= 1
        }
        armQueue.removeSubrange(kept...)
    }

    /// Queues a read of the eventfd into `wakeCounter`.
    private func armWaker() {
        guard let sqe = unsafe getSQE() else { return }
        // Safe to hand to the kernel: `wakeCounter` is freed in deinit only after the ring is closed.
        unsafe io_uring_prep_read(sqe, waker.fd, wakeCounter, UInt32(MemoryLayout<UInt64>.size), 0)
        unsafe io_uring_sqe_set_data64(sqe, UserData.wake)
        wakeArmed = true
    }

    // MARK: Completions

    /// Moves stashed frames, then completions, into `batch` until it is full or nothing is left.
    private func harvest(into batch: inout RxBatch) {
        while stashCount > 0, batch.remainingCapacity > 0 {
            batch.append(stash[stashHead])
            stashHead = (stashHead + 1) % stash.count
            stashCount -= 1
        }
        // Bounded: every pass consumes at least one CQE of a CQ that holds a finite number of them; at most one
        // frame per CQE, and never more CQEs than the batch has room for.
        while batch.remainingCapacity > 0 {
            let wanted = UInt32(min(batch.remainingCapacity, Self.harvestChunk))
            let count = unsafe io_uring_peek_batch_cqe(ring, cqeBatch, wanted)
            if count == 0 { break }
            for position in 0..<Int(count) {
                let cqe = unsafe cqeBatch[position]!
                if let frame = unsafe complete(cqe.pointee.user_data, cqe.pointee.res, cqe.pointee.flags) {
                    batch.append(frame)
                }
            }
            unsafe io_uring_cq_advance(ring, count)
            stats.completions &+= UInt64(count)
        }
    }

    /// Handles every ready CQE, stashing frames; used while waiting for sends.
    private func drainToStash() {
        // Bounded like `harvest`: each pass consumes at least one CQE.
        while true {
            let count = unsafe io_uring_peek_batch_cqe(ring, cqeBatch, UInt32(Self.harvestChunk))
            if count == 0 { return }
            for position in 0..<Int(count) {
                let cqe = unsafe cqeBatch[position]!
                if let frame = unsafe complete(cqe.pointee.user_data, cqe.pointee.res, cqe.pointee.flags) {
                    // Cannot overflow: every stashed frame holds a distinct pool buffer.
                    stash[(stashHead + stashCount) % stash.count] = frame
                    stashCount += 1
                    stats.stashed &+= 1
                }
            }
            unsafe io_uring_cq_advance(ring, count)
            stats.completions &+= UInt64(count)
        }
    }

    /// Handles one CQE. Returns the frame it delivered, if any.
    private func complete(_ userData: UInt64, _ result: Int32, _ flags: UInt32) -> ReceivedFrame? {
        switch UserData.tag(userData) {
        case UserData.sendTag:
            transmitPending -= 1
            let datagrams = UserData.datagrams(userData)
            switch result {
            case 0...: transmitReport.sent += datagrams
            case _ where datagrams > 1 && SegmentedSendFallback.isOversizeRefusal(-result):
                unsafe resendEach(slot: UserData.slot(userData))
            default: transmitReport.count(errno: -result, frames: datagrams)
            }
            return nil
        case UserData.wakeTag:
            wakeArmed = false
            // ECANCELED only at ring exit; any other failure would repeat forever on re-arm.
            if result >= 0 || result == -EINTR || result == -EAGAIN { wokenPending = true; armWaker() }
            return nil
        case UserData.receiveTag:
            return completeReceive(handle: UserData.handle(userData), result: result, flags: flags)
        default:
            return nil  // cancel results: the cancelled request's own final CQE is what matters
        }
    }

    private func completeReceive(handle: UInt32, result: Int32, flags: UInt32) -> ReceivedFrame? {
        let index = Int(handle & 0xFFFF)
        let current = index < ports.count && ports[index].handle == handle && ports[index].state != .free
        var frame: ReceivedFrame? = nil
        if flags & UInt32(IORING_CQE_F_BUFFER) != 0 {
            let buffer = BufferID(flags >> 16)  // IORING_CQE_BUFFER_SHIFT; IDs are pool indices in both groups
            if pool.isLarge(buffer) {
                largeBuffers?.inRing -= 1
            } else {
                standardBuffers.inRing -= 1
            }
            if current, ports[index].state == .active, result > 0 {
                frame = unsafe makeFrame(port: ports[index], handle: handle, buffer: buffer, length: result)
            }
            if frame == nil { recycle(buffer) }
        }
        guard flags & UInt32(IORING_CQE_F_MORE) == 0 else { return frame }

        // The request ended.
        guard current else { return frame }
        ports[index].inFlight = false
        if ports[index].state == .cancelling {
            freeSlot(UInt16(index))
            return frame
        }
        let rejectsMultishotRead = result == -EINVAL || result == -EOPNOTSUPP || result == -EBADFD
        if result >= 0 || result == -ENOBUFS || result == -EINTR || result == -EAGAIN {
            // Buffer ring ran dry, CQ overflow, or a single-shot read finished: arm again (held off by
            // armQueuedPorts until the buffer ring has buffers).
            if result == -ENOBUFS { stats.bufferRingEmpty &+= 1 }
            queueArm(UInt16(index))
        } else if rejectsMultishotRead, ports[index].kind.isTAP, ports[index].multishot {
            // This kernel or file rejects IORING_OP_READ_MULTISHOT: fall back to single-shot reads. EBADFD
            // (unpollable file) is also what a TAP deleted underneath returns, so it falls back for this port only:
            // its single-shot read then fails the same way and marks the port failed, and the other TAPs keep
            // their multishot reads.
            if result != -EBADFD { multishotRead = false }
            ports[index].multishot = false
            stats.multishotFallbacks &+= 1
            queueArm(UInt16(index))
        } else {
            ports[index].failure = -result
            newlyFailed.append(handle)
        }
        return frame
    }

    /// The frame a receive CQE delivered into `buffer`, or nil when it has to be dropped (truncated datagram).
    @unsafe
    private func makeFrame(port: PortSlot, handle: UInt32, buffer: BufferID, length: Int32) -> ReceivedFrame? {
        switch port.kind {
        case .udpTunnel, .rawGRE, .rawGREIPv6:
            // Where the kernel wrote: the headroom in a standard buffer, 12 bytes before it in a large one.
            let readOffset = pool.isLarge(buffer) ? largeBuffers?.addressOffset ?? pool.headroom : pool.headroom
            let start = unsafe pool.unsafeAddress(of: buffer) + readOffset
            var payloadOffset: UInt32 = 0
            var payloadLength: UInt32 = 0
            var sender: (UInt64, UInt64) = (0, 0)  // 16 bytes, network order
            var segmentSize: UInt32 = 0
            let message = unsafe receiveTemplate(for: port.kind)
            let parsed = unsafe withUnsafeMutableBytes(of: &sender) { senderBytes in
                unsafe cvx_uring_recvmsg_parse(
                    start, length, message, &payloadOffset, &payloadLength,
                    senderBytes.baseAddress!.assumingMemoryBound(to: UInt8.self), &segmentSize)
            }
            guard parsed == 0 else {
                stats.truncatedDrops &+= 1
                return nil
            }
            ledger.handOut(buffer)
            return ReceivedFrame(
                source: PortHandle(raw: handle), buffer: buffer, offset: UInt32(readOffset) + payloadOffset,
                length: payloadLength,
                remote: UnderlayAddress(IPv6Address(high: UInt64(bigEndian: sender.0), low: UInt64(bigEndian: sender.1))),
                segmentSize: segmentSize < payloadLength ? segmentSize : 0)
        case .tap(let virtio):
            // With a virtio header the read started 12 bytes before the headroom (the large ring's offset).
            let offset = virtio ? pool.headroom - PortKind.virtioHeaderLength : pool.headroom
            ledger.handOut(buffer)
            return ReceivedFrame(
                source: PortHandle(raw: handle), buffer: buffer, offset: UInt32(offset), length: UInt32(length),
                remote: .any)
        case .rawSender, .udpSender:
            return nil
        }
    }

    /// The recvmsg template a datagram socket's receives were armed with (the parse must use the same lengths).
    @unsafe
    private func receiveTemplate(for kind: PortKind) -> UnsafeMutablePointer<msghdr> {
        switch kind {
        case .udpTunnel: unsafe tunnelReceiveMessage
        case .rawGREIPv6: unsafe ipv6ReceiveMessage
        default: unsafe receiveMessage
        }
    }

    // MARK: Sending

    /// Fills iovecs (and for socket sends a msghdr + address) in transmit slot `slot` and queues the SQE for
    /// entry `position` of `batch` (whose header slot has the same index).
    @unsafe
    private func prepareSend(_ frame: FrameTransmit, position: Int, slot: Int, batch: TxBatch) {
        let datagrams = frame.datagramCount
        guard let index = liveIndex(frame.target.raw), ports[Int(index)].state == .active else {
            transmitReport.droppedError += datagrams
            transmitReport.lastErrno = EBADF
            return
        }
        let port = ports[Int(index)]
        guard port.kind.isSendOnly || port.kind.isTAP else {
            transmitReport.droppedError += datagrams
            transmitReport.lastErrno = EOPNOTSUPP
            return
        }
        guard let sqe = unsafe getSQE() else {
            transmitReport.droppedNoBuffer += datagrams
            transmitReport.lastErrno = EBUSY
            return
        }
        // Safe to hand to the kernel: the header slot lives in `batch` and the payload in `pool`; both outlive
        // this transmit call, which waits for every send's CQE before it returns.
        let vectors = unsafe transmitIOVecs + 2 * slot
        var count = 0
        if frame.headerLength > 0 {
            unsafe vectors[count] = iovec(
                iov_base: batch.headerSlot(position).baseAddress,
                iov_len: Int(frame.headerLength))
            count += 1
        }
        unsafe vectors[count] = iovec(
            iov_base: pool.unsafeAddress(of: frame.buffer) + Int(frame.offset), iov_len: Int(frame.length))
        count += 1
        if port.kind.isTAP {
            unsafe io_uring_prep_writev(sqe, port.fd, vectors, UInt32(count), 0)
        } else {
            let address = unsafe transmitAddresses + slot
            // The UDP port only matters to UDP senders; raw sends are addressed by IP alone (port 0).
            let addressLength = unsafe SocketAddress.store(
                frame.remote, port: port.kind == .udpSender ? frame.remotePort : 0, into: address)
            let message = unsafe transmitMessages + slot
            unsafe message.pointee = msghdr()
            unsafe message.pointee.msg_name = UnsafeMutableRawPointer(address)
            unsafe message.pointee.msg_namelen = addressLength
            unsafe message.pointee.msg_iov = vectors
            unsafe message.pointee.msg_iovlen = count
            if port.kind == .udpSender {
                if frame.segmentSize > 0 {
                    // Stable until the CQE like the rest of the slot: the kernel reads the cmsg when it issues.
                    let control = unsafe transmitControl + slot * Int(CVX_UDP_SEGMENT_CONTROL_SPACE)
                    unsafe message.pointee.msg_control = control
                    unsafe message.pointee.msg_controllen = Int(
                        unsafe cvx_cmsg_put_udp_segment(control, frame.segmentSize))
                    transmitGSOSlots[slot] = (fd: port.fd, segmentSize: Int(frame.segmentSize))
                }
            }
            // MSG_DONTWAIT: a full socket buffer completes with EAGAIN (counted) instead of parking the send.
            unsafe io_uring_prep_sendmsg(sqe, port.fd, message, UInt32(MSG_DONTWAIT))
        }
        unsafe io_uring_sqe_set_data64(sqe, UserData.send(datagrams: datagrams, slot: slot))
        transmitPending += 1
    }

    /// Sends the datagrams of the refused GSO send in transmit slot `slot` one by one (SegmentedSendFallback).
    /// The slot's msghdr, iovecs and buffers are intact: the slot is not reused before every send of the current
    /// chunk has completed, and this runs while its CQE is harvested.
    @unsafe
    private func resendEach(slot: Int) {
        let gso = transmitGSOSlots[slot]
        let message = unsafe transmitMessages + slot
        let vectors = unsafe message.pointee.msg_iov!
        let count = unsafe message.pointee.msg_iovlen
        let header = unsafe count > 1
            ? UnsafeRawBufferPointer(start: vectors[0].iov_base, count: vectors[0].iov_len)
            : UnsafeRawBufferPointer(start: nil, count: 0)
        let payload = unsafe UnsafeRawBufferPointer(start: vectors[count - 1].iov_base, count: vectors[count - 1].iov_len)
        let destination = unsafe SocketAddress.load(from: transmitAddresses + slot)
        let report = unsafe SegmentedSendFallback.sendEach(
            fd: gso.fd, header: header, payload: payload, segmentSize: gso.segmentSize,
            to: destination?.address ?? .any, port: destination?.port ?? 0)
        transmitReport.merge(report)
    }

    /// Submits the queued sends and harvests until every one has completed; receive completions go to the stash.
    private func waitForSends() {
        // Bounded: each wait returns at least one CQE (or an error that ends the loop), and at most
        // `transmitPending` + the receive traffic of the meantime arrive; a failing enter gives up below.
        var failures = 0
        while transmitPending > 0 {
            let result = unsafe io_uring_submit_and_wait(ring, 1)
            if result < 0 && result != -EINTR && result != -EBUSY && result != -EAGAIN {
                failures += 1
                if failures > 3 {
                    // The kernel refuses to take the sends; they never reached it, so count them as errors.
                    transmitReport.droppedError += transmitPending
                    transmitReport.lastErrno = -result
                    transmitPending = 0
                    return
                }
            }
            drainToStash()
        }
    }

    // MARK: Ports

    private func liveIndex(_ raw: UInt32) -> UInt16? {
        let index = Int(raw & 0xFFFF)
        guard index < ports.count, ports[index].handle == raw, ports[index].state == .active else { return nil }
        return UInt16(index)
    }

    private func freeSlot(_ index: UInt16) {
        ports[Int(index)].state = .free
        ports[Int(index)].inFlight = false
        freeSlots.append(index)
    }
}

/// One provided-buffer ring (one buffer group): its mapping, and how many of its slots hold buffers.
@safe
private struct ProvidedBufferRing {
    /// The ring (mmap'd and registered by cvx_uring_buf_ring_create, unmapped by `unmap` after the ring exits).
    let ring: UnsafeMutablePointer<io_uring_buf_ring>
    /// Slots (a power of two).
    let entries: Int
    /// The buffer group receives name in `buf_group`.
    let group: UInt32
    /// Where in a pool buffer the kernel writes: the headroom, or 12 bytes before it for virtio TAP reads.
    let addressOffset: Int
    /// Bytes the kernel may write from there.
    let length: Int
    /// Buffers added and not yet consumed by a CQE, published or not.
    var inRing = 0
    /// Buffers added since the last publish (the kernel cannot see them yet).
    var unpublished: UInt32 = 0

    /// Ring slots for `buffers` buffers: the next power of two, at most the kernel's limit.
    static func entries(for buffers: Int) -> Int {
        var entries = 1
        while entries < min(max(buffers, 1), URingEngine.maxBufferRingEntries) { entries <<= 1 }
        return entries
    }

    /// Maps and registers the ring as `group` of `ring`.
    init(
        ring owner: UnsafeMutablePointer<io_uring>, group: UInt32, entries: Int, addressOffset: Int, length: Int
    ) throws(IOError) {
        var registered: UnsafeMutablePointer<io_uring_buf_ring>? = nil
        let result = unsafe cvx_uring_buf_ring_create(owner, UInt32(entries), group, &registered)
        guard result == 0, let registered = unsafe registered else {
            throw IOError(errno: -result, operation: "io_uring_register_buf_ring (group \(group))")
        }
        unsafe self.ring = registered
        self.entries = entries
        self.group = group
        self.addressOffset = addressOffset
        self.length = length
    }

    /// Adds the buffer starting at `base` under its pool index. - Returns: false when the ring is full.
    @unsafe
    mutating func add(_ buffer: BufferID, at base: UnsafeMutableRawPointer) -> Bool {
        guard inRing < entries else { return false }
        unsafe cvx_uring_buf_ring_add(
            ring, base + addressOffset, UInt32(length), UInt16(truncatingIfNeeded: buffer.index),
            UInt32(entries - 1), unpublished)
        unpublished += 1
        inRing += 1
        return true
    }

    /// Makes added buffers visible to the kernel (one store-release of the tail).
    mutating func publish() {
        guard unpublished > 0 else { return }
        unsafe cvx_uring_buf_ring_publish(ring, unpublished)
        unpublished = 0
    }

    /// Unmaps the ring; call after io_uring_queue_exit (the registration went with the ring).
    @unsafe
    func unmap() {
        unsafe cvx_uring_buf_ring_destroy(nil, ring, UInt32(entries), group)
    }
}

/// Counters of one `URingEngine` (worker-local).
public struct URingStats: Sendable, Equatable {
    /// `receive` calls.
    public var receiveCalls: UInt64 = 0
    /// `receive` calls that returned at least one frame.
    public var nonEmptyReceives: UInt64 = 0
    /// Frames returned by `receive`.
    public var framesReceived: UInt64 = 0
    /// The most frames one `receive` returned.
    public var largestReceive = 0
    /// Frames sent by `transmit`.
    public var framesTransmitted: UInt64 = 0
    /// CQEs harvested.
    public var completions: UInt64 = 0
    /// Receive requests armed (first arm and re-arms).
    public var arms: UInt64 = 0
    /// Receive requests ended by ENOBUFS (the buffer ring ran dry).
    public var bufferRingEmpty: UInt64 = 0
    /// Receive frames harvested while waiting for sends and handed out by a later `receive`.
    public var stashed: UInt64 = 0
    /// Datagrams dropped because they did not fit a buffer (MSG_TRUNC).
    public var truncatedDrops: UInt64 = 0
    /// TAP ports moved from multishot to single-shot reads after the kernel rejected a multishot read.
    public var multishotFallbacks: UInt64 = 0
}

/// One registered port.
private struct PortSlot {
    /// Current handle: index in the low 16 bits, generation in the high 16.
    var handle: UInt32 = 0
    /// The descriptor (not owned).
    var fd: Int32 = -1
    var kind: PortKind = .rawSender
    var state: PortState = .free
    /// A receive request is submitted or queued in the SQ and its final CQE has not arrived.
    var inFlight = false
    /// The index is in `armQueue`.
    var queuedForArm = false
    /// TAP: multishot read; false: single-shot reads re-armed after each frame.
    var multishot = false
    /// errno that ended receiving for good (0: none).
    var failure: Int32 = 0
}

private enum PortState {
    case free, active, cancelling
}

/// user_data layout: tag in the top 8 bits, the port handle in the low 32 bits.
private enum UserData {
    static let receiveTag: UInt64 = 1
    static let wakeTag: UInt64 = 2
    static let sendTag: UInt64 = 3
    static let cancelTag: UInt64 = 4

    static func receive(_ handle: UInt32) -> UInt64 { receiveTag << 56 | UInt64(handle) }
    static func cancel(_ handle: UInt32) -> UInt64 { cancelTag << 56 | UInt64(handle) }
    static let wake: UInt64 = wakeTag << 56
    /// A send; the low 32 bits carry how many datagrams it is (more than 1 for a UDP GSO send), so its CQE
    /// counts them all.
    /// Bits 32-47 carry its transmit slot, for the fallback of a refused GSO send.
    static func send(datagrams: Int, slot: Int) -> UInt64 {
        sendTag << 56 | UInt64(UInt16(truncatingIfNeeded: slot)) << 32 | UInt64(UInt32(truncatingIfNeeded: datagrams))
    }
    static func datagrams(_ userData: UInt64) -> Int { Int(UInt32(truncatingIfNeeded: userData)) }
    static func slot(_ userData: UInt64) -> Int { Int(UInt16(truncatingIfNeeded: userData >> 32)) }

    static func tag(_ userData: UInt64) -> UInt64 { userData >> 56 }
    static func handle(_ userData: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: userData) }
}

extension PortKind {
    fileprivate var isTAP: Bool {
        if case .tap = self { return true }
        return false
    }
}
#endif
