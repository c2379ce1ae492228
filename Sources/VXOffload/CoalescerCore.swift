// The bookkeeping TCPCoalescer and UDPCoalescer share: runs of frames, items, open flows with their header
// templates, and the copy that builds a merged frame and verifies every member's transport checksum on the way.
//
// Flow: a coalescer parses a frame (protocol-specific), then calls `takeFrame()`; a frame that may merge has its
// payload recorded (`record(_:at:)`) and is offered to its flow's open item (`findFlow`, the coalescer's own rules,
// `canAppend`, `append`), or starts an item (`startItem`) and opens its flow (`openFlow`). `item(_:)` turns an item
// into what the dataplane sends, and `writeMembers` writes a coalesced one: virtio header, the first member's
// headers, every member's payload; the coalescer then fixes up the headers (lengths, IP checksum, the transport
// checksum field, TCP's PSH). What is the same for both protocols lives here once: the per-frame slot table, the
// item table, the open-flow table with least-recently-used eviction and header templates, the size caps, the IPv4
// identification rule, the "a short member ends the item" rule and the copy-and-verify loop. What differs stays in
// each coalescer: parsing, which header bytes must match, TCP's sequence and PSH rules, UDP's segment limit and
// fragment handling, and the header fix-ups.
//
// Copy, not iovec, and the copy verifies: a coalesced item is built by copying each member's payload into the
// caller's scratch buffer (64 KiB) with `InternetChecksum.copyAndSum`, which sums what it copies. The coalescer
// stores per frame the sum of its pseudo-header and transport header (TCP ≤ 60 bytes, UDP 8); `writeMembers` adds
// the payload's sum and the member is valid when the total is 0xFFFF. Each payload byte is read once: verifying in
// `add` and copying later, as TCPCoalescer did before, read it twice (a checksum pass and a memmove, ~3% and ~2% of
// the daemon's samples under offloaded TCP). The price: `add` cannot tell a bad member, so one joins its run and
// costs the whole item its merge (rare: link-layer checks on the underlay catch wire errors first), and a lone
// frame's checksum is left to the kernel (tun ignores DATA_VALID on writes anyway, docs/offload.md). The copy buys
// one TAP write and one trip through the kernel stack instead of ~40 per 64 KiB. The alternative, one writev with
// the merged headers plus an iovec per member payload, would save the copy but needs a transmit path with up to ~45
// iovecs per frame and a checksum pass of its own; `nextMember(after:)` and `payloadRange(ofFrame:)` expose what it
// would need.
//
// Memory: everything is allocated in `init` (per-frame and per-item tables sized to `capacity`, `openFlowLimit`
// header templates). Every other method only indexes those arrays in place (the struct is ~Copyable and held inline
// by its coalescer, itself ~Copyable, so they are never shared and never copied on write): no allocation per frame
// or per batch. Concrete, not generic: a coalescer's protocol-specific rules are its own code around these calls.
// The per-frame steps are `@inline(__always)`: left out of line, as the optimizer chose, the calls and the copies of
// `Candidate` they pass made coalesce.64KB ~12% slower than when each coalescer had them inline (perf: the cost
// was spread over `add`, the parser and `canAppend`).
//
// Thread-safety: none; it belongs to one coalescer, which belongs to one worker thread.

import VXPacket

/// Runs, items and open flows of a coalescer (see file header). The coalescer validates what it passes in.
struct CoalescerCore: ~Copyable {
    /// Per frame, in `add` order.
    struct FrameSlot {
        var next: Int32 = -1  // next frame of the same item, -1 at the end
        var payloadOffset: Int32 = 0  // transport payload offset in the frame (candidates only)
        var payloadLength: Int32 = 0  // transport payload bytes (candidates only)
        var headerSum: UInt16 = 0  // pseudo-header + transport header sum (candidates); plus payload's 0xFFFF if valid
    }

    /// Per item, in order of first frame.
    struct ItemState {
        var firstFrame: Int32 = 0  // first member
        var lastFrame: Int32 = 0  // last member (where the next one links in)
        var frameCount: Int32 = 0  // members
        var frameLength: Int32 = 0  // length of the first frame as given (pass-through length)
        var payloadTotal: Int32 = 0  // transport payload bytes of all members
        var segmentSize: Int32 = 0  // payload of the first member: gso_size when coalesced
        var networkOffset: UInt8 = 0  // IP header offset (14 or 18)
        var transportOffset: UInt8 = 0  // TCP or UDP header offset
        var headerLength: UInt8 = 0  // all headers: the payload offset
        var isIPv6 = false  // IP version of a candidate
        var lastHasPSH = false  // TCP: the last member carries PSH (set by TCPCoalescer; UDP leaves it false)
    }

