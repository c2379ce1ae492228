// UDP coalescing (UDP GRO in software) for frames going out of a TAP: USO writes.
//
// Flow: the same as TCPCoalescer's, next to it. After decapsulation the dataplane has a run of inner frames for one
// TAP with a virtio header. It offers each frame to `add(_:)` first; a frame that is not UDP is refused (`add`
// returns false, nothing recorded) and goes to the TCPCoalescer instead. The dataplane then sends both coalescers'
// items in order of their first frames:
//   - a pass-through item is its one frame, sent unchanged behind `item.header` (plain, no DATA_VALID): the kernel
//     verifies its checksum, if it has one;
//   - a coalesced item (2+ datagrams) is written by `writeCoalesced(item:into:frames:)` into the scratch buffer as
//     virtio header + one frame: the first datagram's headers with IP and UDP lengths covering all the payloads,
//     then the payloads back to back, behind gso_type UDP_L4 (5) with gso_size = the first datagram's payload. The
//     kernel cuts it back into datagrams (__udp_gso_segment) on its way to the receiving socket: one TAP write and
//     one trip through tun instead of one per datagram. USO need not be offered on the TAP (TUNSETOFFLOAD stays
//     CSUM|TSO4|TSO6, so reads never hand us USO frames): tun accepts UDP_L4 on writes regardless (docs/offload.md).
//     `writeCoalesced` verifies every member's UDP checksum while it copies and returns nil when one fails; the
//     caller then sends the members one by one (`nextMember(after:)`) behind plain headers, so the kernel verifies
//     each and drops the bad one.
//
// Merge rules, chosen so that the kernel's segmentation of the result gives back the original datagrams byte for
// byte (up to the IPv4 identification of DF datagrams, below), in the spirit of the kernel's udp_gro_receive and
// wireguard-go's udpGRO:
//   - candidates: Ethernet (one 802.1Q tag allowed) + IPv4 without options or IPv6 without extension headers + UDP;
//     not a fragment; UDP length equal to the IP payload length; payload > 0; the IPv4 header checksum verifies.
//   - no checksum, no merge: a datagram whose UDP checksum field is 0 (IPv4 "no checksum"; never valid over IPv6)
//     passes through. The merged frame goes up as CHECKSUM_PARTIAL, i.e. with a checksum the kernel computes over
//     our copy, so merging one would vouch for bytes nobody checksummed.
//   - every member's UDP checksum must verify: `writeCoalesced` checks it as it copies (as TCPCoalescer does, each
//     payload byte read once); a bad one costs its whole item the merge.
//   - same flow (addresses, ports), and every header byte equal to the run's first frame except lengths, checksums
//     and IPv4 identification: same Ethernet header and tag, TOS/traffic class, flow label, TTL/hop limit, DF and
//     the reserved flag. The kernel's segmentation copies the first frame's headers into every datagram, so any
//     other difference would be lost.
//   - IPv4 identification: first + i, which is what the segmentation writes back (inet_gso_segment: id++ per
//     segment; UDP has no FIXEDID). Or, with DF set, all equal, as TCPCoalescer and the kernel's own GRO
//     (inet_gro_flush's ip_fixedid) accept: an unconnected socket sends its DF datagrams with ID 0
//     (ip_select_ident_segs), and an atomic datagram's ID means nothing (RFC 6864 §4.1: receivers ignore it). Such
//     datagrams come out as first + i: the one byte-level difference merging makes, in a field nobody reads.
//   - sizes: all datagrams but the last carry the first one's payload size (gso_size); the last may be shorter and
//     ends the run; at most `segmentLimit` (128) datagrams: tun refuses a UDP_L4 write of more with EINVAL
//     (virtio_net_hdr_to_skb checks UDP_MAX_SEGMENTS; checked with tools/offload-kernel-check.py); the merged IP
//     packet fits 65,535 bytes and header + frame fit the scratch buffer.
// Any UDP frame of a flow that does not join the flow's open item (a different size, TTL, a zero checksum, IP
// options) closes that item, so no datagram ever overtakes an earlier one of its own flow. A UDP fragment carries
// no ports (or, the first, only some of the datagram): it closes every open item between its two addresses. Frames
// of different flows may leave in a different relative order (each item leaves at the position of its first frame);
// UDP promises no order across flows, and neither does the kernel's GRO.
//
// Memory: everything is allocated in `init` (per-frame and per-item tables sized to `capacity`, `openFlowLimit`
// header templates). `reset`, `add`, `item` and `writeCoalesced` only index those arrays in place (the struct is
// ~Copyable, so they are never shared and never copied on write): no allocation per frame or per batch.
//
// Thread-safety: none; one coalescer per worker thread, like its TxBatch.

