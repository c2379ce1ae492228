// UDPCoalescer: runs of datagrams become one USO frame that the kernel's segmentation (modelled by `resegment`
// below, after __udp_gso_segment + inet_gso_segment / ipv6_gso_segment) turns back into the same datagrams.

import Testing
import VXOffload
import VXPacket
import VXTestSupport

/// One's-complement sum of big-endian 16-bit words, written here independently of VXPacket's.
private func onesSum(_ bytes: [UInt8], _ initial: UInt32 = 0) -> UInt16 {
    var s = initial
    var i = 0
    while i + 1 < bytes.count {
        s += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
        i += 2
    }
    if i < bytes.count { s += UInt32(bytes[i]) << 8 }
    while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
    return UInt16(s)
}

private func store16(_ value: UInt16, _ bytes: inout [UInt8], _ at: Int) {
    bytes[at] = UInt8(value >> 8)
    bytes[at + 1] = UInt8(value & 0xFF)
}

/// One UDP frame to build; every field has a default so tests only name what they vary.
struct UDPFrameSpec {
    enum Checksum { case full, zero, corrupt }

    var vlan: UInt16? = nil
    var ipv6 = false
    var source: [UInt8] = [10, 1, 0, 1]
    var destination: [UInt8] = [10, 1, 0, 2]
    var source6: [UInt8] = [0xFD, 0] + [UInt8](repeating: 0, count: 13) + [1]
    var destination6: [UInt8] = [0xFD, 0] + [UInt8](repeating: 0, count: 13) + [2]
    var identification: UInt16 = 0xFFFE  // wraps within a run: identification arithmetic must wrap
    var dontFragment = true
    var moreFragments = false
    var timeToLive: UInt8 = 64
    var typeOfService: UInt8 = 0
    var flowLabel: UInt32 = 0x12345
    var ipOptions: [UInt8] = []
    var sourcePort: UInt16 = 40_000
    var destinationPort: UInt16 = 9000
    var checksum = Checksum.full
    var sourceMAC: [UInt8] = [2, 0, 0, 0, 0, 1]
    var payload: [UInt8] = []

    var networkOffset: Int { vlan == nil ? 14 : 18 }
    var transportOffset: Int { networkOffset + (ipv6 ? 40 : 20 + ipOptions.count) }

    func build() -> [UInt8] {
        let udpLength = 8 + payload.count
        var udp = be16(sourcePort) + be16(destinationPort) + be16(UInt16(udpLength)) + [0, 0] + payload
        let pseudo: [UInt8] =
            ipv6
            ? source6 + destination6 + be32(UInt32(udpLength)) + [0, 0, 0, 17]
            : source + destination + [0, 17] + be16(UInt16(udpLength))
        var field = ~onesSum(pseudo + udp)
        if field == 0 { field = 0xFFFF }
        switch checksum {
        case .full: break
        case .zero: field = 0
        case .corrupt: field ^= 0x0100
        }
        store16(field, &udp, 6)
        var ip: [UInt8]
        if ipv6 {
            ip = be32(6 << 28 | UInt32(typeOfService) << 20 | flowLabel) + be16(UInt16(udpLength)) + [17, timeToLive]
                + source6 + destination6
        } else {
            let headerLength = 20 + ipOptions.count
            let flags: UInt16 = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0)
            ip = [UInt8(0x40 | headerLength / 4), typeOfService] + be16(UInt16(headerLength + udpLength))
                + be16(identification) + be16(flags) + [timeToLive, 17, 0, 0] + source + destination + ipOptions
            store16(~onesSum(ip), &ip, 10)
        }
        var ethernet: [UInt8] = [2, 0, 0, 0, 0, 2] + sourceMAC
        if let vlan { ethernet += [0x81, 0x00] + be16(vlan) }
        ethernet += ipv6 ? [0x86, 0xDD] : [0x08, 0x00]
        return ethernet + ip + udp
    }
}

