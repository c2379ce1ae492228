// The worker: one thread, one engine, one run-to-completion loop.
//
// Flow of one iteration (`runOnce`):
//   1. receive   engine.receive fills `rx` with up to `batchSize` frames from every ready port.
//   2. classify  each frame → (bridge domain, ingress, inner frame bounds). TAP frames map handle → port →
//                domain; VXLAN datagrams are decapsulated and mapped sender → peer, VNI → domain; GRE packets
//                likewise, with the peer's key layout deciding the VNI. Malformed or unknown → dropped, counted.
//   3. learn     every classified frame's source MAC is learnt (stage "l2-learn").
//   4. forward   every frame is switched on the table as it stands after the whole batch was learnt ("forwarding
//                is done based on the end-state of the mac table", VPP l2_learn.c): unicast, flood, or drop.
//   5. encap     frames for peers get the peer's prebuilt outer header in their TxBatch slot; the frame itself
//                is never copied, so a flood to N destinations costs N small headers.
//   6. transmit  engine.transmit sends the whole TxBatch (flushed early if it fills).
//   7. release   every rx buffer goes back to the engine.
//
// TAP ports with a virtio header (TSO and checksum offload; docs/offload.md). Their frames start with a 12-byte
// virtio-net header, in large (64 KiB) buffers:
//   - TAP → anywhere: classify strips the header. gso NONE: a partial checksum is completed in place
//     (ChecksumCompletion) and the frame is switched like any other. gso TCPV4/6: the frame is switched once, as
//     one frame (learnt once, decided once), and segmented per destination in `emit`: to a peer or a TAP
//     without the header, TCPSegmenter writes each segment (≤ `overlayMTU`, so the outer packet fits the
//     underlay) into a standard buffer taken from the pool, and each goes out as a normal frame; the segment
//     buffers go back to the pool when the TxBatch is flushed. To a TAP with the header it passes through whole,
//     header included, with no copy: both ends do TSO, so the receiving kernel takes 64 KiB at once.
//   - anywhere → TAP with the header: every write needs a header, so nothing goes to such a TAP from `emit`
//     directly. Frames for it are deferred and sent after the batch was switched, per TAP in arrival order
//     (`sendDeferred`): runs of plain frames go through the UDPCoalescer (UDP datagrams) and the TCPCoalescer
//     (everything else), whose merged items are written into the scratch (8 large buffers, taken once) and
//     sent as one GSO write (TSO for TCP, USO for UDP: the kernel cuts it back into datagrams), and whose
//     pass-through items (ARP, floods, anything not mergeable) get a 12-byte plain header in their TxBatch header
//     slot in front of their own buffer. The two coalescers' items leave in order of their first frames. A merged
//     item with a member whose TCP or UDP checksum fails (the coalescer verifies as it copies) goes out as its
//     frames, each behind a plain header, for the kernel to verify and drop the bad one. A TSO frame from another
//     virtio TAP ends the run and passes through as above.
// Nothing on these paths allocates: the coalescer, the deferred list and the segment-buffer list are sized at
// init (the deferred list holds one entry per frame per virtio TAP it goes to, so a wide flood may grow it once).
//
// VXLAN with UDP segmentation offload (docs/offload.md). When the daemon attached UDP sender sockets (`.udpSender`,
// a small pool, one picked per flow hash so the UDP source port still follows the flow), VXLAN leaves through them
// and the kernel builds the outer IPv4 + UDP headers:
//   - a TSO frame for a VXLAN peer is segmented straight into one large buffer laid out as [VXLAN][segment]
//     [VXLAN][segment]…, every piece but the last the same length, and sent as ONE entry with
//     `segmentSize` = 8 + segment length (a UDP GSO send; at most 64 pieces and 65,507 bytes each, so a TSO
//     frame may take a few); the next TSO frame of the flow continues the last of those sends while it is still the
//     last entry and its pieces are all full (`VXLANPack` again), so a burst of TSO frames shares sends;
//   - consecutive plain frames for the same peer, VNI and flow hash, all of one length (the last may be shorter),
//     are packed into one GSO send the same way (`VXLANPack`): the first goes out as a single datagram with its
//     8-byte VXLAN header in the header slot, and only when a second one matches are both copied into a large
//     buffer and the entry rewritten in place;
//   - GRE, and VXLAN when no UDP sender is attached, take the raw sender and the prebuilt outer header as before.
// With an underlay TAP (`WorkerCommand.attachUnderlay`, docs/offload.md "The TAP underlay") there are no tunnel
// sockets: VXLAN leaves as writes into the TAP (`emitUnderlay`: a 24-byte tunnel virtio-net header and the outer
// Ethernet + IPv4 + UDP + VXLAN headers in the header slot, the frame from its own buffer), a TSO frame whole, for
// the kernel to carry as one burst, and consecutive plain frames of one flow packed as for a UDP GSO send
// (`VXLANPack`) into one UDP_L4 write, the outer IPv4 and UDP headers in the slot; frames read from it are sorted by
// `classifyUnderlay` (ARP punted, VXLAN for this VTEP decapsulated, a burst's header rewritten in place into a
// container TAP's 12 bytes so the TSO paths above take it, a UDP_L4 run split like a GRO read).
// On receive the UDP tunnel socket has UDP_GRO: one rx frame may be many datagrams (`ReceivedFrame.segmentSize`).
// Classification splits it; each datagram is decapsulated, learnt and switched on its own, all sharing the one rx
// buffer (released once). `classified` holds `classifiedCapacity` frames; a batch with more (many GRO reads) is
// switched in parts of that size, each learnt before it is forwarded.
//
// Locking, producers and consumers: the worker thread alone touches `engine`, `rx`, `tx`, and the handle maps.
// The MAC table is shared with other workers and the control thread (lock-free, see ForwardingTable). The config
// snapshot is published by the control thread and picked up once per batch (ConfigReader). Control requests
// that involve file descriptors arrive through `WorkerMailbox` and run on this thread between batches.
//
// Nothing in steps 1-7 allocates: batches, scratch arrays and header slots are sized once at init.
//
// Files: this one holds the worker's state, its run loop and its commands; Worker+Switching.swift steps 2-7;
// Worker+Offload.swift the TSO, UDP GSO and coalescing paths; Worker+Underlay.swift the underlay TAP's. The state
// is internal rather than private only so those extensions can reach it: nothing outside the worker touches it.

