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
// Copy, not iovec, and the copy verifies: a coalesced item is built by copying each segment's payload into the
// caller's scratch buffer (64 KiB) with `InternetChecksum.copyAndSum`, which sums what it copies. `add` stores per
// frame the sum of its pseudo-header and TCP header (≤ 60 bytes); `writeCoalesced` adds the payload's sum and the
// segment is valid when the total is 0xFFFF. Each payload byte is read once: verifying in `add` and copying later,
// as this did before, read it twice (a checksum pass and a memmove, ~3% and ~2% of the daemon's samples under
// offloaded TCP). The price: `add` cannot tell a bad segment, so one joins its run and costs the whole item its
// merge (rare: link-layer checks on the underlay catch wire errors first), and a lone segment's checksum is left to
// the kernel (tun ignores DATA_VALID on writes anyway, docs/offload.md). The copy buys one TAP write and one trip
// through the kernel stack instead of ~40 per 64 KiB. The alternative, one writev with the merged headers plus an
// iovec per segment payload, would save the copy but needs a transmit path with up to ~45 iovecs per frame and a
// checksum pass of its own; `nextMember(after:)` and `payloadRange(ofFrame:)` expose what it would need.
//
// Memory: everything is allocated in `init` (per-frame and per-item tables sized to `capacity`, `openFlowLimit`
// header templates). `reset`, `add`, `item` and `writeCoalesced` only index those arrays in place (the struct is
// ~Copyable, so they are never shared and never copied on write): no allocation per frame or per batch.
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

    /// Per frame, in `add` order.
    struct FrameSlot {
        var next: Int32 = -1  // next frame of the same item, -1 at the end
        var payloadOffset: Int32 = 0  // TCP payload offset in the frame (candidates only)
        var payloadLength: Int32 = 0  // TCP payload bytes (candidates only)
        var headerSum: UInt16 = 0  // pseudo-header + TCP header sum (candidates); with the payload sum 0xFFFF if valid
    }

    /// Per item, in order of first frame.
    struct ItemState {
        var firstFrame: Int32 = 0  // first member
        var lastFrame: Int32 = 0  // last member (where the next one links in)
        var frameCount: Int32 = 0  // members
        var frameLength: Int32 = 0  // length of the first frame as given (pass-through length)
        var payloadTotal: Int32 = 0  // TCP payload bytes of all members
        var segmentSize: Int32 = 0  // payload of the first member: gso_size when coalesced
        var networkOffset: UInt8 = 0  // IP header offset (14 or 18)
        var transportOffset: UInt8 = 0  // TCP header offset
        var headerLength: UInt8 = 0  // all headers: the payload offset
        var isIPv6 = false  // IP version of a candidate
        var lastHasPSH = false  // the last member carries PSH
    }

    /// The addresses and ports of a TCP flow; IPv4 addresses sit in the low 32 bits of `sourceLow`/`destinationLow`.
    struct FlowKey: Equatable {
        var sourceHigh: UInt64 = 0
        var sourceLow: UInt64 = 0
        var destinationHigh: UInt64 = 0
        var destinationLow: UInt64 = 0
        var ports: UInt32 = 0  // source port << 16 | destination port
        var isIPv6 = false
    }

    /// A flow whose latest item may still grow.
    struct OpenFlow {
        var item: Int32 = -1  // the item that can grow, -1 when the slot is free
        var key = FlowKey()  // the flow
        var nextSequence: UInt32 = 0  // sequence number the next segment must start at
        var firstIdentification: UInt16 = 0  // IPv4 identification of the item's first frame
        var identificationMode: UInt8 = 0  // 0 undecided (one member), 1 incrementing, 2 fixed (DF)
        var lastUse: UInt32 = 0  // `clock` at the last add: the least recently used slot is evicted
    }

    /// Most frames per batch (`add` calls between `reset`s).
    public let capacity: Int
    /// The scratch buffer `writeCoalesced` writes into: virtio header plus merged frame never exceed it.
    public let scratchCapacity: Int
    /// Flows that can be merging at once.
    public let openFlowLimit: Int

    private var frames: [FrameSlot]
    private var items: [ItemState]
    private var open: [OpenFlow]
    /// `openFlowLimit × templateStride` bytes: slot i's first-frame headers at `i × templateStride`.
    private var templates: [UInt8]
    private var frameCount = 0
    private var storedItemCount = 0
    private var clock: UInt32 = 0

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
        precondition(capacity > 0 && capacity <= Int(Int32.max), "TCPCoalescer: capacity must be positive")
        precondition(scratchCapacity >= VirtioNetHeader.size + 128, "TCPCoalescer: scratch buffer too small")
        precondition(openFlowLimit > 0, "TCPCoalescer: openFlowLimit must be positive")
        self.capacity = capacity
        self.scratchCapacity = scratchCapacity
        self.openFlowLimit = openFlowLimit
        frames = Array(repeating: FrameSlot(), count: capacity)
        items = Array(repeating: ItemState(), count: capacity)
        open = Array(repeating: OpenFlow(), count: openFlowLimit)
        templates = Array(repeating: 0, count: openFlowLimit * TCPCoalescer.templateStride)
    }

    /// Frames added since the last `reset`.
    public var count: Int { frameCount }

    /// Items so far; complete once the batch's last frame was added.
    public var itemCount: Int { storedItemCount }

    /// Forgets the batch, keeping every table.
    public mutating func reset() {
        frameCount = 0
        storedItemCount = 0
        for i in 0..<openFlowLimit { open[i].item = -1 }
    }

    /// Adds the next frame of the batch; its index is the number of frames added before it.
    ///
    /// Only reads `frame`; `writeCoalesced` reads it again later, so it must stay unchanged until then.
    /// - Parameter frame: an inner Ethernet frame, from the destination MAC on.
    public mutating func add(_ frame: RawSpan) {
        precondition(frameCount < capacity, "TCPCoalescer: more frames than capacity")
        let index = frameCount
        frameCount += 1
        clock &+= 1
        frames[index] = FrameSlot()

        let segment: Segment
        switch Segment.parse(frame) {
        case .notTCP:
            startItem(frame: index, length: frame.byteCount, segment: nil)
            return
        case .notCandidate(let key):
            closeFlow(key)
            startItem(frame: index, length: frame.byteCount, segment: nil)
            return
        case .candidate(let parsed):
            segment = parsed
        }
        frames[index].payloadOffset = Int32(truncatingIfNeeded: segment.layout.payloadOffset)
        frames[index].payloadLength = Int32(truncatingIfNeeded: segment.layout.payloadLength)
        frames[index].headerSum = segment.headerSum

        if let slot = findFlow(segment.key) {
            if canAppend(segment, frame, to: slot) {
                append(frame: index, segment: segment, to: slot)
                return
            }
            open[slot].item = -1
        }
        let item = startItem(frame: index, length: frame.byteCount, segment: segment)
        if !segment.hasPSH {
            openFlow(item: item, segment: segment, frame: frame)
        }
    }

    /// Item `index` (0 ..< `itemCount`).
    public func item(_ index: Int) -> Item {
        precondition(index >= 0 && index < storedItemCount, "TCPCoalescer: item index out of range")
        let state = items[index]
        guard state.frameCount > 1 else {
            return Item(
                firstFrame: Int(state.firstFrame),
                frameCount: 1,
                header: .plain,
                length: Int(state.frameLength)
            )
        }
        let length = Int(state.headerLength) + Int(state.payloadTotal)
        let header = VirtioNetHeader(
            flags: .needsChecksum,
            gsoType: state.isIPv6 ? .tcpv6 : .tcpv4,
            headerLength: UInt16(state.headerLength),
            gsoSize: UInt16(truncatingIfNeeded: state.segmentSize),
            checksumStart: UInt16(state.transportOffset),
            checksumOffset: 16
        )
        return Item(
            firstFrame: Int(state.firstFrame),
            frameCount: Int(state.frameCount),
            header: header,
            length: length
        )
    }

    /// The frame after `frameIndex` in its item, or nil for the item's last frame.
    public func nextMember(after frameIndex: Int) -> Int? {
        precondition(frameIndex >= 0 && frameIndex < frameCount, "TCPCoalescer: frame index out of range")
        let next = frames[frameIndex].next
        return next < 0 ? nil : Int(next)
    }

    /// Where the TCP payload of a frame of a coalesced item lies within that frame.
    public func payloadRange(ofFrame frameIndex: Int) -> Range<Int> {
        precondition(frameIndex >= 0 && frameIndex < frameCount, "TCPCoalescer: frame index out of range")
        let slot = frames[frameIndex]
        return Int(slot.payloadOffset)..<Int(slot.payloadOffset + slot.payloadLength)
    }

    /// Writes a coalesced item as the kernel expects it on a TAP write: the 12-byte virtio-net header, then the
    /// first frame's headers with lengths, IPv4 checksum and PSH fixed and the TCP checksum field holding the
    /// pseudo-header sum (NEEDS_CSUM), then every member's payload in order. Verifies each member's TCP checksum
    /// as it copies the payload (see the file header) and stops at the first that fails.
    /// - Parameters:
    ///   - index: an item with `isCoalesced`.
    ///   - destination: the scratch buffer; must hold `VirtioNetHeader.size + item(index).length` bytes from
    ///     `offset`, which `scratchCapacity` guarantees when `destination` is that big (traps otherwise).
    ///   - offset: where the virtio-net header goes.
    ///   - frames: calls its second argument with the bytes of the frame numbered by its first (the same bytes
    ///     given to `add`); called once per member, in order, up to and including a member whose checksum fails.
    /// - Returns: bytes written (`VirtioNetHeader.size + item(index).length`), or nil when a member's TCP checksum
    ///   does not verify. Then nothing usable was written (the bytes from `offset` are unspecified): send the
    ///   item's members one by one, from `item(index).firstFrame` through `nextMember(after:)`, behind plain
    ///   headers without DATA_VALID, so the receiver verifies each and drops the bad one.
    public func writeCoalesced(
        item index: Int,
        into destination: inout MutableRawSpan,
        at offset: Int = 0,
        frames: (_ frameIndex: Int, _ body: (RawSpan) -> Void) -> Void
    ) -> Int? {
        let output = self.item(index)
        precondition(output.isCoalesced, "TCPCoalescer: item is not coalesced; send its frame as it is")
        let state = items[index]
        let headerLength = Int(state.headerLength)
        let start = offset + VirtioNetHeader.size
        precondition(destination.byteCount - start >= output.length, "TCPCoalescer: destination too small")
        output.header.write(into: &destination, at: offset)

        var member = Int(state.firstFrame)
        var position = start + headerLength
        var delivered = 0
        var failed = false
        while true {
            let slot = self.frames[member]
            frames(member) { frame in
                if member == Int(state.firstFrame) {
                    destination.vxCopy(from: frame, at: 0, count: headerLength, to: start)
                }
                // The payload starts a multiple of 4 bytes into the TCP segment, so its sum lines up with the
                // header's, and an odd last byte is the segment's own last byte (padded as the checksum pads it).
                let payloadStart = Int(slot.payloadOffset)
                let payload = frame.extracting(payloadStart..<(payloadStart + Int(slot.payloadLength)))
                let payloadSum = InternetChecksum.copyAndSum(payload, into: &destination, at: position)
                failed = InternetChecksum.combine(slot.headerSum, payloadSum) != 0xFFFF
                delivered += 1
            }
            guard !failed else { return nil }
            position += Int(slot.payloadLength)
            guard slot.next >= 0 else { break }
            member = Int(slot.next)
        }
        precondition(delivered == output.frameCount, "TCPCoalescer: frames(_:_:) did not deliver every member")

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
            tcpHeaderLength: headerLength - Int(state.transportOffset),
            packetEnd: output.length,
            isIPv6: state.isIPv6
        )
        let base = layout.pseudoHeaderBase(destination.bytes.extracting(start..<end))
        // The pseudo-header sum itself, not complemented: the kernel adds the segment to it and complements
        // (CHECKSUM_PARTIAL), exactly as for a frame its own TCP stack built (__tcp_v4_send_check).
        destination.vxStoreBE16(InternetChecksum.combine(base, UInt16(truncatingIfNeeded: end - tcp)), at: tcp + 16)
        return VirtioNetHeader.size + output.length
    }

    // MARK: - Building items

    @discardableResult
    private mutating func startItem(frame index: Int, length: Int, segment: Segment?) -> Int {
        let item = storedItemCount
        storedItemCount += 1
        var state = ItemState()
        state.firstFrame = Int32(truncatingIfNeeded: index)
        state.lastFrame = state.firstFrame
        state.frameCount = 1
        state.frameLength = Int32(truncatingIfNeeded: length)
        if let segment {
            let layout = segment.layout
            state.payloadTotal = Int32(truncatingIfNeeded: layout.payloadLength)
            state.segmentSize = state.payloadTotal
            state.networkOffset = UInt8(truncatingIfNeeded: layout.networkOffset)
            state.transportOffset = UInt8(truncatingIfNeeded: layout.transportOffset)
            state.headerLength = UInt8(truncatingIfNeeded: layout.payloadOffset)
            state.isIPv6 = layout.isIPv6
            state.lastHasPSH = segment.hasPSH
        }
        items[item] = state
        return item
    }

    private mutating func openFlow(item: Int, segment: Segment, frame: RawSpan) {
        var slot = 0
        for i in 0..<openFlowLimit {
            if open[i].item < 0 {
                slot = i
                break
            }
            if clock &- open[i].lastUse > clock &- open[slot].lastUse {
                // Age as a wrapping distance back from now: the larger, the older.
                slot = i
            }
        }
        open[slot] = OpenFlow(
            item: Int32(truncatingIfNeeded: item),
            key: segment.key,
            nextSequence: segment.sequence &+ UInt32(truncatingIfNeeded: segment.layout.payloadLength),
            firstIdentification: segment.identification,
            identificationMode: 0,
            lastUse: clock
        )
        let headerLength = segment.layout.payloadOffset
        let base = slot * TCPCoalescer.templateStride
        var span = templates.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        bytes.vxCopy(from: frame, at: 0, count: headerLength, to: base)
    }

    private func findFlow(_ key: FlowKey) -> Int? {
        for i in 0..<openFlowLimit where open[i].item >= 0 && open[i].key == key {
            return i
        }
        return nil
    }

    private mutating func closeFlow(_ key: FlowKey) {
        if let slot = findFlow(key) { open[slot].item = -1 }
    }

    private func canAppend(_ segment: Segment, _ frame: RawSpan, to slot: Int) -> Bool {
        let flow = open[slot]
        let state = items[Int(flow.item)]
        let layout = segment.layout
        guard layout.networkOffset == Int(state.networkOffset), layout.transportOffset == Int(state.transportOffset),
            layout.payloadOffset == Int(state.headerLength), segment.sequence == flow.nextSequence,
            layout.payloadLength <= Int(state.segmentSize),
            state.payloadTotal % state.segmentSize == 0
        else { return false }

        let total = Int(state.headerLength) + Int(state.payloadTotal) + layout.payloadLength
        let ipLength = total - layout.networkOffset - (layout.isIPv6 ? IPv6Header.size : 0)
        guard ipLength <= 0xFFFF, VirtioNetHeader.size + total <= scratchCapacity else { return false }

        // Safe: `Span<UInt8>.bytes` is `@unsafe` for element types with padding or invalid bit patterns; UInt8
        // has neither, so its raw view reads exactly the bytes stored.
        let template = unsafe templates.span.bytes.extracting(
            (slot * TCPCoalescer.templateStride)..<(slot * TCPCoalescer.templateStride + layout.payloadOffset)
        )
        guard headersMatch(frame, template, layout) else { return false }

        if !layout.isIPv6 {
            let expected: UInt16
            switch flow.identificationMode {
            case 1: expected = flow.firstIdentification &+ UInt16(truncatingIfNeeded: state.frameCount)
            case 2: expected = flow.firstIdentification
            default:
                let dontFragment = frame.vxU8(layout.networkOffset + 6) & 0x40 != 0
                guard
                    segment.identification == flow.firstIdentification &+ 1
                        || (dontFragment && segment.identification == flow.firstIdentification)
                else { return false }
                return true
            }
            guard segment.identification == expected else { return false }
        }
        return true
    }

    private mutating func append(frame index: Int, segment: Segment, to slot: Int) {
        let item = Int(open[slot].item)
        frames[Int(items[item].lastFrame)].next = Int32(truncatingIfNeeded: index)
        items[item].lastFrame = Int32(truncatingIfNeeded: index)
        items[item].frameCount += 1
        items[item].payloadTotal += Int32(truncatingIfNeeded: segment.layout.payloadLength)
        items[item].lastHasPSH = segment.hasPSH
        if !segment.layout.isIPv6 && open[slot].identificationMode == 0 {
            open[slot].identificationMode = segment.identification == open[slot].firstIdentification ? 2 : 1
        }
        open[slot].nextSequence &+= UInt32(truncatingIfNeeded: segment.layout.payloadLength)
        open[slot].lastUse = clock
        if segment.hasPSH || segment.layout.payloadLength < Int(items[item].segmentSize) {
            // PSH must stay on the last segment, and nothing may follow a short one.
            open[slot].item = -1
        }
    }

    /// Compares every header byte that must not change within an item (see the file header).
    private func headersMatch(_ frame: RawSpan, _ template: RawSpan, _ layout: TCPFrameLayout) -> Bool {
        let n = layout.networkOffset
        let t = layout.transportOffset
        guard frame.vxEqual(0, template, 0, count: n) else { return false }
        if layout.isIPv6 {
            // Version, traffic class, flow label; next header, hop limit; addresses.
            guard frame.vxEqual(n, template, n, count: 4), frame.vxEqual(n + 6, template, n + 6, count: 34) else {
                return false
            }
        } else {
            // Version/IHL, TOS; flags (DF); TTL, protocol; addresses.
            guard frame.vxEqual(n, template, n, count: 2),
                frame.vxU8(n + 6) & 0xE0 == template.vxU8(n + 6) & 0xE0,
                frame.vxEqual(n + 8, template, n + 8, count: 2),
                frame.vxEqual(n + 12, template, n + 12, count: 8)
            else { return false }
        }
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
    var key: TCPCoalescer.FlowKey
    var sequence: UInt32
    var identification: UInt16
    var hasPSH: Bool

    /// Pseudo-header plus TCP header sum (the TCP checksum field included); `writeCoalesced` adds the payload's.
    var headerSum: UInt16

    enum Parsed {
        /// Not a TCP frame we can key (not IP, not TCP, malformed): passes through, touches no flow.
        case notTCP
        /// TCP, but never merged (flags, no payload, IP options, bad IPv4 header checksum): passes through and
        /// closes its flow.
        case notCandidate(TCPCoalescer.FlowKey)
        /// A segment that may merge; its TCP checksum is not verified yet.
        case candidate(Segment)
    }

    /// TCP flags a candidate may carry besides ACK (PSH, ECE); anything else outside ACK disqualifies it.
    static let optionalFlags = TCPFlags.psh.rawValue | TCPFlags.ece.rawValue

    static func parse(_ frame: RawSpan) -> Parsed {
        guard case .success(let layout) = TCPFrameLayout.parse(frame, allowIPOptions: true) else { return .notTCP }
        let n = layout.networkOffset
        let t = layout.transportOffset
        var key = TCPCoalescer.FlowKey()
        key.isIPv6 = layout.isIPv6
        if layout.isIPv6 {
            key.sourceHigh = frame.vxBE64(n + 8)
            key.sourceLow = frame.vxBE64(n + 16)
            key.destinationHigh = frame.vxBE64(n + 24)
            key.destinationLow = frame.vxBE64(n + 32)
        } else {
            key.sourceLow = UInt64(frame.vxBE32(n + 12))
            key.destinationLow = UInt64(frame.vxBE32(n + 16))
        }
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
