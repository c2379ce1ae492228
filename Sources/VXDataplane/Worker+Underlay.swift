// The worker's side of the underlay TAP (`vxswitchd --underlay-tap`; docs/offload.md "The TAP underlay"): frames
// read from it are sorted (ARP punted, VXLAN for this VTEP decapsulated, a GSO burst's tunnel header rewritten for
// the TSO paths), and VXLAN leaves through it as whole outer frames, a TCP burst unsegmented. Worker thread only.

import Logging
import VXForwarding
import VXIO
import VXOffload
import VXPacket

extension DataplaneWorker {
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
    func classifyUnderlay(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) -> Classification? {
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
    func emitUnderlay(
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
    func transmitUnderlayControlFrame(_ bytes: [UInt8]) {
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
