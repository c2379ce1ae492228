// Malformed input at random, through the whole worker: valid frames of every shape the offload paths handle (TSO
// bursts over IPv4, IPv6 and 802.1Q, partial checksums, tunnel datagrams alone and in GRO reads) are
// mutated (bits flipped, fields set to edge values, virtio-net headers and GRO segment sizes bent, frames cut short
// or padded) and fed to a worker on the MemoryEngine in mixed batches. Whatever it cannot use it must drop and
// count: no trap (a trap here is a remote peer or a container stopping the switch), no buffer lost to the pool,
// every TAP write with its virtio-net header, every datagram to the peer well formed, and valid traffic still
// forwarded afterwards.
//
// The generator is seeded, so a failure replays: the test's arguments are the seeds, and VX_FUZZ_ITERATIONS
// (default 3000 per seed) makes a longer campaign, e.g.
//   VX_FUZZ_ITERATIONS=1000000 swift test --filter MalformedInputFuzz
// (3 million cases of the first test and 2 million of the second passed so, in 2026-11). A trap names no input, so
// VX_FUZZ_TRACE=1 prints each iteration's seed and inputs before running it.

import Testing
import VXDataplane
import VXForwarding
import VXIO
import VXOffload
import VXPacket
import VXTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// One input to the worker: bytes a TAP read or the tunnel socket would deliver.
struct FuzzInput: CustomStringConvertible {
    enum Source {
        case port(Int)
        /// A datagram (`segmentSize` 0) or a GRO read cut at `segmentSize`.
        case tunnel(segmentSize: UInt32)
    }
    var source: Source
    var bytes: [UInt8]
    /// Which corpus entry it was made from.
    var origin: String

    var description: String {
        let head = bytes.prefix(96).map { String($0, radix: 16) }.joined(separator: " ")
        return "\(origin) \(source) \(bytes.count) bytes: \(head)"
    }
}

/// Valid inputs of every shape, for the harness's topology: macA on p0, macB on p1, macRemote behind the peer.
enum FuzzCorpus {
    /// A TSO burst as a virtio TAP delivers it: header, then the whole frame with a partial checksum.
    static func tsoRead(to destination: MACAddress, ipv6: Bool, vlan: VLANTag?, payload: Int, mss: Int) -> [UInt8] {
        let spec = TCPFrameSpec(
            sourceMAC: macA, destinationMAC: destination, vlan: vlan, ipv6: ipv6, sequence: 1000, flags: [.ack, .psh],
            tcpOptions: TCPFrameSpec.timestamps(99), payload: pattern(payload))
        let header = VirtioNetHeader(
            flags: .needsChecksum, gsoType: ipv6 ? .tcpv6 : .tcpv4, headerLength: UInt16(spec.headerLength),
            gsoSize: UInt16(mss), checksumStart: UInt16(spec.transportOffset), checksumOffset: 16)
        return virtioBytes(header) + spec.build(checksum: .partial)
    }

    /// Consecutive segments of one flow from macRemote to macA, as the peer's datagrams carry them.
    static func remoteSegments(ipv6: Bool, count: Int, size: Int, start: UInt32) -> [[UInt8]] {
        (0..<count).map { index in
            let spec = TCPFrameSpec(
                sourceMAC: macRemote, destinationMAC: macA, ipv6: ipv6,
                identification: UInt16(truncatingIfNeeded: 100 + index), sequence: start &+ UInt32(index * size),
                flags: index == count - 1 ? [.ack, .psh] : [.ack],
                tcpOptions: TCPFrameSpec.timestamps(5), payload: pattern(size, seed: index))
            return spec.build()
        }
    }

    static func vxlan(_ inner: [UInt8]) -> [UInt8] {
        PacketBuilder.vxlanDatagram(vni: OffloadHarness.vni, inner: inner)
    }

    /// Runs of inner TCP segments the peer sends, for mutations made inside the inner frames, whose checksums are
    /// then made valid again, so that they pass verification and reach the merge logic.
    static func innerRuns() -> [(String, [[UInt8]])] {
        [false, true].map { ipv6 in
            ("inner-tcp-\(ipv6 ? "v6" : "v4")", remoteSegments(ipv6: ipv6, count: 6, size: 1200, start: 77))
        }
    }

