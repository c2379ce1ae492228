// Test-only packet builders: readable, allocating, and built on VXPacket's header writers (which the VXPacket
// fixture tests check byte for byte against scapy). Not for the hot path.
import VXPacket

/// Builds frames and tunnel packets as `[UInt8]` for tests across the project.
public enum PacketBuilder {
    /// Runs `body` over a zeroed buffer of `count` bytes and returns the buffer.
    public static func withBytes(count: Int, _ body: (inout MutableRawSpan) -> Void) -> [UInt8] {
        var storage = [UInt8](repeating: 0, count: count)
        var span = storage.mutableSpan
        var bytes = MutableRawSpan(_elements: &span)
        body(&bytes)
        return storage
    }

    /// An Ethernet II frame, optionally 802.1Q-tagged, with `payload` after the header (no padding, no FCS).
    public static func ethernet(
        destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil, etherType: EtherType, payload: [UInt8]
    ) -> [UInt8] {
        let header = EthernetHeader(destination: destination, source: source, vlan: vlan, etherType: etherType)
        return withBytes(count: header.length) { header.write(into: &$0) } + payload
    }

    /// An ARP packet (Ethernet payload, 28 bytes).
    public static func arp(_ packet: ARPPacket) -> [UInt8] {
        withBytes(count: ARPPacket.size) { packet.write(into: &$0) }
    }

    /// A broadcast ARP request frame: who has `targetIP`, tell `senderIP`.
    public static func arpRequest(senderMAC: MACAddress, senderIP: IPv4Address, targetIP: IPv4Address) -> [UInt8] {
        let packet = ARPPacket(
            operation: ARPPacket.request, senderMAC: senderMAC, senderIP: senderIP, targetMAC: .zero,
            targetIP: targetIP)
        return ethernet(destination: .broadcast, source: senderMAC, etherType: .arp, payload: arp(packet))
    }

    /// A unicast ARP reply frame: `senderIP` is at `senderMAC`.
    public static func arpReply(
        senderMAC: MACAddress, senderIP: IPv4Address, targetMAC: MACAddress, targetIP: IPv4Address
    ) -> [UInt8] {
        let packet = ARPPacket(
            operation: ARPPacket.reply, senderMAC: senderMAC, senderIP: senderIP, targetMAC: targetMAC,
            targetIP: targetIP)
        return ethernet(destination: targetMAC, source: senderMAC, etherType: .arp, payload: arp(packet))
    }

    /// An IPv4 packet (no options) around `payload`, with a valid header checksum.
    public static func ipv4(
        source: IPv4Address, destination: IPv4Address, protocol proto: IPProtocol, payload: [UInt8],
        identification: UInt16 = 0, timeToLive: UInt8 = 64
    ) -> [UInt8] {
        let header = IPv4Header(
            totalLength: UInt16(IPv4Header.minimumSize + payload.count), identification: identification,
            timeToLive: timeToLive, protocol: proto, source: source, destination: destination)
        return withBytes(count: IPv4Header.minimumSize) {
            header.write(into: &$0)
            IPv4Header.updateChecksum(in: &$0)
        } + payload
    }

    /// An IPv4 + UDP packet with valid IPv4 and UDP checksums.
    public static func ipv4UDP(
        source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16,
        payload: [UInt8], udpChecksum: Bool = true
    ) -> [UInt8] {
        let length = UDPHeader.size + payload.count
        var segment = withBytes(count: UDPHeader.size) {
            UDPHeader(sourcePort: sourcePort, destinationPort: destinationPort, length: UInt16(length)).write(into: &$0)
        } + payload
        if udpChecksum {
            let pseudo = InternetChecksum.pseudoHeaderSum(
                source: source, destination: destination, protocol: .udp, length: length)
            let checksum = UDPHeader.computeChecksum(segment: segment.span.bytes, pseudoHeaderSum: pseudo)
            segment[6] = UInt8(checksum >> 8)
            segment[7] = UInt8(checksum & 0xFF)
        }
        return ipv4(source: source, destination: destination, protocol: .udp, payload: segment)
    }

    /// An IPv4 + TCP packet (no TCP options) with valid checksums.
    public static func ipv4TCP(
        source: IPv4Address, destination: IPv4Address, header: TCPHeader, payload: [UInt8]
    ) -> [UInt8] {
        var tcp = header
        tcp.headerLength = TCPHeader.minimumSize
        tcp.checksum = 0
        var segment = withBytes(count: TCPHeader.minimumSize) { tcp.write(into: &$0) } + payload
        let pseudo = InternetChecksum.pseudoHeaderSum(
            source: source, destination: destination, protocol: .tcp, length: segment.count)
        let checksum = TCPHeader.computeChecksum(segment: segment.span.bytes, pseudoHeaderSum: pseudo)
        segment[16] = UInt8(checksum >> 8)
        segment[17] = UInt8(checksum & 0xFF)
        return ipv4(source: source, destination: destination, protocol: .tcp, payload: segment)
    }

