// TCP coalescing (GRO in software) for frames going out of a TAP.
//
// Flow: after decapsulation the dataplane has a batch of inner frames for one TAP, in arrival order. It calls
// `reset()`, then `add(_:)` once per frame; each call parses the frame and either starts an item or appends the
// frame to the open item of its flow. Then it walks `items`, in order of each item's first frame:
//   - a pass-through item is its one frame, sent unchanged behind `item.header` (12 bytes, gso NONE, no
//     DATA_VALID: its TCP checksum was not verified here, so the kernel verifies it): no copy, the header goes in
//     the TxBatch header slot;
//   - a coalesced item (2+ frames) is written by `writeCoalesced(item:into:frames:)` into a scratch buffer as
//     virtio header + one large frame, then written to the TAP in one go. The kernel's TCP takes it whole
//     (CHECKSUM_PARTIAL counts as verified), or re-segments it if it routes it out of a device without TSO.
//     `writeCoalesced` verifies every member's TCP checksum while it copies the payload and returns nil when one
//     fails; the caller then sends the members one by one (`nextMember(after:)`) behind plain headers, as
//     pass-through frames, so the kernel verifies each and drops the bad one.
//
// Merge rules. They follow the kernel's tcp_gro_receive / inet_gro_receive / ipv6_gro_receive (which wireguard-go's
// tcpGRO mirrors), chosen so that re-segmenting the result gives back the original frames byte for byte:
//   - candidates: Ethernet (one 802.1Q tag allowed) + IPv4 without options or IPv6 without extension headers +
//     TCP, not a fragment, payload > 0, flags ACK plus optionally PSH and ECE; SYN, FIN, RST, URG, CWR and AE are
//     never merged (CWR makes the kernel flush too). The IPv4 header checksum must verify (`add` checks it: 20
//     bytes, and the identification rules below read that header). Every TCP checksum must verify too, since the
//     merged frame goes up as CHECKSUM_PARTIAL and an unverified segment would be accepted with a recomputed
//     checksum; `writeCoalesced` checks it (below), so a segment with a bad one does join the run, and its whole
//     item is then sent unmerged instead.
//   - same flow: addresses and ports; then every header byte must equal the run's first frame except the
//     lengths, checksums, IPv4 identification, TCP sequence number and the PSH bit: same Ethernet header and tag,
//     TOS/traffic class, flow label, TTL/hop limit, DF, ACK number, window, urgent pointer, and TCP options byte
//     for byte (timestamps too, as wireguard-go and the kernel: a new TSval ends the run).
//   - sequence: each segment starts where the run ends (append only, no reordering).
//   - sizes: all segments but the last carry the first one's payload size (gso_size); the last may be shorter and
//     ends the run; the merged IP packet fits 65535 bytes and header + frame fit the scratch buffer.
//   - IPv4 identification: first + i, or (DF set) all equal, as the kernel accepts.
//   - PSH ends the run: a PSH segment is appended last (the merged frame keeps PSH) and never starts one.
// Any frame of a flow that does not join the flow's open item (a pure ACK, FIN, a gap, a changed header, a bad
// IPv4 header checksum) closes that item, so no frame ever overtakes an earlier frame of its own flow. Frames of
// different flows may leave in a different relative order (each item leaves at the position of its first frame),
// which TCP does not notice. An item sent unmerged after a failed checksum leaves at that same position, its
// frames in order.
//
// Copy, not iovec, and the copy verifies: `writeCoalesced` copies each segment's payload into the caller's scratch
// buffer and checks its TCP checksum as it copies; CoalescerCore's header explains why, and what it costs.
//
// Shared with UDPCoalescer (CoalescerCore): the frame, item and open-flow tables, the header templates and the
// Ethernet/IP part of their comparison, the size caps, the IPv4 identification rule, "a short segment ends the
// run" and the copy-and-verify loop. Here: parsing, the TCP header comparison, the sequence and PSH rules, and the
// header fix-ups of a merged frame.
//
// Memory: everything is allocated in `init` (CoalescerCore's per-frame and per-item tables sized to `capacity` and
// its `openFlowLimit` header templates, which carry TCP's PSH flag per item and next sequence number per open flow).
// `reset`, `add`, `item` and `writeCoalesced` only index those arrays in place (the struct is ~Copyable, so they are
// never shared and never copied on write): no allocation per frame or per batch.
//
// Thread-safety: none; one coalescer per worker thread, like its TxBatch.

import VXPacket

