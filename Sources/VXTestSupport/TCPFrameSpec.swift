// TCP frames for tests across the project: Ethernet (+ 802.1Q) + IPv4/IPv6 + TCP with options, built with
// VXPacket's header writers. Allocating and slow on purpose: readable first. Not for the hot path.

import VXPacket

/// How the TCP checksum field of a built frame is filled.
public enum ChecksumMode: Sendable {
    /// The complete, valid checksum.
    case full
    /// The pseudo-header sum for the whole segment, as the kernel leaves it with NEEDS_CSUM.
    case partial
    /// A valid checksum with one bit flipped.
    case corrupt
}

/// One TCP frame to build; every field has a default so tests only name what they vary.
public struct TCPFrameSpec: Sendable {
    public var sourceMAC: MACAddress
    public var destinationMAC: MACAddress
    public var vlan: VLANTag?
    public var ipv6: Bool
    public var source4: IPv4Address
    public var destination4: IPv4Address
    public var source6: IPv6Address
    public var destination6: IPv6Address
    public var identification: UInt16
    public var dontFragment: Bool
    public var timeToLive: UInt8
    public var typeOfService: UInt8
    public var flowLabel: UInt32
    /// IPv4 options (a multiple of 4 bytes).
    public var ipOptions: [UInt8]
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgment: UInt32
    public var flags: TCPFlags
    public var window: UInt16
    /// TCP options (a multiple of 4 bytes).
    public var tcpOptions: [UInt8]
    public var payload: [UInt8]

    /// The defaults live here (the declarations have none). The sequence number wraps within a few segments,
    /// so sequence arithmetic under test must wrap.
    public init(
        sourceMAC: MACAddress = TCPFrameSpec.mac1,
        destinationMAC: MACAddress = TCPFrameSpec.mac2,
        vlan: VLANTag? = nil,
        ipv6: Bool = false,
        source4: IPv4Address = IPv4Address(10, 1, 0, 1),
        destination4: IPv4Address = IPv4Address(10, 1, 0, 2),
        source6: IPv6Address = IPv6Address(0xFD00, 0, 0, 0, 0, 0, 0, 1),
        destination6: IPv6Address = IPv6Address(0xFD00, 0, 0, 0, 0, 0, 0, 2),
        identification: UInt16 = 0x4321,
        dontFragment: Bool = true,
        timeToLive: UInt8 = 64,
        typeOfService: UInt8 = 0,
        flowLabel: UInt32 = 0x12345,
        ipOptions: [UInt8] = [],
        sourcePort: UInt16 = 40_000,
        destinationPort: UInt16 = 5201,
        sequence: UInt32 = 0xFFFF_F000,
        acknowledgment: UInt32 = 0x0102_0304,
        flags: TCPFlags = [.ack],
        window: UInt16 = 502,
        tcpOptions: [UInt8] = [],
        payload: [UInt8] = []
    ) {
        self.sourceMAC = sourceMAC
        self.destinationMAC = destinationMAC
        self.vlan = vlan
        self.ipv6 = ipv6
        self.source4 = source4
        self.destination4 = destination4
        self.source6 = source6
        self.destination6 = destination6
        self.identification = identification
        self.dontFragment = dontFragment
        self.timeToLive = timeToLive
        self.typeOfService = typeOfService
        self.flowLabel = flowLabel
        self.ipOptions = ipOptions
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequence = sequence
        self.acknowledgment = acknowledgment
        self.flags = flags
        self.window = window
        self.tcpOptions = tcpOptions
        self.payload = payload
    }

    public static let mac1 = MACAddress(0x02, 0, 0, 0, 0, 1)
    public static let mac2 = MACAddress(0x02, 0, 0, 0, 0, 2)
    /// NOP, NOP, timestamps (TSval, TSecr): what Linux puts on every data segment.
    public static func timestamps(_ value: UInt32, echo: UInt32 = 7) -> [UInt8] {
        [1, 1, 8, 10] + be32(value) + be32(echo)
    }

    public var ethernetLength: Int { vlan == nil ? 14 : 18 }
    public var networkHeaderLength: Int { ipv6 ? 40 : 20 + ipOptions.count }
    public var transportOffset: Int { ethernetLength + networkHeaderLength }
    public var headerLength: Int { transportOffset + 20 + tcpOptions.count }

    public func pseudoHeaderSum(tcpLength: Int) -> UInt16 {
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

    public func build(checksum: ChecksumMode = .full) -> [UInt8] {
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
            destination: destinationMAC,
            source: sourceMAC,
            vlan: vlan,
            etherType: ipv6 ? .ipv6 : .ipv4,
            payload: ip + tcp
        )
    }

}

/// `v` as two big-endian bytes.
public func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
/// `v` as four big-endian bytes.
public func be32(_ v: UInt32) -> [UInt8] {
    [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
}

/// Deterministic payload bytes (not all zero, so misplaced copies show).
public func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31) &+ seed &* 7 &+ ($0 >> 8)) }
}

/// Runs `body` over a mutable raw view of `bytes`.
public func mutate(_ bytes: inout [UInt8], _ body: (inout MutableRawSpan) -> Void) {
    var span = bytes.mutableSpan
    var raw = MutableRawSpan(_elements: &span)
    body(&raw)
}