import VXPacket

/// Merges consecutive UDP datagrams of the same flow in a batch into USO frames for a TAP (see file header).
public struct UDPCoalescer: ~Copyable {
    /// The output of `item(_:)`: the same shape as a TCP item.
    public typealias Item = TCPCoalescer.Item

    /// Default `openFlowLimit`, as TCPCoalescer's: eight linear-scanned slots; a flow past the limit only loses
    /// merging.
    public static let defaultOpenFlowLimit = TCPCoalescer.defaultOpenFlowLimit
    /// Default scratch buffer size: 64 KiB, the most a TAP write can usefully carry (IP lengths are 16 bits).
    public static let defaultScratchCapacity = TCPCoalescer.defaultScratchCapacity
    /// Most datagrams in one UDP_L4 write: the kernel's UDP_MAX_SEGMENTS, which tun enforces on writes (129 fails
    /// with EINVAL on Linux 6.18, tools/offload-kernel-check.py).
    public static let maximumSegments = 128
    /// Bytes reserved per open flow for its first frame's headers: Ethernet with tag (18) + IPv6 (40) + UDP (8) = 66,
    /// rounded up.
    static let templateStride = 80

    /// Per frame, in `add` order.
    struct FrameSlot {
        var next: Int32 = -1  // next frame of the same item, -1 at the end
        var payloadOffset: Int32 = 0  // UDP payload offset in the frame (candidates only)
        var payloadLength: Int32 = 0  // UDP payload bytes (candidates only)
        var headerSum: UInt16 = 0  // pseudo-header + UDP header sum (candidates); with the payload's 0xFFFF if valid
    }

    /// Per item, in order of first frame.
    struct ItemState {
        var firstFrame: Int32 = 0  // first member
        var lastFrame: Int32 = 0  // last member (where the next one links in)
        var frameCount: Int32 = 0  // members
        var frameLength: Int32 = 0  // length of the first frame as given (pass-through length)
        var payloadTotal: Int32 = 0  // UDP payload bytes of all members
        var segmentSize: Int32 = 0  // payload of the first member: gso_size when coalesced
        var networkOffset: UInt8 = 0  // IP header offset (14 or 18)
        var transportOffset: UInt8 = 0  // UDP header offset (networkOffset + 20 or 40)
        var isIPv6 = false  // IP version of a candidate
    }

    /// The addresses and ports of a UDP flow; IPv4 addresses sit in the low 32 bits of `sourceLow`/`destinationLow`.
    struct FlowKey: Equatable {
        var sourceHigh: UInt64 = 0
        var sourceLow: UInt64 = 0
        var destinationHigh: UInt64 = 0
        var destinationLow: UInt64 = 0
        var ports: UInt32 = 0  // source port << 16 | destination port
        var isIPv6 = false

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
    }