import Dispatch
import Logging
import Synchronization
import VXForwarding
import VXIO
import VXOffload
import VXPacket

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a worker is asked to do on its own thread.
public enum WorkerCommand: Sendable {
    /// Start reading TAP `fd` as port `port`.
    case attachPort(PortID, fd: Int32, kind: PortKind)
    /// Stop reading port `port` (the caller closes the fd afterwards).
    case detachPort(PortID)
    /// Start using a tunnel socket: a `.udpTunnel`, `.rawGRE` or `.rawGREIPv6` receiver, a `.udpSender`, or the
    /// `.rawSender`.
    case attachTunnel(fd: Int32, kind: PortKind)
    /// Start using this worker's queue of the underlay TAP (opened with the 24-byte tunnel virtio-net header and
    /// TUN_F_UDP_TUNNEL_GSO): VXLAN leaves and arrives through it as whole outer frames (see the file comment).
    case attachUnderlay(fd: Int32)
    /// Send `bytes` (an Ethernet frame built by the control plane: ARP for the underlay) out of the underlay TAP.
    case transmitUnderlay(bytes: [UInt8])
    /// Send `bytes` (an Ethernet frame built by the control plane: a DHCP reply, an ARP reply) out of `port`.
    case transmitFrame(PortID, bytes: [UInt8])
    /// Leave the run loop.
    case stop
}

