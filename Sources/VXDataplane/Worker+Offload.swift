// The worker's offload paths (docs/offload.md): TSO frames segmented for peers and plain TAPs, VXLAN packed into
// UDP GSO sends, and frames for TAPs with a virtio header deferred to the end of the batch and coalesced
// (TCPCoalescer, UDPCoalescer) into GSO writes. Worker.swift's file comment describes the flow; this file holds the
// code and the small types it keeps between frames. Worker thread only.

import Logging
import VXForwarding
import VXIO
import VXOffload
import VXPacket

extension DataplaneWorker {
    // MARK: Offloads (TSO segmentation, coalescing for virtio TAPs)

    /// Segments the TSO frame `item` (its virtio header `header`) into standard buffers, one at a time, and hands
    /// each segment (buffer, length of the frame at the headroom) to `append`, which adds it to `tx` and returns
    /// whether it did. Flushes `tx` when it is full or the pool has no buffer, so any number of segments fits.
    func transmitSegments(
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
    func transmitSegmentsUDP(of item: ClassifiedFrame, header: VirtioNetHeader, route: VXLANRoute, row: Int) {
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

    /// Sends a plain frame to a VXLAN peer through its flow's UDP sender, or with `underlay` through the underlay
    /// TAP: packed into the GSO send at the end of `tx` when it continues it (same route, not longer than its
    /// pieces, room left), else as a datagram of its own that the next frame may continue (see the file comment).
    /// On the underlay TAP a GSO send is a UDP_L4 write behind `underlay`'s headers (`writeSegmented`).
    func appendVXLANDatagram(
        _ item: ClassifiedFrame, route: VXLANRoute, row: Int, underlay: UnderlayOuterHeader? = nil
    ) {
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
                replacePackEntry(current, buffer: buffer, underlay: underlay)
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
                if let underlay {
                    return unsafe underlay.write(into: slot, header: .plain, innerLength: Int(source.length))
                }
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

    /// Makes the last `tx` entry the GSO send `pack` describes, its pieces in `buffer`: a UDP GSO send on a socket,
    /// or with `underlay` a UDP_L4 write whose headers are rewritten in the entry's header slot.
    private func replacePackEntry(_ pack: VXLANPack, buffer: BufferID, underlay: UnderlayOuterHeader?) {
        let route = pack.route
        var entry = FrameTransmit(
            target: route.target, remote: route.remote, remotePort: route.port,
            segmentSize: UInt16(pack.pieceLength), headerLength: 0, buffer: buffer, offset: UInt32(pool.headroom),
            length: UInt32(pack.used))
        if let underlay {
            // Safe: the slot belongs to the last entry, which this replaces, and lives as long as `tx`.
            let slot = unsafe tx.headerSlot(tx.count - 1)
            let written = unsafe underlay.writeSegmented(
                into: slot, payloadLength: pack.used, segmentSize: pack.pieceLength)
            entry.headerLength = UInt8(written)
            entry.segmentSize = 0  // a TAP write: the kernel learns the size from the virtio header
        }
        tx.replaceLast(entry)
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
    func sendDeferred() {
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
}

// File-level, as Worker.swift's types are.

/// One frame for one TAP with a virtio header, waiting for `DataplaneWorker.sendDeferred`.
struct DeferredTransmit {
    var item: Int  // index into the worker's `classified`
    var target: PortHandle  // the TAP
    var pending: Bool  // not sent yet
}

/// Where a VXLAN datagram goes through a UDP sender, and what its VXLAN header says.
struct VXLANRoute: Equatable {
    var target: PortHandle  // the UDP sender socket picked by the flow hash
    var remote: UnderlayAddress  // the peer's underlay address
    var port: UInt16  // the peer's VXLAN UDP port
    var vni: VNI  // the VNI in the VXLAN header
    var flowHash: UInt32  // the inner flow's hash (frames of one pack share it)
    var outerLength: Int  // outer header bytes on the wire (IPv4 + UDP + VXLAN), for the counters
}

/// The UDP GSO send at the end of the TxBatch that the next frames for the same route may continue: plain frames
/// packed together, or a TSO frame's segments (see the worker's file comment).
struct VXLANPack {
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
