// The worker with UDP sender sockets (VXLAN out through UDP GSO) and GRO reads from the tunnel socket, on the
// MemoryEngine, which logs a GSO send as the datagrams the kernel would cut it into (`TransmittedFrame.send` tells
// which send each came from) and delivers an injected GRO read as one frame with its segment size.

import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXOffload
import VXPacket
import VXTestSupport

extension OffloadHarness {
    /// Everything the UDP senders sent, in order, with the sender each went through.
    func sentThroughUDP() -> [(sender: Int, frame: TransmittedFrame)] {
        var all: [(Int, TransmittedFrame)] = []
        for (index, handle) in udpSenderHandles.enumerated() {
            all += engine.drainTransmitted(from: handle).map { (index, $0) }
        }
        return all
    }

    /// Injects `inners` into the tunnel socket as one GRO read from the peer: their VXLAN datagrams back to back,
    /// cut at the first one's size.
    func injectGRORead(_ inners: [[UInt8]]) {
        let datagrams = inners.map { PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: $0) }
        #expect(engine.inject(
            datagrams.flatMap { $0 }, into: tunnelHandle, remote: OffloadHarness.peerAddress,
            segmentSize: UInt32(datagrams[0].count)))
    }

    /// The inner frame of a VXLAN datagram (UDP payload), checking its VNI.
    static func inner(of datagram: [UInt8]) throws -> [UInt8] {
        let decap = try TunnelDecap.vxlanDatagram(datagram.span.bytes).get()
        #expect(decap.vni == OffloadHarness.vni)
        return Array(datagram[decap.innerOffset..<(decap.innerOffset + decap.innerLength)])
    }
}

/// The one write `written` must hold (a TAP's writes, `sentToPort`): its virtio-net header and the frame behind it.
func onlyWrite(
    _ written: [[UInt8]], _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation
) throws -> (header: VirtioNetHeader, frame: [UInt8]) {
    #expect(written.count == 1, comment, sourceLocation: sourceLocation)
    let bytes = try #require(written.first, sourceLocation: sourceLocation)
    let parsed = VirtioNetHeader.parse(bytes.span.bytes)
    let header = try #require(parsed, sourceLocation: sourceLocation)
    return (header, Array(bytes[VirtioNetHeader.size...]))
}

/// A coalesced TAP write, checked: its virtio header, and its frame once the checksum is completed as the kernel
/// would (NEEDS_CSUM: the field holds the pseudo-header sum), which must then verify.
func checkedCoalescedWrite(_ bytes: [UInt8]) throws -> (header: VirtioNetHeader, frame: CheckedTCPFrame) {
    let parsed = VirtioNetHeader.parse(bytes.span.bytes)
    let header = try #require(parsed)
    var frame = Array(bytes[VirtioNetHeader.size...])
    do {
        var mutable = frame.mutableSpan
        var raw = MutableRawSpan(_elements: &mutable)
        #expect(ChecksumCompletion.complete(&raw, header: header) == nil)
    }
    return (header, try CheckedTCPFrame(frame))
}

/// A UDP frame from `source` to `destination` whose flow is told apart by `sourcePort`.
func flowFrame(from source: MACAddress, to destination: MACAddress, sourcePort: UInt16, size: Int, fill: UInt8)
    -> [UInt8]
{
    PacketBuilder.ethernetIPv4UDP(
        destination: destination, source: source, sourceIP: IPv4Address(10, 0, 0, 1),
        destinationIP: IPv4Address(10, 0, 0, 2), sourcePort: sourcePort, destinationPort: 5678,
        payload: [UInt8](repeating: fill, count: size))
}

