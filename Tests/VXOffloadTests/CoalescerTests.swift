import Testing
import VXOffload
import VXPacket
import VXTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `count` consecutive segments of `spec`'s flow, each `size` bytes of payload (the last `lastSize` if given),
/// made by segmenting one GSO frame, so they are what a peer's segmenter (ours or a NIC's) puts on the wire.
func burst(
    _ spec: TCPFrameSpec,
    count: Int,
    size: Int = 1448,
    lastSize: Int? = nil
) -> (gso: [UInt8], segments: [[UInt8]]) {
    var spec = spec
    spec.payload = pattern(size * (count - 1) + (lastSize ?? size), seed: Int(spec.sequence & 0xFF))
    let gso = spec.build(checksum: .partial)
    let segments = segment(gso, header: spec.gsoHeader(mss: size))!
    precondition(segments.count == count)
    return (gso, segments)
}

/// Frame `i` of a flow, built directly (for hand-made sequences): payload `size`, sequence `base + i × size`.
func frame(_ spec: TCPFrameSpec, _ i: Int, size: Int = 1000, checksum: ChecksumMode = .full) -> [UInt8] {
    var spec = spec
    spec.sequence = spec.sequence &+ UInt32(i * size)
    spec.identification = spec.identification &+ UInt16(i)
    spec.payload = pattern(size, seed: i)
    return spec.build(checksum: checksum)
}

/// (first frame, frame count) of every item: the shape of a coalescer's answer.
func shape(_ outputs: [CoalescedOutput]) -> [[Int]] {
    outputs.map { [$0.item.firstFrame, $0.item.frameCount] }
}

/// One item of `attempt`: what `writeCoalesced` returned for it (nil for a pass-through item, which is not
/// written) and the frames it asked for, in order.
struct Attempt {
    var item: TCPCoalescer.Item
    var written: Int?
    /// Virtio header + merged frame when `written` is not nil.
    var bytes: [UInt8]?
    var asked: [Int]
    /// The item's frames as `nextMember(after:)` chains them.
    var members: [Int]
}

/// Runs a coalescer over `frames` and tries to write every coalesced item, keeping failures (`coalesce` records
/// them as issues).
func attempt(_ frames: [[UInt8]]) -> [Attempt] {
    var coalescer = TCPCoalescer(capacity: 256)
    coalescer.reset()
    for frame in frames { coalescer.add(frame.span.bytes) }
    var attempts: [Attempt] = []
    for i in 0..<coalescer.itemCount {
        let item = coalescer.item(i)
        var members = [item.firstFrame]
        while let next = coalescer.nextMember(after: members[members.count - 1]) { members.append(next) }
        var written: Int? = nil
        var bytes: [UInt8]? = nil
        var asked: [Int] = []
        if item.isCoalesced {
            var scratch = [UInt8](repeating: 0xEE, count: TCPCoalescer.defaultScratchCapacity)
            mutate(&scratch) { scratch in
                written = coalescer.writeCoalesced(item: i, into: &scratch) { index, body in
                    asked.append(index)
                    let frame = frames[index]
                    body(frame.span.bytes)
                }
            }
            if let written { bytes = Array(scratch[0..<written]) }
        }
        attempts.append(Attempt(item: item, written: written, bytes: bytes, asked: asked, members: members))
    }
    return attempts
}

@Suite("TCP coalescing")
struct CoalescerTests {
    static let flow = TCPFrameSpec(flags: [.ack], tcpOptions: TCPFrameSpec.timestamps(1000))

    struct Shape: CustomTestStringConvertible, Sendable {
        var name: String
        var spec: TCPFrameSpec
        var count: Int
        var testDescription: String { name }
    }

    static let shapes: [Shape] = [
        Shape(name: "IPv4", spec: flow, count: 8),
        Shape(name: "IPv4 + VLAN", spec: TCPFrameSpec(vlan: VLANTag(id: 42), payload: []), count: 3),
        Shape(name: "IPv6", spec: TCPFrameSpec(ipv6: true, tcpOptions: TCPFrameSpec.timestamps(3)), count: 5),
        Shape(
            name: "IPv6 + VLAN, PSH last",
            spec: TCPFrameSpec(vlan: VLANTag(id: 4094), ipv6: true, flags: [.ack, .psh]),
            count: 2
        ),
        Shape(name: "IPv4, ECE on every segment", spec: TCPFrameSpec(flags: [.ack, .ece]), count: 4),
    ]