/// `count` datagrams of `spec`'s flow, `size` payload bytes each (the last `lastSize` if given), IPv4
/// identification incrementing from the spec's.
func datagrams(_ spec: UDPFrameSpec, count: Int, size: Int = 100, lastSize: Int? = nil) -> [[UInt8]] {
    (0..<count).map { i in
        var spec = spec
        spec.identification = spec.identification &+ UInt16(i)
        spec.payload = pattern(i == count - 1 ? (lastSize ?? size) : size, seed: i)
        return spec.build()
    }
}

/// What the kernel makes of a USO write: checks the virtio header and the merged frame's partial checksum, then
/// cuts it at gso_size as __udp_gso_segment does (headers copied, IPv4 identification first + i, lengths and
/// checksums per datagram). Records an issue and returns nil when the write is not one tun would take.
func resegment(_ write: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> [[UInt8]]? {
    guard let header = VirtioNetHeader.parse(write.span.bytes), header.gsoType == .udpL4,
        header.flags == .needsChecksum, header.checksumOffset == 6
    else {
        Issue.record("not a UDP_L4 NEEDS_CSUM header", sourceLocation: sourceLocation)
        return nil
    }
    let frame = Array(write[VirtioNetHeader.size...])
    let udp = Int(header.checksumStart)
    let headerLength = Int(header.headerLength)
    let gso = Int(header.gsoSize)
    let network = frame[12] == 0x81 ? 18 : 14
    let ipv6 = frame[network] >> 4 == 6
    guard headerLength == udp + 8, udp == network + (ipv6 ? 40 : 20) else {
        Issue.record("hdr_len/csum_start do not point at the UDP header", sourceLocation: sourceLocation)
        return nil
    }
    let payload = Array(frame[headerLength...])
    let segments = (payload.count + gso - 1) / gso
    guard segments >= 2, segments <= UDPCoalescer.maximumSegments else {
        Issue.record("\(segments) segments", sourceLocation: sourceLocation)
        return nil
    }
    let addresses = ipv6 ? Array(frame[(network + 8)..<(network + 40)]) : Array(frame[(network + 12)..<(network + 20)])
    func pseudo(_ length: Int) -> [UInt8] {
        ipv6 ? addresses + be32(UInt32(length)) + [0, 0, 0, 17] : addresses + [0, 17] + be16(UInt16(length))
    }
    // The merged frame's fields: lengths covering everything, checksum field = the pseudo-header sum (not
    // complemented) over the merged UDP length.
    #expect(Int(readBE16(frame, udp + 4)) == frame.count - udp, sourceLocation: sourceLocation)
    #expect(readBE16(frame, udp + 6) == onesSum(pseudo(frame.count - udp)), sourceLocation: sourceLocation)
    if ipv6 {
        #expect(Int(readBE16(frame, network + 4)) == frame.count - udp, sourceLocation: sourceLocation)
    } else {
        #expect(Int(readBE16(frame, network + 2)) == frame.count - network, sourceLocation: sourceLocation)
        #expect(onesSum(Array(frame[network..<udp])) == 0xFFFF, "IPv4 header checksum", sourceLocation: sourceLocation)
    }
    let firstID = readBE16(frame, network + 4)
    return (0..<segments).map { i in
        let chunk = Array(payload[(i * gso)..<min(payload.count, (i + 1) * gso)])
        var out = Array(frame[0..<headerLength]) + chunk
        let udpLength = 8 + chunk.count
        if ipv6 {
            store16(UInt16(udpLength), &out, network + 4)
        } else {
            store16(UInt16(20 + udpLength), &out, network + 2)
            store16(firstID &+ UInt16(i), &out, network + 4)
            store16(0, &out, network + 10)
            store16(~onesSum(Array(out[network..<udp])), &out, network + 10)
        }
        store16(UInt16(udpLength), &out, udp + 4)
        store16(0, &out, udp + 6)
        var field = ~onesSum(pseudo(udpLength) + Array(out[udp...]))
        if field == 0 { field = 0xFFFF }
        store16(field, &out, udp + 6)
        return out
    }
}

/// One item of `coalesceUDP`: its shape, members, and for a coalesced item what `writeCoalesced` wrote.
struct UDPAttempt {
    var item: UDPCoalescer.Item
    var members: [Int]
    var asked: [Int]
    /// Virtio header + merged frame, nil when the item is not coalesced or its write failed.
    var bytes: [UInt8]?
}

/// Runs a UDP coalescer over `frames` (all must be taken) and writes every coalesced item.
func coalesceUDP(
    _ frames: [[UInt8]], capacity: Int = 256, scratchCapacity: Int = UDPCoalescer.defaultScratchCapacity,
    sourceLocation: SourceLocation = #_sourceLocation
) -> [UDPAttempt] {
    var coalescer = UDPCoalescer(capacity: capacity, scratchCapacity: scratchCapacity)
    coalescer.reset()
    for frame in frames {
        let taken = coalescer.add(frame.span.bytes)
        #expect(taken, "a UDP frame was refused", sourceLocation: sourceLocation)
    }
    var attempts: [UDPAttempt] = []
    for i in 0..<coalescer.itemCount {
        let item = coalescer.item(i)
        var members = [item.firstFrame]
        while let next = coalescer.nextMember(after: members[members.count - 1]) { members.append(next) }
        var asked: [Int] = []
        var bytes: [UInt8]? = nil
        if item.isCoalesced {
            var scratch = [UInt8](repeating: 0xEE, count: scratchCapacity)
            var written: Int? = nil
            mutate(&scratch) { scratch in
                written = coalescer.writeCoalesced(item: i, into: &scratch) { index, body in
                    asked.append(index)
                    let frame = frames[index]
                    body(frame.span.bytes)
                }
            }
            if let written {
                #expect(written == VirtioNetHeader.size + item.length, sourceLocation: sourceLocation)
                bytes = Array(scratch[0..<written])
            }
        } else {
            #expect(
                item.header == .plain && item.length == frames[item.firstFrame].count, sourceLocation: sourceLocation)
        }
        attempts.append(UDPAttempt(item: item, members: members, asked: asked, bytes: bytes))
    }
    return attempts
}