    /// Most frames per batch (`add` calls between `reset`s).
    public let capacity: Int
    /// The scratch buffer `writeCoalesced` writes into: virtio header plus merged frame never exceed it.
    public let scratchCapacity: Int
    /// Flows that can be merging at once.
    public let openFlowLimit: Int
    /// Most datagrams in one coalesced item.
    public let segmentLimit: Int

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
    ///   - segmentLimit: most datagrams per coalesced item, 2 ... `maximumSegments`.
    public init(
        capacity: Int,
        scratchCapacity: Int = UDPCoalescer.defaultScratchCapacity,
        openFlowLimit: Int = UDPCoalescer.defaultOpenFlowLimit,
        segmentLimit: Int = UDPCoalescer.maximumSegments
    ) {
        precondition(capacity > 0 && capacity <= Int(Int32.max), "UDPCoalescer: capacity must be positive")
        precondition(scratchCapacity >= VirtioNetHeader.size + 128, "UDPCoalescer: scratch buffer too small")
        precondition(openFlowLimit > 0, "UDPCoalescer: openFlowLimit must be positive")
        precondition(
            segmentLimit >= 2 && segmentLimit <= UDPCoalescer.maximumSegments,
            "UDPCoalescer: segmentLimit must be 2 ... \(UDPCoalescer.maximumSegments)")
        self.capacity = capacity
        self.scratchCapacity = scratchCapacity
        self.openFlowLimit = openFlowLimit
        self.segmentLimit = segmentLimit
        frames = Array(repeating: FrameSlot(), count: capacity)
        items = Array(repeating: ItemState(), count: capacity)
        open = Array(repeating: OpenFlow(), count: openFlowLimit)
        templates = Array(repeating: 0, count: openFlowLimit * UDPCoalescer.templateStride)
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

    /// Offers the next frame of the batch. A UDP frame (any IP packet whose transport is UDP, mergeable or not) is
    /// taken: its index is the number of frames taken before it. Anything else is refused and not recorded.
    ///
    /// Only reads `frame`; `writeCoalesced` reads it again later, so it must stay unchanged until then.
    /// - Parameter frame: an inner Ethernet frame, from the destination MAC on.
    /// - Returns: false when the frame is not UDP (or not IP, or malformed below UDP): send it another way.
    public mutating func add(_ frame: RawSpan) -> Bool {
        let datagram: Datagram
        switch Datagram.parse(frame) {
        case .notUDP:
            return false
        case .notCandidate(let key, let portsKnown):
            precondition(frameCount < capacity, "UDPCoalescer: more frames than capacity")
            clock &+= 1
            closeFlows(key, portsKnown: portsKnown)
            let index = takeFrame()
            startItem(frame: index, length: frame.byteCount, datagram: nil)
            return true
        case .candidate(let parsed):
            precondition(frameCount < capacity, "UDPCoalescer: more frames than capacity")
            datagram = parsed
        }
        clock &+= 1
        let index = takeFrame()
        frames[index].payloadOffset = Int32(truncatingIfNeeded: datagram.payloadOffset)
        frames[index].payloadLength = Int32(truncatingIfNeeded: datagram.payloadLength)
        frames[index].headerSum = datagram.headerSum

        if let slot = findFlow(datagram.key) {
            if canAppend(datagram, frame, to: slot) {
                append(frame: index, datagram: datagram, to: slot)
                return true
            }
            open[slot].item = -1
        }
        let item = startItem(frame: index, length: frame.byteCount, datagram: datagram)
        openFlow(item: item, datagram: datagram, frame: frame)
        return true
    }

    /// Item `index` (0 ..< `itemCount`).
    public func item(_ index: Int) -> Item {
        precondition(index >= 0 && index < storedItemCount, "UDPCoalescer: item index out of range")
        let state = items[index]
        guard state.frameCount > 1 else {
            return Item(
                firstFrame: Int(state.firstFrame), frameCount: 1, header: .plain, length: Int(state.frameLength))
        }
        let headerLength = Int(state.transportOffset) + UDPHeader.size
        let header = VirtioNetHeader(
            flags: .needsChecksum,
            gsoType: .udpL4,
            headerLength: UInt16(headerLength),
            gsoSize: UInt16(truncatingIfNeeded: state.segmentSize),
            checksumStart: UInt16(state.transportOffset),
            checksumOffset: 6
        )
        return Item(
            firstFrame: Int(state.firstFrame),
            frameCount: Int(state.frameCount),
            header: header,
            length: headerLength + Int(state.payloadTotal)
        )
    }

    /// The frame after `frameIndex` in its item, or nil for the item's last frame.
    public func nextMember(after frameIndex: Int) -> Int? {
        precondition(frameIndex >= 0 && frameIndex < frameCount, "UDPCoalescer: frame index out of range")
        let next = frames[frameIndex].next
        return next < 0 ? nil : Int(next)
    }

    /// Writes a coalesced item as tun expects a UDP_L4 write: the 12-byte virtio-net header, then the first frame's
    /// headers with the IP length (and IPv4 header checksum) and UDP length covering every payload and the UDP
    /// checksum field holding the pseudo-header sum over that length (NEEDS_CSUM; the kernel adjusts it per
    /// datagram when it segments), then every member's payload in order. Verifies each member's UDP checksum as it
    /// copies the payload and stops at the first that fails.
    /// - Parameters:
    ///   - index: an item with `isCoalesced`.
    ///   - destination: the scratch buffer; must hold `VirtioNetHeader.size + item(index).length` bytes from
    ///     `offset`, which `scratchCapacity` guarantees when `destination` is that big (traps otherwise).
    ///   - offset: where the virtio-net header goes.
    ///   - frames: calls its second argument with the bytes of the frame numbered by its first (the same bytes
    ///     given to `add`); called once per member, in order, up to and including a member whose checksum fails.
    /// - Returns: bytes written (`VirtioNetHeader.size + item(index).length`), or nil when a member's UDP checksum
    ///   does not verify. Then nothing usable was written: send the item's members one by one, from
    ///   `item(index).firstFrame` through `nextMember(after:)`, behind plain headers, so the receiver verifies each
    ///   and drops the bad one.
    public func writeCoalesced(
        item index: Int,
        into destination: inout MutableRawSpan,
        at offset: Int = 0,
        frames: (_ frameIndex: Int, _ body: (RawSpan) -> Void) -> Void
    ) -> Int? {
        let output = self.item(index)
        precondition(output.isCoalesced, "UDPCoalescer: item is not coalesced; send its frame as it is")
        let state = items[index]
        let headerLength = Int(state.transportOffset) + UDPHeader.size
        let start = offset + VirtioNetHeader.size
        precondition(destination.byteCount - start >= output.length, "UDPCoalescer: destination too small")
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
                // The payload starts 8 bytes into the UDP header, an even offset, so its sum lines up with the
                // header's, and an odd last byte is the datagram's own last byte (padded as the checksum pads it).
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
        precondition(delivered == output.frameCount, "UDPCoalescer: frames(_:_:) did not deliver every member")

        let ip = start + Int(state.networkOffset)
        let udp = start + Int(state.transportOffset)
        let end = start + output.length
        let udpLength = UInt16(truncatingIfNeeded: end - udp)
        let base: UInt16
        if state.isIPv6 {
            destination.vxStoreBE16(udpLength, at: ip + 4)
            let bytes = destination.bytes
            let source = IPv6Address(high: bytes.vxBE64(ip + 8), low: bytes.vxBE64(ip + 16))
            let target = IPv6Address(high: bytes.vxBE64(ip + 24), low: bytes.vxBE64(ip + 32))
            base = InternetChecksum.pseudoHeaderSum(source: source, destination: target, protocol: .udp, length: 0)
        } else {
            destination.vxStoreBE16(UInt16(truncatingIfNeeded: end - ip), at: ip + 2)
            IPv4Header.updateChecksum(in: &destination, at: ip)
            let bytes = destination.bytes
            let source = IPv4Address(value: bytes.vxBE32(ip + 12))
            let target = IPv4Address(value: bytes.vxBE32(ip + 16))
            base = InternetChecksum.pseudoHeaderSum(source: source, destination: target, protocol: .udp, length: 0)
        }
        destination.vxStoreBE16(udpLength, at: udp + 4)
        // The pseudo-header sum itself, not complemented (NEEDS_CSUM): __udp_gso_segment swaps the merged length
        // for each datagram's in it, and the checksum is completed over each datagram's header and payload.
        destination.vxStoreBE16(InternetChecksum.combine(base, udpLength), at: udp + 6)
        return VirtioNetHeader.size + output.length
    }

    // MARK: - Building items

    private mutating func takeFrame() -> Int {
        let index = frameCount
        frameCount += 1
        frames[index] = FrameSlot()
        return index
    }

    @discardableResult
    private mutating func startItem(frame index: Int, length: Int, datagram: Datagram?) -> Int {
        let item = storedItemCount
        storedItemCount += 1
        var state = ItemState()
        state.firstFrame = Int32(truncatingIfNeeded: index)
        state.lastFrame = state.firstFrame
        state.frameCount = 1
        state.frameLength = Int32(truncatingIfNeeded: length)
        if let datagram {
            state.payloadTotal = Int32(truncatingIfNeeded: datagram.payloadLength)
            state.segmentSize = state.payloadTotal
            state.networkOffset = UInt8(truncatingIfNeeded: datagram.networkOffset)
            state.transportOffset = UInt8(truncatingIfNeeded: datagram.transportOffset)
            state.isIPv6 = datagram.key.isIPv6
        }
        items[item] = state
        return item
    }

    private mutating func openFlow(item: Int, datagram: Datagram, frame: RawSpan) {
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
            key: datagram.key,
            firstIdentification: datagram.identification,
            identificationMode: 0,
            lastUse: clock
        )
        let base = slot * UDPCoalescer.templateStride
        var span = templates.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        bytes.vxCopy(from: frame, at: 0, count: datagram.payloadOffset, to: base)
    }