/// Commands for one worker from other threads, with a completion per command.
public final class WorkerMailbox: Sendable {
    /// Gets the engine's handle for attach commands, nil for the others.
    public typealias Completion = @Sendable (Result<PortHandle?, IOError>) -> Void

    private let queue = Mutex<[(WorkerCommand, Completion)]>([])
    /// Set when the queue is non-empty, so the worker checks with one relaxed load per batch.
    private let pending = Atomic<Bool>(false)
    private let waker: any EngineWaker

    init(waker: any EngineWaker) {
        self.waker = waker
    }

    /// Queues `command`; `completion` runs on the worker thread once it is done.
    public func post(_ command: WorkerCommand, completion: @escaping Completion) {
        queue.withLock { $0.append((command, completion)) }
        pending.store(true, ordering: .releasing)
        waker.wake()
    }

    /// Queues `command` and blocks the calling (control) thread until the worker has run it.
    /// - Returns: the engine's handle for attach commands.
    @discardableResult
    public func run(_ command: WorkerCommand) throws(IOError) -> PortHandle? {
        let done = Mutex<Result<PortHandle?, IOError>?>(nil)
        let semaphore = DispatchSemaphore(value: 0)
        post(command) { result in
            done.withLock { $0 = result }
            semaphore.signal()
        }
        semaphore.wait()
        switch done.withLock({ $0 })! {
        case .success(let handle): return handle
        case .failure(let error): throw error
        }
    }

    func takeAll() -> [(WorkerCommand, Completion)] {
        guard pending.load(ordering: .acquiring) else { return [] }
        return queue.withLock { queue in
            pending.store(false, ordering: .relaxed)
            defer { queue.removeAll() }
            return queue
        }
    }
}

/// One dataplane worker over engine type `Engine` (generic, so the hot loop makes no existential calls).
public final class DataplaneWorker<Engine: PacketEngine> {
    /// Frames per receive call. 64 amortises the syscall (or the CQE harvest) over enough frames to make it
    /// cheap, and keeps a batch's buffers (64 × 2 KiB) inside L2 (OVS uses 32, wireguard-go 128).
    public static var defaultBatchSize: Int { 64 }
    /// Transmit entries per flush: a batch fully flooded to 4 destinations fits without an early flush.
    public static var defaultTransmitCapacity: Int { 256 }
    /// The largest inner IP packet a tunnel carries: 1450 fits VXLAN over a 1500-byte underlay (outer IPv4 20 +
    /// UDP 8 + VXLAN 8 + inner Ethernet 14) and so also GRE (20 + 4 + 4 + 14). TSO frames from TAPs are cut into
    /// segments no larger than this, whatever MSS the container's stack chose.
    public static var defaultOverlayMTU: Int { 1450 }
    /// Standard buffers a URingEngine should leave in the pool (`poolReserve`) for TSO segments: one TxBatch
    /// worth, so segmenting never has to flush early for want of buffers.
    public static var segmentBufferReserve: Int { defaultTransmitCapacity }
    /// Large buffers a URingEngine should leave in the pool (`largePoolReserve`): the coalescing scratch plus
    /// `gsoBufferReserve`.
    public static var scratchBufferReserve: Int { coalesceScratchBuffers + gsoBufferReserve }
    /// Large buffers a worker keeps as its coalescing scratch: merged frames of up to 64 KiB each, one per buffer,
    /// sent together at the next flush. One buffer made a flush (with io_uring a submission and wait) per merged
    /// frame; eight let a batch's merged frames share one (docs/offload.md, "Buffers").
    public static var coalesceScratchBuffers: Int { 8 }
    /// Large buffers for UDP GSO sends kept out of the kernel's buffer ring: a TxBatch whose sends need more is
    /// flushed early and the buffers reused (32 GSO sends of up to 64 KiB ≈ 2 MiB in flight per flush).
    public static var gsoBufferReserve: Int { 32 }
    /// The smallest pool a worker still receives full batches from, with either engine: what it keeps for itself
    /// plus one receive batch. One batch is enough because `processBatch` releases every buffer of a batch
    /// before the next `receive`, so the kernel (io_uring's provided-buffer rings) or the epoll engine's reads
    /// can fill a whole batch again.
    ///   standard: segmentBufferReserve (256, one TxBatch of TSO segments) + defaultBatchSize (64) = 320, which
    ///             also meets URingEngine's `poolReserve < pool.available`;
    ///   large:    scratchBufferReserve (8 coalescing scratch + 32 GSO sends = 40) + defaultBatchSize (64) = 104.
    ///             URingEngine offers large buffers to the kernel only above `largePoolReserve`, and without them
    ///             TAPs with a virtio header cannot register and the UDP tunnel socket loses its GRO reads.
    /// Less still runs, but receives partial batches (and the ring runs dry and re-arms) under load.
    public static var minimumPool: PacketBufferPool.Counts {
        PacketBufferPool.Counts(
            standard: segmentBufferReserve + defaultBatchSize, large: scratchBufferReserve + defaultBatchSize)
    }
    /// Classified frames one switching pass holds, per frame of the receive batch: a GRO read carries up to 64
    /// datagrams, but 4 per frame on average is plenty; beyond that the batch is switched in parts.
    public static var classifiedPerReceivedFrame: Int { 4 }
    /// The largest UDP payload of one IPv4 datagram (65,535 - 20 - 8): the cap on a GSO send.
    static var maximumUDPPayload: Int { 65_507 }

