// The TCP coalescer against random traffic, with an oracle instead of expected shapes: a merged frame must be what
// its members were. Interleaved flows (IPv4, IPv6, 802.1Q) send segments of random sizes with gaps,
// retransmissions, flag and header changes and corrupt checksums mixed in; whatever the coalescer merges, the
// kernel's resegmentation of the merged frame must give back its members (every header field but the IPv4 ID and the
// checksums, and every payload byte), each flow's frames must come out once each and in their order, and a merge
// must be refused exactly when one of its members has a bad checksum. The hand-written cases in CoalescerTests name
// each rule; this checks that their combinations never merge two segments the receiver would have told apart.

import Testing
import VXOffload
import VXPacket
import VXTestSupport

/// One random flow's sender: its headers, and where its sequence and IPv4 ID stand.
private struct RandomFlow {
    var spec: TCPFrameSpec
    var next: UInt32
    var random: SplitMix64

    init(index: Int, random: inout SplitMix64) {
        let ipv6 = Bool.random(using: &random)
        let vlan = Int.random(in: 0..<4, using: &random) == 0 ? VLANTag(id: 100) : nil
        spec = TCPFrameSpec(
            vlan: vlan, ipv6: ipv6, identification: UInt16.random(in: 0...0xFFFF, using: &random),
            sourcePort: UInt16(40_000 + index), sequence: UInt32.random(in: 0...UInt32.max, using: &random),
            tcpOptions: TCPFrameSpec.timestamps(1000))
        next = spec.sequence
        self.random = SplitMix64(seed: random.next())
    }

    /// The flow's next frame, usually the next full segment in order; `(frame, corrupt)`.
    mutating func nextFrame(mss: Int) -> (frame: [UInt8], corrupt: Bool) {
        var segment = spec
        let size: Int
        switch Int.random(in: 0..<20, using: &random) {
        case 0: size = 0  // a pure ACK
        case 1, 2: size = Int.random(in: 1..<mss, using: &random)  // a short one, which closes a run
        default: size = mss
        }
        if random.chance(5) { next &+= UInt32(Int.random(in: 1...3000, using: &random)) }  // a gap (a loss)
        if random.chance(5) { next &-= UInt32(mss) }  // a retransmission
        segment.sequence = next
        segment.payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) }
        if random.chance(8) { RandomFlow.change(&segment, using: &random) }
        if random.chance(5) { segment.flags.insert(.psh) }
        let corrupt = random.chance(3)
        next &+= UInt32(size)
        spec.identification &+= 1
        return (segment.build(checksum: corrupt ? .corrupt : .full), corrupt)
    }

    /// One header change that must keep the segment out of its neighbours' merge: one of CoalescerTests.breakers
    /// (each rule that ends a run), or an IPv4 ID that neither counts up nor stays.
    static func change(_ spec: inout TCPFrameSpec, using random: inout SplitMix64) {
        let breakers = CoalescerTests.breakers
        let pick = Int.random(in: 0...breakers.count, using: &random)
        if pick < breakers.count {
            breakers[pick].change(&spec)
        } else {
            spec.identification &+= 7
        }
    }
}

/// `frame` with the fields resegmentation may legitimately rewrite set to zero: the IPv4 ID and header checksum,
/// and the TCP checksum.
private func comparable(_ frame: [UInt8]) -> [UInt8] {
    var frame = frame
    guard case .success(let ethernet) = EthernetHeader.parse(frame.span.bytes) else { return frame }
    var transport = ethernet.length + 40
    if ethernet.etherType == .ipv4 {
        let ip = ethernet.length
        transport = ip + Int(frame[ip] & 0x0F) * 4
        for offset in [4, 5, 10, 11] { frame[ip + offset] = 0 }
    }
    frame[transport + 16] = 0
    frame[transport + 17] = 0
    return frame
}

/// What one coalescer item came to: its frames, whether it was a merge, and whether that merge was written.
private struct Run {
    var members: [Int]
    var isCoalesced: Bool
    var written: Bool
}

/// The checks every coalescer's answer must pass whatever it merged: each frame comes out exactly once, each flow's
/// frames in the order they went in, a merge holds one flow, and its write fails exactly when a member is corrupt
/// (the worker then sends the frames alone, so the receiver's checksum drops the bad one).
private func checkRuns(
    _ runs: [Run], flowOf: [Int], corrupt: Set<Int>, sourceLocation: SourceLocation = #_sourceLocation
) {
    let members = runs.flatMap(\.members)
    #expect(members.sorted() == Array(flowOf.indices), sourceLocation: sourceLocation)
    for flow in Set(flowOf) {
        #expect(
            members.filter { flowOf[$0] == flow } == flowOf.indices.filter { flowOf[$0] == flow },
            "flow \(flow) out of order", sourceLocation: sourceLocation)
    }
    for run in runs where run.isCoalesced {
        #expect(Set(run.members.map { flowOf[$0] }).count == 1, "a merge across flows: \(run.members)",
                sourceLocation: sourceLocation)
        let hasCorrupt = run.members.contains { corrupt.contains($0) }
        #expect(run.written != hasCorrupt, "members \(run.members), corrupt \(corrupt)", sourceLocation: sourceLocation)
    }
}