    private func findFlow(_ key: FlowKey) -> Int? {
        for i in 0..<openFlowLimit where open[i].item >= 0 && open[i].key == key {
            return i
        }
        return nil
    }

    /// Closes the open item of `key`'s flow, or, when the ports are unknown (a fragment), of every flow between
    /// its two addresses.
    private mutating func closeFlows(_ key: FlowKey, portsKnown: Bool) {
        for i in 0..<openFlowLimit where open[i].item >= 0 {
            if portsKnown ? open[i].key == key : open[i].key.sameAddresses(key) { open[i].item = -1 }
        }
    }

    private func canAppend(_ datagram: Datagram, _ frame: RawSpan, to slot: Int) -> Bool {
        let flow = open[slot]
        let state = items[Int(flow.item)]
        guard datagram.networkOffset == Int(state.networkOffset),
            datagram.transportOffset == Int(state.transportOffset),
            datagram.payloadLength <= Int(state.segmentSize)
        else { return false }
        // A short last datagram and a full item close the flow in `append`: an open item has room and ends on a
        // full datagram.

        let total = datagram.payloadOffset + Int(state.payloadTotal) + datagram.payloadLength
        let ipLength = total - datagram.networkOffset - (datagram.key.isIPv6 ? IPv6Header.size : 0)
        guard ipLength <= 0xFFFF, VirtioNetHeader.size + total <= scratchCapacity else { return false }

        // Safe: `Span<UInt8>.bytes` is `@unsafe` for element types with padding or invalid bit patterns; UInt8
        // has neither, so its raw view reads exactly the bytes stored.
        let template = unsafe templates.span.bytes.extracting(
            (slot * UDPCoalescer.templateStride)..<(slot * UDPCoalescer.templateStride + datagram.payloadOffset)
        )
        guard headersMatch(frame, template, datagram) else { return false }

        if !datagram.key.isIPv6 {
            let expected: UInt16
            switch flow.identificationMode {
            case 1: expected = flow.firstIdentification &+ UInt16(truncatingIfNeeded: state.frameCount)
            case 2: expected = flow.firstIdentification
            default:
                let dontFragment = frame.vxU8(datagram.networkOffset + 6) & 0x40 != 0
                return datagram.identification == flow.firstIdentification &+ 1
                    || (dontFragment && datagram.identification == flow.firstIdentification)
            }
            guard datagram.identification == expected else { return false }
        }
        return true
    }