func udpShape(_ attempts: [UDPAttempt]) -> [[Int]] { attempts.map { [$0.item.firstFrame, $0.item.frameCount] } }

@Suite("UDP coalescing")
struct UDPCoalescerTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var name: String
        var spec: UDPFrameSpec
        var count: Int
        var size: Int
        var lastSize: Int?
        var testDescription: String { name }
    }

    static let shapes: [Shape] = [
        Shape(name: "IPv4, 64-byte frames", spec: UDPFrameSpec(), count: 32, size: 18, lastSize: nil),
        Shape(name: "IPv4, last shorter", spec: UDPFrameSpec(), count: 5, size: 1000, lastSize: 7),
        Shape(name: "IPv4 + VLAN, odd size", spec: UDPFrameSpec(vlan: 42), count: 7, size: 333, lastSize: 1),
        Shape(name: "IPv4 without DF", spec: UDPFrameSpec(dontFragment: false), count: 4, size: 50, lastSize: nil),
        Shape(name: "IPv6", spec: UDPFrameSpec(ipv6: true), count: 6, size: 1200, lastSize: 600),
        Shape(name: "IPv6 + VLAN", spec: UDPFrameSpec(vlan: 4094, ipv6: true), count: 128, size: 10, lastSize: 3),
    ]

    @Test(arguments: shapes)
    func runBecomesOneUSOFrameThatResegmentsToTheSameDatagrams(_ shape: Shape) throws {
        let frames = datagrams(shape.spec, count: shape.count, size: shape.size, lastSize: shape.lastSize)
        let attempts = coalesceUDP(frames)
        #expect(udpShape(attempts) == [[0, shape.count]])
        let attempt = try #require(attempts.first)
        #expect(attempt.members == Array(0..<shape.count))
        #expect(attempt.asked == Array(0..<shape.count))
        let bytes = try #require(attempt.bytes)
        let header = try #require(parseHeader(bytes))
        #expect(
            header
                == VirtioNetHeader(
                    flags: .needsChecksum, gsoType: .udpL4, headerLength: UInt16(shape.spec.transportOffset + 8),
                    gsoSize: UInt16(shape.size), checksumStart: UInt16(shape.spec.transportOffset),
                    checksumOffset: 6))
        #expect(resegment(bytes) == frames)
    }

    struct Breaker: CustomTestStringConvertible, Sendable {
        var name: String
        /// Frames 0 ... 3 of one flow, frame 2 changed.
        var change: @Sendable (inout UDPFrameSpec) -> Void
        var expected: [[Int]]
        var testDescription: String { name }
    }

    /// The shape when frame 2 cannot join and cannot be joined: the first item closes at frame 2, and frame 3
    /// starts an item of its own (its header matches the first two, but its flow's item was closed).
    static let split = [[0, 2], [2, 1], [3, 1]]

    static let breakers: [Breaker] = [
        Breaker(name: "other destination port (another flow)", change: { $0.destinationPort = 9001 },
                // Frame 3 would join frame 0's item but for its identification: first + 3 where + 2 is next.
                expected: split),
        Breaker(name: "TTL", change: { $0.timeToLive = 63 }, expected: split),
        Breaker(name: "TOS", change: { $0.typeOfService = 4 }, expected: split),
        Breaker(name: "DF cleared", change: { $0.dontFragment = false }, expected: split),
        Breaker(name: "source MAC", change: { $0.sourceMAC = [2, 0, 0, 0, 0, 9] }, expected: split),
        Breaker(name: "VLAN tag", change: { $0.vlan = 7 }, expected: split),
        Breaker(name: "zero checksum", change: { $0.checksum = .zero }, expected: split),
        Breaker(name: "fragment (MF)", change: { $0.moreFragments = true }, expected: split),
        Breaker(name: "IPv4 options", change: { $0.ipOptions = [1, 1, 1, 0] }, expected: split),
        // A longer datagram cannot follow: it starts an item of its own, which frame 3 (shorter) then ends.
        Breaker(name: "longer payload mid-run", change: { $0.payload = pattern(101) }, expected: [[0, 2], [2, 2]]),
        // A shorter one joins and ends the run: nothing may follow it.
        Breaker(name: "shorter payload mid-run", change: { $0.payload = pattern(99) }, expected: [[0, 3], [3, 1]]),
        // first + 4 where first + 2 is due; frame 3 (first + 3) is then neither next nor equal (DF) after it.
        Breaker(name: "identification gap", change: { $0.identification &+= 2 }, expected: split),
    ]

    @Test(arguments: breakers)
    func headerChangesEndTheRun(_ breaker: Breaker) {
        var frames = datagrams(UDPFrameSpec(), count: 4, size: 100)
        var spec = UDPFrameSpec()
        spec.identification = spec.identification &+ 2
        spec.payload = pattern(100, seed: 2)
        breaker.change(&spec)
        frames[2] = spec.build()
        let attempts = coalesceUDP(frames)
        #expect(udpShape(attempts) == breaker.expected)
        // Whatever merged still re-segments to its members.
        for attempt in attempts where attempt.item.isCoalesced {
            let bytes = attempt.bytes ?? []
            #expect(resegment(bytes) == attempt.members.map { frames[$0] })
        }
    }

    @Test func ipv4IdentificationMustIncrementOrStayFixedUnderDF() throws {
        func run(ids: [UInt16], dontFragment: Bool) -> [UDPAttempt] {
            let frames = ids.enumerated().map { i, id in
                var spec = UDPFrameSpec(identification: id, dontFragment: dontFragment)
                spec.payload = pattern(40, seed: i)
                return spec.build()
            }
            return coalesceUDP(frames)
        }
        #expect(udpShape(run(ids: [7, 8, 9, 10], dontFragment: false)) == [[0, 4]])
        #expect(udpShape(run(ids: [7, 7, 7, 7], dontFragment: false)) == [[0, 1], [1, 1], [2, 1], [3, 1]])
        #expect(udpShape(run(ids: [7, 8, 8, 9], dontFragment: true)) == [[0, 2], [2, 2]])
        #expect(udpShape(run(ids: [0, 0, 1], dontFragment: true)) == [[0, 2], [2, 1]])
        // Fixed IDs under DF (an unconnected socket's): merged, and the kernel's segmentation numbers them
        // first + i; everything else comes back byte for byte.
        let fixed = run(ids: [0, 0, 0], dontFragment: true)
        #expect(udpShape(fixed) == [[0, 3]])
        let merged = try #require(fixed.first?.bytes)
        let out = resegment(merged)
        let expected = (0..<3).map { i in
            var spec = UDPFrameSpec(identification: UInt16(i), dontFragment: true)
            spec.payload = pattern(40, seed: i)
            return spec.build()
        }
        #expect(out == expected)
    }

    @Test func segmentLimitIsTheKernels128() {
        let frames = datagrams(UDPFrameSpec(), count: 130, size: 8)
        let attempts = coalesceUDP(frames)
        #expect(udpShape(attempts) == [[0, 128], [128, 2]])
        #expect(resegment(attempts[0].bytes ?? []) == Array(frames[0..<128]))
        #expect(resegment(attempts[1].bytes ?? []) == Array(frames[128..<130]))
    }

    @Test func mergedPacketFitsIPLengthAndScratch() {
        // 65 × 1000 + 28 = 65 028 fits the IPv4 total length, 66 × 1000 + 28 does not.
        let frames = datagrams(UDPFrameSpec(), count: 70, size: 1000)
        #expect(udpShape(coalesceUDP(frames)) == [[0, 65], [65, 5]])
        // A scratch of header + frame with room for 10 payloads of 100.
        let small = datagrams(UDPFrameSpec(), count: 12, size: 100)
        let scratch = VirtioNetHeader.size + 14 + 20 + 8 + 10 * 100
        #expect(udpShape(coalesceUDP(small, scratchCapacity: scratch)) == [[0, 10], [10, 2]])
        #expect(udpShape(coalesceUDP(small, scratchCapacity: scratch - 1)) == [[0, 9], [9, 3]])
    }

    @Test(arguments: [0, 2, 4], [false, true])
    func corruptMemberFailsTheWriteOfItsRun(member: Int, ipv6: Bool) {
        var frames = datagrams(UDPFrameSpec(ipv6: ipv6), count: 5, size: 100)
        frames[member][frames[member].count - 30] ^= 0x04  // a payload bit flipped after the checksum was made
        let attempts = coalesceUDP(frames)
        #expect(udpShape(attempts) == [[0, 5]], "a bad datagram joins (the check is in the copy)")
        #expect(attempts[0].bytes == nil, "and its run is not written merged")
        #expect(attempts[0].asked == Array(0...member), "the write stops at the bad member")
        #expect(attempts[0].members == Array(0..<5), "the members to send one by one")
    }

    @Test func interleavedFlowsMergeSeparatelyInTheirOwnOrder() {
        let a = datagrams(UDPFrameSpec(sourcePort: 1), count: 4, size: 64)
        let b = datagrams(UDPFrameSpec(ipv6: true, sourcePort: 2), count: 4, size: 64)
        var frames: [[UInt8]] = []
        for i in 0..<4 { frames += [a[i], b[i]] }
        let attempts = coalesceUDP(frames)
        #expect(udpShape(attempts) == [[0, 4], [1, 4]])
        #expect(attempts[0].members == [0, 2, 4, 6])
        #expect(attempts[1].members == [1, 3, 5, 7])
        #expect(resegment(attempts[0].bytes ?? []) == a)
        #expect(resegment(attempts[1].bytes ?? []) == b)
    }

    @Test func frameOfAFlowThatCannotJoinClosesItsItem() {
        // Flow a: two datagrams, one with no checksum, then two more: the last two must not join the first
        // item, or they would overtake the unchecksummed one.
        var frames = datagrams(UDPFrameSpec(), count: 4, size: 64)
        var zero = UDPFrameSpec(checksum: .zero)
        zero.identification = zero.identification &+ 1
        zero.payload = pattern(64, seed: 1)
        frames[1] = zero.build()
        var spec = UDPFrameSpec()
        spec.identification = spec.identification &+ 2
        spec.payload = pattern(64, seed: 2)
        frames[2] = spec.build()
        #expect(udpShape(coalesceUDP(frames)) == [[0, 1], [1, 1], [2, 2]])
        // A fragment between the same addresses (ports unknown) closes every flow between them.
        var fragment = UDPFrameSpec(moreFragments: true)
        fragment.payload = pattern(64)
        let other = datagrams(UDPFrameSpec(sourcePort: 7), count: 2, size: 64)
        let mixed = [frames[0], other[0], fragment.build(), other[1]]
        #expect(udpShape(coalesceUDP(mixed)) == [[0, 1], [1, 1], [2, 1], [3, 1]])
    }

    @Test func nonUDPFramesAreRefusedAndRecordNothing() {
        var coalescer = UDPCoalescer(capacity: 8)
        coalescer.reset()
        let tcp = TCPFrameSpec(payload: pattern(10)).build()
        let arp = PacketBuilder.ethernet(
            destination: .broadcast, source: TCPFrameSpec.mac1, vlan: nil, etherType: .arp,
            payload: [UInt8](repeating: 0, count: 28))
        let tookTCP = coalescer.add(tcp.span.bytes)
        let tookARP = coalescer.add(arp.span.bytes)
        #expect(!tookTCP && !tookARP)
        // TCP is refused on its protocol byte before any IP parse: over IPv6, behind a VLAN tag, and with an IPv4
        // header too short to parse (nothing about it is UDP either way).
        var tcp6 = TCPFrameSpec(payload: pattern(10))
        tcp6.ipv6 = true
        var tagged = TCPFrameSpec(payload: pattern(10))
        tagged.vlan = VLANTag(id: 5)
        let truncated = Array(tcp.prefix(14 + 12))
        let refused = [tcp6.build(), tagged.build(), truncated].map { coalescer.add($0.span.bytes) }
        #expect(refused == [false, false, false])
        let before = (coalescer.count, coalescer.itemCount)
        #expect(before == (0, 0))
        let udp = datagrams(UDPFrameSpec(), count: 1)[0]
        let tookUDP = coalescer.add(udp.span.bytes)
        #expect(tookUDP)
        let after = (coalescer.count, coalescer.itemCount, coalescer.item(0).isCoalesced)
        #expect(after == (1, 1, false))
    }

    /// Runs add + writeCoalesced `VXOFFLOAD_LOOPS` times (default 1), as `hotPathsRunWithoutPerFrameAllocation`
    /// does for TCP: under valgrind with two loop counts, the heap allocation counts must be equal.
    @Test func coalescingRunsWithoutPerFrameAllocation() throws {
        let loops = Int(Environment.value("VXOFFLOAD_LOOPS") ?? "") ?? 1
        let frames = datagrams(UDPFrameSpec(vlan: 5), count: 40, size: 18)
        var scratch = [UInt8](repeating: 0, count: UDPCoalescer.defaultScratchCapacity)
        var coalescer = UDPCoalescer(capacity: 64)
        var written = 0
        var items = 0
        for _ in 0..<loops {
            coalescer.reset()
            var i = 0  // an index loop: `for in` boxes elements in a debug build (see the TCP test)
            while i < frames.count {
                let frame = frames[i]
                _ = coalescer.add(frame.span.bytes)
                i += 1
            }
            items = coalescer.itemCount
            mutate(&scratch) { s in
                written =
                    coalescer.writeCoalesced(item: 0, into: &s) { index, body in
                        let frame = frames[index]
                        body(frame.span.bytes)
                    } ?? 0
            }
        }
        #expect(items == 1)
        #expect(resegment(Array(scratch[0..<written])) == frames)
    }
}
