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

    /// Sorts a frame read from the underlay TAP, and learns and keeps what it carries for forwarding: ARP is punted
    /// to the control plane, VXLAN for this VTEP is decapsulated and classified like a datagram from a tunnel
    /// socket, anything else is counted and dropped. A TCP burst (GSO over the tunnel) keeps its segmentation: its
    /// header is rewritten, in the buffer, into the 12-byte form of a container TAP's right in front of the inner
    /// frame, so from here on it is switched like a TSO frame from a virtio TAP (passed through whole to one,
    /// segmented for anything else). A run of datagrams (UDP_L4) is split like a GRO read from a socket.
    func classifyUnderlay(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig) {
        guard let item = classifyUnderlayFrame(frame, rxIndex: rxIndex, config: config) else { return }
        learnAndKeep(item, config: config)
    }

    private func classifyUnderlayFrame(_ frame: ReceivedFrame, rxIndex: Int, config: DataplaneConfig)
        -> Classification?
    {
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
            guard let peer = config.endpoint(at: UnderlayAddress(source)) else {
                counters.dropped(row: unattributed, DropCode(DataplaneDropReason.unknownPeer))
                return nil
            }
            let row = counters.row(peer: peer.peer)
            if header.inner.gsoType == .udpL4 && header.tunnel == 0 {
                // The pieces start with the first one's VXLAN header, which `classify` read as if it were alone.
                let innerStart = headerSize + outerLength
                classifyUnderlayRun(
                    frame, rxIndex: rxIndex, pieces: (innerStart - VXLANHeader.size)..<(innerStart + innerLength),
                    pieceLength: Int(header.inner.gsoSize), peer: peer, row: row, config: config)
                return nil
            }
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

    /// Splits a run of VXLAN datagrams read from the underlay TAP as one UDP_L4 frame (`pieces`: their payloads back
    /// to back, each `pieceLength` bytes but the last) and classifies and learns each on its own, as `classifyGRO`
    /// does for a socket's GRO read; a bad one is dropped and counted, the others go on.
    private func classifyUnderlayRun(
        _ frame: ReceivedFrame, rxIndex: Int, pieces: Range<Int>, pieceLength: Int, peer: PeerEndpoint, row: Int,
        config: DataplaneConfig
    ) {
        guard pieceLength > 0 else {
            counters.received(row: row, bytes: pieces.count)
            counters.dropped(row: row, DropCode(OffloadDropReason.gsoSizeZero))
            return
        }
        offloadStatistics.groFramesReceived &+= 1
        var start = pieces.lowerBound
        while start < pieces.upperBound {
            let length = min(pieceLength, pieces.upperBound - start)
            defer { start += length }
            offloadStatistics.groDatagrams &+= 1
            if let item = classifyDatagram(
                frame, rxIndex: rxIndex, start: start, length: length, framing: .vxlan, peer: peer, row: row,
                config: config)
            {
                learnAndKeep(item, config: config)
            }
        }
    }

    /// Queues `item` for VXLAN peer `peer` as a write into the underlay TAP: the 24-byte tunnel header, the outer
    /// Ethernet, IPv4, UDP and VXLAN headers (all in the entry's header slot), then the frame from its own buffer.
    /// Consecutive plain frames of one flow share one write, a UDP_L4 run of datagrams (`appendVXLANDatagram`). A
    /// TSO frame goes whole, for the kernel to carry as one burst (GSO over the UDP tunnel); one whose segments
    /// would not fit the underlay is segmented here, each segment its own write.
    func emitUnderlay(
        _ item: ClassifiedFrame, to peer: PeerID, remote: UnderlayAddress, template: EncapTemplate,
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
        guard let gso = item.gso else {
            // A plain frame: packed with the next ones of its flow into one UDP_L4 write when they come
            // (appendVXLANDatagram, as for a socket's GSO send), so a run of small frames is one trip through tun.
            let route = VXLANRoute(
                target: underlay, remote: remote, port: template.udpDestinationPort, vni: template.vni,
                flowHash: hash, outerLength: template.headerLength)
            appendVXLANDatagram(item, route: route, row: row, underlay: outer)
            return
        }
        let plan = withItemBytes(item) {
            UDPTunnelOffload.encapsulating(
                gso, frame: $0, outerLength: Self.underlayOuterLength,
                outerTransportOffset: Self.underlayOuterTransportOffset, maximumInnerPacket: overlayMTU)
        }
        let tunnelHeader: VirtioNetTunnelHeader
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
            // `encapsulating` sends anything that would pass 64 KiB with the outer headers to `.segment`.
            tunnelHeader = header
            offloadStatistics.tsoFramesPassedThrough &+= 1
        }
        let innerLength = Int(item.length)
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
struct UnderlayOuterHeader {
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

    /// Writes the headers of a UDP_L4 write into a TxBatch header slot: `payloadLength` bytes of [VXLAN][frame]
    /// pieces follow, each `segmentSize` bytes but the last, for the kernel to cut into one datagram each (as
    /// UDP GSO does on a socket; tun's reader on the far side may take the run whole). The IPv4 and UDP lengths
    /// cover every piece; the UDP checksum is partial (NEEDS_CSUM), holding the pseudo-header sum over that length,
    /// which __udp_gso_segment swaps for each datagram's before completing it: USO has no zero-checksum form.
    /// - Returns: bytes written: the tunnel header, Ethernet, IPv4 and UDP (66; each piece brings its VXLAN header).
    func writeSegmented(into slot: UnsafeMutableRawBufferPointer, payloadLength: Int, segmentSize: Int) -> Int {
        var span = unsafe MutableRawSpan(_unsafeBytes: slot)
        let transport = EthernetHeader.size + IPv4Header.minimumSize
        let header = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(
                flags: .needsChecksum, gsoType: .udpL4, headerLength: UInt16(transport + UDPHeader.size),
                gsoSize: UInt16(segmentSize), checksumStart: UInt16(transport),
                checksumOffset: UInt16(UDPHeader.checksumOffset)))
        var offset = header.write(into: &span)
        offset += ethernet.write(into: &span, at: offset)
        // The template writes IPv4 + UDP + VXLAN for one inner frame; as one of `payloadLength - 8` bytes its IPv4
        // and UDP lengths cover the pieces, and the VXLAN header it adds past the UDP header is left out of the
        // write (each piece carries its own).
        _ = template.write(
            into: &span, at: offset, innerLength: payloadLength - VXLANHeader.size, flowHash: flowHash)
        let udpLength = UInt16(UDPHeader.size + payloadLength)
        // The underlay TAP is IPv4 only (the daemon refuses it with an IPv6 VTEP), so the template is an IPv4 one.
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: template.local.ipv4 ?? .any, destination: template.remote.ipv4 ?? .any, protocol: .udp, length: 0)
        let udp = offset + IPv4Header.minimumSize
        span.vxStoreBE16(InternetChecksum.combine(pseudo, udpLength), at: udp + UDPHeader.checksumOffset)
        return udp + UDPHeader.size
    }
}