    @Test(arguments: shapes)
    func inOrderSegmentsBecomeOneFrameTheKernelAccepts(_ shape: Shape) throws {
        let spec = shape.spec
        let (gso, segments) = burst(spec, count: shape.count, size: 1448, lastSize: 1000)
        let outputs = coalesce(segments)
        try #require(outputs.count == 1)
        let output = outputs[0]
        #expect(output.item.isCoalesced)
        #expect(output.item.frameCount == shape.count)

        // The virtio header: what tun's write path (virtio_net_hdr_to_skb) needs for a TSO frame.
        let header = output.header
        #expect(header.flags == .needsChecksum)
        #expect(header.gsoType == (spec.ipv6 ? .tcpv6 : .tcpv4))
        #expect(!header.ecn)
        #expect(header.gsoSize == 1448)
        #expect(Int(header.headerLength) == spec.headerLength)
        #expect(Int(header.checksumStart) == spec.transportOffset)
        #expect(header.checksumOffset == 16)
        #expect(header.bufferCount == 0)

        // The frame is exactly what the sender's stack handed to its TSO: same headers, lengths for the whole
        // payload, PSH as the last segment had it, and the TCP checksum field holding the pseudo-header sum.
        let frame = output.frame
        #expect(frame == gso)
        let n = spec.ethernetLength
        if spec.ipv6 {
            #expect(Int(readBE16(frame, n + 4)) == frame.count - n - 40)
        } else {
            #expect(Int(readBE16(frame, n + 2)) == frame.count - n)
            #expect(InternetChecksum.sum(frame.span.bytes.extracting(n..<(n + 20))) == 0xFFFF)
            #expect(readBE16(frame, n + 4) == spec.identification)
        }
        let t = spec.transportOffset
        #expect(readBE16(frame, t + 16) == spec.pseudoHeaderSum(tcpLength: frame.count - t))

        // Completing the checksum as the kernel would gives a valid segment.
        var completed = frame
        mutate(&completed) { #expect(ChecksumCompletion.complete(&$0, header: header) == nil) }
        #expect(checkedSegment(completed) != nil)

        // And re-segmenting it (as the kernel does when it forwards it) gives back the originals byte for byte.
        let again = try #require(segment(frame, header: header))
        #expect(again == segments)
    }

    @Test func singleSegmentsPassThroughWithoutDataValid() {
        let spec = Self.flow
        let frames = [frame(spec, 0), frame(spec, 2), frame(spec, 1)]  // out of order: nothing merges
        let outputs = coalesce(frames)
        #expect(shape(outputs) == [[0, 1], [1, 1], [2, 1]])
        for (i, output) in outputs.enumerated() {
            // `add` does not read payloads, so it never verified these: the kernel does.
            #expect(output.header == VirtioNetHeader())
            #expect(output.frame == frames[i])
        }
    }

    @Test func gapEndsTheRun() {
        let spec = Self.flow
        let outputs = coalesce([frame(spec, 0), frame(spec, 1), frame(spec, 3), frame(spec, 4)])
        #expect(shape(outputs) == [[0, 2], [2, 2]])
    }

    @Test func interleavedFlowsMergeSeparately() {
        let a = Self.flow
        var b = Self.flow
        b.sourcePort = 40_001
        var c = Self.flow
        c.ipv6 = true
        let frames = [frame(a, 0), frame(b, 0), frame(c, 0), frame(a, 1), frame(b, 1), frame(c, 1), frame(a, 2)]
        let outputs = coalesce(frames)
        #expect(shape(outputs) == [[0, 3], [1, 2], [2, 2]])
        #expect(outputs.allSatisfy { $0.item.isCoalesced })
    }

    @Test func openFlowLimitEvictsTheLeastRecentlyUsedFlow() {
        let flows = (0..<3).map { i -> TCPFrameSpec in
            var spec = Self.flow
            spec.sourcePort = 41_000 + UInt16(i)
            return spec
        }
        // Three flows, two slots: each new flow evicts the oldest, so only the last two can still merge.
        let frames = [
            frame(flows[0], 0), frame(flows[1], 0), frame(flows[2], 0), frame(flows[1], 1), frame(flows[2], 1),
            frame(flows[0], 1),
        ]
        let outputs = coalesce(frames, openFlowLimit: 2)
        #expect(shape(outputs) == [[0, 1], [1, 2], [2, 2], [5, 1]])
    }

    @Test func pshEndsTheRunAndNeverStartsOne() {
        var spec = Self.flow
        var frames = [frame(spec, 0)]
        spec.flags = [.ack, .psh]
        frames.append(frame(spec, 1))
        frames.append(frame(spec, 2))  // PSH first: stays alone
        spec.flags = [.ack]
        frames.append(frame(spec, 3))
        frames.append(frame(spec, 4))
        let outputs = coalesce(frames)
        #expect(shape(outputs) == [[0, 2], [2, 1], [3, 2]])
        let merged = outputs[0].frame
        #expect(merged[spec.transportOffset + 13] == 0x18)  // ACK | PSH kept from the last segment
    }

    struct Breaker: CustomTestStringConvertible, Sendable {
        var name: String
        /// Changes frame 2 of a four-frame run.
        var change: @Sendable (inout TCPFrameSpec) -> Void
        var testDescription: String { name }
    }

    static let breakers: [Breaker] = [
        Breaker(name: "FIN", change: { $0.flags = [.ack, .fin] }),
        Breaker(name: "RST", change: { $0.flags = [.ack, .rst] }),
        Breaker(name: "SYN", change: { $0.flags = [.ack, .syn] }),
        Breaker(name: "URG", change: { $0.flags = [.ack, .urg] }),
        Breaker(name: "CWR", change: { $0.flags = [.ack, .cwr] }),
        Breaker(name: "no ACK", change: { $0.flags = [] }),
        Breaker(name: "IPv4 options", change: { $0.ipOptions = [0x94, 0x04, 0, 0] }),
        Breaker(name: "new ACK number", change: { $0.acknowledgment += 1 }),
        Breaker(name: "new window", change: { $0.window += 1 }),
        Breaker(name: "new TSval", change: { $0.tcpOptions = TCPFrameSpec.timestamps(1001) }),
        Breaker(name: "new TTL", change: { $0.timeToLive = 63 }),
        Breaker(name: "new TOS", change: { $0.typeOfService = 0x02 }),
        Breaker(name: "DF cleared", change: { $0.dontFragment = false }),
        Breaker(name: "other VLAN", change: { $0.vlan = VLANTag(id: 9) }),
    ]

    @Test(arguments: breakers)
    func headerChangesAndForbiddenFlagsEndTheRun(_ breaker: Breaker) {
        let spec = Self.flow
        var changed = spec
        breaker.change(&changed)
        let frames = [frame(spec, 0), frame(spec, 1), frame(changed, 2), frame(spec, 3)]
        let outputs = coalesce(frames)
        // Frames 0-1 merge; frame 2 goes alone; frame 3 cannot join frame 2's item (its headers differ) nor the
        // closed first item (it is not contiguous with it), so it goes alone too.
        #expect(shape(outputs) == [[0, 2], [2, 1], [3, 1]])
        #expect(outputs[2].frame == frames[3])
    }

    @Test func badIPv4HeaderChecksumPassesThroughAndEndsTheRun() {
        let spec = Self.flow
        var badIP = frame(spec, 2)
        badIP[14 + 10] ^= 0x01
        let frames = [frame(spec, 0), frame(spec, 1), badIP, frame(spec, 3)]
        let outputs = coalesce(frames)
        // Frame 3 cannot join frame 0-1's item past the refused frame 2 of its flow.
        #expect(shape(outputs) == [[0, 2], [2, 1], [3, 1]])
        #expect(outputs[1].header == VirtioNetHeader())
        #expect(outputs[1].frame == badIP)
        #expect(outputs[2].header == VirtioNetHeader())
    }

    @Test func badTCPChecksumFieldJoinsTheRunAndFailsItsWrite() {
        let spec = Self.flow
        let frames = [frame(spec, 0), frame(spec, 1), frame(spec, 2, checksum: .corrupt), frame(spec, 3)]
        let attempts = attempt(frames)
        #expect(attempts.map { [$0.item.firstFrame, $0.item.frameCount] } == [[0, 4]])
        #expect(attempts.first?.written == nil, "never written as one frame the kernel would accept")
        #expect(attempts.first?.asked == [0, 1, 2], "stops at the bad member")
        #expect(attempts.first?.members == [0, 1, 2, 3])
    }

    @Test(arguments: [0, 2, 4], [false, true])
    func corruptPayloadByteFailsTheWriteOfItsRun(member: Int, ipv6: Bool) {
        var spec = Self.flow
        spec.ipv6 = ipv6
        var frames = (0..<5).map { frame(spec, $0) }
        frames[member][spec.headerLength + 501] ^= 0x20  // in the payload: `add` never looks there
        let clean = (0..<3).map { i -> [UInt8] in
            var other = spec
            other.sourcePort = 40_100
            return frame(other, i)
        }
        // The other flow interleaved: its item must come out as before.
        let attempts = attempt([frames[0], clean[0], frames[1], clean[1], frames[2], clean[2], frames[3], frames[4]])
        #expect(attempts.map { [$0.item.firstFrame, $0.item.frameCount] } == [[0, 5], [1, 3]])
        #expect(attempts.first?.written == nil)
        let positions = [0, 2, 4, 6, 7]
        #expect(attempts.first?.asked == Array(positions[...member]), "stops at the bad member")
        #expect(attempts.first?.members == positions)
        #expect(attempts.last?.bytes == coalesce(clean).first?.bytes, "the other flow's frame is as if alone")
    }

    @Test func shortSegmentEndsTheRunAndLongerOnesNeverFollow() {
        let spec = Self.flow
        var frames = [frame(spec, 0, size: 1000)]
        var next = spec
        next.sequence &+= 1000
        next.identification &+= 1
        next.payload = pattern(600)
        frames.append(next.build())  // short: ends the run
        next.sequence &+= 600
        next.identification &+= 1
        next.payload = pattern(1000)
        frames.append(next.build())  // contiguous but after a short one
        next.sequence &+= 1000
        next.identification &+= 1
        next.payload = pattern(1200)
        frames.append(next.build())  // longer than the run's gso_size
        let outputs = coalesce(frames)
        #expect(shape(outputs) == [[0, 2], [2, 1], [3, 1]])
        #expect(outputs[0].header.gsoSize == 1000)
    }

    @Test func ipv4IdentificationMustIncrementOrStayFixedUnderDF() {
        var spec = Self.flow
        func run(ids: [UInt16], dontFragment: Bool) -> [[Int]] {
            spec.dontFragment = dontFragment
            let frames = ids.enumerated().map { i, id -> [UInt8] in
                var s = spec
                s.sequence &+= UInt32(i * 500)
                s.identification = id
                s.payload = pattern(500)
                return s.build()
            }
            return shape(coalesce(frames))
        }
        #expect(run(ids: [7, 8, 9], dontFragment: false) == [[0, 3]])
        #expect(run(ids: [0xFFFF, 0, 1], dontFragment: true) == [[0, 3]])
        #expect(run(ids: [7, 7, 7], dontFragment: true) == [[0, 3]])
        #expect(run(ids: [7, 7, 7], dontFragment: false) == [[0, 1], [1, 1], [2, 1]])
        #expect(run(ids: [7, 8, 8], dontFragment: true) == [[0, 2], [2, 1]])
        #expect(run(ids: [7, 9], dontFragment: true) == [[0, 1], [1, 1]])
    }

    @Test func mergedFramesRespectIPAndScratchLimits() {
        let spec = Self.flow
        // 60 × 1448 bytes is past 65535: the first item stops at 45 segments (IPv4 total length 20 + 32 + 45 × 1448
        // = 65212; one more would be 66660).
        let segments = (0..<60).map { frame(spec, $0, size: 1448) }
        let outputs = coalesce(segments)
        #expect(shape(outputs) == [[0, 45], [45, 15]])
        #expect(outputs.allSatisfy { $0.bytes.count <= TCPCoalescer.defaultScratchCapacity })
        #expect(outputs.allSatisfy { Int(readBE16($0.frame, 14 + 2)) == $0.frame.count - 14 })

        let small = coalesce(segments, scratchCapacity: 5000)
        #expect(small.allSatisfy { $0.bytes.count <= 5000 })
        #expect(small.map(\.item.frameCount) == Array(repeating: 3, count: 20))
    }

    @Test func nonTCPFramesPassThroughUntouched() {
        let udp = PacketBuilder.ethernetIPv4UDP(
            destination: TCPFrameSpec.mac2,
            source: TCPFrameSpec.mac1,
            sourceIP: IPv4Address(10, 0, 0, 1),
            destinationIP: IPv4Address(10, 0, 0, 2),
            sourcePort: 1,
            destinationPort: 2,
            payload: pattern(100)
        )
        let arp = PacketBuilder.arpRequest(
            senderMAC: TCPFrameSpec.mac1,
            senderIP: IPv4Address(10, 0, 0, 1),
            targetIP: IPv4Address(10, 0, 0, 2)
        )
        let runt: [UInt8] = [1, 2, 3]
        let spec = Self.flow
        let frames = [frame(spec, 0), udp, arp, runt, frame(spec, 1)]
        let outputs = coalesce(frames)
        // Non-TCP frames do not belong to the flow, so they do not end its run.
        #expect(shape(outputs) == [[0, 2], [1, 1], [2, 1], [3, 1]])
        #expect(outputs[1...].map(\.frame) == [udp, arp, runt])
        #expect(outputs[1...].allSatisfy { $0.header == VirtioNetHeader() })
    }

    @Test func pureAcksPassThroughAndKeepFlowOrder() {
        let spec = Self.flow
        var ack = spec
        ack.payload = []
        let frames = [frame(spec, 0), ack.build(), frame(spec, 1), frame(spec, 2)]
        let outputs = coalesce(frames)
        // The ACK closes the run, so frame 1 cannot jump ahead of it into frame 0's item.
        #expect(shape(outputs) == [[0, 1], [1, 1], [2, 2]])
        #expect(outputs[1].header == VirtioNetHeader())
    }

    @Test func paddedSegmentsMergeWithoutTheirPadding() throws {
        let spec = Self.flow
        let frames = (0..<3).map { frame(spec, $0, size: 4) + [0, 0, 0, 0, 0, 0] }
        let outputs = coalesce(frames)
        try #require(shape(outputs) == [[0, 3]])
        #expect(outputs[0].frame.count == spec.headerLength + 12)
    }

    @Test func resetStartsAFreshBatchWithoutReallocating() {
        var coalescer = TCPCoalescer(capacity: 4)
        let spec = Self.flow
        let frames = (0..<4).map { frame(spec, $0) }
        for _ in 0..<3 {
            coalescer.reset()
            for f in frames { coalescer.add(f.span.bytes) }
            #expect(coalescer.count == 4)
            #expect(coalescer.itemCount == 1)
            #expect(coalescer.item(0).frameCount == 4)
        }
        #expect(coalescer.nextMember(after: 0) == 1)
        #expect(coalescer.nextMember(after: 3) == nil)
        #expect(coalescer.payloadRange(ofFrame: 2) == spec.headerLength..<(spec.headerLength + 1000))
    }
}

@Suite("Allocation")
struct AllocationTests {
    /// Runs every per-frame path (checksum completion, plan + segment, coalesce + write) `VXOFFLOAD_LOOPS` times
    /// (default 1). On its own it only checks the results; run it under valgrind with two loop counts and compare
    /// the "total heap usage" allocation counts to see that the loop allocates nothing (docs/offload.md).
    @Test func hotPathsRunWithoutPerFrameAllocation() throws {
        let loops = Int(Environment.value("VXOFFLOAD_LOOPS") ?? "") ?? 1
        let spec = TCPFrameSpec(vlan: VLANTag(id: 5), tcpOptions: TCPFrameSpec.timestamps(1), payload: pattern(20_000))
        let gso = spec.build(checksum: .partial)
        let header = spec.gsoHeader(mss: 1448)
        let segments = try #require(segment(gso, header: header))
        var partial = spec.build(checksum: .partial)
        let partialHeader = VirtioNetHeader(
            flags: .needsChecksum,
            checksumStart: UInt16(spec.transportOffset),
            checksumOffset: 16
        )
        var destination = [UInt8](repeating: 0, count: 2048)
        var scratch = [UInt8](repeating: 0, count: TCPCoalescer.defaultScratchCapacity)
        var coalescer = TCPCoalescer(capacity: 64)
        var written = 0
        var items = 0
        for _ in 0..<loops {
            mutate(&partial) { _ = ChecksumCompletion.complete(&$0, header: partialHeader) }
            let plan = try TCPSegmenter.plan(frame: gso.span.bytes, header: header, maximumSegmentSize: 1448).get()
            mutate(&destination) { d in
                for i in 0..<plan.segmentCount { written = plan.writeSegment(i, of: gso.span.bytes, into: &d) }
            }
            coalescer.reset()
            // An index loop: `for frame in segments` boxes each element in a debug build (unspecialized
            // IndexingIterator), which would show up as allocations of the test, not of the coalescer.
            var i = 0
            while i < segments.count {
                let frame = segments[i]
                coalescer.add(frame.span.bytes)
                i += 1
            }
            items = coalescer.itemCount
            mutate(&scratch) { s in
                written =
                    coalescer.writeCoalesced(item: 0, into: &s) { index, body in
                        let frame = segments[index]
                        body(frame.span.bytes)
                    } ?? 0
            }
        }
        #expect(items == 1)
        #expect(written == VirtioNetHeader.size + gso.count)
        #expect(Array(scratch[VirtioNetHeader.size..<written]) == gso)
    }
}

/// Reads the environment without Foundation.
enum Environment {
    static func value(_ name: String) -> String? {
        guard let pointer = getenv(name) else { return nil }
        return String(cString: pointer)
    }
}