@Suite("Dataplane worker, VXLAN with UDP GSO and GRO")
struct UDPOffloadWorkerTests {
    @Test("a 64 KB TSO frame for a VXLAN peer leaves as GSO sends whose datagrams are the MTU-sized segments")
    func tsoFrameBecomesGSOSends() throws {
        let harness = try OffloadHarness(udpSenders: 4, largeCount: 16)
        try harness.learnRemote(macRemote)
        _ = harness.sentThroughUDP()
        let freeLarge = harness.engine.pool.availableLarge
        let freeStandard = harness.engine.pool.available
        let payload = (0..<65_495).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        let frame = tcpFrame(
            from: macA, to: macRemote, sequence: 1000, identification: 100, flags: [.ack, .psh], payload: payload,
            checksum: .partial)
        harness.inject(frame, port: 0, header: tsoHeader(gsoSize: 1448))
        try harness.step()

        #expect(try harness.sentToPeer().isEmpty, "nothing through the raw sender")
        let sent = harness.sentThroughUDP()
        #expect(sent.count == 47)  // ceil(65,495 / 1410)
        #expect(Set(sent.map(\.sender)).count == 1, "one flow, one socket (one UDP source port)")
        // 44 datagrams of 8 + 1464 bytes fit 65,507; the other 3 go in a second send.
        let sends = sent.map(\.frame.send)
        #expect(sends.allSatisfy { $0 != 0 })
        #expect(Set(sends).count == 2)
        #expect(sends.prefix(44).allSatisfy { $0 == sends[0] } && sends.suffix(3).allSatisfy { $0 == sends[44] })
        var reassembled: [UInt8] = []
        for (index, entry) in sent.enumerated() {
            #expect(entry.frame.remote == OffloadHarness.peerAddress)
            #expect(entry.frame.remotePort == VXLANHeader.udpPort)
            #expect(entry.frame.bytes.count <= 1472, "with outer IPv4 + UDP it fits a 1500-byte underlay")
            let segment = try CheckedTCPFrame(try OffloadHarness.inner(of: entry.frame.bytes))
            #expect(segment.identification == 100 &+ UInt16(index))
            #expect(segment.sequence == 1000 &+ UInt32(reassembled.count))
            #expect(segment.flags.contains(.psh) == (index == 46))
            reassembled += segment.payload
        }
        #expect(reassembled == payload)
        #expect(harness.worker.offloadStatistics.udpGSOSends == 2)
        #expect(harness.worker.offloadStatistics.udpGSODatagrams == 47)
        #expect(harness.counters.snapshot(of: .peer(index: 0)).txFrames == 47)
        #expect(harness.engine.pool.availableLarge == freeLarge, "GSO buffers go back to the pool")
        #expect(harness.engine.pool.available == freeStandard)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test(
        "back-to-back TSO frames of one flow share GSO sends, up to the byte limit; a short last segment or another flow ends the sharing"
    )
    func tsoFramesShareSends() throws {
        // Segments of 1410 payload bytes are pieces of 8 + 1464 bytes: 44 fit a send's 65,507.
        let sends = try sendSizes(gsoSize: 1410, frames: [
            (segments: 46, short: 0, sourcePort: 40_000),  // 44 | 2 …
            (segments: 46, short: 0, sourcePort: 40_000),  // … + 42 | 4 …
            (segments: 10, short: 700, sourcePort: 40_000),  // … + 11, the last piece short: nothing may follow
            (segments: 5, short: 0, sourcePort: 40_000),  // a send of its own
            (segments: 3, short: 0, sourcePort: 40_001),  // another flow: its own
            (segments: 4, short: 0, sourcePort: 40_000),  // after the other flow's send: its own
        ])
        #expect(sends == [44, 44, 15, 5, 3, 4])
    }

    @Test("TSO frames sharing a send stop at 64 pieces, the kernel's UDP_MAX_SEGMENTS")
    func sharedSendsStopAtTheSegmentLimit() throws {
        // Pieces of 8 + 554 bytes: the 64-segment limit comes before the byte limit.
        let sends = try sendSizes(gsoSize: 500, frames: [
            (segments: 40, short: 0, sourcePort: 40_000), (segments: 40, short: 0, sourcePort: 40_000),
        ])
        #expect(sends == [64, 16])
    }