/// Merges consecutive TCP segments of the same flow in a batch into frames for a TAP with TSO (see file header).
public struct TCPCoalescer: ~Copyable {
    /// Default `openFlowLimit`: flows that can be merging at once within one batch. wireguard-go keeps a map per
    /// batch; eight linear-scanned slots cover the few bulk flows a TAP typically has per batch, and a flow past
    /// the limit only loses merging, not correctness.
    public static let defaultOpenFlowLimit = 8
    /// Default scratch buffer size: 64 KiB, the most a TAP write can usefully carry (IP lengths are 16 bits).
    public static let defaultScratchCapacity = 65_536
    /// Bytes reserved per open flow for its first frame's headers: Ethernet with tag (18) + IPv6 (40) + TCP with
    /// options (60) = 118, rounded up.
    static let templateStride = 128

    /// One coalescer output: a pass-through frame or a merged one, in order of its first frame.
    public struct Item: Hashable, Sendable {
        /// Index (in `add` order) of the item's first frame.
        public var firstFrame: Int
        /// Frames merged into this item; 1 for a pass-through item.
        public var frameCount: Int
        /// The virtio-net header to send in front of the frame: a plain one (no flags) for a pass-through item.
        public var header: VirtioNetHeader
        /// Bytes of frame after the virtio header: the frame's own length when passed through, the merged length
        /// when coalesced.
        public var length: Int

        /// True when the item merges two or more frames and must be written with `writeCoalesced`.
        @inlinable public var isCoalesced: Bool { frameCount > 1 }
    }

    /// Most frames per batch (`add` calls between `reset`s).
    public var capacity: Int { core.capacity }
    /// The scratch buffer `writeCoalesced` writes into: virtio header plus merged frame never exceed it.
    public var scratchCapacity: Int { core.scratchCapacity }
    /// Flows that can be merging at once.
    public var openFlowLimit: Int { core.openFlowLimit }

    /// The tables (see CoalescerCore), with TCP's `ItemState.lastHasPSH` and `OpenFlow.nextSequence`.
    private var core: CoalescerCore

    /// Allocates every table once.
    /// - Parameters:
    ///   - capacity: most frames per batch (the dataplane's receive batch size).
    ///   - scratchCapacity: size of the buffer given to `writeCoalesced`; merged frames are capped to fit.
    ///   - openFlowLimit: flows that can be merging at once.
    public init(
        capacity: Int,
        scratchCapacity: Int = TCPCoalescer.defaultScratchCapacity,
        openFlowLimit: Int = TCPCoalescer.defaultOpenFlowLimit
    ) {
        core = CoalescerCore(
            name: "TCPCoalescer",
            capacity: capacity,
            scratchCapacity: scratchCapacity,
            openFlowLimit: openFlowLimit,
            templateStride: TCPCoalescer.templateStride,
            gsoTypes: (ipv4: .tcpv4, ipv6: .tcpv6),
            checksumOffset: 16
        )
    }

    /// Frames added since the last `reset`.
    public var count: Int { core.frameCount }

    /// Items so far; complete once the batch's last frame was added.
    public var itemCount: Int { core.itemCount }

    /// Forgets the batch, keeping every table.
    public mutating func reset() {
        core.reset()
    }

    /// Adds the next frame of the batch; its index is the number of frames added before it.
    ///
    /// Only reads `frame`; `writeCoalesced` reads it again later, so it must stay unchanged until then.
    /// - Parameter frame: an inner Ethernet frame, from the destination MAC on.
    public mutating func add(_ frame: RawSpan) {
        let index = core.takeFrame()

        let segment: Segment
        switch Segment.parse(frame) {
        case .notTCP:
            core.startItem(frame: index, length: frame.byteCount, candidate: nil)
            return
        case .notCandidate(let key):
            core.closeFlows(key)
            core.startItem(frame: index, length: frame.byteCount, candidate: nil)
            return
        case .candidate(let parsed):
            segment = parsed
        }
        let candidate = segment.candidate
        core.record(candidate, at: index)

        if let slot = core.findFlow(candidate.key) {
            if canAppend(segment, candidate, frame, to: slot) {
                let item = core.append(frame: index, candidate, to: slot)
                core.items[item].lastHasPSH = segment.hasPSH
                core.open[slot].nextSequence &+= UInt32(truncatingIfNeeded: candidate.payloadLength)
                // PSH must stay on the last segment (`append` already closed the slot after a short one).
                if segment.hasPSH { core.close(slot: slot) }
                return
            }
            core.close(slot: slot)
        }
        let item = core.startItem(frame: index, length: frame.byteCount, candidate: candidate)
        if !segment.hasPSH {
            let slot = core.openFlow(item: item, candidate: candidate, frame: frame)
            core.open[slot].nextSequence = segment.sequence &+ UInt32(truncatingIfNeeded: candidate.payloadLength)
        }
    }