    /// The addresses and ports of a flow; IPv4 addresses sit in the low 32 bits of `sourceLow`/`destinationLow`.
    struct FlowKey: Equatable {
        var sourceHigh: UInt64 = 0
        var sourceLow: UInt64 = 0
        var destinationHigh: UInt64 = 0
        var destinationLow: UInt64 = 0
        var ports: UInt32 = 0  // source port << 16 | destination port
        var isIPv6 = false

        /// The key of an IP packet at `networkOffset` in `frame`, ports still 0.
        @inline(__always)
        init(addressesOf frame: RawSpan, networkOffset n: Int, isIPv6: Bool) {
            self.isIPv6 = isIPv6
            if isIPv6 {
                sourceHigh = frame.vxBE64(n + 8)
                sourceLow = frame.vxBE64(n + 16)
                destinationHigh = frame.vxBE64(n + 24)
                destinationLow = frame.vxBE64(n + 32)
            } else {
                sourceLow = UInt64(frame.vxBE32(n + 12))
                destinationLow = UInt64(frame.vxBE32(n + 16))
            }
        }

        init() {}

        /// Same addresses and IP version, whatever the ports.
        func sameAddresses(_ other: FlowKey) -> Bool {
            sourceHigh == other.sourceHigh && sourceLow == other.sourceLow && destinationHigh == other.destinationHigh
                && destinationLow == other.destinationLow && isIPv6 == other.isIPv6
        }
    }

    /// A flow whose latest item may still grow.
    struct OpenFlow {
        var item: Int32 = -1  // the item that can grow, -1 when the slot is free
        var key = FlowKey()  // the flow
        var firstIdentification: UInt16 = 0  // IPv4 identification of the item's first frame
        var identificationMode: UInt8 = 0  // 0 undecided (one member), 1 incrementing, 2 fixed (DF)
        var lastUse: UInt32 = 0  // `clock` at the last add: the least recently used slot is evicted
        var nextSequence: UInt32 = 0  // TCP: sequence number the next segment must start at (UDP leaves it 0)
    }

    /// What the core needs to know about a frame that may merge; the coalescer's parser fills it in.
    struct Candidate {
        var networkOffset: Int  // IP header offset: 14, or 18 with a tag
        var transportOffset: Int  // TCP or UDP header offset
        var payloadOffset: Int  // all headers: where the payload starts
        var payloadLength: Int  // transport payload bytes
        var key: FlowKey  // the flow; `key.isIPv6` is the IP version
        var identification: UInt16  // IPv4 identification; 0 for IPv6
        var headerSum: UInt16  // pseudo-header plus transport header sum (checksum field included)
    }

    /// Most frames per batch (`takeFrame` calls between `reset`s).
    let capacity: Int
    /// The scratch buffer `writeMembers` writes into: virtio header plus merged frame never exceed it.
    let scratchCapacity: Int
    /// Flows that can be merging at once.
    let openFlowLimit: Int
    /// Bytes reserved per open flow for its first frame's headers.
    let templateStride: Int
    /// The coalescer's name, for trap messages.
    let name: StaticString
    /// `gso_type` of a coalesced item over IPv4 and over IPv6.
    let gsoTypes: (ipv4: VirtioNetHeader.GSOType, ipv6: VirtioNetHeader.GSOType)
    /// Offset of the transport checksum field from the transport header (`csum_offset`).
    let checksumOffset: UInt16

    private(set) var frames: [FrameSlot]
    /// Written by the coalescer only in the protocol's own fields (`lastHasPSH`, `nextSequence`): keeping them here
    /// rather than in arrays of the coalescer's own saves a table (and its uniqueness check) per frame.
    var items: [ItemState]
    var open: [OpenFlow]
    /// `openFlowLimit × templateStride` bytes: slot i's first-frame headers at `i × templateStride`.
    private var templates: [UInt8]
    private(set) var frameCount = 0
    private(set) var itemCount = 0
    private var clock: UInt32 = 0