    /// Injects one TSO frame per entry of `frames` into one batch and returns how many datagrams each send carried,
    /// in order, after checking that every segment arrived in order, byte for byte, with its flow's sequence.
    private func sendSizes(gsoSize: Int, frames: [(segments: Int, short: Int, sourcePort: UInt16)]) throws -> [Int] {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learnRemote(macRemote)
        _ = harness.sentThroughUDP()
        var expected: [(sourcePort: UInt16, sequence: UInt32, payload: [UInt8])] = []
        var nextSequence: [UInt16: UInt32] = [:]
        for (index, frame) in frames.enumerated() {
            let sequence = nextSequence[frame.sourcePort, default: 1000]
            let payload = (0..<(frame.segments * gsoSize + frame.short)).map {
                UInt8(truncatingIfNeeded: $0 &* 7 &+ index &* 31)
            }
            harness.inject(
                tcpFrame(
                    from: macA, to: macRemote, sequence: sequence, identification: UInt16(index * 100),
                    payload: payload, checksum: .partial, sourcePort: frame.sourcePort),
                port: 0, header: tsoHeader(gsoSize: UInt16(gsoSize)))
            for start in stride(from: 0, to: payload.count, by: gsoSize) {
                let end = min(start + gsoSize, payload.count)
                expected.append((frame.sourcePort, sequence &+ UInt32(start), Array(payload[start..<end])))
            }
            nextSequence[frame.sourcePort] = sequence &+ UInt32(payload.count)
        }
        try harness.step()

        let sent = harness.sentThroughUDP()
        #expect(sent.count == expected.count)
        for (entry, want) in zip(sent, expected) {
            let inner = try OffloadHarness.inner(of: entry.frame.bytes)
            let segment = try CheckedTCPFrame(inner)
            #expect(UInt16(inner[34]) << 8 | UInt16(inner[35]) == want.sourcePort)
            #expect(segment.sequence == want.sequence)
            #expect(segment.payload == want.payload)
        }
        #expect(harness.engine.buffersOutstanding == 0)
        // Consecutive datagrams of one send, as runs.
        var sizes: [Int] = []
        var previous: Int?
        for entry in sent {
            if entry.frame.send != 0, entry.frame.send == previous { sizes[sizes.count - 1] += 1 } else { sizes.append(1) }
            previous = entry.frame.send
        }
        #expect(harness.worker.offloadStatistics.udpGSOSends == UInt64(sizes.filter { $0 > 1 }.count))
        #expect(harness.worker.offloadStatistics.udpGSODatagrams == UInt64(sizes.filter { $0 > 1 }.reduce(0, +)))
        return sizes
    }