    /// Item `index` (0 ..< `itemCount`).
    public func item(_ index: Int) -> Item {
        core.item(index)
    }

    /// The frame after `frameIndex` in its item, or nil for the item's last frame.
    public func nextMember(after frameIndex: Int) -> Int? {
        core.nextMember(after: frameIndex)
    }

    /// Where the TCP payload of a frame of a coalesced item lies within that frame.
    public func payloadRange(ofFrame frameIndex: Int) -> Range<Int> {
        core.payloadRange(ofFrame: frameIndex)
    }

    /// Writes a coalesced item as the kernel expects it on a TAP write: the 12-byte virtio-net header, then the
    /// first frame's headers with lengths, IPv4 checksum and PSH fixed and the TCP checksum field holding the
    /// pseudo-header sum (NEEDS_CSUM), then every member's payload in order. Verifies each member's TCP checksum
    /// as it copies the payload (see the file header) and stops at the first that fails.
    /// - Parameters: as `FrameCoalescer.writeCoalesced(item:into:at:frames:)`, which says more:
    ///   - index: an item with `isCoalesced`.
    ///   - destination: the scratch buffer (`scratchCapacity` bytes from `offset` always suffice).
    ///   - offset: where the virtio-net header goes.
    ///   - frames: gives the bytes of each member, as given to `add`.
    /// - Returns: bytes written, or nil when a member's TCP checksum does not verify: send the members unmerged.
    public func writeCoalesced(
        item index: Int,
        into destination: inout MutableRawSpan,
        at offset: Int = 0,
        frames: (_ frameIndex: Int, _ body: (RawSpan) -> Void) -> Void
    ) -> Int? {
        guard let output = core.writeMembers(item: index, into: &destination, at: offset, frames: frames) else {
            return nil
        }
        let state = core.items[index]
        let start = offset + VirtioNetHeader.size
        let ip = start + Int(state.networkOffset)
        let tcp = start + Int(state.transportOffset)
        let end = start + output.length
        if state.isIPv6 {
            destination.vxStoreBE16(UInt16(truncatingIfNeeded: end - ip - IPv6Header.size), at: ip + 4)
        } else {
            destination.vxStoreBE16(UInt16(truncatingIfNeeded: end - ip), at: ip + 2)
            IPv4Header.updateChecksum(in: &destination, at: ip)
        }
        if state.lastHasPSH {
            let flags = destination.bytes.vxU8(tcp + 13)
            destination.vxStoreU8(flags | UInt8(truncatingIfNeeded: TCPFlags.psh.rawValue), at: tcp + 13)
        }
        let layout = TCPFrameLayout(
            networkOffset: Int(state.networkOffset),
            transportOffset: Int(state.transportOffset),
            tcpHeaderLength: Int(state.headerLength) - Int(state.transportOffset),
            packetEnd: output.length,
            isIPv6: state.isIPv6
        )
        let base = layout.pseudoHeaderBase(destination.bytes.extracting(start..<end))
        // The pseudo-header sum itself, not complemented: the kernel adds the segment to it and complements
        // (CHECKSUM_PARTIAL), exactly as for a frame its own TCP stack built (__tcp_v4_send_check).
        destination.vxStoreBE16(InternetChecksum.combine(base, UInt16(truncatingIfNeeded: end - tcp)), at: tcp + 16)
        return VirtioNetHeader.size + output.length
    }

    // MARK: - Merging

    /// The TCP rules for joining the open item in `slot`, then the shared ones (`CoalescerCore.canAppend`).
    private func canAppend(
        _ segment: Segment, _ candidate: CoalescerCore.Candidate, _ frame: RawSpan, to slot: Int
    ) -> Bool {
        let state = core.openItem(slot)
        guard segment.sequence == core.open[slot].nextSequence, state.payloadTotal % state.segmentSize == 0 else {
            return false
        }
        return core.canAppend(candidate, frame, to: slot) { frame, template in
            TCPCoalescer.headersMatch(frame, template, segment.layout)
        }
    }

