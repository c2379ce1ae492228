// Test frames: Ethernet (+ 802.1Q) + IPv4/IPv6 + TCP with options, built with VXPacket's header writers, plus
// the checks every segmentation and coalescing test applies. Allocating and slow on purpose: readable first.

import Testing
import VXOffload
import VXPacket
import VXTestSupport

/// How the TCP checksum field of a built frame is filled.
enum ChecksumMode {
    /// The complete, valid checksum.
    case full
    /// The pseudo-header sum for the whole segment, as the kernel leaves it with NEEDS_CSUM.
    case partial
    /// A valid checksum with one bit flipped.
    case corrupt
}

/// One TCP frame to build; every field has a default so tests only name what they vary.
struct TCPFrameSpec {
    var vlan: VLANTag? = nil
    var ipv6 = false
    var source4 = IPv4Address(10, 1, 0, 1)
    var destination4 = IPv4Address(10, 1, 0, 2)
    var source6 = IPv6Address(0xFD00, 0, 0, 0, 0, 0, 0, 1)
    var destination6 = IPv6Address(0xFD00, 0, 0, 0, 0, 0, 0, 2)
    var identification: UInt16 = 0x4321
    var dontFragment = true
    var timeToLive: UInt8 = 64
    var typeOfService: UInt8 = 0
    var flowLabel: UInt32 = 0x12345
    /// IPv4 options (a multiple of 4 bytes).
    var ipOptions: [UInt8] = []
    var sourcePort: UInt16 = 40_000
    var destinationPort: UInt16 = 5201
    var sequence: UInt32 = 0xFFFF_F000  // wraps within a few segments: sequence arithmetic must wrap
    var acknowledgment: UInt32 = 0x0102_0304
    var flags: TCPFlags = [.ack]
    var window: UInt16 = 502
    /// TCP options (a multiple of 4 bytes).
    var tcpOptions: [UInt8] = []
    var payload: [UInt8] = []

    static let mac1 = MACAddress(0x02, 0, 0, 0, 0, 1)
    static let mac2 = MACAddress(0x02, 0, 0, 0, 0, 2)
    /// NOP, NOP, timestamps (TSval, TSecr): what Linux puts on every data segment.
    static func timestamps(_ value: UInt32, echo: UInt32 = 7) -> [UInt8] {
        [1, 1, 8, 10] + be32(value) + be32(echo)
    }

    var ethernetLength: Int { vlan == nil ? 14 : 18 }
    var networkHeaderLength: Int { ipv6 ? 40 : 20 + ipOptions.count }
    var transportOffset: Int { ethernetLength + networkHeaderLength }
    var headerLength: Int { transportOffset + 20 + tcpOptions.count }

    func pseudoHeaderSum(tcpLength: Int) -> UInt16 {
        ipv6
            ? InternetChecksum.pseudoHeaderSum(
                source: source6,
                destination: destination6,
                protocol: .tcp,
                length: tcpLength
            )
            : InternetChecksum.pseudoHeaderSum(
                source: source4,
                destination: destination4,
                protocol: .tcp,
                length: tcpLength
            )
    }