    @Test("flows spread over the UDP senders, and each flow keeps to one")
    func flowsSpreadOverSenders() throws {
        let harness = try OffloadHarness(udpSenders: 4, largeCount: 16)
        try harness.learnRemote(macRemote)
        _ = harness.sentThroughUDP()
        // 32 flows, two frames each, interleaved so no two frames of a flow are consecutive (no packing).
        for round in 0..<2 {
            for flow in 0..<32 {
                harness.inject(
                    flowFrame(from: macA, to: macRemote, sourcePort: UInt16(2000 + flow), size: 100, fill: UInt8(round)),
                    port: 2)
            }
        }
        try harness.step()
        let sent = harness.sentThroughUDP()
        #expect(sent.count == 64)
        var senderOfFlow: [UInt16: Int] = [:]
        for entry in sent {
            #expect(entry.frame.send == 0, "no two consecutive frames of one flow: single datagrams")
            let inner = try OffloadHarness.inner(of: entry.frame.bytes)
            let port = UInt16(inner[34]) << 8 | UInt16(inner[35])
            if let previous = senderOfFlow[port] { #expect(previous == entry.sender, "flow \(port) moved") }
            senderOfFlow[port] = entry.sender
        }
        #expect(Set(senderOfFlow.values).count > 1, "32 flows over 4 sockets use more than one")
    }

    @Test("consecutive plain frames of one flow and length are packed into one GSO send; the last may be shorter")
    func plainFramesArePacked() throws {
        // One sender, so the two flows' datagrams come back in the order they were sent.
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learnRemote(macRemote)
        _ = harness.sentThroughUDP()
        let frames =
            (0..<5).map { flowFrame(from: macA, to: macRemote, sourcePort: 7000, size: 1000, fill: UInt8($0)) }
            + [flowFrame(from: macA, to: macRemote, sourcePort: 7000, size: 300, fill: 9)]  // shorter: ends the pack
            + [flowFrame(from: macA, to: macRemote, sourcePort: 7000, size: 1000, fill: 10)]  // after a short one
            + [flowFrame(from: macA, to: macRemote, sourcePort: 7001, size: 1000, fill: 11)]  // another flow
        for frame in frames { harness.inject(frame, port: 2) }
        try harness.step()

        let sent = harness.sentThroughUDP()
        #expect(try sent.map { try OffloadHarness.inner(of: $0.frame.bytes) } == frames, "byte-exact, in order")
        let sends = sent.map(\.frame.send)
        #expect(sends[0] != 0 && sends[0..<6].allSatisfy { $0 == sends[0] }, "six frames, one send: \(sends)")
        // The frame after the short one starts a new pack, which the other flow's frame does not continue: both
        // leave as datagrams on their own.
        #expect(sends[6] == 0 && sends[7] == 0, "\(sends)")
        #expect(harness.worker.offloadStatistics.udpGSOSends == 1)
        #expect(harness.worker.offloadStatistics.udpGSODatagrams == 6)
        #expect(harness.counters.snapshot(of: .peer(index: 0)).txFrames == 8)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("a GRO read of VXLAN datagrams is switched as its datagrams; a malformed one is dropped, not the others")
    func groReadIsSplit() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macB, onPort: 2)
        // Six datagrams of one size; the third has its VXLAN I flag clear.
        let inners = (0..<6).map { index -> [UInt8] in
            var frame = udpFrame(from: macRemote, to: macB, size: 200)
            frame[frame.count - 1] = UInt8(index)
            return frame
        }
        var datagrams = inners.map { PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: $0) }
        datagrams[2][0] = 0  // flags: I clear
        let size = datagrams[0].count
        #expect(harness.engine.inject(
            datagrams.flatMap { $0 }, into: harness.tunnelHandle, remote: OffloadHarness.peerAddress,
            segmentSize: UInt32(size)))
        try harness.step()

        let written = harness.sentToPort(2)
        #expect(written == [inners[0], inners[1], inners[3], inners[4], inners[5]], "five switched, in order")
        let peer = harness.counters.snapshot(of: .peer(index: 0))
        #expect(peer.rxFrames == 6, "every datagram counted as received")
        #expect(peer.totalDrops == 1, "the malformed one dropped and counted: \(peer.drops)")
        #expect(harness.worker.offloadStatistics.groFramesReceived == 1)
        #expect(harness.worker.offloadStatistics.groDatagrams == 6)
        #expect(harness.engine.buffersOutstanding == 0, "the shared rx buffer released once")
    }

    @Test("TCP segments arriving as one GRO read reach a virtio TAP as one coalesced write")
    func groReadOfTCPSegmentsIsCoalesced() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        var payload: [UInt8] = []
        var inners: [[UInt8]] = []
        for index in 0..<40 {
            let chunk = (0..<1400).map { UInt8(truncatingIfNeeded: $0 + index * 31) }
            payload += chunk
            inners.append(
                tcpFrame(
                    from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                    payload: chunk))
        }
        harness.injectGRORead(inners)
        try harness.step()
        let written = harness.sentToPort(0)
        #expect(written.count == 1, "forty datagrams, one TAP write")
        let (header, frame) = try checkedCoalescedWrite(try #require(written.first))
        #expect(header.gsoType == .tcpv4 && header.gsoSize == 1400)
        #expect(frame.payload == payload)
        #expect(harness.worker.offloadStatistics.coalescedFrames == 40)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("merged frames of several flows leave in one transmit, not one each")
    func mergedFramesOfSeveralFlowsShareOneTransmit() throws {
        // Each flow's forty segments merge into a 56 KB frame: two do not fit one 64 KiB scratch buffer. With one
        // buffer the worker flushed after each merged frame, and every flush is an io_uring submission (the
        // receiving switch made nine per receive under iperf3); with several, one batch's merged frames go out
        // together.
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        var payloads: [[UInt8]] = [[], [], []]
        for flow in 0..<3 {
            var inners: [[UInt8]] = []
            for index in 0..<40 {
                let chunk = (0..<1400).map { UInt8(truncatingIfNeeded: $0 + index * 31 + flow * 7) }
                payloads[flow] += chunk
                inners.append(
                    tcpFrame(
                        from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                        payload: chunk, sourcePort: 40_000 + UInt16(flow)))
            }
            harness.injectGRORead(inners)
        }
        let transmitsBefore = harness.engine.transmitCalls
        try harness.step()
        #expect(harness.engine.transmitCalls - transmitsBefore == 1, "three merged frames, one transmit")
        let written = harness.sentToPort(0)
        #expect(written.count == 3)
        for (flow, bytes) in written.enumerated() {
            let (header, frame) = try checkedCoalescedWrite(bytes)
            #expect(header.gsoType == .tcpv4 && header.gsoSize == 1400)
            #expect(frame.payload == payloads[flow], "flow \(flow)'s bytes, in order")
        }
        #expect(harness.worker.offloadStatistics.coalescedWrites == 3)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("a run with a corrupt segment reaches a virtio TAP as its frames, in order, for the kernel to verify")
    func runWithABadChecksumFallsBackToSingleFrames() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        // Two flows interleaved in one GRO read: flow 1 (port 40 000) has a flipped payload byte in its third
        // segment, after its checksum was computed, as a bit error on the way would; flow 2 (port 40 001) is clean.
        var bad: [[UInt8]] = []
        var good: [[UInt8]] = []
        var goodPayload: [UInt8] = []
        var inners: [[UInt8]] = []
        for index in 0..<6 {
            for flow in 0..<2 {
                let chunk = (0..<1400).map { UInt8(truncatingIfNeeded: $0 + index * 31 + flow * 7) }
                var inner = tcpFrame(
                    from: macRemote, to: macA, sequence: UInt32(index * 1400), identification: UInt16(index),
                    payload: chunk, sourcePort: 40_000 + UInt16(flow))
                if flow == 0 {
                    if index == 2 { inner[14 + 20 + 20 + 700] ^= 0x04 }
                    bad.append(inner)
                } else {
                    good.append(inner)
                    goodPayload += chunk
                }
                inners.append(inner)
            }
        }
        harness.injectGRORead(inners)
        try harness.step()

        let written = harness.sentToPort(0)
        #expect(written.count == 7, "flow 1's six frames one by one, then flow 2's one coalesced write")
        // Flow 1's item leaves at the position of its first frame, as a merged one would: first, in order, each
        // frame as it came behind a plain header without DATA_VALID, so the kernel verifies each.
        #expect(Array(written.prefix(6)) == bad.map { virtioBytes(.plain) + $0 })
        let (header, frame) = try checkedCoalescedWrite(try #require(written.last))
        #expect(header.gsoType == .tcpv4 && header.gsoSize == 1400)
        #expect(frame.payload == goodPayload)
        #expect(harness.worker.offloadStatistics.coalescedWrites == 1)
        #expect(harness.worker.offloadStatistics.coalescedFrames == 6)
        #expect(harness.worker.offloadStatistics.coalesceChecksumFallbacks == 1, "flow 1's item, counted once")
        #expect(harness.counters.snapshot(of: .port(index: 0)).txFrames == 12, "counted per frame switched")
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("a batch of GRO reads with more datagrams than the switching scratch holds is switched in parts")
    func manyGROReadsAreSwitchedInParts() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 80)
        try harness.learn(macB, onPort: 2)
        // 64 reads × 10 datagrams = 640 frames, above the 256 one pass holds.
        var expected: [[UInt8]] = []
        for read in 0..<64 {
            var bytes: [UInt8] = []
            var size = 0
            for index in 0..<10 {
                var inner = udpFrame(from: macRemote, to: macB, size: 100)
                inner[inner.count - 1] = UInt8(index)
                inner[inner.count - 2] = UInt8(read)
                expected.append(inner)
                let datagram = PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: inner)
                size = datagram.count
                bytes += datagram
            }
            #expect(harness.engine.inject(
                bytes, into: harness.tunnelHandle, remote: OffloadHarness.peerAddress, segmentSize: UInt32(size)))
        }
        try harness.step()
        #expect(harness.sentToPort(2) == expected)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("every offload path counts on the worker's published counters, which another thread reads whole")
    func offloadCountersArePublished() async throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learnRemote(macRemote)
        try harness.learn(macB, onPort: 1)
        try harness.learn(macA, onPort: 0)
        _ = harness.sentThroughUDP()
        let published = harness.counters.offloads
        #expect(published.snapshot() == WorkerOffloadStatistics(), "learning used no offload")

        // A 64 KB TSO frame for the peer: 47 segments in two GSO sends.
        let payload = (0..<65_495).map { UInt8(truncatingIfNeeded: $0 &* 5) }
        harness.inject(
            tcpFrame(from: macA, to: macRemote, sequence: 1, identification: 1, payload: payload, checksum: .partial),
            port: 0, header: tsoHeader(gsoSize: 1448))
        try harness.step()
        #expect(harness.sentThroughUDP().count == 47)
        // A TSO frame for the virtio TAP port 1: passed through whole.
        harness.inject(
            tcpFrame(from: macA, to: macB, sequence: 1, identification: 2, payload: Array(payload[..<9000]),
                     checksum: .partial),
            port: 0, header: tsoHeader(gsoSize: 1448))
        try harness.step()
        #expect(harness.sentToPort(1).count == 1)
        // A plain frame with a partial checksum: completed.
        harness.inject(
            tcpFrame(from: macA, to: macRemote, sequence: 9, identification: 3, payload: [1, 2, 3], checksum: .partial),
            port: 0, header: VirtioNetHeader(flags: .needsChecksum, checksumStart: 34, checksumOffset: 16))
        try harness.step()
        #expect(harness.sentThroughUDP().count == 1)
        // Twenty TCP segments for port 0 in one GRO read: one coalesced write.
        var datagrams: [UInt8] = []
        var size = 0
        for index in 0..<20 {
            let datagram = PacketBuilder.vxlanDatagram(
                vni: OffloadHarness.vni,
                inner: tcpFrame(
                    from: macRemote, to: macA, sequence: UInt32(index * 1000), identification: UInt16(index),
                    payload: Array(payload[(index * 1000)..<(index * 1000 + 1000)])))
            size = datagram.count
            datagrams += datagram
        }
        #expect(harness.engine.inject(
            datagrams, into: harness.tunnelHandle, remote: OffloadHarness.peerAddress, segmentSize: UInt32(size)))
        try harness.step()
        #expect(harness.sentToPort(0).count == 1)

        var expected = WorkerOffloadStatistics()
        expected.tsoFramesReceived = 2
        expected.checksumsCompleted = 1
        expected.tsoFramesSegmented = 1
        expected.segments = 47
        expected.tsoFramesPassedThrough = 1
        expected.coalescedWrites = 1
        expected.coalescedFrames = 20
        expected.udpGSOSends = 2
        expected.udpGSODatagrams = 47
        expected.groFramesReceived = 1
        expected.groDatagrams = 20
        // Read as the control thread reads it for `stats`: from another thread, through the worker's counters.
        let fromAnotherThread = await Task.detached { published.snapshot() }.value
        #expect(fromAnotherThread == expected)
        #expect(harness.worker.offloadStatistics === published, "the worker counts on what it publishes")
    }
}