    /// An Ethernet frame carrying IPv4 + UDP.
    public static func ethernetIPv4UDP(
        destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil, sourceIP: IPv4Address,
        destinationIP: IPv4Address, sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8]
    ) -> [UInt8] {
        ethernet(
            destination: destination, source: source, vlan: vlan, etherType: .ipv4,
            payload: ipv4UDP(
                source: sourceIP, destination: destinationIP, sourcePort: sourcePort,
                destinationPort: destinationPort, payload: payload))
    }

    /// An Ethernet frame carrying IPv4 + TCP.
    public static func ethernetIPv4TCP(
        destination: MACAddress, source: MACAddress, vlan: VLANTag? = nil, sourceIP: IPv4Address,
        destinationIP: IPv4Address, header: TCPHeader, payload: [UInt8]
    ) -> [UInt8] {
        ethernet(
            destination: destination, source: source, vlan: vlan, etherType: .ipv4,
            payload: ipv4TCP(source: sourceIP, destination: destinationIP, header: header, payload: payload))
    }

    /// A VXLAN datagram payload (what a UDP/4789 socket delivers): VXLAN header + inner frame.
    public static func vxlanDatagram(vni: VNI, inner: [UInt8]) -> [UInt8] {
        withBytes(count: VXLANHeader.size) { VXLANHeader(vni: vni).write(into: &$0) } + inner
    }

    /// A full outer IPv4 + UDP + VXLAN packet, UDP checksum zero.
    public static func vxlanIPv4(
        source: IPv4Address, destination: IPv4Address, sourcePort: UInt16 = 49152, vni: VNI, inner: [UInt8]
    ) -> [UInt8] {
        ipv4UDP(
            source: source, destination: destination, sourcePort: sourcePort, destinationPort: VXLANHeader.udpPort,
            payload: vxlanDatagram(vni: vni, inner: inner), udpChecksum: false)
    }

    /// An outer IPv4 + GRE packet (what a raw IPPROTO_GRE socket delivers) around `inner`.
    public static func greIPv4(
        source: IPv4Address, destination: IPv4Address, key: UInt32? = nil, sequenceNumber: UInt32? = nil,
        checksum: Bool = false, protocolType: EtherType = .transparentEthernetBridging, inner: [UInt8],
        identification: UInt16 = 0
    ) -> [UInt8] {
        let gre = greDatagram(
            key: key, sequenceNumber: sequenceNumber, checksum: checksum, protocolType: protocolType, inner: inner)
        return ipv4(
            source: source, destination: destination, protocol: .gre, payload: gre, identification: identification)
    }

    /// GRE header + `inner`, with no IP header: what a raw IPv6 GRE socket delivers (and sends).
    public static func greDatagram(
        key: UInt32? = nil, sequenceNumber: UInt32? = nil, checksum: Bool = false,
        protocolType: EtherType = .transparentEthernetBridging, inner: [UInt8]
    ) -> [UInt8] {
        let header = GREHeader(
            checksumPresent: checksum, key: key, sequenceNumber: sequenceNumber, protocolType: protocolType)
        var gre = withBytes(count: header.length) { header.write(into: &$0) } + inner
        if checksum {
            let count = gre.count
            var span = gre.mutableSpan
            var bytes = MutableRawSpan(_elements: &span)
            GREHeader.updateChecksum(in: &bytes, length: count)
        }
        return gre
    }
}

extension Array where Element == UInt8 {
    /// Parses hex text, ignoring whitespace and `//` comments to the end of the line. Traps on anything else
    /// (a malformed literal is a bug in the test).
    public init(hex text: String) {
        var result: [UInt8] = []
        var pending: UInt8? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            for character in code where !character.isWhitespace {
                guard let digit = character.hexDigitValue else { preconditionFailure("not a hex digit: \(character)") }
                if let high = pending {
                    result.append(high << 4 | UInt8(digit))
                    pending = nil
                } else {
                    pending = UInt8(digit)
                }
            }
        }
        precondition(pending == nil, "odd number of hex digits")
        self = result
    }

    /// Contiguous lower-case hex, for comparisons and short messages.
    public var hexString: String {
        map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// A 16-bytes-per-line dump with offsets, for failure messages.
    public var hexDump: String {
        stride(from: 0, to: count, by: 16).map { start in
            let offset = String(start, radix: 16)
            let line = Array(self[start..<Swift.min(start + 16, count)]).hexString
            var grouped = ""
            for (i, c) in line.enumerated() {
                if i > 0 && i % 4 == 0 { grouped += " " }
                grouped.append(c)
            }
            return String(repeating: "0", count: Swift.max(0, 4 - offset.count)) + offset + "  " + grouped
        }.joined(separator: "\n")
    }
}