    /// Compares every header byte that must not change within an item (see the file header): the Ethernet and IP
    /// ones (`CoalescerCore.headersMatch`; addresses are equal already, same flow key), then the TCP ones.
    private static func headersMatch(_ frame: RawSpan, _ template: RawSpan, _ layout: TCPFrameLayout) -> Bool {
        let t = layout.transportOffset
        guard CoalescerCore.headersMatch(frame, template, networkOffset: layout.networkOffset, isIPv6: layout.isIPv6)
        else { return false }
        // Ports; acknowledgment; data offset; flags but PSH; window; urgent pointer; options.
        let pshBit = UInt8(truncatingIfNeeded: TCPFlags.psh.rawValue)
        return frame.vxEqual(t, template, t, count: 4) && frame.vxEqual(t + 8, template, t + 8, count: 5)
            && (frame.vxU8(t + 13) ^ template.vxU8(t + 13)) & ~pshBit == 0
            && frame.vxEqual(t + 14, template, t + 14, count: 2)
            && frame.vxEqual(t + 18, template, t + 18, count: layout.tcpHeaderLength - 18)
    }
}

/// What `TCPCoalescer.add` needs to know about one frame.
private struct Segment {
    var layout: TCPFrameLayout
    var key: CoalescerCore.FlowKey
    var sequence: UInt32
    var identification: UInt16
    var hasPSH: Bool

    /// Pseudo-header plus TCP header sum (the TCP checksum field included); `writeCoalesced` adds the payload's.
    var headerSum: UInt16

    /// What the core needs of it. Built in `add`, not by `parse`: `parse` stores the layout as TCPFrameLayout.parse
    /// returned it, whole, and reading its fields back one by one right away (to build this) stalled on the
    /// just-written copy (store forwarding; ~3% of coalesce.64KB).
    var candidate: CoalescerCore.Candidate {
        CoalescerCore.Candidate(
            networkOffset: layout.networkOffset,
            transportOffset: layout.transportOffset,
            payloadOffset: layout.payloadOffset,
            payloadLength: layout.payloadLength,
            key: key,
            identification: identification,
            headerSum: headerSum
        )
    }

    enum Parsed {
        /// Not a TCP frame we can key (not IP, not TCP, malformed): passes through, touches no flow.
        case notTCP
        /// TCP, but never merged (flags, no payload, IP options, bad IPv4 header checksum): passes through and
        /// closes its flow.
        case notCandidate(CoalescerCore.FlowKey)
        /// A segment that may merge; its TCP checksum is not verified yet.
        case candidate(Segment)
    }

    /// TCP flags a candidate may carry besides ACK (PSH, ECE); anything else outside ACK disqualifies it.
    static let optionalFlags = TCPFlags.psh.rawValue | TCPFlags.ece.rawValue

    static func parse(_ frame: RawSpan) -> Parsed {
        guard case .success(let layout) = TCPFrameLayout.parse(frame, allowIPOptions: true) else { return .notTCP }
        let n = layout.networkOffset
        let t = layout.transportOffset
        var key = CoalescerCore.FlowKey(addressesOf: frame, networkOffset: n, isIPv6: layout.isIPv6)
        key.ports = frame.vxBE32(t)

        let flags = frame.vxBE16(t + 12) & 0x01FF
        guard layout.networkHeaderLength == (layout.isIPv6 ? IPv6Header.size : IPv4Header.minimumSize),
            layout.payloadLength > 0,
            flags & TCPFlags.ack.rawValue != 0,
            flags & ~(TCPFlags.ack.rawValue | optionalFlags) == 0
        else { return .notCandidate(key) }

        if !layout.isIPv6 {
            guard InternetChecksum.sum(frame.extracting(n..<(n + IPv4Header.minimumSize))) == 0xFFFF else {
                return .notCandidate(key)
            }
        }
        let tcpLength = layout.packetEnd - t
        let pseudo = InternetChecksum.combine(layout.pseudoHeaderBase(frame), UInt16(truncatingIfNeeded: tcpLength))
        let headerSum = InternetChecksum.combine(
            pseudo,
            InternetChecksum.sum(frame.extracting(t..<layout.payloadOffset))
        )

        return .candidate(
            Segment(
                layout: layout,
                key: key,
                sequence: frame.vxBE32(t + 4),
                identification: layout.isIPv6 ? 0 : frame.vxBE16(n + 4),
                hasPSH: flags & TCPFlags.psh.rawValue != 0,
                headerSum: headerSum
            )
        )
    }
}