@Suite("TCP coalescing, random traffic against an oracle")
struct CoalescerPropertyTests {
    @Test("merged frames resegment into their members; flows keep their order; corrupt members refuse the write",
          arguments: Array(1...40) as [UInt64])
    func randomTrafficNeverMergesWhatTheReceiverWouldTellApart(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let mss = [536, 1000, 1448][Int(seed % 3)]
        var flows = (0..<Int.random(in: 1...3, using: &random)).map { RandomFlow(index: $0, random: &random) }
        var frames: [[UInt8]] = []
        var flowOf: [Int] = []
        var corrupt: Set<Int> = []
        for _ in 0..<Int.random(in: 20...120, using: &random) {
            let flow = Int.random(in: 0..<flows.count, using: &random)
            let (frame, bad) = flows[flow].nextFrame(mss: mss)
            if bad { corrupt.insert(frames.count) }
            frames.append(frame)
            flowOf.append(flow)
        }

        let attempts = attempt(frames)
        checkRuns(
            attempts.map { Run(members: $0.members, isCoalesced: $0.item.isCoalesced, written: $0.written != nil) },
            flowOf: flowOf, corrupt: corrupt)
        for attempt in attempts where attempt.item.isCoalesced {
            let run = attempt.members
            guard let bytes = attempt.bytes else { continue }
            let header = try #require(parseHeader(bytes))
            let merged = Array(bytes[VirtioNetHeader.size...])
            let resegmented = try #require(segment(merged, header: header), "members \(run)")
            try #require(resegmented.count == run.count, "members \(run) resegment into \(resegmented.count)")
            for (piece, member) in zip(resegmented, run) {
                #expect(comparable(piece) == comparable(frames[member]), "member \(member) of \(run)")
                #expect(checkedSegment(piece) != nil)
            }
        }
    }
}

/// UDPCoalescerTests.breakers (each rule that ends a run) that leave the datagram in its flow. One that changes a
/// port makes it another flow's, which may rightly come out ahead of its old flow's open item: the per-flow order
/// check would take that for a reordering.
private let udpBreakersWithinTheFlow = UDPCoalescerTests.breakers.filter { breaker in
    let original = UDPFrameSpec()
    var changed = original
    breaker.change(&changed)
    return changed.sourcePort == original.sourcePort && changed.destinationPort == original.destinationPort
        && changed.source == original.source && changed.destination == original.destination
        && changed.source6 == original.source6 && changed.destination6 == original.destination6
}

/// The UDP coalescer against the same kind of random traffic: interleaved flows of datagrams with random sizes
/// (a shorter one ends a run), the header changes of UDPCoalescerTests.breakers, and corrupt checksums.
/// `resegment`, the model of the kernel's USO segmentation written independently in UDPCoalescerTests, must turn
/// every merged write back into its members byte for byte (IPv4 IDs count up within a run, as the kernel rewrites
/// them, so they are generated that way).
@Suite("UDP coalescing, random traffic against an oracle")
struct UDPCoalescerPropertyTests {
    @Test("merged writes resegment into their members; flows keep their order; corrupt members refuse the write",
          arguments: Array(1...40) as [UInt64])
    func randomDatagramsNeverMergeWhatTheReceiverWouldTellApart(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let size = [18, 300, 1200][Int(seed % 3)]
        var specs = (0..<Int.random(in: 1...3, using: &random)).map { index in
            UDPFrameSpec(
                vlan: random.chance(25) ? 100 : nil, ipv6: random.chance(50),
                identification: UInt16.random(in: 0...0xFFFF, using: &random), sourcePort: UInt16(40_000 + index))
        }
        var frames: [[UInt8]] = []
        var flowOf: [Int] = []
        var corrupt: Set<Int> = []
        for _ in 0..<Int.random(in: 20...150, using: &random) {
            let flow = Int.random(in: 0..<specs.count, using: &random)
            var spec = specs[flow]
            specs[flow].identification &+= 1
            let length = random.chance(10) ? Int.random(in: 0..<size, using: &random) : size
            spec.payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            if random.chance(8) { udpBreakersWithinTheFlow.randomElement(using: &random)!.change(&spec) }
            if random.chance(3) {
                spec.checksum = .corrupt
                corrupt.insert(frames.count)
            }
            frames.append(spec.build())
            flowOf.append(flow)
        }

        let attempts = coalesceUDP(frames)
        checkRuns(
            attempts.map { Run(members: $0.members, isCoalesced: $0.item.isCoalesced, written: $0.bytes != nil) },
            flowOf: flowOf, corrupt: corrupt)
        for attempt in attempts where attempt.item.isCoalesced {
            let run = attempt.members
            guard let bytes = attempt.bytes else { continue }
            let resegmented = try #require(resegment(bytes), "members \(run)")
            #expect(resegmented == run.map { frames[$0] }, "members \(run)")
        }
    }
}