    private mutating func append(frame index: Int, datagram: Datagram, to slot: Int) {
        let item = Int(open[slot].item)
        frames[Int(items[item].lastFrame)].next = Int32(truncatingIfNeeded: index)
        items[item].lastFrame = Int32(truncatingIfNeeded: index)
        items[item].frameCount += 1
        items[item].payloadTotal += Int32(truncatingIfNeeded: datagram.payloadLength)
        if !datagram.key.isIPv6 && open[slot].identificationMode == 0 {
            open[slot].identificationMode = datagram.identification == open[slot].firstIdentification ? 2 : 1
        }
        open[slot].lastUse = clock
        if datagram.payloadLength < Int(items[item].segmentSize) || Int(items[item].frameCount) >= segmentLimit {
            // Nothing may follow a short datagram, and a full item takes no more (the only place these two rules
            // are enforced: `canAppend` relies on it).
            open[slot].item = -1
        }
    }

    /// Compares every header byte that must not change within an item (see the file header). Ports and addresses
    /// are equal already (same flow key).
    private func headersMatch(_ frame: RawSpan, _ template: RawSpan, _ datagram: Datagram) -> Bool {
        let n = datagram.networkOffset
        guard frame.vxEqual(0, template, 0, count: n) else { return false }
        if datagram.key.isIPv6 {
            // Version, traffic class, flow label; next header, hop limit.
            return frame.vxEqual(n, template, n, count: 4) && frame.vxEqual(n + 6, template, n + 6, count: 2)
        }
        // Version/IHL, TOS; flags (reserved, DF; MF is clear in a candidate); TTL, protocol.
        return frame.vxEqual(n, template, n, count: 2) && frame.vxU8(n + 6) & 0xE0 == template.vxU8(n + 6) & 0xE0
            && frame.vxEqual(n + 8, template, n + 8, count: 2)
    }
}

