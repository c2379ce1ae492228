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
// sockets: VXLAN leaves as one write per frame into the TAP (`emitUnderlay`: a 24-byte tunnel virtio-net header and
// the outer Ethernet + IPv4 + UDP + VXLAN headers in the header slot, the frame from its own buffer), a TSO frame
// whole, for the kernel to carry as one burst; frames read from it are sorted by `classifyUnderlay` (ARP punted,
// VXLAN for this VTEP decapsulated, a burst's header rewritten in place into a container TAP's 12 bytes so the TSO
// paths above take it).
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
    /// Start using a tunnel socket: a `.udpTunnel` or `.rawGRE` receiver, or the `.rawIPv4Sender`.
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
    private let pool: PacketBufferPool
    public let table: ForwardingTable
    public let counters: WorkerCounters
    public let mailbox: WorkerMailbox
    /// Where punted frames go; nil: nothing is punted.
    public let punt: PuntQueue?
    private var reader: ConfigReader
    private var rx: RxBatch
    private let tx: TxBatch
    private let logger: Logger

    // Handle maps, worker thread only: arrays indexed by `handle.slot` (dense), holding the whole handle so a
    // stale handle from a reused slot never matches.
    private var portBySlot: [(handle: PortHandle, port: PortID)?] = []
    private var handleByPortIndex: [PortHandle?] = []
    private var tunnelBySlot: [(handle: PortHandle, encapsulation: TunnelEncapsulation)?] = []
    private var sender: PortHandle?
    /// UDP sender sockets for VXLAN, picked by flow hash; empty: VXLAN goes through the raw `sender`.
    private var udpSenders: [PortHandle] = []
    /// The underlay TAP queue: when set, VXLAN goes through it as whole outer frames instead of through sockets.
    private var underlay: PortHandle?
    /// Per-batch scratch: the frames that survived classification, in rx order.
    private var classified: [ClassifiedFrame]
    /// The last source learnt in this batch and the outcome: a run of frames from one sender (a GRO read's
    /// datagrams, a TAP's burst) learns it once. Cleared per batch, as the topology snapshot may change between.
    private var lastLearnt: (key: SwitchKey, refusal: ForwardingDropReason?)? = nil
    /// Most frames `classified` holds before the batch is switched in parts (allocated once).
    private let classifiedCapacity: Int
    private var stopping = false

    // Offload state (see the file comment), worker thread only.
    /// By port index: the port's TAP has a virtio header (every frame to it needs one).
    private var virtioByPortIndex: [Bool] = []
    /// The largest inner IP packet a segment may be.
    private let overlayMTU: Int
    /// Merges runs of TCP segments for one virtio TAP; reset per run.
    private var coalescer: TCPCoalescer
    /// Merges runs of UDP datagrams for one virtio TAP (USO writes); reset per run. Offered every frame first.
    private var udpCoalescer: UDPCoalescer
    /// The large buffers coalesced frames are written into, packed, one after the other until the next flush;
    /// empty when the pool had none to spare (frames then pass through uncoalesced). Several, so that one
    /// flush sends several merged frames (one io_uring submission) instead of one each.
    private let coalesceScratches: [BufferID]
    /// The scratch buffer being filled: an index into `coalesceScratches` (reset by `flushTransmit`).
    private var scratchIndex = 0
    /// Bytes of that scratch buffer used by entries in `tx` (reset by `flushTransmit`).
    private var scratchUsed = 0
    /// Standard buffers holding TSO segments named by `tx`; given back to the pool by `flushTransmit`.
    private var segmentBuffers: [BufferID]
    /// Large buffers holding UDP GSO sends named by `tx`; given back to the pool by `flushTransmit`.
    private var gsoBuffers: [BufferID]
    /// Most bytes of one UDP GSO send: the UDP limit, or less when large buffers are smaller; 0 when the pool has
    /// no large buffers (VXLAN then goes one datagram per send).
    private let gsoPayloadLimit: Int
    /// The largest datagram a GSO send may cut: VXLAN + untagged Ethernet + `overlayMTU`, so with the outer 28
    /// bytes it fits the 1500-byte underlay the MTU was chosen for (the kernel refuses a larger gso_size with
    /// EMSGSIZE, where a single datagram would only be fragmented).
    private let gsoSegmentLimit: Int
    /// The plain-frame GSO send being built at the end of `tx`, if any.
    private var pack: VXLANPack?
    /// Frames for virtio TAPs, in switching order, sent by `sendDeferred` once the batch is switched.
    private var deferred: [DeferredTransmit]
    /// The coalescer's frame numbers in the current run → indices into `classified`.
    private var runFrames: [Int]
    /// The same for the UDP coalescer.
    private var udpRunFrames: [Int]
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
                case .rawGRE: setSlot(&tunnelBySlot, handle.slot, (handle, .gre))
                case .rawIPv4Sender: sender = handle
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

    // MARK: The batch

    private func processBatch() {
        let config = reader.refresh()
        classified.removeAll(keepingCapacity: true)
        lastLearnt = nil

        // Stages 2 and 3: classify and learn.
        for index in 0..<rx.count {
            let frame = rx.frames[index]
            if frame.source == underlay {
                guard let item = classifyUnderlay(frame, rxIndex: index, config: config) else { continue }
                learnAndKeep(item, config: config)
                continue
            }
            if frame.segmentSize > 0 {
                classifyGRO(frame, rxIndex: index, config: config)
                continue
            }
            guard let item = classify(frame, rxIndex: index, config: config) else { continue }
            learnAndKeep(item, config: config)
        }
        forwardClassified(config: config)

        // Stages 6 and 7.
        flushTransmit()
        // Indexed, not `for frame in rx.frames`: an unspecialized (debug) array iterator allocates a coroutine frame
        // per element, which would hide real per-frame allocations from OffloadAllocationTests.
        for index in 0..<rx.count { engine.release(rx.frames[index].buffer) }
    }

    /// Learns `item`'s source and keeps it for forwarding; switches what is kept first when `classified` is full.
    private func learnAndKeep(_ item: Classification, config: DataplaneConfig) {
        let key = SwitchKey(domain: item.domain, ingress: item.ingress, address: item.source)
        let refusal: ForwardingDropReason?
        if let last = lastLearnt, last.key == key {
            refusal = last.refusal
        } else {
            refusal = SwitchDecision.learn(
                domain: item.domain, ingress: item.ingress, source: item.source, table: table,
                topology: config.topology)
            lastLearnt = (key, refusal)
        }
        if let reason = refusal {
            counters.dropped(row: counters.row(item.ingress.destination), DropCode(reason))
            return
        }
        if classified.count >= classifiedCapacity { forwardClassified(config: config) }
        classified.append(item.frame)
    }

    /// Splits a GRO read (datagrams of `segmentSize` bytes, the last maybe shorter) and classifies and learns
    /// each datagram on its own; a bad one is dropped and counted, the others go on.
    private func classifyGRO(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) {
        offloadStatistics.groFramesReceived &+= 1
        let size = Int(frame.segmentSize)
        var start = 0
        while start < Int(frame.length) {
            let length = min(size, Int(frame.length) - start)
            offloadStatistics.groDatagrams &+= 1
            if let item = classifyTunnel(frame, rxIndex: rxIndex, config: config, start: start, length: length) {
                learnAndKeep(item, config: config)
            }
            start += length
        }
    }

    /// Stages 4 and 5 for the frames in `classified`, then the deferred frames for virtio TAPs; empties it.
    private func forwardClassified(config: DataplaneConfig) {
        let topology = config.topology
        // A run of frames between the same two hosts (a GRO read's datagrams, a TSO burst's ACKs) is decided once:
        // the inputs are the same and the table is at this batch's end state for all of them.
        var lastDecision: (key: SwitchKey, action: ForwardingAction)? = nil
        // Stages 4 and 5: forward on the end state of the table, encapsulate into the tx batch.
        for position in classified.indices {
            let item = classified[position]
            let key = SwitchKey(domain: item.domain, ingress: item.ingress, address: item.destination)
            let action: ForwardingAction
            if let last = lastDecision, last.key == key {
                action = last.action
            } else {
                action = SwitchDecision.decide(
                    domain: item.domain, ingress: item.ingress, destination: item.destination, table: table,
                    topology: topology)
                lastDecision = (key, action)
            }
            switch action {
            case .forward(let destination):
                emit(position, to: destination, config: config, flowHash: nil)
            case .flood(let flood):
                var flowHash: UInt32? = nil
                topology.forEachDestination(of: flood) { destination in
                    switch destination {
                    case .peer:
                        if flowHash == nil { flowHash = self.flowHash(of: item) }
                    case .port(let port):
                        // A port published but not attached yet is not a drop for a flood: skip it.
                        guard isAttached(port) else { return }
                    }
                    emit(position, to: destination, config: config, flowHash: flowHash)
                }
            case .drop(let reason):
                counters.dropped(row: counters.row(item.ingress.destination), DropCode(reason))
            }
        }
        // Frames for TAPs with a virtio header, coalesced per TAP.
        sendDeferred()
        classified.removeAll(keepingCapacity: true)
    }

    private func classify(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) -> Classification? {
        let slot = frame.source.slot
        if slot < portBySlot.count, let entry = portBySlot[slot], entry.handle == frame.source {
            let port = entry.port
            let row = counters.row(port: port)
            // A TAP with a virtio header: the frame starts after it (see `offloadHeader`).
            var innerOffset = 0
            var gso: VirtioNetHeader? = nil
            if isVirtio(port) {
                switch offloadHeader(frame) {
                case .drop(let code):
                    counters.received(row: row, bytes: Int(frame.length))
                    counters.dropped(row: row, code)
                    return nil
                case .plain:
                    innerOffset = VirtioNetHeader.size
                case .tso(let header):
                    innerOffset = VirtioNetHeader.size
                    gso = header
                }
            }
            counters.received(row: row, bytes: Int(frame.length) - innerOffset)
            guard let domain = config.topology.domain(of: port) else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.unknownPort))
                return nil
            }
            if let rule = config.puntRule(for: port), let punt,
                withFrameBytes(frame, { rule.matches($0.extracting(innerOffset..<$0.byteCount)) })
            {
                let bytes = withFrameBytes(frame) { span in
                    unsafe span.extracting(innerOffset..<span.byteCount).withUnsafeBytes { unsafe Array($0) }
                }
                if !punt.push(PuntedFrame(port: port, bytes: bytes)) {
                    counters.dropped(row: row, DropCode(DataplaneDropReason.puntQueueFull))
                }
                return nil
            }
            var classification = ethernet(
                frame, rxIndex: rxIndex, innerOffset: innerOffset, innerLength: Int(frame.length) - innerOffset,
                domain: domain, ingress: .port(port), row: row)
            classification?.frame.gso = gso
            return classification
        }
        return classifyTunnel(frame, rxIndex: rxIndex, config: config, start: 0, length: Int(frame.length))
    }

    /// Classifies the datagram at `start ..< start + length` of a frame from a tunnel socket (the whole frame, or
    /// one datagram of a GRO read).
    private func classifyTunnel(
        _ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig, start: Int, length: Int
    ) -> Classification? {
        let slot = frame.source.slot
        guard slot < tunnelBySlot.count, let tunnel = tunnelBySlot[slot], tunnel.handle == frame.source else {
            counters.dropped(row: counters.unattributedRow, DropCode(DataplaneDropReason.unknownPort))
            return nil
        }
        let encapsulation = tunnel.encapsulation
        guard let peer = config.endpoint(at: frame.remote) else {
            counters.dropped(row: counters.unattributedRow, DropCode(DataplaneDropReason.unknownPeer))
            return nil
        }
        let row = counters.row(peer: peer.peer)
        counters.received(row: row, bytes: length)
        guard peer.encapsulation == encapsulation else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.wrongEncapsulation))
            return nil
        }
        let decoded = withFrameBytes(frame) { whole -> Result<(VNI, Int, Int), PacketDropReason> in
            let bytes = whole.extracting(start..<(start + length))
            switch encapsulation {
            case .vxlan:
                return TunnelDecap.vxlanDatagram(bytes).map { ($0.vni, $0.innerOffset, $0.innerLength) }
            case .gre:
                switch TunnelDecap.greIPv4(bytes) {
                case .failure(let reason): return .failure(reason)
                case .success(let gre):
                    let unkeyed = peer.unkeyedVNI ?? VNI(truncating: 0)
                    return gre.vni(layout: peer.greKeyLayout, unkeyedVNI: unkeyed).map {
                        ($0, gre.innerOffset, gre.innerLength)
                    }
                }
            }
        }
        switch decoded {
        case .failure(let reason):
            counters.dropped(row: row, DropCode(reason))
            return nil
        case .success(let (vni, innerOffset, innerLength)):
            guard let domain = config.domain(for: vni) else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.unknownVNI))
                return nil
            }
            return ethernet(
                frame, rxIndex: rxIndex, innerOffset: start + innerOffset, innerLength: innerLength, domain: domain,
                ingress: .tunnel(peer.peer), row: row)
        }
    }

    /// Reads the inner Ethernet addresses at `innerOffset` (relative to the frame's data).
    private func ethernet(
        _ frame: ReceivedFrame, rxIndex: Int, innerOffset: Int, innerLength: Int, domain: BridgeDomain,
        ingress: Ingress, row: Int
    ) -> Classification? {
        let parsed = withFrameBytes(frame) { bytes in
            EthernetHeader.parse(bytes.extracting(innerOffset..<(innerOffset + innerLength)))
        }
        switch parsed {
        case .failure(let reason):
            // A short inner frame is the tunnel's fault when there was a tunnel header, the port's otherwise.
            let code = innerOffset == 0 ? DropCode(reason) : DropCode(PacketDropReason.truncatedInnerEthernet)
            counters.dropped(row: row, code)
            return nil
        case .success(let header):
            let classified = ClassifiedFrame(
                rxIndex: rxIndex, domain: domain, ingress: ingress,
                offset: frame.offset + UInt32(innerOffset), length: UInt32(innerLength),
                destination: header.destination)
            return Classification(frame: classified, source: header.source)
        }
    }

    /// Sends a control-plane frame out of `port` (control command, worker thread). Frames that do not fit a
    /// buffer, or find no free buffer, are counted as drops.
    private func transmitControlFrame(_ bytes: [UInt8], to port: PortID) {
        let row = counters.row(port: port)
        let index = Int(port.index)
        guard index < handleByPortIndex.count, let handle = handleByPortIndex[index] else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.portNotAttached))
            return
        }
        guard let buffer = controlFrameBuffer(holding: bytes, row: row) else { return }
        flushTransmit()
        if isVirtio(port) {
            // Every write to a TAP with a virtio header starts with one; the frame's checksums are complete.
            unsafe tx.append(
                target: handle, remote: .any, buffer: buffer, offset: UInt32(pool.headroom), length: UInt32(bytes.count)
            ) { slot in
                var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                return VirtioNetHeader.plain.write(into: &span)
            }
        } else {
            tx.append(target: handle, buffer: buffer, offset: UInt32(pool.headroom), length: UInt32(bytes.count))
        }
        counters.transmitted(row: row, bytes: bytes.count)
        flushTransmit()
        pool.give(buffer)
    }

    /// A pool buffer holding `bytes` at the headroom, for a control-plane frame; nil (counted on `row` as a drop)
    /// when they do not fit a buffer or the pool has none free. The caller gives it back after the flush.
    private func controlFrameBuffer(holding bytes: [UInt8], row: Int) -> BufferID? {
        guard bytes.count <= pool.bufferSize - pool.headroom, let buffer = pool.take() else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.transmitNoBuffer))
            return nil
        }
        unsafe bytes.withUnsafeBytes { source in
            let destination = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom, length: source.count)
            unsafe destination.copyMemory(from: source)
        }
        return buffer
    }

    private func isAttached(_ port: PortID) -> Bool {
        let index = Int(port.index)
        return index < handleByPortIndex.count && handleByPortIndex[index] != nil
    }

    private func isVirtio(_ port: PortID) -> Bool {
        let index = Int(port.index)
        return index < virtioByPortIndex.count && virtioByPortIndex[index]
    }

    /// Reads the virtio-net header in front of a frame from a virtio TAP. A partial checksum on a plain frame is
    /// completed in place, so from here on the frame is like any other.
    private func offloadHeader(_ frame: ReceivedFrame) -> OffloadHeader {
        // A read shorter than the header carries nothing; one of exactly 12 bytes fails the Ethernet parse later.
        let header = withFrameBytes(frame) { VirtioNetHeader.parse($0) }
        guard let header else { return .drop(DropCode(PacketDropReason.truncatedEthernet)) }
        switch header.gsoType {
        case .none:
            guard header.flags.contains(.needsChecksum) else { return .plain }
            // Safe: the buffer is this worker's until the end of the batch, and the span does not outlive the call.
            let bytes = unsafe pool.unsafeBytes(
                of: frame.buffer, offset: Int(frame.offset) + VirtioNetHeader.size,
                length: Int(frame.length) - VirtioNetHeader.size)
            var span = unsafe MutableRawSpan(_unsafeBytes: bytes)
            if let reason = ChecksumCompletion.complete(&span, header: header) { return .drop(DropCode(reason)) }
            offloadStatistics.checksumsCompleted &+= 1
            return .plain
        case .tcpv4, .tcpv6:
            offloadStatistics.tsoFramesReceived &+= 1
            return .tso(header)
        default:
            return .drop(DropCode(OffloadDropReason.gsoTypeUnsupported))
        }
    }

    private func flowHash(of item: ClassifiedFrame) -> UInt32 {
        let buffer = rx.frames[item.rxIndex].buffer
        let bytes = unsafe pool.unsafeBytes(of: buffer, offset: Int(item.offset), length: Int(item.length))
        return unsafe FlowHash.hash(frame: RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }

    /// Queues `classified[position]` for `destination`; `flowHash` is computed on demand for peers when not given.
    /// Frames for virtio TAPs are deferred to `sendDeferred`; TSO frames for anything else are segmented.
    private func emit(_ position: Int, to destination: Destination, config: DataplaneConfig, flowHash: UInt32?) {
        let item = classified[position]
        let buffer = rx.frames[item.rxIndex].buffer
        switch destination {
        case .port(let port):
            let row = counters.row(port: port)
            let index = Int(port.index)
            guard index < handleByPortIndex.count, let handle = handleByPortIndex[index] else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.portNotAttached))
                return
            }
            if isVirtio(port) {
                deferred.append(DeferredTransmit(item: position, target: handle, pending: true))
                counters.transmitted(row: row, bytes: Int(item.length))
                return
            }
            if let gso = item.gso {
                transmitSegments(of: item, header: gso, row: row) { segment, length in
                    let appended = tx.append(
                        target: handle, buffer: segment, offset: UInt32(pool.headroom), length: UInt32(length))
                    counters.transmitted(row: row, bytes: length)
                    return appended
                }
                return
            }
            appendTransmit { tx in
                tx.append(target: handle, buffer: buffer, offset: item.offset, length: item.length)
            }
            counters.transmitted(row: row, bytes: Int(item.length))
        case .peer(let peer):
            let row = counters.row(peer: peer)
            guard let (remote, template) = config.outerHeader(to: peer, in: item.domain) else {
                // The decision checked the peer is live in this domain with the same topology snapshot, and the
                // control plane builds the templates with it, so this is a config-building bug; count, don't trap.
                counters.dropped(row: row, DropCode(DataplaneDropReason.unknownPeer))
                return
            }
            if let underlay, let identity = config.underlay {
                emitUnderlay(
                    item, to: peer, remote: remote, template: template, through: underlay, identity: identity,
                    config: config, flowHash: flowHash, row: row)
                return
            }
            if template.encapsulation == .vxlan, !udpSenders.isEmpty {
                let hash = flowHash ?? self.flowHash(of: item)
                // One socket per flow: its port is the flow's UDP source port (RFC 7348 §5).
                let route = VXLANRoute(
                    target: udpSenders[Int(hash % UInt32(udpSenders.count))], remote: remote,
                    port: template.udpDestinationPort, vni: template.vni, flowHash: hash,
                    outerLength: template.headerLength)
                if let gso = item.gso {
                    transmitSegmentsUDP(of: item, header: gso, route: route, row: row)
                } else {
                    appendVXLANDatagram(item, route: route, row: row)
                }
                return
            }
            guard let sender else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.noTunnelSender))
                return
            }
            if let gso = item.gso {
                let hash = flowHash ?? self.flowHash(of: item)
                transmitSegments(of: item, header: gso, row: row) { segment, length in
                    let appended = unsafe tx.append(
                        target: sender, remote: remote, buffer: segment, offset: UInt32(pool.headroom),
                        length: UInt32(length)
                    ) { slot in
                        var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                        return template.write(into: &span, innerLength: length, flowHash: hash)
                    }
                    counters.transmitted(row: row, bytes: template.headerLength + length)
                    return appended
                }
                return
            }
            let innerLength = Int(item.length)
            guard template.headerLength + innerLength <= 0xFFFF else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.frameTooLong))
                return
            }
            let hash = flowHash ?? self.flowHash(of: item)
            appendTransmit { tx in
                unsafe tx.append(
                    target: sender, remote: remote, buffer: buffer, offset: item.offset, length: item.length
                ) { slot in
                    var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                    return template.write(into: &span, innerLength: innerLength, flowHash: hash)
                }
            }
            counters.transmitted(row: row, bytes: template.headerLength + innerLength)
        }
    }

    /// Appends via `body`, flushing the batch first if it is full.
    private func appendTransmit(_ body: (TxBatch) -> Bool) {
        if body(tx) { return }
        flushTransmit()
        let appended = body(tx)
        assert(appended, "an empty TxBatch refused a frame")
    }

    private func flushTransmit() {
        pack = nil
        guard tx.count > 0 else { return }
        let report = engine.transmit(tx)
        // The engine is done with every buffer `tx` named: segments go back to the pool, the scratch is free.
        for index in 0..<segmentBuffers.count { pool.give(segmentBuffers[index]) }
        segmentBuffers.removeAll(keepingCapacity: true)
        for index in 0..<gsoBuffers.count { pool.give(gsoBuffers[index]) }
        gsoBuffers.removeAll(keepingCapacity: true)
        scratchIndex = 0
        scratchUsed = 0
        if report.droppedNoBuffer > 0 {
            counters.add(
                row: counters.unattributedRow,
                column: CounterColumn.firstDrop + DropCode(DataplaneDropReason.transmitNoBuffer).rawValue,
                UInt64(report.droppedNoBuffer))
        }
        if report.droppedError > 0 {
            counters.add(
                row: counters.unattributedRow,
                column: CounterColumn.firstDrop + DropCode(DataplaneDropReason.transmitError).rawValue,
                UInt64(report.droppedError))
        }
        tx.reset()
    }

    // MARK: Offloads (TSO segmentation, coalescing for virtio TAPs)

    /// Segments the TSO frame `item` (its virtio header `header`) into standard buffers, one at a time, and hands
    /// each segment (buffer, length of the frame at the headroom) to `append`, which adds it to `tx` and returns
    /// whether it did. Flushes `tx` when it is full or the pool has no buffer, so any number of segments fits.
    private func transmitSegments(
        of item: ClassifiedFrame, header: VirtioNetHeader, row: Int, _ append: (BufferID, Int) -> Bool
    ) {
        guard let plan = plannedSegments(of: item, header: header, row: row) else { return }
        guard plan.maximumSegmentLength <= pool.bufferSize - pool.headroom,
            plan.headerLength - plan.networkOffset <= overlayMTU / 2
        else {
            // IP + TCP headers taking over half the MTU (only long IPv6 extension chains get there): the segments
            // would be mostly headers, up to one per payload byte, so 64 KiB would become thousands of packets.
            counters.dropped(row: row, DropCode(DataplaneDropReason.frameTooLong))
            return
        }
        offloadStatistics.tsoFramesSegmented &+= 1
        for index in 0..<plan.segmentCount {
            // Room first: a flush gives the segment buffers back, so it must not come between write and append.
            if tx.isFull { flushTransmit() }
            guard let segment = takeSegmentBuffer() else {
                counters.add(
                    row: row,
                    column: CounterColumn.firstDrop + DropCode(DataplaneDropReason.segmentBufferExhausted).rawValue,
                    UInt64(plan.segmentCount - index))
                return
            }
            segmentBuffers.append(segment)
            // Safe: the segment buffer is this worker's until the flush that sends it; the spans live for the call.
            let destination = unsafe pool.unsafeBytes(
                of: segment, offset: pool.headroom, length: plan.maximumSegmentLength)
            var span = unsafe MutableRawSpan(_unsafeBytes: destination)
            let length = withItemBytes(item) { plan.writeSegment(index, of: $0, into: &span) }
            let appended = append(segment, length)
            assert(appended, "a TxBatch with room refused a segment")
            offloadStatistics.segments &+= 1
        }
    }

    /// Segments the TSO frame `item` for a VXLAN peer into UDP GSO sends: each a buffer of
    /// [VXLAN][segment][VXLAN][segment]…, all pieces but the last of one length, sent as one `tx` entry. Without
    /// large buffers (or with pieces the underlay cannot take whole) every segment is its own send.
    private func transmitSegmentsUDP(of item: ClassifiedFrame, header: VirtioNetHeader, route: VXLANRoute, row: Int) {
        guard let plan = plannedSegments(of: item, header: header, row: row) else { return }
        let piece = VXLANHeader.size + plan.maximumSegmentLength
        guard piece <= pool.bufferSize - pool.headroom, plan.headerLength - plan.networkOffset <= overlayMTU / 2 else {
            // See transmitSegments: segments that are mostly headers, or larger than a buffer.
            counters.dropped(row: row, DropCode(DataplaneDropReason.frameTooLong))
            return
        }
        offloadStatistics.tsoFramesSegmented &+= 1
        let segmented = gsoPayloadLimit > 0 && piece <= gsoSegmentLimit
        let perSend = segmented ? min(FrameTransmit.maximumSegments, gsoPayloadLimit / piece) : 1
        var first = segmented ? continuePack(with: plan, of: item, piece: piece, route: route, row: row) : 0
        while first < plan.segmentCount {
            let count = min(perSend, plan.segmentCount - first)
            // Room first: a flush gives the buffers back, so it must not come between write and append.
            if tx.isFull { flushTransmit() }
            guard let buffer = segmented ? takeGSOBuffer() : takeSegmentBuffer() else {
                counters.add(
                    row: row,
                    column: CounterColumn.firstDrop + DropCode(DataplaneDropReason.segmentBufferExhausted).rawValue,
                    UInt64(plan.segmentCount - first))
                return
            }
            if segmented { gsoBuffers.append(buffer) } else { segmentBuffers.append(buffer) }
            let written = writePieces(
                first..<(first + count), of: plan, item: item, into: buffer, at: 0,
                capacity: segmented ? gsoPayloadLimit : piece, route: route, row: row)
            let appended = tx.appendSegmented(
                target: route.target, remote: route.remote, remotePort: route.port, buffer: buffer,
                offset: UInt32(pool.headroom), length: UInt32(written.used),
                segmentSize: UInt16(count > 1 ? piece : 0))
            assert(appended, "a TxBatch with room refused a GSO send")
            if count > 1 {
                offloadStatistics.udpGSOSends &+= 1
                offloadStatistics.udpGSODatagrams &+= UInt64(count)
            }
            if segmented {
                // The next TSO frame of this flow may continue this send (continuePack).
                pack = VXLANPack(
                    route: route, entry: tx.count - 1, contents: .packed(buffer), pieceLength: piece, count: count,
                    used: written.used, closed: written.lastPiece < piece)
            }
            first += count
        }
    }

    /// Writes the first segments of `plan` onto the GSO send at the end of `tx` when they continue it: a send of
    /// this route whose pieces are all `piece` bytes, with room left. Back-to-back TSO frames of one flow then share
    /// sends: a 46-segment frame alone takes two (44 + 2 pieces, the 65,507-byte limit), a burst of them about one
    /// each, and every send saved is a trip through the underlay and the peer's UDP receive path.
    /// - Returns: how many segments went there (0 when the send at the end of `tx` is not one to continue).
    private func continuePack(with plan: TCPSegmenter, of item: ClassifiedFrame, piece: Int, route: VXLANRoute, row: Int)
        -> Int
    {
        guard var current = pack, current.route == route, current.entry == tx.count - 1, !current.closed,
            current.pieceLength == piece, case .packed(let buffer) = current.contents
        else { return 0 }
        let count = min(
            plan.segmentCount, FrameTransmit.maximumSegments - current.count, (gsoPayloadLimit - current.used) / piece)
        guard count > 0 else { return 0 }
        let written = writePieces(
            0..<count, of: plan, item: item, into: buffer, at: current.used, capacity: gsoPayloadLimit, route: route,
            row: row)
        if current.count == 1 {
            offloadStatistics.udpGSOSends &+= 1
            offloadStatistics.udpGSODatagrams &+= 1
        }
        offloadStatistics.udpGSODatagrams &+= UInt64(count)
        current.count += count
        current.used = written.used
        current.closed = written.lastPiece < piece
        tx.replaceLast(
            FrameTransmit(
                target: route.target, remote: route.remote, remotePort: route.port, segmentSize: UInt16(piece),
                headerLength: 0, buffer: buffer, offset: UInt32(pool.headroom), length: UInt32(current.used)))
        pack = current
        return count
    }

    /// Writes [VXLAN][segment] pieces for `indices` of `plan` into `buffer` from `offset` past its headroom and
    /// counts them as transmitted.
    /// - Returns: the bytes of `buffer` used after the last piece, and that piece's length.
    private func writePieces(
        _ indices: Range<Int>, of plan: TCPSegmenter, item: ClassifiedFrame, into buffer: BufferID, at offset: Int,
        capacity: Int, route: VXLANRoute, row: Int
    ) -> (used: Int, lastPiece: Int) {
        // Safe: the buffer is this worker's until the flush that sends it; the span lives for the call.
        let destination = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom, length: capacity)
        var span = unsafe MutableRawSpan(_unsafeBytes: destination)
        let vxlan = VXLANHeader(vni: route.vni)
        var used = offset
        var lastPiece = 0
        for index in indices {
            vxlan.write(into: &span, at: used)
            let length = withItemBytes(item) { plan.writeSegment(index, of: $0, into: &span, at: used + VXLANHeader.size) }
            lastPiece = VXLANHeader.size + length
            used += lastPiece
            counters.transmitted(row: row, bytes: route.outerLength + length)
        }
        offloadStatistics.segments &+= UInt64(indices.count)
        return (used, lastPiece)
    }

    /// A free large buffer for a GSO send: from the pool, or after a flush gave the previous ones back.
    private func takeGSOBuffer() -> BufferID? {
        if let buffer = pool.takeLarge() { return buffer }
        guard !gsoBuffers.isEmpty else { return nil }
        flushTransmit()
        return pool.takeLarge()
    }

    /// Sends a plain frame to a VXLAN peer through its flow's UDP sender: packed into the GSO send at the end of
    /// `tx` when it continues it (same route, not longer than its pieces, room left), else as a datagram of its
    /// own that the next frame may continue (see the file comment).
    private func appendVXLANDatagram(_ item: ClassifiedFrame, route: VXLANRoute, row: Int) {
        let piece = VXLANHeader.size + Int(item.length)
        guard piece <= Self.maximumUDPPayload else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.frameTooLong))
            return
        }
        counters.transmitted(row: row, bytes: route.outerLength + Int(item.length))
        let source = (buffer: rx.frames[item.rxIndex].buffer, offset: item.offset, length: item.length)
        // `used` is 0 while the first frame is still a datagram of its own: count its piece then.
        if var current = pack, current.route == route, current.entry == tx.count - 1, !current.closed,
            piece <= current.pieceLength, current.count < FrameTransmit.maximumSegments,
            max(current.used, current.pieceLength) + piece <= gsoPayloadLimit
        {
            if case .lone(let first) = current.contents, let buffer = pool.takeLarge() {
                // The first frame went out as a datagram of its own; move it into a GSO buffer. Only a free buffer
                // will do: a flush here would send that entry and end the pack.
                gsoBuffers.append(buffer)
                current.contents = .packed(buffer)
                current.used = packPiece(first, vni: route.vni, into: buffer, at: 0)
            }
            if case .packed(let buffer) = current.contents {
                current.used += packPiece(source, vni: route.vni, into: buffer, at: current.used)
                current.count += 1
                if piece < current.pieceLength { current.closed = true }  // only the last piece may be shorter
                tx.replaceLast(
                    FrameTransmit(
                        target: route.target, remote: route.remote, remotePort: route.port,
                        segmentSize: UInt16(current.pieceLength), headerLength: 0, buffer: buffer,
                        offset: UInt32(pool.headroom), length: UInt32(current.used)))
                if current.count == 2 {
                    offloadStatistics.udpGSOSends &+= 1
                    offloadStatistics.udpGSODatagrams &+= 1
                }
                offloadStatistics.udpGSODatagrams &+= 1
                pack = current
                return
            }
        }
        let vxlan = VXLANHeader(vni: route.vni)
        appendTransmit { tx in
            unsafe tx.append(
                target: route.target, remote: route.remote, remotePort: route.port, buffer: source.buffer,
                offset: source.offset, length: source.length
            ) { slot in
                var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                return vxlan.write(into: &span)
            }
        }
        // Packing needs large buffers and pieces the underlay takes whole (see gsoSegmentLimit).
        if gsoPayloadLimit > 0 && piece <= gsoSegmentLimit {
            pack = VXLANPack(
                route: route, entry: tx.count - 1, contents: .lone(source), pieceLength: piece, count: 1, used: 0,
                closed: false)
        } else {
            pack = nil
        }
    }

    /// Writes VXLAN header + the frame `source` names at `offset` past the headroom of GSO buffer `buffer`.
    /// - Returns: bytes written.
    private func packPiece(
        _ source: (buffer: BufferID, offset: UInt32, length: UInt32), vni: VNI, into buffer: BufferID, at offset: Int
    ) -> Int {
        let length = VXLANHeader.size + Int(source.length)
        // Safe: the GSO buffer is this worker's until the flush; the rx buffer until the end of the batch (a pack
        // never outlives the batch: the flush at its end ends it).
        let destination = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom + offset, length: length)
        var span = unsafe MutableRawSpan(_unsafeBytes: destination)
        VXLANHeader(vni: vni).write(into: &span)
        let frame = unsafe pool.unsafeBytes(of: source.buffer, offset: Int(source.offset), length: Int(source.length))
        unsafe (destination.baseAddress! + VXLANHeader.size).copyMemory(
            from: UnsafeRawPointer(frame.baseAddress!), byteCount: frame.count)
        return length
    }

    /// The segmentation plan for TSO frame `item`, or nil when its headers are refused (counted as a drop).
    private func plannedSegments(of item: ClassifiedFrame, header: VirtioNetHeader, row: Int) -> TCPSegmenter? {
        switch withItemBytes(item, { segmentationPlan($0, header) }) {
        case .failure(let reason):
            counters.dropped(row: row, DropCode(reason))
            return nil
        case .success(let plan):
            return plan
        }
    }

    /// Plans segments of at most `overlayMTU` bytes of IP packet: `min(gso_size, MTU - IP and TCP headers)`.
    private func segmentationPlan(
        _ frame: RawSpan, _ header: VirtioNetHeader
    ) -> Result<TCPSegmenter, OffloadDropReason> {
        // First with the smallest headers (IPv4 20 + TCP 20); plan again only if this frame's are longer and its
        // segments would then exceed the MTU (the headers are only known once the frame is parsed).
        let first = TCPSegmenter.plan(frame: frame, header: header, maximumSegmentSize: overlayMTU - 40)
        guard case .success(let plan) = first else { return first }
        let headers = plan.headerLength - plan.networkOffset
        guard headers + plan.segmentSize > overlayMTU else { return first }
        return TCPSegmenter.plan(frame: frame, header: header, maximumSegmentSize: max(overlayMTU - headers, 1))
    }

    /// A free standard buffer for a segment: from the pool, or after a flush gave the previous segments back.
    private func takeSegmentBuffer() -> BufferID? {
        if let buffer = pool.take() { return buffer }
        guard !segmentBuffers.isEmpty else { return nil }
        flushTransmit()
        return pool.take()
    }

    /// Sends the deferred frames, TAP by TAP, each TAP's in switching order (see the file comment).
    private func sendDeferred() {
        guard !deferred.isEmpty else { return }
        // Quadratic in the TAPs of one batch, linear in frames: a batch reaches few TAPs.
        for first in deferred.indices where deferred[first].pending {
            let target = deferred[first].target
            for position in first..<deferred.count
            where deferred[position].pending && deferred[position].target == target {
                deferred[position].pending = false
                let index = deferred[position].item
                let item = classified[index]
                if item.gso != nil {
                    // Frames before it leave first; then it passes through whole, its own header in front.
                    sendRun(to: target)
                    let buffer = rx.frames[item.rxIndex].buffer
                    appendTransmit { tx in
                        tx.append(
                            target: target, buffer: buffer, offset: item.offset - UInt32(VirtioNetHeader.size),
                            length: item.length + UInt32(VirtioNetHeader.size))
                    }
                    offloadStatistics.tsoFramesPassedThrough &+= 1
                } else if coalesceScratches.isEmpty {
                    appendPlain(classified[index], to: target, header: .plain)
                } else if withItemBytes(item, { udpCoalescer.add($0) }) {
                    udpRunFrames.append(index)
                } else {
                    runFrames.append(index)
                    withItemBytes(item) { coalescer.add($0) }
                }
            }
            sendRun(to: target)
        }
        deferred.removeAll(keepingCapacity: true)
    }

    /// Sends what the coalescers made of the current run for `target`, in order of each item's first frame (the
    /// TCP and UDP items interleaved by the index of that frame in `classified`), and starts a new run.
    private func sendRun(to target: PortHandle) {
        defer {
            coalescer.reset()
            udpCoalescer.reset()
            runFrames.removeAll(keepingCapacity: true)
            udpRunFrames.removeAll(keepingCapacity: true)
        }
        var tcpIndex = 0
        var udpIndex = 0
        while tcpIndex < coalescer.itemCount || udpIndex < udpCoalescer.itemCount {
            let takeUDP: Bool
            if tcpIndex == coalescer.itemCount {
                takeUDP = true
            } else if udpIndex == udpCoalescer.itemCount {
                takeUDP = false
            } else {
                takeUDP = udpRunFrames[udpCoalescer.item(udpIndex).firstFrame]
                    < runFrames[coalescer.item(tcpIndex).firstFrame]
            }
            if takeUDP {
                if let merged = sendItem(udpIndex, of: udpCoalescer, frame: { udpRunFrames[$0] }, to: target) {
                    offloadStatistics.udpCoalescedWrites &+= 1
                    offloadStatistics.udpCoalescedFrames &+= UInt64(merged)
                }
                udpIndex += 1
            } else {
                if let merged = sendItem(tcpIndex, of: coalescer, frame: { runFrames[$0] }, to: target) {
                    offloadStatistics.coalescedWrites &+= 1
                    offloadStatistics.coalescedFrames &+= UInt64(merged)
                }
                tcpIndex += 1
            }
        }
    }

    /// Sends item `index` of a coalescer: pass-through, merged (one write from the scratch), or, when a member's
    /// transport checksum failed, unmerged. Generic so the TCP and UDP items share one path; private to this file
    /// and called with the two concrete coalescers only, so the optimizer specializes it for each (no witness
    /// tables or metadata at run time).
    /// - Parameters:
    ///   - index: the item.
    ///   - coalescer: the TCP or the UDP coalescer.
    ///   - frame: maps the coalescer's frame numbers to indices in `classified` (`runFrames`, `udpRunFrames`).
    ///   - target: the TAP.
    /// - Returns: the frames merged into one write, or nil when the item went out as it came.
    private func sendItem<Coalescer: FrameCoalescer & ~Copyable>(
        _ index: Int, of coalescer: borrowing Coalescer, frame classifiedIndex: (Int) -> Int, to target: PortHandle
    ) -> Int? {
        let output = coalescer.item(index)
        guard output.isCoalesced, !coalesceScratches.isEmpty else {
            appendPlain(classified[classifiedIndex(output.firstFrame)], to: target, header: output.header)
            return nil
        }
        let offset = reserveScratch(VirtioNetHeader.size + output.length)
        let scratch = coalesceScratches[scratchIndex]
        // Safe: the scratch is this worker's for good; the span lives for the call.
        let bytes = unsafe pool.unsafeBytes(of: scratch, offset: offset, length: VirtioNetHeader.size + output.length)
        var span = unsafe MutableRawSpan(_unsafeBytes: bytes)
        let result = coalescer.writeCoalesced(item: index, into: &span, at: 0) { frame, body in
            withItemBytes(classified[classifiedIndex(frame)], body)
        }
        guard let written = result else {
            // A member's TCP or UDP checksum failed (the coalescer verifies while it copies). The merged frame
            // would go up as CHECKSUM_PARTIAL, i.e. with a checksum computed over our copy: accepted. Send the
            // members as they came instead, in order and without DATA_VALID, so the kernel verifies each and drops
            // the bad one. The scratch bytes just written are not used (`scratchUsed` stays).
            offloadStatistics.coalesceChecksumFallbacks &+= 1
            var member: Int? = output.firstFrame
            while let frame = member {
                appendPlain(classified[classifiedIndex(frame)], to: target, header: .plain)
                member = coalescer.nextMember(after: frame)
            }
            return nil
        }
        let appended = tx.append(target: target, buffer: scratch, offset: UInt32(offset), length: UInt32(written))
        assert(appended, "a TxBatch with room refused a coalesced frame")
        scratchUsed = (offset + written + 63) & ~63  // the next one starts on a cache line
        return output.frameCount
    }

    /// Where in the scratch the next merged frame of `needed` bytes goes: in the current scratch buffer, else at the
    /// start of the next one, else (all full, or `tx` full) after a flush, at the start of the first. The
    /// coalescers cap a merged frame to one buffer's size, so after a flush it always fits.
    private func reserveScratch(_ needed: Int) -> Int {
        if scratchUsed + needed > pool.largeBufferSize && scratchIndex + 1 < coalesceScratches.count {
            scratchIndex += 1
            scratchUsed = 0
        }
        if tx.isFull || scratchUsed + needed > pool.largeBufferSize { flushTransmit() }
        return scratchUsed
    }

    /// Queues `item` for a virtio TAP with `header` (12 bytes) in its header slot, in front of its own buffer.
    private func appendPlain(_ item: ClassifiedFrame, to target: PortHandle, header: VirtioNetHeader) {
        let buffer = rx.frames[item.rxIndex].buffer
        appendTransmit { tx in
            unsafe tx.append(target: target, remote: .any, buffer: buffer, offset: item.offset, length: item.length) {
                slot in
                var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                return header.write(into: &span)
            }
        }
    }

    // MARK: The underlay TAP (GSO over the UDP tunnel; docs/offload.md "The TAP underlay")

    /// Outer bytes in front of an inner frame on the underlay: Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8).
    private static var underlayOuterLength: Int { EthernetHeader.size + EncapTemplate.vxlanIPv4Size }
    /// Where the outer UDP header starts in an underlay frame.
    private static var underlayOuterTransportOffset: Int { EthernetHeader.size + IPv4Header.minimumSize }

    /// Sorts a frame read from the underlay TAP: ARP is punted to the control plane, VXLAN for this VTEP is
    /// decapsulated and classified like a datagram from a tunnel socket, anything else is counted and dropped. A
    /// TCP burst (GSO over the tunnel) keeps its segmentation: its header is rewritten, in the buffer, into the
    /// 12-byte form of a container TAP's right in front of the inner frame, so from here on it is switched like a
    /// TSO frame from a virtio TAP (passed through whole to one, segmented for anything else).
    private func classifyUnderlay(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) -> Classification? {
        let unattributed = counters.unattributedRow
        guard let identity = config.underlay else {
            counters.dropped(row: unattributed, DropCode(DataplaneDropReason.unknownPort))
            return nil
        }
        let headerSize = VirtioNetTunnelHeader.size
        guard let header = withFrameBytes(frame, { VirtioNetTunnelHeader.parse($0) }) else {
            counters.dropped(row: unattributed, DropCode(PacketDropReason.truncatedEthernet))
            return nil
        }
        // A non-zero outer UDP checksum is verified unless the kernel left it (or anything) partial.
        let verifyUDP = header.inner.flags.isEmpty && header.inner.gsoType == .none && !header.outerChecksumPartial
        let sorted = withFrameBytes(frame) { bytes in
            UnderlayFrame.classify(
                bytes.extracting(headerSize..<bytes.byteCount), localMAC: identity.mac,
                localAddress: identity.address, udpPort: identity.udpPort, verifyUDPChecksum: verifyUDP)
        }
        switch sorted {
        case .failure(let reason):
            counters.dropped(row: unattributed, DropCode(reason))
            return nil
        case .success(.notForThisVTEP):
            counters.dropped(row: unattributed, DropCode(DataplaneDropReason.underlayNotForThisVTEP))
            return nil
        case .success(.arp):
            guard let punt else { return nil }
            let bytes = withFrameBytes(frame) { span in
                unsafe span.extracting(headerSize..<span.byteCount).withUnsafeBytes { unsafe Array($0) }
            }
            if !punt.push(PuntedFrame(port: nil, bytes: bytes)) {
                counters.dropped(row: unattributed, DropCode(DataplaneDropReason.puntQueueFull))
            }
            return nil
        case .success(.vxlan(let source, let vni, let outerLength, let innerLength)):
            guard let peer = config.endpoint(at: source) else {
                counters.dropped(row: unattributed, DropCode(DataplaneDropReason.unknownPeer))
                return nil
            }
            let row = counters.row(peer: peer.peer)
            counters.received(row: row, bytes: VXLANHeader.size + innerLength)
            guard peer.encapsulation == .vxlan else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.wrongEncapsulation))
                return nil
            }
            guard let domain = config.domain(for: vni) else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.unknownVNI))
                return nil
            }
            let innerHeader: VirtioNetHeader
            switch UDPTunnelOffload.decapsulated(header, innerOffset: outerLength) {
            case .failure(let reason):
                counters.dropped(row: row, DropCode(reason))
                return nil
            case .success(let converted):
                innerHeader = converted
            }
            let innerStart = headerSize + outerLength
            // Safe: the buffer is this worker's until the end of the batch, and the span does not outlive the call.
            let inner = unsafe pool.unsafeBytes(
                of: frame.buffer, offset: Int(frame.offset) + innerStart, length: innerLength)
            var gso: VirtioNetHeader? = nil
            if innerHeader.gsoType != .none {
                // The 12 bytes before the inner frame (the end of the UDP and VXLAN headers, parsed already).
                let slot = unsafe pool.unsafeBytes(
                    of: frame.buffer, offset: Int(frame.offset) + innerStart - VirtioNetHeader.size,
                    length: VirtioNetHeader.size)
                var span = unsafe MutableRawSpan(_unsafeBytes: slot)
                innerHeader.write(into: &span)
                offloadStatistics.tsoFramesReceived &+= 1
                gso = innerHeader
            } else if innerHeader.flags.contains(.needsChecksum) {
                var span = unsafe MutableRawSpan(_unsafeBytes: inner)
                if let reason = ChecksumCompletion.complete(&span, header: innerHeader) {
                    counters.dropped(row: row, DropCode(reason))
                    return nil
                }
                offloadStatistics.checksumsCompleted &+= 1
            }
            var classification = ethernet(
                frame, rxIndex: rxIndex, innerOffset: innerStart, innerLength: innerLength, domain: domain,
                ingress: .tunnel(peer.peer), row: row)
            classification?.frame.gso = gso
            return classification
        }
    }

    /// Queues `item` for VXLAN peer `peer` as one write into the underlay TAP: the 24-byte tunnel header, the outer
    /// Ethernet, IPv4, UDP and VXLAN headers (all in the entry's header slot), then the frame from its own buffer. A
    /// TSO frame goes whole, for the kernel to carry as one burst (GSO over the UDP tunnel); one whose segments
    /// would not fit the underlay is segmented here, each segment its own write.
    private func emitUnderlay(
        _ item: ClassifiedFrame, to peer: PeerID, remote: IPv4Address, template: EncapTemplate,
        through underlay: PortHandle, identity: UnderlayIdentity, config: DataplaneConfig, flowHash: UInt32?,
        row: Int
    ) {
        guard template.encapsulation == .vxlan else {
            // The control plane refuses GRE peers on an underlay TAP; count rather than trap if one slips through.
            counters.dropped(row: row, DropCode(DataplaneDropReason.wrongEncapsulation))
            return
        }
        guard let nextHop = config.nextHopMAC(of: peer) else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.underlayNextHopUnresolved))
            return
        }
        let hash = flowHash ?? self.flowHash(of: item)
        let outer = UnderlayOuterHeader(
            ethernet: EthernetHeader(destination: nextHop, source: identity.mac, etherType: .ipv4),
            template: template, flowHash: hash)
        var tunnelHeader = VirtioNetTunnelHeader.plain
        if let gso = item.gso {
            let plan = withItemBytes(item) {
                UDPTunnelOffload.encapsulating(
                    gso, frame: $0, outerLength: Self.underlayOuterLength,
                    outerTransportOffset: Self.underlayOuterTransportOffset, maximumInnerPacket: overlayMTU)
            }
            switch plan {
            case .failure(let reason):
                counters.dropped(row: row, DropCode(reason))
                return
            case .success(.segment):
                transmitSegments(of: item, header: gso, row: row) { segment, length in
                    let appended = unsafe tx.append(
                        target: underlay, remote: remote, buffer: segment, offset: UInt32(pool.headroom),
                        length: UInt32(length)
                    ) { slot in unsafe outer.write(into: slot, header: .plain, innerLength: length) }
                    counters.transmitted(row: row, bytes: template.headerLength + length)
                    return appended
                }
                return
            case .success(.whole(let header)):
                tunnelHeader = header
                offloadStatistics.tsoFramesPassedThrough &+= 1
            }
        }
        let innerLength = Int(item.length)
        guard template.headerLength + innerLength <= 0xFFFF else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.frameTooLong))
            return
        }
        let buffer = rx.frames[item.rxIndex].buffer
        appendTransmit { tx in
            unsafe tx.append(target: underlay, remote: remote, buffer: buffer, offset: item.offset, length: item.length) {
                slot in unsafe outer.write(into: slot, header: tunnelHeader, innerLength: innerLength)
            }
        }
        counters.transmitted(row: row, bytes: template.headerLength + innerLength)
    }

    /// Sends a control-plane frame (ARP) out of the underlay TAP behind a plain tunnel header (control command,
    /// worker thread). Counted as a drop when there is no underlay, no buffer, or it does not fit one.
    private func transmitUnderlayControlFrame(_ bytes: [UInt8]) {
        let row = counters.unattributedRow
        guard let underlay else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.portNotAttached))
            return
        }
        guard let buffer = controlFrameBuffer(holding: bytes, row: row) else { return }
        flushTransmit()
        unsafe tx.append(
            target: underlay, remote: .any, buffer: buffer, offset: UInt32(pool.headroom), length: UInt32(bytes.count)
        ) { slot in
            var span = unsafe MutableRawSpan(_unsafeBytes: slot)
            return VirtioNetTunnelHeader.plain.write(into: &span)
        }
        flushTransmit()
        pool.give(buffer)
    }

    /// Runs `body` over the inner Ethernet frame of `item` (after any virtio header).
    private func withItemBytes<R>(_ item: ClassifiedFrame, _ body: (RawSpan) -> R) -> R {
        // Safe: the rx buffer belongs to this worker until the end of the batch; the span does not outlive `body`.
        let bytes = unsafe pool.unsafeBytes(
            of: rx.frames[item.rxIndex].buffer, offset: Int(item.offset), length: Int(item.length))
        return unsafe body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }

    /// Runs `body` over the received bytes of `frame`.
    private func withFrameBytes<R>(_ frame: ReceivedFrame, _ body: (RawSpan) -> R) -> R {
        // Safe: the buffer belongs to this worker until it is released at the end of the batch, and the span
        // does not outlive `body`.
        let bytes = unsafe pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
        return unsafe body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }
}