    public let engine: Engine
    /// `engine.pool`, held here: reading it through the generic engine's getter on every frame returned the pool
    /// +1, a retain and a release per call (4% of the machine's samples under offloaded TCP).
    let pool: PacketBufferPool
    public let table: ForwardingTable
    public let counters: WorkerCounters
    public let mailbox: WorkerMailbox
    /// Where punted frames go; nil: nothing is punted.
    public let punt: PuntQueue?
    var reader: ConfigReader
    var rx: RxBatch
    let tx: TxBatch
    private let logger: Logger

    // Handle maps, worker thread only: arrays indexed by `handle.slot` (dense), holding the whole handle so a
    // stale handle from a reused slot never matches.
    var portBySlot: [(handle: PortHandle, port: PortID)?] = []
    var handleByPortIndex: [PortHandle?] = []
    var tunnelBySlot: [(handle: PortHandle, framing: TunnelFraming)?] = []
    var sender: PortHandle?
    /// UDP sender sockets for VXLAN, picked by flow hash; empty: VXLAN goes through the raw `sender`.
    var udpSenders: [PortHandle] = []
    /// The underlay TAP queue: when set, VXLAN goes through it as whole outer frames instead of through sockets.
    var underlay: PortHandle?
    /// Per-batch scratch: the frames that survived classification, in rx order.
    var classified: [ClassifiedFrame]
    /// The last source learnt in this batch and the outcome: a run of frames from one sender (a GRO read's
    /// datagrams, a TAP's burst) learns it once. Cleared per batch, as the topology snapshot may change between.
    var lastLearnt: (key: SwitchKey, refusal: ForwardingDropReason?)? = nil
    /// Most frames `classified` holds before the batch is switched in parts (allocated once).
    let classifiedCapacity: Int
    private var stopping = false