/// What `UDPCoalescer.add` needs to know about one frame.
private struct Datagram {
    var networkOffset: Int  // IP header offset: 14, or 18 with a tag
    var transportOffset: Int  // UDP header offset
    var payloadLength: Int  // UDP payload bytes
    var key: UDPCoalescer.FlowKey
    var identification: UInt16  // IPv4 identification; 0 for IPv6
    /// Pseudo-header plus UDP header sum (the checksum field included); `writeCoalesced` adds the payload's.
    var headerSum: UInt16

    var payloadOffset: Int { transportOffset + UDPHeader.size }

    enum Parsed {
        /// Not a UDP frame (not IP, not UDP, malformed IP): refused, touches no flow.
        case notUDP
        /// UDP, but never merged (fragment, IP options or extension headers, zero checksum, bad lengths, bad IPv4
        /// header checksum): passes through and closes its flow, or with unknown ports every flow between its
        /// addresses.
        case notCandidate(UDPCoalescer.FlowKey, portsKnown: Bool)
        /// A datagram that may merge; its UDP checksum is not verified yet.
        case candidate(Datagram)
    }

    static func parse(_ frame: RawSpan) -> Parsed {
        guard case .success(let ethernet) = EthernetHeader.parse(frame) else { return .notUDP }
        let n = ethernet.length
        let packet = frame.extracting(n..<frame.byteCount)
        var key = UDPCoalescer.FlowKey()
        let transport: Int
        let packetEnd: Int
        let isCandidate: Bool
        var identification: UInt16 = 0
        switch ethernet.etherType {
        case .ipv4:
            guard case .success(let ip) = IPv4Header.parse(packet, verifyChecksum: false), ip.protocol == .udp else {
                return .notUDP
            }
            key.sourceLow = UInt64(frame.vxBE32(n + 12))
            key.destinationLow = UInt64(frame.vxBE32(n + 16))
            transport = n + ip.headerLength
            packetEnd = n + Int(ip.totalLength)
            guard !ip.isFragment else { return .notCandidate(key, portsKnown: false) }
            identification = frame.vxBE16(n + 4)
            isCandidate =
                ip.headerLength == IPv4Header.minimumSize
                && InternetChecksum.sum(packet.extracting(first: IPv4Header.minimumSize)) == 0xFFFF
        case .ipv6:
            guard case .success(let location) = IPv6Header.findTransport(in: packet), location.protocol == .udp else {
                return .notUDP
            }
            key.isIPv6 = true
            key.sourceHigh = frame.vxBE64(n + 8)
            key.sourceLow = frame.vxBE64(n + 16)
            key.destinationHigh = frame.vxBE64(n + 24)
            key.destinationLow = frame.vxBE64(n + 32)
            guard !location.isFragment else { return .notCandidate(key, portsKnown: false) }
            transport = n + location.offset
            packetEnd = n + IPv6Header.size + Int(frame.vxBE16(n + 4))
            isCandidate = location.offset == IPv6Header.size
        default:
            return .notUDP
        }
        // Both IP parsers checked the packet lies within the frame.
        guard packetEnd - transport >= UDPHeader.size else { return .notCandidate(key, portsKnown: false) }
        key.ports = frame.vxBE32(transport)
        let udpLength = Int(frame.vxBE16(transport + 4))
        guard isCandidate, udpLength == packetEnd - transport, udpLength > UDPHeader.size,
            frame.vxBE16(transport + 6) != 0
        else { return .notCandidate(key, portsKnown: true) }

        let pseudo: UInt16
        if key.isIPv6 {
            let source = IPv6Address(high: key.sourceHigh, low: key.sourceLow)
            let destination = IPv6Address(high: key.destinationHigh, low: key.destinationLow)
            pseudo = InternetChecksum.pseudoHeaderSum(
                source: source, destination: destination, protocol: .udp, length: udpLength)
        } else {
            let source = IPv4Address(value: UInt32(truncatingIfNeeded: key.sourceLow))
            let destination = IPv4Address(value: UInt32(truncatingIfNeeded: key.destinationLow))
            pseudo = InternetChecksum.pseudoHeaderSum(
                source: source, destination: destination, protocol: .udp, length: udpLength)
        }
        let headerSum = InternetChecksum.combine(
            pseudo, InternetChecksum.sum(frame.extracting(transport..<(transport + UDPHeader.size))))
        return .candidate(
            Datagram(
                networkOffset: n,
                transportOffset: transport,
                payloadLength: udpLength - UDPHeader.size,
                key: key,
                identification: identification,
                headerSum: headerSum
            )
        )
    }
}