    /// Every seed input, named.
    static func all() -> [(String, FuzzInput.Source, [UInt8])] {
        var seeds: [(String, FuzzInput.Source, [UInt8])] = []
        for ipv6 in [false, true] {
            let family = ipv6 ? "v6" : "v4"
            // To the peer (segmented, GSO sends), to a virtio TAP (passed whole), flooded (also to the plain TAP).
            let toPeer = tsoRead(to: macRemote, ipv6: ipv6, vlan: nil, payload: 9000, mss: 1398)
            let toVirtio = tsoRead(to: macB, ipv6: ipv6, vlan: nil, payload: 5000, mss: 1448)
            let flooded = tsoRead(to: .broadcast, ipv6: ipv6, vlan: nil, payload: 3000, mss: 536)
            seeds.append(("tso-\(family)-to-peer", .port(0), toPeer))
            seeds.append(("tso-\(family)-to-p1", .port(0), toVirtio))
            seeds.append(("tso-\(family)-flood", .port(0), flooded))
            let segments = remoteSegments(ipv6: ipv6, count: 5, size: 1380, start: 0xFFFF_F000)
            let datagrams = segments.map(vxlan)
            let groRead = FuzzInput.Source.tunnel(segmentSize: UInt32(datagrams[0].count))
            seeds.append(("gro-tcp-\(family)", groRead, datagrams.flatMap { $0 }))
            seeds.append(("datagram-tcp-\(family)", .tunnel(segmentSize: 0), datagrams[0]))
        }
        let tagged = tsoRead(to: macRemote, ipv6: false, vlan: VLANTag(id: 7), payload: 4000, mss: 1394)
        seeds.append(("tso-vlan-to-peer", .port(0), tagged))
        seeds.append(("udp-plain-tap", .port(2), udpFrame(from: macB, to: macRemote, size: 200)))
        seeds.append(("udp-virtio", .port(1), virtioBytes(.plain) + udpFrame(from: macB, to: macA, size: 64)))
        seeds.append((
            "arp", .port(2),
            PacketBuilder.arpRequest(senderMAC: macB, senderIP: IPv4Address(10, 0, 0, 2), targetIP: tcpSource)))
        let udpRun = (0..<4).map { vxlan(udpFlowFrame(identification: UInt16($0), payload: pattern(700, seed: $0))) }
        seeds.append(("gro-udp", .tunnel(segmentSize: UInt32(udpRun[0].count)), udpRun.flatMap { $0 }))
        let remoteARP = PacketBuilder.arpRequest(
            senderMAC: macRemote, senderIP: IPv4Address(10, 0, 0, 9), targetIP: tcpSource)
        seeds.append(("datagram-arp", .tunnel(segmentSize: 0), vxlan(remoteARP)))
        return seeds
    }
}

/// Mutations, biased towards headers: most of a 9 KB burst is payload, where a flipped bit only tests checksums.
struct Mutator {
    var random: SplitMix64