    // Offload state (see the file comment), worker thread only.
    /// By port index: the port's TAP has a virtio header (every frame to it needs one).
    var virtioByPortIndex: [Bool] = []
    /// The largest inner IP packet a segment may be.
    let overlayMTU: Int
    /// Merges runs of TCP segments for one virtio TAP; reset per run.
    var coalescer: TCPCoalescer
    /// Merges runs of UDP datagrams for one virtio TAP (USO writes); reset per run. Offered every frame first.
    var udpCoalescer: UDPCoalescer
    /// The large buffers coalesced frames are written into, packed, one after the other until the next flush;
    /// empty when the pool had none to spare (frames then pass through uncoalesced). Several, so that one
    /// flush sends several merged frames (one io_uring submission) instead of one each.
    let coalesceScratches: [BufferID]
    /// The scratch buffer being filled: an index into `coalesceScratches` (reset by `flushTransmit`).
    var scratchIndex = 0
    /// Bytes of that scratch buffer used by entries in `tx` (reset by `flushTransmit`).
    var scratchUsed = 0
    /// Standard buffers holding TSO segments named by `tx`; given back to the pool by `flushTransmit`.
    var segmentBuffers: [BufferID]
    /// Large buffers holding UDP GSO sends named by `tx`; given back to the pool by `flushTransmit`.
    var gsoBuffers: [BufferID]
    /// Most bytes of one UDP GSO send: the UDP limit, or less when large buffers are smaller; 0 when the pool has
    /// no large buffers (VXLAN then goes one datagram per send).
    let gsoPayloadLimit: Int
    /// The largest datagram a GSO send may cut: VXLAN + untagged Ethernet + `overlayMTU`, so with the outer 28
    /// bytes it fits the 1500-byte underlay the MTU was chosen for (the kernel refuses a larger gso_size with
    /// EMSGSIZE, where a single datagram would only be fragmented).
    let gsoSegmentLimit: Int
    /// The plain-frame GSO send being built at the end of `tx`, if any.
    var pack: VXLANPack?
    /// Frames for virtio TAPs, in switching order, sent by `sendDeferred` once the batch is switched.
    var deferred: [DeferredTransmit]
    /// The coalescer's frame numbers in the current run → indices into `classified`.
    var runFrames: [Int]
    /// The same for the UDP coalescer.
    var udpRunFrames: [Int]
    /// Large buffers this worker took for its coalescing scratch (`coalesceScratchBuffers`, fewer from a small pool).
    public var coalesceScratchCount: Int { coalesceScratches.count }
    /// What the offload paths did: `counters.offloads`, which the control thread reads for `stats`.
    public var offloadStatistics: WorkerOffloadCounters { counters.offloads }