    /// Allocates every table once.
    /// - Parameters:
    ///   - name: the coalescer's type name, for trap messages.
    ///   - capacity: most frames per batch.
    ///   - scratchCapacity: size of the buffer given to `writeMembers`; merged frames are capped to fit.
    ///   - openFlowLimit: flows that can be merging at once.
    ///   - templateStride: bytes of headers kept per open flow (the longest headers a candidate may have).
    ///   - gsoTypes: `gso_type` of a coalesced item, by IP version.
    ///   - checksumOffset: `csum_offset` of a coalesced item.
    init(
        name: StaticString,
        capacity: Int,
        scratchCapacity: Int,
        openFlowLimit: Int,
        templateStride: Int,
        gsoTypes: (ipv4: VirtioNetHeader.GSOType, ipv6: VirtioNetHeader.GSOType),
        checksumOffset: UInt16
    ) {
        precondition(capacity > 0 && capacity <= Int(Int32.max), "\(name): capacity must be positive")
        precondition(scratchCapacity >= VirtioNetHeader.size + 128, "\(name): scratch buffer too small")
        precondition(openFlowLimit > 0, "\(name): openFlowLimit must be positive")
        self.name = name
        self.capacity = capacity
        self.scratchCapacity = scratchCapacity
        self.openFlowLimit = openFlowLimit
        self.templateStride = templateStride
        self.gsoTypes = gsoTypes
        self.checksumOffset = checksumOffset
        frames = Array(repeating: FrameSlot(), count: capacity)
        items = Array(repeating: ItemState(), count: capacity)
        open = Array(repeating: OpenFlow(), count: openFlowLimit)
        templates = Array(repeating: 0, count: openFlowLimit * templateStride)
    }

    /// Forgets the batch, keeping every table.
    mutating func reset() {
        frameCount = 0
        itemCount = 0
        for i in 0..<openFlowLimit { open[i].item = -1 }
    }

    /// Takes the next frame of the batch (a fresh slot) and advances the clock.
    /// - Returns: the frame's index, the number of frames taken before it.
    @inline(__always)
    mutating func takeFrame() -> Int {
        precondition(frameCount < capacity, "\(name): more frames than capacity")
        let index = frameCount
        frameCount += 1
        clock &+= 1
        frames[index] = FrameSlot()
        return index
    }

    /// Records where frame `index`'s payload lies and its header sum, for `writeMembers`.
    @inline(__always)
    mutating func record(_ candidate: Candidate, at index: Int) {
        frames[index].payloadOffset = Int32(truncatingIfNeeded: candidate.payloadOffset)
        frames[index].payloadLength = Int32(truncatingIfNeeded: candidate.payloadLength)
        frames[index].headerSum = candidate.headerSum
    }

    /// Starts an item with frame `index`: a candidate's (that may grow), or a pass-through one (`candidate` nil).
    /// - Returns: the item's index.
    @inline(__always)
    @discardableResult
    mutating func startItem(frame index: Int, length: Int, candidate: Candidate?) -> Int {
        let item = itemCount
        itemCount += 1
        var state = ItemState()
        state.firstFrame = Int32(truncatingIfNeeded: index)
        state.lastFrame = state.firstFrame
        state.frameCount = 1
        state.frameLength = Int32(truncatingIfNeeded: length)
        if let candidate {
            state.payloadTotal = Int32(truncatingIfNeeded: candidate.payloadLength)
            state.segmentSize = state.payloadTotal
            state.networkOffset = UInt8(truncatingIfNeeded: candidate.networkOffset)
            state.transportOffset = UInt8(truncatingIfNeeded: candidate.transportOffset)
            state.headerLength = UInt8(truncatingIfNeeded: candidate.payloadOffset)
            state.isIPv6 = candidate.key.isIPv6
        }
        items[item] = state
        return item
    }