// File-level rather than nested in the generic worker, so that using them needs no generic metadata at run time.

/// A frame that passed classification and learning.
private struct ClassifiedFrame {
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
private struct SwitchKey: Equatable {
    var domain: BridgeDomain
    var ingress: Ingress
    var address: MACAddress
}

/// A classified frame and the source MAC address to learn from it.
private struct Classification {
    var frame: ClassifiedFrame
    var source: MACAddress
    var domain: BridgeDomain { frame.domain }
    var ingress: Ingress { frame.ingress }
}

/// One frame for one TAP with a virtio header, waiting for `DataplaneWorker.sendDeferred`.
private struct DeferredTransmit {
    var item: Int  // index into the worker's `classified`
    var target: PortHandle  // the TAP
    var pending: Bool  // not sent yet
}

/// Where a VXLAN datagram goes through a UDP sender, and what its VXLAN header says.
private struct VXLANRoute: Equatable {
    var target: PortHandle  // the UDP sender socket picked by the flow hash
    var remote: IPv4Address  // the peer's underlay address
    var port: UInt16  // the peer's VXLAN UDP port
    var vni: VNI  // the VNI in the VXLAN header
    var flowHash: UInt32  // the inner flow's hash (frames of one pack share it)
    var outerLength: Int  // outer header bytes on the wire (IPv4 + UDP + VXLAN), for the counters
}

/// The UDP GSO send at the end of the TxBatch that the next frames for the same route may continue: plain frames
/// packed together, or a TSO frame's segments (see the worker's file comment).
private struct VXLANPack {
    var route: VXLANRoute  // every piece's route
    var entry: Int  // its index in the TxBatch; packing goes on only while it is the last entry
    var contents: Contents
    var pieceLength: Int  // VXLAN + frame bytes of each piece: the GSO segment size
    var count: Int  // pieces so far
    var used: Int  // bytes of the packed buffer used (0 while `lone`)
    var closed: Bool  // a shorter piece was added: it must stay the last