    /// - Parameters:
    ///   - engine: this worker's engine (used from the worker thread only once `run` starts). Its pool should have
    ///     free standard buffers for TSO segments and free large buffers for the coalescing scratch (a
    ///     URingEngine keeps them with `segmentBufferReserve` and `scratchBufferReserve`).
    ///   - table: the switch's MAC table, shared by all workers.
    ///   - publisher: where the control plane publishes config snapshots.
    ///   - counters: this worker's counters.
    ///   - overlayMTU: the largest inner IP packet a TSO segment may become.
    public init(
        engine: Engine, table: ForwardingTable, publisher: ConfigPublisher, counters: WorkerCounters,
        batchSize: Int = defaultBatchSize, transmitCapacity: Int = defaultTransmitCapacity,
        punt: PuntQueue? = nil, overlayMTU: Int = defaultOverlayMTU,
        logger: Logger = Logger(label: "vxswitch.worker")
    ) {
        let pool = engine.pool
        precondition(
            overlayMTU >= 576 && overlayMTU + 18 <= pool.bufferSize - pool.headroom,
            "overlayMTU must be at least 576 and a segment (MTU + Ethernet + 802.1Q) must fit a standard buffer")
        self.engine = engine
        self.pool = pool
        self.punt = punt
        self.table = table
        self.counters = counters
        self.mailbox = WorkerMailbox(waker: engine.waker)
        self.reader = ConfigReader(publisher: publisher)
        self.rx = RxBatch(capacity: batchSize)
        self.tx = TxBatch(capacity: transmitCapacity)
        self.classifiedCapacity = batchSize * Self.classifiedPerReceivedFrame
        self.classified = []
        self.classified.reserveCapacity(classifiedCapacity)
        self.logger = logger
        self.overlayMTU = overlayMTU
        // Taken now, before the worker runs, and kept for good: the engine hands out the rest.
        // A small pool (tests, or a worker's share under many workers with the epoll engine, which reads into the
        // same pool) keeps most of its large buffers for reads: the scratch takes at most a quarter of them, and at
        // least one.
        let scratchCount = min(Self.coalesceScratchBuffers, max(1, pool.availableLarge / 4))
        var scratches: [BufferID] = []
        while scratches.count < scratchCount, let buffer = pool.takeLarge() { scratches.append(buffer) }
        self.coalesceScratches = scratches
        self.coalescer = TCPCoalescer(
            capacity: batchSize * Self.classifiedPerReceivedFrame,
            scratchCapacity: scratches.isEmpty ? TCPCoalescer.defaultScratchCapacity : pool.largeBufferSize)
        self.udpCoalescer = UDPCoalescer(
            capacity: batchSize * Self.classifiedPerReceivedFrame,
            scratchCapacity: scratches.isEmpty ? UDPCoalescer.defaultScratchCapacity : pool.largeBufferSize)
        self.segmentBuffers = []
        self.segmentBuffers.reserveCapacity(transmitCapacity)
        self.gsoBuffers = []
        self.gsoBuffers.reserveCapacity(transmitCapacity)
        self.gsoPayloadLimit = pool.largeCount > 0 ? min(Self.maximumUDPPayload, pool.largeBufferSize - pool.headroom) : 0
        self.gsoSegmentLimit = VXLANHeader.size + 14 + overlayMTU
        self.udpSenders.reserveCapacity(64)
        self.deferred = []
        self.deferred.reserveCapacity(transmitCapacity)
        self.runFrames = []
        self.runFrames.reserveCapacity(batchSize * Self.classifiedPerReceivedFrame)
        self.udpRunFrames = []
        self.udpRunFrames.reserveCapacity(batchSize * Self.classifiedPerReceivedFrame)
        if pool.largeCount > 0 && coalesceScratches.isEmpty {
            logger.warning("no large buffer left for the coalescing scratch: frames to TAPs go out uncoalesced")
        }
        if pool.largeCount > 0 && pool.available == 0 {
            logger.warning("no standard buffer left in the pool for TSO segments: TSO frames to peers will drop")
        }
    }

    /// How long `run` keeps polling without sleeping after the last batch that carried frames (zero: never).
    ///
    /// Why: a worker that sleeps in the kernel between packets pays a thread wake-up for each one, and on a VM a
    /// wake-up of an idle vCPU costs tens of microseconds. A request/response exchange (ping, RPC) is a train
    /// of such single packets, so most of its round trip would be wake-ups. Polling briefly after traffic
    /// catches the answer while still awake; an idle switch still sleeps, so it costs at most this long of
    /// one core per burst. Set before `run` starts.
    public var busyPollWindow: Duration = .zero

    /// Called between two polls that found nothing, inside the busy-poll window. By default it yields the CPU.
    ///
    /// Why: where workers share cores with the traffic's own processes (the containers' TCP stacks, ping, the
    /// softirq work a TAP write runs), a worker that polls without yielding holds its core until the scheduler
    /// preempts it, and the thread it is waiting for waits behind it: on the 2-vCPU VM a 200 µs window made
    /// ping's median 460 µs instead of 63. Yielding lets whatever is runnable go first, and the poll resumes as
    /// soon as nothing is. Set before `run` starts (tests count the calls).
    public var pauseBetweenPolls: () -> Void = { _ = sched_yield() }

    /// Told, on the worker thread, about each port the engine stopped reading because its reads failed for good
    /// (its TAP was deleted underneath): once per port, after the receive that found it. Must not block on
    /// anything that waits for this worker. Set before `run` starts; nil: the worker only logs it.
    public var onPortFailure: (@Sendable (PortID, IOError) -> Void)?

