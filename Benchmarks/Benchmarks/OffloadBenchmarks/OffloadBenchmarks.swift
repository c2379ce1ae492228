// The per-byte work of offloaded TCP: the Internet checksum, TSO segmentation and TCP coalescing.
//
// Method
//   - One 64,000-byte TCP payload behind Ethernet + IPv4 + TCP (full checksum), as a TAP with TUNSETOFFLOAD hands
//     it over with gso_type TCPV4, cut at an MSS of 1,398 (overlay MTU 1450 minus 52 bytes of IP and TCP with
//     timestamps): 46 segments, the run of datagrams one TSO frame becomes on the tunnel.
//   - `checksum.*`: `InternetChecksum.sum` over one segment's worth of bytes (1,448) and over 64 KB, walking
//     4 MiB of pseudo-random bytes. Walking one small frame again and again would let the CPU's branch predictor
//     learn a branchy loop's carries: an add-with-carry loop measured as fast as the branch-free one here while
//     it took a quarter of the daemon's CPU under real traffic (docs/performance.md). `.kilo` scaling: the time
//     column reads per sum.
//   - `tsoSegment.64KB`: `TCPSegmenter.plan` plus `writeSegment` for all 46 segments into one destination,
//     what the worker does per TSO frame before the UDP GSO send: two copies of the payload's worth of
//     traffic (read the frame, write the segment) and a checksum pass. One frame per iteration.
//   - `coalesce.64KB`: the receive side: `TCPCoalescer.add` for the 46 segments (parses each, checks its IPv4
//     header checksum, sums its TCP header), then `writeCoalesced` of the one item back into a 64 KiB scratch
//     (copies each payload and verifies its TCP checksum in the same pass). One frame per iteration.
//   - Zero mallocs per iteration, as for every hot-path benchmark (Thresholds/).

import Benchmark
import VXOffload
import VXPacket
import VXTestSupport

/// The TSO frame, its segments and the buffers the benchmarks write into, in raw buffers that live as long as
/// the fixture (spans over a class's arrays could not outlive each access).
final class OffloadFixture {
    static let payloadLength = 64_000
    static let segmentPayload = 1_398

    let frame: UnsafeMutableRawBufferPointer
    let header: VirtioNetHeader
    let segments: [UnsafeMutableRawBufferPointer]
    let destination: UnsafeMutableRawBufferPointer
    let scratch: UnsafeMutableRawBufferPointer
    var coalescer = TCPCoalescer(capacity: 64)
    /// 4 MiB of pseudo-random bytes for the checksum benchmarks to walk: more than a branch predictor can learn,
    /// as on real traffic, and L3-resident.
    let randomRegion: UnsafeMutableRawBufferPointer