    func build(checksum: ChecksumMode = .full) -> [UInt8] {
        let tcpLength = 20 + tcpOptions.count + payload.count
        var tcp =
            PacketBuilder.withBytes(count: 20) {
                TCPHeader(
                    sourcePort: sourcePort,
                    destinationPort: destinationPort,
                    sequenceNumber: sequence,
                    acknowledgmentNumber: acknowledgment,
                    headerLength: 20 + tcpOptions.count,
                    flags: flags,
                    window: window
                ).write(into: &$0)
            } + tcpOptions + payload
        let pseudo = pseudoHeaderSum(tcpLength: tcpLength)
        let field: UInt16
        switch checksum {
        case .full: field = TCPHeader.computeChecksum(segment: tcp.span.bytes, pseudoHeaderSum: pseudo)
        case .partial: field = pseudo
        case .corrupt: field = TCPHeader.computeChecksum(segment: tcp.span.bytes, pseudoHeaderSum: pseudo) ^ 0x0100
        }
        tcp[16] = UInt8(field >> 8)
        tcp[17] = UInt8(field & 0xFF)

        let ip: [UInt8]
        if ipv6 {
            ip = PacketBuilder.withBytes(count: 40) {
                IPv6Header(
                    trafficClass: typeOfService,
                    flowLabel: flowLabel,
                    payloadLength: UInt16(tcpLength),
                    nextHeader: .tcp,
                    hopLimit: timeToLive,
                    source: source6,
                    destination: destination6
                ).write(into: &$0)
            }
        } else {
            let length = 20 + ipOptions.count
            var header =
                PacketBuilder.withBytes(count: 20) {
                    IPv4Header(
                        headerLength: length,
                        typeOfService: typeOfService,
                        totalLength: UInt16(length + tcpLength),
                        identification: identification,
                        dontFragment: dontFragment,
                        timeToLive: timeToLive,
                        protocol: .tcp,
                        source: source4,
                        destination: destination4
                    ).write(into: &$0)
                } + ipOptions
            mutate(&header) { IPv4Header.updateChecksum(in: &$0) }
            ip = header
        }
        return PacketBuilder.ethernet(
            destination: Self.mac2,
            source: Self.mac1,
            vlan: vlan,
            etherType: ipv6 ? .ipv6 : .ipv4,
            payload: ip + tcp
        )
    }

    /// The virtio header the kernel would put on this frame as one TSO burst of `mss`.
    func gsoHeader(mss: Int) -> VirtioNetHeader {
        VirtioNetHeader(
            flags: .needsChecksum,
            gsoType: ipv6 ? .tcpv6 : .tcpv4,
            // What the kernel reports is skb_headlen, not the header length: make it misleading on purpose.
            headerLength: UInt16(min(headerLength + mss, 0xFFFF)),
            gsoSize: UInt16(mss),
            checksumStart: UInt16(transportOffset),
            checksumOffset: 16
        )
    }
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

/// Deterministic payload bytes (not all zero, so misplaced copies show).
func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed &* 7 &+ ($0 >> 8)) }
}

/// Runs `body` over a mutable raw view of `bytes`.
func mutate(_ bytes: inout [UInt8], _ body: (inout MutableRawSpan) -> Void) {
    var span = bytes.mutableSpan
    var raw = MutableRawSpan(_elements: &span)
    body(&raw)
}

func readBE16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
func readBE32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}

/// `VirtioNetHeader.parse` over an array (the test macros cannot take a span argument).
func parseHeader(_ bytes: [UInt8], size: Int = VirtioNetHeader.size) -> VirtioNetHeader? {
    VirtioNetHeader.parse(bytes.span.bytes, size: size)
}

/// What one checked segment carries.
struct SegmentFacts: Equatable {
    var sequence: UInt32
    var flags: TCPFlags
    var identification: UInt16?
    var payload: [UInt8]
}