    /// Runs batches until a `.stop` command arrives. Call on the worker's own thread.
    public func run() {
        logger.debug("Routine: dataplane worker - started")
        var consecutiveErrors = 0
        let clock = ContinuousClock()
        var lastTraffic = clock.now - busyPollWindow
        while !stopping {
            do {
                let polling = busyPollWindow > .zero && clock.now - lastTraffic < busyPollWindow
                if try runOnce(timeout: polling ? .zero : .seconds(1)) {
                    lastTraffic = clock.now
                } else if polling {
                    pauseBetweenPolls()
                }
                consecutiveErrors = 0
            } catch {
                consecutiveErrors += 1
                if consecutiveErrors == 1 || consecutiveErrors % 1000 == 0 {
                    logger.error("receive failed: \(error) (\(consecutiveErrors) in a row)")
                }
                // A failing poll must not spin a core: back off briefly (bounded at 10 ms).
                usleep(UInt32(min(consecutiveErrors, 10)) * 1000)
            }
        }
        logger.debug("Routine: dataplane worker - stopped")
    }

    /// One iteration: commands, receive, switch, transmit, release. Exposed for tests that step the worker.
    /// - Returns: true when the iteration received frames.
    @discardableResult
    public func runOnce(timeout: Duration?) throws(IOError) -> Bool {
        runCommands()
        if stopping { return false }
        rx.reset()
        let outcome = try engine.receive(into: &rx, timeout: timeout)
        engine.drainNewPortFailures { handle, error in reportPortFailure(handle, error) }
        if case .timedOut = outcome { return false }
        processBatch()
        return rx.count > 0
    }

    // MARK: Commands (control requests, on the worker thread)

    private func runCommands() {
        for (command, completion) in mailbox.takeAll() {
            completion(execute(command))
        }
    }

    private func execute(_ command: WorkerCommand) -> Result<PortHandle?, IOError> {
        do throws(IOError) {
            switch command {
            case .attachPort(let port, let fd, let kind):
                let handle = try engine.register(fd: fd, kind: kind)
                setSlot(&portBySlot, handle.slot, (handle, port))
                setSlot(&handleByPortIndex, Int(port.index), handle)
                setFlag(&virtioByPortIndex, Int(port.index), kind.hasVirtioHeader)
                return .success(handle)
            case .detachPort(let port):
                let index = Int(port.index)
                if index < handleByPortIndex.count, let handle = handleByPortIndex[index] {
                    engine.unregister(handle)
                    handleByPortIndex[index] = nil
                    portBySlot[handle.slot] = nil
                }
            case .attachTunnel(let fd, let kind):
                let handle = try engine.register(fd: fd, kind: kind)
                switch kind {
                case .udpTunnel: setSlot(&tunnelBySlot, handle.slot, (handle, .vxlan))
                case .rawGRE: setSlot(&tunnelBySlot, handle.slot, (handle, .greBehindIPv4))
                case .rawGREIPv6: setSlot(&tunnelBySlot, handle.slot, (handle, .gre))
                case .rawSender: sender = handle
                case .udpSender: udpSenders.append(handle)
                case .tap: break
                }
                return .success(handle)
            case .attachUnderlay(let fd):
                // The engines read and write it like a virtio TAP (large buffers, the header passed through); only
                // the worker knows its header is the 24-byte tunnel one.
                let handle = try engine.register(fd: fd, kind: .tap(virtioHeader: true))
                underlay = handle
                return .success(handle)
            case .transmitFrame(let port, let bytes):
                transmitControlFrame(bytes, to: port)
            case .transmitUnderlay(let bytes):
                transmitUnderlayControlFrame(bytes)
            case .stop:
                stopping = true
            }
            return .success(nil)
        } catch {
            return .failure(error)
        }
    }

    private func setSlot<T>(_ array: inout [T?], _ index: Int, _ value: T) {
        if index >= array.count { array.append(contentsOf: repeatElement(nil, count: index - array.count + 1)) }
        array[index] = value
    }