    init() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func nextByte() -> UInt8 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let payload = (0..<Self.payloadLength).map { _ in nextByte() }
        randomRegion = .allocate(byteCount: 4 << 20, alignment: 64)
        for index in 0..<randomRegion.count { randomRegion[index] = nextByte() }
        let bytes = PacketBuilder.ethernetIPv4TCP(
            destination: MACAddress(0x02, 0, 0, 0, 0, 2), source: MACAddress(0x02, 0, 0, 0, 0, 1),
            sourceIP: IPv4Address(10, 0, 0, 1), destinationIP: IPv4Address(10, 0, 0, 2),
            header: TCPHeader(
                sourcePort: 40_000, destinationPort: 5201, sequenceNumber: 1, acknowledgmentNumber: 1, flags: [.ack],
                window: 502),
            payload: payload)
        frame = Self.copy(bytes)
        header = VirtioNetHeader(
            flags: .dataValid, gsoType: .tcpv4, headerLength: 54, gsoSize: UInt16(Self.segmentPayload),
            checksumStart: 34, checksumOffset: 16)
        let plan = try! TCPSegmenter.plan(
            frame: RawSpan(_unsafeBytes: UnsafeRawBufferPointer(frame)), header: header,
            maximumSegmentSize: Self.segmentPayload
        ).get()
        var segments: [UnsafeMutableRawBufferPointer] = []
        for index in 0..<plan.segmentCount {
            let segment = UnsafeMutableRawBufferPointer.allocate(byteCount: plan.segmentLength(index), alignment: 64)
            var span = MutableRawSpan(_unsafeBytes: segment)
            plan.writeSegment(index, of: RawSpan(_unsafeBytes: UnsafeRawBufferPointer(frame)), into: &span)
            segments.append(segment)
        }
        self.segments = segments
        destination = .allocate(byteCount: plan.segmentCount * plan.maximumSegmentLength, alignment: 64)
        scratch = .allocate(byteCount: TCPCoalescer.defaultScratchCapacity, alignment: 64)
    }

    deinit {
        frame.deallocate()
        for segment in segments { segment.deallocate() }
        destination.deallocate()
        scratch.deallocate()
        randomRegion.deallocate()
    }

    private static func copy(_ bytes: [UInt8]) -> UnsafeMutableRawBufferPointer {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 64)
        buffer.copyBytes(from: bytes)
        return buffer
    }

    /// Segments the frame into `destination`, back to back; returns the bytes written.
    func segment() -> Int {
        let bytes = RawSpan(_unsafeBytes: UnsafeRawBufferPointer(frame))
        guard case .success(let plan) = TCPSegmenter.plan(
            frame: bytes, header: header, maximumSegmentSize: Self.segmentPayload)
        else { fatalError("the fixture frame must segment") }
        var offset = 0
        var span = MutableRawSpan(_unsafeBytes: destination)
        for index in 0..<plan.segmentCount {
            offset += plan.writeSegment(index, of: bytes, into: &span, at: offset)
        }
        return offset
    }

    /// Coalesces the segments back into one frame in `scratch`; returns the bytes written.
    func coalesce() -> Int {
        coalescer.reset()
        var index = 0
        while index < segments.count {
            coalescer.add(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(segments[index])))
            index += 1
        }
        precondition(coalescer.itemCount == 1 && coalescer.item(0).isCoalesced, "segments did not coalesce")
        var span = MutableRawSpan(_unsafeBytes: scratch)
        let written = coalescer.writeCoalesced(item: 0, into: &span) { frameIndex, body in
            body(RawSpan(_unsafeBytes: UnsafeRawBufferPointer(segments[frameIndex])))
        }
        guard let written else { fatalError("the fixture's segments must verify") }
        return written
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, .wallClock, .throughput],
        warmupIterations: 10,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])]
    )

    for length in [1_448, 64_000] {
        var fixture: OffloadFixture?
        Benchmark(
            "checksum.\(length == 1_448 ? "1448B" : "64KB")",
            configuration: .init(scalingFactor: .kilo),
            closure: { benchmark in
                let bytes = RawSpan(_unsafeBytes: UnsafeRawBufferPointer(fixture!.randomRegion))
                let lastStart = bytes.byteCount - length
                var accumulator: UInt32 = 0
                var start = 0
                for _ in benchmark.scaledIterations {
                    accumulator &+= UInt32(InternetChecksum.sum(bytes.extracting(start..<(start + length))))
                    start = start + length > lastStart ? 0 : start + length
                }
                blackHole(accumulator)
            },
            setup: { fixture = OffloadFixture() },
            teardown: { fixture = nil }
        )
    }

    var segmentFixture: OffloadFixture?
    Benchmark(
        "tsoSegment.64KB",
        closure: { benchmark in
            for _ in benchmark.scaledIterations { blackHole(segmentFixture!.segment()) }
        },
        setup: { segmentFixture = OffloadFixture() },
        teardown: { segmentFixture = nil }
    )

    var coalesceFixture: OffloadFixture?
    Benchmark(
        "coalesce.64KB",
        closure: { benchmark in
            for _ in benchmark.scaledIterations { blackHole(coalesceFixture!.coalesce()) }
        },
        setup: { coalesceFixture = OffloadFixture() },
        teardown: { coalesceFixture = nil }
    )
}