    static let edgeBytes: [UInt8] = [0, 1, 0x3F, 0x40, 0x45, 0x46, 0x4F, 0x60, 0x7F, 0x80, 0xFE, 0xFF]
    static let edgeWords: [UInt16] = [
        0, 1, 2, 7, 8, 20, 40, 54, 64, 535, 536, 1400, 1448, 1500, 9000, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF,
    ]

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }

    /// An offset into `count` bytes, in the first 160 three times out of four.
    mutating func offset(in count: Int) -> Int {
        random.chance(75) ? int(0..<min(count, 160)) : int(0..<count)
    }

    /// Applies one mutation; `keepingLength` picks only those that leave the length as it is.
    mutating func mutate(_ bytes: inout [UInt8], keepingLength: Bool = false) {
        let kinds = keepingLength ? [0, 1, 2, 6] : Array(0..<7)
        switch kinds.randomElement(using: &random)! {
        case 0:  // flip bits
            for _ in 0..<int(1..<5) where !bytes.isEmpty {
                bytes[offset(in: bytes.count)] ^= UInt8(1) << UInt8(int(0..<8))
            }
        case 1:  // an edge byte
            if !bytes.isEmpty { bytes[offset(in: bytes.count)] = Mutator.edgeBytes.randomElement(using: &random)! }
        case 2:  // an edge 16-bit field, big- or little-endian (virtio-net header fields are little-endian)
            if bytes.count >= 2 {
                let at = offset(in: bytes.count - 1)
                let word =
                    random.chance(80)
                    ? Mutator.edgeWords.randomElement(using: &random)! : UInt16.random(in: 0...0xFFFF, using: &random)
                let (high, low) = (UInt8(word >> 8), UInt8(word & 0xFF))
                (bytes[at], bytes[at + 1]) = random.chance(50) ? (high, low) : (low, high)
            }
        case 3:  // cut short
            if !bytes.isEmpty { bytes.removeLast(int(1..<(bytes.count + 1))) }
        case 4:  // cut inside the headers
            if bytes.count > 1 { bytes.removeLast(bytes.count - int(0..<min(bytes.count, 120))) }
        case 5:  // padded
            bytes += (0..<int(1..<80)).map { _ in UInt8.random(in: 0...255, using: &random) }
        default:  // a random run of bytes
            if !bytes.isEmpty {
                let at = offset(in: bytes.count)
                for index in at..<min(bytes.count, at + int(1..<16)) {
                    bytes[index] = UInt8.random(in: 0...255, using: &random)
                }
            }
        }
    }

    /// Makes the IPv4 header checksum and the TCP checksum of `frame` valid again, as far as its (possibly
    /// mutated) headers let them be found; leaves the frame alone where they cannot.
    static func repairChecksums(_ frame: inout [UInt8]) {
        guard case .success(let ethernet) = EthernetHeader.parse(frame.span.bytes) else { return }
        let network = ethernet.length
        let transport: Int
        let end: Int
        let pseudo: (Int) -> UInt16
        if ethernet.etherType == .ipv4, frame.count >= network + 20 {
            let headerLength = Int(frame[network] & 0x0F) * 4
            let totalLength = Int(frame[network + 2]) << 8 | Int(frame[network + 3])
            guard headerLength >= 20, network + headerLength <= frame.count else { return }
            frame[network + 10] = 0
            frame[network + 11] = 0
            VXTestSupport.mutate(&frame) { _ = IPv4Header.updateChecksum(in: &$0, at: network) }
            guard frame[network + 9] == IPProtocol.tcp.rawValue, totalLength >= headerLength,
                network + totalLength <= frame.count
            else { return }
            let header = frame[network..<(network + 20)].map { $0 }
            let source = IPv4Address(header[12], header[13], header[14], header[15])
            let destination = IPv4Address(header[16], header[17], header[18], header[19])
            transport = network + headerLength
            end = network + totalLength
            pseudo = {
                InternetChecksum.pseudoHeaderSum(source: source, destination: destination, protocol: .tcp, length: $0)
            }
        } else if ethernet.etherType == .ipv6,
            case .success(let ip) = IPv6Header.parse(frame.span.bytes.extracting(network..<frame.count)),
            ip.nextHeader == .tcp, network + 40 + Int(ip.payloadLength) <= frame.count
        {
            transport = network + 40
            end = transport + Int(ip.payloadLength)
            pseudo = {
                InternetChecksum.pseudoHeaderSum(
                    source: ip.source, destination: ip.destination, protocol: .tcp, length: $0)
            }
        } else {
            return
        }
        guard end - transport >= 20 else { return }
        frame[transport + 16] = 0
        frame[transport + 17] = 0
        let field = TCPHeader.computeChecksum(
            segment: frame.span.bytes.extracting(transport..<end), pseudoHeaderSum: pseudo(end - transport))
        frame[transport + 16] = UInt8(field >> 8)
        frame[transport + 17] = UInt8(field & 0xFF)
    }

    /// A GRO read's segment size bent: an edge value, one off, any small value, or left as it was.
    mutating func mutate(_ segmentSize: UInt32) -> UInt32 {
        switch int(0..<4) {
        case 0: return UInt32(Mutator.edgeWords.randomElement(using: &random)!)
        case 1: return segmentSize &+ UInt32(int(0..<3)) &- 1
        case 2: return UInt32(int(0..<2000))
        default: return segmentSize
        }
    }
}