    private func setFlag(_ array: inout [Bool], _ index: Int, _ value: Bool) {
        if index >= array.count { array.append(contentsOf: repeatElement(false, count: index - array.count + 1)) }
        array[index] = value
    }


    /// Runs `body` over the inner Ethernet frame of `item` (after any virtio header).
    func withItemBytes<R>(_ item: ClassifiedFrame, _ body: (RawSpan) -> R) -> R {
        // Safe: the rx buffer belongs to this worker until the end of the batch; the span does not outlive `body`.
        let bytes = unsafe pool.unsafeBytes(
            of: rx.frames[item.rxIndex].buffer, offset: Int(item.offset), length: Int(item.length))
        return unsafe body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }

    /// Runs `body` over the received bytes of `frame`.
    func withFrameBytes<R>(_ frame: ReceivedFrame, _ body: (RawSpan) -> R) -> R {
        // Safe: the buffer belongs to this worker until it is released at the end of the batch, and the span
        // does not outlive `body`.
        let bytes = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
        return unsafe body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }
}

// File-level rather than nested in the generic worker, so that using them needs no generic metadata at run time.

/// A frame that passed classification and learning.
struct ClassifiedFrame {
    var rxIndex: Int  // index into rx.frames (for the buffer)
    var domain: BridgeDomain
    var ingress: Ingress
    var offset: UInt32  // inner Ethernet frame within the buffer
    var length: UInt32
    var destination: MACAddress
    var gso: VirtioNetHeader? = nil  // a TSO frame from a virtio TAP; its header is the 12 bytes before `offset`
}

/// What `SwitchDecision.learn` (with the source address) or `decide` (with the destination) depends on besides
/// the table and the batch's topology: frames with equal keys get the same outcome within a batch.
struct SwitchKey: Equatable {
    var domain: BridgeDomain
    var ingress: Ingress
    var address: MACAddress
}

/// What a tunnel socket's datagrams start with, which decides how they are decoded.
enum TunnelFraming {
    /// The VXLAN header (a UDP socket's payload, or one datagram of an underlay TAP's run).
    case vxlan
    /// The outer IPv4 header, then GRE: raw IPv4 sockets deliver the IP header.
    case greBehindIPv4
    /// The GRE header: raw IPv6 sockets never deliver the IPv6 header.
    case gre

    /// The encapsulation a peer must use for its datagrams to be accepted from such a socket.
    var encapsulation: TunnelEncapsulation { self == .vxlan ? .vxlan : .gre }
}

/// A classified frame and the source MAC address to learn from it.
struct Classification {
    var frame: ClassifiedFrame
    var source: MACAddress
    var domain: BridgeDomain { frame.domain }
    var ingress: Ingress { frame.ingress }
}

/// What the virtio-net header in front of a frame from a virtio TAP says.
enum OffloadHeader {
    /// A plain frame (any partial checksum now completed).
    case plain
    /// A TSO frame to segment (gso TCPV4/TCPV6), with its header.
    case tso(VirtioNetHeader)
    /// Refused.
    case drop(DropCode)
}

// MARK: Failed ports

extension DataplaneWorker {
    /// Passes a failed port on to `onPortFailure` (a failed tunnel socket is only logged: the daemon has no
    /// state to show it in).
    fileprivate func reportPortFailure(_ handle: PortHandle, _ error: IOError) {
        if handle.slot < portBySlot.count, let entry = portBySlot[handle.slot], entry.handle == handle {
            guard let onPortFailure else {
                logger.error("port \(entry.port.index) stopped receiving: \(error.summary)")
                return
            }
            onPortFailure(entry.port, error)
        } else if handle.slot < tunnelBySlot.count, let entry = tunnelBySlot[handle.slot], entry.handle == handle {
            logger.error("\(entry.framing.encapsulation) tunnel socket stopped receiving: \(error.summary)")
        }
    }
}
