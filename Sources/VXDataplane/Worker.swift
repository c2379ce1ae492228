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
// Locking, producers and consumers: the worker thread alone touches `engine`, `rx`, `tx`, and the handle maps.
// The MAC table is shared with other workers and the control thread (lock-free, see ForwardingTable). The config
// snapshot is published by the control thread and picked up once per batch (ConfigReader). Control requests
// that involve file descriptors arrive through `WorkerMailbox` and run on this thread between batches.
//
// Nothing in steps 1-7 allocates: batches, scratch arrays and header slots are sized once at init.

import Logging
import Synchronization
import VXForwarding
import VXIO
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
        let semaphore = Semaphore()
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

/// A counting semaphore over a pthread mutex/condition pair: the control thread blocks on it while a worker
/// runs a command. (Dispatch is avoided so VXDataplane keeps to the stdlib, Synchronization and Glibc.)
final class Semaphore: Sendable {
    private let count = Mutex<Int>(0)

    func signal() {
        count.withLock { $0 += 1 }
    }

    /// Waits by polling with a short sleep: this runs only on control paths (a port being attached), where a
    /// millisecond does not matter, and it keeps the implementation free of raw pthread condition storage.
    func wait() {
        while true {
            let taken = count.withLock { value -> Bool in
                guard value > 0 else { return false }
                value -= 1
                return true
            }
            if taken { return }
            usleep(200)
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

    public let engine: Engine
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
    /// Per-batch scratch: the frames that survived classification, in rx order.
    private var classified: [ClassifiedFrame]
    private var stopping = false

    /// A frame that passed classification and learning.
    private struct ClassifiedFrame {
        var rxIndex: Int  // index into rx.frames (for the buffer)
        var domain: BridgeDomain
        var ingress: Ingress
        var offset: UInt32  // inner Ethernet frame within the buffer
        var length: UInt32
        var destination: MACAddress
    }

    /// - Parameters:
    ///   - engine: this worker's engine (used from the worker thread only once `run` starts).
    ///   - table: the switch's MAC table, shared by all workers.
    ///   - publisher: where the control plane publishes config snapshots.
    ///   - counters: this worker's counters.
    public init(
        engine: Engine, table: ForwardingTable, publisher: ConfigPublisher, counters: WorkerCounters,
        batchSize: Int = defaultBatchSize, transmitCapacity: Int = defaultTransmitCapacity,
        punt: PuntQueue? = nil, logger: Logger = Logger(label: "vxswitch.worker")
    ) {
        self.engine = engine
        self.punt = punt
        self.table = table
        self.counters = counters
        self.mailbox = WorkerMailbox(waker: engine.waker)
        self.reader = ConfigReader(publisher: publisher)
        self.rx = RxBatch(capacity: batchSize)
        self.tx = TxBatch(capacity: transmitCapacity)
        self.classified = []
        self.classified.reserveCapacity(batchSize)
        self.logger = logger
    }

    /// Runs batches until a `.stop` command arrives. Call on the worker's own thread.
    public func run() {
        logger.debug("Routine: dataplane worker - started")
        var consecutiveErrors = 0
        while !stopping {
            do {
                try runOnce(timeout: .seconds(1))
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
    public func runOnce(timeout: Duration?) throws(IOError) {
        runCommands()
        if stopping { return }
        rx.reset()
        let outcome = try engine.receive(into: &rx, timeout: timeout)
        if case .timedOut = outcome { return }
        processBatch()
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
                case .tap: break
                }
                return .success(handle)
            case .transmitFrame(let port, let bytes):
                transmitControlFrame(bytes, to: port)
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

    // MARK: The batch

    private func processBatch() {
        let config = reader.refresh()
        let topology = config.topology
        classified.removeAll(keepingCapacity: true)

        // Stages 2 and 3: classify and learn.
        for index in 0..<rx.count {
            let frame = rx.frames[index]
            guard let item = classify(frame, rxIndex: index, config: config) else { continue }
            if let reason = SwitchDecision.learn(
                domain: item.domain, ingress: item.ingress, source: item.source, table: table, topology: topology)
            {
                counters.dropped(row: counters.row(item.ingress.destination), DropCode(reason))
                continue
            }
            classified.append(item.frame)
        }

        // Stages 4 and 5: forward on the end state of the table, encapsulate into the tx batch.
        for item in classified {
            let action = SwitchDecision.decide(
                domain: item.domain, ingress: item.ingress, destination: item.destination, table: table,
                topology: topology)
            switch action {
            case .forward(let destination):
                emit(item, to: destination, config: config, flowHash: nil)
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
                    emit(item, to: destination, config: config, flowHash: flowHash)
                }
            case .drop(let reason):
                counters.dropped(row: counters.row(item.ingress.destination), DropCode(reason))
            }
        }

        // Stages 6 and 7.
        flushTransmit()
        for frame in rx.frames { engine.release(frame.buffer) }
    }

    /// What classification yields: the frame plus its source MAC for learning.
    private struct Classification {
        var frame: ClassifiedFrame
        var source: MACAddress
        var domain: BridgeDomain { frame.domain }
        var ingress: Ingress { frame.ingress }
    }

    private func classify(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) -> Classification? {
        let slot = frame.source.slot
        if slot < portBySlot.count, let entry = portBySlot[slot], entry.handle == frame.source {
            let port = entry.port
            counters.received(row: counters.row(port: port), bytes: Int(frame.length))
            guard let domain = config.topology.domain(of: port) else {
                counters.dropped(row: counters.row(port: port), DropCode(DataplaneDropReason.unknownPort))
                return nil
            }
            if let rule = config.puntRule(for: port), let punt, withFrameBytes(frame, { rule.matches($0) }) {
                let bytes = withFrameBytes(frame) { span in
                    unsafe span.withUnsafeBytes { unsafe Array($0) }
                }
                if !punt.push(PuntedFrame(port: port, bytes: bytes)) {
                    counters.dropped(row: counters.row(port: port), DropCode(DataplaneDropReason.puntQueueFull))
                }
                return nil
            }
            return ethernet(
                frame, rxIndex: rxIndex, innerOffset: 0, innerLength: Int(frame.length), domain: domain,
                ingress: .port(port), row: counters.row(port: port))
        }
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
        counters.received(row: row, bytes: Int(frame.length))
        guard peer.encapsulation == encapsulation else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.wrongEncapsulation))
            return nil
        }
        let decoded = withFrameBytes(frame) { bytes -> Result<(VNI, Int, Int), PacketDropReason> in
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
                frame, rxIndex: rxIndex, innerOffset: innerOffset, innerLength: innerLength, domain: domain,
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
        let pool = engine.pool
        guard bytes.count <= pool.bufferSize - pool.headroom, let buffer = pool.take() else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.transmitNoBuffer))
            return
        }
        unsafe bytes.withUnsafeBytes { source in
            let destination = unsafe pool.unsafeBytes(of: buffer, offset: pool.headroom, length: source.count)
            unsafe destination.copyMemory(from: source)
        }
        flushTransmit()
        tx.append(target: handle, buffer: buffer, offset: UInt32(pool.headroom), length: UInt32(bytes.count))
        counters.transmitted(row: row, bytes: bytes.count)
        flushTransmit()
        pool.give(buffer)
    }

    private func isAttached(_ port: PortID) -> Bool {
        let index = Int(port.index)
        return index < handleByPortIndex.count && handleByPortIndex[index] != nil
    }

    private func flowHash(of item: ClassifiedFrame) -> UInt32 {
        let buffer = rx.frames[item.rxIndex].buffer
        let bytes = unsafe engine.pool.unsafeBytes(of: buffer, offset: Int(item.offset), length: Int(item.length))
        return unsafe FlowHash.hash(frame: RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }

    /// Queues `item` for `destination`; `flowHash` is computed on demand for peers when not given.
    private func emit(_ item: ClassifiedFrame, to destination: Destination, config: DataplaneConfig, flowHash: UInt32?) {
        let buffer = rx.frames[item.rxIndex].buffer
        switch destination {
        case .port(let port):
            let row = counters.row(port: port)
            let index = Int(port.index)
            guard index < handleByPortIndex.count, let handle = handleByPortIndex[index] else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.portNotAttached))
                return
            }
            appendTransmit { tx in
                tx.append(target: handle, buffer: buffer, offset: item.offset, length: item.length)
            }
            counters.transmitted(row: row, bytes: Int(item.length))
        case .peer(let peer):
            let row = counters.row(peer: peer)
            guard let sender else {
                counters.dropped(row: row, DropCode(DataplaneDropReason.noTunnelSender))
                return
            }
            guard let (remote, template) = config.outerHeader(to: peer, in: item.domain) else {
                // The decision checked the peer is live in this domain with the same topology snapshot, and the
                // control plane builds the templates with it, so this is a config-building bug; count, don't trap.
                counters.dropped(row: row, DropCode(DataplaneDropReason.unknownPeer))
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
        guard tx.count > 0 else { return }
        let report = engine.transmit(tx)
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

    /// Runs `body` over the received bytes of `frame`.
    private func withFrameBytes<R>(_ frame: ReceivedFrame, _ body: (RawSpan) -> R) -> R {
        // Safe: the buffer belongs to this worker until it is released at the end of the batch, and the span
        // does not outlive `body`.
        let bytes = unsafe engine.pool.unsafeBytes(of: frame.buffer, offset: Int(frame.offset), length: Int(frame.length))
        return unsafe body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }
}
