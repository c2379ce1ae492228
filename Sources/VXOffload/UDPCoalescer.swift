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
// Shared with TCPCoalescer (CoalescerCore, whose header also says why a merged item is a copy that verifies): the
// frame, item and open-flow tables, the header templates and their comparison (Ethernet and IP), the size caps, the
// IPv4 identification rule, the "short member ends the item" rule and the copy-and-verify loop. Here: parsing, the
// segment limit, the fragment rule and the header fix-ups of a USO frame.
//
// Memory: everything is allocated in `init` (CoalescerCore's per-frame and per-item tables sized to `capacity`, its
// `openFlowLimit` header templates). `reset`, `add`, `item` and `writeCoalesced` only index those arrays in place
// (the struct is ~Copyable, so they are never shared and never copied on write): no allocation per frame or batch.
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

    /// Most frames per batch (`add` calls between `reset`s).
    public var capacity: Int { core.capacity }
    /// The scratch buffer `writeCoalesced` writes into: virtio header plus merged frame never exceed it.
    public var scratchCapacity: Int { core.scratchCapacity }
    /// Flows that can be merging at once.
    public var openFlowLimit: Int { core.openFlowLimit }
    /// Most datagrams in one coalesced item.
    public let segmentLimit: Int

    /// The tables (see CoalescerCore).
    private var core: CoalescerCore

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
        precondition(
            segmentLimit >= 2 && segmentLimit <= UDPCoalescer.maximumSegments,
            "UDPCoalescer: segmentLimit must be 2 ... \(UDPCoalescer.maximumSegments)")
        core = CoalescerCore(
            name: "UDPCoalescer",
            capacity: capacity,
            scratchCapacity: scratchCapacity,
            openFlowLimit: openFlowLimit,
            templateStride: UDPCoalescer.templateStride,
            gsoTypes: (ipv4: .udpL4, ipv6: .udpL4),
            checksumOffset: 6
        )
        self.segmentLimit = segmentLimit
    }

    /// Frames added since the last `reset`.
    public var count: Int { core.frameCount }

    /// Items so far; complete once the batch's last frame was added.
    public var itemCount: Int { core.itemCount }

    /// Forgets the batch, keeping every table.
    public mutating func reset() {
        core.reset()
    }

    /// Offers the next frame of the batch. A UDP frame (any IP packet whose transport is UDP, mergeable or not) is
    /// taken: its index is the number of frames taken before it. Anything else is refused and not recorded.
    ///
    /// Only reads `frame`; `writeCoalesced` reads it again later, so it must stay unchanged until then.
    /// - Parameter frame: an inner Ethernet frame, from the destination MAC on.
    /// - Returns: false when the frame is not UDP (or not IP, or malformed below UDP): send it another way.
    public mutating func add(_ frame: RawSpan) -> Bool {
        let datagram: CoalescerCore.Candidate
        switch Datagram.parse(frame) {
        case .notUDP:
            return false
        case .notCandidate(let key, let portsKnown):
            let index = core.takeFrame()
            core.closeFlows(key, portsKnown: portsKnown)
            core.startItem(frame: index, length: frame.byteCount, candidate: nil)
            return true
        case .candidate(let parsed):
            datagram = parsed
        }
        let index = core.takeFrame()
        core.record(datagram, at: index)

        if let slot = core.findFlow(datagram.key) {
            if canAppend(datagram, frame, to: slot) {
                let item = core.append(frame: index, datagram, to: slot)
                // A full item takes no more (the only place this rule is enforced; `append` closed the slot after
                // a short datagram): an open item has room and ends on a full datagram.
                if Int(core.items[item].frameCount) >= segmentLimit { core.close(slot: slot) }
                return true
            }
            core.close(slot: slot)
        }
        let item = core.startItem(frame: index, length: frame.byteCount, candidate: datagram)
        core.openFlow(item: item, candidate: datagram, frame: frame)
        return true
    }

    /// Item `index` (0 ..< `itemCount`).
    public func item(_ index: Int) -> Item {
        core.item(index)
    }

    /// The frame after `frameIndex` in its item, or nil for the item's last frame.
    public func nextMember(after frameIndex: Int) -> Int? {
        core.nextMember(after: frameIndex)
    }

    /// Writes a coalesced item as tun expects a UDP_L4 write: the 12-byte virtio-net header, then the first frame's
    /// headers with the IP length (and IPv4 header checksum) and UDP length covering every payload and the UDP
    /// checksum field holding the pseudo-header sum over that length (NEEDS_CSUM; the kernel adjusts it per
    /// datagram when it segments), then every member's payload in order. Verifies each member's UDP checksum as it
    /// copies the payload and stops at the first that fails.
    /// - Parameters: as `FrameCoalescer.writeCoalesced(item:into:at:frames:)`, which says more:
    ///   - index: an item with `isCoalesced`.
    ///   - destination: the scratch buffer (`scratchCapacity` bytes from `offset` always suffice).
    ///   - offset: where the virtio-net header goes.
    ///   - frames: gives the bytes of each member, as given to `add`.
    /// - Returns: bytes written, or nil when a member's UDP checksum does not verify: send the members unmerged.
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

    // MARK: - Merging

    /// Whether `datagram` may join the open item in `slot` (`CoalescerCore.canAppend`). The headers that must
    /// match are the Ethernet and IP ones (`CoalescerCore.headersMatch`); ports and addresses are equal already
    /// (same flow key), and the UDP length and checksum may differ.
    private func canAppend(_ datagram: CoalescerCore.Candidate, _ frame: RawSpan, to slot: Int) -> Bool {
        core.canAppend(datagram, frame, to: slot) { frame, template in
            CoalescerCore.headersMatch(
                frame, template, networkOffset: datagram.networkOffset, isIPv6: datagram.key.isIPv6)
        }
    }
}