    /// Opens `candidate`'s flow on `item`, in a free slot or the least recently used one, and keeps the first
    /// frame's headers as the template the next members are compared with.
    /// - Returns: the slot.
    @discardableResult
    mutating func openFlow(item: Int, candidate: Candidate, frame: RawSpan) -> Int {
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
            key: candidate.key,
            firstIdentification: candidate.identification,
            identificationMode: 0,
            lastUse: clock
        )
        let base = slot * templateStride
        var span = templates.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        bytes.vxCopy(from: frame, at: 0, count: candidate.payloadOffset, to: base)
        return slot
    }

    /// The open slot of `key`'s flow, if any.
    @inline(__always)
    func findFlow(_ key: FlowKey) -> Int? {
        for i in 0..<openFlowLimit where open[i].item >= 0 && open[i].key == key {
            return i
        }
        return nil
    }

    /// Ends the open item in `slot`: nothing more joins it.
    @inline(__always)
    mutating func close(slot: Int) {
        open[slot].item = -1
    }

    /// Closes the open item of `key`'s flow, or, when `portsKnown` is false, of every flow between its two addresses.
    mutating func closeFlows(_ key: FlowKey, portsKnown: Bool = true) {
        for i in 0..<openFlowLimit where open[i].item >= 0 {
            if portsKnown ? open[i].key == key : open[i].key.sameAddresses(key) { open[i].item = -1 }
        }
    }

    /// The item open in `slot`.
    @inline(__always)
    func openItem(_ slot: Int) -> ItemState {
        items[Int(open[slot].item)]
    }

    /// Whether `candidate` may join the open item in `slot` by the rules both protocols share: the same header
    /// offsets, a payload no larger than the item's segment size, a merged IP packet within 65,535 bytes and a
    /// merged frame within the scratch buffer, every header byte the protocol cares about equal to the template
    /// (`headersMatch`), and the IPv4 identification first + i or, with DF set, all equal (as the kernel accepts).
    /// - Parameters:
    ///   - candidate: the frame's parsed fields, from the same flow as the slot's.
    ///   - frame: the frame.
    ///   - slot: an open slot.
    ///   - headersMatch: compares the frame's headers with the template (the first member's, `payloadOffset` long).
    @inline(__always)
    func canAppend(
        _ candidate: Candidate,
        _ frame: RawSpan,
        to slot: Int,
        headersMatch: (_ frame: RawSpan, _ template: RawSpan) -> Bool
    ) -> Bool {
        let flow = open[slot]
        let state = items[Int(flow.item)]
        guard candidate.networkOffset == Int(state.networkOffset),
            candidate.transportOffset == Int(state.transportOffset),
            candidate.payloadOffset == Int(state.headerLength),
            candidate.payloadLength <= Int(state.segmentSize)
        else { return false }

        let total = candidate.payloadOffset + Int(state.payloadTotal) + candidate.payloadLength
        let ipLength = total - candidate.networkOffset - (candidate.key.isIPv6 ? IPv6Header.size : 0)
        guard ipLength <= 0xFFFF, VirtioNetHeader.size + total <= scratchCapacity else { return false }

        // Safe: `Span<UInt8>.bytes` is `@unsafe` for element types with padding or invalid bit patterns; UInt8
        // has neither, so its raw view reads exactly the bytes stored.
        let template = unsafe templates.span.bytes.extracting(
            (slot * templateStride)..<(slot * templateStride + candidate.payloadOffset)
        )
        guard headersMatch(frame, template) else { return false }

        if !candidate.key.isIPv6 {
            let expected: UInt16
            switch flow.identificationMode {
            case 1: expected = flow.firstIdentification &+ UInt16(truncatingIfNeeded: state.frameCount)
            case 2: expected = flow.firstIdentification
            default:
                let dontFragment = frame.vxU8(candidate.networkOffset + 6) & 0x40 != 0
                return candidate.identification == flow.firstIdentification &+ 1
                    || (dontFragment && candidate.identification == flow.firstIdentification)
            }
            guard candidate.identification == expected else { return false }
        }
        return true
    }

    /// Compares the Ethernet and IP header bytes that must not change within an item: all of Ethernet (and its
    /// tag), version, TOS/traffic class, flow label, the IPv4 flags but MF (reserved, DF; MF is clear in a
    /// candidate), TTL/hop limit and protocol/next header. Addresses are not compared: the flow key holds them.
    @inline(__always)
    static func headersMatch(_ frame: RawSpan, _ template: RawSpan, networkOffset n: Int, isIPv6: Bool) -> Bool {
        guard frame.vxEqual(0, template, 0, count: n) else { return false }
        if isIPv6 {
            // Version, traffic class, flow label; next header, hop limit.
            return frame.vxEqual(n, template, n, count: 4) && frame.vxEqual(n + 6, template, n + 6, count: 2)
        }
        // Version/IHL, TOS; flags; TTL, protocol.
        return frame.vxEqual(n, template, n, count: 2) && frame.vxU8(n + 6) & 0xE0 == template.vxU8(n + 6) & 0xE0
            && frame.vxEqual(n + 8, template, n + 8, count: 2)
    }

    /// Appends frame `index` to the open item in `slot` (after `canAppend`), settling the IPv4 identification mode
    /// on the second member. A member shorter than the segment size closes the slot: nothing may follow it.
    /// - Returns: the item.
    @inline(__always)
    @discardableResult
    mutating func append(frame index: Int, _ candidate: Candidate, to slot: Int) -> Int {
        let item = Int(open[slot].item)
        frames[Int(items[item].lastFrame)].next = Int32(truncatingIfNeeded: index)
        items[item].lastFrame = Int32(truncatingIfNeeded: index)
        items[item].frameCount += 1
        items[item].payloadTotal += Int32(truncatingIfNeeded: candidate.payloadLength)
        if !candidate.key.isIPv6 && open[slot].identificationMode == 0 {
            open[slot].identificationMode = candidate.identification == open[slot].firstIdentification ? 2 : 1
        }
        open[slot].lastUse = clock
        if candidate.payloadLength < Int(items[item].segmentSize) {
            open[slot].item = -1
        }
        return item
    }

    /// Item `index` (0 ..< `itemCount`): a pass-through item behind a plain header, or a coalesced one behind
    /// NEEDS_CSUM and this coalescer's GSO type, gso_size the first member's payload.
    func item(_ index: Int) -> TCPCoalescer.Item {
        precondition(index >= 0 && index < itemCount, "\(name): item index out of range")
        let state = items[index]
        guard state.frameCount > 1 else {
            return TCPCoalescer.Item(
                firstFrame: Int(state.firstFrame),
                frameCount: 1,
                header: .plain,
                length: Int(state.frameLength)
            )
        }
        let header = VirtioNetHeader(
            flags: .needsChecksum,
            gsoType: state.isIPv6 ? gsoTypes.ipv6 : gsoTypes.ipv4,
            headerLength: UInt16(state.headerLength),
            gsoSize: UInt16(truncatingIfNeeded: state.segmentSize),
            checksumStart: UInt16(state.transportOffset),
            checksumOffset: checksumOffset
        )
        return TCPCoalescer.Item(
            firstFrame: Int(state.firstFrame),
            frameCount: Int(state.frameCount),
            header: header,
            length: Int(state.headerLength) + Int(state.payloadTotal)
        )
    }

    /// The frame after `frameIndex` in its item, or nil for the item's last frame.
    func nextMember(after frameIndex: Int) -> Int? {
        precondition(frameIndex >= 0 && frameIndex < frameCount, "\(name): frame index out of range")
        let next = frames[frameIndex].next
        return next < 0 ? nil : Int(next)
    }

    /// Where the payload of a frame of a coalesced item lies within that frame.
    func payloadRange(ofFrame frameIndex: Int) -> Range<Int> {
        precondition(frameIndex >= 0 && frameIndex < frameCount, "\(name): frame index out of range")
        let slot = frames[frameIndex]
        return Int(slot.payloadOffset)..<Int(slot.payloadOffset + slot.payloadLength)
    }

    /// Writes the virtio-net header of coalesced item `index` at `offset`, then the first member's headers as they
    /// came, then every member's payload in order, verifying each member's checksum as it copies (see the file
    /// header) and stopping at the first that fails. The caller fixes up the headers.
    /// - Parameters: as the coalescers' `writeCoalesced`.
    /// - Returns: the item (`item(index)`), or nil when a member's checksum does not verify.
    func writeMembers(
        item index: Int,
        into destination: inout MutableRawSpan,
        at offset: Int,
        frames: (_ frameIndex: Int, _ body: (RawSpan) -> Void) -> Void
    ) -> TCPCoalescer.Item? {
        let output = self.item(index)
        precondition(output.isCoalesced, "\(name): item is not coalesced; send its frame as it is")
        let state = items[index]
        let headerLength = Int(state.headerLength)
        let start = offset + VirtioNetHeader.size
        precondition(destination.byteCount - start >= output.length, "\(name): destination too small")
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
                // The payload starts an even number of bytes into the transport header (TCP: a multiple of 4; UDP:
                // 8), so its sum lines up with the header's, and an odd last byte is the member's own last byte
                // (padded as the checksum pads it).
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
        precondition(delivered == output.frameCount, "\(name): frames(_:_:) did not deliver every member")
        return output
    }
}