/// Parses `frame` as Ethernet + IP + TCP with VXPacket, checks the IPv4 header checksum, length fields and the TCP
/// checksum (VXPacket's verify functions), and returns what it carries; records an issue and returns nil if any
/// check fails.
func checkedSegment(_ frame: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> SegmentFacts? {
    let bytes = frame.span.bytes
    guard case .success(let ethernet) = EthernetHeader.parse(bytes) else {
        Issue.record("bad Ethernet header", sourceLocation: sourceLocation)
        return nil
    }
    let n = ethernet.length
    let packet = bytes.extracting(n..<frame.count)
    let transport: Int
    let end: Int
    let pseudo: UInt16
    var identification: UInt16? = nil
    if ethernet.etherType == .ipv4 {
        guard case .success(let ip) = IPv4Header.parse(packet, verifyChecksum: true) else {
            Issue.record("bad IPv4 header or checksum", sourceLocation: sourceLocation)
            return nil
        }
        #expect(Int(ip.totalLength) == frame.count - n, "IPv4 total length", sourceLocation: sourceLocation)
        transport = n + ip.headerLength
        end = n + Int(ip.totalLength)
        identification = ip.identification
        pseudo = InternetChecksum.pseudoHeaderSum(
            source: ip.source,
            destination: ip.destination,
            protocol: .tcp,
            length: end - transport
        )
    } else {
        guard case .success(let ip) = IPv6Header.parse(packet) else {
            Issue.record("bad IPv6 header", sourceLocation: sourceLocation)
            return nil
        }
        #expect(Int(ip.payloadLength) + 40 == frame.count - n, "IPv6 payload length", sourceLocation: sourceLocation)
        transport = n + 40
        end = n + 40 + Int(ip.payloadLength)
        pseudo = InternetChecksum.pseudoHeaderSum(
            source: ip.source,
            destination: ip.destination,
            protocol: .tcp,
            length: end - transport
        )
    }
    let segment = bytes.extracting(transport..<end)
    guard TCPHeader.verifyChecksum(segment: segment, pseudoHeaderSum: pseudo) == nil else {
        Issue.record("bad TCP checksum", sourceLocation: sourceLocation)
        return nil
    }
    guard case .success(let tcp) = TCPHeader.parse(segment) else {
        Issue.record("bad TCP header", sourceLocation: sourceLocation)
        return nil
    }
    return SegmentFacts(
        sequence: tcp.sequenceNumber,
        flags: tcp.flags,
        identification: identification,
        payload: Array(frame[(transport + tcp.headerLength)..<end])
    )
}

/// Segments `frame` (after the virtio header) into fresh arrays.
func segment(_ frame: [UInt8], header: VirtioNetHeader, maximumSegmentSize: Int = 65_535) -> [[UInt8]]? {
    let bytes = frame.span.bytes
    guard
        case .success(let plan) = TCPSegmenter.plan(
            frame: bytes,
            header: header,
            maximumSegmentSize: maximumSegmentSize
        )
    else { return nil }
    var out: [[UInt8]] = []
    for i in 0..<plan.segmentCount {
        // Write at an offset into a bigger buffer, as the dataplane does after a pool buffer's headroom.
        var buffer = [UInt8](repeating: 0xEE, count: 64 + plan.maximumSegmentLength)
        var written = 0
        mutate(&buffer) { written = plan.writeSegment(i, of: bytes, into: &$0, at: 64) }
        #expect(written == plan.segmentLength(i))
        out.append(Array(buffer[64..<(64 + written)]))
    }
    return out
}

/// One coalescer output as bytes: virtio header + frame, whichever way the item is sent.
struct CoalescedOutput {
    var item: TCPCoalescer.Item
    var bytes: [UInt8]
    var header: VirtioNetHeader { parseHeader(bytes)! }
    var frame: [UInt8] { Array(bytes[VirtioNetHeader.size...]) }
}

/// Runs a coalescer over `frames` and materialises every item.
func coalesce(
    _ frames: [[UInt8]],
    capacity: Int = 256,
    scratchCapacity: Int = TCPCoalescer.defaultScratchCapacity,
    openFlowLimit: Int = TCPCoalescer.defaultOpenFlowLimit
) -> [CoalescedOutput] {
    var coalescer = TCPCoalescer(capacity: capacity, scratchCapacity: scratchCapacity, openFlowLimit: openFlowLimit)
    coalescer.reset()
    for frame in frames { coalescer.add(frame.span.bytes) }
    var outputs: [CoalescedOutput] = []
    for i in 0..<coalescer.itemCount {
        let item = coalescer.item(i)
        if item.isCoalesced {
            var scratch = [UInt8](repeating: 0xEE, count: scratchCapacity)
            var written: Int? = nil
            mutate(&scratch) { scratch in
                written = coalescer.writeCoalesced(item: i, into: &scratch) { index, body in
                    let frame = frames[index]
                    body(frame.span.bytes)
                }
            }
            guard let written else {
                Issue.record("writeCoalesced refused item \(i): a member's TCP checksum failed")
                continue
            }
            #expect(written == VirtioNetHeader.size + item.length)
            outputs.append(CoalescedOutput(item: item, bytes: Array(scratch[0..<written])))
        } else {
            var header = [UInt8](repeating: 0, count: VirtioNetHeader.size)
            mutate(&header) { item.header.write(into: &$0) }
            #expect(item.length == frames[item.firstFrame].count)
            outputs.append(CoalescedOutput(item: item, bytes: header + frames[item.firstFrame]))
        }
    }
    return outputs
}