/// The UDP parser: what `UDPCoalescer.add` needs to know about one frame.
private enum Datagram {
    enum Parsed {
        /// Not a UDP frame (not IP, not UDP, malformed IP): refused, touches no flow.
        case notUDP
        /// UDP, but never merged (fragment, IP options or extension headers, zero checksum, bad lengths, bad IPv4
        /// header checksum): passes through and closes its flow, or with unknown ports every flow between its
        /// addresses.
        case notCandidate(CoalescerCore.FlowKey, portsKnown: Bool)
        /// A datagram that may merge (offsets, payload, flow, IPv4 identification (0 for IPv6), and the
        /// pseudo-header plus UDP header sum, checksum field included); its UDP checksum is not verified yet.
        case candidate(CoalescerCore.Candidate)
    }

    static func parse(_ frame: RawSpan) -> Parsed {
        guard case .success(let ethernet) = EthernetHeader.parse(frame) else { return .notUDP }
        let n = ethernet.length
        let packet = frame.extracting(n..<frame.byteCount)
        var key: CoalescerCore.FlowKey
        let transport: Int
        let packetEnd: Int
        let isCandidate: Bool
        var identification: UInt16 = 0
        // Every frame for a virtio TAP is offered here before the TCPCoalescer parses it, so a TCP segment must
        // be refused on the protocol byte alone (the IPv4 protocol, or an IPv6 next header naming TCP directly),
        // not after a full IP parse that the TCPCoalescer then repeats. Either way the answer is .notUDP: a packet
        // that is not UDP by that byte is not UDP whether or not its IP header is valid (and any other EtherType
        // is .notUDP below anyway).
        let protocolOffset = ethernet.etherType == .ipv4 ? 9 : 6
        if packet.byteCount > protocolOffset, packet.vxU8(protocolOffset) == IPProtocol.tcp.rawValue {
            return .notUDP
        }
        switch ethernet.etherType {
        case .ipv4:
            guard case .success(let ip) = IPv4Header.parse(packet, verifyChecksum: false), ip.protocol == .udp else {
                return .notUDP
            }
            key = CoalescerCore.FlowKey(addressesOf: frame, networkOffset: n, isIPv6: false)
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
            key = CoalescerCore.FlowKey(addressesOf: frame, networkOffset: n, isIPv6: true)
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
            CoalescerCore.Candidate(
                networkOffset: n,
                transportOffset: transport,
                payloadOffset: transport + UDPHeader.size,
                payloadLength: udpLength - UDPHeader.size,
                key: key,
                identification: identification,
                headerSum: headerSum
            )
        )
    }
}