/// A UDP datagram from macRemote's side to macA's (10.0.0.1:`sourcePort` → 10.0.0.2:9000) with IPv4
/// identification `identification` and a valid UDP checksum, computed before `corruptByte` (a payload index), if
/// given, is flipped.
func udpFlowFrame(identification: UInt16, payload: [UInt8], sourcePort: UInt16 = 40_000, corruptByte: Int? = nil)
    -> [UInt8]
{
    let length = UDPHeader.size + payload.count
    var segment =
        PacketBuilder.withBytes(count: UDPHeader.size) {
            UDPHeader(sourcePort: sourcePort, destinationPort: 9000, length: UInt16(length)).write(into: &$0)
        } + payload
    let pseudo = InternetChecksum.pseudoHeaderSum(
        source: tcpSource, destination: tcpDestination, protocol: .udp, length: length)
    let checksum = UDPHeader.computeChecksum(segment: segment.span.bytes, pseudoHeaderSum: pseudo)
    segment[6] = UInt8(checksum >> 8)
    segment[7] = UInt8(checksum & 0xFF)
    if let corruptByte { segment[UDPHeader.size + corruptByte] ^= 0x10 }
    return PacketBuilder.ethernet(
        destination: macA, source: macRemote, etherType: .ipv4,
        payload: PacketBuilder.ipv4(
            source: tcpSource, destination: tcpDestination, protocol: .udp, payload: segment,
            identification: identification))
}

