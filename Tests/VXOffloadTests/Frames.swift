// Test frames: Ethernet (+ 802.1Q) + IPv4/IPv6 + TCP with options, built with VXPacket's header writers, plus
// the checks every segmentation and coalescing test applies. Allocating and slow on purpose: readable first.

import Testing
import VXOffload
import VXPacket
import VXTestSupport

extension TCPFrameSpec {
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