@Suite("Dataplane worker, malformed input at random")
struct MalformedInputFuzzTests {
    static let iterations = getenv("VX_FUZZ_ITERATIONS").flatMap { Int(String(cString: $0)) } ?? 3000
    static let trace = getenv("VX_FUZZ_TRACE") != nil

    @Test("mutated frames and datagrams are dropped and counted: no trap, no lost buffer, valid traffic still flows",
          arguments: [1, 2, 3] as [UInt64])
    func mutatedInputNeverTrapsLeaksOrStopsForwarding(seed: UInt64) throws {
        let harness = try OffloadHarness(udpSenders: 2, largeCount: 48)
        try harness.learn(macA, onPort: 0)
        try harness.learn(macB, onPort: 1)
        try harness.learnRemote(macRemote)
        let corpus = FuzzCorpus.all()
        let innerRuns = FuzzCorpus.innerRuns()

        // Every seed as it is first: the corpus must reach the paths it is meant for, or mutating it proves little.
        for (name, source, bytes) in corpus {
            try feed([FuzzInput(source: source, bytes: bytes, origin: name)], to: harness)
        }
        let offloads = harness.counters.offloads
        #expect(offloads.tsoFramesSegmented > 0 && offloads.tsoFramesPassedThrough > 0)
        #expect(offloads.coalescedWrites > 0 && offloads.udpCoalescedWrites > 0 && offloads.udpGSOSends > 0)
        #expect(totalDrops(harness) == 0, "the unmutated corpus is valid: \(dropsByCode(harness))")
        let standardAtRest = harness.engine.pool.available
        let largeAtRest = harness.engine.pool.availableLarge

        var mutator = Mutator(random: SplitMix64(seed: seed))
        for iteration in 0..<Self.iterations {
            var inputs: [FuzzInput] = []
            for _ in 0..<mutator.int(1..<7) {
                if mutator.random.chance(25) {
                    inputs.append(structuredGRORead(from: innerRuns.randomElement(using: &mutator.random)!, &mutator))
                    continue
                }
                let (name, source, seedBytes) = corpus.randomElement(using: &mutator.random)!
                var input = FuzzInput(source: source, bytes: seedBytes, origin: name)
                if mutator.random.chance(85) {
                    for _ in 0..<mutator.int(1..<4) { mutator.mutate(&input.bytes) }
                    if case .tunnel(let size) = source, size > 0, mutator.random.chance(40) {
                        input.source = .tunnel(segmentSize: max(1, mutator.mutate(size)))
                    }
                }
                inputs.append(input)
            }
            if Self.trace { print("fuzz seed \(seed) iteration \(iteration):", inputs.map(\.description)) }
            try feed(inputs, to: harness)
            try #require(harness.engine.buffersOutstanding == 0, "iteration \(iteration) kept a receive buffer")
            try #require(harness.engine.pool.available == standardAtRest, "iteration \(iteration) lost a buffer")
            try #require(
                harness.engine.pool.availableLarge == largeAtRest, "iteration \(iteration) lost a large buffer")
        }
        #expect(totalDrops(harness) > 0, "the mutations reached the drop paths")
        print(
            "fuzz seed \(seed): \(Self.iterations) iterations; merged \(offloads.coalescedFrames) TCP frames into",
            "\(offloads.coalescedWrites) writes, \(offloads.coalesceChecksumFallbacks) checksum fallbacks;",
            "drops \(dropsByCode(harness))")