@Suite("Dataplane worker, UDP coalescing for virtio TAPs")
struct UDPCoalescingWorkerTests {
    @Test("small UDP datagrams of one flow in a GRO read reach a virtio TAP as one USO write")
    func groReadOfSmallDatagramsBecomesOneUSOWrite() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        let payloads = (0..<40).map { i in (0..<18).map { UInt8(truncatingIfNeeded: $0 &* 3 &+ i &* 11) } }
        let inners = payloads.enumerated().map { udpFlowFrame(identification: UInt16(100 + $0), payload: $1) }
        harness.injectGRORead(inners)
        try harness.step()

        let (header, frame) = try onlyWrite(harness.sentToPort(0), "forty datagrams, one TAP write")
        #expect(
            header
                == VirtioNetHeader(
                    flags: .needsChecksum, gsoType: .udpL4, headerLength: 14 + 20 + 8, gsoSize: 18,
                    checksumStart: 14 + 20, checksumOffset: 6))
        let merged = 8 + 40 * 18
        #expect(frame.count == 14 + 20 + merged)
        #expect(Array(frame[0..<16]) == Array(inners[0][0..<16]), "the first datagram's headers up to the length")
        #expect(Array(frame[18..<24]) == Array(inners[0][18..<24]), "identification, flags, TTL, protocol")
        #expect(Array(frame[26..<38]) == Array(inners[0][26..<38]), "addresses, ports")
        #expect(Int(frame[16]) << 8 | Int(frame[17]) == 20 + merged, "IPv4 total length covers every datagram")
        #expect(Int(frame[38]) << 8 | Int(frame[39]) == merged, "so does the UDP length")
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: tcpSource, destination: tcpDestination, protocol: .udp, length: merged)
        #expect(Int(frame[40]) << 8 | Int(frame[41]) == Int(pseudo), "the checksum field holds the pseudo-header sum")
        #expect(Array(frame[42...]) == payloads.flatMap { $0 })
        #expect(harness.worker.offloadStatistics.udpCoalescedWrites == 1)
        #expect(harness.worker.offloadStatistics.udpCoalescedFrames == 40)
        #expect(harness.worker.offloadStatistics.coalescedWrites == 0, "the TCP counters stay TCP's")
        #expect(harness.counters.snapshot(of: .port(index: 0)).txFrames == 40, "counted per frame switched")
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("UDP, TCP and other frames in one run leave in order of each item's first frame")
    func udpAndTCPItemsInterleaveByFirstFrame() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        let payload = [UInt8](repeating: 7, count: 100)
        let tcp = (0..<3).map {
            tcpFrame(
                from: macRemote, to: macA, sequence: UInt32($0 * 1000), identification: UInt16($0),
                payload: [UInt8](repeating: UInt8($0), count: 1000))
        }
        let udp = (0..<3).map { udpFlowFrame(identification: UInt16(50 + $0), payload: payload) }
        let lone = udpFlowFrame(identification: 9, payload: payload, sourcePort: 1)
        // UDP first, then TCP: the UDP item's first frame comes first, then the TCP item, then the lone datagram
        // (sending all of one coalescer's items first would get either the first two or the last two wrong). Of
        // different sizes, so one datagram each from the peer, all in one batch.
        for inner in [udp[0], tcp[0], udp[1], tcp[1], lone, tcp[2], udp[2]] { harness.injectFromPeer(inner) }
        try harness.step()
        let written = harness.sentToPort(0)
        try #require(written.count == 3)
        let kinds = written.map { VirtioNetHeader.parse(Array($0.prefix(VirtioNetHeader.size)).span.bytes)?.gsoType }
        #expect(kinds == [.udpL4, .tcpv4, VirtioNetHeader.GSOType.none])
        #expect(written[2] == virtioBytes(.plain) + lone)
        #expect(harness.worker.offloadStatistics.udpCoalescedFrames == 3)
        #expect(harness.worker.offloadStatistics.coalescedFrames == 3)
        #expect(harness.engine.buffersOutstanding == 0)
    }

    @Test("a UDP run with a corrupt datagram reaches a virtio TAP as its frames, for the kernel to verify")
    func runWithACorruptDatagramFallsBackToSingleFrames() throws {
        let harness = try OffloadHarness(udpSenders: 1, largeCount: 16)
        try harness.learn(macA, onPort: 0)
        let inners = (0..<5).map {
            udpFlowFrame(
                identification: UInt16($0), payload: [UInt8](repeating: UInt8($0), count: 64),
                corruptByte: $0 == 3 ? 10 : nil)
        }
        harness.injectGRORead(inners)
        try harness.step()
        let written = harness.sentToPort(0)
        #expect(written == inners.map { virtioBytes(.plain) + $0 }, "each datagram as it came, in order")
        #expect(harness.worker.offloadStatistics.udpCoalescedWrites == 0)
        #expect(harness.worker.offloadStatistics.coalesceChecksumFallbacks == 1)
        #expect(harness.engine.buffersOutstanding == 0)
    }
}
