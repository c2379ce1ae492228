// The worker's switching stages, steps 2-7 of Worker.swift's flow: classify each received frame (TAP frame, VXLAN
// datagram, GRE packet) to a bridge domain and ingress, learn the batch's sources, decide on the table as the batch
// left it, and emit each frame to its destinations through the TxBatch. Frames that need offload work (TSO frames
// to segment, frames for TAPs with a virtio header, VXLAN for UDP GSO sends) go on to Worker+Offload.swift, frames
// for the underlay TAP to Worker+Underlay.swift. Worker thread only, like everything in the worker.

import Logging
import VXForwarding
import VXIO
import VXOffload
import VXPacket

extension DataplaneWorker {
    // MARK: The batch

    func processBatch() {
        let config = reader.refresh()
        classified.removeAll(keepingCapacity: true)
        lastLearnt = nil

        // Stages 2 and 3: classify and learn.
        for index in 0..<rx.count {
            let frame = rx.frames[index]
            if frame.source == underlay {
                classifyUnderlay(frame, rxIndex: index, config: config)
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
    func learnAndKeep(_ item: Classification, config: DataplaneConfig) {
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
    func classifyGRO(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) {
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
        guard let peer = config.endpoint(at: frame.remote) else {
            counters.dropped(row: counters.unattributedRow, DropCode(DataplaneDropReason.unknownPeer))
            return nil
        }
        return classifyDatagram(
            frame, rxIndex: rxIndex, start: start, length: length, framing: tunnel.framing, peer: peer,
            row: counters.row(peer: peer.peer), config: config)
    }

    /// Counts, decapsulates and classifies the datagram payload at `start ..< start + length` of `frame`, which
    /// came from `peer` framed as `framing` (a tunnel socket's datagram, or one of an underlay TAP's UDP_L4 run).
    func classifyDatagram(
        _ frame: ReceivedFrame, rxIndex: Int, start: Int, length: Int, framing: TunnelFraming,
        peer: PeerEndpoint, row: Int, config: DataplaneConfig
    ) -> Classification? {
        counters.received(row: row, bytes: length)
        guard peer.encapsulation == framing.encapsulation else {
            counters.dropped(row: row, DropCode(DataplaneDropReason.wrongEncapsulation))
            return nil
        }
        let decoded = withFrameBytes(frame) { whole -> Result<(VNI, Int, Int), PacketDropReason> in
            let bytes = whole.extracting(start..<(start + length))
            let gre: Result<GREDatagramDecapsulation, PacketDropReason>
            switch framing {
            case .vxlan:
                return TunnelDecap.vxlanDatagram(bytes).map { ($0.vni, $0.innerOffset, $0.innerLength) }
            case .gre:
                gre = TunnelDecap.greDatagram(bytes)
            case .greBehindIPv4:
                // Offsets from the start of the IPv4 header, as everything here counts from `start`.
                gre = TunnelDecap.greIPv4(bytes).map(\.datagram)
            }
            return gre.flatMap { decap in
                decap.vni(layout: peer.greKeyLayout, unkeyedVNI: peer.unkeyedVNI ?? VNI(truncating: 0)).map {
                    ($0, decap.innerOffset, decap.innerLength)
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
    func ethernet(
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
    func transmitControlFrame(_ bytes: [UInt8], to port: PortID) {
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
    func controlFrameBuffer(holding bytes: [UInt8], row: Int) -> BufferID? {
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

    func flowHash(of item: ClassifiedFrame) -> UInt32 {
        let buffer = rx.frames[item.rxIndex].buffer
        let bytes = unsafe pool.unsafeBytes(of: buffer, offset: Int(item.offset), length: Int(item.length))
        return unsafe FlowHash.hash(frame: RawSpan(_unsafeBytes: UnsafeRawBufferPointer(bytes)))
    }

    /// Queues `classified[position]` for `destination`; `flowHash` is computed on demand for peers when not given.
    /// Frames for virtio TAPs are deferred to `sendDeferred`; TSO frames for anything else are segmented.
    func emit(_ position: Int, to destination: Destination, config: DataplaneConfig, flowHash: UInt32?) {
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
    func appendTransmit(_ body: (TxBatch) -> Bool) {
        if body(tx) { return }
        flushTransmit()
        let appended = body(tx)
        assert(appended, "an empty TxBatch refused a frame")
    }

    func flushTransmit() {
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
}