    enum Contents {
        /// One plain frame, sent from its rx buffer with its VXLAN header in the header slot until a second comes.
        case lone((buffer: BufferID, offset: UInt32, length: UInt32))
        /// The pieces so far, in a large buffer of the worker's.
        case packed(BufferID)
    }
}

/// The headers in front of an inner frame written to the underlay TAP, minus the per-frame parts: the outer
/// Ethernet header (to the peer's next hop) and the peer's prebuilt IPv4 + UDP + VXLAN template.
private struct UnderlayOuterHeader {
    var ethernet: EthernetHeader
    var template: EncapTemplate
    var flowHash: UInt32  // the inner flow's hash: the UDP source port

    /// Writes the tunnel virtio-net header, then the outer headers for an inner frame of `innerLength` bytes, into
    /// a TxBatch header slot.
    /// - Returns: bytes written (24 + 14 + 36).
    func write(into slot: UnsafeMutableRawBufferPointer, header: VirtioNetTunnelHeader, innerLength: Int) -> Int {
        var span = unsafe MutableRawSpan(_unsafeBytes: slot)
        var offset = header.write(into: &span)
        offset += ethernet.write(into: &span, at: offset)
        return offset + template.write(into: &span, at: offset, innerLength: innerLength, flowHash: flowHash)
    }
}

/// What the virtio-net header in front of a frame from a virtio TAP says.
private enum OffloadHeader {
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
            logger.error("\(entry.encapsulation) tunnel socket stopped receiving: \(error.summary)")
        }
    }
}