        // Valid traffic still flows both ways, learnt again in case a mutated frame moved a MAC.
        try harness.learn(macA, onPort: 0)
        try harness.learnRemote(macRemote)
        _ = harness.sentThroughUDP()
        let burst = FuzzCorpus.tsoRead(to: macRemote, ipv6: false, vlan: nil, payload: 9000, mss: 1398)
        #expect(harness.engine.inject(burst, into: harness.portHandles[0]))
        try harness.step()
        let segments = try harness.sentThroughUDP().map { try OffloadHarness.inner(of: $0.frame.bytes) }
        #expect(segments.count == 7)
        #expect(segments.allSatisfy { checkedPayloadLength($0) != nil })
        #expect(segments.compactMap(checkedPayloadLength).reduce(0, +) == 9000)
        let reply = udpFrame(from: macRemote, to: macA, size: 100)
        harness.injectFromPeer(reply)
        try harness.step()
        let written = harness.sentToPort(0)
        #expect(written.count == 1 && written.first.map { Array($0[VirtioNetHeader.size...]) } == reply)
    }

    @Test("mutated tunnel packets and plain TAP frames are dropped and counted, for every encapsulation",
          arguments: EncapCase.all)
    func mutatedTunnelPacketsNeverTrapOrLeak(encap: EncapCase) throws {
        let harness = try Harness(encap: encap)
        let arp = PacketBuilder.arpRequest(
            senderMAC: macRemote, senderIP: IPv4Address(10, 0, 0, 9), targetIP: IPv4Address(10, 0, 0, 1))
        let tcp = TCPFrameSpec(sourceMAC: macRemote, destinationMAC: macA, payload: pattern(600)).build()
        let tcp6 = TCPFrameSpec(sourceMAC: macRemote, destinationMAC: macA, ipv6: true, payload: pattern(300)).build()
        var seeds: [(String, PortHandle, [UInt8])] = [
            ("arp-from-peer", harness.tunnelHandle, harness.tunnelBytes(arp, vni: Harness.vni)),
            ("tcp-from-peer", harness.tunnelHandle, harness.tunnelBytes(tcp, vni: Harness.vni)),
            ("tcp6-from-peer", harness.tunnelHandle, harness.tunnelBytes(tcp6, vni: Harness.vni)),
            ("udp-from-p0", harness.portHandles[0], udpFrame(from: macA, to: macRemote, size: 300)),
            ("broadcast-from-p2", harness.portHandles[2], udpFrame(from: macB, to: .broadcast)),
        ]
        if encap.encapsulation == .gre {
            // Checksum and sequence number present: the optional GRE fields the decap must step over.
            let key = encap.layout.key(for: Harness.vni)
            let greBytes = encap.ipv6
                ? PacketBuilder.greDatagram(key: key, sequenceNumber: 7, checksum: true, inner: tcp)
                : PacketBuilder.greIPv4(
                    source: Harness.peerAddress.ipv4!, destination: Harness.local.ipv4!, key: key, sequenceNumber: 7,
                    checksum: true, inner: tcp)
            seeds.append(("gre-checksum-sequence", harness.tunnelHandle, greBytes))
        }
        for (name, handle, bytes) in seeds {
            try feed(bytes, on: handle, from: name, to: harness)
        }
        #expect(harness.counters.snapshot(of: .peer(index: 0)).totalDrops == 0, "the unmutated seeds are valid")
        let standardAtRest = harness.engine.pool.available

        var mutator = Mutator(random: SplitMix64(seed: 11))
        for iteration in 0..<Self.iterations {
            for _ in 0..<mutator.int(1..<7) {
                let (name, handle, seedBytes) = seeds.randomElement(using: &mutator.random)!
                var bytes = seedBytes
                if mutator.random.chance(85) {
                    for _ in 0..<mutator.int(1..<4) { mutator.mutate(&bytes) }
                }
                if Self.trace { print("fuzz \(encap) iteration \(iteration): \(name) \(bytes)") }
                #expect(harness.engine.inject(
                    bytes, into: handle, remote: handle == harness.tunnelHandle ? harness.peerAddress : .any))
            }
            for _ in 0..<8 where harness.engine.wire.pendingCount > 0 {
                try harness.worker.runOnce(timeout: .seconds(1))
            }
            try #require(harness.engine.wire.pendingCount == 0)
            for index in harness.portHandles.indices { _ = harness.sentToPort(index) }
            for sent in harness.engine.drainTransmitted(from: harness.senderHandle) {
                try #require((try? harness.decodeOuter(sent.bytes)) != nil, "a malformed packet to the peer")
            }
            try #require(harness.engine.buffersOutstanding == 0, "iteration \(iteration) kept a receive buffer")
            try #require(harness.engine.pool.available == standardAtRest, "iteration \(iteration) lost a buffer")
        }
        #expect(harness.counters.snapshot(of: .peer(index: 0)).totalDrops > 0, "the mutations reached the decap")

        // Valid traffic still flows both ways.
        try harness.fromPort(0, udpFrame(from: macA, to: .broadcast))
        try harness.fromPeer(udpFrame(from: macRemote, to: .broadcast))
        _ = harness.sentToPort(0)
        _ = try harness.sentToPeer()
        let frame = udpFrame(from: macRemote, to: macA, size: 100)
        try harness.fromPeer(frame)
        #expect(harness.sentToPort(0) == [frame])
        let back = udpFrame(from: macA, to: macRemote, size: 120)
        try harness.fromPort(0, back)
        #expect(try harness.sentToPeer().map(\.inner) == [back])
    }

    /// Frames from the network, as the underlay TAP delivers them (its 24-byte header included): the peer's TCP
    /// bursts over the tunnel, single VXLAN frames with partial and complete inner checksums, ARP; and the container
    /// bursts the worker writes into it. Headers and bodies alike are mutated.
    @Test("mutated underlay TAP frames are dropped and counted: no trap, no lost buffer, valid traffic still flows",
          arguments: [1, 2] as [UInt64])
    func mutatedUnderlayFramesNeverTrapOrLeak(seed: UInt64) throws {
        let harness = try UnderlayHarness()
        try harness.learnRemote(macRemote)
        try harness.learnLocal(macA, onPort: 0)
        try harness.learnLocal(macB, onPort: 1)
        func tunnelled(_ inner: [UInt8], _ header: VirtioNetTunnelHeader) -> [UInt8] {
            PacketBuilder.withBytes(count: VirtioNetTunnelHeader.size) { header.write(into: &$0) }
                + UnderlayHarness.outerFrame(inner)
        }
        let burstHeader = UnderlayHarness.burstHeader
        let singleHeader = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(flags: .needsChecksum, checksumStart: 84, checksumOffset: 16))
        // A run of three VXLAN datagrams as one UDP_L4 frame (the outer builder's VXLAN header is the first's).
        let runPieces = (0..<3).flatMap { _ in
            PacketBuilder.vxlanDatagram(vni: UnderlayHarness.vni, inner: udpFrame(from: macRemote, to: macB))
        }
        let runHeader = VirtioNetTunnelHeader(
            inner: VirtioNetHeader(
                flags: .needsChecksum, gsoType: .udpL4, headerLength: 42,
                gsoSize: UInt16(VXLANHeader.size + udpFrame(from: macRemote, to: macB).count), checksumStart: 34,
                checksumOffset: 6))
        let underlayCorpus: [[UInt8]] = [
            tunnelled(Array(runPieces[VXLANHeader.size...]), runHeader),
            tunnelled(tcpFrame(from: macRemote, to: macA, sequence: 1, identification: 1, payload: pattern(9000), checksum: .partial), burstHeader),
            tunnelled(tcpFrame(from: macRemote, to: macB, sequence: 1, identification: 1, payload: pattern(4000), checksum: .partial), burstHeader),
            tunnelled(tcpFrame(from: macRemote, to: macA, sequence: 1, identification: 1, payload: pattern(1000), checksum: .partial), singleHeader),
            tunnelled(udpFrame(from: macRemote, to: macB, size: 200), .plain),
            PacketBuilder.withBytes(count: VirtioNetTunnelHeader.size) { VirtioNetTunnelHeader.plain.write(into: &$0) }
                + PacketBuilder.arpRequest(senderMAC: UnderlayHarness.peerMAC, senderIP: UnderlayHarness.peerAddress,
                                           targetIP: UnderlayHarness.local),
        ]
        let portCorpus: [[UInt8]] = [
            virtioBytes(.plain) + udpFrame(from: macA, to: macRemote),  // packed into UDP_L4 writes when in a row
            virtioBytes(tsoHeader(gsoSize: 1398))
                + tcpFrame(from: macA, to: macRemote, sequence: 1, identification: 1, payload: pattern(20_000), checksum: .partial),
            virtioBytes(tsoHeader(gsoSize: 1448))
                + tcpFrame(from: macA, to: macRemote, sequence: 1, identification: 1, payload: pattern(5000), checksum: .partial),
        ]
        let standardAtRest = harness.engine.pool.available
        let largeAtRest = harness.engine.pool.availableLarge
        var mutator = Mutator(random: SplitMix64(seed: seed))
        for iteration in 0..<Self.iterations {
            for _ in 0..<mutator.int(1..<5) {
                let fromPort = mutator.random.chance(25)
                var bytes = fromPort ? portCorpus.randomElement(using: &mutator.random)! : underlayCorpus.randomElement(using: &mutator.random)!
                if mutator.random.chance(85) { for _ in 0..<mutator.int(1..<4) { mutator.mutate(&bytes) } }
                if Self.trace { print("underlay fuzz seed \(seed) iteration \(iteration): \(fromPort ? "port" : "underlay") \(bytes.prefix(96))") }
                harness.engine.inject(bytes, into: fromPort ? harness.portHandles[0] : harness.underlayHandle)
            }
            try harness.step()
            _ = harness.punt.drain()
            _ = try harness.sentToUnderlay()
            _ = harness.sentToPort(0)
            _ = harness.sentToPort(1)
            try #require(harness.engine.buffersOutstanding == 0, "iteration \(iteration) kept a receive buffer")
            try #require(harness.engine.pool.available == standardAtRest, "iteration \(iteration) lost a buffer")
            try #require(harness.engine.pool.availableLarge == largeAtRest, "iteration \(iteration) lost a large buffer")
        }
        let drops = harness.counters.snapshot(of: .unattributed).drops.values.reduce(0, +)
            + harness.counters.snapshot(of: .peer(index: Int(harness.peer.index))).drops.values.reduce(0, +)
        #expect(drops > 0, "the mutations reached the drop paths")
        let offloads = harness.worker.offloadStatistics
        #expect(offloads.tsoFramesReceived > 0 && offloads.tsoFramesPassedThrough > 0 && offloads.segments > 0)
        #expect(offloads.groFramesReceived > 0 && offloads.udpGSOSends > 0, "runs read and written: \(offloads)")
        print(
            "underlay fuzz seed \(seed): \(Self.iterations) iterations; \(offloads.tsoFramesReceived) bursts read,",
            "\(offloads.tsoFramesPassedThrough) passed whole, \(offloads.segments) segments cut,",
            "\(offloads.groFramesReceived) runs read, \(offloads.udpGSOSends) written; \(drops) drops")

        // Valid traffic still flows both ways.
        try harness.learnRemote(macRemote)
        try harness.learnLocal(macA, onPort: 0)
        let burst = tcpFrame(from: macA, to: macRemote, sequence: 5, identification: 5, payload: pattern(9000), checksum: .partial)
        harness.engine.inject(virtioBytes(tsoHeader(gsoSize: 1398)) + burst, into: harness.portHandles[0])
        try harness.step()
        let sent = try harness.sentToUnderlay()
        #expect(sent.count == 1 && (try? decodeUnderlayFrame(sent[0].frame).inner) == burst)
        let reply = tcpFrame(from: macRemote, to: macA, sequence: 9, identification: 9, payload: pattern(3000), checksum: .partial)
        harness.injectUnderlay(UnderlayHarness.outerFrame(reply), header: burstHeader)
        try harness.step()
        let written = harness.sentToPort(0)
        #expect(written.count == 1 && written.first.map { Array($0[VirtioNetHeader.size...]) } == reply)
    }

    private func feed(_ bytes: [UInt8], on handle: PortHandle, from name: String, to harness: Harness) throws {
        let remote = handle == harness.tunnelHandle ? harness.peerAddress : .any
        #expect(harness.engine.inject(bytes, into: handle, remote: remote))
        try harness.worker.runOnce(timeout: .seconds(1))
        #expect(harness.engine.wire.pendingCount == 0, "\(name) was taken")
    }

    /// A GRO read of `run`'s segments, some mutated inside the inner frame and most of those with their checksums
    /// made valid again. Mutations that change a segment's length make the read one the kernel would never build
    /// (datagrams of unequal sizes cut at the first one's): the worker must still survive it.
    private func structuredGRORead(from run: (String, [[UInt8]]), _ mutator: inout Mutator) -> FuzzInput {
        var inners = run.1
        var changed: [Int] = []
        for index in inners.indices where mutator.random.chance(30) {
            mutator.mutate(&inners[index], keepingLength: mutator.random.chance(85))
            if mutator.random.chance(80) { Mutator.repairChecksums(&inners[index]) }
            changed.append(index)
        }
        let datagrams = inners.map(FuzzCorpus.vxlan)
        return FuzzInput(
            source: .tunnel(segmentSize: UInt32(datagrams[0].count)), bytes: datagrams.flatMap { $0 },
            origin: "\(run.0) mutated \(changed)")
    }

    /// Injects `inputs`, runs the worker until it has taken them all, and checks what came out.
    private func feed(_ inputs: [FuzzInput], to harness: OffloadHarness) throws {
        for input in inputs {
            switch input.source {
            case .port(let index):
                #expect(harness.engine.inject(input.bytes, into: harness.portHandles[index]))
            case .tunnel(let segmentSize):
                #expect(harness.engine.inject(
                    input.bytes, into: harness.tunnelHandle, remote: OffloadHarness.peerAddress,
                    segmentSize: segmentSize))
            }
        }
        for _ in 0..<8 where harness.engine.wire.pendingCount > 0 { try harness.step() }
        try #require(harness.engine.wire.pendingCount == 0, "the worker took every input")
        for index in harness.portHandles.indices {
            for write in harness.sentToPort(index) where OffloadHarness.virtioPorts[index] {
                try #require(VirtioNetHeader.parse(write.span.bytes) != nil, "a virtio TAP write without its header")
                try #require(
                    write.count >= VirtioNetHeader.size + 14, "a virtio TAP write shorter than an Ethernet header")
            }
        }
        for sent in harness.sentThroughUDP() {
            try #require((try? OffloadHarness.inner(of: sent.frame.bytes)) != nil, "a malformed datagram to the peer")
        }
        for sent in try harness.sentToPeer() { try #require(sent.inner.count >= 14) }
    }

    private func totalDrops(_ harness: OffloadHarness) -> UInt64 { allCounters(harness).totalDrops }

    private func dropsByCode(_ harness: OffloadHarness) -> [String: UInt64] {
        let counted = allCounters(harness).drops.filter { $0.value > 0 }
        return Dictionary(uniqueKeysWithValues: counted.map { ("\($0.key)", $0.value) })
    }

    /// Every row the harness's worker counts in, added up.
    private func allCounters(_ harness: OffloadHarness) -> CounterRow {
        var total = CounterRow()
        for index in OffloadHarness.virtioPorts.indices { total += harness.counters.snapshot(of: .port(index: index)) }
        total += harness.counters.snapshot(of: .peer(index: 0))
        total += harness.counters.snapshot(of: .unattributed)
        return total
    }

    /// The TCP payload length of a segment whose IPv4 and TCP checksums verify, or nil.
    private func checkedPayloadLength(_ frame: [UInt8]) -> Int? {
        guard let checked = try? CheckedTCPFrame(frame) else { return nil }
        return checked.payload.count
    }
}
